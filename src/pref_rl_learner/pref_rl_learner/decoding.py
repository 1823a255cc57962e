"""Domain types from message-shaped objects: ``pref_rl_msgs`` as rclpy or rosbags gives them.

An rclpy message (arrays as ``array.array``) and a message rosbags deserialized from a bag
(arrays as numpy arrays) have the same fields, so one set of decoders serves the nodes
(:mod:`pref_rl_learner.ros.conversions`) and the bag reader (:mod:`pref_rl_learner.bag`).
Arrays become zero-copy read-only views where the buffer allows. Every decoder checks that
array lengths agree with the declared shapes and raises :class:`MalformedMessageError` naming
the field; the domain dataclasses then validate dtypes and finiteness.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

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

STATUS_FIELDS = ('env_steps', 'gradient_steps', 'feedback_session', 'queries_published',
                 'labels_stored', 'labels_skipped', 'feedback_budget', 'reward_model_version',
                 'reward_model_accuracy', 'policy_version', 'mean_true_return', 'success_rate')
"""The ``LearnerStatus`` fields that map one-to-one onto the message."""
_FLOAT_STATUS_FIELDS = {'reward_model_accuracy', 'mean_true_return', 'success_rate'}


def stamp_ns(m: Any) -> int:
    """``m.header.stamp`` as nanoseconds since the epoch."""
    return int(m.header.stamp.sec) * _NS + int(m.header.stamp.nanosec)


def _flat(values: Any, dtype: type) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(dtype, copy=False).reshape(-1)
    return np.frombuffer(values, dtype=dtype)  # array.array: a read-only view, no copy


def _in(field: str, values: Any, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    flat = _flat(values, dtype)
    expected = math.prod(shape)
    if flat.size != expected:
        raise MalformedMessageError(
            f'{field}: {flat.size} values, but the declared shape {list(shape)} needs {expected}')
    return flat.reshape(shape)


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def segment(m: Any) -> Segment:
    """A ``Segment`` message -> :class:`Segment`.

    Raises:
        MalformedMessageError: an array's length disagrees with ``length`` and the shapes.
        InvalidSegmentError: the arrays are consistent but invalid (NaN, no steps, ...).
    """
    t = int(m.length)
    obs_shape, act_shape = (t, *_ints(m.observation_shape)), (t, *_ints(m.action_shape))
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
                               (n_frames, *_ints(m.frame_shape)))
        fields['frame_stride'] = int(m.frame_stride)
    return Segment(segment_id=m.segment_id, task=m.task, source_id=m.source_id,
                   episode=int(m.episode), start_step=int(m.start_step),
                   policy_version=int(m.policy_version), stamp_ns=stamp_ns(m), **fields)


def query(m: Any) -> PreferenceQuery:
    """A ``PreferenceQuery`` message -> :class:`PreferenceQuery`."""
    return PreferenceQuery(query_id=m.query_id, left=segment(m.left), right=segment(m.right),
                           feedback_session=int(m.feedback_session), sampler=m.sampler,
                           reward_model_version=int(m.reward_model_version),
                           stamp_ns=stamp_ns(m))


def label(m: Any) -> PreferenceLabel:
    """A ``PreferenceLabel`` message -> :class:`PreferenceLabel`.

    Raises:
        InvalidLabelError: unknown choice, empty query id or bad response time.
    """
    return PreferenceLabel(query_id=m.query_id, choice=int(m.choice), labeler_id=m.labeler_id,
                           response_time_s=float(m.response_time), stamp_ns=stamp_ns(m))


def weights(m: Any) -> PolicyWeights:
    """A ``PolicyWeights`` message -> :class:`PolicyWeights` (views into its data)."""
    ranks, dims = _ints(m.ranks), _ints(m.dims)
    if len(ranks) != len(m.names):
        raise MalformedMessageError(f'{len(m.names)} names but {len(ranks)} ranks')
    if sum(ranks) != len(dims):
        raise MalformedMessageError(f'ranks sum to {sum(ranks)} but there are {len(dims)} dims')
    data = _flat(m.data, np.float32)
    tensors, d, offset = {}, 0, 0
    for name, rank in zip(m.names, ranks, strict=True):
        shape = dims[d:d + rank]
        d += rank
        size = math.prod(shape)
        if offset + size > data.size:
            raise MalformedMessageError(f'tensor {name!r} {list(shape)} runs past the data')
        tensors[name] = data[offset:offset + size].reshape(shape)
        offset += size
    if offset != data.size:
        raise MalformedMessageError(f'{data.size - offset} data values belong to no tensor')
    return PolicyWeights(version=int(m.version), tensors=tensors, architecture=m.architecture,
                         stamp_ns=stamp_ns(m))


def learner_status(m: Any) -> LearnerStatus:
    """A ``LearnerStatus`` message -> :class:`LearnerStatus`."""
    try:
        phase = Phase(m.phase)
    except ValueError:
        raise MalformedMessageError(f'phase {m.phase} is not a known phase') from None
    values = {name: (float if name in _FLOAT_STATUS_FIELDS else int)(getattr(m, name))
              for name in STATUS_FIELDS}
    return LearnerStatus(phase=phase, stamp_ns=stamp_ns(m), **values)
