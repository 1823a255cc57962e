"""``segment_recorder`` node: records a session's topics into a rosbag2 bag (MCAP, v9).

Subscribes to ``segments``, ``queries``, ``labels``, ``learner_status`` and ``robot_status``
(relative names: remap them in launch files) with the QoS their publishers use, takes every
message as its serialized CDR bytes (a raw subscription: nothing is deserialized) and hands
it to :class:`~pref_rl_learner.bag.BackgroundWriter`, whose thread writes the bag split into
closed files (:class:`~pref_rl_learner.bag.BagWriter`). On SIGINT/SIGTERM it takes what is
still waiting in its subscriptions, closes the open file, writes the final metadata and logs
a summary. After a crash, ``pref-rl bag check --recover`` repairs the bag.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from pref_rl_learner.bag import BackgroundWriter, BagWriter, MessageDefinitions, TopicSpec
from pref_rl_learner.config import ConfigError
from pref_rl_learner.ros.node_main import NodeExit, run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_msgs import msg

# Recordable topic (relative name) -> (message class, QoS its publishers offer).
RECORDABLE = {
    'segments': (msg.Segment, STREAM),
    'queries': (msg.PreferenceQuery, STREAM),
    'labels': (msg.PreferenceLabel, STREAM),
    'learner_status': (msg.LearnerStatus, LATCHED),
    'robot_status': (msg.RobotStatus, LATCHED),
}
_DRAIN_S = 0.2  # on shutdown: stop taking messages after this long without one


@dataclass(frozen=True)
class SegmentRecorderConfig:
    """Parameters of the ``segment_recorder`` node."""

    bag_dir: str = ''
    """Bag directory to create (must not exist; '' : runs/<time>-recording/bag)."""
    topics: str = ','.join(RECORDABLE)
    """Comma-separated topics to record, from: segments, queries, labels, learner_status,
    robot_status."""
    max_bag_size_mb: float = 16.0
    """Start a new bag file once the open one holds this many MiB."""
    max_bag_duration_s: float = 30.0
    """Start a new bag file once the open one is this many seconds old (bounds crash loss)."""
    max_queue_mb: float = 256.0
    """MiB of messages that may wait for the writer thread before new ones are dropped."""

    def __post_init__(self) -> None:
        unknown = set(self.topic_names) - set(RECORDABLE)
        if unknown or not self.topic_names:
            raise ConfigError(f'topics {self.topics!r}: unknown {sorted(unknown)}; choose '
                              f'from {", ".join(RECORDABLE)}')
        if min(self.max_bag_size_mb, self.max_bag_duration_s, self.max_queue_mb) <= 0:
            raise ConfigError('max_bag_size_mb, max_bag_duration_s and max_queue_mb must be > 0')

    @property
    def topic_names(self) -> list[str]:
        """The topics to record, in the order given."""
        return [t.strip() for t in self.topics.split(',') if t.strip()]


def qos_to_rosbags(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile as rosbags' ``Qos`` (what ``offered_qos_profiles`` stores)."""
    def time_of(duration: object) -> QosTime:
        ns = duration.nanoseconds  # type: ignore[attr-defined]
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    return Qos(QosHistory[profile.history.name], profile.depth,
               QosReliability[profile.reliability.name], QosDurability[profile.durability.name],
               time_of(profile.deadline), time_of(profile.lifespan),
               QosLiveliness[profile.liveliness.name], time_of(profile.liveliness_lease_duration),
               profile.avoid_ros_namespace_conventions)


def msg_type_name(cls: type) -> str:
    """``pref_rl_msgs.msg.Segment`` -> ``pref_rl_msgs/msg/Segment``."""
    package = cls.__module__.split('.')[0]
    return f'{package}/msg/{cls.__name__}'


class SegmentRecorder(Node):
    """Records the configured topics into a bag; holds no state but the writer."""

    def __init__(self) -> None:
        super().__init__('segment_recorder')
        c = self.config = declare_config(self, SegmentRecorderConfig)
        path = Path(c.bag_dir or Path('runs') / f'{time.strftime("%Y%m%d-%H%M%S")}-recording'
                    / 'bag').absolute()
        try:
            msg_dir = Path(get_package_share_directory('pref_rl_msgs')) / 'msg'
        except PackageNotFoundError:
            msg_dir = None  # MessageDefinitions then searches AMENT_PREFIX_PATH itself
        definitions = MessageDefinitions(msg_dir)
        specs = []
        for name in c.topic_names:
            cls, qos = RECORDABLE[name]
            sub = self.create_subscription(cls, name, self._callback(name), qos, raw=True)
            specs.append(TopicSpec(sub.topic_name, msg_type_name(cls), (qos_to_rosbags(qos),)))
        self.topic_of = {name: spec.name for name, spec in zip(c.topic_names, specs, strict=True)}
        self.writer = BackgroundWriter(
            BagWriter(path, specs, definitions=definitions,
                      max_file_bytes=int(c.max_bag_size_mb * 2**20),
                      max_file_duration_s=c.max_bag_duration_s),
            max_queue_bytes=int(c.max_queue_mb * 2**20))
        self.started = time.monotonic()
        self.reported_drops = 0
        self.watch_timer = self.create_timer(1.0, self.watch_writer)
        self.get_logger().info(
            f'recording {", ".join(s.name for s in specs)} into {path} (a new file every '
            f'{c.max_bag_size_mb:g} MiB or {c.max_bag_duration_s:g} s)')

    def _callback(self, name: str) -> Callable[[bytes], None]:
        def on_message(data: bytes) -> None:
            self.writer.put(self.topic_of[name], self.get_clock().now().nanoseconds, data)
        return on_message

    def watch_writer(self) -> None:
        """Stop on a writer failure (disk full, ...); warn when messages were dropped."""
        if self.writer.error is not None:
            raise NodeExit(1, f'recording failed: {self.writer.error}')
        if self.writer.dropped > self.reported_drops:
            self.get_logger().warning(
                f'{self.writer.dropped - self.reported_drops} message(s) dropped: the writer '
                f'cannot keep up (queue limit {self.config.max_queue_mb:g} MiB)')
            self.reported_drops = self.writer.dropped

    def drain(self) -> None:
        """Take the messages already delivered to the subscriptions but not yet handled."""
        executor = self.executor
        if executor is None:
            return
        self.watch_timer.cancel()  # only message callbacks are left to run
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            before = self.writer.received
            executor.spin_once(timeout_sec=_DRAIN_S)
            if self.writer.received == before:
                return

    def destroy_node(self) -> None:
        """Close the bag (final file and metadata) and log a summary."""
        if getattr(self, 'writer', None) is not None:
            self.drain()
            writer, self.writer = self.writer, None
            try:
                metadata = writer.close()
            except Exception as err:  # logged: every file closed before it is safe
                self.get_logger().error(f'closing the bag failed: {err}')
            else:
                counts = ', '.join(f'{t.name} {t.message_count}' for t in metadata.topics)
                self.get_logger().info(
                    f'recorded {metadata.message_count} message(s) ({counts}) in '
                    f'{len(metadata.files)} file(s) of {writer.writer.path} in '
                    f'{time.monotonic() - self.started:.1f} s; {writer.dropped} dropped')
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``segment_recorder`` executable."""
    return run_node(SegmentRecorder, args)
