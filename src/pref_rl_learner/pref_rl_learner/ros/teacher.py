"""``teacher`` node: answers ``queries`` with a scripted B-Pref teacher (simulation only).

Interface (names relative, remappable):

- subscribes ``queries`` (``PreferenceQuery``, STREAM): each is labelled from its segments'
  true rewards; a query without true rewards, or a malformed one, is logged as an error and
  left unanswered.
- subscribes ``segments`` (``Segment``, STREAM): finished episodes' true returns set the
  teacher's skip/equal thresholds.
- calls ``submit_label`` (``SubmitLabel``): asynchronously, one label at a time in answer
  order, retried with backoff while the learner is missing, fails or times out, until
  acknowledged; a refusal is logged and the label dropped unless its message is transient.
- parameters: :class:`~pref_rl_learner.teacher_answering.TeacherNodeConfig`.

All logic lives in :mod:`pref_rl_learner.teacher_answering`; this node converts messages
and drives it from one timer, so nothing blocks the executor.
"""

from __future__ import annotations

import time
from collections import Counter

from rclpy.node import Node
from rclpy.task import Future

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.conversions import label_to_ros, query_from_ros, segment_from_ros
from pref_rl_learner.ros.node_main import run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import STREAM
from pref_rl_learner.teacher_answering import QueryAnswerer, SubmissionQueue, TeacherNodeConfig
from pref_rl_learner.types import Choice
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import SubmitLabel

_TICK_S = 0.02


class TeacherNode(Node):
    """Scripted labeller: ``queries`` in, ``submit_label`` calls out."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__('teacher', **kwargs)
        self.config = declare_config(self, TeacherNodeConfig)
        c = self.config
        self.answerer = QueryAnswerer(c)
        self.submissions = SubmissionQueue(c.retry_initial_s, c.retry_max_s)
        self.client = self.create_client(SubmitLabel, 'submit_label')
        self._call: Future | None = None
        self._call_started = 0.0
        self._waiting_logged = False
        self.acknowledged: Counter[str] = Counter({c.name.lower(): 0 for c in Choice})
        """Acknowledged answers by choice."""
        self.create_subscription(PreferenceQueryMsg, 'queries', self.on_query, STREAM)
        self.create_subscription(SegmentMsg, 'segments', self.on_segment, STREAM)
        self.create_timer(_TICK_S, self.tick)
        self.get_logger().info(f'answering queries as {c.resolved_labeler_id} '
                               f'(pace {c.pace_s:g} s)')

    def on_segment(self, msg: SegmentMsg) -> None:
        """Track true episode returns for the teacher's thresholds."""
        try:
            self.answerer.observe_segment(segment_from_ros(msg))
        except PrefRLError as err:
            self.get_logger().warning(f'segment {msg.segment_id!r} ignored: {err}')

    def on_query(self, msg: PreferenceQueryMsg) -> None:
        """Label a query now; the answer is released and submitted by :meth:`tick`."""
        try:
            choice = self.answerer.add(query_from_ros(msg), time.monotonic())
        except PrefRLError as err:
            self.get_logger().error(f'query {msg.query_id!r} not answered: '
                                    f'{type(err).__name__}: {err}')
            return
        if choice is None:
            self.get_logger().info(f'query {msg.query_id!r} received again; answered once')
        self.tick()

    def tick(self) -> None:
        """Release due answers, collect a finished call, send the next label."""
        now = time.monotonic()
        for label in self.answerer.release(now, time.time_ns()):
            self.submissions.push(label)
        if self._call is not None:
            self._collect(now)
        if self._call is None:
            self._send(now)

    def _collect(self, now: float) -> None:
        call, queue, log = self._call, self.submissions, self.get_logger()
        assert call is not None
        if not call.done():
            if now - self._call_started < self.config.call_timeout_s:
                return
            self.client.remove_pending_request(call)
            self._call = None
            delay = queue.failed(now)
            log.warning(f'submit_label timed out; retrying in {delay:.2g} s')
            return
        self._call = None
        try:
            response = call.result()
        except Exception as err:  # a failed call is retried, whatever it was
            delay = queue.failed(now)
            log.warning(f'submit_label failed ({err!r}); retrying in {delay:.2g} s')
            return
        if response is None:  # cancelled
            queue.failed(now)
        elif response.success:
            label = queue.acknowledged()
            self.acknowledged[label.choice.name.lower()] += 1
            log.debug(f'query {label.query_id!r} answered {label.choice.name} '
                      f'({response.message})')
            if not len(queue):  # one line per batch of answers, not per answer
                counts = ', '.join(f'{n} {name}' for name, n in self.acknowledged.items() if n)
                log.info(f'all answers acknowledged: {self.acknowledged.total()} in all '
                         f'({counts})')
        else:
            head = queue.head
            query_id = head.query_id if head is not None else ''
            delay = queue.refused(now, response.message)
            if delay is None:
                log.error(f'label for query {query_id!r} refused and dropped: '
                          f'{response.message}')
            else:
                log.warning(f'label for query {query_id!r} refused ({response.message}); '
                            f'retrying in {delay:.2g} s')

    def _send(self, now: float) -> None:
        queue = self.submissions
        if not len(queue):
            return
        if not self.client.service_is_ready():
            if queue.next_to_send(now) is None:
                return
            delay = queue.failed(now)
            if not self._waiting_logged:
                self._waiting_logged = True
                self.get_logger().warning(f'submit_label is not available; {len(queue)} '
                                          f'label(s) waiting, retrying every <= {delay:.2g} s '
                                          'with backoff')
            return
        label = queue.next_to_send(now)
        if label is None:
            return
        self._waiting_logged = False
        self._call = self.client.call_async(SubmitLabel.Request(label=label_to_ros(label)))
        self._call_started = now


def main(args: list[str] | None = None) -> int:
    """Console entry point ``teacher``."""
    return run_node(TeacherNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
