"""Conversions between pref-rl's domain types and rosbags' message objects (no ROS import).

rosbags deserializes a CDR message into plain dataclass-like objects whose numeric arrays are
numpy arrays; :data:`FROM_MSG` maps them onto :mod:`pref_rl_learner.types` with the decoders
the ROS conversions use too (:mod:`pref_rl_learner.decoding`: array lengths must agree with
the declared shapes, :class:`MalformedMessageError` names the field). The ``*_to_msg``
direction serves tests and offline tools that write bags without ROS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rosbags.typesys.store import Typestore

from pref_rl_learner import decoding
from pref_rl_learner.decoding import STATUS_FIELDS
from pref_rl_learner.types import (
    LearnerStatus,
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


def _header(ts: Typestore, stamp_ns: int) -> Any:
    time = ts.types['builtin_interfaces/msg/Time'](sec=stamp_ns // _NS, nanosec=stamp_ns % _NS)
    return ts.types['std_msgs/msg/Header'](stamp=time, frame_id='')


def _out(arr: np.ndarray | None, dtype: type) -> np.ndarray:
    if arr is None:
        return np.zeros(0, dtype=dtype)
    return np.ascontiguousarray(arr, dtype=dtype).reshape(-1)


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


def query_to_msg(ts: Typestore, q: PreferenceQuery) -> Any:
    """:class:`PreferenceQuery` -> rosbags ``PreferenceQuery``."""
    return ts.types[QUERY](header=_header(ts, q.stamp_ns), query_id=q.query_id,
                           feedback_session=q.feedback_session, sampler=q.sampler,
                           reward_model_version=q.reward_model_version,
                           left=segment_to_msg(ts, q.left), right=segment_to_msg(ts, q.right))


def label_to_msg(ts: Typestore, label: PreferenceLabel) -> Any:
    """:class:`PreferenceLabel` -> rosbags ``PreferenceLabel``."""
    return ts.types[LABEL](header=_header(ts, label.stamp_ns), query_id=label.query_id,
                           choice=int(label.choice), labeler_id=label.labeler_id,
                           response_time=float(label.response_time_s))


def status_to_msg(ts: Typestore, status: LearnerStatus) -> Any:
    """:class:`LearnerStatus` -> rosbags ``LearnerStatus``."""
    return ts.types[LEARNER_STATUS](header=_header(ts, status.stamp_ns), phase=int(status.phase),
                                    **{name: getattr(status, name) for name in STATUS_FIELDS})


FROM_MSG: dict[str, Callable[[Any], Any]] = {
    SEGMENT: decoding.segment, QUERY: decoding.query, LABEL: decoding.label,
    LEARNER_STATUS: decoding.learner_status, WEIGHTS: decoding.weights,
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
