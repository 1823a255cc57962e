"""The init / fewshot arms: pretrained checkpoints, their errors, and `pref-rl train` end to end.

A tiny point-mass dataset (random and noisy goal-directed episodes for a few training goals)
is meta-trained for a few steps once per module; the arms load the result.
"""

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from pref_rl_learner.checkpoint import CheckpointError
from pref_rl_learner.cli import main
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.fewshot import dataset as dataset_module
from pref_rl_learner.fewshot.adapt import FewShotTrainer
from pref_rl_learner.fewshot.arms import PretrainedRewardError, make_reward_learning
from pref_rl_learner.fewshot.dataset import MultiTaskDataset, TaskData
from pref_rl_learner.fewshot.meta_checkpoint import load_pretrained
from pref_rl_learner.fewshot.pretrain import PretrainConfig, PretrainError, outer_lr_at, pretrain
from pref_rl_learner.offline_reward import load_reward_model, save_reward_model
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.trainer import PebbleTrainer
from pref_rl_learner.reward import RewardEnsemble, RewardTrainer
from pref_rl_learner.run_log import read_csv
from pref_rl_learner.testing import one_torch_thread

REWARD_MODEL = {'inputs': 'state', 'hidden_sizes': [32, 32]}
PRETRAIN = {'steps': 12, 'support_pairs': 8, 'query_pairs': 8, 'eval_interval': 6,
            'holdout_tasks': 1,
            'log_interval': 3, 'eval_draws': 1, 'outer_lr': 1e-3,
            'maml': {'inner_lr': 1e-2}, 'reward_model': REWARD_MODEL}
# A short fewshot run through every phase: seed steps, three feedback sessions (2 + 2 + 2
# queries: the first session's small, as the benchmark's), relabelling, SAC on r̂.
TINY = {
    'task': 'point_mass', 'algorithm': 'fewshot', 'total_steps': 700, 'seed_steps': 200,
    'unsupervised_steps': 0, 'eval_interval_steps': 350, 'eval_episodes': 2,
    'checkpoint_interval_steps': 10_000, 'tensorboard': False,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 64},
    'reward_model': REWARD_MODEL,
    'reward_training': {'max_epochs': 5, 'batch_size': 32},
    'fewshot': {'adapt_max_steps': 5},
    'query': {'sampler': 'disagreement', 'pool_multiplier': 4},
    'schedule': {'queries_per_session': 2, 'session_interval_steps': 200, 'total_budget': 6},
}


def point_mass_dataset(goals=(0, 1, 2, 3), episodes=4, seed=0) -> MultiTaskDataset:
    """Random and noisy goal-directed point-mass episodes per training target, 10-step
    segments (pretraining keeps one target out for validation)."""
    from pref_rl_robot.tasks import make_task

    rng = np.random.default_rng(seed)
    tasks, split = {}, {}
    for goal in goals:
        env = make_task('point_mass', goal=f'train:{goal}', seed=seed + goal)
        target = env.unwrapped.goal
        obs_all, act_all, rew_all, sources = [], [], [], []
        for episode in range(episodes):
            kind = 'random' if episode % 2 == 0 else 'noisy'
            obs, _ = env.reset()
            for _ in range(5):  # five 10-step segments per 50-step episode
                seg_obs, seg_act, seg_rew = [], [], []
                for _ in range(10):
                    if kind == 'random':
                        action = rng.uniform(-1, 1, 2)
                    else:  # a P-controller towards the goal, plus noise
                        action = 3 * (target - obs[:2]) - obs[2:4] + rng.normal(0, 0.5, 2)
                    action = np.clip(action, -1, 1).astype(np.float32)
                    next_obs, reward, *_ = env.step(action)
                    seg_obs.append(obs)
                    seg_act.append(action)
                    seg_rew.append(reward)
                    obs = next_obs
                obs_all.append(seg_obs)
                act_all.append(seg_act)
                rew_all.append(seg_rew)
                sources.append(kind)
        task_id = f'point_mass/goal{goal:02d}'
        tasks[task_id] = TaskData(task_id, 'point_mass', np.asarray(obs_all, np.float32),
                                  np.asarray(act_all, np.float32),
                                  np.asarray(rew_all, np.float32), np.asarray(sources))
        split[task_id] = 'train'
    return MultiTaskDataset(tasks, split)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """``best_model.pt`` of a brief MAML pretraining on the tiny point-mass dataset."""
    out = tmp_path_factory.mktemp('pretrain')
    with one_torch_thread():  # module fixtures run before conftest's per-test one
        result = pretrain(point_mass_dataset(), out, from_mapping(PretrainConfig, PRETRAIN))
    return result.best_path


def _config(path, **overrides):
    return dataclasses.replace(from_mapping(TrainConfig, {**TINY, 'pretrained_reward': str(path)}),
                               **overrides)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_init_and_fewshot_start_from_the_checkpoint_and_pebble_from_scratch(pretrained):
    saved = load_pretrained(pretrained)
    for algorithm, trainer_type in (('init', RewardTrainer), ('fewshot', FewShotTrainer)):
        model, trainer = make_reward_learning(_config(pretrained, algorithm=algorithm), (4,), 2)
        assert isinstance(trainer, trainer_type)
        assert model.version == 0  # behaves as a fresh model until the first session
        for name, tensor in _params(saved.model).items():
            assert torch.equal(_params(model)[name], tensor), (algorithm, name)
    model, trainer = make_reward_learning(_config(pretrained, algorithm='pebble'), (4,), 2)
    fresh = RewardEnsemble((4,), 2, model.config, seed=0)
    assert isinstance(trainer, RewardTrainer)
    for name, tensor in _params(fresh).items():
        assert torch.equal(_params(model)[name], tensor), name
        assert not torch.equal(tensor, _params(saved.model)[name]), name
    fewshot = make_reward_learning(_config(pretrained), (4,), 2)[1]
    for name, lr in saved.inner_lrs.items():
        assert torch.equal(fewshot.maml.inner_lrs[name], lr), name


def test_meta_checkpoint_is_a_reward_model_checkpoint(pretrained):
    model = load_reward_model(pretrained)
    assert model.observation_shape == (4,)
    assert model.config.hidden_sizes == (32, 32)
    saved = load_pretrained(pretrained)
    assert saved.maml.inner_steps == 2
    assert {'step', 'eval_accuracy', 'best_accuracy'} <= set(saved.info)


def test_shape_and_architecture_mismatch_name_both_sides(pretrained):
    with pytest.raises(PretrainedRewardError, match=r'shape \(4,\).*task has \(10,\)'):
        make_reward_learning(_config(pretrained, algorithm='init'), (10,), 2)
    wider = dataclasses.replace(_config(pretrained).reward_model, hidden_sizes=(64, 64))
    with pytest.raises(PretrainedRewardError,
                       match=r'hidden_sizes: checkpoint \[32, 32\] vs train config \[64, 64\]'):
        make_reward_learning(_config(pretrained, reward_model=wider), (4,), 2)


def test_corrupt_or_missing_checkpoint_is_a_checkpoint_error(pretrained, tmp_path):
    corrupt = tmp_path / 'corrupt.pt'
    data = bytearray(pretrained.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='checksum mismatch'):
        make_reward_learning(_config(corrupt), (4,), 2)
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(pretrained.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match='not a complete'):
        make_reward_learning(_config(truncated, algorithm='init'), (4,), 2)
    with pytest.raises(CheckpointError, match='cannot read'):
        make_reward_learning(_config(tmp_path / 'missing.pt'), (4,), 2)


def test_reward_train_checkpoint_serves_init_but_not_fewshot(tmp_path):
    path = tmp_path / 'reward.pt'
    config = _config(path, algorithm='init')
    save_reward_model(path, RewardEnsemble((4,), 2, config.reward_model, seed=5), seed=5)
    model, _ = make_reward_learning(config, (4,), 2)
    assert torch.equal(_params(model)['head.linears.0.weight'],
                       _params(load_reward_model(path))['head.linears.0.weight'])
    with pytest.raises(PretrainedRewardError, match='no learned learning rates'):
        make_reward_learning(_config(path), (4,), 2)


def test_init_and_fewshot_need_a_pretrained_reward():
    for algorithm in ('init', 'fewshot'):
        with pytest.raises(ConfigError, match='needs pretrained_reward'):
            from_mapping(TrainConfig, {'algorithm': algorithm})
    assert from_mapping(TrainConfig, {'algorithm': 'pebble'}).pretrained_reward == ''


def test_cosine_outer_learning_rate_runs_from_outer_lr_to_the_final_one():
    config = from_mapping(PretrainConfig, {'steps': 101, 'outer_lr': 1e-3,
                                           'outer_lr_schedule': 'cosine',
                                           'outer_lr_final': 1e-5})
    rates = [outer_lr_at(config, step) for step in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert rates[50] == pytest.approx((1e-3 + 1e-5) / 2)
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))
    constant = from_mapping(PretrainConfig, {'steps': 101, 'outer_lr': 1e-3})
    assert {outer_lr_at(constant, step) for step in range(101)} == {1e-3}
    for bad, message in (({'outer_lr_schedule': 'linear'}, 'constant. or .cosine'),
                         ({'outer_lr_final': 1.0}, r'outer_lr_final must be in \(0, outer_lr\]')):
        with pytest.raises(ConfigError, match=message):
            from_mapping(PretrainConfig, bad)


def test_pretraining_resumes_exactly(tmp_path):
    dataset = point_mass_dataset(goals=(0, 1, 2), episodes=2)
    # The cosine schedule too: a resumed run must take the uninterrupted run's rates.
    config = from_mapping(PretrainConfig, {**PRETRAIN, 'outer_lr_schedule': 'cosine'})
    pretrain(dataset, tmp_path / 'whole', config)
    with pytest.raises(_StopError):  # interrupted right after the step-6 checkpoint
        pretrain(dataset, tmp_path / 'split', config, progress=_stop_after(6))
    with pytest.raises(CheckpointError, match='different pretrain config'):
        pretrain(dataset, tmp_path / 'split', dataclasses.replace(config, seed=1), resume=True)
    result = pretrain(dataset, tmp_path / 'split', config, resume=True)
    assert result.steps == config.steps
    whole, split = (load_pretrained(tmp_path / d / 'last_model.pt') for d in ('whole', 'split'))
    for name, tensor in _params(whole.model).items():
        assert torch.equal(_params(split.model)[name], tensor), name
    for name, lr in whole.inner_lrs.items():
        assert torch.equal(split.inner_lrs[name], lr), name
        assert not torch.equal(lr, torch.full_like(lr, 1e-2)), name  # α was learned
    for stream in ('train', 'eval'):
        assert read_csv(tmp_path / 'whole' / f'{stream}.csv') == \
            read_csv(tmp_path / 'split' / f'{stream}.csv'), stream
    assert (tmp_path / 'whole' / 'curves.png').read_bytes()[:4] == b'\x89PNG'


def test_pretraining_refuses_held_out_targets(tmp_path):
    # No held-out target may reach the prior, not even to choose the checkpoint.
    dataset = point_mass_dataset(goals=(0, 1, 2), episodes=2)
    dataset.split['point_mass/goal02'] = 'eval'
    with pytest.raises(PretrainError, match='held-out target'):
        pretrain(dataset, tmp_path / 'out', from_mapping(PretrainConfig, PRETRAIN))
    assert not (tmp_path / 'out' / 'best_model.pt').exists()


def test_pretrain_cli(tmp_path, capsys):
    dataset = point_mass_dataset(goals=(0, 1, 2), episodes=2)
    records = [dataset_module.save_task_shard(tmp_path / 'data', task, dataset.split[task_id])
               for task_id, task in dataset.tasks.items()]
    dataset_module.write_manifest(tmp_path / 'data', records, complete=True)
    config = tmp_path / 'pretrain.yaml'
    config.write_text(yaml.safe_dump({k: v for k, v in PRETRAIN.items() if k != 'steps'}))
    args = ['pretrain', '--dataset', str(tmp_path / 'data'), '--out', str(tmp_path / 'out'),
            '--config', str(config), '--set', 'steps=6', '--seed', '3', '--no-progress']
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'best post-adaptation accuracy on validation tasks (point_mass/goal0' in out
    assert f'best checkpoint: {tmp_path / "out" / "best_model.pt"}' in out
    saved = yaml.safe_load((tmp_path / 'out' / 'pretrain_config.yaml').read_text())
    assert (saved['seed'], saved['steps']) == (3, 6)
    assert main(args) == 2  # an existing pretraining is not overwritten
    assert '--resume' in capsys.readouterr().err
    assert main([*args[:-1], '--set', 'maml.inner_stepz=3']) == 2
    assert 'inner_stepz' in capsys.readouterr().err


@pytest.mark.slow
def test_fewshot_train_end_to_end_with_resume(pretrained, tmp_path, capsys):
    config_file = tmp_path / 'fewshot.yaml'
    config_file.write_text(yaml.safe_dump({**TINY, 'pretrained_reward': str(pretrained)}))
    whole = PebbleTrainer(_config(pretrained), tmp_path / 'whole')
    whole.run()
    paused = tmp_path / 'paused'
    assert main(['train', '--config', str(config_file), '--path', str(paused), '--no-progress',
                 '--stop-at-step', '400']) == 0
    assert 'paused' in capsys.readouterr().out
    pretrained_copy = pretrained.read_bytes()
    pretrained.unlink()  # a resumed run restores θ and α from its own checkpoint
    try:
        assert main(['train', '--path', str(paused), '--no-progress']) == 0
    finally:
        pretrained.write_bytes(pretrained_copy)
    assert 'finished at step 700, 6 queries' in capsys.readouterr().out
    for stream in ('eval', 'feedback', 'train'):  # NaN-aware: val_loss is NaN at first
        np.testing.assert_equal(read_csv(tmp_path / 'whole' / f'{stream}.csv'),
                                read_csv(paused / f'{stream}.csv'), err_msg=stream)
    feedback = read_csv(paused / 'feedback.csv')
    assert feedback['asked'] == [2.0, 4.0, 6.0]
    assert feedback['reward_model_version'] == [1.0, 2.0, 3.0]
    counts = whole.learning.preferences.trainer.counts
    assert sum(counts.values()) == 3, counts


class _StopError(Exception):
    pass


def _stop_after(steps):
    def progress(step, figures):
        if step == steps:
            raise _StopError
    return progress
