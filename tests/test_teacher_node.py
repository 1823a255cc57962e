"""The ``teacher`` node in-process, against a fake learner serving ``submit_label``."""

import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from pref_rl_learner.ros.conversions import label_from_ros, query_to_ros, segment_to_ros
from pref_rl_learner.ros.qos import STREAM
from pref_rl_learner.ros.teacher import TeacherNode
from pref_rl_learner.teacher_answering import (
    EpisodeReturns,
    QueryAnswerer,
    SubmissionQueue,
    TeacherNodeConfig,
)
from pref_rl_learner.types import Choice, PreferenceQuery, Segment
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import SubmitLabel

H = 10


def segment(segment_id, rewards, *, episode=0, start_step=0, end=False, with_rewards=True):
    rng = np.random.default_rng(abs(hash(segment_id)) % 2**32)
    obs = rng.normal(size=(H, 4)).astype(np.float32)
    done = np.zeros(H, bool)
    done[-1] = end
    return Segment(segment_id=segment_id, task='point_mass', observations=obs,
                   actions=rng.uniform(-1, 1, (H, 2)).astype(np.float32),
                   next_observations=obs + 0.1, terminated=np.zeros(H, bool), truncated=done,
                   rewards=np.full(H, rewards, np.float32) if with_rewards else None,
                   source_id='robot', episode=episode, start_step=start_step)


def query(query_id, left_reward, right_reward, with_rewards=True):
    return PreferenceQuery(query_id=query_id,
                           left=segment(f'{query_id}-l', left_reward, with_rewards=with_rewards),
                           right=segment(f'{query_id}-r', right_reward))


class FakeLearner:
    """Serves ``submit_label`` like the learner: stores once, refuses unknown ids.

    ``refusals`` maps a query id to messages answered (success=false) before it is stored.
    """

    def __init__(self, node):
        self.node = node
        self.calls, self.stored, self.refusals = [], {}, {}
        self.service = None
        self.online()

    def online(self):
        self.service = self.node.create_service(SubmitLabel, 'submit_label', self.on_submit)

    def offline(self):
        self.node.destroy_service(self.service)
        self.service = None

    def on_submit(self, request, response):
        label = label_from_ros(request.label)
        self.calls.append(label.query_id)
        pending = self.refusals.get(label.query_id)
        if pending:
            response.success, response.message = False, pending.pop(0)
        elif label.query_id in self.stored:
            response.success, response.message = True, 'already stored'
        else:
            self.stored[label.query_id] = label
            response.success, response.message = True, 'stored'
        return response


class Session:
    """Teacher and learner side on separate executors (so the learner can stall)."""

    def __init__(self, **params):
        params.setdefault('retry_initial_s', 0.05)
        params.setdefault('retry_max_s', 0.2)
        self.teacher = TeacherNode(parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])
        self.peer = rclpy.create_node('fake_learner')
        self.learner = FakeLearner(self.peer)
        self.queries = self.peer.create_publisher(PreferenceQueryMsg, 'queries', STREAM)
        self.segments = self.peer.create_publisher(SegmentMsg, 'segments', STREAM)
        self.teacher_exec, self.learner_exec = SingleThreadedExecutor(), SingleThreadedExecutor()
        self.teacher_exec.add_node(self.teacher)
        self.learner_exec.add_node(self.peer)
        self.learner_spinning = True
        assert self.spin_until(lambda: self.queries.get_subscription_count() > 0
                               and self.teacher.client.service_is_ready())

    def spin_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.teacher_exec.spin_once(timeout_sec=0.005)
            if self.learner_spinning:
                self.learner_exec.spin_once(timeout_sec=0.005)
        return predicate()

    def spin_for(self, seconds):
        self.spin_until(lambda: False, timeout=seconds)

    def close(self):
        for executor, node in ((self.teacher_exec, self.teacher), (self.learner_exec, self.peer)):
            executor.remove_node(node)
            node.destroy_node()


@pytest.fixture
def session():
    rclpy.init()
    sessions = []

    def start(**params):
        sessions.append(Session(**params))
        return sessions[-1]

    yield start
    for s in sessions:
        s.close()
    rclpy.shutdown()


def test_oracle_answers_with_the_higher_return_and_tracks_episode_returns(session):
    s = session()
    # One episode of 2 segments (returns -5 and -3): the teacher's scale becomes -8 per 20
    # steps, i.e. -4 per segment of 10 steps.
    s.segments.publish(segment_to_ros(segment('e0', -0.5)))
    s.segments.publish(segment_to_ros(segment('e1', -0.3, start_step=H, end=True)))
    assert s.spin_until(lambda: s.teacher.answerer.teacher.scale(H) is not None)
    assert s.teacher.answerer.teacher.scale(H) == pytest.approx(-4.0)

    s.queries.publish(query_to_ros(query('q-right', -0.9, -0.1)))
    s.queries.publish(query_to_ros(query('q-left', 0.4, 0.2)))
    s.queries.publish(query_to_ros(query('q-right', -0.9, -0.1)))  # a repeat: answered once
    assert s.spin_until(lambda: len(s.learner.stored) == 2)
    s.spin_for(0.2)
    stored = s.learner.stored
    assert stored['q-right'].choice == Choice.RIGHT
    assert stored['q-left'].choice == Choice.LEFT
    assert s.learner.calls == ['q-right', 'q-left']
    for label in stored.values():
        assert label.labeler_id == 'teacher/oracle'
        assert label.response_time_s >= 0 and label.stamp_ns > 0


def test_outage_then_recovery_delivers_each_label_once(session):
    s = session(labeler_id='sim-teacher')
    s.learner.offline()
    assert s.spin_until(lambda: not s.teacher.client.service_is_ready())
    s.queries.publish(query_to_ros(query('q0', 0.0, 1.0)))
    s.queries.publish(query_to_ros(query('q1', 1.0, 0.0)))
    assert s.spin_until(lambda: s.teacher.submissions.attempts >= 3)  # backing off
    assert s.learner.calls == [] and len(s.teacher.submissions) == 2

    s.learner.online()
    assert s.spin_until(lambda: len(s.learner.stored) == 2)
    s.spin_for(0.3)
    assert s.learner.calls == ['q0', 'q1']
    assert [s.learner.stored[q].choice for q in ('q0', 'q1')] == [Choice.RIGHT, Choice.LEFT]
    assert s.learner.stored['q0'].labeler_id == 'sim-teacher'
    assert len(s.teacher.submissions) == 0


def test_a_call_that_times_out_is_sent_again_and_stored_once(session, capfd):
    s = session(call_timeout_s=0.2)
    # The learner hangs (its executor stalls): the call times out and is sent again; when it
    # comes back both requests are served and the label is stored once.
    s.learner_spinning = False
    s.queries.publish(query_to_ros(query('slow', 0.0, 1.0)))
    assert s.spin_until(lambda: s.teacher.submissions.attempts >= 2)
    s.learner_spinning = True
    assert s.spin_until(lambda: len(s.teacher.submissions) == 0)
    assert list(s.learner.stored) == ['slow'] and s.learner.calls.count('slow') >= 2
    assert 'timed out' in capfd.readouterr().err


def test_a_transient_refusal_is_retried_and_an_unknown_query_dropped(session, capfd):
    # The default call timeout: the exact call list below must not see a resend caused by a
    # stall of the test's executors (a 0.2 s timeout would).
    s = session()
    s.learner.refusals = {'busy': ['learner busy, try again'], 'ghost': ['unknown query id']}
    s.learner.refusals['ghost'] *= 10
    for qid in ('ghost', 'busy', 'after'):
        s.queries.publish(query_to_ros(query(qid, 1.0, 0.0)))
    assert s.spin_until(lambda: 'after' in s.learner.stored)
    s.spin_for(0.3)
    assert s.learner.calls == ['ghost', 'busy', 'busy', 'after']
    assert 'ghost' not in s.learner.stored
    assert s.teacher.submissions.dropped == [('ghost', 'unknown query id')]
    err = capfd.readouterr().err
    assert "label for query 'ghost' refused and dropped: unknown query id" in err


def test_pace_releases_answers_in_order(session):
    pace = 0.25
    s = session(pace_s=pace)
    for k in range(3):
        s.queries.publish(query_to_ros(query(f'p{k}', float(k), 0.5)))
    assert s.spin_until(lambda: len(s.learner.stored) == 3)
    assert s.learner.calls == ['p0', 'p1', 'p2']
    labels = [s.learner.stored[f'p{k}'] for k in range(3)]
    assert [label.choice for label in labels] == [Choice.RIGHT, Choice.LEFT, Choice.LEFT]
    # Each answer is released a pace after the previous one (or after its query arrived):
    # answers are at least a pace apart, the first at least a pace after its query. (Not
    # (k + 1) paces of response time: under load the later queries arrive later.)
    assert labels[0].response_time_s >= pace - 0.03
    for earlier, later in zip(labels[:-1], labels[1:], strict=True):
        assert (later.stamp_ns - earlier.stamp_ns) / 1e9 >= pace - 0.03
        assert later.response_time_s >= pace - 0.03


def test_malformed_queries_are_logged_and_the_node_keeps_working(session, capfd):
    s = session()
    s.queries.publish(query_to_ros(query('no-rewards', 0.0, 1.0, with_rewards=False)))
    broken = query_to_ros(query('broken', 0.0, 1.0))
    broken.left.observations = broken.left.observations[:-3]
    s.queries.publish(broken)
    s.queries.publish(query_to_ros(query('good', 1.0, 0.0)))
    assert s.spin_until(lambda: 'good' in s.learner.stored)
    s.spin_for(0.2)
    assert s.learner.calls == ['good']
    err = capfd.readouterr().err
    assert "query 'no-rewards' not answered: TeacherError" in err
    assert 'carries no true rewards' in err
    assert "query 'broken' not answered: MalformedMessageError" in err


def test_answering_core_without_ros():
    # Episode returns: a source joined mid-episode is not reported; others are per source.
    episodes = EpisodeReturns()
    assert episodes.add(segment('a', 1.0, start_step=H, end=True)) is None
    assert episodes.add(segment('b', 1.0)) is None
    assert episodes.add(segment('c', 2.0, start_step=H, end=True)) == (pytest.approx(30.0), 20)

    answerer = QueryAnswerer(TeacherNodeConfig(pace_s=1.0))
    assert answerer.add(query('x', 0.0, 1.0), now=10.0) == Choice.RIGHT
    assert answerer.add(query('x', 0.0, 1.0), now=10.1) is None
    assert answerer.add(query('y', 1.0, 0.0), now=10.5) == Choice.LEFT
    assert list(answerer.release(10.9, 0)) == []
    (first,) = answerer.release(11.0, 5)
    assert (first.query_id, first.response_time_s, first.stamp_ns) == ('x', 1.0, 5)
    assert answerer.next_due() == 12.0  # one pace after the first answer, not after arrival

    queue = SubmissionQueue(0.1, 0.3)
    queue.push(first)
    assert queue.next_to_send(0.0) is first and queue.next_to_send(0.0) is None  # in flight
    assert queue.failed(0.0) == 0.1
    assert queue.next_to_send(0.05) is None
    assert queue.next_to_send(0.1) is first
    assert queue.failed(0.1) == 0.2 and queue.next_to_send(0.31) is first
    assert queue.failed(0.31) == 0.3  # capped
    assert queue.next_to_send(0.6) is None and queue.next_to_send(0.62) is first
    assert queue.acknowledged() is first and len(queue) == 0
