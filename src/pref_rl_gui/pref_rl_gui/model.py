"""The labelling app's state, without Qt or ROS: what the window shows and what a key does.

:class:`LabelingModel` is the one object the widgets talk to (as an rqt plugin's widgets talk
to its model) and the one the tests drive directly. It holds

- the **queries**: the one shown (``current``) and those waiting (``queue_count``); repeats
  of a query (a learner republishes unanswered ones) are dropped, and so are queries already
  answered in the outbox;
- the **labels**: :meth:`answer` writes a label to the durable :class:`~pref_rl_gui.outbox.Outbox`
  (fsynced) before anything else happens, with the labeller's id and the response time (from
  the moment the query was shown); :meth:`undo` withdraws the last label while it is unsent
  and shows its query again; :meth:`pump` hands due labels to a :class:`LabelSink` (the ROS
  bridge, or the local store of the standalone app) through a
  :class:`~pref_rl_gui.delivery.Delivery`, and :meth:`on_submit_result` /
  :meth:`on_submit_failed` take the outcome;
- the **learner**: whether its ``submit_label`` service is reachable (a banner says so when
  not, while labelling goes on), its latest status (feedback budget, labels stored,
  reward-model accuracy), and the history of those for the plot;
- the **last full episode** of the ``segments`` stream (:mod:`pref_rl_gui.episodes`);
- **frames**: segments without frames are listed by :meth:`frames_wanted`; frames that arrive
  later (:meth:`on_frames`) are checked and attached for display (:mod:`pref_rl_gui.frames`);
  when they cannot be had (:meth:`on_frames_failed`), :meth:`frames_note` says so for the
  query shown;
- **messages**: errors and notices for the status line (a malformed query, a refused label).

Listeners (:meth:`subscribe`) are called with a :class:`Change` after every change. Every
method is meant to be called from one thread (the Qt main thread); the ROS bridge delivers
its data through Qt signals, never by calling the model from its own thread.
"""

from __future__ import annotations

import collections
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pref_rl_gui.config import LabelerConfig
from pref_rl_gui.delivery import Delivery
from pref_rl_gui.episodes import Episode, EpisodeAssembler
from pref_rl_gui.frames import FrameCache
from pref_rl_gui.outbox import EntryState, Outbox, OutboxEntry, OutboxError
from pref_rl_learner.types import Choice, LearnerStatus, PreferenceLabel, PreferenceQuery, Segment

_RECENT_ANSWERS = 64  # answered queries kept in memory, so that undo can show them again


class Change(enum.Flag):
    """What changed, for listeners."""

    QUERY = enum.auto()
    """The query shown changed."""
    QUEUE = enum.auto()
    """The number of waiting queries changed."""
    OUTBOX = enum.auto()
    """A label was written, undone, acknowledged or refused."""
    LEARNER = enum.auto()
    """The learner's availability or status changed."""
    HISTORY = enum.auto()
    """A point was added to the accuracy / label-count history."""
    EPISODE = enum.auto()
    """A new last full episode is to be shown."""
    FRAMES = enum.auto()
    """Frames arrived for a segment on display."""
    MESSAGE = enum.auto()
    """A message was added."""


class LabelSink(Protocol):
    """Where labels go: ``submit`` starts delivering one; the outcome comes back through
    :meth:`LabelingModel.on_submit_result` or :meth:`LabelingModel.on_submit_failed`."""

    def submit(self, label: PreferenceLabel) -> None:
        """Start sending ``label`` (may report the outcome before returning)."""


@dataclass(frozen=True)
class HistoryPoint:
    """The learner's progress at one moment."""

    elapsed_s: float
    """Seconds since the app started."""
    labels_stored: int
    """Labels the learner has stored (all labellers)."""
    accuracy: float
    """Reward-model validation accuracy (NaN: not measured)."""
    reward_model_version: int
    """Reward-model version."""


@dataclass(frozen=True)
class Message:
    """A line for the status bar and the log."""

    elapsed_s: float
    level: str
    """``info``, ``warning`` or ``error``."""
    text: str


class LabelingModel:
    """State and actions of the labelling window (see the module docstring).

    Args:
        config: the app's settings.
        outbox: the open durable outbox.
        sink: where due labels are sent (None: kept in the outbox until one is set).
        clock: monotonic seconds (tests inject a fake one).
        wall_clock_ns: wall-clock nanoseconds, for label stamps.
        standalone: no learner (``pref-rl label``): no banner about one.
    """

    def __init__(self, config: LabelerConfig, outbox: Outbox, *, sink: LabelSink | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock_ns: Callable[[], int] = time.time_ns,
                 standalone: bool = False) -> None:
        self.config = config
        self.labeler_id = config.resolved_labeler_id
        self.outbox = outbox
        self.sink = sink
        self.clock, self.wall_clock_ns = clock, wall_clock_ns
        self.standalone = standalone
        self.delivery = Delivery(outbox, undo_window_s=config.undo_window_s,
                                 retry_initial_s=config.retry_initial_s,
                                 retry_max_s=config.retry_max_s)
        self.started_at = clock()
        self.current: PreferenceQuery | None = None
        """The query shown (None: none waiting)."""
        self.shown_at = math.nan
        """Monotonic time the current query was shown."""
        self._queue: collections.deque[PreferenceQuery] = collections.deque()
        self._answered: collections.OrderedDict[str, PreferenceQuery] = (
            collections.OrderedDict())
        self.learner_available: bool | None = None
        """Whether the learner's submit_label service is reachable (None: not known yet)."""
        self.status: LearnerStatus | None = None
        """The learner's latest status."""
        self.history: collections.deque[HistoryPoint] = collections.deque(
            maxlen=config.history_points)
        self.messages: collections.deque[Message] = collections.deque(maxlen=200)
        self.episodes = EpisodeAssembler()
        self.episode: Episode | None = None
        """The last full episode on display."""
        self._episode_shown_at = -math.inf
        self.frames = FrameCache()
        """Frames that arrived for segments on display (:mod:`pref_rl_gui.frames`)."""
        self.queries_received = 0
        self.queries_rejected = 0
        self._listeners: list[Callable[[Change], None]] = []

    # ---------------------------------------------------------------------------- plumbing

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener(change)`` after every change."""
        self._listeners.append(listener)

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    def elapsed(self) -> float:
        """Seconds since the app started."""
        return self.clock() - self.started_at

    def report(self, level: str, text: str) -> None:
        """Add a message (``info``, ``warning``, ``error``) for the status line."""
        self.messages.append(Message(self.elapsed(), level, text))
        self._notify(Change.MESSAGE)

    # ----------------------------------------------------------------------------- queries

    @property
    def queue_count(self) -> int:
        """Queries waiting behind the one shown."""
        return len(self._queue)

    def queued(self) -> list[PreferenceQuery]:
        """The waiting queries, next first."""
        return list(self._queue)

    def add_query(self, query: PreferenceQuery) -> bool:
        """Queue a received query; False when it repeats one queued, shown or answered."""
        self.queries_received += 1
        ids = (query.left.segment_id, query.right.segment_id)
        for known in (self.current, *self._queue):
            if known is not None and known.query_id == query.query_id:
                if (known.left.segment_id, known.right.segment_id) != ids:
                    self.queries_rejected += 1
                    self.report('error', f'query {query.query_id!r} arrived again with other '
                                         'segments; the first one is kept')
                return False
        change = Change(0)
        try:
            entry = self.outbox.confirm(query.query_id, *ids)
        except OutboxError as err:
            self.report('error', str(err))
            return False
        if entry is not None and entry.state is EntryState.STALE:
            self.report('warning', f'an earlier label for {query.query_id!r} belongs to another '
                                   f'run and will not be sent: {entry.message}')
            change |= Change.OUTBOX
        elif entry is not None:  # answered already
            if entry.state is EntryState.UNSENT:  # confirmed now: it may be sent
                self._notify(Change.OUTBOX)
                self.pump()
            return False
        self._queue.append(query)
        change |= Change.QUEUE
        if self.current is None:
            self._advance()
            change |= Change.QUERY
        self._notify(change)
        return True

    def reject_query(self, query_id: str, reason: str) -> None:
        """A query could not be decoded (malformed, NaN, ...): count and report it."""
        self.queries_received += 1
        self.queries_rejected += 1
        self.report('error', f'query {query_id!r} cannot be shown: {reason}')

    def _advance(self) -> None:
        self.current = self._queue.popleft() if self._queue else None
        self.shown_at = self.clock() if self.current is not None else math.nan
        self._drop_unused_frames()

    # ------------------------------------------------------------------------------ labels

    def answer(self, choice: Choice) -> OutboxEntry | None:
        """Answer the query shown with ``choice``: the label goes to the outbox (on disk when
        this returns; with a background outbox, on disk before it is ever sent) and the next
        query is shown. None when nothing is shown or the outbox write failed (then the
        query stays shown and an error is reported)."""
        query = self.current
        if query is None:
            return None
        now = self.clock()
        label = PreferenceLabel(query_id=query.query_id, choice=Choice(choice),
                                labeler_id=self.labeler_id,
                                response_time_s=max(0.0, now - self.shown_at),
                                stamp_ns=self.wall_clock_ns())
        try:
            entry = self.outbox.add(label, query.left.segment_id, query.right.segment_id, now)
        except OutboxError as err:
            self.report('error', f'label not saved, answer again: {err}')
            return None
        self._answered[query.query_id] = query
        while len(self._answered) > _RECENT_ANSWERS:
            self._answered.popitem(last=False)
        self._advance()
        self._notify(Change.QUERY | Change.QUEUE | Change.OUTBOX)
        self.pump()
        return entry

    def last_label(self) -> OutboxEntry | None:
        """The last label given in this run that was not withdrawn (None: none)."""
        for entry in reversed(self.outbox):
            if entry.written_at == -math.inf:
                return None  # from an earlier run
            if entry.state is not EntryState.WITHDRAWN:
                return entry
        return None

    def can_undo(self) -> bool:
        """Whether :meth:`undo` would withdraw a label now."""
        entry = self.last_label()
        return (entry is not None and entry.state is EntryState.UNSENT
                and entry is not self.delivery.in_flight and entry.query_id in self._answered)

    def undo(self) -> OutboxEntry | None:
        """Withdraw the last label if it is still unsent and show its query again; None (and
        a message) when there is none or it is already sent."""
        entry = self.last_label()
        if entry is None:
            self.report('warning', 'nothing to undo')
            return None
        if not self.can_undo():
            why = ('it is being sent' if entry is self.delivery.in_flight
                   else f'it is {entry.state.value}' if entry.state is not EntryState.UNSENT
                   else 'its query is no longer at hand')
            self.report('warning', f'the label for {entry.query_id!r} cannot be undone: {why}')
            return None
        try:
            self.outbox.settle(entry, EntryState.WITHDRAWN)
        except OutboxError as err:
            self.report('error', f'undo failed: {err}')
            return None
        if self.current is not None:
            self._queue.appendleft(self.current)
        self.current = self._answered.pop(entry.query_id)
        self.shown_at = self.clock()
        self.report('info', f'label {entry.label.choice.name} for {entry.query_id!r} undone')
        self._notify(Change.QUERY | Change.QUEUE | Change.OUTBOX)
        return entry

    def unsent_count(self) -> int:
        """Labels in the outbox not acknowledged yet."""
        return len(self.outbox.unsent())

    def pump(self, *, flush: bool = False) -> None:
        """Hand the labels that are due to the sink (one call outstanding at a time); with
        ``flush`` also those still in their undo window (the person is done). First, labels
        whose background write failed are taken back and their queries shown again."""
        if flush:
            self.outbox.sync()
        self._take_back_unsaved()
        for _ in range(len(self.outbox) + 1):  # a synchronous sink settles within submit()
            if self.sink is None:
                return
            entry = self.delivery.next_to_send(self.clock(), flush=flush)
            if entry is None:
                return
            self.sink.submit(entry.label)

    def _take_back_unsaved(self) -> None:
        failures = self.outbox.take_failures()
        for entry, error in failures:
            if entry is None or entry.state is not EntryState.UNSENT:
                self.report('error', f'{error} (an outcome record; the label may be sent '
                                     'again after a restart and is stored once)')
                continue
            entry.state, entry.message = EntryState.WITHDRAWN, error  # never on disk
            query = self._answered.pop(entry.query_id, None)
            if query is not None:
                if self.current is not None:
                    self._queue.appendleft(self.current)
                self.current, self.shown_at = query, self.clock()
            self.report('error', f'the label for {entry.query_id!r} could not be saved '
                                 f'({error}); answer it again')
        if failures:
            self._notify(Change.QUERY | Change.QUEUE | Change.OUTBOX)

    def on_submit_result(self, query_id: str, success: bool, message: str) -> None:
        """The learner answered the SubmitLabel call for ``query_id``."""
        entry = self.delivery.in_flight
        if entry is None or entry.query_id != query_id:
            self.report('warning', f'an answer for {query_id!r} arrived, but no label for it '
                                   'is being sent; ignored')
            return
        try:
            if success:
                self.delivery.acknowledged(message)
                self.report('info', f'label for {query_id!r} {message or "stored"}')
            else:
                delay = self.delivery.refused(self.clock(), message)
                if delay is None:
                    self.report('error', f'the learner refused the label for {query_id!r}: '
                                         f'{message}')
                else:
                    self.report('warning', f'label for {query_id!r} not stored yet ({message}); '
                                           f'retrying in {delay:.2g} s')
        except OutboxError as err:
            self.report('error', str(err))
        self._notify(Change.OUTBOX)
        self.pump()

    def on_submit_failed(self, query_id: str, reason: str) -> None:
        """The SubmitLabel call for ``query_id`` failed (no service, timeout, exception)."""
        entry = self.delivery.in_flight
        if entry is None or entry.query_id != query_id:
            return
        delay = self.delivery.failed(self.clock())
        if self.delivery.attempts <= 1 or self.learner_available:
            self.report('warning', f'label for {query_id!r} not delivered ({reason}); '
                                   f'retrying in {delay:.2g} s')
        self._notify(Change.OUTBOX)

    # ----------------------------------------------------------------------------- learner

    def set_learner_available(self, available: bool) -> None:
        """Whether the learner's submit_label service is reachable now."""
        if available == self.learner_available:
            return
        self.learner_available = available
        if available:
            self.delivery.learner_back()
            self.report('info', 'learner reachable')
            self.pump()
        else:
            self.report('warning', 'learner not reachable: labels are kept in the outbox '
                                   'until it is back')
        self._notify(Change.LEARNER)

    def on_status(self, status: LearnerStatus) -> None:
        """The learner's latest status; a history point when its labels or model changed."""
        self.status = status
        change = Change.LEARNER
        last = self.history[-1] if self.history else None
        if (last is None or last.labels_stored != status.labels_stored
                or last.reward_model_version != status.reward_model_version
                or not _same_float(last.accuracy, status.reward_model_accuracy)):
            self.history.append(HistoryPoint(self.elapsed(), status.labels_stored,
                                             float(status.reward_model_accuracy),
                                             status.reward_model_version))
            change |= Change.HISTORY
        self._notify(change)

    def banner(self) -> str | None:
        """The warning across the window, or None when all is well."""
        if self.standalone or self.learner_available:
            return None
        unsent = self.unsent_count()
        saved = (f'{unsent} label{"s" if unsent != 1 else ""} saved locally, sent when it is '
                 'back' if unsent else 'your labels are saved locally until it is back')
        if self.learner_available is None:
            return f'Waiting for the learner ({self.config.submit_service}): {saved}.'
        return f'Learner not reachable: keep labelling, {saved}.'

    def budget(self) -> tuple[int, int] | None:
        """(labels stored, feedback budget) from the learner's status; None: unknown."""
        if self.status is None or self.status.feedback_budget == 0:
            return None
        return self.status.labels_stored, self.status.feedback_budget

    # ---------------------------------------------------------------------------- episodes

    def on_segment(self, segment: Segment) -> None:
        """A segment of the stream; shows a newly finished episode at most every
        ``episode_refresh_s``."""
        episode = self.episodes.add(segment)
        now = self.clock()
        if episode is None or now - self._episode_shown_at < self.config.episode_refresh_s:
            return
        self.episode, self._episode_shown_at = episode, now
        self._drop_unused_frames()
        self._notify(Change.EPISODE)

    # ------------------------------------------------------------------------------ frames

    def _on_display(self) -> list[Segment]:
        shown = [q for q in (self.current, *list(self._queue)[:2]) if q is not None]
        out = [s for q in shown for s in (q.left, q.right)]
        if self.episode is not None:
            out.extend(self.episode.segments)
        return out

    def frames_wanted(self) -> list[str]:
        """Ids of segments on display (or next) that lack frames and were not asked for
        yet; they count as asked for from now on."""
        return self.frames.wanted(self._on_display())

    def on_frames(self, segment_id: str, frames: np.ndarray, frame_stride: int) -> bool:
        """Frames for a segment on display arrived; False (and an error) if unusable."""
        segment = next((s for s in self._on_display() if s.segment_id == segment_id), None)
        if segment is None:
            return False
        try:
            self.frames.accept(segment, frames, frame_stride)
        except ValueError as err:
            self.report('error', f'frames of segment {segment_id!r} unusable: {err}')
            return False
        self._notify(Change.FRAMES)
        return True

    def on_frames_failed(self, segment_id: str, reason: str) -> None:
        """No frames for ``segment_id`` (drawn from its observations instead); the query
        shown says so (:meth:`frames_note`)."""
        if not any(s.segment_id == segment_id for s in self._on_display()):
            return
        self.frames.fail(segment_id, reason)
        self.report('info', f'no frames for segment {segment_id!r} ({reason}); showing its '
                            'trajectory')
        self._notify(Change.FRAMES)

    def frames_note(self) -> str | None:
        """For the query shown: which clip's camera frames cannot be had and why (None: all
        there, or still asked for)."""
        q = self.current
        if q is None:
            return None
        missing = []
        for name, segment in (('A (left)', q.left), ('B (right)', q.right)):
            reason = (self.frames.failure(segment.segment_id)
                      if self.displayed(segment).frames is None else None)
            if reason is not None:
                missing.append(f'clip {name}: {reason}')
        if not missing:
            return None
        return ('No camera frames for ' + '; '.join(missing)
                + '. Both clips are drawn from their recorded states instead.')

    def displayed(self, segment: Segment) -> Segment:
        """``segment`` with the frames that arrived for it, if any."""
        return self.frames.attach(segment)

    def _drop_unused_frames(self) -> None:
        self.frames.retain({s.segment_id for s in self._on_display()})


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
