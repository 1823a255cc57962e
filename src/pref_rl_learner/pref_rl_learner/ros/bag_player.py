"""``bag_player`` node: replays a session's recorded segments into a learner.

The replay session (``launch/replay_session.launch.xml``) puts this node where the robot
was: a learner learns from what a robot recorded, and a labeller (the GUI, or the scripted
teacher from the recorded true rewards) answers the learner's queries about it. No robot,
no simulator stepping.

Interface:

- publishes ``segments`` (``Segment``, STREAM): every segment of the bag (any topic of type
  Segment), in bag order, with its recorded ids, data and frames; optionally only one task's.
- subscribes ``learner_status`` (``LearnerStatus``, LATCHED): with ``max_steps_ahead`` > 0
  the player stays at most that many transitions ahead of the learner's ``env_steps``
  (counted from the learner's first status), so the stream's bounded history never
  overwrites unread segments. A status from a new publisher (a restarted learner) takes a
  new baseline.
- parameters: :class:`BagPlayerConfig`.

When the bag is exhausted the node waits until every segment is acknowledged by its readers
and exits with status 0; a bag that cannot be read (missing, corrupt, torn) is reported with
what was published so far and the node exits with status 1 (``pref-rl bag check --recover``
salvages a torn bag).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.subscription import MessageInfo

from pref_rl_learner.bag.reader import read_segments
from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.conversions import publisher_gid, segment_to_ros
from pref_rl_learner.ros.node_main import NodeExit, run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_learner.types import Segment
from pref_rl_msgs.msg import LearnerStatus
from pref_rl_msgs.msg import Segment as SegmentMsg


@dataclass(frozen=True)
class BagPlayerConfig:
    """Parameters of the ``bag_player`` node."""

    bag: str = ''
    """The bag directory (or ``.mcap`` file) to replay (required)."""
    task: str = ''
    """Replay only segments of this task ('' : all)."""
    rate_hz: float = 0.0
    """Segments per second (0: as fast as flow control and the readers allow)."""
    max_steps_ahead: int = 2000
    """Transitions published beyond the learner's ``env_steps`` (0: no flow control)."""
    min_subscribers: int = 1
    """Readers of ``segments`` to wait for before the first segment."""
    burst: int = 8
    """Most segments published per timer tick."""

    def __post_init__(self) -> None:
        if not self.bag:
            raise ConfigError('bag is required: the bag directory to replay')
        if self.rate_hz < 0 or self.max_steps_ahead < 0 or self.min_subscribers < 0:
            raise ConfigError('rate_hz, max_steps_ahead and min_subscribers must be >= 0')
        if self.burst < 1:
            raise ConfigError(f'burst must be >= 1, got {self.burst}')


class BagPlayerNode(Node):
    """Publishes a bag's segments under flow control, then exits."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__('bag_player', **kwargs)
        self.config = c = declare_config(self, BagPlayerConfig)
        self._segments: Iterator[Segment] = iter(read_segments(c.bag))
        self.published = self.published_steps = self.skipped = 0
        self._learner: tuple[bytes, int] | None = None  # (publisher gid, env_steps at baseline)
        self._learner_steps = 0
        self._baseline_published = 0
        self.segment_pub = self.create_publisher(SegmentMsg, 'segments', STREAM)
        self.create_subscription(LearnerStatus, 'learner_status', self.on_status, LATCHED)
        self.create_timer(1.0 / c.rate_hz if c.rate_hz else 0.005, self.tick)
        self.get_logger().info(f'replaying {c.bag}'
                               + (f' (task {c.task})' if c.task else '')
                               + (f', at most {c.max_steps_ahead} steps ahead of the learner'
                                  if c.max_steps_ahead else ''))

    def on_status(self, msg: LearnerStatus, info: MessageInfo) -> None:
        gid = publisher_gid(info)
        if self._learner is None or self._learner[0] != gid:
            self._learner = (gid, msg.env_steps)
            self._baseline_published = self.published_steps
        self._learner_steps = msg.env_steps

    def _may_publish(self) -> bool:
        c = self.config
        if self.segment_pub.get_subscription_count() < c.min_subscribers:
            return False
        if not c.max_steps_ahead:
            return True
        if self._learner is None:
            return False
        ahead = ((self.published_steps - self._baseline_published)
                 - (self._learner_steps - self._learner[1]))
        return ahead < c.max_steps_ahead

    def tick(self) -> None:
        """Publish the next segments while allowed; exit at the end of the bag."""
        burst = 1 if self.config.rate_hz else self.config.burst
        for _ in range(burst):
            if not self._may_publish():
                return
            try:
                segment = next(self._segments, None)
            except PrefRLError as err:
                raise NodeExit(1, f'cannot read {self.config.bag} after {self.published} '
                                  f'segments: {err}') from err
            if segment is None:
                self.segment_pub.wait_for_all_acked(Duration(seconds=10))
                raise NodeExit(0, f'replayed {self.published} segments '
                                  f'({self.published_steps} steps, {self.skipped} of other '
                                  'tasks skipped)')
            if self.config.task and segment.task != self.config.task:
                self.skipped += 1
                continue
            self.segment_pub.publish(segment_to_ros(segment))
            self.published += 1
            self.published_steps += segment.length


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``bag_player`` executable."""
    return run_node(BagPlayerNode, args)
