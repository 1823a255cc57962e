"""Offline reward training from recorded bags: store rebuild, accuracy, checkpoint, CLI."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch
import yaml

from pref_rl_learner import cli
from pref_rl_learner.bag import BagFileError, BagWriter, TopicSpec, stack_definitions
from pref_rl_learner.bag.convert import LABEL, QUERY, serialize
from pref_rl_learner.checkpoint import CheckpointError
from pref_rl_learner.offline_reward import (
    OfflineRewardError,
    RewardTrainConfig,
    load_config,
    load_reward_model,
    rebuild_store,
    train_reward_model,
)
from pref_rl_learner.preferences import PreferenceStore, PreferenceStoreConfig
from pref_rl_learner.reward import RewardModelConfig, RewardTrainingConfig
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment

NUM_QUERIES = 400
SMALL = {'seed': 0,
         'reward_model': {'ensemble_size': 3, 'hidden_sizes': [32, 32], 'inputs': 'state',
                          'device': 'cpu'},
         'reward_training': {'lr': 3e-3, 'batch_size': 64, 'max_epochs': 20,
                             'target_accuracy': None}}


def point_mass_segments(count, seed=0):
    """``count`` segments of random-action point-mass episodes, deterministic ids."""
    from pref_rl_robot.tasks import make_task, task_spec

    spec = task_spec('point_mass')
    env = make_task('point_mass', seed=seed)
    env.action_space.seed(seed)
    segments, episode = [], 0
    while len(segments) < count:
        obs, _ = env.reset(seed=seed + episode)
        rows = []
        for _ in range(spec.episode_length):
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows.append((obs, action, next_obs, reward, terminated, truncated))
            obs = next_obs
        for start in range(0, len(rows), spec.segment_length):
            part = rows[start:start + spec.segment_length]
            o, a, n, r, te, tr = (np.array(col) for col in zip(*part, strict=True))
            segments.append(Segment(
                segment_id=f'e{episode}s{start}', task='point_mass', observations=o,
                actions=a, next_observations=n, rewards=r, terminated=te, truncated=tr,
                source_id='robot', episode=episode, start_step=start))
        episode += 1
    env.close()
    return segments[:count]


def oracle(query):
    return Choice.RIGHT if query.right.rewards.sum() > query.left.rewards.sum() else Choice.LEFT


def write_bag(path, messages):
    topics = [TopicSpec('/queries', QUERY), TopicSpec('/labels', LABEL)]
    defs = stack_definitions()
    with BagWriter(path, topics, definitions=defs) as writer:
        for stamp, obj in enumerate(messages, start=1):
            topic = '/queries' if isinstance(obj, PreferenceQuery) else '/labels'
            writer.write(topic, stamp, serialize(defs.typestore, obj)[1])


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """Two bags of one session: the learner restarted between them and republished q10.

    Holds 400 oracle-labelled queries, plus a repeated query, a repeated label, a conflicting
    label (q1 answered twice differently) and a label whose query was never recorded.
    """
    segments = point_mass_segments(2 * NUM_QUERIES)
    queries = [PreferenceQuery(query_id=f'q{k}', left=segments[2 * k],
                               right=segments[2 * k + 1]) for k in range(NUM_QUERIES)]
    labels = [PreferenceLabel(q.query_id, oracle(q), 'teacher/oracle', 0.1) for q in queries]
    flipped = Choice.LEFT if labels[1].choice == Choice.RIGHT else Choice.RIGHT
    half = NUM_QUERIES // 2
    first = [m for q, lab in zip(queries[:half], labels[:half], strict=True) for m in (q, lab)]
    first += [labels[5], PreferenceLabel('q1', flipped, 'teacher/oracle', 0.2)]
    second = [queries[10]]  # republished after the restart
    second += [m for q, lab in zip(queries[half:], labels[half:], strict=True) for m in (q, lab)]
    second.append(PreferenceLabel('ghost', Choice.LEFT, 'teacher/oracle', 0.3))
    root = tmp_path_factory.mktemp('bags')
    write_bag(root / 'part1', first)
    write_bag(root / 'part2', second)
    return [root / 'part1', root / 'part2'], labels


def small_config(**changes):
    return dataclasses.replace(
        RewardTrainConfig(reward_model=RewardModelConfig(**SMALL['reward_model'] | {
            'hidden_sizes': (32, 32)}),
            reward_training=RewardTrainingConfig(**SMALL['reward_training'])), **changes)


def test_rebuild_deduplicates_and_reports(bags, tmp_path):
    paths, labels = bags
    store, report = rebuild_store(paths, tmp_path / 'store',
                                  PreferenceStoreConfig(validation_fraction=0.2, fsync=False))
    with store:
        assert (report.queries_read, report.queries_stored) == (NUM_QUERIES + 1, NUM_QUERIES)
        assert report.duplicate_queries == 1 and report.conflicting_queries == []
        assert (report.labels_read, report.labels_stored) == (NUM_QUERIES + 3, NUM_QUERIES)
        assert report.duplicate_labels == 1
        assert report.conflicting_labels == ['q1'] and report.missing_query == ['ghost']
        assert store.label('q1').choice == labels[1].choice  # the first answer is kept
        counts = store.counts()
        assert counts['train'] + counts['val'] == NUM_QUERIES
        assert 0.1 < counts['val'] / NUM_QUERIES < 0.3
    # Rebuilding into the same directory replaces the derived store; others are refused.
    rebuild_store(paths, tmp_path / 'store', PreferenceStoreConfig(fsync=False))[0].close()
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('mine')
    with pytest.raises(OfflineRewardError, match='not a preference store'):
        rebuild_store(paths, tmp_path / 'other', PreferenceStoreConfig())


def test_train_checkpoint_and_determinism(bags, tmp_path):
    paths, _ = bags
    result = train_reward_model(paths, tmp_path / 'a' / 'reward.pt', config=small_config())
    assert result.store == tmp_path / 'a' / 'reward.store'
    assert result.train_pairs + result.val_pairs == NUM_QUERIES and result.val_pairs > 30
    assert result.val_accuracy >= 0.8, result  # chance is 0.5
    assert result.train_accuracy >= result.val_accuracy - 0.1

    model = load_reward_model(result.checkpoint)
    assert model.observation_shape == (4,) and model.action_dim == 2
    assert model.config.hidden_sizes == (32, 32) and model.version == 1
    # The loaded model reproduces the reported validation accuracy on the stored split.
    with PreferenceStore.open(result.store, PreferenceStoreConfig(fsync=False)) as store:
        _, val = store.preference_batches()
    with torch.no_grad(), model.evaluating():
        left = model.segment_returns(torch.from_numpy(val.left_observations)).mean(0)
        right = model.segment_returns(torch.from_numpy(val.right_observations)).mean(0)
    predicted = (right > left).numpy()
    assert np.mean(predicted == (val.right_preferred > 0.5)) == pytest.approx(
        result.val_accuracy)

    again = train_reward_model(paths, tmp_path / 'b' / 'reward.pt', config=small_config())
    other = train_reward_model(paths, tmp_path / 'c' / 'reward.pt',
                               config=small_config(seed=1))
    same, changed = (load_reward_model(r.checkpoint).state_dict() for r in (again, other))
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, same[name]), name
    weights = [name for name, t in model.state_dict().items()
               if isinstance(t, torch.Tensor) and name.endswith('weight')]
    assert weights and not any(torch.equal(model.state_dict()[n], changed[n]) for n in weights)
    assert again.val_accuracy == result.val_accuracy


def test_bad_bags_and_checkpoints_are_typed_errors(bags, tmp_path):
    paths, _ = bags
    with pytest.raises(BagFileError, match='no-such-bag'):
        train_reward_model([tmp_path / 'no-such-bag'], tmp_path / 'r.pt', config=small_config())
    corrupt = tmp_path / 'corrupt'
    shutil.copytree(paths[0], corrupt)
    (data,) = corrupt.glob('*.mcap')
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(BagFileError, match=data.name):
        train_reward_model([corrupt], tmp_path / 'r.pt', config=small_config())
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='bad.pt'):
        load_reward_model(bad)


def test_cli_reward_train(bags, tmp_path, capsys):
    paths, _ = bags
    config = tmp_path / 'small.yaml'
    config.write_text(yaml.safe_dump(SMALL))
    assert load_config(config) == small_config()
    out = tmp_path / 'cli' / 'reward.pt'
    argv = ['reward-train', '--bag', *map(str, paths), '--out', str(out), '--config',
            str(config), '--seed', '0', '--val-fraction', '0.25', '--store',
            str(tmp_path / 'cli-store')]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 label(s) whose query is in no bag: 'ghost'" in printed
    assert "1 conflicting label(s), first kept: 'q1'" in printed
    assert 'accuracy: train' in printed and f'checkpoint: {out}' in printed
    assert load_reward_model(out).version == 1

    assert cli.main(['reward-train', '--bag', str(tmp_path / 'gone'), '--out',
                     str(tmp_path / 'x.pt')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('pref-rl reward-train: error:') and 'gone' in err
    assert 'Traceback' not in err
    config.write_text('reward_model: {size: 3}\n')
    assert cli.main(['reward-train', '--bag', str(paths[0]), '--out', str(tmp_path / 'y.pt'),
                     '--config', str(config)]) == 2
    assert 'unknown key(s) size' in capsys.readouterr().err
    with pytest.raises(OfflineRewardError, match='no trainable label'):
        empty = tmp_path / 'empty'
        write_bag(empty, [])
        train_reward_model([empty], tmp_path / 'z.pt', config=small_config())
