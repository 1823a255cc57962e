"""Every shipped training config loads into TrainConfig and names a known task and target."""

from pathlib import Path

import pytest

from pref_rl_learner.pebble.config import load_config
from pref_rl_robot.tasks import resolve_target, task_names

CONFIGS = sorted((Path(__file__).resolve().parents[1] / 'config').glob('*.yaml'))
TRAIN_CONFIGS = [p for p in CONFIGS
                 if p.name.startswith(('pebble_', 'sac_', 'fewshot_', 'session_'))]


def test_there_are_training_configs():
    assert len(TRAIN_CONFIGS) >= 5


@pytest.mark.parametrize('path', TRAIN_CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    config = load_config(path)
    assert config.task in task_names()
    assert config.total_steps > config.learning_starts
    resolve_target(config.task, config.goal)  # a target the task has


def test_the_main_jobs_shipped_prior_fits_its_run():
    # scripts/session starts the few-shot arm from config/priors/point_mass.pt: it must be a
    # MAML checkpoint (learned rates) for the hidden-goal point mass (position and velocity
    # only) with the session's reward architecture, or the main job would fail at start.
    from pref_rl_learner.fewshot.arms import check_compatible
    from pref_rl_learner.fewshot.meta_checkpoint import load_pretrained
    from pref_rl_learner.reward.ensemble import RewardEnsemble

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / 'config' / 'session_point_mass.yaml')
    assert config.algorithm == 'fewshot' and config.goal.startswith('eval:')
    prior = load_pretrained(root / config.pretrained_reward)
    assert prior.inner_lrs is not None and prior.maml is not None
    check_compatible(prior, RewardEnsemble((4,), 2, config.reward_model, seed=0))
    assert (root / 'config' / 'priors' / 'README.md').read_text().count('pref-rl ') >= 2
