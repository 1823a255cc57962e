"""Intake of the ROS learner: which received segments are accepted, held back, or admitted.

A segment from a robot is checked against the run (task, shapes, true rewards where the
algorithm needs them, an id never received before), then waits in a backlog until the
learner's pacing admits it (:meth:`SegmentIntake.admit`). Finished episodes' true returns and
successes are tracked for the status figures. None of this is a learning decision: that is
:class:`~pref_rl_learner.pebble.learning.PebbleLearning`'s.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import Segment

RECENT_IDS = 100_000
"""Segment ids remembered to refuse a segment received twice."""
_OPEN_EPISODES = 64
"""Episodes tracked at once (sources that vanished mid-episode are forgotten first)."""


class SegmentRejectedError(PrefRLError, ValueError):
    """A valid segment that this learner cannot use (other task or shapes, a repeated id)."""


class SegmentIntake:
    """Checks, remembers and holds back received segments; tracks finished episodes.

    Args:
        task: the run's task.
        observation_shape, action_dim: the task's.
        needs_rewards: refuse segments without true rewards (``algorithm: sac``).
        stats_window: finished episodes kept for the return and success figures.
        max_backlog: most transitions held back; a segment beyond it is refused.
        max_magnitude: observations and rewards must lie within ±this.
        max_id_length: longest id accepted.
    """

    def __init__(self, task: str, observation_shape: tuple[int, ...], action_dim: int,
                 needs_rewards: bool, stats_window: int, *, max_backlog: int = 20_000,
                 max_magnitude: float = 1e6, max_id_length: int = 256) -> None:
        self.task = task
        self.observation_shape, self.action_dim = observation_shape, action_dim
        self.needs_rewards = needs_rewards
        self.max_backlog, self.max_magnitude = max_backlog, max_magnitude
        self.max_id_length = max_id_length
        self.refused_backlog_full = 0
        """Valid segments refused because the backlog was full."""
        self._backlog_transitions = 0
        self.episodes: deque[tuple[float, bool]] = deque(maxlen=stats_window)
        """(true return, success) of the latest finished episodes."""
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._backlog: deque[Segment] = deque()
        self._open: OrderedDict[tuple[str, int], list] = OrderedDict()

    def check(self, segment: Segment) -> None:
        """Raise :class:`SegmentRejectedError` naming why ``segment`` cannot be used."""
        for name in ('segment_id', 'source_id', 'task'):
            if len(getattr(segment, name)) > self.max_id_length:
                raise SegmentRejectedError(
                    f'{name} of {len(getattr(segment, name))} characters (at most '
                    f'{self.max_id_length})')
        if segment.task != self.task:
            raise SegmentRejectedError(f'segment {segment.segment_id!r} is for task '
                                       f'{segment.task!r}, this learner learns {self.task!r}')
        if segment.observation_shape != self.observation_shape:
            raise SegmentRejectedError(f'observation shape {segment.observation_shape}, '
                                       f'expected {self.observation_shape}')
        if segment.action_shape != (self.action_dim,):
            raise SegmentRejectedError(f'action shape {segment.action_shape}, expected '
                                       f'({self.action_dim},)')
        if segment.rewards is None and self.needs_rewards:
            raise SegmentRejectedError('algorithm sac learns from true rewards, and the '
                                       'segment has none')
        if segment.segment_id in self._recent:
            raise SegmentRejectedError(f'segment {segment.segment_id!r} was received before')
        self._check_magnitudes(segment)

    def _check_magnitudes(self, segment: Segment) -> None:
        """Finite values no task produces poison the networks: refuse them."""
        limit = self.max_magnitude
        for name in ('observations', 'next_observations', 'rewards'):
            values = getattr(segment, name)
            peak = float(np.abs(values).max()) if values is not None and values.size else 0.0
            if peak > limit:
                raise SegmentRejectedError(
                    f'segment {segment.segment_id!r}: {name} reach {peak:.3g}, beyond '
                    f'±{limit:.3g} (max_input_magnitude)')
        peak = float(np.abs(segment.actions).max()) if segment.actions.size else 0.0
        if peak > 1.0 + 1e-3:
            raise SegmentRejectedError(
                f'segment {segment.segment_id!r}: actions reach {peak:.3g}, outside [-1, 1]')

    def receive(self, segment: Segment) -> None:
        """Check ``segment`` and put it in the backlog (raises as :meth:`check`, and when the
        backlog already holds ``max_backlog`` transitions: the sender outran pacing)."""
        self.check(segment)
        if self._backlog and self._backlog_transitions + segment.length > self.max_backlog:
            self.refused_backlog_full += 1
            raise SegmentRejectedError(
                f'segment {segment.segment_id!r} refused: {self._backlog_transitions} '
                f'transitions are waiting for learning to catch up (max_backlog_transitions '
                f'{self.max_backlog}); the sender is not following flow control')
        self._remember(segment.segment_id)
        self._backlog.append(segment)
        self._backlog_transitions += segment.length

    def admit(self, may_admit: Callable[[], bool], add: Callable[[Segment], None]) -> int:
        """Pass backlog segments to ``add`` while ``may_admit()``; returns how many."""
        admitted = 0
        while self._backlog and may_admit():
            segment = self._backlog.popleft()
            self._backlog_transitions -= segment.length
            add(segment)
            self._track_episode(segment)
            admitted += 1
        return admitted

    @property
    def backlog(self) -> int:
        """Segments received and not yet admitted."""
        return len(self._backlog)

    def _remember(self, segment_id: str) -> None:
        self._recent[segment_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    def _track_episode(self, segment: Segment) -> None:
        rewards = (segment.rewards if segment.rewards is not None
                   else np.zeros(segment.length, np.float32))
        key = (segment.source_id, segment.episode)
        totals = self._open.setdefault(key, [0.0, False])
        totals[0] += float(rewards.sum())
        totals[1] = totals[1] or bool(segment.success is not None and segment.success.any())
        if segment.terminated[-1] or segment.truncated[-1]:
            del self._open[key]
            self.episodes.append((totals[0], totals[1]))
        while len(self._open) > _OPEN_EPISODES:
            self._open.popitem(last=False)

    # ------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """The backlog (segments as tensors, without frames) and the episode figures."""
        return {'backlog': [_segment_state(segment) for segment in self._backlog],
                'episodes': [[float(r), bool(s)] for r, s in self.episodes]}

    def load_state_dict(self, state: dict[str, Any], known_ids: Iterator[str]) -> None:
        """Restore :meth:`state_dict`; ``known_ids`` (the segment store's) and the backlog's
        ids are refused if received again."""
        self._backlog.clear()
        self._backlog.extend(_segment_from_state(item) for item in state['backlog'])
        self._backlog_transitions = sum(segment.length for segment in self._backlog)
        self.episodes.clear()
        self.episodes.extend((float(r), bool(s)) for r, s in state['episodes'])
        for segment_id in (*known_ids, *(s.segment_id for s in self._backlog)):
            self._remember(segment_id)


def _segment_state(segment: Segment) -> dict[str, Any]:
    """``segment`` as tensors and plain values, without frames (the robot serves them)."""
    fields = dataclasses.asdict(dataclasses.replace(segment, frames=None, frame_stride=0))
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in fields.items()}


def _segment_from_state(item: dict[str, Any]) -> Segment:
    return Segment(**{k: v.numpy() if isinstance(v, torch.Tensor) else v
                      for k, v in item.items()})
