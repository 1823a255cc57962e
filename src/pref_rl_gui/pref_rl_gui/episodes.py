"""The last full episode of the ``segments`` stream, for the labeller's smaller pane.

A robot publishes each episode as contiguous segments (``start_step`` 0, T, 2T, ...), the last
one ending terminated or truncated. :class:`EpisodeAssembler` joins them per
``(source_id, episode)``; an episode first seen in the middle (the app started late) or with
a gap is dropped, since a person must see it from the start.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from pref_rl_learner.types import Segment


@dataclass(frozen=True, eq=False)
class Episode:
    """A complete episode as the segments it was published in, in order."""

    source_id: str
    """Robot/env instance that produced it."""
    index: int
    """Episode index within the source."""
    segments: tuple[Segment, ...] = field(repr=False)
    """Its segments, contiguous from step 0 to the terminal or truncated step."""

    @property
    def length(self) -> int:
        """Steps in the episode."""
        return sum(s.length for s in self.segments)

    @property
    def task(self) -> str:
        """Task name."""
        return self.segments[0].task


class EpisodeAssembler:
    """Joins the segments of each ``(source_id, episode)`` into :class:`Episode` objects."""

    def __init__(self, max_open: int = 16, max_steps: int = 10_000) -> None:
        self._open: collections.OrderedDict[tuple[str, int], list[Segment]] = (
            collections.OrderedDict())
        self._max_open, self._max_steps = max_open, max_steps
        self.completed = 0
        """Episodes completed so far."""

    def add(self, segment: Segment) -> Episode | None:
        """Take one segment; the episode it completes, if any."""
        key = (segment.source_id, segment.episode)
        parts = self._open.pop(key, None)
        if parts is None:
            if segment.start_step != 0:
                return None  # joined mid-episode
            parts = []
        elif segment.start_step != parts[-1].start_step + parts[-1].length:
            return None  # a gap (a lost segment): the episode cannot be shown whole
        parts.append(segment)
        if bool(segment.terminated[-1]) or bool(segment.truncated[-1]):
            self.completed += 1
            return Episode(segment.source_id, segment.episode, tuple(parts))
        if sum(p.length for p in parts) <= self._max_steps:
            self._open[key] = parts
        while len(self._open) > self._max_open:  # sources that vanished mid-episode
            self._open.popitem(last=False)
        return None
