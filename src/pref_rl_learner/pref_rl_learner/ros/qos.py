"""QoS profiles of the pref-rl topics (DESIGN.md, Interfaces).

- ``STREAM``: segments, queries and labels: reliable, deep queue, nothing dropped while the
  reader keeps up.
- ``LATCHED``: policy weights, learner status, the current query set: transient local,
  depth 1, so a late joiner gets the latest value at once.
- ``SENSOR``: camera frames and other streams where loss is harmless: best effort, shallow.
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
