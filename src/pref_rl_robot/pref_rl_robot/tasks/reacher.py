"""2-link planar reacher on MuJoCo (gymnasium's Reacher-v5 model) reaching a hidden target.

Modelled on the reacher task of few-shot preference learning (Hejna & Sadigh 2022,
https://arxiv.org/abs/2212.03363; their dm_control ``reacher`` with an L2 reward), built on
gymnasium's ``Reacher-v5`` (links of 0.1 m and 0.11 m to the fingertip, torque control,
20 ms per step). Choices:

* **Observation** float32 ``[cos q0, cos q1, sin q0, sin q1, dq0, dq1]``: Reacher-v5's without
  the target and the fingertip-to-target offset (the few-shot code removed them "to make the
  task harder"; the target is what the preferences teach). The target is fixed when the env is
  made; it is drawn in the frames.
* **Reward** (their ``reach_l2``): ``-||tip - goal|| - 0.1 mean(a^2)``.
* **Success**: fingertip within ``SUCCESS_RADIUS`` = 0.02 m of the goal (10% of the largest
  target radius; their target size was 0.015 m).
* **Episodes** of 50 steps (1 s, Reacher-v5's limit; theirs ran 500), never terminated early.
  The arm starts at rest (velocities uniform in +-0.005) in a uniformly random pose over the
  joint ranges (shoulder: full circle, elbow: +-3 rad), as dm_control's reacher does; Reacher-v5
  starts it stretched along +x, which already solves the target at (0.2, 0).
* **Goals**: their 12 training targets, given as (angle from +y towards +x, fraction of the
  0.2 m radius): 4 at full radius on the axes, 4 at 0.66 on the diagonals, 4 at 0.33 at
  pi/8 + k pi/2; 8 held-out targets between them: 4 at 0.5 (angles 3pi/8 + k pi/2, including
  their validation target) and 4 at 0.85 (angles pi/8 + k pi/2).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.utils import seeding

from pref_rl_robot.tasks.reacher_kinematics import LINK_LENGTHS  # noqa: F401 (re-exported)
from pref_rl_robot.tasks.registry import (
    EpisodeStateError,
    Target,
    TaskSpec,
    check_reset_options,
    checked_action,
    default_to_offscreen_gl,
    frozen,
)

EPISODE_LENGTH = 50
"""Steps per episode (20 ms each)."""
SUCCESS_RADIUS = 0.02
"""Fingertip-goal distance counted as success, m."""
CONTROL_COST = 0.1
"""Weight of the mean squared action in the reward."""
TARGET_RADIUS = 0.2
"""Radius the target fractions are multiplied by, m (the arm reaches 0.21 m)."""

TRAIN_TARGETS = (
    *((k * math.pi / 2, 1.0) for k in range(4)),
    *(((2 * k + 1) * math.pi / 4, 0.66) for k in range(4)),
    *(((4 * k + 1) * math.pi / 8, 0.33) for k in range(4)),
)
"""The 12 few-shot training targets as (angle, radius fraction)."""
EVAL_TARGETS = (
    *(((4 * k + 3) * math.pi / 8, 0.5) for k in range(4)),
    *(((4 * k + 1) * math.pi / 8, 0.85) for k in range(4)),
)
"""8 held-out targets as (angle, radius fraction)."""

# A camera looking straight down on the arena (Reacher-v5's default looks at it obliquely).
_TOP_DOWN_CAMERA = {'distance': 0.75, 'elevation': -90.0, 'azimuth': 90.0,
                    'lookat': np.zeros(3)}

SPEC = TaskSpec(name='reacher', episode_length=EPISODE_LENGTH, segment_length=10,
                observation_shape=(6,), action_dim=2, num_train_goals=len(TRAIN_TARGETS),
                num_eval_goals=len(EVAL_TARGETS), goal_dim=2)


def spec(name: str) -> TaskSpec:
    """The spec of the reacher (registry hook)."""
    return SPEC


def goal_set(name: str, split: str) -> np.ndarray:
    """The training or held-out targets, ``float32 [n, 2]`` (registry hook)."""
    return frozen(target_positions(TRAIN_TARGETS if split == 'train' else EVAL_TARGETS))


def make(name: str, *, target: Target, seed: int | None, render_size: int) -> ReacherGoalEnv:
    """Make the reacher (registry hook; arguments already checked)."""
    return ReacherGoalEnv(target, seed=seed, render_size=render_size)


def target_positions(targets: tuple[tuple[float, float], ...]) -> np.ndarray:
    """(angle, radius fraction) pairs -> ``[n, 2]`` positions: x = r sin a, y = r cos a."""
    return np.array([(TARGET_RADIUS * f * math.sin(a), TARGET_RADIUS * f * math.cos(a))
                     for a, f in targets])


class ReacherGoalEnv(ReacherEnv):
    """Reacher-v5 with one hidden target; see the module docstring."""

    def __init__(self, target: Target, seed: int | None = None, render_size: int = 64) -> None:
        default_to_offscreen_gl()
        super().__init__(render_mode='rgb_array', width=render_size, height=render_size,
                         default_camera_config=_TOP_DOWN_CAMERA)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (6,), np.float32,
                                                      seed=seed)
        self.action_space.seed(seed)
        self.target = target
        """The run's target (never observed)."""
        self.goal = target.position
        """The target's coordinates, ``float32 [2]``."""
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._steps = -1  # -1: not reset yet

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode in a random arm pose (the target stays the env's)."""
        check_reset_options(options)
        obs, info = super().reset(seed=seed)  # calls reset_model after reseeding
        self._steps = 0
        return obs, {**info, 'success': self.distance() < SUCCESS_RADIUS}

    def reset_model(self) -> np.ndarray:
        """Place the target marker on the target and the arm in a random pose."""
        # Random arm pose over the joints' whole range (dm_control's randomiser, as in the
        # few-shot code): no goal is solved by a fixed start pose.
        qpos = np.empty(self.model.nq)
        qpos[0] = self.np_random.uniform(-math.pi, math.pi)
        qpos[1] = self.np_random.uniform(*self.model.jnt_range[1])
        qpos[-2:] = self.goal  # the target's slide joints
        qvel = self.init_qvel + self.np_random.uniform(-0.005, 0.005, self.model.nv)
        qvel[-2:] = 0.0
        self.set_state(qpos, qvel)
        return self._get_obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply joint torques ``action`` (clipped to [-1, 1]) for one 20 ms step."""
        if not 0 <= self._steps < EPISODE_LENGTH:
            raise EpisodeStateError('reacher: call reset() before step() '
                                    '(at the start and after each truncated episode)')
        action = checked_action(action, 2)
        self.do_simulation(action, self.frame_skip)
        self._steps += 1
        distance = self.distance()
        reward = -distance - CONTROL_COST * float(np.mean(action ** 2))
        truncated = self._steps >= EPISODE_LENGTH
        return (self._get_obs(), reward, False, truncated,
                {'success': distance < SUCCESS_RADIUS, 'distance': distance})

    def distance(self) -> float:
        """Fingertip-to-goal distance in the plane, m."""
        offset = self.data.body('fingertip').xpos[:2] - self.data.body('target').xpos[:2]
        return float(np.hypot(*offset))

    def fingertip(self) -> np.ndarray:
        """Fingertip position in the plane, ``float64 [2]``."""
        return self.data.body('fingertip').xpos[:2].copy()

    def _get_obs(self) -> np.ndarray:
        angles = self.data.qpos.flat[:2]
        return np.concatenate([np.cos(angles), np.sin(angles),
                               self.data.qvel.flat[:2]]).astype(np.float32)
