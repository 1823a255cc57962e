"""The actor behind the ``robot`` node, ROS-free: env backend, local policy, frames, loop.

- :mod:`.actor`: :class:`Actor` (the loop: stepping, flow control, e-stop, resets) and its
  :class:`ActorConfig`;
- :mod:`.policy`: :class:`LocalPolicy`, the robot's checked copy of the learner's policy;
- :mod:`.frame_cache`: :class:`FrameCache`, frames of recent segments by id;
- :mod:`.backend`: :func:`make_backend` (sim or Polymetis) and the optional robot hooks.
"""

from pref_rl_robot.actor.actor import (
    Actor,
    ActorConfig,
    ActorStatus,
    EstopEngagedError,
    Mode,
)
from pref_rl_robot.actor.backend import BACKENDS, RobotHooks, make_backend
from pref_rl_robot.actor.frame_cache import FrameCache, SegmentFrames, UnknownSegmentError
from pref_rl_robot.actor.policy import LocalPolicy, WeightsRejectedError

__all__ = [
    'BACKENDS',
    'Actor',
    'ActorConfig',
    'ActorStatus',
    'EstopEngagedError',
    'FrameCache',
    'LocalPolicy',
    'Mode',
    'RobotHooks',
    'SegmentFrames',
    'UnknownSegmentError',
    'WeightsRejectedError',
    'make_backend',
]
