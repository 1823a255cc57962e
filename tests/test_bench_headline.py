"""The headline benchmarks' procedure (bench/_fewshot_headline.py): which target a dataset task is.

The prior's control and the adaptation probe match a run's ``goal`` to the dataset's task of
that target; a wrong match would score the prior on another target's pairs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'bench'))

from _fewshot_headline import target_of  # noqa: E402


@pytest.mark.parametrize(('task_id', 'goal'), [
    ('point_mass/eval/goal03', 'eval:3'),
    ('point_mass/eval/goal10', 'eval:10'),
    ('point_mass/train/goal11', 'train:11'),  # a validation target kept out of pretraining
    ('panda_reach/train/goal00', 'train:0'),
    ('door-close-v3/eval/var1', 'eval:1')])
def test_a_task_id_names_its_split_and_target(task_id, goal):
    assert target_of(task_id) == goal
