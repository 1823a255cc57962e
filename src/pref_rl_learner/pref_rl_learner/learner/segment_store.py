"""The learner's store of received full-length segments: the candidates of preference queries.

Segments are kept by ``segment_id`` in arrival order, at most ``capacity`` of them (the
oldest are dropped first, as a FIFO replay buffer drops its oldest transitions). Only
segments of exactly the query length are kept: PEBBLE compares segments of one length, and
the short tail of an episode is not a candidate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import Segment

_ARRAYS = ('observations', 'actions', 'next_observations', 'terminated', 'truncated')
_META = ('segment_id', 'task', 'source_id', 'episode', 'start_step', 'policy_version',
         'stamp_ns')


class SegmentStoreError(PrefRLError, ValueError):
    """A segment store state cannot be restored (another layout, missing entries)."""


class SegmentStore:
    """Bounded FIFO of full-length :class:`Segment` s keyed by id (not thread-safe)."""

    def __init__(self, length: int, capacity: int) -> None:
        if length < 1 or capacity < 1:
            raise SegmentStoreError(f'length {length} and capacity {capacity} must be >= 1')
        self.length, self.capacity = int(length), int(capacity)
        self._segments: OrderedDict[str, Segment] = OrderedDict()

    def __len__(self) -> int:
        return len(self._segments)

    def __contains__(self, segment_id: str) -> bool:
        return segment_id in self._segments

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments.values())

    def get(self, segment_id: str) -> Segment | None:
        """The stored segment with this id, None if unknown or dropped."""
        return self._segments.get(segment_id)

    def add(self, segment: Segment) -> bool:
        """Keep ``segment`` if it has the query length; True when it was kept."""
        if segment.length != self.length or segment.segment_id in self._segments:
            return False
        self._segments[segment.segment_id] = segment
        while len(self._segments) > self.capacity:
            self._segments.popitem(last=False)
        return True

    def draw_pairs(self, num: int, rng: np.random.Generator
                   ) -> tuple[SegmentPairs, list[tuple[Segment, Segment]]]:
        """``num`` random pairs of distinct stored segments (fewer if the store is small).

        Returns the stacked pairs (true rewards included when every segment has them) and
        the segments of each pair, in the same order.
        """
        segments = list(self._segments.values())
        if len(segments) < 2 or num < 1:
            empty = np.zeros((0, self.length, 1), np.float32)
            return SegmentPairs(empty, empty, empty, empty), []
        left = rng.integers(0, len(segments), num)
        # Shift by 1..n-1 so that the two sides of a pair are always distinct segments.
        right = (left + rng.integers(1, len(segments), num)) % len(segments)
        chosen = [(segments[i], segments[j]) for i, j in zip(left, right, strict=True)]

        def stack(side: int, name: str) -> np.ndarray:
            return np.stack([getattr(pair[side], name) for pair in chosen])

        with_rewards = all(s.rewards is not None for pair in chosen for s in pair)
        pairs = SegmentPairs(
            stack(0, 'observations'), stack(0, 'actions'),
            stack(1, 'observations'), stack(1, 'actions'),
            stack(0, 'rewards') if with_rewards else None,
            stack(1, 'rewards') if with_rewards else None)
        return pairs, chosen

    # ------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values (frames are not kept: the robot serves them)."""
        segments = list(self._segments.values())
        state: dict[str, Any] = {'length': self.length, 'count': len(segments)}
        for name in _META:
            state[name] = [getattr(s, name) for s in segments]
        if segments:
            for name in _ARRAYS:
                state[name] = torch.from_numpy(np.stack([getattr(s, name) for s in segments]))
            for name in ('rewards', 'success'):
                if all(getattr(s, name) is not None for s in segments):
                    state[name] = torch.from_numpy(
                        np.stack([getattr(s, name) for s in segments]))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the contents with :meth:`state_dict`'s output.

        Raises:
            SegmentStoreError: another segment length, or missing or inconsistent entries.
        """
        try:
            if int(state['length']) != self.length:
                raise SegmentStoreError(f'segment store state for length {state["length"]}, '
                                        f'this store keeps length {self.length}')
            count = int(state['count'])
            arrays = {name: state[name].numpy() for name in (*_ARRAYS, 'rewards', 'success')
                      if name in state}
            self._segments.clear()
            for i in range(count):
                segment = Segment(**{name: state[name][i] for name in _META},
                                  **{name: value[i] for name, value in arrays.items()})
                self._segments[segment.segment_id] = segment
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise SegmentStoreError(f'incomplete segment store state: {err!r}') from err
        while len(self._segments) > self.capacity:
            self._segments.popitem(last=False)
