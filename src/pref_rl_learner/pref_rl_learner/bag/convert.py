"""Conversions between pref-rl's domain types and rosbags' message objects (no ROS import).

rosbags deserializes a CDR message into plain dataclass-like objects whose numeric arrays are
numpy arrays; these functions map them onto :mod:`pref_rl_learner.types` with the same checks
as the ROS conversions (``pref_rl_learner.ros.conversions``): array lengths must agree with
the declared shapes (:class:`MalformedMessageError` names the field), and the domain
dataclasses validate dtypes and finiteness. The ``*_to_msg`` direction serves tests and
offline tools that write bags without ROS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from rosbags.typesys.store import Typestore

from pref_rl_learner.errors import MalformedMessageError
from pref_rl_learner.types import (
    LearnerStatus,
    Phase,
    PolicyWeights,
    PreferenceLabel,
    PreferenceQuery,
    Segment,
)

_NS = 1_000_000_000
SEGMENT = 'pref_rl_msgs/msg/Segment'
QUERY = 'pref_rl_msgs/msg/PreferenceQuery'
LABEL = 'pref_rl_msgs/msg/PreferenceLabel'
WEIGHTS = 'pref_rl_msgs/msg/PolicyWeights'
LEARNER_STATUS = 'pref_rl_msgs/msg/LearnerStatus'
ROBOT_STATUS = 'pref_rl_msgs/msg/RobotStatus'

_STATUS_FIELDS = ('env_steps', 'gradient_steps', 'feedback_session', 'queries_published',
                  'labels_stored', 'labels_skipped', 'feedback_budget', 'reward_model_version',
                  'reward_model_accuracy', 'policy_version', 'mean_true_return', 'success_rate')


def _stamp(m: Any) -> int:
    return int(m.header.stamp.sec) * _NS + int(m.header.stamp.nanosec)


def _header(ts: Typestore, stamp_ns: int) -> Any:
    time = ts.types['builtin_interfaces/msg/Time'](sec=stamp_ns // _NS, nanosec=stamp_ns % _NS)
    return ts.types['std_msgs/msg/Header'](stamp=time, frame_id='')


def _in(field: str, values: Any, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    flat = np.asarray(values, dtype=dtype).reshape(-1)
    expected = math.prod(shape)
    if flat.size != expected:
        raise MalformedMessageError(
            f'{field}: {flat.size} values, but the declared shape {list(shape)} needs {expected}')
    return flat.reshape(shape)


def _out(arr: np.ndarray | None, dtype: type) -> np.ndarray:
    if arr is None:
        return np.zeros(0, dtype=dtype)
    return np.ascontiguousarray(arr, dtype=dtype).reshape(-1)


def segment_from_msg(m: Any) -> Segment:
    """rosbags ``pref_rl_msgs/msg/Segment`` -> :class:`Segment`."""
    t = int(m.length)
    obs_shape = (t, *(int(d) for d in m.observation_shape))
    act_shape = (t, *(int(d) for d in m.action_shape))
    fields: dict[str, Any] = {
        'observations': _in('observations', m.observations, np.float32, obs_shape),
        'actions': _in('actions', m.actions, np.float32, act_shape),
        'next_observations': _in('next_observations', m.next_observations, np.float32,
                                 obs_shape),
        'terminated': _in('terminated', m.terminated, np.uint8, (t,)) != 0,
        'truncated': _in('truncated', m.truncated, np.uint8, (t,)) != 0,
    }
    if len(m.rewards):
        fields['rewards'] = _in('rewards', m.rewards, np.float32, (t,))
    if len(m.success):
        fields['success'] = _in('success', m.success, np.uint8, (t,)) != 0
    if len(m.frames) or len(m.frame_shape):
        if len(m.frame_shape) != 3 or m.frame_stride < 1:
            raise MalformedMessageError(
                f'frames: frame_shape {list(m.frame_shape)} must be [H, W, C] and frame_stride '
                f'{m.frame_stride} >= 1')
        n_frames = math.ceil(t / m.frame_stride)
        fields['frames'] = _in('frames', m.frames, np.uint8,
                               (n_frames, *(int(d) for d in m.frame_shape)))
        fields['frame_stride'] = int(m.frame_stride)
    return Segment(segment_id=m.segment_id, task=m.task, source_id=m.source_id,
                   episode=int(m.episode), start_step=int(m.start_step),
                   policy_version=int(m.policy_version), stamp_ns=_stamp(m), **fields)


def segment_to_msg(ts: Typestore, s: Segment) -> Any:
    """:class:`Segment` -> rosbags ``pref_rl_msgs/msg/Segment``."""
    frames = s.frames
    return ts.types[SEGMENT](
        header=_header(ts, s.stamp_ns), segment_id=s.segment_id, source_id=s.source_id,
        task=s.task, episode=s.episode, start_step=s.start_step, length=s.length,
        policy_version=s.policy_version,
        observation_shape=np.array(s.observation_shape, dtype=np.uint32),
        action_shape=np.array(s.action_shape, dtype=np.uint32),
        observations=_out(s.observations, np.float32), actions=_out(s.actions, np.float32),
        next_observations=_out(s.next_observations, np.float32),
        rewards=_out(s.rewards, np.float32), terminated=_out(s.terminated, np.uint8),
        truncated=_out(s.truncated, np.uint8), success=_out(s.success, np.uint8),
        frame_shape=np.array(frames.shape[1:] if frames is not None else (), dtype=np.uint32),
        frame_stride=s.frame_stride, frames=_out(frames, np.uint8))


def query_from_msg(m: Any) -> PreferenceQuery:
    """rosbags ``PreferenceQuery`` -> :class:`PreferenceQuery`."""
    return PreferenceQuery(query_id=m.query_id, left=segment_from_msg(m.left),
                           right=segment_from_msg(m.right),
                           feedback_session=int(m.feedback_session), sampler=m.sampler,
                           reward_model_version=int(m.reward_model_version), stamp_ns=_stamp(m))


def query_to_msg(ts: Typestore, q: PreferenceQuery) -> Any:
    """:class:`PreferenceQuery` -> rosbags ``PreferenceQuery``."""
    return ts.types[QUERY](header=_header(ts, q.stamp_ns), query_id=q.query_id,
                           feedback_session=q.feedback_session, sampler=q.sampler,
                           reward_model_version=q.reward_model_version,
                           left=segment_to_msg(ts, q.left), right=segment_to_msg(ts, q.right))


def label_from_msg(m: Any) -> PreferenceLabel:
    """rosbags ``PreferenceLabel`` -> :class:`PreferenceLabel`."""
    return PreferenceLabel(query_id=m.query_id, choice=int(m.choice), labeler_id=m.labeler_id,
                           response_time_s=float(m.response_time), stamp_ns=_stamp(m))


def label_to_msg(ts: Typestore, label: PreferenceLabel) -> Any:
    """:class:`PreferenceLabel` -> rosbags ``PreferenceLabel``."""
    return ts.types[LABEL](header=_header(ts, label.stamp_ns), query_id=label.query_id,
                           choice=int(label.choice), labeler_id=label.labeler_id,
                           response_time=float(label.response_time_s))


def status_from_msg(m: Any) -> LearnerStatus:
    """rosbags ``LearnerStatus`` -> :class:`LearnerStatus`."""
    try:
        phase = Phase(m.phase)
    except ValueError:
        raise MalformedMessageError(f'phase {m.phase} is not a known phase') from None
    values = {name: getattr(m, name) for name in _STATUS_FIELDS}
    values = {k: float(v) if isinstance(v, float | np.floating) else int(v)
              for k, v in values.items()}
    return LearnerStatus(phase=phase, stamp_ns=_stamp(m), **values)


def status_to_msg(ts: Typestore, status: LearnerStatus) -> Any:
    """:class:`LearnerStatus` -> rosbags ``LearnerStatus``."""
    return ts.types[LEARNER_STATUS](header=_header(ts, status.stamp_ns), phase=int(status.phase),
                                    **{name: getattr(status, name) for name in _STATUS_FIELDS})


def weights_from_msg(m: Any) -> PolicyWeights:
    """rosbags ``PolicyWeights`` -> :class:`PolicyWeights`."""
    ranks, dims = [int(r) for r in m.ranks], [int(d) for d in m.dims]
    if len(ranks) != len(m.names) or sum(ranks) != len(dims):
        raise MalformedMessageError(
            f'{len(m.names)} names, {len(ranks)} ranks and {len(dims)} dims do not agree')
    data = np.asarray(m.data, dtype=np.float32)
    tensors, d, offset = {}, 0, 0
    for name, rank in zip(m.names, ranks, strict=True):
        shape = tuple(dims[d:d + rank])
        d += rank
        size = math.prod(shape)
        if offset + size > data.size:
            raise MalformedMessageError(f'tensor {name!r} {list(shape)} runs past the data')
        tensors[name] = data[offset:offset + size].reshape(shape)
        offset += size
    if offset != data.size:
        raise MalformedMessageError(f'{data.size - offset} data values belong to no tensor')
    return PolicyWeights(version=int(m.version), tensors=tensors, architecture=m.architecture,
                         stamp_ns=_stamp(m))


FROM_MSG: dict[str, Callable[[Any], Any]] = {
    SEGMENT: segment_from_msg, QUERY: query_from_msg, LABEL: label_from_msg,
    LEARNER_STATUS: status_from_msg, WEIGHTS: weights_from_msg,
}
"""Message type -> converter to the domain type (types not listed stay rosbags objects)."""

_TO_MSG: dict[type, tuple[str, Callable[[Typestore, Any], Any]]] = {
    Segment: (SEGMENT, segment_to_msg), PreferenceQuery: (QUERY, query_to_msg),
    PreferenceLabel: (LABEL, label_to_msg), LearnerStatus: (LEARNER_STATUS, status_to_msg),
}


def serialize(ts: Typestore, obj: Segment | PreferenceQuery | PreferenceLabel | LearnerStatus
              ) -> tuple[str, bytes]:
    """A domain object -> (message type, CDR bytes), as a ROS publisher would send it."""
    msgtype, to_msg = _TO_MSG[type(obj)]
    return msgtype, bytes(ts.serialize_cdr(to_msg(ts, obj), msgtype))
