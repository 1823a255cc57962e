"""When to send which outbox label: one at a time, oldest first, after its undo window, with
exponential backoff while the learner is away.

Protocol (driven by :class:`~pref_rl_gui.model.LabelingModel`): :meth:`Delivery.next_to_send`
hands out the oldest sendable label and marks it in flight; the caller sends it and reports
exactly one outcome: :meth:`acknowledged` (``success`` true, ``stored`` or ``already
stored``), :meth:`failed` (no service, an exception, a timeout: retried) or :meth:`refused`
(``success`` false: retried only if the message says the refusal is transient, e.g. "try
again"; otherwise recorded as refused and never resent).
"""

from __future__ import annotations

import math

from pref_rl_gui.outbox import EntryState, Outbox, OutboxEntry
from pref_rl_learner.teacher_answering import is_transient


class Delivery:
    """Sends the labels of an :class:`Outbox` in order, with backoff."""

    def __init__(self, outbox: Outbox, *, undo_window_s: float, retry_initial_s: float,
                 retry_max_s: float) -> None:
        self.outbox = outbox
        self.undo_window_s = undo_window_s
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.in_flight: OutboxEntry | None = None
        """The label being sent (None: no call outstanding)."""
        self.attempts = 0
        """Failed attempts since the last acknowledgement or refusal."""
        self._retry_at = -math.inf
        self._delay = retry_initial_s

    def due_at(self, entry: OutboxEntry) -> float:
        """Monotonic time from which ``entry`` may be sent (its undo window's end)."""
        return entry.written_at + self.undo_window_s

    def next_to_send(self, now: float, *, flush: bool = False) -> OutboxEntry | None:
        """The oldest unsent, confirmed label that is on disk and whose undo window is over
        (with ``flush``: or not), marked in flight; None while a call is in flight, during
        backoff, or when nothing is due."""
        if self.in_flight is not None or now < self._retry_at:
            return None
        for entry in self.outbox.unsent():
            if not entry.confirmed:
                continue  # from an earlier run: waits for its query to come back
            if not entry.durable or (now < self.due_at(entry) and not flush):
                return None  # younger labels are written later still
            self.in_flight = entry
            return entry
        return None

    def acknowledged(self, message: str) -> OutboxEntry:
        """The learner stored the label in flight: record it, send the next one at once."""
        entry = self._take()
        self.outbox.settle(entry, EntryState.ACKNOWLEDGED, message)
        self.attempts, self._retry_at, self._delay = 0, -math.inf, self.retry_initial_s
        return entry

    def failed(self, now: float) -> float:
        """The attempt failed (no answer): returns the delay before the next attempt."""
        self._take()
        self.attempts += 1
        delay = self._delay
        self._retry_at = now + delay
        self._delay = min(2 * self._delay, self.retry_max_s)
        return delay

    def refused(self, now: float, message: str) -> float | None:
        """The learner said no: the retry delay if ``message`` is transient, else None (the
        label is recorded as refused and never sent again)."""
        if is_transient(message):
            return self.failed(now)
        entry = self._take()
        self.outbox.settle(entry, EntryState.REFUSED, message)
        self.attempts = 0
        return None

    def learner_back(self) -> None:
        """The learner (re)appeared: end the backoff, so waiting labels go out at once."""
        self._retry_at, self._delay = -math.inf, self.retry_initial_s

    def _take(self) -> OutboxEntry:
        entry, self.in_flight = self.in_flight, None
        if entry is None:
            raise RuntimeError('no label is in flight')
        return entry
