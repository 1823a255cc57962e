"""QoS profiles of the pref-rl topics (DESIGN.md, Interfaces).

- ``STREAM``: segments, queries and labels: reliable, deep queue, nothing dropped while the
  reader keeps up.
- ``LATCHED``: policy weights, learner status, the current query set: transient local,
  depth 1, so a late joiner gets the latest value at once.
- ``SENSOR``: camera frames and other streams where loss is harmless: best effort, shallow.
- ``SERVICE``: services called in bursts (``get_segment_frames``: the two segments of every
  query of a feedback session), for the server and its clients alike. ROS's default service
  profile keeps the last 10 requests (and responses), so of a burst of concurrent calls
  against a busy server all but the last 10 are overwritten, never answered and never
  reported. This one keeps as many as the stream. Clients still keep their calls in flight
  below 10 (the learner: ``frames_max_in_flight``), so that a server on the default profile
  answers them all too.
"""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

STREAM = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=256,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)

LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                    reliability=ReliabilityPolicy.BEST_EFFORT,
                    durability=DurabilityPolicy.VOLATILE)

SERVICE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=256,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
