"""What the wrapper records: observation transforms, action encoding and clips in flight.

The reward model never sees raw env observations: an ``obs_transform`` maps each one (an
array, a dict, an image of any size) to a float32 array of one fixed shape. Pixels go through
:func:`pixel_transform`, which turns ``uint8 [H, W, C]`` frames into ``float32 [C, H, W]`` in
[0, 1], the layout of the ensemble's ``cnn`` encoder. Clips of ``segment_length`` steps are
sent to the worker as :class:`Clip` tuples of plain arrays (cheap to pickle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import numpy as np

from pref_rl_learner.drlhp.config import ObservationTransformError

ObsTransform = Callable[[Any], np.ndarray]
"""Maps one env observation to the reward model's input (float array of a fixed shape)."""


class Clip(NamedTuple):
    """``T`` consecutive transitions of one episode, on their way to the worker."""

    segment_id: str
    """Unique id within the run."""
    observations: np.ndarray
    """float32 ``[T, *obs_shape]``: transformed o_t."""
    actions: np.ndarray
    """float32 ``[T, action_dim]``: encoded a_t."""
    next_observations: np.ndarray
    """float32 ``[T, *obs_shape]``: transformed o_{t+1}."""
    rewards: np.ndarray
    """float32 ``[T]``: the env's true rewards (what a scripted teacher compares)."""
    episode: int
    """Episode index in the wrapper."""
    start_step: int
    """Step within the episode of the first transition."""
    env_steps: int
    """Env steps taken by the wrapper when the clip was closed (times feedback sessions)."""
    finished_episodes: tuple[tuple[float, int], ...]
    """(true return, length) of episodes that ended since the previous clip."""


def identity_transform(observation: Any) -> np.ndarray:
    """The observation itself as an array (flat vector envs)."""
    return np.asarray(observation)


def pixel_transform(key: str | None = None) -> ObsTransform:
    """A transform taking ``uint8 [H, W, C]`` pixels (``observation[key]`` for dicts) to
    ``float32 [C, H, W]`` in [0, 1]; any size and channel count (``[H, W]`` gets C = 1)."""

    def transform(observation: Any) -> np.ndarray:
        image = np.asarray(observation if key is None else observation[key])
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ObservationTransformError(
                f'pixel_transform expects [H, W, C] pixels, got shape {image.shape}')
        scale = np.float32(1 / 255) if image.dtype == np.uint8 else np.float32(1)
        return np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) * scale

    return transform


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
                        expected_shape: tuple[int, ...] | None) -> np.ndarray:
    """Apply ``transform`` and check what comes out.

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
    out = out.astype(np.float32, copy=False)
    if out.ndim == 0:
        raise ObservationTransformError('obs_transform returned a scalar, need an array')
    if expected_shape is not None and out.shape != expected_shape:
        raise ObservationTransformError(f'obs_transform returned shape {out.shape}, the '
                                        f'reward model takes {expected_shape}')
    if not np.isfinite(out).all():
        raise ObservationTransformError('obs_transform returned NaN or inf')
    return out


class ClipRecorder:
    """Accumulates transitions of the current episode and closes clips of ``T`` steps."""

    def __init__(self, segment_length: int, run_id: str) -> None:
        self.segment_length = segment_length
        self.run_id = run_id
        self.clips_closed = 0
        self.partial_discarded = 0
        """Episode tails shorter than ``T`` that were thrown away."""
        self._episodes: list[tuple[float, int]] = []
        self._reset_buffers()
        self.episode = -1

    def _reset_buffers(self) -> None:
        self._obs: list[np.ndarray] = []
        self._act: list[np.ndarray] = []
        self._next: list[np.ndarray] = []
        self._rew: list[float] = []
        self._start = 0

    def start_episode(self) -> None:
        """A new episode begins (after ``reset``): drop an unfinished clip."""
        if self._obs:
            self.partial_discarded += 1
        self._reset_buffers()
        self.episode += 1
        self._step = 0

    def end_episode(self, true_return: float, length: int) -> None:
        """The episode ended: remember its true return for the teacher's thresholds."""
        self._episodes.append((float(true_return), int(length)))

    def add(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: float,
            env_steps: int) -> Clip | None:
        """Record one transition; returns a clip when it completes one."""
        if not self._obs:
            self._start = self._step
        self._obs.append(obs)
        self._act.append(action)
        self._next.append(next_obs)
        self._rew.append(reward)
        self._step += 1
        if len(self._obs) < self.segment_length:
            return None
        clip = Clip(f'{self.run_id}-{self.clips_closed:08d}', np.stack(self._obs),
                    np.stack(self._act), np.stack(self._next),
                    np.asarray(self._rew, np.float32), self.episode, self._start, env_steps,
                    tuple(self._episodes))
        self.clips_closed += 1
        self._episodes = []
        self._reset_buffers()
        return clip
