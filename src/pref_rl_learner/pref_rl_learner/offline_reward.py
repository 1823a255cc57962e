"""Offline reward training from recorded bags (``pref-rl reward-train``).

A recorded session holds every :class:`PreferenceQuery` (both segments inside) and every
:class:`PreferenceLabel` answering one. :func:`rebuild_store` replays them into a fresh
:class:`PreferenceStore` (whose seeded 20 % validation split is then reproducible), and
:func:`train_reward_model` fits a :class:`RewardEnsemble` to its train split, reports train
and validation accuracy, and writes a reward-model checkpoint (:func:`save_reward_model`) that
a learner can start from (:func:`load_reward_model`).

Rebuilding rules (bags are read in the order given, queries before labels):

- A query recorded twice (a learner that restarted republishes its pending queries) is
  stored once; a second query with the same id but other segments is reported as a conflict
  and the first kept; one asking an already asked pair under a new id is reported and skipped.
- A label whose query is in none of the bags is skipped and reported.
- A label recorded twice with the same choice and labeler is stored once; a conflicting one
  (other choice or labeler) is reported and the first kept.

Configuration: a YAML mapping onto :class:`RewardTrainConfig` (sections ``reward_model``,
``reward_training``, ``store`` and ``seed``; the first two are the same sections as in a
``pref-rl train`` config, so they can be copied from one). The same bags, config and seed give
bit-identical weights on the same device and torch build.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import yaml

from pref_rl_learner.bag import BagFileError, check_bag, read_labels, read_queries
from pref_rl_learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.preferences import (
    ConflictingLabelError,
    DuplicatePairError,
    IncompatibleQueryError,
    PreferenceStore,
    PreferenceStoreConfig,
)
from pref_rl_learner.preferences.store import LOG_NAME
from pref_rl_learner.reward import (
    RewardEnsemble,
    RewardModelConfig,
    RewardTrainer,
    RewardTrainingConfig,
)
from pref_rl_learner.types import PreferenceQuery

T = TypeVar('T')
CHECKPOINT_FORMAT = 'pref-rl-reward-model'
CHECKPOINT_VERSION = 1
_MAX_LISTED = 5  # ids named per problem in the summary


class OfflineRewardError(PrefRLError):
    """Offline reward training cannot proceed: no usable labels, or an unusable store path."""


@dataclass(frozen=True)
class RewardTrainConfig:
    """Settings of ``pref-rl reward-train``."""

    reward_model: RewardModelConfig = RewardModelConfig()
    """Architecture of the reward ensemble (as in a ``pref-rl train`` config)."""
    reward_training: RewardTrainingConfig = RewardTrainingConfig()
    """How it is fitted (as in a ``pref-rl train`` config)."""
    store: PreferenceStoreConfig = PreferenceStoreConfig(validation_fraction=0.2, fsync=False)
    """Rebuilt preference store: validation_fraction (20% by default: the summary reports
    held-out accuracy) and the seed of its split (``--seed`` sets it too). fsync is off by
    default: the store is derived from the bags."""
    seed: int = 0
    """Seed of the weight initialisation and of the trainer's shuffling."""


def load_config(path: str | Path | None) -> RewardTrainConfig:
    """A :class:`RewardTrainConfig` from a YAML file (defaults when ``path`` is None).

    Raises:
        ConfigError: unreadable or invalid YAML, or keys that are not fields.
    """
    if path is None:
        return RewardTrainConfig()
    try:
        mapping = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f'{path}: cannot read the config: {err}') from None
    if not isinstance(mapping, dict):
        raise ConfigError(f'{path}: the config must be a mapping')
    try:
        return from_mapping(RewardTrainConfig, mapping)
    except ConfigError as err:
        raise ConfigError(f'{path}: {err}') from None


@dataclass
class RebuildReport:
    """What :func:`rebuild_store` found in the bags."""

    queries_read: int = 0
    labels_read: int = 0
    queries_stored: int = 0
    labels_stored: int = 0
    duplicate_queries: int = 0
    """Identical repeats of a stored query (stored once)."""
    duplicate_labels: int = 0
    """Identical repeats of a stored label (stored once)."""
    conflicting_queries: list[str] = field(default_factory=list)
    """Ids recorded again with other segments, or repeating an asked pair (first kept)."""
    conflicting_labels: list[str] = field(default_factory=list)
    """Query ids answered differently twice (first answer kept)."""
    missing_query: list[str] = field(default_factory=list)
    """Query ids of labels whose query is in none of the bags (skipped)."""
    counts: dict[str, int] = field(default_factory=dict)
    """The store's counts after the rebuild (per choice, per split)."""


def _read(bag: str | Path, read: Callable[[str | Path], Iterator[T]]) -> list[T]:
    """Every message ``read`` yields from ``bag``; a bad file is named by its path."""
    try:
        return list(read(bag))
    except BagFileError as err:
        if not Path(bag).is_dir():
            raise
        bad = [f for f in check_bag(bag).files if f.status != 'ok']
        if not bad:
            raise
        names = '; '.join(f'{Path(bag) / f.name}: {f.status}'
                          f'{" (" + f.detail + ")" if f.detail else ""}' for f in bad)
        raise BagFileError(f'{names} (`pref-rl bag check --recover {bag}` salvages what is '
                           f'intact); reading it failed with: {err}') from None


def _same_query(a: PreferenceQuery, b: PreferenceQuery) -> bool:
    return all(x.segment_id == y.segment_id and np.array_equal(x.observations, y.observations)
               and np.array_equal(x.actions, y.actions)
               for x, y in ((a.left, b.left), (a.right, b.right)))


def _prepare_store_dir(path: Path) -> None:
    """Make ``path`` an empty directory; a previous rebuilt store there is replaced."""
    if path.exists():
        entries = {p.name for p in path.iterdir()} if path.is_dir() else None
        if entries is None or not entries <= {LOG_NAME}:
            raise OfflineRewardError(f'{path} exists and is not a preference store; give '
                                     '--store a new directory')
        shutil.rmtree(path)
    path.mkdir(parents=True)


def rebuild_store(bags: Sequence[str | Path], store_dir: str | Path,
                  config: PreferenceStoreConfig) -> tuple[PreferenceStore, RebuildReport]:
    """Replay the queries and labels of ``bags`` into a new store in ``store_dir``.

    A store that a previous rebuild left in ``store_dir`` is replaced (it is derived data).

    Raises:
        BagError: a bag is missing, unreadable or holds a malformed message (names the file).
        OfflineRewardError: ``store_dir`` holds something else than a preference store.
    """
    report = RebuildReport()
    queries: dict[str, PreferenceQuery] = {}
    for bag in bags:
        for query in _read(bag, read_queries):
            report.queries_read += 1
            first = queries.setdefault(query.query_id, query)
            if first is query:
                continue
            if _same_query(first, query):
                report.duplicate_queries += 1
            else:
                report.conflicting_queries.append(query.query_id)
    labels = [label for bag in bags for label in _read(bag, read_labels)]
    report.labels_read = len(labels)
    directory = Path(store_dir)
    _prepare_store_dir(directory)
    store = PreferenceStore.open(directory, config)
    try:
        for query in queries.values():
            try:
                store.add_query(query)
            except (DuplicatePairError, IncompatibleQueryError):
                report.conflicting_queries.append(query.query_id)
        for label in labels:
            if not store.has_query(label.query_id):
                report.missing_query.append(label.query_id)
                continue
            try:
                if store.add_label(label):
                    report.labels_stored += 1
                else:
                    report.duplicate_labels += 1
            except ConflictingLabelError:
                report.conflicting_labels.append(label.query_id)
    except BaseException:
        store.close()
        raise
    report.counts = store.counts()
    report.queries_stored = report.counts['queries']
    return store, report


@dataclass(frozen=True)
class RewardTrainResult:
    """Outcome of :func:`train_reward_model`."""

    rebuild: RebuildReport
    train_pairs: int
    val_pairs: int
    train_accuracy: float
    """Accuracy of the ensemble mean on the decisive train labels."""
    val_accuracy: float | None
    """Accuracy of the ensemble mean on the decisive validation labels (None: no val set)."""
    epochs: int
    checkpoint: Path
    store: Path


def reward_model_state(model: RewardEnsemble, seed: int, training: dict[str, Any]
                       ) -> dict[str, Any]:
    """The checkpoint mapping of ``model`` (format, config, shapes, weights, ``training``);
    writers add their own entries to it (``pref-rl pretrain``'s MAML state)."""
    config = dataclasses.asdict(model.config)
    return {'format': CHECKPOINT_FORMAT, 'version': CHECKPOINT_VERSION,
            'model_config': {k: list(v) if isinstance(v, tuple) else v
                             for k, v in config.items()},
            'observation_shape': list(model.observation_shape), 'action_dim': model.action_dim,
            'seed': seed, 'model': model.state_dict(), 'training': training}


def save_reward_model(path: str | Path, model: RewardEnsemble, *, seed: int = 0,
                      training: dict[str, Any] | None = None) -> None:
    """Write ``model`` (weights, normaliser, version, config and shapes) atomically to
    ``path`` as a checksummed checkpoint; ``training`` is free-form plain data."""
    save_checkpoint(path, reward_model_state(model, seed, dict(training or {})))


def load_reward_model(path: str | Path, device: str | None = None) -> RewardEnsemble:
    """The :class:`RewardEnsemble` saved by :func:`save_reward_model` (or ``reward-train``).

    Args:
        device: overrides the saved ``device`` setting (e.g. ``'cpu'``).

    Raises:
        CheckpointError: missing, corrupt, or not a reward-model checkpoint.
    """
    return reward_model_from_state(load_checkpoint(path), path, device)


def reward_model_from_state(state: dict[str, Any], path: str | Path,
                            device: str | None = None) -> RewardEnsemble:
    """The :class:`RewardEnsemble` of a checkpoint mapping already read from ``path``.

    Raises:
        CheckpointError: not a reward-model checkpoint, or a malformed one.
    """
    if state.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path}: not a reward-model checkpoint '
                              f'(format {state.get("format")!r})')
    if int(state.get('version', 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f'{path}: reward-model checkpoint version {state["version"]} '
                              f'is newer than this pref-rl reads ({CHECKPOINT_VERSION})')
    try:
        mapping = dict(state['model_config'])
        if device is not None:
            mapping['device'] = device
        config = from_mapping(RewardModelConfig, mapping)
        model = RewardEnsemble(tuple(state['observation_shape']), int(state['action_dim']),
                               config)
        model.load_state_dict(state['model'])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f'{path}: malformed reward-model checkpoint: {err}') from None
    return model


def train_reward_model(bags: Sequence[str | Path], out: str | Path, *,
                       config: RewardTrainConfig | None = None,
                       store_dir: str | Path | None = None) -> RewardTrainResult:
    """Rebuild the store from ``bags``, train a reward ensemble and save it to ``out``.

    ``store_dir`` defaults to ``<out without suffix>.store`` next to ``out``.

    Raises:
        BagError: a bag is missing or corrupt (the message names the file).
        OfflineRewardError: no trainable (LEFT/RIGHT/EQUAL) label in the train split.
    """
    config = config or RewardTrainConfig()
    out = Path(out)
    store_path = Path(store_dir) if store_dir is not None else out.with_suffix('.store')
    store, report = rebuild_store(bags, store_path, config.store)
    try:
        train, val = store.preference_batches()
    finally:
        store.close()
    if train.num_pairs == 0:
        raise OfflineRewardError(
            f'no trainable label in the train split ({report.labels_read} label(s) read, '
            f'{report.labels_stored} stored, {len(report.missing_query)} without their query)')
    torch.manual_seed(config.seed)  # dropout draws use the global generator
    obs_shape = tuple(train.left_observations.shape[2:])
    model = RewardEnsemble(obs_shape, int(train.left_actions.shape[-1]), config.reward_model,
                           seed=config.seed)
    trainer = RewardTrainer(model, config.reward_training, seed=config.seed)
    training = trainer.train(train, val if val.num_pairs else None)
    train_accuracy = trainer.evaluate(train)[1]
    # Normalise the reward over every labelled step, as the learner does over its replay.
    observations = np.concatenate([train.left_observations, train.right_observations])
    actions = np.concatenate([train.left_actions, train.right_actions])
    model.fit_normalizer(torch.from_numpy(observations.reshape(-1, *obs_shape)),
                         torch.from_numpy(actions.reshape(-1, actions.shape[-1])))
    result = {'bags': [str(b) for b in bags], 'train_pairs': train.num_pairs,
              'val_pairs': val.num_pairs, 'train_accuracy': train_accuracy,
              'val_accuracy': training.val_accuracy, 'epochs': training.epochs}
    save_reward_model(out, model, seed=config.seed, training=result)
    return RewardTrainResult(rebuild=report, train_pairs=train.num_pairs,
                             val_pairs=val.num_pairs, train_accuracy=train_accuracy,
                             val_accuracy=training.val_accuracy, epochs=training.epochs,
                             checkpoint=out, store=store_path)


def _ids(ids: list[str]) -> str:
    shown = ', '.join(repr(i) for i in ids[:_MAX_LISTED])
    return shown + (f', ... ({len(ids) - _MAX_LISTED} more)' if len(ids) > _MAX_LISTED else '')


def format_summary(result: RewardTrainResult) -> str:
    """A human-readable summary of a ``reward-train`` run."""
    r = result.rebuild
    c = r.counts
    lines = [
        f'queries: {r.queries_read} read, {r.queries_stored} stored '
        f'({r.duplicate_queries} duplicate)',
        f'labels:  {r.labels_read} read, {r.labels_stored} stored ({r.duplicate_labels} '
        f"duplicate): {c.get('left', 0)} left, {c.get('right', 0)} right, "
        f"{c.get('equal', 0)} equal, {c.get('incomparable', 0)} incomparable, "
        f"{c.get('skip', 0)} skip",
    ]
    if r.missing_query:
        lines.append(f'skipped {len(r.missing_query)} label(s) whose query is in no bag: '
                     f'{_ids(r.missing_query)}')
    if r.conflicting_labels:
        lines.append(f'{len(r.conflicting_labels)} conflicting label(s), first kept: '
                     f'{_ids(r.conflicting_labels)}')
    if r.conflicting_queries:
        lines.append(f'{len(r.conflicting_queries)} conflicting query(ies), first kept: '
                     f'{_ids(r.conflicting_queries)}')
    val = 'n/a (no validation labels)' if result.val_accuracy is None else \
        f'{result.val_accuracy:.3f}'
    lines += [
        f'pairs:   {result.train_pairs} train, {result.val_pairs} validation',
        f'accuracy: train {result.train_accuracy:.3f}, validation {val} '
        f'({result.epochs} epochs)',
        f'store:      {result.store}',
        f'checkpoint: {result.checkpoint}',
    ]
    return '\n'.join(lines)
