"""Every shipped training config loads into TrainConfig and names a known task."""

from pathlib import Path

import pytest

from pref_rl_learner.pebble.config import load_config
from pref_rl_robot.tasks import task_names

CONFIGS = sorted((Path(__file__).resolve().parents[1] / 'config').glob('*.yaml'))
TRAIN_CONFIGS = [p for p in CONFIGS if p.name.startswith(('pebble_', 'sac_'))]


def test_there_are_training_configs():
    assert len(TRAIN_CONFIGS) >= 5


@pytest.mark.parametrize('path', TRAIN_CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    config = load_config(path)
    assert config.task in task_names()
    assert config.total_steps > config.learning_starts
