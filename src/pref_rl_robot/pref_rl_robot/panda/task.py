"""What a Panda task is, independent of the backend: goals, start, reward, success.

The concrete tasks (``panda_reach``, ``panda_push``) are instances of :class:`PandaTask`
defined in :mod:`pref_rl_robot.tasks.panda_tasks`; :class:`~pref_rl_robot.panda.env.PandaEnv`
runs one on any backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pref_rl_robot.tasks.registry import TaskSpec, frozen

Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class PandaTask:
    """A reach or push task for the Panda (positions in the robot base frame, metres)."""

    spec: TaskSpec
    """Registry description (episode and segment lengths, shapes, goal-set sizes)."""
    kind: str
    """``'reach'``: bring the end effector to a 3-D goal; ``'push'``: push the block to a
    2-D goal on the table."""
    train_goals: tuple[tuple[float, ...], ...]
    """Training goals: (x, y, z) for reach, (x, y) on the table for push."""
    eval_goals: tuple[tuple[float, ...], ...]
    """Held-out goals, disjoint from ``train_goals``."""
    workspace_low: Vector3
    """Lower corner of the task's box, intersected with the safety config's box."""
    workspace_high: Vector3
    """Upper corner of the task's box."""
    start_position: Vector3
    """Nominal end-effector position at the start of an episode."""
    start_noise_m: float
    """Start position drawn uniformly within +- this of ``start_position`` per axis (sim)."""
    success_radius_m: float
    """Reach: end effector within this of the goal; push: block centre (in the table plane)
    within this of the goal."""
    action_scale_m: float
    """End-effector displacement per step for an action component of 1, m."""
    gripper_width_m: float = 0.0
    """Gripper opening during the episode (0: closed, a flat pusher)."""
    block_start: tuple[float, float] | None = None
    """Nominal block position on the table (push only)."""
    block_start_noise_m: float = 0.0
    """Block start drawn uniformly within +- this of ``block_start`` per axis (sim)."""
    block_half_size_m: float = 0.025
    """Half the block's side: the height of its centre above the table, m."""
    shaping_weight: float = 0.1
    """Push: weight of the end-effector-to-block distance in the reward."""

    def __post_init__(self) -> None:
        if self.kind not in ('reach', 'push'):
            raise ValueError(f"kind must be 'reach' or 'push', got {self.kind!r}")
        if (self.kind == 'push') != (self.block_start is not None):
            raise ValueError('a push task needs block_start, a reach task must not have one')

    @property
    def needs_block(self) -> bool:
        """True for push: the backend must know where the block is."""
        return self.kind == 'push'

    def goal_set(self, split: str) -> np.ndarray:
        """The training (``'train'``) or held-out (``'eval'``) goals, read-only float32."""
        return frozen(self.train_goals if split == 'train' else self.eval_goals)

    @property
    def goal_dim(self) -> int:
        """Coordinates of a goal: 3 for reach, 2 (on the table) for push."""
        return 3 if self.kind == 'reach' else 2

    def observation(self, ee: np.ndarray, ee_velocity: np.ndarray,
                    block: np.ndarray | None) -> np.ndarray:
        """Reach: ``[ee xyz, ee velocity xyz]`` (6); push: ``[ee xyz, ee velocity xyz, block
        xyz]`` (9); float32. Never the goal: it is what the preferences teach."""
        parts = [ee, ee_velocity] + ([block] if self.kind == 'push' else [])
        return np.concatenate(parts).astype(np.float32)

    def evaluate(self, ee: np.ndarray, block: np.ndarray | None,
                 goal: np.ndarray | None) -> tuple[float, bool, float]:
        """``(reward, success, distance)`` for the current state.

        Reach: ``reward = -||ee - goal||``. Push: ``reward = -||block_xy - goal|| -
        shaping_weight * ||ee - block||`` (the second term leads the arm to the block).
        ``distance`` is the first term's distance, the one success is judged on. Without a
        goal (a person's target on the real arm) there is no true reward:
        ``(nan, False, nan)``.
        """
        if goal is None:
            return math.nan, False, math.nan
        if self.kind == 'reach':
            distance = _norm(ee - goal)
            return -distance, distance < self.success_radius_m, distance
        distance = _norm(block[:2] - goal)
        reward = -distance - self.shaping_weight * _norm(ee - block)
        return reward, distance < self.success_radius_m, distance


def _norm(vector: np.ndarray) -> float:
    return math.sqrt(float(np.dot(vector, vector)))
