"""Pure conversions between pref-rl's domain dataclasses and ``pref_rl_msgs`` messages.

Arrays cross through the fast paths: numpy -> ``array.array`` via one buffer copy on the way
out, and zero-copy read-only ``np.frombuffer`` views on the way in (no per-element Python
lists, which cost ~100x more for a 25-frame clip). Every ``*_from_ros`` checks that array
lengths agree with the declared shapes and raises :class:`MalformedMessageError` naming the
field; the domain dataclasses then validate dtypes and finiteness.
"""

from __future__ import annotations

import array
from collections.abc import Mapping
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time

from pref_rl_learner import decoding
from pref_rl_learner.decoding import STATUS_FIELDS
from pref_rl_learner.types import (
    LearnerStatus,
    PolicyWeights,
    PreferenceLabel,
    PreferenceQuery,
    Segment,
)
from pref_rl_msgs import msg

_NS = 1_000_000_000


def stamp_to_ros(stamp_ns: int) -> Time:
    """Nanoseconds since the epoch -> ``builtin_interfaces/Time``."""
    return Time(sec=stamp_ns // _NS, nanosec=stamp_ns % _NS)


def stamp_from_ros(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> nanoseconds since the epoch."""
    return stamp.sec * _NS + stamp.nanosec


def _out(arr: np.ndarray | None, typecode: str, dtype: type) -> array.array:
    """numpy -> array.array with one copy (the generated setters accept it unchecked)."""
    out = array.array(typecode)
    if arr is not None:
        out.frombytes(np.ascontiguousarray(arr, dtype=dtype).reshape(-1).view(np.uint8).data)
    return out


def segment_to_ros(segment: Segment) -> msg.Segment:
    """Domain :class:`Segment` -> ``pref_rl_msgs/Segment``."""
    m = msg.Segment()
    m.header.stamp = stamp_to_ros(segment.stamp_ns)
    m.segment_id = segment.segment_id
    m.source_id = segment.source_id
    m.task = segment.task
    m.episode = segment.episode
    m.start_step = segment.start_step
    m.length = segment.length
    m.policy_version = segment.policy_version
    m.observation_shape = array.array('I', segment.observation_shape)
    m.action_shape = array.array('I', segment.action_shape)
    m.observations = _out(segment.observations, 'f', np.float32)
    m.actions = _out(segment.actions, 'f', np.float32)
    m.next_observations = _out(segment.next_observations, 'f', np.float32)
    m.rewards = _out(segment.rewards, 'f', np.float32)
    m.terminated = _out(segment.terminated, 'B', np.uint8)
    m.truncated = _out(segment.truncated, 'B', np.uint8)
    m.success = _out(segment.success, 'B', np.uint8)
    if segment.frames is not None:
        m.frame_shape = array.array('I', segment.frames.shape[1:])
        m.frame_stride = segment.frame_stride
        m.frames = _out(segment.frames, 'B', np.uint8)
    return m


def segment_from_ros(m: msg.Segment) -> Segment:
    """``pref_rl_msgs/Segment`` -> domain :class:`Segment` (arrays are read-only views).

    Raises:
        MalformedMessageError: an array's length disagrees with ``length`` and the shapes.
        InvalidSegmentError: the arrays are consistent but invalid (NaN, no steps, ...).
    """
    return decoding.segment(m)


def query_to_ros(query: PreferenceQuery) -> msg.PreferenceQuery:
    """Domain :class:`PreferenceQuery` -> ``pref_rl_msgs/PreferenceQuery``."""
    m = msg.PreferenceQuery()
    m.header.stamp = stamp_to_ros(query.stamp_ns)
    m.query_id = query.query_id
    m.feedback_session = query.feedback_session
    m.sampler = query.sampler
    m.reward_model_version = query.reward_model_version
    m.left = segment_to_ros(query.left)
    m.right = segment_to_ros(query.right)
    return m


def query_from_ros(m: msg.PreferenceQuery) -> PreferenceQuery:
    """``pref_rl_msgs/PreferenceQuery`` -> domain :class:`PreferenceQuery`."""
    return decoding.query(m)


def label_to_ros(label: PreferenceLabel) -> msg.PreferenceLabel:
    """Domain :class:`PreferenceLabel` -> ``pref_rl_msgs/PreferenceLabel``."""
    m = msg.PreferenceLabel()
    m.header.stamp = stamp_to_ros(label.stamp_ns)
    m.query_id = label.query_id
    m.choice = int(label.choice)
    m.labeler_id = label.labeler_id
    m.response_time = float(label.response_time_s)
    return m


def label_from_ros(m: msg.PreferenceLabel) -> PreferenceLabel:
    """``pref_rl_msgs/PreferenceLabel`` -> domain :class:`PreferenceLabel`.

    Raises:
        InvalidLabelError: unknown choice, empty query id or bad response time.
    """
    return decoding.label(m)


def weights_to_ros(weights: PolicyWeights) -> msg.PolicyWeights:
    """Domain :class:`PolicyWeights` -> ``pref_rl_msgs/PolicyWeights`` (one concatenation)."""
    m = msg.PolicyWeights()
    m.header.stamp = stamp_to_ros(weights.stamp_ns)
    m.version = weights.version
    m.architecture = weights.architecture
    tensors = list(weights.tensors.values())
    m.names = list(weights.tensors.keys())
    m.ranks = array.array('I', (t.ndim for t in tensors))
    m.dims = array.array('I', (d for t in tensors for d in t.shape))
    if tensors:
        m.data = _out(np.concatenate([t.ravel() for t in tensors]), 'f', np.float32)
    return m


def weights_from_ros(m: msg.PolicyWeights) -> PolicyWeights:
    """``pref_rl_msgs/PolicyWeights`` -> domain :class:`PolicyWeights` (views into the message).

    Raises:
        MalformedMessageError: names, ranks, dims and data do not agree.
        InvalidWeightsError: non-finite values.
    """
    return decoding.weights(m)


def status_to_ros(status: LearnerStatus) -> msg.LearnerStatus:
    """Domain :class:`LearnerStatus` -> ``pref_rl_msgs/LearnerStatus``."""
    m = msg.LearnerStatus()
    m.header.stamp = stamp_to_ros(status.stamp_ns)
    m.phase = int(status.phase)
    for name in STATUS_FIELDS:
        setattr(m, name, getattr(status, name))
    return m


def status_from_ros(m: msg.LearnerStatus) -> LearnerStatus:
    """``pref_rl_msgs/LearnerStatus`` -> domain :class:`LearnerStatus`."""
    return decoding.learner_status(m)


def publisher_gid(info: Mapping[str, Any]) -> bytes:
    """The sending publisher's global id from a subscription callback's ``MessageInfo``
    (empty if the middleware gives none): a new id on a latched topic is a restarted node."""
    gid = info.get('publisher_gid') or {}
    return bytes(gid.get('data', b''))
