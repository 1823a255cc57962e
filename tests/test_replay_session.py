"""The replay session: a recorded bag's segments, replayed into a learner, answered by the teacher.

A bag of point-mass segments (plus one of another task, which the player skips) is written
with the stack's bag writer; ``launch/replay_session.launch.xml`` runs the bag player, the
learner and the scripted teacher as separate processes. The learner's ``total_steps`` is the
bag's transitions, so it ends the session itself once everything is replayed: every
transition arrived exactly once, queries were asked and answered, and the run directory
holds the labels and the summary. A torn bag makes the player fail with a clear message.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from pref_rl_learner.bag import BagWriter, TopicSpec, stack_definitions
from pref_rl_learner.bag.convert import serialize
from pref_rl_learner.preferences import PreferenceStore
from pref_rl_learner.testing import make_segment

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch' / 'replay_session.launch.xml'
SEGMENTS = 60  # 10-step point-mass segments: 600 transitions

TRAIN = {
    'task': 'point_mass', 'algorithm': 'pebble', 'seed': 0, 'total_steps': 10 * SEGMENTS,
    'seed_steps': 100, 'unsupervised_steps': 100, 'reset_updates': 10,
    'replay_capacity': 5000, 'eval_interval_steps': 100_000, 'eval_episodes': 1,
    'tensorboard': False,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 64, 'device': 'cpu'},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [32, 32]},
    'reward_training': {'max_epochs': 10},
    'schedule': {'queries_per_session': 4, 'session_interval_steps': 200, 'total_budget': 8},
}


def write_bag(path: Path) -> None:
    from pref_rl_robot.actor import Actor, ActorConfig

    segments = Actor.from_config(ActorConfig(task='point_mass', seed=0),
                                 source_id='sim').run(max_steps=10 * SEGMENTS)
    assert len(segments) == SEGMENTS
    other = make_segment(seed=1, task='button-press-v3', segment_id='other-task')
    defs = stack_definitions()
    with BagWriter(path, [TopicSpec('/segments', 'pref_rl_msgs/msg/Segment')],
                   definitions=defs) as writer:
        for i, segment in enumerate([*segments[:5], other, *segments[5:]]):
            writer.write('/segments', 1_000 + i, serialize(defs.typestore, segment)[1])


def launch(tmp_path: Path, bag: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    train = tmp_path / 'train.yaml'
    train.write_text(yaml.safe_dump(TRAIN))
    return subprocess.run(
        ['pref-rl', 'launch', str(LAUNCH), f'bag:={bag}', 'labeler:=teacher',
         f'run_dir:={tmp_path / "run"}', f'train_config:={train}',
         '--log-dir', str(tmp_path / 'log')],
        capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_replayed_bag_feeds_the_learner_and_the_teacher_answers(tmp_path):
    bag = tmp_path / 'bag'
    write_bag(bag)
    result = launch(tmp_path, bag)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The player skipped the other task's segment (the learner would have refused it); its
    # own end message may be cut short: the learner ends the session once it has every step.
    assert "segment 'other-task' rejected" not in output
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert summary['env_steps'] == 10 * SEGMENTS  # every transition, exactly once
    assert summary['queries_asked'] >= 4 and summary['labels_stored'] >= 4
    with PreferenceStore.open(tmp_path / 'run' / 'preferences') as store:
        assert store.counts()['labelled'] == summary['labels_stored']


def test_a_torn_bag_stops_the_player_with_the_reason(tmp_path):
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    result = subprocess.run(
        [str(ROOT / 'install' / 'pref_rl_learner' / 'lib' / 'pref_rl_learner' / 'bag_player'),
         '--ros-args', '-p', f'bag:={bag}', '-p', 'max_steps_ahead:=0',
         '-p', 'min_subscribers:=0'],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f'cannot read {bag} after 0 segments' in result.stdout + result.stderr
