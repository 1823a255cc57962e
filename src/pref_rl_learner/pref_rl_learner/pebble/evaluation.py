"""Evaluation of the deterministic policy on the run's target, from random starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np

DEFAULT_EVAL_EPISODES = 10
"""Episodes an evaluation runs unless told otherwise (the few-shot protocol: at least 10)."""


class Policy(Protocol):
    """Anything with SAC's ``act``."""

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray: ...


@dataclass(frozen=True)
class EvalResult:
    """Figures of one evaluation."""

    success_rate: float
    """Share of episodes in which ``info['success']`` was ever true."""
    mean_return: float
    """Mean undiscounted true return."""
    episodes: int
    """Episodes run."""


def evaluate_policy(policy: Policy, env: gym.Env, episodes: int = DEFAULT_EVAL_EPISODES,
                    seed: int = 0) -> EvalResult:
    """Run ``episodes`` deterministic episodes on the env's target from random starts.

    Each episode is reset with its own seed, so an evaluation is reproducible, visits the same
    starts every time and consumes no randomness of the run.
    """
    if episodes < 1:
        raise ValueError(f'episodes must be >= 1, got {episodes}')
    successes, returns = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + i)
        done, total, success = False, 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(
                policy.act(np.asarray(obs).reshape(-1), deterministic=True))
            total += float(reward)
            success = success or bool(info.get('success', False))
            done = terminated or truncated
        successes.append(success)
        returns.append(total)
    return EvalResult(float(np.mean(successes)), float(np.mean(returns)), episodes)
