"""Replay buffer: a ring of preallocated tensors, with relabelling and segment sampling.

Every transition keeps two rewards: the environment's true reward (never changed; scripted
teachers and evaluation read it) and the reward SAC trains on, which PEBBLE rewrites with the
learned reward model (:meth:`ReplayBuffer.relabel`). Transitions are numbered by a global step
index (the count of transitions added before it); step ``g`` lives in slot ``g % capacity``
while it is stored. Segments for preference queries are runs of consecutive steps of one
episode, named by the global index of their first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from pref_rl_learner.batches import TransitionBatch
from pref_rl_learner.errors import PrefRLError


class ReplayError(PrefRLError, ValueError):
    """A transition, request or state does not fit the buffer (shape, NaN, size, range)."""


class SegmentDraw(NamedTuple):
    """``N`` segments of ``T`` consecutive steps of one episode each (numpy, on the CPU)."""

    observations: np.ndarray
    """float32 ``[N, T, *obs_shape]``."""
    actions: np.ndarray
    """float32 ``[N, T, act_dim]``."""
    true_rewards: np.ndarray
    """float32 ``[N, T]``: the environment's rewards."""
    start_indices: np.ndarray
    """int64 ``[N]``: global step index of each first step (usable as a segment id)."""


_STORED = ('observations', 'actions', 'rewards', 'true_rewards', 'next_observations',
           'terminated')


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions ``(s, a, r, s', terminated)`` on one device."""

    def __init__(self, observation_shape: Sequence[int] | int, action_dim: int, capacity: int,
                 device: torch.device | str = 'cpu') -> None:
        if isinstance(observation_shape, int):
            observation_shape = (observation_shape,)
        self.observation_shape = tuple(int(d) for d in observation_shape)
        self.action_dim, self.capacity = int(action_dim), int(capacity)
        if self.capacity < 1 or self.action_dim < 1 or any(d < 1 for d in
                                                            self.observation_shape):
            raise ReplayError(f'capacity {capacity}, action_dim {action_dim} and observation '
                              f'shape {observation_shape} must be positive')
        self.device = torch.device(device)
        c, f32 = self.capacity, torch.float32
        self._t = {
            'observations': torch.zeros((c, *self.observation_shape), dtype=f32),
            'actions': torch.zeros((c, self.action_dim), dtype=f32),
            'rewards': torch.zeros(c, dtype=f32),
            'true_rewards': torch.zeros(c, dtype=f32),
            'next_observations': torch.zeros((c, *self.observation_shape), dtype=f32),
            'terminated': torch.zeros(c, dtype=f32),
        }
        self._t = {k: v.to(self.device) for k, v in self._t.items()}
        # On the CPU, add() writes through numpy views of the same memory (no torch dispatch).
        self._np = ({k: v.numpy() for k, v in self._t.items()} if self.device.type == 'cpu'
                    else None)
        # Bookkeeping stays in host memory: episode number and global step of every slot.
        self._episode = np.full(c, -1, dtype=np.int64)
        self._step = np.full(c, -1, dtype=np.int64)
        self._num_added = 0
        self._num_episodes = 0

    def __len__(self) -> int:
        return min(self._num_added, self.capacity)

    @property
    def num_added(self) -> int:
        """Transitions ever added (the global index the next one will get)."""
        return self._num_added

    @property
    def num_episodes(self) -> int:
        """Episodes ended so far (the episode number of the next transition)."""
        return self._num_episodes

    # ------------------------------------------------------------------------------ adding

    def add(self, observation: np.ndarray, action: np.ndarray, reward: float,
            next_observation: np.ndarray, terminated: bool, truncated: bool) -> None:
        """Store one step; ``reward`` becomes both the true and the training reward.

        ``terminated or truncated`` closes the episode: the next step starts a new one.

        Raises:
            ReplayError: a shape differs from the buffer's, or a value is NaN/inf.
        """
        obs = self._checked('observation', observation, self.observation_shape)
        next_obs = self._checked('next_observation', next_observation, self.observation_shape)
        act = self._checked('action', action, (self.action_dim,))
        reward = float(reward)
        if not np.isfinite(reward):
            raise ReplayError(f'reward {reward} is not finite')
        slot = self._num_added % self.capacity
        values = {'observations': obs, 'actions': act, 'rewards': reward,
                  'true_rewards': reward, 'next_observations': next_obs,
                  'terminated': float(bool(terminated))}
        if self._np is not None:
            for key, value in values.items():
                self._np[key][slot] = value
        else:
            for key, value in values.items():
                self._t[key][slot] = torch.as_tensor(value)
        self._episode[slot] = self._num_episodes
        self._step[slot] = self._num_added
        self._num_added += 1
        if terminated or truncated:
            self._num_episodes += 1

    @staticmethod
    def _checked(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32)
        if arr.shape != shape:
            raise ReplayError(f'{name}: shape {arr.shape}, the buffer stores {shape}')
        if not np.isfinite(arr).all():
            raise ReplayError(f'{name}: non-finite value(s) {arr[~np.isfinite(arr)][:3]}')
        return arr

    # ---------------------------------------------------------------------------- sampling

    def sample(self, batch_size: int, generator: torch.Generator | None = None
               ) -> TransitionBatch:
        """``batch_size`` transitions drawn uniformly with replacement, current rewards.

        ``generator`` may live on the CPU or on the buffer's device.
        """
        index = self.sample_indices(batch_size, generator)
        t = self._t
        return TransitionBatch(t['observations'][index], t['actions'][index],
                               t['rewards'][index], t['next_observations'][index],
                               t['terminated'][index])

    def sample_indices(self, batch_size: int, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """The slots :meth:`sample` would draw (same draws from ``generator``), ``[batch]``
        on the buffer's device (slot order, as :meth:`stored_inputs` and :attr:`rewards`)."""
        size = len(self)
        if size == 0:
            raise ReplayError('cannot sample from an empty replay buffer')
        gen_device = generator.device if generator is not None else self.device
        index = torch.randint(size, (batch_size,), generator=generator, device=gen_device)
        return index.to(self.device, non_blocking=True)

    def sample_segments(self, num: int, length: int, rng: np.random.Generator) -> SegmentDraw:
        """``num`` segments of ``length`` consecutive steps, each inside one episode.

        Starts are drawn uniformly from the valid ones, without replacement while there are
        enough (with replacement otherwise). A valid segment lies in one episode and in one
        contiguous stretch of slots: it neither wraps past the end of the ring nor crosses the
        write head (where the newest step meets the oldest one still stored).

        Raises:
            ReplayError: no stored stretch of ``length`` steps lies inside one episode.
        """
        size = len(self)
        if length < 1 or num < 0:
            raise ReplayError(f'segment length {length} must be >= 1 and num {num} >= 0')
        starts = self._valid_starts(length, size)
        if starts.size == 0:
            raise ReplayError(f'no {length} consecutive steps of one episode are stored '
                              f'({size} steps, {self._num_episodes} episodes ended)')
        slots = rng.choice(starts, size=num, replace=num > starts.size)
        index = slots[:, None] + np.arange(length)  # [N, T], never past size - 1
        flat = torch.from_numpy(index.reshape(-1)).to(self.device)

        def gather(key: str) -> np.ndarray:
            values = self._t[key][flat].cpu().numpy()
            return values.reshape(num, length, *values.shape[1:])

        return SegmentDraw(gather('observations'), gather('actions'), gather('true_rewards'),
                           self._step[slots].copy())

    def _valid_starts(self, length: int, size: int) -> np.ndarray:
        """Slots ``p`` where slots ``p .. p+length-1`` hold consecutive steps of one episode."""
        if size < length:
            return np.zeros(0, dtype=np.int64)
        episode, step = self._episode[:size], self._step[:size]
        last = length - 1
        # Same episode at both ends, and the global step grows by exactly length - 1: no
        # write-head crossing (the step index jumps back there) and no gap in between.
        ok = (episode[last:] == episode[:size - last]) & (step[last:] - step[:size - last] == last)
        return np.flatnonzero(ok)

    # ---------------------------------------------------------------------------- rewards

    @torch.no_grad()
    def relabel(self, reward_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                chunk_size: int = 10_000, start: int = 0) -> None:
        """Rewrite training rewards with ``reward_fn(obs [B, *obs], act [B, A]) -> [B]``.

        Relabels the stored transitions from the ``start``-th oldest (0: all of them;
        ``len(self) - 1``: only the newest) in chunks of at most ``chunk_size``, without
        gradients. True rewards are untouched.

        Raises:
            ReplayError: ``start`` is out of range, or ``reward_fn`` returned a wrong shape or
                non-finite values (the rewards of that chunk are then left as they were).
        """
        size = len(self)
        if not 0 <= start <= size:
            raise ReplayError(f'relabel start {start} outside [0, {size}]')
        if chunk_size < 1:
            raise ReplayError(f'chunk_size {chunk_size} must be >= 1')
        oldest = self._num_added - size  # global step of chronological position 0
        position = start
        while position < size:
            # A chunk never wraps: it ends at the ring's end or after chunk_size steps.
            first = (oldest + position) % self.capacity
            count = min(chunk_size, size - position, self.capacity - first)
            rows = slice(first, first + count)
            rewards = reward_fn(self._t['observations'][rows], self._t['actions'][rows])
            rewards = torch.as_tensor(rewards).to(self.device, torch.float32)
            if rewards.shape not in ((count,), (count, 1)):
                raise ReplayError(f'reward_fn returned shape {tuple(rewards.shape)} for '
                                  f'{count} transitions (expected [{count}])')
            rewards = rewards.reshape(count)
            if not torch.isfinite(rewards).all():
                raise ReplayError('reward_fn returned non-finite rewards')
            self._t['rewards'][rows] = rewards
            position += count

    @torch.no_grad()
    def set_rewards(self, rewards: torch.Tensor) -> None:
        """Rewrite the training rewards of every stored slot at once: ``rewards`` ``[len]`` in
        slot order (as :meth:`stored_inputs`; e.g. a reward model evaluated on them).

        Raises:
            ReplayError: ``rewards`` has another shape or holds non-finite values (nothing is
                written then).
        """
        size = len(self)
        rewards = torch.as_tensor(rewards).to(self.device, torch.float32)
        if tuple(rewards.shape) != (size,):
            raise ReplayError(f'{tuple(rewards.shape)} rewards for {size} stored transitions')
        if not bool(torch.isfinite(rewards).all()):
            raise ReplayError('non-finite rewards')
        self._t['rewards'][:size] = rewards

    def stored_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(observations ``[len, *obs]``, actions ``[len, A]``) of the stored slots (slot
        order; views, do not modify)."""
        size = len(self)
        return self._t['observations'][:size], self._t['actions'][:size]

    @property
    def true_rewards(self) -> torch.Tensor:
        """The environment's rewards of the stored slots ``[len]`` (slot order; a view)."""
        return self._t['true_rewards'][:len(self)]

    @property
    def rewards(self) -> torch.Tensor:
        """The training rewards of the stored slots ``[len]`` (slot order; a view)."""
        return self._t['rewards'][:len(self)]

    def observations_view(self) -> torch.Tensor:
        """Every stored observation ``[len, *obs]`` (slot order; a view, do not modify)."""
        return self._t['observations'][:len(self)]

    def next_observation(self, step: int) -> np.ndarray:
        """``s'`` of global step ``step`` (float32 ``[*obs]``, a copy).

        Raises:
            ReplayError: that step is not stored (never added, or overwritten).
        """
        if not self._num_added - len(self) <= step < self._num_added:
            raise ReplayError(f'step {step} is not stored (steps {self._num_added - len(self)}'
                              f'..{self._num_added - 1} are)')
        return self._t['next_observations'][step % self.capacity].cpu().numpy().copy()

    # ------------------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Stored data and counters (tensors and ints: ``torch.load(weights_only=True)``)."""
        size = len(self)

        def filled(t: torch.Tensor) -> torch.Tensor:
            # A slice would make torch.save write the whole preallocated storage.
            return t if size == self.capacity else t[:size].clone()

        return {'observation_shape': list(self.observation_shape),
                'action_dim': self.action_dim, 'capacity': self.capacity,
                'num_added': self._num_added, 'num_episodes': self._num_episodes,
                **{k: filled(self._t[k]) for k in _STORED},
                'episode': torch.from_numpy(self._episode[:size].copy()),
                'step': torch.from_numpy(self._step[:size].copy())}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output into this (empty or not) buffer.

        Raises:
            ReplayError: written for another observation shape, action size or capacity, or
                entries are missing or inconsistent.
        """
        try:
            layout = (tuple(state['observation_shape']), int(state['action_dim']),
                      int(state['capacity']))
            mine = (self.observation_shape, self.action_dim, self.capacity)
            if layout != mine:
                raise ReplayError(f'replay state for (obs shape, act dim, capacity) {layout}, '
                                  f'this buffer is {mine}')
            num_added = int(state['num_added'])
            size = min(num_added, self.capacity)
            for key in _STORED:
                if state[key].shape[0] != size:
                    raise ReplayError(f'replay state {key!r} has {state[key].shape[0]} rows, '
                                      f'expected {size}')
            for key in _STORED:
                self._t[key][:size] = state[key].to(self.device)
            self._episode[:] = -1
            self._step[:] = -1
            self._episode[:size] = state['episode'].cpu().numpy()
            self._step[:size] = state['step'].cpu().numpy()
            self._num_added, self._num_episodes = num_added, int(state['num_episodes'])
        except KeyError as err:
            raise ReplayError(f'replay state lacks {err}') from err
