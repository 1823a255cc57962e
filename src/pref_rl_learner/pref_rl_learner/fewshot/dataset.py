"""Multi-task offline datasets for reward pretraining (``pref-rl collect`` writes them).

A dataset is a directory::

    manifest.json          format name and version, how it was collected, one entry per task
    shards/<task>.npz      one compressed shard per task (observations, actions, rewards,
                           sources), its SHA-256 and size recorded in the manifest

Every file is written atomically (:mod:`pref_rl_learner.durable`). The manifest is rewritten
after each finished shard with ``complete: false`` and a last time with ``complete: true``, so
an interrupted collection can be resumed and is never mistaken for a finished one. Shards
are zip archives of ``.npy`` members written with fixed timestamps: the same data gives the
same bytes, hence the same checksum. :func:`load_dataset` checks every shard (checksum, keys,
dtypes, shapes against the manifest, finite values) and raises :class:`DatasetError` naming
the shard file at fault. Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pref_rl_learner.durable import atomic_write_bytes
from pref_rl_learner.errors import PrefRLError

FORMAT = 'pref-rl-multitask-dataset'
"""Value of the manifest's ``format`` key."""
VERSION = 1
"""Manifest/shard layout version this module writes and reads."""
MANIFEST = 'manifest.json'
"""Name of the index file inside a dataset directory."""
SHARD_DIR = 'shards'
"""Sub-directory holding the shards."""
SPLITS = ('train', 'eval')
"""Valid values of a task's split."""
SHARD_KEYS = ('observations', 'actions', 'rewards', 'sources')
"""Arrays in every shard (``TaskData`` fields of the same names)."""

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: reproducible shard bytes
_SHARD_NAME = re.compile(r'[A-Za-z0-9._-]+\.npz')


class DatasetError(PrefRLError):
    """A dataset directory or one of its shards is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class TaskData:
    """Every recorded transition of one pretraining task, cut into fixed-length segments."""

    task_id: str
    """Unique id of the task inside the dataset, e.g. ``point_mass/train/goal03`` or
    ``reach-v3/eval/var02`` (``pref-rl collect``'s ``<env>/<split>/<goal>``)."""
    env_name: str
    """Registered task name (``pref-rl train --list-tasks``) the data came from."""
    observations: np.ndarray
    """(N, T, *obs_shape) float32: N segments of T steps."""
    actions: np.ndarray
    """(N, T, action_dim) float32."""
    rewards: np.ndarray
    """(N, T) float32 true rewards of *this* task (what the scripted teacher labels from)."""
    sources: np.ndarray
    """(N,) str: how each segment was produced (expert, cross_env, within_env, random, ...)."""

    @property
    def num_segments(self) -> int:
        """N."""
        return int(self.rewards.shape[0])

    @property
    def segment_length(self) -> int:
        """T."""
        return int(self.rewards.shape[1])


@dataclass(frozen=True)
class MultiTaskDataset:
    """A loaded dataset: tasks by id, with the split each belongs to."""

    tasks: dict[str, TaskData]
    """Every task, by ``task_id``."""
    split: dict[str, str]
    """``task_id`` → ``train`` or ``eval`` (held-out tasks for post-adaptation accuracy)."""

    def ids(self, split: str) -> list[str]:
        """Ids of the tasks in ``split`` (``'train'`` or ``'eval'``), in manifest order."""
        return [task_id for task_id in self.tasks if self.split[task_id] == split]


def check_task_data(task: TaskData, where: str = '') -> None:
    """Check ``task``'s dtypes, shapes and values.

    Raises:
        DatasetError: prefixed with ``where`` (e.g. the shard path), naming the bad field.
    """
    prefix = f'{where}: ' if where else ''
    if not isinstance(task.task_id, str) or not task.task_id:
        raise DatasetError(f'{prefix}task_id must be a non-empty str, got {task.task_id!r}')
    fields = {'observations': task.observations, 'actions': task.actions,
              'rewards': task.rewards}
    for name, array in fields.items():
        if not isinstance(array, np.ndarray) or array.dtype != np.float32:
            dtype = getattr(array, 'dtype', type(array).__name__)
            raise DatasetError(f'{prefix}{name} must be a float32 array, got {dtype}')
        if not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise DatasetError(f'{prefix}{name} holds {bad} non-finite value(s)')
    if task.rewards.ndim != 2:
        raise DatasetError(f'{prefix}rewards must be (N, T), got shape {task.rewards.shape}')
    n, t = task.rewards.shape
    if task.observations.ndim < 3 or task.observations.shape[:2] != (n, t):
        raise DatasetError(f'{prefix}observations shape {task.observations.shape} does not '
                           f'start with (N, T) = {(n, t)}')
    if task.actions.ndim != 3 or task.actions.shape[:2] != (n, t):
        raise DatasetError(f'{prefix}actions shape {task.actions.shape} is not '
                           f'(N, T, action_dim) with (N, T) = {(n, t)}')
    sources = task.sources
    if not isinstance(sources, np.ndarray) or sources.dtype.kind != 'U' or sources.shape != (n,):
        raise DatasetError(f'{prefix}sources must be a str array of shape ({n},), got '
                           f'{getattr(sources, "dtype", type(sources).__name__)} '
                           f'{getattr(sources, "shape", "")}')


def shard_file_name(task_id: str) -> str:
    """The shard file name of ``task_id`` (characters outside ``[A-Za-z0-9._-]`` become
    ``_``, ``/`` becomes ``__``)."""
    return re.sub(r'[^A-Za-z0-9._-]', '_', task_id.replace('/', '__')) + '.npz'


def encode_shard(task: TaskData) -> bytes:
    """The shard bytes of ``task``: a deflated zip of ``.npy`` members, fixed timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
        for key in SHARD_KEYS:
            info = zipfile.ZipInfo(f'{key}.npy', date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, 'w', force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(getattr(task, key)),
                                          allow_pickle=False)
    return buffer.getvalue()


def save_task_shard(directory: str | Path, task: TaskData, split: str,
                    **metadata: Any) -> dict[str, Any]:
    """Validate ``task`` and write its shard atomically under ``directory/shards/``.

    Args:
        directory: the dataset directory (created if missing).
        task: the data.
        split: ``'train'`` or ``'eval'``.
        metadata: extra JSON-able entries for the manifest record (e.g. ``goal_index``).

    Returns:
        The manifest record of the shard (pass the records to :func:`write_manifest`).

    Raises:
        DatasetError: invalid ``task`` or ``split``.
    """
    if split not in SPLITS:
        raise DatasetError(f"{task.task_id}: split must be 'train' or 'eval', got {split!r}")
    check_task_data(task, task.task_id)
    data = encode_shard(task)
    name = shard_file_name(task.task_id)
    atomic_write_bytes(Path(directory) / SHARD_DIR / name, data)
    return {
        'task_id': task.task_id, 'env_name': task.env_name, 'split': split,
        'shard': f'{SHARD_DIR}/{name}', 'sha256': hashlib.sha256(data).hexdigest(),
        'size_bytes': len(data), 'num_segments': task.num_segments,
        'segment_length': task.segment_length,
        'observation_shape': list(task.observations.shape[2:]),
        'action_dim': int(task.actions.shape[2]),
        'sources': dict(sorted(Counter(task.sources.tolist()).items())), **metadata,
    }


def write_manifest(directory: str | Path, records: Iterable[Mapping[str, Any]], *,
                   complete: bool, **header: Any) -> None:
    """Atomically write ``directory/manifest.json``: ``header`` entries (family, config,
    ...), ``complete`` and the shard ``records`` sorted by split then task id.

    Raises:
        DatasetError: two records share a task id or a shard file.
    """
    records = sorted(records, key=lambda r: (SPLITS.index(r['split']), r['task_id']))
    for key in ('task_id', 'shard'):
        repeated = [v for v, n in Counter(r[key] for r in records).items() if n > 1]
        if repeated:
            raise DatasetError(f'{directory}: duplicate {key} in the manifest: {repeated}')
    manifest = {'format': FORMAT, 'version': VERSION, **header, 'complete': bool(complete),
                'tasks': records}
    text = json.dumps(manifest, indent=1, sort_keys=False) + '\n'
    atomic_write_bytes(Path(directory) / MANIFEST, text.encode())


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The parsed manifest of the dataset in ``directory``, structure checked.

    Raises:
        DatasetError: no manifest, not JSON, another format or version, or malformed
            task records (the message names ``manifest.json`` and the record).
    """
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError(f'{path}: no manifest: {directory} is not a pref-rl dataset '
                           '(pref-rl collect writes one)') from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f'{path}: unreadable manifest: {err}') from err
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise DatasetError(f'{path}: not a {FORMAT} manifest')
    if manifest.get('version') != VERSION:
        raise DatasetError(f'{path}: format version {manifest.get("version")!r}; this '
                           f'version of pref-rl reads version {VERSION}')
    tasks = manifest.get('tasks')
    if not isinstance(tasks, list):
        raise DatasetError(f'{path}: "tasks" must be a list')
    seen: set[str] = set()
    for index, record in enumerate(tasks):
        _check_record(path, index, record)
        if record['task_id'] in seen:
            raise DatasetError(f'{path}: task {record["task_id"]!r} listed twice')
        seen.add(record['task_id'])
    return manifest


def _check_record(path: Path, index: int, record: Any) -> None:
    expected = {'task_id': str, 'env_name': str, 'split': str, 'shard': str, 'sha256': str,
                'size_bytes': int, 'num_segments': int, 'segment_length': int,
                'observation_shape': list, 'action_dim': int}
    if not isinstance(record, dict):
        raise DatasetError(f'{path}: task record {index} is not an object')
    for key, kind in expected.items():
        if not isinstance(record.get(key), kind):
            raise DatasetError(f'{path}: task record {index} '
                               f'({record.get("task_id", "?")!r}): {key!r} missing or not '
                               f'a {kind.__name__}')
    shard = record['shard']
    folder, _, name = shard.partition('/')
    if folder != SHARD_DIR or not _SHARD_NAME.fullmatch(name):
        raise DatasetError(f'{path}: task {record["task_id"]!r}: shard path {shard!r} is '
                           f'not {SHARD_DIR}/<name>.npz')
    if record['split'] not in SPLITS:
        raise DatasetError(f'{path}: task {record["task_id"]!r}: split {record["split"]!r} '
                           "is not 'train' or 'eval'")


def load_dataset(path: str | Path, tasks: Sequence[str] | None = None) -> MultiTaskDataset:
    """Load and validate the dataset in directory ``path``.

    Args:
        path: dataset directory (holding ``manifest.json``).
        tasks: ids of the tasks to load (default: every task).

    Raises:
        DatasetError: missing/malformed manifest, an unfinished collection, an unknown task
            id in ``tasks``, or a shard that is missing, truncated, altered (checksum), not a
            shard, or whose arrays have wrong keys, dtypes, shapes or non-finite values; the
            message names the shard file.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    if not manifest.get('complete'):
        raise DatasetError(f'{directory / MANIFEST}: the collection did not finish; rerun '
                           'the same pref-rl collect command to complete it')
    records = {r['task_id']: r for r in manifest['tasks']}
    wanted = list(records) if tasks is None else list(tasks)
    unknown = [t for t in wanted if t not in records]
    if unknown:
        raise DatasetError(f'{directory}: no task(s) {unknown} in the dataset')
    loaded = {task_id: read_shard(directory, records[task_id]) for task_id in wanted}
    return MultiTaskDataset(tasks=loaded,
                            split={task_id: records[task_id]['split'] for task_id in wanted})


def read_shard(directory: str | Path, record: Mapping[str, Any]) -> TaskData:
    """Read and validate one shard against its manifest ``record``.

    Raises:
        DatasetError: naming the shard file (see :func:`load_dataset`).
    """
    shard = Path(directory) / record['shard']
    try:
        data = shard.read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f'{shard}: shard missing') from err
    except OSError as err:
        raise DatasetError(f'{shard}: cannot read shard ({err.strerror})') from err
    if len(data) != record['size_bytes']:
        raise DatasetError(f'{shard}: {len(data)} bytes, the manifest says '
                           f'{record["size_bytes"]}: truncated or replaced')
    if hashlib.sha256(data).hexdigest() != record['sha256']:
        raise DatasetError(f'{shard}: checksum mismatch: the shard is corrupt')
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            keys = sorted(archive.files)
            if keys != sorted(SHARD_KEYS):
                raise DatasetError(f'{shard}: arrays {keys}, expected {sorted(SHARD_KEYS)}')
            arrays = {key: archive[key] for key in SHARD_KEYS}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise DatasetError(f'{shard}: not a readable shard: {err}') from err
    task = TaskData(task_id=record['task_id'], env_name=record['env_name'], **arrays)
    check_task_data(task, str(shard))
    expected = (record['num_segments'], record['segment_length'],
                *record['observation_shape'])
    if task.observations.shape != expected or task.actions.shape[2] != record['action_dim']:
        raise DatasetError(f'{shard}: observations {task.observations.shape} / actions '
                           f'{task.actions.shape} disagree with the manifest (observations '
                           f'{expected}, action_dim {record["action_dim"]})')
    return task


def describe(directory: str | Path) -> str:
    """A human-readable summary of the dataset's manifest (no shard is read)."""
    manifest = read_manifest(directory)
    records = manifest['tasks']
    lines = [f'{directory}: {manifest.get("family", "?")} dataset, '
             f'{"complete" if manifest.get("complete") else "INCOMPLETE"}, '
             f'{len(records)} tasks']
    for split in SPLITS:
        chosen = [r for r in records if r['split'] == split]
        if not chosen:
            continue
        sources: Counter[str] = Counter()
        for r in chosen:
            sources.update(r.get('sources', {}))
        envs = sorted({r['env_name'] for r in chosen})
        segments = sum(r['num_segments'] for r in chosen)
        size = sum(r['size_bytes'] for r in chosen)
        lines.append(f'  {split}: {len(chosen)} tasks over {len(envs)} env(s) '
                     f'({", ".join(envs)}), {segments} segments of '
                     f'{chosen[0]["segment_length"]} steps, {size / 1e6:.1f} MB; sources: '
                     + ', '.join(f'{k} {v}' for k, v in sorted(sources.items())))
    return '\n'.join(lines)


def merge_datasets(out: str | Path, inputs: Sequence[str | Path]) -> dict[str, Any]:
    """Combine complete datasets into a new one in ``out`` (shards copied and re-verified).

    Task ids must be unique across ``inputs`` and all tasks must share observation shape,
    action size and segment length (one reward model is pretrained on the result).

    Returns:
        The new manifest.

    Raises:
        DatasetError: an input is invalid or incomplete, ``out`` already holds a dataset,
            task ids collide or the tasks' shapes differ.
    """
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DatasetError(f'{out}: already holds a dataset')
    records, families, shapes, seen = [], [], set(), set()
    for directory in inputs:
        manifest = read_manifest(directory)
        if not manifest.get('complete'):
            raise DatasetError(f'{directory}: the collection did not finish')
        families.append(manifest.get('family', '?'))
        for record in manifest['tasks']:
            if record['task_id'] in seen:
                raise DatasetError(f'{directory}: task {record["task_id"]!r} is also in an '
                                   'earlier input')
            seen.add(record['task_id'])
            task = read_shard(directory, record)
            shapes.add((task.observations.shape[2:], task.actions.shape[2],
                        task.segment_length))
            if len(shapes) > 1:
                raise DatasetError(f'{directory}: task {record["task_id"]!r} has other '
                                   f'shapes than the tasks before it: {sorted(shapes)}')
            extra = {k: v for k, v in record.items()
                     if k not in ('task_id', 'env_name', 'split', 'shard', 'sha256',
                                  'size_bytes', 'num_segments', 'segment_length',
                                  'observation_shape', 'action_dim', 'sources')}
            records.append(save_task_shard(out, task, record['split'], **extra))
    write_manifest(out, records, complete=True, family='+'.join(dict.fromkeys(families)),
                   merged_from=[str(d) for d in inputs])
    return read_manifest(out)
