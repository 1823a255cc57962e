"""What the ``teacher`` node does, without ROS: answer queries, pace answers, retry submissions.

The node (:mod:`pref_rl_learner.ros.teacher`) only converts messages and calls into three
pieces here:

- :class:`EpisodeReturns` sums the true rewards of the ``segments`` stream per
  ``(source_id, episode)`` until a segment whose last step is terminated or truncated, and
  hands each finished episode's (return, length) to the scripted teacher, whose skip/equal
  thresholds are fractions of the typical recent return (B-Pref; :mod:`pref_rl_learner.teacher`).
  An episode first seen in the middle (the node started late) is not reported: its sum would
  be partial.
- :class:`QueryAnswerer` labels one :class:`PreferenceQuery` with a :class:`ScriptedTeacher`
  at once (so the choice never depends on pacing or outages) and releases the answers in
  arrival order, each ``pace_s`` after the previous one (a person answering one query every
  ``pace_s`` seconds); ``response_time_s`` is the time from receipt to release.
- :class:`SubmissionQueue` delivers released labels to the learner one at a time, in order,
  retrying with exponential backoff while the service is missing, a call fails or times out
  (the learner may be restarting; it stores a retried label once), until it is acknowledged.
  A refusal is final unless its message says it is transient (:data:`TRANSIENT_MARKERS`):
  e.g. "unknown query id" is logged and the label dropped.

Simulation only: a query whose segments carry no true rewards cannot be answered by a
scripted teacher; :meth:`QueryAnswerer.add` raises :class:`TeacherError` and the node logs it
and leaves the query unanswered (a SKIP would count against the budget as if a person had
looked at it).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import ConfigError
from pref_rl_learner.teacher import TEACHER_PRESETS, ScriptedTeacher, TeacherError
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment

TRANSIENT_MARKERS = ('try again', 'transient', 'busy', 'not ready')
"""A refusal (``success=false``) whose message contains one of these (any case) is retried
with backoff; any other refusal is final."""


@dataclass(frozen=True)
class TeacherNodeConfig:
    """Parameters of the ``teacher`` node."""

    preset: str = 'oracle'
    """B-Pref teacher: oracle, mistake, noisy, skip, myopic or equal."""
    seed: int = 0
    """Seed of the teacher's random draws (noisy answers, mistakes)."""
    pace_s: float = 0.0
    """Seconds between consecutive answers, to mimic a person (0: answer at once)."""
    labeler_id: str = ''
    """labeler_id written into every label ('': ``teacher/<preset>``)."""
    retry_initial_s: float = 0.2
    """First delay before resubmitting a label that was not acknowledged."""
    retry_max_s: float = 5.0
    """Longest delay between resubmissions (the delay doubles up to this)."""
    call_timeout_s: float = 10.0
    """A SubmitLabel call without a response after this long is abandoned and retried."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.preset not in TEACHER_PRESETS:
            raise ConfigError(f"{name}.preset: {self.preset!r} is not one of "
                              f"{', '.join(TEACHER_PRESETS)}")
        if self.seed < 0:
            raise ConfigError(f'{name}.seed: {self.seed} must be >= 0')
        if not (math.isfinite(self.pace_s) and self.pace_s >= 0):
            raise ConfigError(f'{name}.pace_s: {self.pace_s} must be finite and >= 0')
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ConfigError(f'{name}.retry_initial_s ({self.retry_initial_s}) must be > 0 '
                              f'and <= retry_max_s ({self.retry_max_s})')
        if self.call_timeout_s <= 0:
            raise ConfigError(f'{name}.call_timeout_s: {self.call_timeout_s} must be > 0')

    @property
    def resolved_labeler_id(self) -> str:
        """``labeler_id``, or ``teacher/<preset>`` when it is empty."""
        return self.labeler_id or f'teacher/{self.preset}'


class EpisodeReturns:
    """Sums true rewards per (source_id, episode) and reports finished episodes."""

    def __init__(self, max_open: int = 64) -> None:
        self._open: collections.OrderedDict[tuple[str, int], tuple[float, int]] = (
            collections.OrderedDict())
        self._max_open = max_open

    def add(self, segment: Segment) -> tuple[float, int] | None:
        """Account for ``segment``; (return, length) when it ends its episode, else None.

        Segments without true rewards are ignored; so is an episode whose first seen
        segment does not start at step 0 (its return would be partial).
        """
        if segment.rewards is None:
            return None
        key = (segment.source_id, segment.episode)
        total, length = self._open.pop(key, (None, 0))
        if total is None:
            if segment.start_step != 0:
                return None
            total = 0.0
        total += float(np.sum(segment.rewards, dtype=np.float64))
        length += segment.length
        if bool(segment.terminated[-1]) or bool(segment.truncated[-1]):
            return total, length
        self._open[key] = (total, length)
        while len(self._open) > self._max_open:  # sources that vanished mid-episode
            self._open.popitem(last=False)
        return None


@dataclass
class _Answer:
    query_id: str
    choice: Choice
    received_at: float
    due_at: float


class QueryAnswerer:
    """Labels queries with a scripted teacher; releases the answers in order, paced."""

    def __init__(self, config: TeacherNodeConfig) -> None:
        self.config = config
        self.teacher = ScriptedTeacher(TEACHER_PRESETS[config.preset],
                                       np.random.default_rng(config.seed))
        self.episodes = EpisodeReturns()
        self._waiting: collections.deque[_Answer] = collections.deque()
        self._answered: set[str] = set()
        self._last_due = -math.inf

    def observe_segment(self, segment: Segment) -> tuple[float, int] | None:
        """Feed one segment of the stream; a finished episode's (return, length) goes to the
        teacher's thresholds and is returned."""
        finished = self.episodes.add(segment)
        if finished is not None:
            self.teacher.observe_episode_return(*finished)
        return finished

    def add(self, query: PreferenceQuery, now: float) -> Choice | None:
        """Label ``query`` (received at monotonic time ``now``); None if it was seen before.

        Raises:
            TeacherError: a segment has no true rewards, or the two differ in length.
        """
        if query.query_id in self._answered:
            return None
        left, right = query.left, query.right
        missing = [side for side, s in (('left', left), ('right', right)) if s.rewards is None]
        if missing:
            raise TeacherError(f"query {query.query_id!r}: the {' and '.join(missing)} "
                               'segment carries no true rewards; a scripted teacher answers '
                               'in simulation only')
        if left.length != right.length:
            raise TeacherError(f'query {query.query_id!r}: segments of {left.length} and '
                               f'{right.length} steps cannot be compared')
        pairs = SegmentPairs(
            left.observations[None], left.actions.reshape(1, left.length, -1),
            right.observations[None], right.actions.reshape(1, right.length, -1),
            left_rewards=left.rewards[None], right_rewards=right.rewards[None])
        choice = Choice(int(self.teacher.label(pairs)[0]))
        # A person takes pace_s per query, starting when it arrives or when the last is done.
        due = max(now, self._last_due) + self.config.pace_s
        self._last_due = due
        self._waiting.append(_Answer(query.query_id, choice, now, due))
        self._answered.add(query.query_id)
        return choice

    def next_due(self) -> float | None:
        """Monotonic time at which the next answer is released (None: none waiting)."""
        return self._waiting[0].due_at if self._waiting else None

    def release(self, now: float, stamp_ns: int) -> Iterator[PreferenceLabel]:
        """The labels due at ``now``, oldest first, stamped ``stamp_ns``."""
        while self._waiting and self._waiting[0].due_at <= now:
            a = self._waiting.popleft()
            yield PreferenceLabel(query_id=a.query_id, choice=a.choice,
                                  labeler_id=self.config.resolved_labeler_id,
                                  response_time_s=max(0.0, now - a.received_at),
                                  stamp_ns=stamp_ns)


def is_transient(message: str) -> bool:
    """Whether a refusal message asks to be retried (see :data:`TRANSIENT_MARKERS`)."""
    lowered = message.lower()
    return any(marker in lowered for marker in TRANSIENT_MARKERS)


class SubmissionQueue:
    """Labels waiting for acknowledgement, sent one at a time in order, with backoff.

    Protocol: :meth:`next_to_send` gives the head label when no call is in flight and its
    retry time has come; the caller sends it and reports :meth:`acknowledged`,
    :meth:`failed` (no service, exception, timeout: retried) or :meth:`refused` (a response
    with success=false: retried only if transient).
    """

    def __init__(self, retry_initial_s: float, retry_max_s: float) -> None:
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self._labels: collections.deque[PreferenceLabel] = collections.deque()
        self._retry_at = -math.inf
        self._delay = retry_initial_s
        self.attempts = 0
        """Calls (or failed attempts) made for the head label."""
        self.in_flight = False
        self.acknowledged_count = 0
        self.dropped: list[tuple[str, str]] = []
        """(query_id, reason) of the labels given up on."""

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def head(self) -> PreferenceLabel | None:
        """The label being delivered (None: nothing queued)."""
        return self._labels[0] if self._labels else None

    def push(self, label: PreferenceLabel) -> None:
        """Queue ``label`` behind the others."""
        self._labels.append(label)

    def next_to_send(self, now: float) -> PreferenceLabel | None:
        """The head label if it may be sent now (marks it in flight), else None."""
        if self.in_flight or not self._labels or now < self._retry_at:
            return None
        self.in_flight = True
        self.attempts += 1
        return self._labels[0]

    def acknowledged(self) -> PreferenceLabel:
        """The head label is stored: drop it and move on."""
        self.acknowledged_count += 1
        return self._pop()

    def failed(self, now: float) -> float:
        """The head label's attempt failed; returns the delay before the next attempt."""
        self.in_flight = False
        delay = self._delay
        self._retry_at = now + delay
        self._delay = min(2 * self._delay, self.retry_max_s)
        return delay

    def refused(self, now: float, message: str) -> float | None:
        """The learner refused the head label: the retry delay if ``message`` is transient,
        else None (the label is dropped)."""
        if is_transient(message):
            return self.failed(now)
        label = self._pop()
        self.dropped.append((label.query_id, message))
        return None

    def _pop(self) -> PreferenceLabel:
        self.in_flight = False
        self.attempts = 0
        self._retry_at = -math.inf
        self._delay = self.retry_initial_s
        return self._labels.popleft()
