"""The ``robot`` node, in-process with an executor and as its own process over DDS."""

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from pref_rl_learner.errors import MalformedMessageError
from pref_rl_learner.ros.conversions import segment_from_ros, weights_to_ros
from pref_rl_learner.ros.qos import LATCHED, SERVICE, STREAM
from pref_rl_learner.sac import SAC, SACConfig
from pref_rl_learner.types import PolicyWeights
from pref_rl_msgs.msg import LearnerStatus, RobotStatus
from pref_rl_msgs.msg import PolicyWeights as PolicyWeightsMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import GetSegmentFrames, ResetEpisode, SetEstop
from pref_rl_robot.actor import ActorStatus, Mode, SegmentFrames
from pref_rl_robot.ros.conversions import (
    frames_from_response,
    frames_to_response,
    robot_status_from_ros,
    robot_status_to_ros,
)
from pref_rl_robot.ros.robot import RobotNode

ROOT = Path(__file__).resolve().parent.parent
ROBOT = ROOT / 'install' / 'pref_rl_robot' / 'lib' / 'pref_rl_robot' / 'robot'


def sac_weights(version=1, obs_dim=4, seed=0):
    agent = SAC(obs_dim, 2, SACConfig(hidden_sizes=(32, 32), device='cpu'), seed=seed)
    architecture, tensors = agent.actor_state()
    return PolicyWeights(version=version, tensors=tensors, architecture=architecture)


def assert_contiguous(segments):
    for prev, seg in zip(segments, segments[1:], strict=False):
        if seg.episode == prev.episode:
            assert seg.start_step == prev.start_step + prev.length
            np.testing.assert_array_equal(seg.observations[0], prev.next_observations[-1])
        else:
            assert (seg.episode, seg.start_step) == (prev.episode + 1, 0)
            assert prev.truncated[-1]


def acts_like(weights, segments):
    """True when every action of ``segments`` is the deterministic action of ``weights``."""
    policy = SAC.actor_from_state(weights.architecture, dict(weights.tensors))
    return all(np.allclose(s.actions, policy.act(s.observations, True), atol=1e-6)
               for s in segments)


def test_robot_status_and_frames_round_trip():
    status = ActorStatus(source_id='/robot', task='reacher', mode=Mode.WAITING, episode=3,
                         env_steps=120, segments=12, policy_version=2, weights_rejected=1,
                         safety_interventions=4, watchdog_holds=1,
                         stamp_ns=1_700_000_000_123_456_789)
    assert robot_status_from_ros(robot_status_to_ros(status)) == status
    bad_mode = robot_status_to_ros(status)
    bad_mode.mode = 9
    with pytest.raises(MalformedMessageError, match='mode 9'):
        robot_status_from_ros(bad_mode)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    response = frames_to_response(SegmentFrames(pixels, 4), GetSegmentFrames.Response())
    back = frames_from_response(response)
    np.testing.assert_array_equal(back.frames, pixels)
    assert back.frame_stride == 4
    response.frames = response.frames[:-1]
    with pytest.raises(MalformedMessageError, match='pixels'):
        frames_from_response(response)


class Probe:
    """The robot's peers in one test node: learner-side topics and the service clients."""

    def __init__(self, node, executor):
        self.node, self.executor = node, executor
        self.segments, self.statuses = [], []
        node.create_subscription(SegmentMsg, 'segments',
                                 lambda m: self.segments.append(segment_from_ros(m)), STREAM)
        node.create_subscription(RobotStatus, 'robot_status',
                                 lambda m: self.statuses.append(robot_status_from_ros(m)),
                                 LATCHED)
        self.weights_pub = node.create_publisher(PolicyWeightsMsg, 'policy_weights', LATCHED)
        self.learner_pub = node.create_publisher(LearnerStatus, 'learner_status', LATCHED)
        self.clients = {name: node.create_client(kind, f'robot/{name}') for name, kind in (
            ('reset_episode', ResetEpisode), ('set_estop', SetEstop),
            ('get_segment_frames', GetSegmentFrames))}

    def spin_until(self, predicate, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def spin_for(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    @property
    def status(self):
        return self.statuses[-1] if self.statuses else None

    @property
    def mode(self):
        return self.statuses[-1].mode if self.statuses else None

    def call(self, name, **fields):
        client = self.clients[name]
        assert client.wait_for_service(timeout_sec=20), f'{name} not available'
        future = client.call_async(client.srv_type.Request(**fields))
        assert self.spin_until(future.done), f'no response from {name}'
        return future.result()

    def consumed(self, env_steps):
        """Act as the learner: report consumption of ``env_steps`` transitions."""
        self.learner_pub.publish(LearnerStatus(env_steps=env_steps))


@pytest.fixture
def ros():
    rclpy.init()
    executor = SingleThreadedExecutor()
    nodes = []

    def add(node):
        executor.add_node(node)
        nodes.append(node)
        return node

    yield executor, add
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown()


def robot_node(**params):
    return RobotNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_flow_control_policy_updates_malformed_weights_and_frames(ros, capfd):
    executor, add = ros
    robot = add(robot_node(max_steps_ahead=30, deterministic=True, frame_stride=5,
                           frame_size=32, seed=0))
    probe = Probe(add(rclpy.create_node('probe')), executor)
    probe.spin_for(0.3)
    assert not probe.segments and probe.mode == Mode.WAITING  # no learner yet
    probe.consumed(0)

    # Three segments of 10 steps, then the robot waits for the learner.
    assert probe.spin_until(lambda: len(probe.segments) == 3 and probe.mode == Mode.WAITING)
    probe.spin_for(0.3)
    assert len(probe.segments) == 3 and robot.actor.env_steps == 30
    probe.consumed(30)
    assert probe.spin_until(lambda: len(probe.segments) == 6 and robot.actor.env_steps == 60)
    assert all(s.policy_version == 0 for s in probe.segments)

    # Real SAC weights: the robot acts with them from the next segment on.
    good = sac_weights(version=1)
    probe.weights_pub.publish(weights_to_ros(good))
    assert probe.spin_until(lambda: probe.status.policy_version == 1)
    probe.consumed(60)
    assert probe.spin_until(lambda: len(probe.segments) == 9)
    assert all(s.policy_version == 1 for s in probe.segments[6:])
    assert acts_like(good, probe.segments[6:])
    assert not acts_like(good, probe.segments[:6])

    # Malformed weights: each refused with a reason, counted, the old policy keeps acting.
    tensors = dict(sac_weights(version=2).tensors)
    tensors['layers.1.weight'] = tensors['layers.1.weight'].T.copy()[:, :-1]
    wrong_shape = weights_to_ros(PolicyWeights(2, tensors, good.architecture))
    with_nan = weights_to_ros(sac_weights(version=2))
    with_nan.data[5] = float('nan')
    wrong_dims = weights_to_ros(sac_weights(version=2, obs_dim=6))
    bad_layout = weights_to_ros(sac_weights(version=2))
    bad_layout.dims = bad_layout.dims[:-1]
    stale = weights_to_ros(sac_weights(version=1, seed=3))
    bad = [wrong_shape, with_nan, wrong_dims, bad_layout, stale]
    for count, msg in enumerate(bad, start=1):
        probe.weights_pub.publish(msg)
        assert probe.spin_until(lambda c=count: probe.status.weights_rejected == c)
    probe.consumed(90)
    assert probe.spin_until(lambda: len(probe.segments) == 12)
    assert all(s.policy_version == 1 for s in probe.segments[9:])
    assert acts_like(good, probe.segments[9:])
    assert probe.status.policy_version == 1
    assert_contiguous(probe.segments)
    log = capfd.readouterr().err
    reasons = re.findall(r'policy weights rejected, policy version 1 keeps acting: (.*)', log)
    assert len(reasons) == len(bad), log
    for reason, expected in zip(reasons, ["'layers.1.weight': shape", 'non-finite',
                                          'this env has (4, 2)', 'dims',
                                          'not newer than the acting version 1'], strict=True):
        assert expected in reason

    # Frames of a published segment, from the robot's cache; unknown ids are refused.
    response = probe.call('get_segment_frames', segment_id=probe.segments[-1].segment_id)
    frames = frames_from_response(response)
    assert frames.frames.shape == (2, 32, 32, 3) and frames.frame_stride == 5
    assert all(s.frames is None for s in probe.segments)
    missing = probe.call('get_segment_frames', segment_id='no-such-segment')
    assert not missing.success and 'no-such-segment' in missing.message


def test_frames_of_80_segments_asked_for_at_once_are_all_answered(ros):
    """A feedback session's burst: 40 queries, 80 segments, every request sent before the
    robot serves one. The default service queue kept the last 10 and never answered the
    other 70; the frames service's queue fits the burst."""
    executor, add = ros
    add(robot_node(max_steps_ahead=1000, frame_stride=5, frame_size=8, seed=0))
    probe = Probe(add(rclpy.create_node('probe')), executor)
    client = probe.node.create_client(GetSegmentFrames, 'robot/get_segment_frames',
                                      qos_profile=SERVICE)  # the learner's client profile
    assert client.wait_for_service(timeout_sec=20)
    probe.consumed(0)
    assert probe.spin_until(lambda: len(probe.segments) >= 80)
    ids = [s.segment_id for s in probe.segments[:80]]
    futures = [client.call_async(GetSegmentFrames.Request(segment_id=sid)) for sid in ids]
    probe.spin_until(lambda: all(f.done() for f in futures), timeout=30)
    answered = [f.result() for f in futures if f.done()]
    assert len(answered) == 80, f'{len(answered)} of 80 requests answered'
    for response in answered:
        frames = frames_from_response(response)
        assert frames.frames.shape == (2, 8, 8, 3) and frames.frame_stride == 5


def test_estop_and_reset_services(ros):
    executor, add = ros
    robot = add(robot_node(rate_hz=500.0, seed=1))  # control-rate stepping, one step a tick
    probe = Probe(add(rclpy.create_node('probe')), executor)
    assert probe.spin_until(lambda: len(probe.segments) >= 2)

    engaged = probe.call('set_estop', engage=True)
    assert engaged.success and robot.actor.mode is Mode.ESTOP
    probe.spin_for(0.1)  # what was published before the e-stop arrives
    count, steps = len(probe.segments), robot.actor.env_steps
    probe.spin_for(0.3)
    assert (len(probe.segments), robot.actor.env_steps) == (count, steps)
    assert probe.status.mode == Mode.ESTOP
    refused = probe.call('reset_episode', seed=-1)
    assert not refused.success and 'e-stop' in refused.message

    released = probe.call('set_estop', engage=False)
    assert released.success
    assert probe.spin_until(lambda: len(probe.segments) >= count + 2)
    assert probe.status.mode == Mode.STEPPING
    assert_contiguous(probe.segments)  # the episode went on where it stopped

    reset = probe.call('reset_episode', seed=3)
    assert reset.success and reset.episode == robot.actor.episode
    assert probe.spin_until(lambda: probe.segments[-1].episode == reset.episode)
    first = next(s for s in probe.segments if s.episode == reset.episode)
    assert first.start_step == 0


def test_robot_process_publishes_to_another_process(tmp_path):
    """The installed executable: flow control and policy updates across processes."""
    proc = subprocess.Popen(
        [str(ROBOT), '--ros-args', '-p', 'max_steps_ahead:=50', '-p', 'max_segments:=15',
         '-p', 'frame_stride:=5', '-p', 'attach_frames:=true', '-p', 'deterministic:=true'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    executor = SingleThreadedExecutor()
    node = rclpy.create_node('learner_side')
    executor.add_node(node)
    try:
        probe = Probe(node, executor)
        good = sac_weights(version=1)
        probe.weights_pub.publish(weights_to_ros(good))
        probe.consumed(0)
        # 50 steps ahead of a learner that consumed nothing: five segments, then it waits.
        assert probe.spin_until(lambda: len(probe.segments) == 5 and probe.mode == Mode.WAITING
                                and probe.status.policy_version == 1, timeout=30)
        while proc.poll() is None and len(probe.segments) < 15:
            probe.consumed(sum(s.length for s in probe.segments))
            probe.spin_for(0.05)
        assert probe.spin_until(lambda: len(probe.segments) == 15)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        if proc.poll() is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    output = proc.communicate()[0]
    assert proc.returncode == 0, output
    assert 'published 15 segments' in output
    segments = probe.segments
    assert_contiguous(segments)
    assert [s.policy_version for s in segments[5:]] == [1] * 10 and acts_like(good, segments[5:])
    assert all(s.frames.shape == (2, 64, 64, 3) and s.source_id == '/robot' for s in segments)
