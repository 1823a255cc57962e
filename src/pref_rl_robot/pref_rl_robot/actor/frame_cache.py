"""Bounded cache of the frames of recently published segments, by segment id.

Frames are big (a 64x64 RGB frame is 12 KiB, sixty times a point-mass transition), and only
the few segments the learner turns into preference queries are ever watched. So unless the
robot is told to attach frames to every segment, it keeps the frames of its last
``max_segments`` segments here and hands them out on request (the ``get_segment_frames``
service). The oldest entry is evicted first; memory is bounded by
``max_segments * frames per segment * H * W * C`` bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from pref_rl_learner.errors import PrefRLError


class UnknownSegmentError(PrefRLError, KeyError):
    """No frames for this segment id: never published here, published without frames, or
    evicted from the cache."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ''


@dataclass(frozen=True, eq=False)
class SegmentFrames:
    """The frames of one segment."""

    frames: np.ndarray
    """uint8 ``[F, H, W, C]``, F = ceil(segment length / frame_stride)."""
    frame_stride: int
    """Steps of the segment between consecutive frames (>= 1)."""


class FrameCache:
    """segment id -> :class:`SegmentFrames`, holding at most ``max_segments`` entries."""

    def __init__(self, max_segments: int) -> None:
        if max_segments < 1:
            raise ValueError(f'max_segments must be >= 1, got {max_segments}')
        self.max_segments = max_segments
        self._entries: OrderedDict[str, SegmentFrames] = OrderedDict()
        self.evicted = 0
        """Entries dropped to stay within ``max_segments``."""

    def put(self, segment_id: str, frames: np.ndarray, frame_stride: int) -> None:
        """Store the frames of ``segment_id`` (evicting the oldest entry when full)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frame_stride < 1:
            raise ValueError(f'frames must be uint8 [F, H, W, C] with frame_stride >= 1, got '
                             f'{frames.dtype} {frames.shape} stride {frame_stride}')
        self._entries[segment_id] = SegmentFrames(frames, frame_stride)
        self._entries.move_to_end(segment_id)
        while len(self._entries) > self.max_segments:
            self._entries.popitem(last=False)
            self.evicted += 1

    def get(self, segment_id: str) -> SegmentFrames:
        """The frames of ``segment_id``.

        Raises:
            UnknownSegmentError: not in the cache (the message says how many ids it holds).
        """
        try:
            return self._entries[segment_id]
        except KeyError:
            raise UnknownSegmentError(
                f'no frames for segment {segment_id!r}: not published by this robot, published '
                f'without frames, or evicted (the cache keeps the last {self.max_segments} '
                f'segments; {self.evicted} evicted so far)') from None

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)
