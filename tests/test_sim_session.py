"""The session launch file users run (README command 1), end to end as separate processes.

The learner, the scripted teacher, the robot and the recorder run as four processes of
``pref-rl launch launch/sim_session.launch.xml`` on a short run (a few hundred SAC updates,
four feedback sessions); the learner ends the session when it reaches ``total_steps``.
"""

import json
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pref_rl_learner.bag import check_bag, read_bag, read_labels, read_learner_status
from pref_rl_learner.learner import query_id
from pref_rl_learner.preferences import PreferenceStore

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / 'launch' / 'sim_session.launch.xml'

TRAIN_CONFIG = {
    'task': 'point_mass', 'algorithm': 'pebble', 'seed': 0, 'total_steps': 1500,
    'seed_steps': 200, 'unsupervised_steps': 200, 'reset_updates': 20,
    'replay_capacity': 5000, 'eval_interval_steps': 500, 'eval_episodes': 8,
    'tensorboard': False,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 64, 'device': 'cpu'},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [32, 32]},
    'reward_training': {'max_epochs': 20},
    'schedule': {'queries_per_session': 10, 'session_interval_steps': 300,
                 'total_budget': 40},
}
"""A short run: sessions at 400, 700, 1000 and 1300 env steps, 40 labels in all."""


def stored_labels(run_dir: Path) -> dict:
    """Every label in the learner's durable store, by query id."""
    labels = {}
    with PreferenceStore.open(run_dir / 'preferences') as store:
        session = 0
        while store.has_query(query_id(session, 0)):
            index = 0
            while store.has_query(query_id(session, index)):
                label = store.label(query_id(session, index))
                if label is not None:
                    labels[label.query_id] = label
                index += 1
            session += 1
        assert len(labels) == store.counts()['labelled']
    return labels


def session_config(tmp_path: Path) -> tuple[Path, Path]:
    """The short run's TrainConfig file and the session's parameter file (faster exports)."""
    train = tmp_path / 'train.yaml'
    train.write_text(yaml.safe_dump(TRAIN_CONFIG))
    params = yaml.safe_load((ROOT / 'config' / 'sim_session.yaml').read_text())
    # The learner reaches total_steps some 6 s after it starts, so the recovery timers a
    # long session can leave at seconds are scaled to it: a query the teacher missed while
    # discovery was still under way is published again, and an answer that was sent before
    # the learner's reply could reach the teacher is sent again, within the run.
    params['learner']['ros__parameters'].update(policy_publish_interval=200,
                                                checkpoint_interval_s=5.0,
                                                republish_period_s=2.0)
    params['teacher']['ros__parameters'].update(retry_max_s=0.5, call_timeout_s=2.0)
    params_file = tmp_path / 'params.yaml'
    params_file.write_text(yaml.safe_dump(params))
    return train, params_file


@pytest.mark.slow
def test_sim_session_learns_from_teacher_labels_and_records_everything(tmp_path):
    train, params = session_config(tmp_path)
    run_dir = tmp_path / 'run'
    result = subprocess.run(
        ['pref-rl', 'launch', str(LAUNCH_FILE), f'run_dir:={run_dir}',
         f'train_config:={train}', f'config:={params}', 'goal:=eval:3'],
        capture_output=True, text=True, timeout=240, env=os.environ)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for node in ('learner', 'teacher', 'robot', 'segment_recorder'):
        assert f'[{node}]' in output
    assert 'learner exited and is marked on_exit="shutdown"' in output

    # The learner reached total_steps, evaluated before and after, and summarised the run.
    summary = json.loads((run_dir / 'summary.json').read_text())
    # goal:= reached the learner (its evaluation) and the robot (its rewards); see below.
    assert summary['target'] == 'eval:3 at (-0.80, -0.20)', summary['target']
    assert summary['env_steps'] >= TRAIN_CONFIG['total_steps']
    assert summary['evaluations'] >= 4  # at 0, 500, 1000 and the end
    assert summary['reward_model_version'] >= 2, output[-4000:]
    assert summary['policy_version'] >= 1
    assert (run_dir / 'checkpoint.pt').is_file()
    assert (run_dir / 'learning_curves.png').stat().st_size > 0
    assert (run_dir / 'eval.csv').read_text().startswith('step,success_rate,return')

    # Queries were answered and the labels stored durably.
    labels = stored_labels(run_dir)
    assert len(labels) >= 30
    # The summary is taken at total_steps; answers still in flight then are stored too.
    assert 20 <= summary['labels_stored'] <= len(labels)
    assert {label.labeler_id for label in labels.values()} == {'teacher/oracle'}

    # The bag closed cleanly and holds every acknowledged label, once, as stored.
    bag = run_dir / 'bag'
    assert check_bag(bag).ok
    recorded = list(read_labels(bag))
    assert len(recorded) == len({label.query_id for label in recorded})
    assert {lb.query_id: lb.choice for lb in recorded} == {
        qid: lb.choice for qid, lb in labels.items()}

    # Segments flowed; the reward-model version increased over the session; new policy
    # weights reached the robot: it reported them and acted with them.
    messages = list(read_bag(bag, topics=('/segments', '/robot_status', '/queries')))
    segments = [m.value for m in messages if m.topic == '/segments']
    assert len(segments) * 10 >= TRAIN_CONFIG['total_steps']
    assert {s.task for s in segments} == {'point_mass'}
    # The robot's segments show position and velocity only, and its true rewards are those
    # of target eval:3 (-0.8, -0.2): -distance to it, less the control cost.
    assert {tuple(s.observation_shape) for s in segments} == {(4,)}
    last = segments[-1]
    obs = np.asarray(last.next_observations, np.float32).reshape(last.length, 4)
    actions = np.asarray(last.actions, np.float32).reshape(last.length, 2)
    expected = -np.hypot(obs[:, 0] + 0.8, obs[:, 1] + 0.2) - 0.05 * (actions ** 2).sum(1)
    np.testing.assert_allclose(np.asarray(last.rewards), expected, atol=1e-5)
    assert max(s.policy_version for s in segments) >= 1
    robot_versions = [m.value.policy_version for m in messages if m.topic == '/robot_status']
    assert max(robot_versions) >= 1
    queried = {m.value.query_id for m in messages if m.topic == '/queries'}
    assert set(labels) <= queried
    # Every query first went out with the robot's frames on both sides (republished copies
    # of unanswered queries come from the store, without them), and the summary says so.
    first: dict = {}
    for m in messages:
        if m.topic == '/queries':
            first.setdefault(m.value.query_id, m.value)
    unframed = [q.query_id for q in first.values()
                if q.left.frames is None or q.right.frames is None]
    assert unframed == [], f'{len(unframed)} of {len(first)} queries without frames'
    assert summary['frames_queries_asked'] == summary['queries_asked'] == len(first)
    assert summary['frames_queries_with_both'] == len(first)
    assert summary['frames_fraction'] == 1.0
    versions = [s.reward_model_version for s in read_learner_status(bag)]
    assert versions[0] == 0 and max(versions) >= 2
    assert versions == sorted(versions)


def test_sim_session_declares_its_documented_arguments():
    result = subprocess.run(
        ['pref-rl', 'launch', str(LAUNCH_FILE), '--show-args'],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ('task', 'labeler', 'algorithm', 'checkpoint', 'goal', 'run_dir', 'bag_dir',
                 'train_config', 'config'):
        assert f'{name} (default:' in result.stdout


def test_sim_session_resolves_tasks_labelers_and_algorithms(tmp_path):
    def plan(*args):
        return subprocess.run(['pref-rl', 'launch', '-p', str(LAUNCH_FILE),
                               f'run_dir:={tmp_path}', *args],
                              capture_output=True, text=True, timeout=60)

    result = plan()
    assert result.returncode == 0, result.stderr
    nodes = [line.split(' ')[0].rstrip(':') for line in result.stdout.splitlines()]
    assert nodes == ['learner', 'teacher', 'robot', 'segment_recorder']
    assert 'session_point_mass.yaml' in result.stdout
    assert f'bag_dir:={tmp_path}/bag' in result.stdout
    for task in ('reacher', 'button-press-v3', 'panda_reach', 'panda_push'):
        assert f'session_{task}.yaml' in plan(f'task:={task}').stdout
    learner = shlex.split(result.stdout.splitlines()[0].partition(': ')[2])  # shell-quoted
    at = learner.index("algorithm:=''")  # empty: the YAML's
    assert learner[at:at + 3] == ["algorithm:=''", '-p', "pretrained_reward:=''"]
    result = plan('algorithm:=fewshot', 'checkpoint:=best_model.pt')
    assert result.returncode == 0, result.stderr
    assert 'algorithm:=fewshot' in result.stdout
    assert 'pretrained_reward:=best_model.pt' in result.stdout
    result = plan('labeler:=gui')
    assert result.returncode == 0, result.stderr
    assert [line.split(' ')[0].rstrip(':') for line in result.stdout.splitlines()] == [
        'learner', 'labeler', 'robot', 'segment_recorder']
