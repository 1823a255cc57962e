"""Durable preference store: queried segment pairs and their labels, split train/validation.

Labels cost human time, so a label counts as stored only once its record is on disk
(DESIGN.md, "Data that must never be lost"). A store is a directory holding one append-only
record log, ``preferences.log`` (format and crash recovery in
:mod:`pref_rl_learner.preferences.log`), with three kinds of record:

- ``header`` (first): format name and version, creation time, the config at creation.
- ``query``: the query's fields and both segments, fields and arrays (``left.observations``,
  ``right.frames``, ...), frames and true rewards included.
- ``label``: query id, choice, labeler id, response time, stamp, and the split it was given
  (``train``/``val``; ``null`` for INCOMPARABLE and SKIP, which are never trained on).

Guarantees:

- :meth:`PreferenceStore.add_query` and :meth:`PreferenceStore.add_label` return only after
  their record is fsynced; a crash at any point loses no record they returned for, and a
  label retried after a crash is recognised (``add_label`` returns False), never duplicated.
- Nothing is evicted or rewritten, whatever the number of labels (the DRLHP failure mode of
  dropping the oldest labels beyond a cap). A pair of segments is asked at most once.
- Splits: the k-th trainable label (LEFT/RIGHT/EQUAL) goes to validation with probability
  ``validation_fraction`` (0 by default: every label trains), drawn from an RNG seeded with
  ``(seed, k)``, and the outcome is written in its record, so reopening or importing
  reproduces the split exactly.
- Memory: observations and actions of every query are kept (stacked per split once
  labelled, so :meth:`PreferenceStore.preference_batches` is a copy, not a rebuild); next
  observations, rewards and frames stay on disk and :meth:`PreferenceStore.query` reads them.

The split follows DRLHP (Christiano et al. 2017, https://arxiv.org/abs/1706.03741), which
holds out a random share of the comparisons to validate the reward predictor (and to steer its
adaptive L2); B-Pref and the few-shot code hold none out.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from pref_rl_learner import __version__
from pref_rl_learner.config import ConfigError
from pref_rl_learner.durable import fsync_directory
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.preferences.log import (
    CorruptStoreError,
    Record,
    RecordLog,
    StoreError,
    read_records,
    write_log_file,
)
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment

if TYPE_CHECKING:
    from pref_rl_learner.batches import PreferenceBatch

LOG_NAME = 'preferences.log'
"""Name of the log inside a store directory."""
FORMAT = 'pref-rl-preferences'
FORMAT_VERSION = 1
EXPORT_NAME = 'preferences-export.prl'
"""File name :meth:`PreferenceStore.export` uses when given a directory."""
TARGETS = {Choice.LEFT: 0.0, Choice.RIGHT: 1.0, Choice.EQUAL: 0.5}
"""P(right ≻ left) for each choice that is trained on."""
# Scalar fields and their JSON types (producers may hand in numpy scalars).
_SEGMENT_FIELDS = {'segment_id': str, 'task': str, 'frame_stride': int, 'source_id': str,
                   'episode': int, 'start_step': int, 'policy_version': int, 'stamp_ns': int}
_SEGMENT_ARRAYS = ('observations', 'actions', 'next_observations', 'terminated', 'truncated',
                   'rewards', 'success', 'frames')
_QUERY_FIELDS = {'feedback_session': int, 'sampler': str, 'reward_model_version': int,
                 'stamp_ns': int}


class DuplicatePairError(StoreError, ValueError):
    """The unordered pair of segment ids was asked before."""


class DuplicateQueryError(StoreError, ValueError):
    """A query with this query_id is already stored."""


class UnknownQueryError(StoreError, LookupError):
    """No query with this query_id is stored."""


class ConflictingLabelError(StoreError, ValueError):
    """The query already has a different answer (another choice or another labeler)."""


class IncompatibleQueryError(StoreError, ValueError):
    """The query's segments cannot be stacked with each other or with the stored ones."""


@dataclass(frozen=True)
class PreferenceStoreConfig:
    """Settings of a :class:`PreferenceStore`."""

    validation_fraction: float = 0.0
    """Probability that a trainable label is held out for validation, in [0, 1). 0 (the
    default, as B-Pref and the few-shot code): every label is trained on. A run keeps a
    validation share only where something uses it (adaptive L2, or a report asked for), see
    :func:`pref_rl_learner.pebble.reward_learning.run_store_config`."""
    seed: int = 0
    """Seed (>= 0) of the train/val draw: the draw of the k-th label depends on (seed, k). A
    run sets its own seed here; the store's header records it."""
    fsync: bool = True
    """fsync every record before acknowledging it. Only tests and benchmarks may turn this
    off: without it a power loss or kernel crash can lose acknowledged labels."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f'PreferenceStoreConfig.validation_fraction '
                              f'{self.validation_fraction} must be in [0, 1)')
        if self.seed < 0:
            raise ConfigError(f'PreferenceStoreConfig.seed {self.seed} must be >= 0')


class _StackedPairs:
    """Labelled pairs of one split, stacked in arrays that grow by doubling (float32; uint8
    observations stay uint8)."""

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []  # left obs, left act, right obs, right act, target
        self.size = 0

    def append(self, pair: tuple[np.ndarray, ...], target: float) -> None:
        if not self._arrays or self.size == len(self._arrays[0]):
            capacity = max(64, 2 * self.size)
            # uint8 pixels stay one byte per value; everything else is float32.
            grown = [np.empty((capacity, *a.shape),
                              np.uint8 if a.dtype == np.uint8 else np.float32) for a in pair]
            grown.append(np.empty(capacity, np.float32))
            for new, old in zip(grown, self._arrays, strict=False):
                new[:self.size] = old[:self.size]
            self._arrays = grown
        for buf, value in zip(self._arrays, (*pair, target), strict=True):
            buf[self.size] = value
        self.size += 1

    def batch(self, empty_shapes: tuple[tuple[int, ...], ...]) -> PreferenceBatch:
        from pref_rl_learner.batches import PreferenceBatch  # torch: import only when needed

        if not self._arrays:
            return PreferenceBatch(*(np.zeros((0, *s), np.float32) for s in empty_shapes),
                                   np.zeros(0, np.float32))
        return PreferenceBatch(*(a[:self.size].copy() for a in self._arrays))


@dataclass
class _Entry:
    offset: int
    """Byte offset of the query's record in the log."""
    pair: tuple[np.ndarray, ...] | None
    """Left obs, left actions, right obs, right actions until labelled."""


def _encode_query(query: PreferenceQuery) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta: dict[str, Any] = {'kind': 'query', 'query_id': query.query_id}
    meta.update({name: kind(getattr(query, name)) for name, kind in _QUERY_FIELDS.items()})
    arrays = {}
    for side in ('left', 'right'):
        segment = getattr(query, side)
        meta[side] = {name: kind(getattr(segment, name))
                      for name, kind in _SEGMENT_FIELDS.items()}
        for name in _SEGMENT_ARRAYS:
            if getattr(segment, name) is not None:
                arrays[f'{side}.{name}'] = getattr(segment, name)
    return meta, arrays


def _decode_query(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> PreferenceQuery:
    segments = {
        side: Segment(**{name: meta[side][name] for name in _SEGMENT_FIELDS},
                      **{name: arrays.get(f'{side}.{name}') for name in _SEGMENT_ARRAYS})
        for side in ('left', 'right')}
    return PreferenceQuery(query_id=meta['query_id'], **segments,
                           **{name: meta[name] for name in _QUERY_FIELDS})


def _pair_shapes(left_obs: np.ndarray, left_act: np.ndarray, right_obs: np.ndarray,
                 right_act: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if left_obs.shape != right_obs.shape or left_act.shape != right_act.shape:
        raise IncompatibleQueryError(
            f'left and right segments differ in shape: observations {left_obs.shape} vs '
            f'{right_obs.shape}, actions {left_act.shape} vs {right_act.shape}')
    return left_obs.shape, left_act.shape


class PreferenceStore:
    """Durable store of preference queries and labels (see the module docstring).

    Use :meth:`open` or :meth:`import_`, not the constructor. Thread-safe.
    """

    def __init__(self, directory: Path, log: RecordLog, config: PreferenceStoreConfig) -> None:
        """Private: wraps an opened, not yet replayed log."""
        self.directory = directory
        self.config = config
        self._log: RecordLog | None = log
        self._lock = threading.RLock()
        self._queries: dict[str, _Entry] = {}
        self._pairs: dict[frozenset[str], str] = {}
        self._labels: dict[str, tuple[PreferenceLabel, str | None]] = {}
        self._pending: dict[str, None] = {}
        self._counts: Counter[str] = Counter()
        self._splits = {'train': _StackedPairs(), 'val': _StackedPairs()}
        self._shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    # ------------------------------------------------------------------ opening and closing
    @classmethod
    def open(cls, path: str | Path, config: PreferenceStoreConfig | None = None
             ) -> PreferenceStore:
        """Open the store in directory ``path``, creating it or replaying its log.

        Raises:
            CorruptStoreError: the log is damaged in a way a crash cannot explain.
            StoreError: ``path`` is not a directory, or the store is open elsewhere.
        """
        config = config or PreferenceStoreConfig()
        directory = Path(path)
        if directory.exists() and not directory.is_dir():
            raise StoreError(f'{directory} is not a directory')
        if not directory.exists():
            directory.mkdir(parents=True)
            if config.fsync:
                fsync_directory(directory.parent)
        store = cls(directory, RecordLog(directory / LOG_NAME, fsync=config.fsync), config)
        try:
            store._replay()
        except BaseException:
            store.close()
            raise
        return store

    def _replay(self) -> None:
        log = self._require_log()
        header = None
        for record in log.replay():
            kind = record.meta.get('kind')
            if header is None:
                header = self._check_header(record)
                continue
            try:
                if kind == 'query':
                    self._replay_query(record)
                elif kind == 'label':
                    self._replay_label(record)
                else:
                    raise StoreError(f'unknown record kind {kind!r}')
            except CorruptStoreError:
                raise
            except (PrefRLError, KeyError, TypeError, ValueError) as exc:
                raise CorruptStoreError(log.path, record.offset,
                                        f'{type(exc).__name__}: {exc}') from exc
        if header is None:
            log.append({'kind': 'header', 'format': FORMAT, 'version': FORMAT_VERSION,
                        'created_ns': time.time_ns(), 'pref_rl_version': __version__,
                        'validation_fraction': self.config.validation_fraction,
                        'seed': self.config.seed})

    def _check_header(self, record: Record) -> dict[str, Any]:
        meta, path = record.meta, self._require_log().path
        if meta.get('kind') != 'header' or meta.get('format') != FORMAT:
            raise CorruptStoreError(path, record.offset, 'the first record is not a '
                                    f'{FORMAT} header (not a preference store?)')
        if not isinstance(meta.get('version'), int) or meta['version'] > FORMAT_VERSION:
            raise StoreError(f'{path}: format version {meta.get("version")!r} is newer than '
                             f'this pref-rl reads ({FORMAT_VERSION})')
        return meta

    def close(self) -> None:
        """Close the log and release its lock (idempotent)."""
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _require_log(self) -> RecordLog:
        if self._log is None:
            raise StoreError(f'the preference store in {self.directory} is closed')
        return self._log

    # ------------------------------------------------------------------------------ queries
    def add_query(self, query: PreferenceQuery) -> None:
        """Store ``query`` with both segments; returns once it is on disk.

        Raises:
            DuplicateQueryError: ``query.query_id`` is already stored.
            DuplicatePairError: the pair of segment ids (in either order) was asked before.
            IncompatibleQueryError: the segments' shapes differ from each other or from the
                stored queries' (batches stack them), or both sides are one segment.
        """
        with self._lock:
            log = self._require_log()
            pair = (query.left.observations, query.left.actions, query.right.observations,
                    query.right.actions)
            self._check_query(query.query_id, query.left.segment_id, query.right.segment_id,
                              pair)
            meta, arrays = _encode_query(query)
            self._apply_query(log.append(meta, arrays), meta, pair)

    def _check_query(self, query_id: str, left_id: str, right_id: str,
                     pair: tuple[np.ndarray, ...]) -> None:
        if query_id in self._queries:
            raise DuplicateQueryError(f'query_id {query_id!r} is already stored')
        if left_id == right_id:
            raise IncompatibleQueryError(f'query {query_id!r} compares segment {left_id!r} '
                                         'with itself')
        asked = self._pairs.get(frozenset((left_id, right_id)))
        if asked is not None:
            raise DuplicatePairError(f'segments {left_id!r} and {right_id!r} were already '
                                     f'asked as query {asked!r}')
        shapes = _pair_shapes(*pair)
        if self._shapes is not None and shapes != self._shapes:
            raise IncompatibleQueryError(
                f'query {query_id!r} has observations {shapes[0]} and actions {shapes[1]}; '
                f'the store holds {self._shapes[0]} and {self._shapes[1]}')

    def _apply_query(self, offset: int, meta: dict[str, Any],
                     pair: tuple[np.ndarray, ...]) -> None:
        query_id = meta['query_id']
        self._shapes = self._shapes or _pair_shapes(*pair)
        self._queries[query_id] = _Entry(offset, tuple(
            np.array(a, np.uint8 if a.dtype == np.uint8 else np.float32) for a in pair))
        self._pairs[frozenset((meta['left']['segment_id'], meta['right']['segment_id']))] = (
            query_id)
        self._pending[query_id] = None

    def _replay_query(self, record: Record) -> None:
        meta, arrays = record.meta, record.arrays
        pair = tuple(arrays[f'{side}.{name}'] for side in ('left', 'right')
                     for name in ('observations', 'actions'))
        self._check_query(meta['query_id'], meta['left']['segment_id'],
                          meta['right']['segment_id'], pair)
        self._apply_query(record.offset, meta, pair)

    def has_pair(self, left_id: str, right_id: str) -> bool:
        """True when segments ``left_id`` and ``right_id`` were asked, in either order."""
        with self._lock:
            return frozenset((left_id, right_id)) in self._pairs

    def has_query(self, query_id: str) -> bool:
        """True when a query with this id is stored."""
        with self._lock:
            return query_id in self._queries

    def query_ids(self) -> list[str]:
        """Ids of every stored query, oldest first."""
        with self._lock:
            return list(self._queries)

    def query(self, query_id: str) -> PreferenceQuery:
        """The stored query, segments, frames and true rewards included (read from disk).

        Raises:
            UnknownQueryError: no such query.
        """
        with self._lock:
            record = self._require_log().read(self._entry(query_id).offset)
        return _decode_query(record.meta, record.arrays)

    def _entry(self, query_id: str) -> _Entry:
        entry = self._queries.get(query_id)
        if entry is None:
            raise UnknownQueryError(f'no query with query_id {query_id!r} is stored')
        return entry

    def pending_queries(self) -> list[str]:
        """Ids of the queries asked and not yet answered, oldest first."""
        with self._lock:
            return list(self._pending)

    # ------------------------------------------------------------------------------- labels
    def add_label(self, label: PreferenceLabel) -> bool:
        """Store ``label``; True once it is on disk, False if this exact answer already is.

        "This exact answer" means the same choice from the same labeler (stamps and response
        times of a retried submission may differ), so a retry after a lost acknowledgement
        stores nothing twice. A trainable label is assigned its split here.

        Raises:
            UnknownQueryError: no query with ``label.query_id`` is stored.
            ConflictingLabelError: the query already has another choice or labeler.
        """
        with self._lock:
            log = self._require_log()
            if not self._check_label(label):
                return False
            split = None
            if label.choice in TARGETS:
                ordinal = self._counts['train'] + self._counts['val']
                draw = np.random.default_rng((self.config.seed, ordinal)).random()
                split = 'val' if draw < self.config.validation_fraction else 'train'
            meta = {'kind': 'label', 'query_id': label.query_id, 'choice': int(label.choice),
                    'labeler_id': str(label.labeler_id),
                    'response_time_s': float(label.response_time_s),
                    'stamp_ns': int(label.stamp_ns), 'split': split}
            log.append(meta)
            self._apply_label(label, split)
            return True

    def _check_label(self, label: PreferenceLabel) -> bool:
        """True when ``label`` is new, False when the same answer is stored; raises otherwise."""
        self._entry(label.query_id)
        stored = self._labels.get(label.query_id)
        if stored is None:
            return True
        old = stored[0]
        if (old.choice, old.labeler_id) == (label.choice, label.labeler_id):
            return False
        raise ConflictingLabelError(
            f'query {label.query_id!r} is already answered {old.choice.name} by '
            f'{old.labeler_id!r}; refusing {label.choice.name} by {label.labeler_id!r}')

    def _apply_label(self, label: PreferenceLabel, split: str | None) -> None:
        entry = self._queries[label.query_id]
        self._labels[label.query_id] = (label, split)
        del self._pending[label.query_id]
        self._counts[label.choice.name.lower()] += 1
        if split is not None:
            self._counts[split] += 1
            self._splits[split].append(entry.pair, TARGETS[label.choice])
        entry.pair = None  # held by the split's stacked arrays now, or never trained on

    def _replay_label(self, record: Record) -> None:
        meta = record.meta
        label = PreferenceLabel(query_id=meta['query_id'], choice=meta['choice'],
                                labeler_id=meta['labeler_id'],
                                response_time_s=meta['response_time_s'],
                                stamp_ns=meta['stamp_ns'])
        if not self._check_label(label):
            raise StoreError(f'query {label.query_id!r} is labelled twice')
        split = meta['split']
        if split not in (('train', 'val') if label.choice in TARGETS else (None,)):
            raise StoreError(f'split {split!r} for a {label.choice.name} label')
        self._apply_label(label, split)

    def label(self, query_id: str) -> PreferenceLabel | None:
        """The label of a stored query, None while it is unanswered.

        Raises:
            UnknownQueryError: no such query.
        """
        with self._lock:
            self._entry(query_id)
            stored = self._labels.get(query_id)
            return None if stored is None else stored[0]

    def split(self, query_id: str) -> str | None:
        """``'train'`` or ``'val'`` for a trainable label; None otherwise (or unanswered)."""
        with self._lock:
            self._entry(query_id)
            stored = self._labels.get(query_id)
            return None if stored is None else stored[1]

    def counts(self) -> dict[str, int]:
        """Numbers of queries, labels, labels per choice and trainable labels per split."""
        with self._lock:
            names = ('left', 'right', 'equal', 'incomparable', 'skip', 'train', 'val')
            return {'queries': len(self._queries), 'labelled': len(self._labels),
                    **{name: self._counts[name] for name in names}}

    def preference_batches(self) -> tuple[PreferenceBatch, PreferenceBatch]:
        """(train, validation) batches of the LEFT/RIGHT/EQUAL labels, in label order.

        ``right_preferred`` is 0 for LEFT, 1 for RIGHT and 0.5 for EQUAL. The arrays are
        copies. With no queries stored yet the empty batches have shape ``[0, 0, 0]``.
        """
        with self._lock:
            obs, act = self._shapes or ((0, 0), (0, 0))
            shapes = (obs, act, obs, act)
            return self._splits['train'].batch(shapes), self._splits['val'].batch(shapes)

    # --------------------------------------------------------------------- export / import
    def export(self, path: str | Path) -> Path:
        """Write every record to one self-contained file (atomically) and return its path.

        ``path`` may be a directory, which receives ``preferences-export.prl``. The file is a
        log in this module's format (no pickle); :meth:`import_` reads it on any install.
        """
        target = Path(path)
        if target.is_dir():
            target = target / EXPORT_NAME
        with self._lock:
            log = self._require_log()
            if target.resolve() == log.path.resolve():
                raise StoreError(f'cannot export a store onto its own log {target}')
            write_log_file(target, (record.frame() for record in log.records()),
                           fsync=self.config.fsync)
        return target

    @classmethod
    def import_(cls, export_file: str | Path, path: str | Path,
                config: PreferenceStoreConfig | None = None) -> PreferenceStore:
        """A new store in directory ``path`` holding everything in ``export_file``.

        Splits recorded in the export are kept; later labels use ``config``.

        Raises:
            StoreError: ``path`` already holds a store with queries (never overwritten).
            CorruptStoreError: ``export_file`` is damaged or not an export.
        """
        config = config or PreferenceStoreConfig()
        source, directory = Path(export_file), Path(path)
        first = next(read_records(source), None)  # refuse a non-export before touching path
        if first is None or first.meta.get('format') != FORMAT:
            raise CorruptStoreError(source, 0, f'not a {FORMAT} export')
        if (directory / LOG_NAME).exists():
            with cls.open(directory, config) as existing:
                held = existing.counts()['queries']
            if held:
                raise StoreError(f'{directory} already holds a store with {held} queries; '
                                 'import into a new directory')
        cls.open(directory, config).close()  # creates the directory, checks it is not locked
        log_path = directory / LOG_NAME
        # read_records checks every record's checksums while the copy is written.
        write_log_file(log_path, (record.frame() for record in read_records(source)),
                       fsync=config.fsync)
        try:
            return cls.open(directory, config)
        except PrefRLError:
            log_path.unlink(missing_ok=True)  # we created it: leave no broken store behind
            raise
