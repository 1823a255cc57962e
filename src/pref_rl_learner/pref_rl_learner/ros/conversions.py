"""Pure conversions between pref-rl's domain dataclasses and ``pref_rl_msgs`` messages.

Arrays cross through the fast paths: numpy -> ``array.array`` via one buffer copy on the way
out, and zero-copy read-only ``np.frombuffer`` views on the way in (no per-element Python
lists, which cost ~100x more for a 25-frame clip). Every ``*_from_ros`` checks that array
lengths agree with the declared shapes and raises :class:`MalformedMessageError` naming the
field; the domain dataclasses then validate dtypes and finiteness.
"""

from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time

from pref_rl_learner.errors import MalformedMessageError
from pref_rl_learner.types import (
    LearnerStatus,
    Phase,
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


def _in(field: str, values: array.array, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """array.array -> read-only numpy view with the given shape, or a clear error."""
    flat = np.frombuffer(values, dtype=dtype)
    expected = math.prod(shape)
    if flat.size != expected:
        raise MalformedMessageError(
            f'{field}: {flat.size} values, but the declared shape {list(shape)} needs {expected}')
    return flat.reshape(shape)


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
    t = m.length
    obs_shape, act_shape = (t, *m.observation_shape), (t, *m.action_shape)
    fields = {
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
        fields['frames'] = _in('frames', m.frames, np.uint8, (n_frames, *m.frame_shape))
        fields['frame_stride'] = m.frame_stride
    return Segment(
        segment_id=m.segment_id,
        task=m.task,
        source_id=m.source_id,
        episode=m.episode,
        start_step=m.start_step,
        policy_version=m.policy_version,
        stamp_ns=stamp_from_ros(m.header.stamp),
        **fields,
    )


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
    return PreferenceQuery(
        query_id=m.query_id,
        left=segment_from_ros(m.left),
        right=segment_from_ros(m.right),
        feedback_session=m.feedback_session,
        sampler=m.sampler,
        reward_model_version=m.reward_model_version,
        stamp_ns=stamp_from_ros(m.header.stamp),
    )


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
    return PreferenceLabel(
        query_id=m.query_id,
        choice=m.choice,
        labeler_id=m.labeler_id,
        response_time_s=m.response_time,
        stamp_ns=stamp_from_ros(m.header.stamp),
    )


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
    """``pref_rl_msgs/PolicyWeights`` -> domain :class:`PolicyWeights` (views into the message)."""
    if len(m.ranks) != len(m.names):
        raise MalformedMessageError(f'{len(m.names)} names but {len(m.ranks)} ranks')
    if sum(m.ranks) != len(m.dims):
        raise MalformedMessageError(
            f'ranks sum to {sum(m.ranks)} but there are {len(m.dims)} dims')
    data = np.frombuffer(m.data, dtype=np.float32)
    tensors, d, offset = {}, 0, 0
    for name, rank in zip(m.names, m.ranks, strict=True):
        shape = tuple(m.dims[d:d + rank])
        d += rank
        size = math.prod(shape)
        if offset + size > data.size:
            raise MalformedMessageError(f'tensor {name!r} {list(shape)} runs past the data')
        tensors[name] = data[offset:offset + size].reshape(shape)
        offset += size
    if offset != data.size:
        raise MalformedMessageError(f'{data.size - offset} data values belong to no tensor')
    return PolicyWeights(version=m.version, tensors=tensors, architecture=m.architecture,
                         stamp_ns=stamp_from_ros(m.header.stamp))


_STATUS_FIELDS = ('env_steps', 'gradient_steps', 'feedback_session', 'queries_published',
                  'labels_stored', 'labels_skipped', 'feedback_budget', 'reward_model_version',
                  'reward_model_accuracy', 'policy_version', 'mean_true_return', 'success_rate')


def status_to_ros(status: LearnerStatus) -> msg.LearnerStatus:
    """Domain :class:`LearnerStatus` -> ``pref_rl_msgs/LearnerStatus``."""
    m = msg.LearnerStatus()
    m.header.stamp = stamp_to_ros(status.stamp_ns)
    m.phase = int(status.phase)
    for name in _STATUS_FIELDS:
        setattr(m, name, getattr(status, name))
    return m


def status_from_ros(m: msg.LearnerStatus) -> LearnerStatus:
    """``pref_rl_msgs/LearnerStatus`` -> domain :class:`LearnerStatus`."""
    try:
        phase = Phase(m.phase)
    except ValueError:
        raise MalformedMessageError(f'phase {m.phase} is not a known phase') from None
    return LearnerStatus(phase=phase, stamp_ns=stamp_from_ros(m.header.stamp),
                         **{name: getattr(m, name) for name in _STATUS_FIELDS})

