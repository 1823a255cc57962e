"""``fake_robot`` node: steps :class:`FakeRobot` with random actions and publishes ``segments``.

A stand-in source of real ``Segment`` traffic for diagnostics and tests of the transport,
the launcher and the recorder; the ``robot`` node (with real backends and a policy) replaces
it in learning sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.node import Node

from pref_rl_learner.config import ConfigError
from pref_rl_learner.ros.conversions import segment_to_ros
from pref_rl_learner.ros.node_main import NodeExit, run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import STREAM
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_robot.fake_robot import FakeRobot, FakeRobotConfig
from pref_rl_robot.segmenter import Segmenter


@dataclass(frozen=True)
class FakeRobotNodeConfig:
    """Parameters of the ``fake_robot`` node."""

    segment_length: int = 25
    """Transitions per published segment."""
    rate_hz: float = 200.0
    """Env steps per second."""
    max_segments: int = 0
    """Exit after publishing this many segments (0: run until stopped)."""
    frame_stride: int = 0
    """Attach a rendered frame every this many steps (0: no frames)."""
    seed: int = 0
    """Seed of the first episode."""
    task: str = 'fake_point'
    """Task name written into each segment."""

    def __post_init__(self) -> None:
        if self.segment_length < 1 or self.rate_hz <= 0:
            raise ConfigError(f'segment_length ({self.segment_length}) must be >= 1 and '
                              f'rate_hz ({self.rate_hz}) > 0')
        if self.max_segments < 0 or self.frame_stride < 0:
            raise ConfigError('max_segments and frame_stride must be >= 0')


class FakeRobotNode(Node):
    """Random-action fake robot publishing ``Segment`` messages on ``segments``."""

    def __init__(self) -> None:
        super().__init__('fake_robot')
        self.config = declare_config(self, FakeRobotNodeConfig)
        c = self.config
        self.env = FakeRobot(FakeRobotConfig())
        self.obs, _ = self.env.reset(seed=c.seed)
        self.segmenter = Segmenter(c.task, self.get_fully_qualified_name(), c.segment_length,
                                   frame_stride=c.frame_stride)
        self.publisher = self.create_publisher(SegmentMsg, 'segments', STREAM)
        self.published = 0
        self.timer = self.create_timer(1.0 / c.rate_hz, self.step)
        self.get_logger().info(f'publishing {c.task} segments of {c.segment_length} steps')

    def step(self) -> None:
        """One env step; publishes a segment when one closes."""
        action = self.env.sample_action()
        frame = self.env.render() if self.config.frame_stride else None
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        segment = self.segmenter.add(self.obs, action, next_obs, reward, terminated, truncated,
                                     info['success'], frame=frame)
        self.obs = next_obs
        if terminated or truncated:
            self.obs, _ = self.env.reset()
        if segment is not None:
            self.publisher.publish(segment_to_ros(segment))
            self.published += 1
            if self.published == self.config.max_segments:
                self.publisher.wait_for_all_acked(Duration(seconds=5))
                raise NodeExit(0, f'published {self.published} segments')


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``fake_robot`` executable."""
    return run_node(FakeRobotNode, args)
