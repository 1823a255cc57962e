"""A clip to play: the steps of one or more consecutive segments, their frames (when every
segment has some) and a schematic drawn from the observations (always, as the fallback).

Playback runs over steps 0..T (the state before each transition and after the last); a
segment's frames are one per ``frame_stride`` steps, so step ``t`` of a segment shows frame
``t // frame_stride`` (the final state, step T, shows the last frame).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pref_rl_gui.schematic import Schematic, schematics, states
from pref_rl_learner.types import Segment


@dataclass(frozen=True, eq=False)
class Clip:
    """What a clip view plays."""

    steps: int
    """Transitions T (states at steps 0..T)."""
    schematic: Schematic
    """The trajectory drawn from the observations."""
    starts: tuple[int, ...] = ()
    """First step of each segment within the clip (with frames only)."""
    strides: tuple[int, ...] = ()
    """frame_stride of each segment (with frames only)."""
    frames: tuple[np.ndarray, ...] = ()
    """uint8 ``[F, H, W, C]`` frames of each segment; empty: draw the schematic."""
    label: str = ''
    """A caption, e.g. the segment's episode and steps."""

    @property
    def has_frames(self) -> bool:
        """Whether frames are shown (else the schematic)."""
        return bool(self.frames)

    def frame_index(self, step: int) -> tuple[int, int] | None:
        """(segment, frame) shown at ``step`` (clamped to 0..T); None: no frames."""
        if not self.frames:
            return None
        step = min(max(step, 0), self.steps)
        k = max(0, bisect.bisect_right(self.starts, min(step, self.steps - 1)) - 1)
        index = min((step - self.starts[k]) // self.strides[k], self.frames[k].shape[0] - 1)
        return k, index

    def frame(self, step: int) -> np.ndarray | None:
        """The ``[H, W, C]`` frame to show at ``step`` (clamped to 0..T); None: no frames."""
        at = self.frame_index(step)
        return None if at is None else self.frames[at[0]][at[1]]


def _caption(segments: Sequence[Segment]) -> str:
    first, last = segments[0], segments[-1]
    end = last.start_step + last.length
    return (f'{first.source_id or "robot"} episode {first.episode}, steps {first.start_step}-'
            f'{end}, policy v{first.policy_version}')


def clips_of(groups: Sequence[Sequence[Segment]], task: str = '') -> list[Clip]:
    """One :class:`Clip` per group of consecutive segments (e.g. ``[[left], [right]]`` for a
    query, ``[episode.segments]`` for an episode); the schematics share one scale."""
    drawings = schematics(task or groups[0][0].task, [states(g) for g in groups])
    out = []
    for segments, drawing in zip(groups, drawings, strict=True):
        with_frames = all(s.frames is not None for s in segments)
        starts = tuple(int(np.sum([s.length for s in segments[:k]], dtype=np.int64))
                       for k in range(len(segments)))
        out.append(Clip(
            steps=sum(s.length for s in segments), schematic=drawing,
            starts=starts if with_frames else (),
            strides=tuple(s.frame_stride for s in segments) if with_frames else (),
            frames=tuple(s.frames for s in segments) if with_frames else (),
            label=_caption(segments)))
    return out
