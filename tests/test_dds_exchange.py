"""Two nodes in separate processes exchange Segment messages and SubmitLabel calls over DDS."""

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor

from pref_rl_learner.ros.conversions import label_to_ros, segment_to_ros
from pref_rl_learner.ros.qos import STREAM
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import Choice, PreferenceLabel
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import SubmitLabel

SINK = Path(__file__).parent / 'nodes' / 'label_sink.py'


@pytest.fixture
def sink(tmp_path):
    proc = subprocess.Popen([sys.executable, str(SINK), str(tmp_path), 'q1,q2'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline().strip().endswith('label_sink ready')
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def call(node, executor, client, label_msg):
    request = SubmitLabel.Request(label=label_msg)
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=10)
    assert future.done(), 'no response from submit_label'
    return future.result()


def test_segments_and_labels_cross_processes(sink, tmp_path):
    rclpy.init()
    node = rclpy.create_node('robot_side')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        publisher = node.create_publisher(SegmentMsg, 'segments', STREAM)
        client = node.create_client(SubmitLabel, 'submit_label')
        assert client.wait_for_service(timeout_sec=20), 'service not discovered'
        deadline = time.monotonic() + 20
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert publisher.get_subscription_count() == 1

        segments = [make_segment(seed=i, with_frames=i % 4 == 0) for i in range(20)]
        for segment in segments:
            publisher.publish(segment_to_ros(segment))
        # Reliable delivery is only certain once acknowledged: a destroyed publisher drops
        # whatever is still in flight.
        assert publisher.wait_for_all_acked(Duration(seconds=20))

        stored = call(node, executor, client,
                      label_to_ros(PreferenceLabel('q1', Choice.LEFT, 'alice', 1.2)))
        assert (stored.success, stored.message) == (True, 'stored')
        again = call(node, executor, client,
                     label_to_ros(PreferenceLabel('q1', Choice.LEFT, 'alice', 1.2)))
        assert (again.success, again.message) == (True, 'already stored')
        unknown = call(node, executor, client,
                       label_to_ros(PreferenceLabel('q9', Choice.RIGHT, 'alice')))
        assert not unknown.success and "unknown query id 'q9'" in unknown.message
        bad_choice = label_to_ros(PreferenceLabel('q2', Choice.RIGHT))
        bad_choice.choice = 0
        rejected = call(node, executor, client, bad_choice)
        assert not rejected.success and 'choice 0' in rejected.message
    finally:
        node.destroy_node()
        rclpy.shutdown()

    # Stop the sink the way the launcher does: SIGINT, then SIGTERM if it is still running.
    # communicate() drains its output meanwhile, so a chatty sink cannot block on a full pipe.
    output = ''
    for sig in (signal.SIGINT, signal.SIGTERM):
        sink.send_signal(sig)
        try:
            output += sink.communicate(timeout=30)[0]
            break
        except subprocess.TimeoutExpired:
            output += f'[test] still running 30 s after {sig.name}\n'
    assert sink.returncode == 0, output
    received = json.loads((tmp_path / 'segments.json').read_text())
    assert [r['id'] for r in received] == [s.segment_id for s in segments]
    for record, segment in zip(received, segments, strict=True):
        assert record['obs_sha256'] == hashlib.sha256(segment.observations.tobytes()).hexdigest()
        assert record['frames'] == (None if segment.frames is None else [25, 64, 64, 3])
    lines = (tmp_path / 'labels.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {'query_id': 'q1', 'choice': 1, 'labeler_id': 'alice'}]
