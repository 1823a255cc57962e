"""PEBBLE learns the point mass's hidden target from preferences, and only from them.

The target (held-out target ``eval:0``) is never observed: the agent sees position and
velocity, the reward model learns from the teacher's answers alone (2 runs of 6000 steps:
about 3 minutes on 2 cores). The control is the same
run with a teacher that answers at random (``teacher_preset: random``, the same budget): if
it learned as well, the labels would not be what the agent learns from.
"""

import pytest

from pref_rl_learner.config import from_mapping
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.trainer import PebbleTrainer
from pref_rl_learner.run_log import read_csv

CONFIG = {
    'task': 'point_mass', 'goal': 'eval:0', 'seed': 0, 'total_steps': 6000,
    'seed_steps': 1000, 'unsupervised_steps': 0, 'eval_interval_steps': 1000,
    'eval_episodes': 10, 'tensorboard': False, 'teacher_preset': 'oracle',
    'sac': {'hidden_sizes': [128, 128], 'batch_size': 256},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [128, 128, 128]},
    'reward_training': {'max_epochs': 100},
    'schedule': {'queries_per_session': 40, 'session_interval_steps': 1000,
                 'total_budget': 200},
    # A report is asked for: hold out a fifth of the labels to measure generalisation.
    'store': {'validation_fraction': 0.2},
}


def _run(tmp_path, teacher: str) -> tuple[dict, dict]:
    trainer = PebbleTrainer(from_mapping(TrainConfig, {**CONFIG, 'teacher_preset': teacher}),
                            tmp_path / teacher)
    summary = trainer.run()
    assert summary.queries == 200  # the same budget for both teachers
    return read_csv(tmp_path / teacher / 'eval.csv'), read_csv(
        tmp_path / teacher / 'feedback.csv')


@pytest.mark.slow
def test_pebble_learns_the_hidden_target_from_labels_and_not_from_random_answers(tmp_path):
    evals, feedback = _run(tmp_path, 'oracle')
    control, control_feedback = _run(tmp_path, 'random')
    # Learned only from labels: the true reward never reaches the agent.
    assert feedback['labelled'][-1] == control_feedback['labelled'][-1] == 200
    assert feedback['val_accuracy'][-1] >= 0.8  # the reward model ranks held-out pairs
    assert control_feedback['val_accuracy'][-1] < 0.65  # coin flips cannot be predicted
    assert evals['return'][0] == control['return'][0]  # the same start
    # Measured at this seed (2026-12-02): the oracle's labels take the return on the hidden
    # target from -42.5 to -19.3 (validation accuracy 0.87); random answers leave it at -57.5
    # (0.31). Within 6000 steps neither reaches the 5 cm success radius reliably; the
    # benchmark (bench/fewshot_point_mass.py) measures success over targets and seeds.
    assert evals['return'][-1] > evals['return'][0] + 15, evals
    assert evals['return'][-1] > control['return'][-1] + 20, (evals, control)
    assert control['return'][-1] < control['return'][0] + 5, control
