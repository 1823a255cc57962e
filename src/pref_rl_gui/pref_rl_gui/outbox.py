"""Durable local outbox: every label is on disk before it is sent, until it is acknowledged.

A person's labels cost their time, so the labelling app never holds one only in memory. A
label is appended to an fsynced, checksummed record log (the preference store's format,
:mod:`pref_rl_learner.preferences.log`) the moment the key is pressed; then it is sent to the
learner, retried until ``SubmitLabel`` acknowledges it, and the acknowledgement is appended
too. Records (the JSON meta of each log record):

- ``header`` (first): format name and version.
- ``label``: a sequence number, the label's fields, and the ids of the query's two segments.
- ``ack``: the learner stored the label (its message, ``stored`` or ``already stored``).
- ``refused``: the learner refused it for good (e.g. an unknown query id); never resent.
- ``withdrawn``: the person undid it before it was sent; never sent.

With ``background=True`` (the app) the records are appended and fsynced by a writer thread,
in order, so the window never waits for the disk: an entry is :attr:`OutboxEntry.durable`
once its label record is on disk, and nothing is sent before that. A write that fails is
reported through :meth:`Outbox.take_failures` (the log then refuses further writes until it
is reopened, as the preference store does after a failed fsync).

On open, the log is replayed: labels without an outcome are *unsent* and are sent again. A
crash between the learner storing a label and the ``ack`` record makes it be sent once more,
which the learner answers ``already stored`` without storing it twice; an acknowledged label
is never sent again.

Labels from an earlier run of the app are *unconfirmed* until their query arrives again with
the same two segment ids (a learner republishes its unanswered queries): query ids restart
at ``session0000-q000`` in every learner run, and a label must never be delivered to another
run's query of the same id. A query that comes back under the same id with other segments
marks the label *stale*; it is kept in the log and never sent.
"""

from __future__ import annotations

import enum
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.preferences.log import Record, RecordLog, StoreError
from pref_rl_learner.types import Choice, PreferenceLabel

LOG_NAME = 'outbox.log'
"""Name of the record log inside an outbox directory."""
FORMAT = 'pref-rl-label-outbox'
FORMAT_VERSION = 1


class OutboxError(PrefRLError):
    """The outbox cannot be opened or written (locked by another labeller, damaged, ...)."""


class EntryState(enum.Enum):
    """Where a label in the outbox stands."""

    UNSENT = 'unsent'
    """Not acknowledged yet: waiting for its undo window, in flight or being retried."""
    ACKNOWLEDGED = 'acknowledged'
    """The learner stored it."""
    REFUSED = 'refused'
    """The learner refused it for good; kept, never resent."""
    WITHDRAWN = 'withdrawn'
    """Undone before it was sent."""
    STALE = 'stale'
    """From an earlier run, and its query id now names other segments; never sent."""


@dataclass
class OutboxEntry:
    """One label in the outbox."""

    seq: int
    """Position in the outbox (0, 1, ...)."""
    label: PreferenceLabel
    """The label exactly as it is sent."""
    left_id: str
    """segment_id of the query's left segment."""
    right_id: str
    """segment_id of the query's right segment."""
    state: EntryState = EntryState.UNSENT
    confirmed: bool = True
    """The query was seen in this run of the app (sendable); False for labels replayed from
    an earlier run until their query arrives again."""
    written_at: float = -math.inf
    """Monotonic time the label was written in this run (-inf: replayed)."""
    message: str = ''
    """The learner's answer (acknowledged or refused), or why the label is stale."""
    durable: bool = True
    """Its label record is on disk (False while the writer thread has it queued)."""

    @property
    def query_id(self) -> str:
        """Id of the query the label answers."""
        return self.label.query_id


class Outbox:
    """An open outbox directory (exclusively locked): :meth:`open`, then add and settle."""

    def __init__(self, directory: Path, log: RecordLog) -> None:
        self.directory = directory
        self._log = log
        self._entries: list[OutboxEntry] = []
        self._settled = 0  # every entry before this index is settled
        self._writer: _Writer | None = None

    @classmethod
    def open(cls, directory: str | Path, *, fsync: bool = True,
             background: bool = False) -> Outbox:
        """Open (creating) the outbox in ``directory`` and replay it.

        Args:
            fsync: fsync every record (only tests and benchmarks may turn it off).
            background: write records in a writer thread (see the module docstring);
                otherwise each call returns once its record is on disk.

        Raises:
            OutboxError: another labeller holds the outbox, or its log is damaged.
        """
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            log = RecordLog(directory / LOG_NAME, fsync=fsync)
        except (StoreError, OSError) as err:
            raise OutboxError(f'cannot open the label outbox {directory}: {err} (is another '
                              'labeller using it? give each its own outbox_dir)') from None
        outbox = cls(directory, log)
        try:
            outbox._replay()
        except StoreError as err:
            log.close()
            raise OutboxError(f'label outbox {directory}: {err}') from None
        if background:
            outbox._writer = _Writer(log)
        return outbox

    def _replay(self) -> None:
        records = self._log.replay()
        first = next(records, None)
        if first is None:
            self._log.append({'kind': 'header', 'format': FORMAT, 'version': FORMAT_VERSION})
            return
        if first.meta.get('kind') != 'header' or first.meta.get('format') != FORMAT:
            raise StoreError(f'{self._log.path} is not a label outbox')
        if int(first.meta.get('version', 0)) > FORMAT_VERSION:
            raise StoreError(f'{self._log.path}: outbox version {first.meta["version"]} is '
                             f'newer than this app reads ({FORMAT_VERSION})')
        for record in records:
            self._apply(record)

    def _apply(self, record: Record) -> None:
        m = record.meta
        kind = m.get('kind')
        try:
            if kind == 'label':
                label = PreferenceLabel(
                    query_id=str(m['query_id']), choice=Choice(int(m['choice'])),
                    labeler_id=str(m['labeler_id']),
                    response_time_s=float(m['response_time_s']), stamp_ns=int(m['stamp_ns']))
                if int(m['seq']) != len(self._entries):
                    raise ValueError(f"sequence number {m['seq']} out of order")
                self._entries.append(OutboxEntry(len(self._entries), label, str(m['left_id']),
                                                 str(m['right_id']), confirmed=False))
                return
            entry = self._entries[int(m['seq'])]
            entry.state = {'ack': EntryState.ACKNOWLEDGED, 'refused': EntryState.REFUSED,
                           'withdrawn': EntryState.WITHDRAWN, 'stale': EntryState.STALE}[kind]
            entry.message = str(m.get('message', ''))
        except (KeyError, ValueError, IndexError, TypeError, PrefRLError) as err:
            raise StoreError(f'{self._log.path}: unreadable {kind!r} record at byte offset '
                             f'{record.offset}: {err}') from None

    # ----------------------------------------------------------------------------- queries

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(self._entries)

    def __reversed__(self) -> Iterator[OutboxEntry]:
        return reversed(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def unsent(self) -> list[OutboxEntry]:
        """Labels not acknowledged, refused, withdrawn or stale, oldest first."""
        entries = self._entries
        while self._settled < len(entries) and entries[self._settled].state is not (
                EntryState.UNSENT):  # a long session's settled head is skipped at once
            self._settled += 1
        return [e for e in entries[self._settled:] if e.state is EntryState.UNSENT]

    def answer_for(self, query_id: str) -> OutboxEntry | None:
        """The latest label for ``query_id`` that was not withdrawn or found stale (None:
        the query is unanswered)."""
        for entry in reversed(self._entries):
            if (entry.query_id == query_id
                    and entry.state not in (EntryState.WITHDRAWN, EntryState.STALE)):
                return entry
        return None

    def counts(self) -> dict[str, int]:
        """Number of entries per state (``unsent``, ``acknowledged``, ...)."""
        out = {state.value: 0 for state in EntryState}
        for entry in self._entries:
            out[entry.state.value] += 1
        return out

    # ----------------------------------------------------------------------------- changes

    def add(self, label: PreferenceLabel, left_id: str, right_id: str, now: float
            ) -> OutboxEntry:
        """Write ``label`` durably (in the foreground: returns once it is fsynced; in the
        background: queued, :attr:`OutboxEntry.durable` once fsynced); it is unsent.

        Raises:
            OutboxError: the write failed (foreground); the label is not in the outbox.
        """
        entry = OutboxEntry(len(self._entries), label, left_id, right_id, written_at=now,
                            durable=False)
        self._append({'kind': 'label', 'seq': entry.seq, 'query_id': label.query_id,
                      'choice': int(label.choice), 'labeler_id': label.labeler_id,
                      'response_time_s': float(label.response_time_s),
                      'stamp_ns': int(label.stamp_ns), 'left_id': left_id,
                      'right_id': right_id}, entry)
        self._entries.append(entry)
        return entry

    def settle(self, entry: OutboxEntry, state: EntryState, message: str = '') -> None:
        """Record the outcome of an unsent label (acknowledged, refused, withdrawn, stale).

        Raises:
            OutboxError: the label is not unsent, or the write failed.
        """
        if entry.state is not EntryState.UNSENT:
            raise OutboxError(f'label {entry.seq} for {entry.query_id!r} is already '
                              f'{entry.state.value}')
        kind = {EntryState.ACKNOWLEDGED: 'ack', EntryState.REFUSED: 'refused',
                EntryState.WITHDRAWN: 'withdrawn', EntryState.STALE: 'stale'}[state]
        self._append({'kind': kind, 'seq': entry.seq, 'message': message})
        entry.state, entry.message = state, message

    def confirm(self, query_id: str, left_id: str, right_id: str) -> OutboxEntry | None:
        """A query arrived: confirm the unsent label answering it, or mark that label stale
        when the query's segments differ from those it was given for; returns it."""
        entry = self.answer_for(query_id)
        if entry is None or entry.state is not EntryState.UNSENT or entry.confirmed:
            return entry
        if (entry.left_id, entry.right_id) == (left_id, right_id):
            entry.confirmed = True
        else:
            self.settle(entry, EntryState.STALE,
                        f'query {query_id!r} now pairs segments {left_id!r} and {right_id!r}, '
                        f'not {entry.left_id!r} and {entry.right_id!r}')
        return entry

    def _append(self, meta: dict, entry: OutboxEntry | None = None) -> None:
        if self._writer is not None:
            self._writer.put(meta, entry)
            return
        try:
            self._log.append(meta)
        except StoreError as err:
            raise OutboxError(f'label outbox: {err}') from None
        if entry is not None:
            entry.durable = True

    def take_failures(self) -> list[tuple[OutboxEntry | None, str]]:
        """Background writes that failed since the last call: (the label's entry, or None
        for an outcome record; the error)."""
        return self._writer.take_failures() if self._writer is not None else []

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is written; False on timeout."""
        return self._writer.sync(timeout) if self._writer is not None else True

    def close(self) -> None:
        """Write what is queued, then release the outbox (idempotent)."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self._log.close()


class _Writer:
    """Appends queued records to the log in order, in a thread of its own."""

    def __init__(self, log: RecordLog) -> None:
        self._log = log
        self._queue: queue.SimpleQueue[tuple[dict, OutboxEntry | None] | None] = (
            queue.SimpleQueue())
        self._failures: list[tuple[OutboxEntry | None, str]] = []
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name='outbox-writer', daemon=True)
        self._thread.start()

    def put(self, meta: dict, entry: OutboxEntry | None) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((meta, entry))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            meta, entry = item
            try:
                self._log.append(meta)
                if entry is not None:
                    entry.durable = True
            except StoreError as err:
                with self._idle:
                    self._failures.append((entry, f'label outbox: {err}'))
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def take_failures(self) -> list[tuple[OutboxEntry | None, str]]:
        with self._idle:
            out, self._failures = self._failures, []
        return out

    def sync(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()
