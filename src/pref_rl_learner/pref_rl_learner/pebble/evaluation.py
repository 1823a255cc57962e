"""Evaluation of the deterministic policy on the held-out goals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np


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


def evaluate_policy(policy: Policy, env: gym.Env, episodes: int = 0, seed: int = 0) -> EvalResult:
    """Run ``episodes`` deterministic episodes, cycling over the env's goal set in order.

    ``episodes=0`` runs exactly one per goal. Each episode is reset with its own seed and
    goal index, so an evaluation is reproducible and consumes no randomness of the run.
    """
    goals = len(env.unwrapped.goal_set)
    episodes = episodes or goals
    successes, returns = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + i, options={'goal_index': i % goals})
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
