"""Durable preference store: round trips, splits, refusals, crash recovery, export/import."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pref_rl_learner.batches import PreferenceBatch
from pref_rl_learner.config import ConfigError
from pref_rl_learner.preferences import (
    ConflictingLabelError,
    CorruptStoreError,
    DuplicatePairError,
    DuplicateQueryError,
    IncompatibleQueryError,
    PreferenceStore,
    PreferenceStoreConfig,
    StoreError,
    UnknownQueryError,
)
from pref_rl_learner.preferences import log as record_log
from pref_rl_learner.preferences.store import EXPORT_NAME, LOG_NAME
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment

FAST = PreferenceStoreConfig(fsync=False)


def make_query(i: int, length: int = 5, obs_dim: int = 3, frames: bool = False
               ) -> PreferenceQuery:
    left, right = (make_segment(length=length, obs_dim=obs_dim, act_dim=2, seed=2 * i + k,
                                with_frames=frames, segment_id=f's{2 * i + k}')
                   for k in (0, 1))
    return PreferenceQuery(f'q{i}', left, right, feedback_session=i % 3, sampler='uniform',
                           reward_model_version=i, stamp_ns=10 * i)


def tiny_query(i: int) -> PreferenceQuery:
    """A 2-step, 2-D query built without the RNG (fast enough for thousands)."""
    def seg(k: int) -> Segment:
        obs = np.full((2, 2), k, np.float32)
        return Segment(segment_id=f't{k}', task='t', observations=obs, actions=obs,
                       next_observations=obs, terminated=np.zeros(2, bool),
                       truncated=np.zeros(2, bool))
    return PreferenceQuery(f'q{i}', seg(2 * i), seg(2 * i + 1))


def label(i: int, choice: Choice, labeler: str = 'ann') -> PreferenceLabel:
    return PreferenceLabel(f'q{i}', choice, labeler_id=labeler, response_time_s=1.5,
                           stamp_ns=1000 + i)


def assert_segments_equal(a: Segment, b: Segment) -> None:
    for name in ('segment_id', 'task', 'frame_stride', 'source_id', 'episode', 'start_step',
                 'policy_version', 'stamp_ns'):
        assert getattr(a, name) == getattr(b, name), name
    for name in ('observations', 'actions', 'next_observations', 'terminated', 'truncated',
                 'rewards', 'success', 'frames'):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name


def assert_batches_equal(a: PreferenceBatch, b: PreferenceBatch) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and np.array_equal(x, y)


def test_queries_labels_and_frames_round_trip_through_reopen(tmp_path: Path) -> None:
    queries = [make_query(i, frames=i % 2 == 0) for i in range(6)]
    choices = [Choice.LEFT, Choice.RIGHT, Choice.EQUAL, Choice.INCOMPARABLE, Choice.SKIP]
    with PreferenceStore.open(tmp_path / 'store') as store:  # fsync on, as in production
        for query in queries:
            store.add_query(query)
        for i, choice in enumerate(choices):
            assert store.add_label(label(i, choice))
        before = (store.counts(), store.preference_batches(),
                  [store.split(q.query_id) for q in queries])
    with PreferenceStore.open(tmp_path / 'store') as store:
        assert store.counts() == before[0]
        assert store.counts() == {'queries': 6, 'labelled': 5, 'left': 1, 'right': 1,
                                  'equal': 1, 'incomparable': 1, 'skip': 1,
                                  'train': before[0]['train'], 'val': before[0]['val']}
        assert store.pending_queries() == ['q5']
        assert [store.split(q.query_id) for q in queries] == before[2]
        for original in queries:
            loaded = store.query(original.query_id)
            for name in ('query_id', 'feedback_session', 'sampler', 'reward_model_version',
                         'stamp_ns'):
                assert getattr(loaded, name) == getattr(original, name)
            assert_segments_equal(loaded.left, original.left)
            assert_segments_equal(loaded.right, original.right)
        assert loaded.left.frames is None and store.query('q0').left.frames.shape == (5, 64,
                                                                                      64, 3)
        for i, choice in enumerate(choices):
            assert store.label(f'q{i}') == label(i, choice)
        assert store.label('q5') is None
        for old, new in zip(before[1], store.preference_batches(), strict=True):
            assert_batches_equal(old, new)


def test_numpy_scalars_in_fields_are_stored_as_plain_numbers(tmp_path: Path) -> None:
    left = make_segment(length=3, obs_dim=2, seed=1, segment_id='a', episode=np.int64(4),
                        stamp_ns=np.uint64(7))
    right = make_segment(length=3, obs_dim=2, seed=2, segment_id='b')
    with PreferenceStore.open(tmp_path, FAST) as store:
        store.add_query(PreferenceQuery('q', left, right, feedback_session=np.int32(2)))
        store.add_label(PreferenceLabel('q', Choice.LEFT, response_time_s=np.float32(0.5)))
    with PreferenceStore.open(tmp_path, FAST) as store:
        query = store.query('q')
        assert (query.left.episode, query.left.stamp_ns, query.feedback_session) == (4, 7, 2)
        assert store.label('q').response_time_s == 0.5


def test_by_default_every_label_is_trained_on(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path, FAST) as store:
        for i in range(50):
            store.add_query(tiny_query(i))
            store.add_label(label(i, Choice.LEFT))
        assert store.counts()['train'] == 50 and store.counts()['val'] == 0


def test_split_is_about_a_fifth_and_reproducible(tmp_path: Path) -> None:
    n = 2000
    splits = {}
    for name, seed, count in (('a', 0, n), ('b', 0, 300), ('c', 1, 300)):
        with PreferenceStore.open(tmp_path / name, PreferenceStoreConfig(
                validation_fraction=0.2, seed=seed, fsync=False)) as store:
            for i in range(count):
                store.add_query(tiny_query(i))
                store.add_label(label(i, Choice.LEFT))
            splits[name] = [store.split(f'q{i}') for i in range(count)]
            assert store.counts()['val'] == splits[name].count('val')
    val_share = splits['a'].count('val') / n
    assert abs(val_share - 0.2) < 0.03  # binomial sd is 0.009
    assert splits['a'][:300] == splits['b'] and splits['a'][:300] != splits['c']
    with PreferenceStore.open(tmp_path / 'a', FAST) as store:
        assert [store.split(f'q{i}') for i in range(n)] == splits['a']
        train, val = store.preference_batches()
        assert (train.num_pairs, val.num_pairs) == (n - splits['a'].count('val'),
                                                     splits['a'].count('val'))


def test_duplicate_pairs_and_query_ids_are_refused(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path, FAST) as store:
        query = make_query(0)
        store.add_query(query)
        assert store.has_pair('s0', 's1') and store.has_pair('s1', 's0')
        assert not store.has_pair('s0', 's2')
        with pytest.raises(DuplicatePairError, match='q0'):
            store.add_query(PreferenceQuery('other', query.right, query.left))
        with pytest.raises(DuplicatePairError):
            store.add_query(PreferenceQuery('other', query.left, query.right))
        with pytest.raises(DuplicateQueryError, match="'q0'"):
            store.add_query(PreferenceQuery('q0', make_query(5).left, make_query(5).right))
        with pytest.raises(IncompatibleQueryError, match='itself'):
            store.add_query(PreferenceQuery('same', query.left, query.left))
        longer = make_query(7, length=6)
        with pytest.raises(IncompatibleQueryError, match=r'\(6, 3\)'):
            store.add_query(longer)
        with pytest.raises(IncompatibleQueryError, match='differ'):
            store.add_query(PreferenceQuery('mixed', make_query(8).left, longer.right))
        assert store.counts()['queries'] == 1
    with PreferenceStore.open(tmp_path, FAST) as store, pytest.raises(DuplicatePairError):
        store.add_query(PreferenceQuery('again', query.right, query.left))


def test_retried_label_is_stored_once_and_conflicts_are_refused(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path, FAST) as store:
        store.add_query(make_query(0))
        assert store.add_label(label(0, Choice.RIGHT))
        assert not store.add_label(label(0, Choice.RIGHT))
        retry = PreferenceLabel('q0', Choice.RIGHT, labeler_id='ann', stamp_ns=99)
        assert not store.add_label(retry)  # re-stamped retry of the same answer
        with pytest.raises(ConflictingLabelError, match='RIGHT'):
            store.add_label(label(0, Choice.LEFT))
        with pytest.raises(ConflictingLabelError, match='bob'):
            store.add_label(label(0, Choice.RIGHT, labeler='bob'))
        assert store.counts()['labelled'] == 1 and store.counts()['right'] == 1
        assert store.label('q0') == label(0, Choice.RIGHT)
        kinds = [r.meta['kind'] for r in record_log.read_records(tmp_path / LOG_NAME)]
        assert kinds == ['header', 'query', 'label']
    with PreferenceStore.open(tmp_path, FAST) as store:
        assert not store.add_label(label(0, Choice.RIGHT))
        train, val = store.preference_batches()
        assert train.num_pairs + val.num_pairs == 1


def test_unknown_query_is_refused(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path, FAST) as store:
        with pytest.raises(UnknownQueryError, match='nope'):
            store.add_label(PreferenceLabel('nope', Choice.LEFT))
        with pytest.raises(UnknownQueryError):
            store.query('nope')
        with pytest.raises(UnknownQueryError):
            store.label('nope')
        assert store.counts()['labelled'] == 0


def test_batches_hold_trainable_labels_with_matching_targets(tmp_path: Path) -> None:
    choices = [Choice.LEFT, Choice.RIGHT, Choice.EQUAL, Choice.INCOMPARABLE, Choice.SKIP] * 8
    with PreferenceStore.open(tmp_path, PreferenceStoreConfig(validation_fraction=0.3,
                                                              fsync=False)) as store:
        train, val = store.preference_batches()
        assert train.num_pairs == 0 and train.left_observations.shape == (0, 0, 0)
        queries = [make_query(i) for i in range(len(choices))]
        for query, choice in zip(queries, choices, strict=True):
            store.add_query(query)
            store.add_label(label(int(query.query_id[1:]), choice))
        train, val = store.preference_batches()
        assert train.num_pairs + val.num_pairs == 24 and val.num_pairs > 0
        assert store.counts()['incomparable'] == 8 and store.counts()['skip'] == 8
        assert store.label('q3').choice is Choice.INCOMPARABLE and store.split('q3') is None
        target = {Choice.LEFT: 0.0, Choice.RIGHT: 1.0, Choice.EQUAL: 0.5}
        for split, batch in (('train', train), ('val', val)):
            rows = [(q, c) for q, c in zip(queries, choices, strict=True)
                    if store.split(q.query_id) == split]
            assert batch.num_pairs == len(rows)
            assert batch.right_preferred.dtype == np.float32
            np.testing.assert_array_equal(batch.right_preferred, [target[c] for _, c in rows])
            np.testing.assert_array_equal(batch.left_observations,
                                          np.stack([q.left.observations for q, _ in rows]))
            np.testing.assert_array_equal(batch.right_actions,
                                          np.stack([q.right.actions for q, _ in rows]))
        assert train.left_observations.shape == (train.num_pairs, 5, 3)
        train.left_observations[:] = 0  # a copy: the store's data are untouched
        assert store.preference_batches()[0].left_observations.any()


def test_torn_last_record_is_dropped_at_every_offset(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / 'source'
    with PreferenceStore.open(source, FAST) as store:
        for i in range(3):
            store.add_query(make_query(i))
            store.add_label(label(i, Choice.LEFT))
        query_start = (source / LOG_NAME).stat().st_size
        store.add_query(make_query(3, frames=True))
        label_start = (source / LOG_NAME).stat().st_size
        store.add_label(label(3, Choice.RIGHT))
    data = (source / LOG_NAME).read_bytes()
    # A crash while appending the last label: every offset inside it. A crash while
    # appending the query with frames before it: a sample of offsets inside that.
    cuts = list(range(label_start, len(data)))
    cuts += [int(c) for c in np.linspace(query_start, label_start - 1, 40)]
    with caplog.at_level(logging.WARNING):
        for cut in cuts:
            work = tmp_path / 'work'
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            (work / LOG_NAME).write_bytes(data[:cut])
            query_kept = cut >= label_start
            with PreferenceStore.open(work, FAST) as store:
                assert store.counts()['labelled'] == 3, cut
                assert [store.label(f'q{i}') for i in range(3)] == [
                    label(i, Choice.LEFT) for i in range(3)]
                assert store.has_query('q3') == query_kept
                assert not query_kept or store.label('q3') is None
                assert store.add_label(label(2, Choice.LEFT)) is False
            torn = cut not in (query_start, label_start)
            assert len(list(work.glob(f'{LOG_NAME}.torn-*'))) == torn
            assert (work / LOG_NAME).stat().st_size == (label_start if query_kept
                                                        else query_start)
            with PreferenceStore.open(work, FAST) as store:  # the recovered log is clean
                assert store.counts()['labelled'] == 3
    torn_warnings = [r for r in caplog.records if 'torn record' in r.getMessage()]
    assert len(torn_warnings) == len(cuts) - 2


@pytest.mark.parametrize('where', ['magic', 'length', 'payload', 'last_byte'])
def test_damage_before_a_valid_record_is_corruption(tmp_path: Path, where: str) -> None:
    with PreferenceStore.open(tmp_path, FAST) as store:
        for i in range(3):
            store.add_query(make_query(i))
            store.add_label(label(i, Choice.EQUAL))
    path = tmp_path / LOG_NAME
    records = list(record_log.read_records(path))
    victim = records[3]  # the second query, followed by valid records
    position = {'magic': 0, 'length': 5, 'payload': record_log.HEADER_SIZE + 40,
                'last_byte': victim.size - 1}[where]
    data = bytearray(path.read_bytes())
    data[victim.offset + position] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match=f'byte offset {victim.offset}') as info:
        PreferenceStore.open(tmp_path, FAST)
    assert info.value.offset == victim.offset and info.value.path == path
    assert path.read_bytes() == bytes(data)  # left untouched
    assert not list(tmp_path.glob('*.torn-*'))


def test_undecodable_arrays_are_refused_without_executing_anything(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path, FAST) as store:
        store.add_query(make_query(0))
    doc = json.dumps({'m': {'kind': 'query'}, 'a': [['x', '|O', [1]]]}).encode()
    payload = struct.pack('<I', len(doc)) + doc + b'\0' * 8
    frame = record_log._frame([payload])
    with open(tmp_path / LOG_NAME, 'ab') as f:
        f.write(frame)
    with pytest.raises(CorruptStoreError, match=re.escape("'|O'")):
        PreferenceStore.open(tmp_path, FAST)


def test_log_arrays_of_any_layout_round_trip(tmp_path: Path) -> None:
    arrays = {'empty': np.zeros((0, 3), np.float32), 'scalar': np.float32(3.0),
              'strided': np.arange(6).reshape(2, 3)[:, ::2] > 2,
              'big_endian': np.arange(6, dtype='>f4').reshape(2, 3),
              'transposed': np.arange(12, dtype=np.uint8).reshape(3, 4).T}
    log = record_log.RecordLog(tmp_path / 'x.log', fsync=False)
    assert list(log.replay()) == []
    offset = log.append({'kind': 'test', 'text': 'ünïcode'}, arrays)
    record = log.read(offset)
    log.close()
    assert record.meta == {'kind': 'test', 'text': 'ünïcode'}
    for name, value in arrays.items():
        assert record.arrays[name].shape == np.shape(value)
        np.testing.assert_array_equal(record.arrays[name], value)
    assert record.arrays['big_endian'].dtype == np.dtype('<f4')
    with pytest.raises(StoreError, match='object'):
        record_log.encode_record({}, {'bad': np.array([None])})


_WRITER = textwrap.dedent('''
    import sys
    from pref_rl_learner.preferences import PreferenceStore
    from pref_rl_learner.testing import make_segment
    from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery
    prefix = sys.argv[2]
    with PreferenceStore.open(sys.argv[1]) as store:
        for i in range(100000):
            qid = f'{prefix}{i}'
            left = make_segment(length=5, obs_dim=3, seed=i, segment_id=qid + 'L')
            right = make_segment(length=5, obs_dim=3, seed=i + 1, segment_id=qid + 'R')
            store.add_query(PreferenceQuery(qid, left, right))
            store.add_label(PreferenceLabel(qid, Choice(1 + i % 5)))
            print(qid, flush=True)
''')


def test_kill_9_loses_no_acknowledged_label(tmp_path: Path) -> None:
    acknowledged = []
    for round_, wanted in enumerate((25, 60)):
        proc = subprocess.Popen([sys.executable, '-c', _WRITER, str(tmp_path), f'r{round_}-'],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(wanted):
            line = proc.stdout.readline()
            assert line, 'the writer stopped early'
            acknowledged.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        acknowledged += proc.stdout.read().split()  # printed before the kill, not yet read
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
    with PreferenceStore.open(tmp_path) as store:
        missing = [q for q in acknowledged if store.label(q) is None]
        assert not missing
        assert store.counts()['labelled'] >= len(acknowledged)
        assert len(store.pending_queries()) <= 2  # at most one unlabelled query per kill


def test_export_import_round_trip(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path / 'a', FAST) as store:
        for i in range(30):
            store.add_query(make_query(i, frames=i == 0))
            store.add_label(label(i, Choice(1 + i % 5)))
        store.add_query(make_query(30))
        (tmp_path / 'out').mkdir()
        exported = store.export(tmp_path / 'out')  # a directory: default file name inside
        batches, counts = store.preference_batches(), store.counts()
        splits = [store.split(f'q{i}') for i in range(30)]
    assert exported == tmp_path / 'out' / EXPORT_NAME
    imported = PreferenceStore.import_(exported, tmp_path / 'b', FAST)
    with imported:
        assert imported.counts() == counts and imported.pending_queries() == ['q30']
        assert [imported.split(f'q{i}') for i in range(30)] == splits
        for old, new in zip(batches, imported.preference_batches(), strict=True):
            assert_batches_equal(old, new)
        assert_segments_equal(imported.query('q0').left, make_query(0, frames=True).left)
        assert imported.add_label(label(30, Choice.LEFT))
    with pytest.raises(StoreError, match='already holds'):
        PreferenceStore.import_(exported, tmp_path / 'b', FAST)
    garbage = tmp_path / 'garbage.prl'
    garbage.write_bytes(b'not an export at all' * 10)
    with pytest.raises(CorruptStoreError, match='garbage.prl'):
        PreferenceStore.import_(garbage, tmp_path / 'c', FAST)
    assert not (tmp_path / 'c').exists()


def test_never_evicts(tmp_path: Path) -> None:
    n = 10_000
    with PreferenceStore.open(tmp_path, FAST) as store:
        for i in range(n):
            store.add_query(tiny_query(i))
            store.add_label(label(i, Choice(1 + i % 5)))
    with PreferenceStore.open(tmp_path, FAST) as store:
        counts = store.counts()
        assert counts['queries'] == counts['labelled'] == n
        assert all(store.label(f'q{i}').choice == 1 + i % 5 for i in range(n))
        train, val = store.preference_batches()
        assert train.num_pairs + val.num_pairs == counts['train'] + counts['val'] == 6000
        # Row k of the stacked observations is the k-th trainable query of its split.
        first = [i for i in range(n) if i % 5 < 3 and store.split(f'q{i}') == 'train'][0]
        assert train.left_observations[0, 0, 0] == 2 * first


def test_batches_of_5k_labels_are_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(10_000, 25, 39)).astype(np.float32)
    act = rng.uniform(-1, 1, (10_000, 25, 4)).astype(np.float32)
    flags = np.zeros(25, bool)

    def seg(k: int) -> Segment:
        return Segment(segment_id=f's{k}', task='t', observations=obs[k], actions=act[k],
                       next_observations=obs[k], terminated=flags, truncated=flags)

    with PreferenceStore.open(tmp_path, FAST) as store:
        for i in range(5000):
            store.add_query(PreferenceQuery(f'q{i}', seg(2 * i), seg(2 * i + 1)))
            store.add_label(label(i, Choice.RIGHT))
        start = time.perf_counter()
        train, val = store.preference_batches()
        elapsed = time.perf_counter() - start
    assert train.num_pairs + val.num_pairs == 5000
    assert train.left_observations.shape == (train.num_pairs, 25, 39)
    assert elapsed < 0.5, f'preference_batches took {elapsed:.3f} s'


def test_failed_append_is_not_acknowledged_and_blocks_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PreferenceStore.open(tmp_path, FAST)
    store.add_query(make_query(0))
    store.add_query(make_query(1))
    store.add_label(label(0, Choice.LEFT))
    size = (tmp_path / LOG_NAME).stat().st_size
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(record_log.os, 'write', half_then_enospc)
    with pytest.raises(StoreError, match='No space left'):
        store.add_label(label(1, Choice.LEFT))
    monkeypatch.undo()
    assert (tmp_path / LOG_NAME).stat().st_size == size  # the partial record was cut away
    assert store.label('q1') is None
    with pytest.raises(StoreError, match='reopen'):
        store.add_label(label(1, Choice.LEFT))
    store.close()
    with PreferenceStore.open(tmp_path, FAST) as store:
        assert store.add_label(label(1, Choice.LEFT))
        assert store.counts()['labelled'] == 2


def test_store_is_locked_and_config_is_validated(tmp_path: Path) -> None:
    with PreferenceStore.open(tmp_path, FAST), pytest.raises(StoreError, match='open in'):
        PreferenceStore.open(tmp_path, FAST)
    store = PreferenceStore.open(tmp_path, FAST)
    store.close()
    with pytest.raises(StoreError, match='closed'):
        store.add_query(make_query(0))
    (tmp_path / 'file').write_text('x')
    with pytest.raises(StoreError, match='not a directory'):
        PreferenceStore.open(tmp_path / 'file')
    for bad in (dict(validation_fraction=1.0), dict(validation_fraction=-0.1), dict(seed=-1)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            PreferenceStoreConfig(**bad)
