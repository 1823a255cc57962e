"""The learner's frames fetcher with a fake service client: calls in flight never exceed the
cap, every segment of a burst gets its frames, and each way of having none is resolved,
counted and logged, the query going out without them."""

import array
import dataclasses

import numpy as np
import pytest

from pref_rl_learner.config import ConfigError
from pref_rl_learner.ros.frames import FramesFetcher
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import PreferenceQuery
from pref_rl_msgs.srv import GetSegmentFrames

LENGTH, STRIDE, SHAPE = 10, 5, (4, 4, 3)


class FakeFuture:
    def __init__(self):
        self.callbacks, self._result, self._done, self._cancelled = [], None, False, False

    def add_done_callback(self, callback):
        self.callbacks.append(callback)

    def set_result(self, result):
        self._result, self._done = result, True
        for callback in self.callbacks:
            callback(self)

    def cancel(self):
        self._cancelled = self._done = True
        for callback in self.callbacks:
            callback(self)

    def cancelled(self):
        return self._cancelled

    def result(self):
        return self._result


class FakeClient:
    """Collects calls; the test answers them."""

    def __init__(self, ready=True):
        self.ready, self.calls, self.removed, self.most_in_flight = ready, [], [], 0

    def service_is_ready(self):
        return self.ready

    def call_async(self, request):
        future = FakeFuture()
        self.calls.append((request.segment_id, future))
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight()))
        return future

    def remove_pending_request(self, future):
        self.removed.append(future)

    def in_flight(self):
        return [(sid, f) for sid, f in self.calls if not f._done]

    def answer(self, sid, future, frames=2, success=True):
        response = GetSegmentFrames.Response(success=success, message='' if success
                                             else f'segment {sid!r} is not in the cache')
        if success:
            response.frame_shape = array.array('I', SHAPE)
            response.frame_stride = STRIDE
            response.frames = array.array('B', bytes(frames * int(np.prod(SHAPE))))
        future.set_result(response)


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, message):
        self.lines.append(message)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def queries(n, shared=0):
    """``n`` queries over distinct segments; the first ``shared`` reuse query 0's left."""
    segs = [make_segment(length=LENGTH, obs_dim=4, act_dim=2, seed=k) for k in range(2 * n)]
    out = []
    for j in range(n):
        left = segs[0] if 0 < j <= shared else segs[2 * j]
        out.append(PreferenceQuery(f'q{j:03d}', left, segs[2 * j + 1]))
    return out


def fetcher(client, clock, log, max_in_flight=8, retries=1):
    return FramesFetcher(client, timeout_s=1.0, max_in_flight=max_in_flight, retries=retries,
                         logger=log, clock=clock)


def test_a_burst_of_40_queries_gets_all_80_frames_never_more_than_8_in_flight():
    client, clock, log = FakeClient(), Clock(), Log()
    f = fetcher(client, clock, log)
    for query in queries(40):
        f.add(query)
    released = []
    while len(released) < 40:
        assert len(client.in_flight()) <= 8
        for sid, future in client.in_flight()[:3]:  # the robot answers a few per tick
            client.answer(sid, future)
        released += f.poll()
    assert client.most_in_flight == 8
    assert len(client.calls) == 80 and len({sid for sid, _ in client.calls}) == 80
    assert [q.query_id for q in released] == [f'q{j:03d}' for j in range(40)]  # in order
    assert all(s.frames.shape == (2, *SHAPE) and s.frame_stride == STRIDE
               for q in released for s in (q.left, q.right))
    figures = f.figures()
    assert figures['frames_queries_asked'] == 40 and figures['frames_queries_with_both'] == 40
    assert figures['frames_fraction'] == 1.0 and figures['frames_segments_failed'] == 0
    assert log.lines == [] and f.waiting_ids() == set()


def test_a_segment_shown_in_several_queries_is_asked_for_once():
    client, clock, log = FakeClient(), Clock(), Log()
    f = fetcher(client, clock, log)
    for query in queries(4, shared=3):
        f.add(query)
    while client.in_flight():
        for sid, future in client.in_flight():
            client.answer(sid, future)
    released = f.poll()
    assert len(client.calls) == 5  # the shared left once, four rights
    assert {q.left.segment_id for q in released} == {'seg-0'}
    assert all(q.left.frames is not None for q in released)


def test_refused_unusable_and_unanswered_segments_go_out_without_frames_counted_and_logged():
    client, clock, log = FakeClient(), Clock(), Log()
    f = fetcher(client, clock, log, retries=1)
    for query in queries(3):
        f.add(query)
    calls = dict(client.calls)
    client.answer('seg-0', calls['seg-0'], success=False)  # e.g. evicted from the cache
    client.answer('seg-1', calls['seg-1'], frames=3)  # 3 frames for 10 steps at stride 5
    for sid in ('seg-2', 'seg-3', 'seg-5'):
        client.answer(sid, calls[sid])
    first = f.poll()  # q000 resolved (both sides failed), q001 framed; q002 waits for seg-4
    assert [q.query_id for q in first] == ['q000', 'q001']
    assert first[0].left.frames is None and first[0].right.frames is None
    assert first[1].left.frames is not None and first[1].right.frames is not None
    clock.now = 1.5  # seg-4 unanswered: abandoned and asked again
    assert f.poll() == []
    assert len(client.removed) == 1 and [sid for sid, _ in client.calls].count('seg-4') == 2
    clock.now = 3.0  # unanswered again: given up
    released = f.poll()
    assert [q.query_id for q in released] == ['q002']
    assert released[0].left.frames is None and released[0].right.frames is not None
    c = f.counts
    assert (c.refused, c.unusable, c.timed_out, c.retries) == (1, 1, 1, 1)
    figures = f.figures()
    assert figures['frames_fraction'] == pytest.approx(1 / 3)
    assert figures['frames_segments_failed'] == 3
    assert len(log.lines) == 3
    assert "'seg-0': the robot has none" in log.lines[0]
    assert "'seg-1': unusable frames" in log.lines[1]
    assert "'seg-4': no answer within 1 s, 2 requests" in log.lines[2]
    # A late answer to an abandoned request changes nothing.
    client.answer('seg-4', client.calls[-1][1])
    assert f.poll() == [] and f.counts.released == 3


def test_no_service_releases_at_once_with_one_log_line():
    client, clock, log = FakeClient(ready=False), Clock(), Log()
    f = fetcher(client, clock, log)
    for query in queries(5):
        f.add(query)
    assert len(f.poll()) == 5 and client.calls == []
    assert f.counts.no_service == 10 and f.figures()['frames_fraction'] == 0.0
    assert len(log.lines) == 5  # one per query added, each naming its segments' count
    assert all('frames service is not available' in line for line in log.lines)


def test_segments_that_came_with_frames_are_not_asked_for():
    client, clock, log = FakeClient(), Clock(), Log()
    f = fetcher(client, clock, log)
    framed = make_segment(length=LENGTH, obs_dim=4, act_dim=2, with_frames=True, seed=1)
    f.add(PreferenceQuery('q', framed, dataclasses.replace(framed, segment_id='other')))
    assert client.calls == [] and len(f.poll()) == 1 and f.counts.with_frames == 1


@pytest.mark.parametrize('kwargs, match', [
    ({'timeout_s': 0.0}, 'frames_timeout_s'),
    ({'max_in_flight': 0}, 'frames_max_in_flight'),
    ({'max_in_flight': 10_000}, 'frames_max_in_flight'),
    ({'retries': -1}, 'frames_retries')])
def test_bad_settings_are_refused(kwargs, match):
    settings = {'timeout_s': 1.0, 'max_in_flight': 8, 'retries': 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        FramesFetcher(FakeClient(), logger=Log(), **settings)


def test_the_run_summary_reports_the_frames_fraction(tmp_path):
    import json

    from pref_rl_learner.learner.evaluation import SUMMARY_NAME, SessionEvaluator
    from pref_rl_learner.pebble.config import TrainConfig

    client, clock, log = FakeClient(), Clock(), Log()
    f = fetcher(client, clock, log)
    for query in queries(4):
        f.add(query)
    for sid, future in client.in_flight():
        client.answer(sid, future, success=sid != 'seg-7')
    assert len(f.poll()) == 4
    evaluator = SessionEvaluator(TrainConfig(), tmp_path)
    evaluator.add_figures(f.figures)
    summary = evaluator.finish({'queries_asked': 4})
    assert summary == json.loads((tmp_path / SUMMARY_NAME).read_text())
    assert summary['queries_asked'] == 4 and summary['frames_queries_asked'] == 4
    assert summary['frames_queries_with_both'] == 3 and summary['frames_fraction'] == 0.75
