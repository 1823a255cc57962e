"""2-D point mass reaching a hidden target: pure numpy, fast, the CI workhorse of the tests.

Modelled on the point-mass reach task of few-shot preference learning (Hejna & Sadigh 2022,
https://arxiv.org/abs/2212.03363; their dm_control ``point_mass`` with an L2 reward), with
these choices:

* **Dynamics**: a damped, force-controlled mass in the square arena [-1, 1]^2, integrated with
  semi-implicit Euler at ``DT`` = 0.1 s per step: ``v' = v + DT (F a - c v)``, ``p' = p + DT
  v'`` with ``DT F = DT c = 0.3``, so the top speed is 1 unit/s and velocity relaxes in about
  three steps (momentum matters, but a policy can stop on the goal). Walls clip the position
  and zero the velocity across them. This replaces MuJoCo's integrator: about 10^5 steps/s.
* **Observation** ``[x, y, vx, vy]`` (float32, every entry in [-1, 1]): position and velocity
  only, as in the few-shot code. The target is fixed when the env is made and never observed.
* **Reward** (their ``reach_l2``): ``-||p - g|| - 0.1 mean(a^2)``, dense, so SAC learns it in a
  few thousand steps.
* **Success**: ``||p - g|| < 0.05`` (their target radius 0.015 in a 0.27-scaled arena is
  0.056 of ours). The episode does not terminate there (theirs did): with a learned reward
  of arbitrary sign an early termination would bias the policy towards or away from it.
* **Episodes** of 50 steps (theirs: 1000 steps of 20 ms); a goal is reached in about 15.
  Start at rest, uniformly within 0.1 of the origin (theirs: exactly at the origin).
* **Goals**: their 16 training targets on the square of half-side 1 (corners, edge midpoints
  and the points halfway between), scaled by 0.8 so they lie inside the walls; 8 held-out
  targets on the same square halfway between training targets, including their two
  validation targets (1, 0.75) and (-0.75, 0.8).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import seeding

from pref_rl_robot.tasks.registry import (
    EpisodeStateError,
    Target,
    TaskSpec,
    check_reset_options,
    checked_action,
    frozen,
)

EPISODE_LENGTH = 50
"""Steps per episode."""
DT = 0.1
"""Seconds per step."""
ACCELERATION = 3.0
"""Force over mass for a unit action, units/s^2 (top speed = ACCELERATION / DAMPING)."""
DAMPING = 3.0
"""Viscous damping over mass, 1/s."""
SUCCESS_RADIUS = 0.05
"""Distance to the goal counted as success."""
CONTROL_COST = 0.1
"""Weight of the mean squared action in the reward."""
START_NOISE = 0.1
"""Initial position drawn uniformly in [-START_NOISE, START_NOISE]^2."""
GOAL_SCALE = 0.8
"""Few-shot target coordinates (in [-1, 1]) are multiplied by this."""

TRAIN_TARGETS = (
    (1, 0), (1, 1), (0, 1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (1, -1),
    (1, 0.5), (0.5, 1), (-1, 0.5), (-0.5, 1), (1, -0.5), (0.5, -1), (-1, -0.5), (-0.5, -1),
)
"""The 16 few-shot training targets (before ``GOAL_SCALE``)."""
EVAL_TARGETS = (
    (1, 0.75), (-0.75, 0.8), (0.25, 1), (-1, -0.25),
    (-0.25, -1), (0.75, -1), (1, -0.25), (-1, 0.25),
)
"""8 held-out targets: the two few-shot validation targets and six more between training ones."""

SPEC = TaskSpec(name='point_mass', episode_length=EPISODE_LENGTH, segment_length=10,
                observation_shape=(4,), action_dim=2, num_train_goals=len(TRAIN_TARGETS),
                num_eval_goals=len(EVAL_TARGETS), goal_dim=2)


def spec(name: str) -> TaskSpec:
    """The spec of the point mass (registry hook)."""
    return SPEC


def goal_set(name: str, split: str) -> np.ndarray:
    """The training or held-out targets, ``float32 [n, 2]`` (registry hook)."""
    return frozen(np.array(TRAIN_TARGETS if split == 'train' else EVAL_TARGETS) * GOAL_SCALE)


def make(name: str, *, target: Target, seed: int | None, render_size: int) -> PointMassEnv:
    """Make the point mass (registry hook; arguments already checked)."""
    return PointMassEnv(target, seed=seed, render_size=render_size)


class PointMassEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Point mass reaching one hidden target; see the module docstring for the model."""

    metadata = {'render_modes': ['rgb_array'], 'render_fps': round(1 / DT)}

    def __init__(self, target: Target, seed: int | None = None, render_size: int = 64) -> None:
        self.render_mode = 'rgb_array'
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32, seed=seed)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32, seed=seed)
        self.target = target
        """The run's target (never observed)."""
        self.goal = target.position
        """The target's coordinates, ``float32 [2]``."""
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._render_size = render_size
        # Pixel centres in arena coordinates (row 0 is the top, y = +1).
        centres = (np.arange(render_size) + 0.5) / render_size * 2 - 1
        self._pixel_x = centres[None, :]
        self._pixel_y = -centres[:, None]
        # State as Python floats: cheaper than numpy for four scalars.
        self._x = self._y = self._vx = self._vy = 0.0
        self._gx, self._gy = (float(v) for v in self.goal)
        self._steps = -1  # -1: not reset yet

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at rest near the origin (the target stays the env's)."""
        check_reset_options(options)
        super().reset(seed=seed)
        self._x, self._y = self.np_random.uniform(-START_NOISE, START_NOISE, 2).tolist()
        self._vx = self._vy = 0.0
        self._steps = 0
        return self._observation(), {'success': self._distance() < SUCCESS_RADIUS}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the force ``action`` (clipped to [-1, 1]) for one step of ``DT`` seconds."""
        if not 0 <= self._steps < EPISODE_LENGTH:
            raise EpisodeStateError('point_mass: call reset() before step() '
                                    '(at the start and after each truncated episode)')
        ax, ay = checked_action(action, 2).tolist()
        # Semi-implicit Euler: velocity first, then the position moves with the new velocity.
        self._vx += DT * (ACCELERATION * ax - DAMPING * self._vx)
        self._vy += DT * (ACCELERATION * ay - DAMPING * self._vy)
        self._x += DT * self._vx
        self._y += DT * self._vy
        # Walls: stop at the boundary, losing the velocity across it.
        if not -1.0 <= self._x <= 1.0:
            self._x, self._vx = max(-1.0, min(1.0, self._x)), 0.0
        if not -1.0 <= self._y <= 1.0:
            self._y, self._vy = max(-1.0, min(1.0, self._y)), 0.0
        self._steps += 1
        distance = self._distance()
        reward = -distance - CONTROL_COST * 0.5 * (ax * ax + ay * ay)
        truncated = self._steps >= EPISODE_LENGTH
        return (self._observation(), reward, False, truncated,
                {'success': distance < SUCCESS_RADIUS, 'distance': distance})

    def render(self) -> np.ndarray:
        """``uint8 [S, S, 3]``: arena in grey, goal disc in green, the mass in red."""
        size = self._render_size
        image = np.empty((size, size, 3), np.uint8)
        image[:] = (60, 60, 60)
        # Discs of 8% and 6% of the arena's half-width, at least 1.5 pixels whatever the size.
        min_radius = 3.0 / size
        for (cx, cy), radius, colour in (((self._gx, self._gy), 0.08, (60, 200, 60)),
                                         ((self._x, self._y), 0.06, (230, 60, 50))):
            radius = max(radius, min_radius)
            mask = (self._pixel_x - cx) ** 2 + (self._pixel_y - cy) ** 2 <= radius ** 2
            image[mask] = colour
        return image

    def _distance(self) -> float:
        return math.hypot(self._x - self._gx, self._y - self._gy)

    def _observation(self) -> np.ndarray:
        return np.array((self._x, self._y, self._vx, self._vy), np.float32)
