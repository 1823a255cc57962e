"""Pure conversions between the robot side's domain data and ``pref_rl_msgs`` messages.

Segments and policy weights convert with :mod:`pref_rl_learner.ros.conversions`; this module
holds what only the robot side has: its status and the frames it serves.
"""

from __future__ import annotations

import array

import numpy as np

from pref_rl_learner.errors import MalformedMessageError
from pref_rl_learner.ros.conversions import stamp_from_ros, stamp_to_ros
from pref_rl_msgs import msg, srv
from pref_rl_robot.actor import ActorStatus, Mode, SegmentFrames

_STATUS_FIELDS = ('source_id', 'task', 'episode', 'env_steps', 'policy_version',
                  'weights_rejected', 'safety_interventions', 'watchdog_holds')


def robot_status_to_ros(status: ActorStatus) -> msg.RobotStatus:
    """Domain :class:`ActorStatus` -> ``pref_rl_msgs/RobotStatus``."""
    m = msg.RobotStatus()
    m.header.stamp = stamp_to_ros(status.stamp_ns)
    m.mode = int(status.mode)
    m.segments_published = status.segments
    for name in _STATUS_FIELDS:
        setattr(m, name, getattr(status, name))
    return m


def robot_status_from_ros(m: msg.RobotStatus) -> ActorStatus:
    """``pref_rl_msgs/RobotStatus`` -> domain :class:`ActorStatus`.

    Raises:
        MalformedMessageError: ``mode`` is not a known mode.
    """
    try:
        mode = Mode(m.mode)
    except ValueError:
        raise MalformedMessageError(f'mode {m.mode} is not a known robot mode') from None
    return ActorStatus(mode=mode, segments=m.segments_published,
                       stamp_ns=stamp_from_ros(m.header.stamp),
                       **{name: getattr(m, name) for name in _STATUS_FIELDS})


def frames_to_response(frames: SegmentFrames,
                       response: srv.GetSegmentFrames.Response) -> srv.GetSegmentFrames.Response:
    """Fill a successful ``GetSegmentFrames`` response with ``frames`` (one buffer copy)."""
    response.success = True
    response.message = f'{frames.frames.shape[0]} frames'
    response.frame_shape = array.array('I', frames.frames.shape[1:])
    response.frame_stride = frames.frame_stride
    data = array.array('B')
    data.frombytes(np.ascontiguousarray(frames.frames, dtype=np.uint8).data)
    response.frames = data
    return response


def frames_from_response(response: srv.GetSegmentFrames.Response) -> SegmentFrames:
    """A successful ``GetSegmentFrames`` response -> :class:`SegmentFrames` (read-only view).

    Raises:
        MalformedMessageError: no success, or the pixel count disagrees with the frame shape.
    """
    if not response.success:
        raise MalformedMessageError(f'no frames: {response.message}')
    shape = tuple(response.frame_shape)
    flat = np.frombuffer(response.frames, dtype=np.uint8)
    frame_size = int(np.prod(shape)) if len(shape) == 3 else 0
    if not frame_size or flat.size % frame_size or response.frame_stride < 1:
        raise MalformedMessageError(
            f'frames: {flat.size} pixels do not make frames of shape {list(shape)} '
            f'(frame_stride {response.frame_stride})')
    return SegmentFrames(flat.reshape(-1, *shape), response.frame_stride)
