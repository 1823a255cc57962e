"""Franka Panda reach and block push, in PyBullet or on a real Panda through Polymetis.

The Panda tasks of few-shot preference learning (Hejna & Sadigh 2022,
https://arxiv.org/abs/2212.03363): reach episodes of 100 steps, push episodes of 300 steps,
segments of 25 steps. Choices (positions in the robot base frame, table top at z = 0, m):

* **Action**: Cartesian end-effector displacement, ``float32 [3]`` in [-1, 1], times
  ``ACTION_SCALE_M`` = 0.02 m per 0.1 s step (at most 0.35 m/s), orientation fixed pointing
  down, gripper closed. Every target passes the safety envelope (:mod:`pref_rl_robot.panda`).
* **The target is hidden**: the observation holds the arm (and block), never the goal; the
  true reward, success and the goal marker in the frames use it. On the real arm the target
  may be left out (``goal=None``): it is in the person's head, and the env reports no true
  reward (NaN) and no success.
* **panda_reach**: observation ``[ee xyz, ee velocity xyz]`` (6); reward
  ``-||ee - goal||``; success: end effector within 3 cm of the goal. 16 training goals on the
  grid x in {0.35, 0.45, 0.55, 0.65}, y in {-0.2, 0.2}, z in {0.12, 0.32}; 8 held-out goals
  between them (x in {0.4, 0.6}, y in {-0.1, 0.1}, z in {0.17, 0.27}). The arm starts at
  (0.4, 0, 0.4) +- 3 cm, at least 0.2 m from every goal.
* **panda_push**: a 5 cm cube starts at (0.5, 0) +- 1 cm; observation ``[ee xyz, ee velocity
  xyz, block xyz]`` (9); reward ``-||block_xy - goal|| - 0.1 ||ee - block||`` (the
  small second term leads the arm to the block); success: block centre within 5 cm of the
  goal. 16 training goals around the block start, 8 directions (every 45 degrees) at 0.12 m
  and at 0.18 m; 8 held-out goals in the directions between them at 0.15 m. The arm starts at
  (0.4, 0, 0.1) +- 2 cm.
* **Workspaces** (tighter than the Franka limits, intersected with ``SafetyConfig``'s box):
  reach x [0.25, 0.75], y [-0.3, 0.3], z [0.05, 0.5]; push the same in x and y, z [0.015, 0.3]
  (the fingertips skim the table).

``make_task('panda_reach' | 'panda_push', ...)`` gives the PyBullet version;
:func:`make_panda_task` also builds the Polymetis one and takes the safety settings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pref_rl_robot.panda.backend import Clock, PandaBackend
from pref_rl_robot.panda.env import PandaEnv
from pref_rl_robot.panda.errors import PandaConfigError
from pref_rl_robot.panda.polymetis_backend import (
    Camera,
    ObjectTracker,
    PolymetisConfig,
    PolymetisPandaBackend,
)
from pref_rl_robot.panda.safety import SafetyConfig
from pref_rl_robot.panda.task import PandaTask
from pref_rl_robot.tasks.registry import (
    DEFAULT_GOAL,
    PERSON_GOAL,
    Target,
    TaskArgumentError,
    TaskSpec,
    UnknownTaskError,
    check_make_arguments,
    resolve_target,
)

REACH_EPISODE_LENGTH = 100
"""Steps per reach episode (10 s at 10 Hz)."""
PUSH_EPISODE_LENGTH = 300
"""Steps per push episode (30 s)."""
SEGMENT_LENGTH = 25
"""Steps per preference segment."""
ACTION_SCALE_M = 0.02
"""End-effector displacement per step for an action component of 1, m."""
BLOCK_START = (0.5, 0.0)
"""Nominal block position on the table, m."""

REACH_TRAIN_GOALS = tuple((x, y, z) for x in (0.35, 0.45, 0.55, 0.65) for y in (-0.2, 0.2)
                          for z in (0.12, 0.32))
"""16 reach training goals, m."""
REACH_EVAL_GOALS = tuple((x, y, z) for x in (0.4, 0.6) for y in (-0.1, 0.1)
                         for z in (0.17, 0.27))
"""8 held-out reach goals, m."""


def _around_block(radius: float, first_angle_deg: float) -> tuple[tuple[float, float], ...]:
    return tuple((round(BLOCK_START[0] + radius * math.cos(math.radians(a)), 6),
                  round(BLOCK_START[1] + radius * math.sin(math.radians(a)), 6))
                 for a in (first_angle_deg + 45 * k for k in range(8)))


PUSH_TRAIN_GOALS = _around_block(0.12, 0.0) + _around_block(0.18, 0.0)
"""16 push training goals on the table, m."""
PUSH_EVAL_GOALS = _around_block(0.15, 22.5)
"""8 held-out push goals on the table, m."""

PANDA_REACH = PandaTask(
    spec=TaskSpec(name='panda_reach', episode_length=REACH_EPISODE_LENGTH,
                  segment_length=SEGMENT_LENGTH, observation_shape=(6,), action_dim=3,
                  num_train_goals=len(REACH_TRAIN_GOALS), num_eval_goals=len(REACH_EVAL_GOALS),
                  goal_dim=3),
    kind='reach', train_goals=REACH_TRAIN_GOALS, eval_goals=REACH_EVAL_GOALS,
    workspace_low=(0.25, -0.3, 0.05), workspace_high=(0.75, 0.3, 0.5),
    start_position=(0.4, 0.0, 0.4), start_noise_m=0.03, success_radius_m=0.03,
    action_scale_m=ACTION_SCALE_M)
"""The reach task."""
PANDA_PUSH = PandaTask(
    spec=TaskSpec(name='panda_push', episode_length=PUSH_EPISODE_LENGTH,
                  segment_length=SEGMENT_LENGTH, observation_shape=(9,), action_dim=3,
                  num_train_goals=len(PUSH_TRAIN_GOALS), num_eval_goals=len(PUSH_EVAL_GOALS),
                  goal_dim=2),
    kind='push', train_goals=PUSH_TRAIN_GOALS, eval_goals=PUSH_EVAL_GOALS,
    workspace_low=(0.25, -0.3, 0.015), workspace_high=(0.75, 0.3, 0.3),
    start_position=(0.4, 0.0, 0.1), start_noise_m=0.02, success_radius_m=0.05,
    action_scale_m=ACTION_SCALE_M, block_start=BLOCK_START, block_start_noise_m=0.01)
"""The push task."""

PANDA_TASKS = {'panda_reach': PANDA_REACH, 'panda_push': PANDA_PUSH}
"""Name -> task."""
BACKENDS = ('pybullet', 'polymetis')
"""Values of ``make_panda_task(backend=...)``."""


def spec(name: str) -> TaskSpec:
    """The spec of a Panda task (registry hook)."""
    return PANDA_TASKS[name].spec


def goal_set(name: str, split: str) -> np.ndarray:
    """The training or held-out goals of a Panda task (registry hook)."""
    return PANDA_TASKS[name].goal_set(split)


def make(name: str, *, target: Target, seed: int | None, render_size: int) -> PandaEnv:
    """Make a Panda task in PyBullet (registry hook; arguments already checked)."""
    return make_panda_task(name, goal=target, seed=seed, render_size=render_size)


def make_panda_task(name: str, *, backend: str = 'pybullet', goal: Any = DEFAULT_GOAL,
                    seed: int | None = None, render_size: int = 64,
                    safety: SafetyConfig | None = None,
                    polymetis: PolymetisConfig | None = None,
                    tracker: ObjectTracker | None = None, camera: Camera | None = None,
                    clock: Clock | None = None) -> PandaEnv:
    """Make ``panda_reach`` or ``panda_push`` on a simulated or real Panda.

    Args:
        name: ``'panda_reach'`` or ``'panda_push'``.
        backend: ``'pybullet'`` (headless simulation) or ``'polymetis'`` (a real Panda, or
            Polymetis' own simulation, through a Polymetis server on this machine).
        goal: the target (see :func:`pref_rl_robot.tasks.make_task`), a resolved
            :class:`Target`, or ``'person'`` (or None) with ``backend='polymetis'``: the
            person's target, in their head (no true reward, no success).
        seed: seeds the start jitter and the action space.
        render_size: side of the square frames ``render()`` returns.
        safety: limits of the safety envelope (default :class:`SafetyConfig`); the task's
            workspace box is intersected with its box.
        polymetis: server address, gains, gripper (``backend='polymetis'`` only).
        tracker: callable returning the block position (``backend='polymetis'``; required
            for ``panda_push`` there).
        camera: callable returning an RGB frame for ``render()`` (``backend='polymetis'``;
            without it frames are a schematic top-down drawing).
        clock: time source of the Polymetis backend (tests pass a simulated clock).

    Raises:
        UnknownTaskError: ``name`` is not a Panda task.
        TaskArgumentError: bad ``goal``, ``seed`` or ``render_size``; no goal in simulation.
        PandaConfigError: unknown backend, options for the wrong backend, push on Polymetis
            without a tracker, a non-local Polymetis address.
        PolymetisUnavailableError: ``backend='polymetis'`` and Polymetis is not installed.
    """
    if name not in PANDA_TASKS:
        raise UnknownTaskError(f'unknown Panda task {name!r}; valid: {", ".join(PANDA_TASKS)}')
    task = PANDA_TASKS[name]
    check_make_arguments(seed, render_size)
    if goal is None or (isinstance(goal, str) and goal.strip() == PERSON_GOAL):
        if backend == 'pybullet':
            raise TaskArgumentError(f'{name} in simulation needs a target (goal=...): the '
                                    'simulated teacher and the evaluation judge against it')
        target = None
    else:
        target = goal if isinstance(goal, Target) else resolve_target(name, goal)
    if backend == 'pybullet':
        extras = [k for k, v in (('polymetis', polymetis), ('tracker', tracker),
                                 ('camera', camera), ('clock', clock)) if v is not None]
        if extras:
            raise PandaConfigError(f"{', '.join(extras)} apply only to backend='polymetis'")
        from pref_rl_robot.panda.pybullet_backend import PyBulletPandaBackend

        arm: PandaBackend = PyBulletPandaBackend(
            with_block=task.needs_block, goal_on_table=task.kind == 'push',
            goal_marker_radius=min(task.success_radius_m, 0.03))
    elif backend == 'polymetis':
        if task.needs_block and tracker is None:
            raise PandaConfigError(
                f'{name} on the real robot needs the block position: pass tracker=<callable '
                f'returning (x, y) or (x, y, z) in the robot base frame>')
        box = (safety or SafetyConfig()).tightened(task.workspace_low, task.workspace_high)
        arm = PolymetisPandaBackend(polymetis or PolymetisConfig(), task=task, tracker=tracker,
                                    camera=camera, clock=clock, workspace=box)
    else:
        raise PandaConfigError(f"backend must be one of {', '.join(BACKENDS)}, "
                               f'got {backend!r}')
    try:
        return PandaEnv(task, arm, target=target, seed=seed, render_size=int(render_size),
                        safety=safety)
    except BaseException:
        arm.close()
        raise
