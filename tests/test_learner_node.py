"""The ``learner`` node in-process: segments in, status and queries out, labels through the
service, and every kind of bad input refused with a reason while the node keeps working."""

import array
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from pref_rl_learner.learner import CHECKPOINT_NAME
from pref_rl_learner.preferences import PreferenceStore
from pref_rl_learner.ros.conversions import (
    label_from_ros,
    label_to_ros,
    query_from_ros,
    segment_to_ros,
    status_from_ros,
)
from pref_rl_learner.ros.learner import LearnerNode
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_learner.types import Choice, PreferenceLabel
from pref_rl_msgs.msg import LearnerStatus, PolicyWeights, PreferenceQuery
from pref_rl_msgs.msg import PreferenceLabel as PreferenceLabelMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import GetSegmentFrames, SaveCheckpoint, SubmitLabel

CONFIG = {
    'task': 'point_mass', 'seed': 0, 'total_steps': 5000, 'seed_steps': 100,
    'unsupervised_steps': 100, 'reset_updates': 10, 'replay_capacity': 5000,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 32, 'device': 'cpu'},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [32, 32]},
    'reward_training': {'max_epochs': 20},
    'schedule': {'queries_per_session': 4, 'session_interval_steps': 200, 'total_budget': 8},
}
FRAME_SHAPE = (4, 4, 3)
ROOT = Path(__file__).resolve().parent.parent
LEARNER = ROOT / 'install' / 'pref_rl_learner' / 'lib' / 'pref_rl_learner' / 'learner'


def rollout(steps, seed=0):
    """Segments of a random policy on the point mass: the robot's actor before weights."""
    from pref_rl_robot.actor import Actor, ActorConfig

    return Actor.from_config(ActorConfig(task='point_mass', seed=seed),
                             source_id='sim').run(max_steps=steps)


@pytest.fixture(scope='module')
def segments():
    return rollout(800)


class Probe:
    """The learner's peers: a robot publishing segments and serving frames, a labeller."""

    def __init__(self, node, executor):
        self.node, self.executor = node, executor
        self.statuses, self.queries, self.weights, self.labels = [], [], [], []
        self.frame_requests = []
        self.segment_pub = node.create_publisher(SegmentMsg, 'segments', STREAM)
        node.create_subscription(LearnerStatus, 'learner_status',
                                 lambda m: self.statuses.append(status_from_ros(m)), LATCHED)
        node.create_subscription(PreferenceQuery, 'queries',
                                 lambda m: self.queries.append(query_from_ros(m)), STREAM)
        node.create_subscription(PreferenceLabelMsg, 'labels',
                                 lambda m: self.labels.append(label_from_ros(m)), STREAM)
        node.create_subscription(PolicyWeights, 'policy_weights',
                                 lambda m: self.weights.append(m.version), LATCHED)
        node.create_service(GetSegmentFrames, 'robot/get_segment_frames', self.on_frames)
        self.submit = node.create_client(SubmitLabel, 'submit_label')
        self.save = node.create_client(SaveCheckpoint, 'learner/save_checkpoint')

    def on_frames(self, request, response):
        self.frame_requests.append(request.segment_id)
        response.success, response.frame_stride = True, 5
        response.frame_shape = array.array('I', FRAME_SHAPE)
        response.frames = array.array('B', bytes(2 * int(np.prod(FRAME_SHAPE))))
        return response

    def spin_until(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    @property
    def env_steps(self):
        return self.statuses[-1].env_steps if self.statuses else -1

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(request)
        assert self.spin_until(future.done)
        return future.result()

    def label(self, query_id, choice, labeler='person'):
        msg = label_to_ros(PreferenceLabel(query_id, Choice.LEFT, labeler))
        msg.choice = int(choice)  # possibly out of range: the node must refuse it
        return self.call(self.submit, SubmitLabel.Request(label=msg))


def learner_parameters(tmp_path, train=CONFIG):
    config = tmp_path / 'pebble.yaml'
    config.write_text(yaml.safe_dump(train))
    return [Parameter('config', value=str(config)),
            Parameter('run_dir', value=str(tmp_path / 'run')),
            Parameter('policy_publish_interval', value=40),
            Parameter('checkpoint_interval_s', value=0.0),
            # The probe answers every frames request; a GIL stall of the training worker
            # over the default 1 s would retry one and break "asked for once".
            Parameter('frames_timeout_s', value=10.0)]


@contextlib.contextmanager
def running(tmp_path, train=CONFIG):
    """A learner on ``train`` and its probe in one executor: (learner, probe, run_dir)."""
    rclpy.init()
    executor = SingleThreadedExecutor()
    learner = LearnerNode(parameter_overrides=learner_parameters(tmp_path, train))
    probe_node = rclpy.create_node('probe')
    executor.add_node(learner)
    executor.add_node(probe_node)
    probe = Probe(probe_node, executor)
    try:
        yield learner, probe, tmp_path / 'run'
    finally:
        for node in list(executor.get_nodes()):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.shutdown()


@pytest.fixture
def session(tmp_path):
    with running(tmp_path) as learner_probe_run_dir:
        yield learner_probe_run_dir


def test_segments_queries_and_labels_flow(session, segments):
    learner, probe, run_dir = session
    assert probe.spin_until(lambda: probe.env_steps == 0)
    for segment in segments[:30]:
        probe.segment_pub.publish(segment_to_ros(segment))
    # learner_status follows the segments received (the robot's flow control reads it).
    assert probe.spin_until(lambda: probe.env_steps == 300)
    assert probe.spin_until(lambda: len(probe.queries) == 4), probe.statuses[-1]
    first = probe.queries[:4]
    assert [q.query_id for q in first] == [f'session0000-q00{j}' for j in range(4)]
    # Frames were fetched from the robot's service (once per segment) and attached to both.
    assert sorted(probe.frame_requests) == sorted({s.segment_id for q in first
                                                   for s in (q.left, q.right)})
    assert all(q.left.frames.shape == (2, *FRAME_SHAPE) for q in first)
    assert probe.spin_until(lambda: probe.statuses[-1].phase == 4)  # FEEDBACK
    for query in first:
        response = probe.label(query.query_id, Choice.LEFT)
        assert response.success and response.message == 'stored'
    assert probe.spin_until(lambda: probe.statuses[-1].labels_stored == 4)
    # Each stored label is announced once on `labels` (for the recorder).
    assert probe.spin_until(lambda: len(probe.labels) == 4)
    assert [lb.query_id for lb in probe.labels] == [q.query_id for q in first]
    assert probe.spin_until(lambda: probe.statuses[-1].reward_model_version >= 1)
    assert probe.spin_until(lambda: probe.weights and probe.weights[-1] >= 1)
    saved = probe.call(probe.save, SaveCheckpoint.Request(path=''))
    assert saved.success and Path(saved.path) == run_dir / CHECKPOINT_NAME
    assert Path(saved.path).is_file()
    learner.destroy_node()  # stops the worker, writes the final checkpoint, frees the store
    with PreferenceStore.open(run_dir / 'preferences') as store:
        assert store.counts()['labelled'] == 4
        assert all(store.label(q.query_id).choice is Choice.LEFT for q in first)


BURST_CONFIG = {**CONFIG, 'seed_steps': 300, 'unsupervised_steps': 300,
                'schedule': {'queries_per_session': 40, 'session_interval_steps': 200,
                             'total_budget': 40}}
"""One feedback session of 40 queries, selected from the 60 segments of the first 600
steps."""


def test_a_session_of_40_queries_gets_frames_on_both_sides_of_every_query(tmp_path,
                                                                         segments):
    """The learner asks for a session's frames at a rate the robot's service answers: the
    probe serves them with ROS's default service queue (10 requests), as a robot that
    predates the deeper queue does. Asked for all at once, all but the last 10 were never
    answered and most queries went out without frames."""
    with running(tmp_path, BURST_CONFIG) as (learner, probe, _):
        for segment in segments[:80]:
            probe.segment_pub.publish(segment_to_ros(segment))
        assert probe.spin_until(lambda: len(probe.queries) == 40, timeout=60)
        shown = {s.segment_id for q in probe.queries for s in (q.left, q.right)}
        assert len(shown) > 30  # a burst well beyond the service's queue
        assert sorted(probe.frame_requests) == sorted(shown)  # each asked for once
        missing = [q.query_id for q in probe.queries
                   if q.left.frames is None or q.right.frames is None]
        assert missing == [], f'{len(missing)} of 40 queries without frames'
        assert learner.frames.figures()['frames_fraction'] == 1.0
        assert learner.frames.counts.retries == 0


def test_bad_inputs_are_refused_and_the_node_keeps_working(session, segments):
    learner, probe, _ = session
    good = segment_to_ros(segments[0])
    truncated = segment_to_ros(segments[1])
    truncated.observations = truncated.observations[:-1]  # lengths disagree with the shape
    nan = segment_to_ros(segments[2])
    nan.actions[3] = float('nan')
    other_task = segment_to_ros(segments[3])
    other_task.task = 'reacher'
    for msg in (truncated, nan, other_task, good, good):  # the last: a repeated id
        probe.segment_pub.publish(msg)
    assert probe.spin_until(lambda: learner.segments_rejected == 4)
    assert probe.spin_until(lambda: probe.env_steps == 10)
    for segment in segments[4:30]:
        probe.segment_pub.publish(segment_to_ros(segment))
    assert probe.spin_until(lambda: probe.env_steps == 270)
    assert probe.spin_until(lambda: len(probe.queries) >= 1)
    query_id = probe.queries[0].query_id
    unknown = probe.label('session0042-q000', Choice.LEFT)
    assert not unknown.success and 'UnknownQueryError' in unknown.message
    for choice in (0, 9):
        bad = probe.label(query_id, choice)
        assert not bad.success and 'choice' in bad.message
    stored = probe.label(query_id, Choice.RIGHT)
    assert stored.success and stored.message == 'stored'
    again = probe.label(query_id, Choice.RIGHT)
    assert again.success and again.message == 'already stored'
    conflicting = probe.label(query_id, Choice.LEFT)
    assert not conflicting.success and 'ConflictingLabelError' in conflicting.message
    assert learner.labels_rejected == 4
    assert probe.spin_until(lambda: len(probe.labels) == 1)  # 'already stored' is not re-sent
    assert learner.core.store.label(query_id).choice is Choice.RIGHT
    # Still working: more segments are taken in and the status follows.
    probe.segment_pub.publish(segment_to_ros(segments[30]))
    assert probe.spin_until(lambda: probe.env_steps == 280)
    assert probe.statuses[-1].labels_stored == 1


def test_a_restarted_learner_resumes_and_republishes_pending_queries(session, segments,
                                                                    tmp_path):
    learner, probe, run_dir = session
    for segment in segments[:30]:
        probe.segment_pub.publish(segment_to_ros(segment))
    assert probe.spin_until(lambda: len(probe.queries) == 4)
    asked = [q.query_id for q in probe.queries]
    assert probe.label(asked[0], Choice.RIGHT).success
    assert probe.spin_until(lambda: probe.statuses[-1].labels_stored == 1)
    probe.executor.remove_node(learner)
    learner.destroy_node()  # what SIGINT/SIGTERM do: stop the worker, final checkpoint
    assert (run_dir / CHECKPOINT_NAME).is_file()
    probe.queries.clear()
    restarted = LearnerNode(parameter_overrides=learner_parameters(tmp_path))
    probe.executor.add_node(restarted)
    assert restarted.core.resumed
    # The unanswered queries are published again; the answered one is not asked again.
    assert probe.spin_until(lambda: len(probe.queries) == 3)
    assert [q.query_id for q in probe.queries] == asked[1:]
    assert probe.spin_until(lambda: probe.statuses[-1].env_steps == 300
                            and probe.statuses[-1].labels_stored == 1)
    again = probe.label(asked[0], Choice.RIGHT)
    assert again.success and again.message == 'already stored'
    for query_id in asked[1:]:
        assert probe.label(query_id, Choice.LEFT).success
    assert probe.spin_until(lambda: probe.statuses[-1].reward_model_version >= 1)
    assert restarted.core.store.counts()['labelled'] == 4


@pytest.mark.slow
def test_learner_process_labels_over_dds_and_stops_cleanly_on_sigterm(tmp_path, segments):
    """The installed executable: segments and labels from another process; SIGTERM writes a
    final checkpoint and exits 0 with every acknowledged label in the store."""
    config = tmp_path / 'pebble.yaml'
    config.write_text(yaml.safe_dump(CONFIG))
    run_dir = tmp_path / 'run'
    proc = subprocess.Popen(
        [str(LEARNER), '--ros-args', '-p', f'config:={config}', '-p', f'run_dir:={run_dir}',
         '-p', "frames_service:=''"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    executor = SingleThreadedExecutor()
    node = rclpy.create_node('peer')
    executor.add_node(node)
    try:
        probe = Probe(node, executor)
        assert probe.spin_until(lambda: probe.env_steps == 0 and
                                probe.segment_pub.get_subscription_count() == 1)
        for segment in segments[:30]:
            probe.segment_pub.publish(segment_to_ros(segment))
        assert probe.spin_until(lambda: probe.env_steps == 300 and len(probe.queries) == 4)
        assert probe.queries[0].left.frames is None  # no frames service: sent without
        for query in probe.queries[:2]:
            response = probe.label(query.query_id, Choice.EQUAL)
            assert response.success and response.message == 'stored'
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    output = proc.communicate()[0]
    assert proc.returncode == 0, output
    assert 'final checkpoint written' in output
    assert (run_dir / CHECKPOINT_NAME).is_file()
    with PreferenceStore.open(run_dir / 'preferences') as store:
        assert store.counts()['labelled'] == 2 and len(store.pending_queries()) == 2


def test_shipped_parameter_file_matches_the_node():
    import dataclasses

    from pref_rl_learner.learner import LearnerConfig
    from pref_rl_learner.pebble.config import load_config
    from pref_rl_learner.ros.learner import LearnerNodeConfig

    params = yaml.safe_load((ROOT / 'config' / 'learner_point_mass.yaml').read_text())
    values = params['learner']['ros__parameters']
    fields = {f.name for cls in (LearnerNodeConfig, LearnerConfig)
              for f in dataclasses.fields(cls)}
    assert set(values) == fields
    assert load_config(ROOT / values['config']).task == 'point_mass'


def test_algorithm_and_pretrained_reward_parameters_override_the_train_yaml(tmp_path):
    from pref_rl_learner.config import ConfigError
    from pref_rl_learner.ros.learner import LearnerNodeConfig, _train_config

    config = tmp_path / 'train.yaml'
    config.write_text(yaml.safe_dump({'task': 'point_mass', 'algorithm': 'pebble',
                                      'seed': 3}))
    assert _train_config(LearnerNodeConfig(config=str(config))).algorithm == 'pebble'
    train = _train_config(LearnerNodeConfig(config=str(config), algorithm='fewshot',
                                            pretrained_reward='best_model.pt'))
    assert (train.algorithm, train.pretrained_reward, train.seed) == (
        'fewshot', 'best_model.pt', 3)
    assert _train_config(LearnerNodeConfig(algorithm='sac')).algorithm == 'sac'
    with pytest.raises(ConfigError, match='does not use one'):
        _train_config(LearnerNodeConfig(config=str(config), pretrained_reward='model.pt'))
    with pytest.raises(ConfigError, match='needs pretrained_reward'):
        _train_config(LearnerNodeConfig(config=str(config), algorithm='init'))
    # goal overrides the YAML's target; person (a real arm) leaves nothing to evaluate.
    assert _train_config(LearnerNodeConfig(config=str(config), goal='eval:5')).goal == 'eval:5'
    assert _train_config(LearnerNodeConfig(config=str(config))).goal == 'eval:0'
    assert not _train_config(LearnerNodeConfig(config=str(config), goal='person')).target_known
    with pytest.raises(ConfigError, match="goal 'eval:9'.*out of range"):
        _train_config(LearnerNodeConfig(config=str(config), goal='eval:9'))
