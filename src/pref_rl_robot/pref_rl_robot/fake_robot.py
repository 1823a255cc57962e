"""A fake robot: a point in the plane driven by velocity commands towards a goal.

Cheap, deterministic for a seed and dependency-free, it stands in for a robot in tests and
diagnostic sessions (the real backends come with the robot package). Gymnasium-style API:
``reset(seed) -> (obs, info)``, ``step(action) -> (obs, reward, terminated, truncated, info)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FakeRobotConfig:
    """Parameters of :class:`FakeRobot`."""

    episode_length: int = 50
    """Steps before the episode is truncated."""
    max_speed: float = 0.05
    """Displacement per step for a unit action."""
    success_radius: float = 0.05
    """Distance to the goal counted as success."""
    image_size: int = 64
    """Side of the square ``rgb_array`` frames, pixels."""


class FakeRobot:
    """Point robot in [-1, 1]^2; observation ``[x, y, goal_x, goal_y]``, action ``[vx, vy]``."""

    observation_shape = (4,)
    action_shape = (2,)

    def __init__(self, config: FakeRobotConfig = FakeRobotConfig()) -> None:
        self.config = config
        self._rng = np.random.default_rng()
        self._pos = np.zeros(2, np.float32)
        self._goal = np.zeros(2, np.float32)
        self._t = 0

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode at a random position with a random goal."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._pos = self._rng.uniform(-0.9, 0.9, 2).astype(np.float32)
        self._goal = self._rng.uniform(-0.9, 0.9, 2).astype(np.float32)
        self._t = 0
        return self._obs(), {'success': self._success()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Move by ``clip(action, -1, 1) * max_speed``; reward is minus the goal distance."""
        action = np.asarray(action, np.float32)
        if action.shape != self.action_shape or not np.isfinite(action).all():
            raise ValueError(f'action must be finite with shape {self.action_shape}, '
                             f'got {action.shape}')
        self._pos = np.clip(self._pos + np.clip(action, -1, 1) * self.config.max_speed, -1, 1)
        self._t += 1
        reward = -float(np.linalg.norm(self._pos - self._goal))
        truncated = self._t >= self.config.episode_length
        return self._obs(), reward, False, truncated, {'success': self._success()}

    def sample_action(self) -> np.ndarray:
        """A uniformly random action."""
        return self._rng.uniform(-1, 1, self.action_shape).astype(np.float32)

    def render(self) -> np.ndarray:
        """``uint8 [S, S, 3]`` image: goal in green, robot in red, on grey."""
        s = self.config.image_size
        image = np.full((s, s, 3), 40, np.uint8)
        for point, color in ((self._goal, (40, 200, 40)), (self._pos, (220, 50, 50))):
            cx, cy = ((point + 1) / 2 * (s - 1)).round().astype(int)
            image[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = color
        return image

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._goal]).astype(np.float32)

    def _success(self) -> bool:
        return bool(np.linalg.norm(self._pos - self._goal) < self.config.success_radius)
