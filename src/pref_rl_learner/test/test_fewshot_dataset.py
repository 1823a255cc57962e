"""Multi-task dataset format: round trip, validation of every shard, named corruption."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pref_rl_learner.fewshot.dataset import (
    MANIFEST,
    DatasetError,
    TaskData,
    describe,
    encode_shard,
    load_dataset,
    merge_datasets,
    read_manifest,
    save_task_shard,
    write_manifest,
)


def make_task(task_id: str, n: int = 6, t: int = 4, seed: int = 0) -> TaskData:
    rng = np.random.default_rng(seed)
    return TaskData(task_id=task_id, env_name='point_mass',
                    observations=rng.standard_normal((n, t, 6)).astype(np.float32),
                    actions=rng.uniform(-1, 1, (n, t, 2)).astype(np.float32),
                    rewards=rng.standard_normal((n, t)).astype(np.float32),
                    sources=np.array(['expert', 'random'] * (n // 2)))


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    out = tmp_path / 'ds'
    records = [save_task_shard(out, make_task('pm/train/goal00', seed=1), 'train', goal_index=0),
               save_task_shard(out, make_task('pm/train/goal01', seed=2), 'train', goal_index=1),
               save_task_shard(out, make_task('pm/eval/goal00', seed=3), 'eval', goal_index=0)]
    write_manifest(out, records, complete=True, family='point_mass')
    return out


def _shard(directory: Path, task_id: str) -> Path:
    record = next(r for r in read_manifest(directory)['tasks'] if r['task_id'] == task_id)
    return directory / record['shard']


def test_round_trip_keeps_arrays_and_splits(dataset_dir: Path) -> None:
    dataset = load_dataset(dataset_dir)
    assert dataset.split == {'pm/train/goal00': 'train', 'pm/train/goal01': 'train',
                             'pm/eval/goal00': 'eval'}
    assert dataset.ids('train') == ['pm/train/goal00', 'pm/train/goal01']
    assert dataset.ids('eval') == ['pm/eval/goal00']
    original = make_task('pm/train/goal01', seed=2)
    loaded = dataset.tasks['pm/train/goal01']
    for key in ('observations', 'actions', 'rewards', 'sources'):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(original, key))
    assert loaded.observations.dtype == np.float32 and loaded.env_name == 'point_mass'
    assert (loaded.num_segments, loaded.segment_length) == (6, 4)
    subset = load_dataset(dataset_dir, tasks=['pm/eval/goal00'])
    assert list(subset.tasks) == ['pm/eval/goal00'] and subset.split == {
        'pm/eval/goal00': 'eval'}
    with pytest.raises(DatasetError, match='no task'):
        load_dataset(dataset_dir, tasks=['pm/train/goal07'])


def test_manifest_records_checksums_and_metadata(dataset_dir: Path) -> None:
    manifest = read_manifest(dataset_dir)
    assert manifest['family'] == 'point_mass' and manifest['complete'] is True
    record = manifest['tasks'][0]
    assert record['task_id'] == 'pm/train/goal00'  # train tasks first, sorted by id
    assert record['sources'] == {'expert': 3, 'random': 3} and record['goal_index'] == 0
    assert len(record['sha256']) == 64
    text = describe(dataset_dir)
    assert 'train: 2 tasks' in text and 'eval: 1 tasks' in text and 'expert 6' in text


def test_same_data_gives_same_shard_bytes() -> None:
    assert encode_shard(make_task('a', seed=4)) == encode_shard(make_task('a', seed=4))
    assert encode_shard(make_task('a', seed=4)) != encode_shard(make_task('a', seed=5))


def test_flipped_byte_is_reported_by_shard_name(dataset_dir: Path) -> None:
    shard = _shard(dataset_dir, 'pm/train/goal01')
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match='checksum mismatch') as info:
        load_dataset(dataset_dir)
    assert shard.name in str(info.value)
    # The other tasks still load on their own.
    assert len(load_dataset(dataset_dir, tasks=['pm/train/goal00']).tasks) == 1


def test_truncated_shard_is_reported_by_name(dataset_dir: Path) -> None:
    shard = _shard(dataset_dir, 'pm/eval/goal00')
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DatasetError, match='truncated') as info:
        load_dataset(dataset_dir)
    assert 'pm__eval__goal00.npz' in str(info.value)


def test_missing_shard_is_reported_by_name(dataset_dir: Path) -> None:
    _shard(dataset_dir, 'pm/train/goal00').unlink()
    with pytest.raises(DatasetError, match=r'pm__train__goal00\.npz: shard missing'):
        load_dataset(dataset_dir)


def _replace_shard(directory: Path, task_id: str, data: bytes) -> Path:
    """Put ``data`` in place of the shard and update the manifest to match (as a bug in a
    writer would), so that only the content checks can catch it."""
    import hashlib

    manifest = json.loads((directory / MANIFEST).read_text())
    record = next(r for r in manifest['tasks'] if r['task_id'] == task_id)
    (directory / record['shard']).write_bytes(data)
    record.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    (directory / MANIFEST).write_text(json.dumps(manifest))
    return directory / record['shard']


@pytest.mark.parametrize('breakage, message', [
    ('nan', 'rewards holds 1 non-finite'),
    ('float64', 'observations must be a float32 array'),
    ('shape', 'disagree with the manifest'),
    ('extra_key', 'arrays'),
    ('not_zip', 'not a readable shard'),
])
def test_content_checks_name_the_shard(dataset_dir: Path, breakage: str, message: str) -> None:
    task = make_task('pm/train/goal00', seed=1)
    if breakage == 'nan':
        task.rewards[2, 1] = np.nan
        data = encode_shard(task)
    elif breakage == 'float64':
        data = encode_shard(TaskData(**{**task.__dict__,
                                        'observations': task.observations.astype(np.float64)}))
    elif breakage == 'shape':
        data = encode_shard(make_task('pm/train/goal00', n=4, seed=1))
    elif breakage == 'extra_key':
        data = encode_shard(task)
        import io

        buffer = io.BytesIO(data)
        with zipfile.ZipFile(buffer, 'a') as archive:
            archive.writestr('extra.npy', b'')
        data = buffer.getvalue()
    else:
        data = b'not a zip archive at all'
    shard = _replace_shard(dataset_dir, 'pm/train/goal00', data)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(dataset_dir)
    assert str(shard) in str(info.value)


@pytest.mark.parametrize('edit, message', [
    (lambda m: m.update(version=99), 'format version 99'),
    (lambda m: m.update(format='other'), 'not a pref-rl-multitask-dataset'),
    (lambda m: m.update(complete=False), 'did not finish'),
    (lambda m: m['tasks'][0].update(shard='../../etc/passwd'), 'shard path'),
    (lambda m: m['tasks'][1].update(task_id=m['tasks'][0]['task_id']), 'listed twice'),
    (lambda m: m['tasks'][0].pop('sha256'), "'sha256' missing"),
    (lambda m: m['tasks'][0].update(split='test'), 'split'),
])
def test_bad_manifest_is_refused(dataset_dir: Path, edit, message: str) -> None:
    manifest = json.loads((dataset_dir / MANIFEST).read_text())
    edit(manifest)
    (dataset_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(dataset_dir)
    assert MANIFEST in str(info.value)


def test_missing_or_unparsable_manifest(tmp_path: Path, dataset_dir: Path) -> None:
    with pytest.raises(DatasetError, match='no manifest'):
        load_dataset(tmp_path / 'nothing')
    (dataset_dir / MANIFEST).write_text('{"format": ')
    with pytest.raises(DatasetError, match='unreadable manifest'):
        load_dataset(dataset_dir)


def test_invalid_task_data_is_not_written(tmp_path: Path) -> None:
    task = make_task('x')
    bad = [({'observations': task.observations.astype(np.float64)}, 'observations must be'),
           ({'actions': task.actions[:, :3]}, 'actions shape'),
           ({'rewards': np.full((6, 4), np.inf, np.float32)}, 'rewards holds 24'),
           ({'sources': np.array(['expert'] * 5)}, 'sources must be'),
           ({'task_id': ''}, 'task_id')]
    for change, message in bad:
        with pytest.raises(DatasetError, match=message):
            save_task_shard(tmp_path, TaskData(**{**task.__dict__, **change}), 'train')
    with pytest.raises(DatasetError, match='split'):
        save_task_shard(tmp_path, task, 'validation')
    assert not (tmp_path / 'shards').exists() or not any((tmp_path / 'shards').iterdir())


def test_merge_combines_datasets_and_refuses_collisions(tmp_path: Path,
                                                        dataset_dir: Path) -> None:
    other = tmp_path / 'other'
    write_manifest(other, [save_task_shard(other, make_task('rx/train/goal00', seed=9),
                                           'train')], complete=True, family='reacher')
    merged = merge_datasets(tmp_path / 'merged', [dataset_dir, other])
    assert [r['task_id'] for r in merged['tasks']] == [
        'pm/train/goal00', 'pm/train/goal01', 'rx/train/goal00', 'pm/eval/goal00']
    assert merged['family'] == 'point_mass+reacher'
    dataset = load_dataset(tmp_path / 'merged')
    np.testing.assert_array_equal(dataset.tasks['rx/train/goal00'].rewards,
                                  make_task('rx', seed=9).rewards)
    assert merged['tasks'][0]['goal_index'] == 0  # extra metadata carried over
    with pytest.raises(DatasetError, match='also in an earlier input'):
        merge_datasets(tmp_path / 'twice', [dataset_dir, dataset_dir])
    with pytest.raises(DatasetError, match='already holds a dataset'):
        merge_datasets(tmp_path / 'merged', [other])
