"""PEBBLE runs end to end: config errors, exact resume, corrupt checkpoints, CLI, plots."""

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from pref_rl_learner.checkpoint import CheckpointError
from pref_rl_learner.cli import main
from pref_rl_learner.config import ConfigError
from pref_rl_learner.pebble.config import TrainConfig, load_config
from pref_rl_learner.pebble.trainer import CHECKPOINT_NAME, PebbleTrainer
from pref_rl_learner.preferences import PreferenceStore
from pref_rl_learner.run_log import read_csv

# A small, fast point-mass run that still passes through every phase: seed steps,
# unsupervised pre-training, the critic reset, four feedback sessions and relabelling.
TINY = {
    'task': 'point_mass', 'total_steps': 1200, 'seed_steps': 200, 'unsupervised_steps': 200,
    'eval_interval_steps': 300, 'eval_episodes': 2, 'checkpoint_interval_steps': 10_000,
    'tensorboard': False, 'reset_updates': 5,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 64},
    'reward_model': {'hidden_sizes': [32, 32]},
    'reward_training': {'max_epochs': 5, 'batch_size': 32},
    'query': {'sampler': 'disagreement', 'pool_multiplier': 4},
    'schedule': {'queries_per_session': 6, 'session_interval_steps': 200, 'total_budget': 24},
}



def _config(**overrides):
    from pref_rl_learner.config import from_mapping

    return dataclasses.replace(from_mapping(TrainConfig, TINY), **overrides)


def _write(tmp_path, mapping):
    path = tmp_path / 'c.yaml'
    path.write_text(yaml.safe_dump(mapping))
    return path


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match='sac.*batch_sise'):
        load_config(_write(tmp_path, {**TINY, 'sac': {'batch_sise': 3}}))
    with pytest.raises(ConfigError, match='unknown key.*totl_steps'):
        load_config(_write(tmp_path, {**TINY, 'totl_steps': 3}))
    with pytest.raises(ConfigError, match='expected int'):
        load_config(_write(tmp_path, {**TINY, 'total_steps': 'many'}))


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    status = main(['train', '--config', str(_write(tmp_path, {'tsk': 'x'})),
                   '--path', str(tmp_path / 'run')])
    assert status == 2
    assert 'unknown key(s) tsk' in capsys.readouterr().err


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    config = _config()
    whole = PebbleTrainer(config, tmp_path / 'whole')
    whole.run()
    paused = PebbleTrainer(config, tmp_path / 'paused')
    summary = paused.run(stop_at_step=500)
    assert 500 <= summary.step < config.total_steps
    resumed = PebbleTrainer(config, tmp_path / 'paused', resume=True)
    assert resumed.state.step == summary.step
    resumed.run()
    for stream in ('eval', 'feedback', 'train'):  # NaN-aware: no validation split, NaN val_*
        np.testing.assert_equal(read_csv(tmp_path / 'whole' / f'{stream}.csv'),
                                read_csv(tmp_path / 'paused' / f'{stream}.csv'), err_msg=stream)
    assert len(read_csv(tmp_path / 'whole' / 'feedback.csv')['step']) >= 3
    for name, tensor in whole.agent.state_dict()['actor'].items():
        assert torch.equal(tensor, resumed.agent.state_dict()['actor'][name]), name


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    config = _config(total_steps=450)  # past the first feedback session (step 401)
    PebbleTrainer(config, tmp_path / 'run').run()
    checkpoint = tmp_path / 'run' / CHECKPOINT_NAME
    checkpoint.write_bytes(checkpoint.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match='not a complete pref-rl checkpoint'):
        PebbleTrainer(config, tmp_path / 'run', resume=True)
    # The failed resume released the preference store, and every label is still there.
    with PreferenceStore.open(tmp_path / 'run' / 'preferences') as store:
        assert store.counts()['labelled'] > 0


def test_resume_refuses_a_different_config(tmp_path):
    PebbleTrainer(_config(total_steps=300), tmp_path / 'run').run()
    with pytest.raises(CheckpointError, match='different config'):
        PebbleTrainer(_config(total_steps=300, seed=5), tmp_path / 'run', resume=True)


def test_cli_train_resume_and_plot(tmp_path, capsys):
    config_file = _write(tmp_path, {**TINY, 'total_steps': 600})
    run = tmp_path / 'run'
    assert main(['train', '--config', str(config_file), '--path', str(run), '--no-progress',
                 '--stop-at-step', '300']) == 0
    assert 'paused' in capsys.readouterr().out
    assert main(['train', '--path', str(run), '--no-progress']) == 0
    assert 'finished at step 600' in capsys.readouterr().out
    assert read_csv(run / 'eval.csv')['step'] == [0.0, 300.0, 600.0]
    assert (run / 'preferences').is_dir()
    out = tmp_path / 'curves.png'
    assert main(['plot', str(run), '--out', str(out)]) == 0
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert main(['plot', str(tmp_path)]) == 2  # not a run directory: a clear error
