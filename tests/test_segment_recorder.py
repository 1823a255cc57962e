"""The segment_recorder node as its own process: a clean stop keeps every message; a SIGKILL
mid-session keeps every closed file complete, and `pref-rl bag check --recover` repairs the
bag and names what was lost."""

import signal
import subprocess
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor

from pref_rl_learner.bag import BagReader, check_bag, read_bag, read_metadata
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.ros.conversions import label_to_ros, segment_to_ros, status_to_ros
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import Choice, LearnerStatus, Phase, PreferenceLabel
from pref_rl_msgs.msg import LearnerStatus as LearnerStatusMsg
from pref_rl_msgs.msg import PreferenceLabel as LabelMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_robot.ros.segment_recorder import SegmentRecorderConfig, qos_to_rosbags

ROOT = Path(__file__).resolve().parent.parent
RECORDER = ROOT / 'install' / 'pref_rl_robot' / 'lib' / 'pref_rl_robot' / 'segment_recorder'


def start_recorder(bag: Path, max_mb: float) -> subprocess.Popen:
    return subprocess.Popen(
        [str(RECORDER), '--ros-args', '-p', f'bag_dir:={bag}', '-p',
         f'max_bag_size_mb:={max_mb}', '-p', 'max_bag_duration_s:=60.0'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Publisher:
    """The test's side of the session: publishes segments, labels and a latched status."""

    def __init__(self) -> None:
        rclpy.init()
        self.node = rclpy.create_node('session_under_test')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.segments = self.node.create_publisher(SegmentMsg, 'segments', STREAM)
        self.labels = self.node.create_publisher(LabelMsg, 'labels', STREAM)
        self.status = self.node.create_publisher(LearnerStatusMsg, 'learner_status', LATCHED)
        self.sent_segments, self.sent_labels = [], []

    def wait_for_recorder(self, recorder: subprocess.Popen) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and recorder.poll() is None:
            if all(p.get_subscription_count() for p in (self.segments, self.labels,
                                                        self.status)):
                return
            self.executor.spin_once(timeout_sec=0.05)
        recorder.kill()
        pytest.fail(f'recorder not discovered: {recorder_output(recorder)}')

    def publish(self, i: int) -> None:
        segment = make_segment(seed=i, segment_id=f'seg-{i}', stamp_ns=1_700_000_000 + i)
        label = PreferenceLabel(f'q{i}', Choice(1 + i % 5), 'alice', 0.25 * i, 5 + i)
        self.segments.publish(segment_to_ros(segment))
        self.labels.publish(label_to_ros(label))
        self.sent_segments.append(segment)
        self.sent_labels.append(label)

    def acked(self) -> bool:
        return all(p.wait_for_all_acked(Duration(seconds=20))
                   for p in (self.segments, self.labels, self.status))

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown()


@pytest.fixture
def publisher():
    pub = Publisher()
    yield pub
    pub.close()


def recorder_output(proc: subprocess.Popen) -> str:
    """Its output once it has exited (killed after 30 s if it does not)."""
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] + '\n[test] killed: still running 30 s after the signal'


def assert_same_segment(got, want):
    assert got.segment_id == want.segment_id and got.stamp_ns == want.stamp_ns
    for name in ('observations', 'actions', 'next_observations', 'rewards', 'terminated',
                 'truncated', 'success'):
        assert (getattr(got, name) == getattr(want, name)).all(), name


def assert_prefix(bag_or_file, pub, segments_from=0, labels_from=0):
    """The messages are the next ones sent on each topic, in order and equal to what was sent;
    returns how many of each it held."""
    segments, labels = [], []
    for m in read_bag(bag_or_file):
        (segments if m.topic == '/segments' else labels if m.topic == '/labels' else []).append(
            m.value)
    for got, want in zip(segments, pub.sent_segments[segments_from:], strict=False):
        assert_same_segment(got, want)
    assert labels == pub.sent_labels[labels_from:labels_from + len(labels)]
    assert len(segments) <= len(pub.sent_segments) - segments_from
    return len(segments), len(labels)


@pytest.mark.slow
def test_sigint_records_every_message(tmp_path, publisher):
    bag = tmp_path / 'bag'
    recorder = start_recorder(bag, max_mb=0.05)
    try:
        publisher.wait_for_recorder(recorder)
        publisher.status.publish(status_to_ros(LearnerStatus(Phase.SEED, env_steps=3)))
        for i in range(30):
            publisher.publish(i)
        assert publisher.acked()
    finally:
        recorder.send_signal(signal.SIGINT)
        output = recorder_output(recorder)
    assert recorder.returncode == 0, output
    assert 'recorded 61 message(s)' in output and '0 dropped' in output, output
    report = check_bag(bag)
    assert report.ok, report.format()
    assert read_metadata(bag).state == 'complete' and len(read_metadata(bag).files) >= 2
    assert assert_prefix(bag, publisher) == (30, 30)
    (status,) = [m.value for m in read_bag(bag) if m.topic == '/learner_status']
    assert status.phase == Phase.SEED and status.env_steps == 3


@pytest.mark.slow
def test_sigkill_keeps_every_closed_file_complete(tmp_path, publisher):
    bag = tmp_path / 'bag'
    recorder = start_recorder(bag, max_mb=0.05)  # ~6 segments + labels per file
    try:
        publisher.wait_for_recorder(recorder)
        i, deadline = 0, time.monotonic() + 60
        while time.monotonic() < deadline:
            publisher.publish(i)
            i += 1
            publisher.executor.spin_once(timeout_sec=0.02)
            if (bag / 'metadata.yaml').exists() and len(read_metadata(bag).files) >= 2:
                break
        for j in range(i, i + 2):  # and a few into the open file
            publisher.publish(j)
        assert publisher.acked()
        time.sleep(0.3)  # let the recorder take them into its open file before the kill
    finally:
        recorder.send_signal(signal.SIGKILL)
        output = recorder_output(recorder)
    assert recorder.returncode == -signal.SIGKILL, output

    # Every closed file is complete: all its messages, equal to what was sent, in order.
    metadata = read_metadata(bag)
    assert len(metadata.files) >= 2 and metadata.state == 'in_progress'
    segments_seen = labels_seen = 0
    for info in metadata.files:
        with BagReader(bag / info.path) as reader:
            assert sum(n for _, n in reader.topics.values()) == info.message_count
        n_segments, n_labels = assert_prefix(bag / info.path, publisher, segments_seen,
                                             labels_seen)
        assert n_segments + n_labels == info.message_count
        segments_seen += n_segments
        labels_seen += n_labels
    # The open file's are not listed. (Counted over both topics: if the recorder closed a
    # file late, the last segments can all be in closed files and only labels in the open one.)
    assert (segments_seen + labels_seen
            < len(publisher.sent_segments) + len(publisher.sent_labels))

    check = subprocess.run(['pref-rl', 'bag', 'check', str(bag)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 1 and 'OPEN' in check.stdout, check.stdout + check.stderr
    recover = subprocess.run(['pref-rl', 'bag', 'check', '--recover', str(bag)],
                             capture_output=True, text=True, timeout=60)
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert 'LOST from .recording/' in recover.stdout, recover.stdout
    assert 'verdict after recovery: OK' in recover.stdout
    assert check_bag(bag).ok
    assert assert_prefix(bag, publisher)[0] >= segments_seen


def test_config_file_and_validation():
    params = yaml.safe_load((ROOT / 'config' / 'recorder.yaml').read_text())
    config = from_mapping(SegmentRecorderConfig,
                          params['segment_recorder']['ros__parameters'])
    assert config.topic_names == ['segments', 'queries', 'labels', 'learner_status',
                                  'robot_status']
    with pytest.raises(ConfigError, match="unknown \\['weights'\\]"):
        SegmentRecorderConfig(topics='segments,weights')
    with pytest.raises(ConfigError, match='must be > 0'):
        SegmentRecorderConfig(max_bag_size_mb=0.0)
    stream, latched = qos_to_rosbags(STREAM), qos_to_rosbags(LATCHED)
    assert (stream.history.name, stream.depth, stream.reliability.name,
            stream.durability.name) == ('KEEP_LAST', 256, 'RELIABLE', 'VOLATILE')
    assert (latched.depth, latched.durability.name) == (1, 'TRANSIENT_LOCAL')


def test_existing_bag_dir_is_refused(tmp_path):
    (tmp_path / 'bag').mkdir()
    recorder = start_recorder(tmp_path / 'bag', max_mb=1.0)
    output = recorder_output(recorder)
    assert recorder.returncode == 2, output
    assert 'exists already: a bag is never overwritten' in output
