"""What the wrapper records: observation transforms, action encoding and clips in flight.

The reward model never sees raw env observations: an ``obs_transform`` maps each one (an
array, a dict, an image of any size) to an array of one fixed shape. Pixels go through
:func:`pixel_transform`, which turns ``uint8 [H, W, C]`` frames into ``uint8 [C, H, W]``, the
layout of the ensemble's ``cnn`` encoder (which scales them to [0, 1]); frames stay one byte
per value in clips, the worker's pool and the preference store. Clips of ``segment_length``
steps, the last one of an episode aligned to its end, are sent to the worker as
:class:`Clip` tuples of plain arrays (cheap to pickle).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import numpy as np

from pref_rl_learner.drlhp.config import ObservationTransformError

ObsTransform = Callable[[Any], np.ndarray]
"""Maps one env observation to the reward model's input (float array of a fixed shape)."""


class Clip(NamedTuple):
    """``T`` consecutive transitions of one episode, on their way to the worker.

    The observations are held once, as ``T + 1`` frames (o_t ... o_{t+T}); pixels stay
    ``uint8``. A clip that ends its episode is aligned to the episode's last step (it may
    overlap the clip before it), or, for an episode shorter than ``T``, padded after the end
    with absorbing steps (the final observation repeated, zero action, zero reward).
    """

    segment_id: str
    """Unique id within the run."""
    frames: np.ndarray
    """``[T + 1, *obs_shape]``: transformed o_t ... o_{t+T} (uint8 pixels or float32)."""
    actions: np.ndarray
    """float32 ``[T, action_dim]``: encoded a_t."""
    rewards: np.ndarray
    """float32 ``[T]``: the env's true rewards (what a scripted teacher compares)."""
    terminated: np.ndarray
    """bool ``[T]``: the episode terminated at this step (and stays so on padding)."""
    truncated: np.ndarray
    """bool ``[T]``: the episode was truncated at this step (and stays so on padding)."""
    episode: int
    """Episode index of the recorder that closed it."""
    start_step: int
    """Step within the episode of the first transition."""
    env_steps: int
    """Env steps taken (over every env sharing the worker) when the clip was closed; times
    feedback sessions."""
    finished_episodes: tuple[tuple[float, int], ...]
    """(true return, length) of episodes that ended since the previous clip."""

    @property
    def observations(self) -> np.ndarray:
        """``[T, *obs_shape]``: o_t (a view of :attr:`frames`)."""
        return self.frames[:-1]

    @property
    def next_observations(self) -> np.ndarray:
        """``[T, *obs_shape]``: o_{t+1} (a view of :attr:`frames`)."""
        return self.frames[1:]

    @property
    def nbytes(self) -> int:
        """Bytes held by the clip's arrays."""
        return int(self.frames.nbytes + self.actions.nbytes + self.rewards.nbytes
                   + self.terminated.nbytes + self.truncated.nbytes)


def identity_transform(observation: Any) -> np.ndarray:
    """The observation itself as an array (flat vector envs)."""
    return np.asarray(observation)


class PixelTransform:
    """Pixels ``[H, W, C]`` (``observation[key]`` for dicts; ``[H, W]`` gets C = 1) to the
    ``[C, H, W]`` layout of the ``cnn`` encoder, any size and channel count. ``uint8``
    frames stay ``uint8`` (1 byte per value; the encoder scales them to [0, 1]); float
    frames become float32 as given. A picklable callable (pickled and copied wrappers keep
    it)."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key

    def __call__(self, observation: Any) -> np.ndarray:
        image = np.asarray(observation if self.key is None else observation[self.key])
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ObservationTransformError(
                f'pixel_transform expects [H, W, C] pixels, got shape {image.shape}')
        dtype = np.uint8 if image.dtype == np.uint8 else np.float32
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype)

    def __repr__(self) -> str:
        return f'PixelTransform(key={self.key!r})'


def pixel_transform(key: str | None = None) -> ObsTransform:
    """A :class:`PixelTransform`: ``uint8 [H, W, C]`` pixels to ``uint8 [C, H, W]``."""
    return PixelTransform(key)


class ActionEncoder:
    """Flat float32 vectors from actions: Box flattened, Discrete one-hot, MultiBinary as is."""

    def __init__(self, space: gymnasium.Space) -> None:
        self.space = space
        if isinstance(space, gymnasium.spaces.Discrete):
            self.dim = int(space.n)
        elif isinstance(space, gymnasium.spaces.Box | gymnasium.spaces.MultiBinary):
            self.dim = int(np.prod(space.shape))
        else:
            raise ObservationTransformError(
                f'actions of {type(space).__name__} spaces are not supported (Box, Discrete, '
                'MultiBinary are)')

    def __call__(self, action: Any) -> np.ndarray:
        """``float32 [dim]``."""
        if isinstance(self.space, gymnasium.spaces.Discrete):
            out = np.zeros(self.dim, np.float32)
            out[int(np.asarray(action).reshape(())) - int(self.space.start)] = 1.0
            return out
        return np.asarray(action, np.float32).reshape(self.dim)


def checked_observation(transform: ObsTransform, observation: Any,
                        expected_shape: tuple[int, ...] | None,
                        keep_uint8: bool = False) -> np.ndarray:
    """Apply ``transform`` and check what comes out: float32, or ``uint8`` pixels kept as
    they are when ``keep_uint8`` (the ``cnn`` encoder); without it ``uint8`` pixels are
    scaled to float32 in [0, 1], as the encoder would.

    Raises:
        ObservationTransformError: not numeric, NaN/inf, or not of ``expected_shape``.
    """
    try:
        out = np.asarray(transform(observation))
    except ObservationTransformError:
        raise
    except Exception as err:  # a user callback: report any failure as a typed error
        raise ObservationTransformError(f'obs_transform failed: {err!r}') from err
    if out.dtype.kind not in 'fiub':
        raise ObservationTransformError(f'obs_transform returned dtype {out.dtype}, '
                                        'not a numeric array')
    if out.ndim == 0:
        raise ObservationTransformError('obs_transform returned a scalar, need an array')
    if expected_shape is not None and out.shape != expected_shape:
        raise ObservationTransformError(f'obs_transform returned shape {out.shape}, the '
                                        f'reward model takes {expected_shape}')
    if out.dtype == np.uint8:
        return out if keep_uint8 else out.astype(np.float32) * np.float32(1 / 255)
    out = out.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise ObservationTransformError('obs_transform returned NaN or inf')
    return out


def check_cnn_layout(shape: tuple[int, ...]) -> None:
    """The ``cnn`` encoder takes ``[C, H, W]``: name a channels-last image for what it is.

    Raises:
        ObservationTransformError: ``shape`` is not 3-D, or looks like ``[H, W, C]``.
    """
    if len(shape) != 3:
        raise ObservationTransformError(
            f'the cnn encoder takes [C, H, W] observations, obs_transform gives {shape}')
    if shape[-1] in (1, 3, 4) and shape[0] > 4 and shape[1] > 4:
        raise ObservationTransformError(
            f'observations of shape {shape} look like [H, W, C] pixels (channels last, HWC); '
            'the cnn encoder takes [C, H, W] (CHW): pass obs_transform=pixel_transform()')


class ClipRecorder:
    """Records the transitions of one env's current episode and closes clips of ``T`` steps.

    Every ``T`` steps a clip closes; when the episode ends with steps not yet in a clip, a
    last clip is closed that ends at the episode's final step (the last ``T`` steps, which
    may overlap the clip before) or, for an episode shorter than ``T``, one padded after the
    end with absorbing steps, so terminal rewards always reach the teacher.
    """

    def __init__(self, segment_length: int, run_id: str) -> None:
        self.segment_length = segment_length
        self.run_id = run_id
        self.clips_closed = 0
        self.partial_discarded = 0
        """Unfinished clips thrown away by a ``reset`` in the middle of an episode."""
        self.ends_aligned = 0
        """Episode-end clips that overlap the clip before them."""
        self.ends_padded = 0
        """Episode-end clips of episodes shorter than ``T``, padded after the end."""
        self._episodes: list[tuple[float, int]] = []
        self._history: deque[tuple[np.ndarray, np.ndarray, float]] = deque(
            maxlen=segment_length)
        self._pending = 0  # steps since the last clip closed
        self._step = 0
        self.episode = -1

    def start_episode(self) -> None:
        """A new episode begins (after ``reset``): drop an unfinished clip."""
        if self._pending:
            self.partial_discarded += 1
        self._history.clear()
        self._pending = 0
        self.episode += 1
        self._step = 0

    def end_episode(self, true_return: float, length: int) -> None:
        """The episode ended: remember its true return for the teacher's thresholds."""
        self._episodes.append((float(true_return), int(length)))

    def add(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: float,
            env_steps: int, terminated: bool = False, truncated: bool = False
            ) -> Clip | None:
        """Record one transition; returns a clip when one closes (at most one per step)."""
        self._history.append((obs, action, float(reward)))
        self._step += 1
        self._pending += 1
        ended = terminated or truncated
        if self._pending < self.segment_length and not ended:
            return None
        if self._pending < self.segment_length:  # the episode's tail
            if len(self._history) == self.segment_length:
                self.ends_aligned += 1
            else:
                self.ends_padded += 1
        self._pending = 0
        return self._close(next_obs, env_steps, terminated, truncated)

    def _close(self, next_obs: np.ndarray, env_steps: int, terminated: bool,
               truncated: bool) -> Clip:
        length, real = self.segment_length, len(self._history)
        frames = np.stack([o for o, _, _ in self._history] + [next_obs] * (length + 1 - real))
        actions = np.zeros((length, *self._history[0][1].shape), np.float32)
        actions[:real] = np.stack([a for _, a, _ in self._history])
        rewards = np.zeros(length, np.float32)
        rewards[:real] = [r for _, _, r in self._history]
        done_term = np.zeros(length, bool)
        done_trunc = np.zeros(length, bool)
        done_term[real - 1:] = terminated
        done_trunc[real - 1:] = truncated
        clip = Clip(f'{self.run_id}-{self.clips_closed:08d}', frames, actions, rewards,
                    done_term, done_trunc, self.episode, self._step - real, env_steps,
                    tuple(self._episodes))
        self.clips_closed += 1
        self._episodes = []
        return clip
