"""Scripted experts for the hidden-target tasks (point mass, reacher, Panda reach and push).

The observation never holds the target, so an expert is made for one: ``scripted_expert(family,
goal)`` closes over the goal's coordinates and reads the rest of the state from the
observation. Aimed at another target than the env's own it makes a cross-goal episode (the
reward stays that of the env's target). (SAC experts trained on the true reward, as the
few-shot paper used for block push, are read by ``pref_rl_learner.fewshot.experts``.)

* point mass: PD control of the force towards the goal.
* reacher: the fingertip from the joint angles (forward kinematics), then damped-least-squares
  inverse kinematics gives desired joint velocities; the torque tracks them.
* panda_reach: proportional end-effector displacement towards the goal.
* panda_push: a pusher that rises above the block, moves behind it (opposite the goal),
  lowers to the table and pushes along the block-to-goal line, correcting sideways drift;
  it stops within 1 cm of the goal. Reaches the 5 cm success radius for all 16 training
  goals in 10-30 steps of the 300-step episode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pref_rl_learner.fewshot.rollout import CollectError, Policy
from pref_rl_robot.tasks.reacher_kinematics import LINK_LENGTHS, arm_points, joint_angles

GOAL_FAMILIES = ('point_mass', 'reacher', 'panda_reach', 'panda_push')
"""Tasks whose targets are coordinates from fixed sets, with a scripted expert."""


def scripted_expert(family: str, goal: Sequence[float]) -> Policy:
    """The scripted controller of task ``family`` aimed at target coordinates ``goal``.

    Raises:
        CollectError: ``family`` is not a goal task.
    """
    goal = np.array(goal, np.float64)
    if family == 'point_mass':
        return lambda observation: _point_mass(observation, goal)
    if family == 'reacher':
        return lambda observation: _reacher(observation, goal)
    if family in ('panda_reach', 'panda_push'):
        from pref_rl_robot.tasks.panda_tasks import ACTION_SCALE_M

        controller = _panda_reach if family == 'panda_reach' else _panda_push
        return lambda observation: controller(observation, goal, ACTION_SCALE_M)
    raise CollectError(f'no scripted expert for {family!r}; goal tasks: '
                       f'{", ".join(GOAL_FAMILIES)}')


def _point_mass(observation: np.ndarray, goal: np.ndarray) -> np.ndarray:
    position, velocity = observation[0:2], observation[2:4]
    return np.clip(3.0 * (goal - position) - velocity, -1.0, 1.0)


def _reacher(observation: np.ndarray, goal: np.ndarray) -> np.ndarray:
    (l1, l2), joint_velocity = LINK_LENGTHS, observation[4:6]
    q0, q01 = (float(q) for q in joint_angles(observation))
    error = goal - arm_points(observation)[1]
    # Jacobian of the fingertip position (x, y) with respect to the joint angles.
    jacobian = np.array([[-l1 * math.sin(q0) - l2 * math.sin(q01), -l2 * math.sin(q01)],
                         [l1 * math.cos(q0) + l2 * math.cos(q01), l2 * math.cos(q01)]])
    # Damped least squares: joint velocities that move the tip towards the goal.
    desired = 10.0 * jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + 1e-3 * np.eye(2),
                                                  error)
    return np.clip(0.5 * (desired - joint_velocity), -1.0, 1.0)


def _panda_reach(observation: np.ndarray, goal: np.ndarray, scale: float) -> np.ndarray:
    ee = observation[0:3]
    return np.clip(0.8 * (goal - ee) / scale, -1.0, 1.0)


# Push geometry, m: heights of the end effector above the table while travelling and
# pushing, distance behind the block centre to line up, contact distance while pushing.
_HOVER, _LOW, _BEHIND, _CONTACT = 0.07, 0.025, 0.06, 0.035


def _panda_push(observation: np.ndarray, goal: np.ndarray, scale: float) -> np.ndarray:
    ee, block = observation[0:3], observation[6:9]
    offset = goal - block[:2]
    distance = float(np.hypot(*offset))
    if distance < 0.01:
        return np.zeros(3)  # there: hold still
    along_goal = offset / distance
    sideways = np.array([-along_goal[1], along_goal[0]])
    relative = ee[:2] - block[:2]
    along, lateral = float(relative @ along_goal), float(relative @ sideways)
    behind = block[:2] - _BEHIND * along_goal
    if abs(lateral) < 0.02 and ee[2] < _LOW + 0.015 and along < -0.025:
        # Lined up behind the block at table height: push it towards the goal.
        xy = block[:2] + (min(0.03, distance) - _CONTACT) * along_goal
        target = np.array([xy[0], xy[1], _LOW])
    elif along < -0.045 or ee[2] > _HOVER - 0.015:
        # Clear of the block: travel at hover height to the point behind it, then lower.
        near = float(np.hypot(*(ee[:2] - behind))) < 0.015
        target = np.array([behind[0], behind[1], _LOW if near else _HOVER])
    else:
        target = np.array([ee[0], ee[1], _HOVER])  # beside or in front of it: rise first
    return np.clip((target - ee) / scale, -1.0, 1.0)
