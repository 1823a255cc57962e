"""Experts for the goal-conditioned tasks (point mass, reacher, Panda reach and push).

Scripted controllers that read the goal from the observation (every goal task shows it), so
one controller serves every goal, and :func:`retarget` aims any expert at another goal by
rewriting the goal part of the observation it sees (the episode's reward stays that of the
task's own goal: a cross-goal episode). (SAC experts trained on the true reward, as the few-shot
paper used for block push, are read by ``pref_rl_learner.fewshot.experts``.)

* point mass: PD control of the force towards the goal.
* reacher: damped-least-squares inverse kinematics of the 2-link arm gives desired joint
  velocities; the torque tracks them.
* panda_reach: proportional end-effector displacement towards the goal.
* panda_push: a pusher that rises above the block, moves behind it (opposite the goal),
  lowers to the table and pushes along the block-to-goal line, correcting sideways drift;
  it stops within 1 cm of the goal. Reaches the 5 cm success radius for all 16 training
  goals in 10-30 steps of the 300-step episode.
"""

from __future__ import annotations

import math

import numpy as np

from pref_rl_learner.fewshot.rollout import CollectError, Policy

GOAL_FAMILIES = ('point_mass', 'reacher', 'panda_reach', 'panda_push')
"""Tasks whose observation holds the goal and whose goals are fixed sets."""

_GOAL_SLICE = {'point_mass': slice(4, 6), 'reacher': slice(4, 6),
               'panda_reach': slice(6, 9), 'panda_push': slice(9, 11)}


def with_goal(family: str, observation: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """``observation`` of task ``family`` as it would read with goal ``goal``."""
    out = np.array(observation, np.float32)
    part = _GOAL_SLICE[family]
    if family == 'reacher':  # entries 8:10 are fingertip - goal
        out[8:10] += out[part] - np.asarray(goal, np.float32)
    out[part] = goal
    return out


def retarget(policy: Policy, family: str, goal: np.ndarray) -> Policy:
    """``policy`` acting as if the goal were ``goal``."""
    goal = np.array(goal, np.float32)
    return lambda observation: policy(with_goal(family, observation, goal))


def scripted_expert(family: str) -> Policy:
    """The scripted controller of goal task ``family``.

    Raises:
        CollectError: ``family`` is not a goal task.
    """
    if family == 'point_mass':
        return _point_mass
    if family == 'reacher':
        from pref_rl_robot.tasks.reacher import LINK_LENGTHS

        return lambda observation: _reacher(observation, *LINK_LENGTHS)
    if family in ('panda_reach', 'panda_push'):
        from pref_rl_robot.tasks.panda_tasks import ACTION_SCALE_M

        controller = _panda_reach if family == 'panda_reach' else _panda_push
        return lambda observation: controller(observation, ACTION_SCALE_M)
    raise CollectError(f'no scripted expert for {family!r}; goal tasks: '
                       f'{", ".join(GOAL_FAMILIES)}')


def _point_mass(observation: np.ndarray) -> np.ndarray:
    position, velocity, goal = observation[0:2], observation[2:4], observation[4:6]
    return np.clip(3.0 * (goal - position) - velocity, -1.0, 1.0)


def _reacher(observation: np.ndarray, l1: float, l2: float) -> np.ndarray:
    cos0, cos1, sin0, sin1 = (float(v) for v in observation[0:4])
    joint_velocity, error = observation[6:8], -observation[8:10]  # error: goal - fingertip
    q0 = math.atan2(sin0, cos0)
    q01 = q0 + math.atan2(sin1, cos1)
    # Jacobian of the fingertip position (x, y) with respect to the joint angles.
    jacobian = np.array([[-l1 * math.sin(q0) - l2 * math.sin(q01), -l2 * math.sin(q01)],
                         [l1 * math.cos(q0) + l2 * math.cos(q01), l2 * math.cos(q01)]])
    # Damped least squares: joint velocities that move the tip towards the goal.
    desired = 10.0 * jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + 1e-3 * np.eye(2),
                                                  error)
    return np.clip(0.5 * (desired - joint_velocity), -1.0, 1.0)


def _panda_reach(observation: np.ndarray, scale: float) -> np.ndarray:
    ee, goal = observation[0:3], observation[6:9]
    return np.clip(0.8 * (goal - ee) / scale, -1.0, 1.0)


# Push geometry, m: heights of the end effector above the table while travelling and
# pushing, distance behind the block centre to line up, contact distance while pushing.
_HOVER, _LOW, _BEHIND, _CONTACT = 0.07, 0.025, 0.06, 0.035


def _panda_push(observation: np.ndarray, scale: float) -> np.ndarray:
    ee, block, goal = observation[0:3], observation[6:9], observation[9:11]
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
