"""Domain data of pref-rl: segments, queries, labels, policy weights and learner status.

Plain frozen dataclasses over numpy arrays, validated on construction so that bad data is
rejected where it enters (with an error naming the field), never deep inside training.
Arrays may be read-only views (e.g. onto a received ROS message); copy before mutating.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pref_rl_learner.errors import (
    InvalidLabelError,
    InvalidQueryError,
    InvalidSegmentError,
    InvalidWeightsError,
)


class Choice(enum.IntEnum):
    """A labeller's answer to a preference query (values match ``PreferenceLabel.msg``)."""

    LEFT = 1
    """The left (first) segment is better."""
    RIGHT = 2
    """The right (second) segment is better."""
    EQUAL = 3
    """Both are equally good: trained on as a 0.5/0.5 target."""
    INCOMPARABLE = 4
    """They cannot be compared: stored, never trained on."""
    SKIP = 5
    """No answer: stored, counts against the feedback budget."""


class Phase(enum.IntEnum):
    """Phase of the learner (values match ``LearnerStatus.msg``)."""

    WAITING = 0
    SEED = 1
    UNSUPERVISED = 2
    LEARNING = 3
    FEEDBACK = 4
    DONE = 5


def _checked_array(name: str, value: object, dtype: np.dtype, finite: bool) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != dtype:
        if dtype == np.bool_ and arr.dtype.kind in 'biu':
            arr = arr.astype(np.bool_)
        elif dtype.kind == 'f' and arr.dtype.kind in 'fiu':
            arr = arr.astype(dtype)
        else:
            raise InvalidSegmentError(f'{name}: dtype {arr.dtype} cannot be used as {dtype}')
    if finite and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InvalidSegmentError(f'{name}: {bad} non-finite value(s) (NaN or inf)')
    return arr


@dataclass(frozen=True, eq=False)
class Segment:
    """A contiguous run of ``T`` transitions from one episode of one robot or env."""

    segment_id: str
    """Unique id (hex uuid) assigned by the producer."""
    task: str
    """Task name, e.g. ``point_mass`` or ``button-press-v3``."""
    observations: np.ndarray
    """float32 ``[T, *obs_shape]``: o_t (uint8 pixels are kept as uint8)."""
    actions: np.ndarray
    """float32 ``[T, *act_shape]``: a_t."""
    next_observations: np.ndarray
    """float32 ``[T, *obs_shape]``: o_{t+1} (uint8 pixels are kept as uint8)."""
    terminated: np.ndarray
    """bool ``[T]``: the episode ended in a terminal state after step t."""
    truncated: np.ndarray
    """bool ``[T]``: the episode was cut by a time limit after step t."""
    rewards: np.ndarray | None = None
    """float32 ``[T]`` true rewards when the source knows them."""
    success: np.ndarray | None = None
    """bool ``[T]`` task success flags when the task defines success."""
    frames: np.ndarray | None = None
    """uint8 ``[F, H, W, C]`` rendered frames, one per ``frame_stride`` steps."""
    frame_stride: int = 0
    """Steps between frames (0 when there are no frames)."""
    source_id: str = ''
    """Id of the producing robot/env instance."""
    episode: int = 0
    """Episode index within the source."""
    start_step: int = 0
    """Index within the episode of the first transition."""
    policy_version: int = 0
    """Version of the policy weights that chose the actions."""
    stamp_ns: int = 0
    """Wall-clock time (ns since the epoch) at which the segment was closed."""

    def __post_init__(self) -> None:
        f32, b = np.dtype(np.float32), np.dtype(np.bool_)
        set_ = object.__setattr__
        for name in ('observations', 'actions', 'next_observations'):
            value = getattr(self, name)
            if name != 'actions' and getattr(value, 'dtype', None) == np.uint8:
                continue  # pixels stay one byte per value (the cnn encoder scales them)
            set_(self, name, _checked_array(name, value, f32, finite=True))
        for name in ('terminated', 'truncated'):
            set_(self, name, _checked_array(name, getattr(self, name), b, finite=False))
        if self.observations.ndim < 2 or self.actions.ndim < 2:
            raise InvalidSegmentError(
                f'observations {self.observations.shape} and actions {self.actions.shape} '
                'must be [T, ...] with at least 2 dimensions')
        length = self.observations.shape[0]
        if length == 0:
            raise InvalidSegmentError('a segment needs at least one transition')
        if self.next_observations.shape != self.observations.shape:
            raise InvalidSegmentError(
                f'next_observations {self.next_observations.shape} != observations '
                f'{self.observations.shape}')
        if self.actions.shape[0] != length:
            raise InvalidSegmentError(f'actions has {self.actions.shape[0]} steps, not {length}')
        for name in ('terminated', 'truncated'):
            if getattr(self, name).shape != (length,):
                raise InvalidSegmentError(
                    f'{name} has shape {getattr(self, name).shape}, expected ({length},)')
        if self.rewards is not None:
            set_(self, 'rewards', _checked_array('rewards', self.rewards, f32, finite=True))
            if self.rewards.shape != (length,):
                raise InvalidSegmentError(
                    f'rewards has shape {self.rewards.shape}, expected ({length},)')
        if self.success is not None:
            set_(self, 'success', _checked_array('success', self.success, b, finite=False))
            if self.success.shape != (length,):
                raise InvalidSegmentError(
                    f'success has shape {self.success.shape}, expected ({length},)')
        self._check_frames(length)
        if not self.segment_id:
            raise InvalidSegmentError('segment_id is empty')
        if min(self.episode, self.start_step, self.policy_version) < 0:
            raise InvalidSegmentError('episode, start_step and policy_version must be >= 0')

    def _check_frames(self, length: int) -> None:
        if self.frames is None:
            if self.frame_stride != 0:
                raise InvalidSegmentError('frame_stride is set but there are no frames')
            return
        frames = np.asarray(self.frames)
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise InvalidSegmentError(
                f'frames must be uint8 [F, H, W, C], got {frames.dtype} {frames.shape}')
        if self.frame_stride < 1:
            raise InvalidSegmentError('frames are attached but frame_stride < 1')
        expected = math.ceil(length / self.frame_stride)
        if frames.shape[0] != expected:
            raise InvalidSegmentError(
                f'{frames.shape[0]} frames for {length} steps at stride {self.frame_stride}, '
                f'expected {expected}')
        object.__setattr__(self, 'frames', frames)

    @property
    def length(self) -> int:
        """Number of transitions ``T``."""
        return int(self.observations.shape[0])

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(self.observations.shape[1:])

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action."""
        return tuple(self.actions.shape[1:])


@dataclass(frozen=True, eq=False)
class PreferenceQuery:
    """A request for a preference between two segments."""

    query_id: str
    """Unique id; a label answers exactly this id."""
    left: Segment
    """First clip (shown on the left)."""
    right: Segment
    """Second clip (shown on the right)."""
    feedback_session: int = 0
    """Index of the feedback session that produced the query."""
    sampler: str = ''
    """Query-selection rule used, e.g. ``uniform`` or ``disagreement``."""
    reward_model_version: int = 0
    """Reward model used to select the pair (0: none yet)."""
    stamp_ns: int = 0
    """When the query was selected (ns since the epoch)."""

    def __post_init__(self) -> None:
        if not self.query_id:
            raise InvalidQueryError('query_id is empty')
        if self.left.observation_shape != self.right.observation_shape:
            raise InvalidQueryError(
                f'left and right observation shapes differ: {self.left.observation_shape} vs '
                f'{self.right.observation_shape}')


@dataclass(frozen=True)
class PreferenceLabel:
    """One answer to a :class:`PreferenceQuery`."""

    query_id: str
    """Id of the query answered."""
    choice: Choice
    """The answer."""
    labeler_id: str = ''
    """Who answered: a person's id or ``teacher/<preset>``."""
    response_time_s: float = 0.0
    """Seconds from the query being shown to the answer."""
    stamp_ns: int = 0
    """When the answer was given (ns since the epoch)."""

    def __post_init__(self) -> None:
        if not self.query_id:
            raise InvalidLabelError('query_id is empty')
        try:
            object.__setattr__(self, 'choice', Choice(self.choice))
        except ValueError:
            valid = ', '.join(f'{c.name}={c.value}' for c in Choice)
            raise InvalidLabelError(
                f'choice {self.choice!r} is not one of {valid}') from None
        if not (math.isfinite(self.response_time_s) and self.response_time_s >= 0):
            raise InvalidLabelError(f'response_time_s {self.response_time_s} must be finite, >= 0')


@dataclass(frozen=True, eq=False)
class PolicyWeights:
    """The actor's parameters as named float32 arrays, with a monotone version."""

    version: int
    """Increases by one with every published update."""
    tensors: Mapping[str, np.ndarray]
    """Parameter name -> float32 array (any shape, a scalar included)."""
    architecture: str = ''
    """JSON describing the network, enough to rebuild it."""
    stamp_ns: int = 0
    """When the weights were exported (ns since the epoch)."""

    def __post_init__(self) -> None:
        tensors = {}
        for name, value in self.tensors.items():
            arr = np.asarray(value)
            if arr.dtype.kind not in 'fiu':
                raise InvalidWeightsError(f'tensor {name!r}: dtype {arr.dtype} is not numeric')
            arr = arr.astype(np.float32, copy=False)
            if not np.isfinite(arr).all():
                raise InvalidWeightsError(f'tensor {name!r} has non-finite values')
            tensors[name] = arr
        object.__setattr__(self, 'tensors', tensors)


@dataclass(frozen=True)
class LearnerStatus:
    """Progress of the learner (mirrors ``LearnerStatus.msg``)."""

    phase: Phase = Phase.WAITING
    env_steps: int = 0
    gradient_steps: int = 0
    feedback_session: int = 0
    queries_published: int = 0
    labels_stored: int = 0
    labels_skipped: int = 0
    feedback_budget: int = 0
    reward_model_version: int = 0
    reward_model_accuracy: float = float('nan')
    """Validation accuracy of the reward model (NaN: not measured)."""
    policy_version: int = 0
    mean_true_return: float = float('nan')
    """Mean true return of recent episodes (NaN: unknown)."""
    success_rate: float = float('nan')
    """Success rate of recent episodes (NaN: unknown)."""
    stamp_ns: int = 0
