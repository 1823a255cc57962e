"""Camera frames that arrive after their segments: which to ask for, checks, attachment.

Queries and episodes may carry segments without frames (the robot serves them on request).
:class:`FrameCache` decides which segment ids to ask for (those on display, a few at a time,
each once), checks what arrives and attaches it to the segment for display, remembers why a
segment has none (the robot refused, no answer, no service) so the window can say so, and
forgets frames and failures of segments no longer shown. ROS-free and Qt-free, driven by
:class:`~pref_rl_gui.model.LabelingModel`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import Segment

MAX_FRAME_REQUESTS = 6
"""Segments whose frames are asked for at a time."""


class FrameCache:
    """Frames received per segment id, and the ids asked for."""

    def __init__(self, max_requests: int = MAX_FRAME_REQUESTS) -> None:
        self.max_requests = max_requests
        self._frames: dict[str, tuple[np.ndarray, int]] = {}
        self._requested: set[str] = set()
        self._failed: dict[str, str] = {}

    def wanted(self, on_display: Iterable[Segment]) -> list[str]:
        """Ids of segments of ``on_display`` that lack frames and were not asked for yet
        (at most ``max_requests``); they count as asked for from now on."""
        wanted = []
        for segment in on_display:
            sid = segment.segment_id
            if segment.frames is None and sid not in self._frames and sid not in self._requested:
                self._requested.add(sid)
                wanted.append(sid)
                if len(wanted) == self.max_requests:
                    break
        return wanted

    def accept(self, segment: Segment, frames: np.ndarray, frame_stride: int) -> None:
        """Keep ``frames`` for ``segment``.

        Raises:
            ValueError: not ``[F, H, W, 1|3|4]``, or not matching the segment's length.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
            raise ValueError(f'frames of shape {frames.shape} are not [F, H, W, 1|3|4]')
        try:
            dataclasses.replace(segment, frames=frames, frame_stride=frame_stride)
        except PrefRLError as err:
            raise ValueError(str(err)) from err
        self._frames[segment.segment_id] = (frames, frame_stride)

    def fail(self, segment_id: str, reason: str) -> None:
        """No frames can be had for ``segment_id``, because of ``reason`` (not asked again)."""
        if segment_id not in self._frames:
            self._requested.add(segment_id)
            self._failed[segment_id] = reason

    def failure(self, segment_id: str) -> str | None:
        """Why ``segment_id`` has no frames, if they could not be had (None: not failed)."""
        return self._failed.get(segment_id)

    def attach(self, segment: Segment) -> Segment:
        """``segment`` with the frames that arrived for it, if any."""
        got = self._frames.get(segment.segment_id)
        if segment.frames is not None or got is None:
            return segment
        return dataclasses.replace(segment, frames=got[0], frame_stride=got[1])

    def retain(self, segment_ids: set[str]) -> None:
        """Forget frames, failures and requests of every segment not in ``segment_ids``."""
        for sid in [sid for sid in self._frames if sid not in segment_ids]:
            del self._frames[sid]
        for sid in [sid for sid in self._failed if sid not in segment_ids]:
            del self._failed[sid]
        self._requested &= segment_ids
