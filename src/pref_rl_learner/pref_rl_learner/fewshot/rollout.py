"""Episodes for offline datasets: a behaviour (policy + action noise) run in one task, and
the cut of its episodes into fixed-length segments.

A :class:`Behaviour` is what produced an episode: a deterministic policy (a scripted expert,
possibly aimed at another target or taken from another environment) or none (uniform random
actions), perturbed by action noise of a given kind and level, optionally after a prefix of
random actions that scatters the state the policy starts from (initial-state noise). Every
random draw comes from the generator passed in, so a seed fixes the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pref_rl_learner.errors import PrefRLError


class CollectError(PrefRLError, ValueError):
    """Bad collection settings or inputs (counts, noise, environments, expert checkpoints,
    an output directory holding another collection)."""


Policy = Callable[[np.ndarray], np.ndarray]
"""Observation ``float32 [*obs_shape]`` -> action ``[action_dim]`` (not necessarily clipped)."""

NOISE_TYPES = ('gaussian', 'uniform')
"""``gaussian``: ``a + eps * N(0, I)``; ``uniform``: with probability ``eps`` the action is
replaced by a uniform random one (epsilon-greedy)."""


@dataclass(frozen=True)
class Behaviour:
    """How the actions of one episode are chosen."""

    source: str
    """Label stored with each segment of the episode (``expert``, ``cross_goal``, ...)."""
    policy: Policy | None
    """Deterministic policy; ``None`` acts uniformly at random in [-1, 1]."""
    noise: float = 0.0
    """Noise level ``eps`` (see :data:`NOISE_TYPES`)."""
    noise_type: str = 'gaussian'
    """One of :data:`NOISE_TYPES`."""
    random_prefix: int = 0
    """Number of uniform random actions taken before the policy acts."""


@dataclass(frozen=True)
class Episode:
    """One recorded episode."""

    observations: np.ndarray
    """float32 ``[L, *obs_shape]``: o_t, the observation before action t."""
    actions: np.ndarray
    """float32 ``[L, action_dim]``: a_t as applied (clipped to [-1, 1])."""
    rewards: np.ndarray
    """float32 ``[L]``: r_t = r(o_t, a_t, o_{t+1}), the task's true reward."""
    success: bool
    """``info['success']`` held at some step (MetaWorld's success criterion)."""


def perturb(action: np.ndarray, noise: float, noise_type: str,
            rng: np.random.Generator) -> np.ndarray:
    """``action`` with noise of ``noise_type`` and level ``noise``, clipped to [-1, 1]."""
    action = np.asarray(action, np.float64)
    if noise > 0.0:
        if noise_type == 'gaussian':
            action = action + noise * rng.standard_normal(action.shape)
        elif noise_type == 'uniform':
            if rng.random() < noise:
                action = rng.uniform(-1.0, 1.0, action.shape)
        else:
            raise CollectError(f'noise_type must be one of {NOISE_TYPES}, got '
                               f'{noise_type!r}')
    return np.clip(action, -1.0, 1.0)


def run_episode(env: Any, behaviour: Behaviour, steps: int,
                rng: np.random.Generator) -> Episode:
    """Reset ``env`` (its own target) and run ``steps`` steps of ``behaviour``."""
    observation, _ = env.reset()
    action_dim = int(np.prod(env.action_space.shape))
    observations = np.empty((steps, *np.shape(observation)), np.float32)
    actions = np.empty((steps, action_dim), np.float32)
    rewards = np.empty(steps, np.float32)
    success = False
    for t in range(steps):
        if behaviour.policy is None or t < behaviour.random_prefix:
            action = rng.uniform(-1.0, 1.0, action_dim)
        else:
            action = perturb(behaviour.policy(observation), behaviour.noise,
                             behaviour.noise_type, rng)
        observations[t] = observation
        actions[t] = action
        observation, reward, terminated, truncated, info = env.step(actions[t])
        rewards[t] = reward
        success = success or bool(info.get('success', False))
        if terminated or (truncated and t + 1 < steps):
            raise CollectError(f'episode ended after {t + 1} of {steps} steps; the task '
                               'episodes are shorter than requested')
    return Episode(observations, actions, rewards, success)


def segment_starts(episode_steps: int, length: int, stride: int) -> range:
    """First steps of the segments cut from an episode of ``episode_steps`` steps."""
    return range(0, episode_steps - length + 1, stride)


def cut_segments(episode: Episode, length: int,
                 stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(observations [N, T, ...], actions [N, T, A], rewards [N, T])`` of the segments of
    ``length`` steps starting every ``stride`` steps (N may be 0)."""
    starts = list(segment_starts(len(episode.rewards), length, stride))
    index = np.asarray(starts, np.intp)[:, None] + np.arange(length)[None, :]
    if not starts:
        index = np.empty((0, length), np.intp)
    return episode.observations[index], episode.actions[index], episode.rewards[index]
