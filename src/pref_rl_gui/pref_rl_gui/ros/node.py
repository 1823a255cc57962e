"""The ``labeler`` node's ROS side: subscriptions, the SubmitLabel and frames clients.

It runs in the bridge's worker thread (:mod:`pref_rl_gui.ros.bridge`) and holds no labelling
state: every message is converted to a domain object and handed to :class:`NodeEvents`
(the bridge, which re-emits it as a Qt signal), and outgoing work (:meth:`LabelerNode.submit`,
:meth:`LabelerNode.request_frames`, called from the Qt thread) goes through a thread-safe
queue and a guard condition that wakes the executor.

Interface (names relative, remappable):

- subscribes ``queries`` (PreferenceQuery, STREAM): a malformed query (lengths that disagree
  with the shapes, NaN, an empty id, ...) is logged and reported, never shown;
- subscribes ``learner_status`` (LearnerStatus, LATCHED) and ``segments`` (Segment, STREAM,
  for the last full episode);
- calls ``submit_label`` (SubmitLabel; ``submit_service``), one label at a time, abandoning a
  call after ``call_timeout_s``; polls the service's availability every 0.2 s;
- calls ``robot/get_segment_frames`` (GetSegmentFrames; ``frames_service``, ``SERVICE`` QoS)
  for segments on display that came without frames; a refusal, a timeout or no service is
  reported (``frames_failed``) and the window notes it on the query.
"""

from __future__ import annotations

import queue
import time
from typing import Protocol

import numpy as np
from rclpy.node import Node
from rclpy.task import Future

from pref_rl_gui.config import LabelerConfig
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.conversions import (
    label_to_ros,
    query_from_ros,
    segment_from_ros,
    status_from_ros,
)
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import LATCHED, SERVICE, STREAM
from pref_rl_learner.types import LearnerStatus, PreferenceLabel, PreferenceQuery, Segment
from pref_rl_msgs.msg import LearnerStatus as LearnerStatusMsg
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import GetSegmentFrames, SubmitLabel

POLL_PERIOD_S = 0.2
"""How often service availability and call timeouts are checked."""


class NodeEvents(Protocol):
    """What the node reports (called in the ROS thread; the bridge re-emits as signals)."""

    def query(self, query: PreferenceQuery) -> None: ...
    def query_rejected(self, query_id: str, reason: str) -> None: ...
    def status(self, status: LearnerStatus) -> None: ...
    def segment(self, segment: Segment) -> None: ...
    def learner_available(self, available: bool) -> None: ...
    def submit_result(self, query_id: str, success: bool, message: str) -> None: ...
    def submit_failed(self, query_id: str, reason: str) -> None: ...
    def frames(self, segment_id: str, frames: np.ndarray, frame_stride: int) -> None: ...
    def frames_failed(self, segment_id: str, reason: str) -> None: ...


class LabelerNode(Node):
    """The ``labeler`` node; ``kwargs`` go to :class:`rclpy.node.Node` (parameter overrides)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__('labeler', **kwargs)
        self.config = c = declare_config(self, LabelerConfig)
        self.events: NodeEvents | None = None
        self._outgoing: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._call: tuple[str, Future, float] | None = None
        self._frames_calls: dict[str, tuple[Future, float]] = {}
        self._available: bool | None = None
        self.queries_rejected = 0
        self.submit_client = self.create_client(SubmitLabel, c.submit_service)
        self.frames_client = (self.create_client(GetSegmentFrames, c.frames_service,
                                                 qos_profile=SERVICE)
                              if c.frames_service else None)
        self.create_subscription(PreferenceQueryMsg, 'queries', self.on_query, STREAM)
        self.create_subscription(LearnerStatusMsg, 'learner_status', self.on_status, LATCHED)
        self.create_subscription(SegmentMsg, 'segments', self.on_segment, STREAM)
        self._wake = self.create_guard_condition(self._drain)
        self.create_timer(POLL_PERIOD_S, self._poll)
        self.get_logger().info(f'labelling as {c.resolved_labeler_id}; outbox '
                               f'{c.resolved_outbox_dir}; answers go to {c.submit_service}')

    # ------------------------------------------------------------- from the Qt thread

    def submit(self, label: PreferenceLabel) -> None:
        """Send ``label`` (thread-safe; the outcome comes back through the events)."""
        self._outgoing.put(('submit', label))
        self._wake.trigger()

    def request_frames(self, segment_ids: list[str]) -> None:
        """Ask the robot for the frames of ``segment_ids`` (thread-safe)."""
        self._outgoing.put(('frames', list(segment_ids)))
        self._wake.trigger()

    # ------------------------------------------------------------------ subscriptions

    def on_query(self, msg: PreferenceQueryMsg) -> None:
        """Convert a query; a malformed one is logged and reported, never shown."""
        try:
            query = query_from_ros(msg)
        except PrefRLError as err:
            self.queries_rejected += 1
            reason = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'query {msg.query_id!r} rejected: {reason}')
            if self.events is not None:
                self.events.query_rejected(msg.query_id, reason)
            return
        if self.events is not None:
            self.events.query(query)

    def on_status(self, msg: LearnerStatusMsg) -> None:
        """The learner's status, for budget, accuracy and the plot."""
        try:
            status = status_from_ros(msg)
        except PrefRLError as err:
            self.get_logger().warning(f'learner_status ignored: {err}')
            return
        if self.events is not None:
            self.events.status(status)

    def on_segment(self, msg: SegmentMsg) -> None:
        """A segment of the stream, for the last full episode."""
        try:
            segment = segment_from_ros(msg)
        except PrefRLError as err:
            self.get_logger().debug(f'segment {msg.segment_id!r} ignored: {err}')
            return
        if self.events is not None:
            self.events.segment(segment)

    # ---------------------------------------------------------------------- outgoing

    def _drain(self) -> None:
        while True:
            try:
                kind, item = self._outgoing.get_nowait()
            except queue.Empty:
                return
            if kind == 'submit':
                assert isinstance(item, PreferenceLabel)
                self._send(item)
            else:
                assert isinstance(item, list)
                for segment_id in item:
                    self._ask_frames(segment_id)

    def _send(self, label: PreferenceLabel) -> None:
        events = self.events
        assert events is not None
        if self._call is not None:  # the model sends one at a time; a second is a bug there
            events.submit_failed(label.query_id, 'a call is already in flight')
            return
        if not self.submit_client.service_is_ready():
            events.submit_failed(label.query_id, f'{self.config.submit_service} is not available')
            return
        future = self.submit_client.call_async(SubmitLabel.Request(label=label_to_ros(label)))
        self._call = (label.query_id, future, time.monotonic())
        future.add_done_callback(lambda f, q=label.query_id: self._on_submitted(q, f))

    def _on_submitted(self, query_id: str, future: Future) -> None:
        if self._call is None or self._call[1] is not future:
            return  # abandoned after a timeout
        self._call = None
        events = self.events
        assert events is not None
        try:
            response = future.result()
        except Exception as err:  # a failed call is retried, whatever it was
            events.submit_failed(query_id, f'{type(err).__name__}: {err}')
            return
        if response is None:
            events.submit_failed(query_id, 'cancelled')
        else:
            events.submit_result(query_id, bool(response.success), str(response.message))

    def _ask_frames(self, segment_id: str) -> None:
        events = self.events
        assert events is not None
        client = self.frames_client
        if client is None or not client.service_is_ready():
            events.frames_failed(segment_id, 'no frames service')
            return
        future = client.call_async(GetSegmentFrames.Request(segment_id=segment_id))
        self._frames_calls[segment_id] = (future, time.monotonic())
        future.add_done_callback(lambda f, s=segment_id: self._on_frames(s, f))

    def _on_frames(self, segment_id: str, future: Future) -> None:
        if self._frames_calls.pop(segment_id, (None,))[0] is not future:
            return
        events = self.events
        assert events is not None
        try:
            response = future.result()
            if response is None or not response.success:
                reason = 'cancelled' if response is None else response.message
                events.frames_failed(segment_id, reason or 'refused')
                return
            shape = tuple(int(d) for d in response.frame_shape)
            if len(shape) != 3 or response.frame_stride < 1:
                raise ValueError(f'frame_shape {list(shape)}, frame_stride '
                                 f'{response.frame_stride}')
            frames = np.frombuffer(response.frames, dtype=np.uint8).reshape(-1, *shape)
        except Exception as err:  # an odd response must not stop the node
            events.frames_failed(segment_id, f'unusable response: {err}')
            return
        events.frames(segment_id, frames, int(response.frame_stride))

    def _poll(self) -> None:
        events = self.events
        if events is None:
            return
        available = self.submit_client.service_is_ready()
        if available != self._available:
            self._available = available
            events.learner_available(available)
        now = time.monotonic()
        if self._call is not None and now - self._call[2] > self.config.call_timeout_s:
            query_id, future, _ = self._call
            self._call = None
            self.submit_client.remove_pending_request(future)
            events.submit_failed(query_id, f'no answer within {self.config.call_timeout_s:g} s')
        for segment_id, (future, started) in list(self._frames_calls.items()):
            if now - started > self.config.frames_timeout_s and self.frames_client is not None:
                del self._frames_calls[segment_id]
                self.frames_client.remove_pending_request(future)
                events.frames_failed(segment_id, 'timed out')
