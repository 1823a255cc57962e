"""``session_monitor`` node: watches a session's topics, prints progress, writes a summary.

Subscribes to ``segments``, ``queries``, ``labels`` and ``learner_status``; prints one
progress line every ``report_period_s``; on exit (after ``max_segments`` segments, or on
shutdown) prints a summary and, when ``summary_path`` is set, writes it as JSON.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field

from rclpy.node import Node

from pref_rl_learner.durable import atomic_write_bytes
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.conversions import segment_from_ros, status_from_ros
from pref_rl_learner.ros.node_main import NodeExit, run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_msgs.msg import LearnerStatus, PreferenceLabel, PreferenceQuery, Segment


@dataclass(frozen=True)
class SessionMonitorConfig:
    """Parameters of the ``session_monitor`` node."""

    report_period_s: float = 2.0
    """Seconds between progress lines."""
    max_segments: int = 0
    """Exit (status 0) once this many segments have arrived (0: run until stopped)."""
    summary_path: str = ''
    """Write the final summary as JSON here ('' : print only)."""


@dataclass
class SessionCounts:
    """What the monitor has seen so far."""

    segments: int = 0
    env_steps: int = 0
    malformed_segments: int = 0
    queries: int = 0
    labels: int = 0
    sources: list[str] = field(default_factory=list)
    last_status: dict | None = None


class SessionMonitor(Node):
    """Counts session traffic and reports it."""

    def __init__(self) -> None:
        super().__init__('session_monitor')
        self.config = declare_config(self, SessionMonitorConfig)
        self.counts = SessionCounts()
        self.started = time.monotonic()
        self.finished = False
        self.create_subscription(Segment, 'segments', self.on_segment, STREAM)
        self.create_subscription(PreferenceQuery, 'queries', self.on_query, STREAM)
        self.create_subscription(PreferenceLabel, 'labels', self.on_label, STREAM)
        self.create_subscription(LearnerStatus, 'learner_status', self.on_status, LATCHED)
        self.create_timer(self.config.report_period_s, self.report)

    def on_segment(self, msg: Segment) -> None:
        """Count a segment; a malformed one is counted and logged, never fatal."""
        try:
            segment = segment_from_ros(msg)
        except PrefRLError as err:
            self.counts.malformed_segments += 1
            self.get_logger().warning(f'malformed segment {msg.segment_id!r}: {err}')
            return
        self.counts.segments += 1
        self.counts.env_steps += segment.length
        if segment.source_id not in self.counts.sources:
            self.counts.sources.append(segment.source_id)
        if self.counts.segments == self.config.max_segments:
            self.finish()
            raise NodeExit(0, f'received {self.counts.segments} segments')

    def on_query(self, msg: PreferenceQuery) -> None:
        """Count a query."""
        self.counts.queries += 1

    def on_label(self, msg: PreferenceLabel) -> None:
        """Count a label."""
        self.counts.labels += 1

    def on_status(self, msg: LearnerStatus) -> None:
        """Keep the latest learner status."""
        try:
            status = status_from_ros(msg)
        except PrefRLError as err:
            self.get_logger().warning(f'malformed learner status: {err}')
            return
        self.counts.last_status = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                   for k, v in asdict(status).items()}

    def report(self) -> None:
        """Print one progress line."""
        c = self.counts
        elapsed = time.monotonic() - self.started
        target = f'/{self.config.max_segments}' if self.config.max_segments else ''
        self.get_logger().info(
            f'{elapsed:6.1f}s  segments {c.segments}{target}  steps {c.env_steps}  '
            f'queries {c.queries}  labels {c.labels}  malformed {c.malformed_segments}')

    def finish(self) -> dict:
        """Print the summary and write it to ``summary_path`` (atomically) when set."""
        self.finished = True
        summary = dict(asdict(self.counts), elapsed_s=round(time.monotonic() - self.started, 3))
        self.get_logger().info('summary: ' + json.dumps(summary))
        if self.config.summary_path:
            atomic_write_bytes(self.config.summary_path,
                               json.dumps(summary, indent=2).encode('utf-8'))
        return summary

    def destroy_node(self) -> None:
        """Write the summary on any shutdown path, then destroy the node."""
        if not self.finished:
            self.finish()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``session_monitor`` executable."""
    return run_node(SessionMonitor, args)
