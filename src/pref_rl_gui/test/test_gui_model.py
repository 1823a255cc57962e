"""The ROS-free labelling model, driven directly: queue, answers, undo, delivery, learner
outages and restarts, status history, frames and episodes, bad inputs."""

import math

import numpy as np
import pytest

from pref_rl_gui.model import Change
from pref_rl_gui.outbox import EntryState
from pref_rl_learner.types import Choice, LearnerStatus, Phase


class FakeLearner:
    """Stores each label once, answers like SubmitLabel; can lose its answers."""

    def __init__(self):
        self.stored, self.calls = {}, []
        self.model = None
        self.up = True
        self.lose_answer = False

    def submit(self, label):
        self.calls.append(label.query_id)
        if not self.up:
            self.model.on_submit_failed(label.query_id, 'submit_label is not available')
            return
        if label.query_id in self.stored:
            answer = (True, 'already stored')
        elif label.query_id.startswith('ghost'):
            answer = (False, f'UnknownQueryError: no query {label.query_id!r}')
        else:
            self.stored[label.query_id] = label
            answer = (True, 'stored')
        if self.lose_answer:  # stored, but the response never arrives
            self.model.on_submit_failed(label.query_id, 'no answer within 10 s')
        else:
            self.model.on_submit_result(label.query_id, *answer)


def test_queue_drops_repeats_and_labels_carry_id_and_response_time(model_factory, clock,
                                                                    query_factory):
    model, _ = model_factory()
    changes = []
    model.subscribe(changes.append)
    assert model.answer(Choice.LEFT) is None  # nothing shown
    q0, q1 = query_factory('q0'), query_factory('q1')
    assert model.add_query(q0) and model.add_query(q1)
    assert not model.add_query(query_factory('q0'))  # republished: same segments
    assert not model.add_query(query_factory('q1', segments='other'))
    assert model.messages[-1].level == 'error' and 'other segments' in model.messages[-1].text
    assert model.current is q0 and model.queue_count == 1
    assert Change.QUERY in changes[0]
    clock.advance(2.5)
    entry = model.answer(Choice.LEFT)
    assert entry.label.labeler_id == 'alice'
    assert entry.label.response_time_s == pytest.approx(2.5)
    assert entry.label.stamp_ns > 0 and (entry.left_id, entry.right_id) == ('q0-l', 'q0-r')
    assert model.current is q1 and model.queue_count == 0
    clock.advance(1.0)
    assert model.answer(Choice.SKIP).label.response_time_s == pytest.approx(1.0)
    assert model.current is None and math.isnan(model.shown_at)
    # Answered queries are not shown again when the learner republishes them.
    assert not model.add_query(query_factory('q0'))
    assert model.current is None


def test_undo_only_while_unsent(model_factory, clock, query_factory):
    model, sink = model_factory(undo_window_s=2.0)
    for k in range(2):
        model.add_query(query_factory(f'q{k}'))
    model.answer(Choice.LEFT)
    assert model.can_undo()
    undone = model.undo()
    assert undone.state is EntryState.WITHDRAWN
    assert model.current.query_id == 'q0' and [q.query_id for q in model.queued()] == ['q1']
    model.answer(Choice.RIGHT)
    clock.advance(2.1)
    model.pump()
    assert [(lb.query_id, lb.choice) for lb in sink.sent] == [('q0', Choice.RIGHT)]
    assert not model.can_undo() and model.undo() is None
    assert 'being sent' in model.messages[-1].text
    model.on_submit_result('q0', True, 'stored')
    assert model.undo() is None and 'acknowledged' in model.messages[-1].text
    assert model.outbox.counts()['withdrawn'] == 1
    assert len(sink.sent) == 1  # the withdrawn LEFT was never sent


def test_outage_and_lost_answers_lose_nothing_and_store_each_label_once(model_factory, clock,
                                                                       query_factory):
    learner = FakeLearner()
    model, _ = model_factory(sink=learner, undo_window_s=1.0, retry_initial_s=0.5,
                             retry_max_s=2.0)
    learner.model = model
    model.set_learner_available(True)
    assert model.banner() is None
    for k in range(5):
        model.add_query(query_factory(f'q{k}'))
    for k in range(3):
        model.answer(Choice.LEFT if k % 2 else Choice.RIGHT)
    # The learner goes away: calls fail and back off; labelling goes on.
    learner.up = False
    clock.advance(1.1)
    model.pump()
    model.set_learner_available(False)
    assert 'not reachable' in model.banner() and '3 labels saved locally' in model.banner()
    for _ in range(2):
        model.answer(Choice.EQUAL)
    for _ in range(10):
        clock.advance(0.7)
        model.pump()
    assert learner.stored == {} and model.unsent_count() == 5
    assert model.delivery.attempts >= 3
    # Back, but the answer to the first call is lost: the label is sent again and the
    # learner answers "already stored".
    learner.up, learner.lose_answer = True, True
    model.set_learner_available(True)
    assert model.banner() is None
    learner.lose_answer = False
    for _ in range(10):
        clock.advance(1.0)
        model.pump()
    assert sorted(learner.stored) == [f'q{k}' for k in range(5)]
    assert [learner.stored[f'q{k}'].choice for k in range(5)] == [
        Choice.RIGHT, Choice.LEFT, Choice.RIGHT, Choice.EQUAL, Choice.EQUAL]
    assert learner.calls.count('q0') >= 2  # resent after the lost answer (and the outage)
    assert model.outbox.counts()['acknowledged'] == 5 and model.unsent_count() == 0
    assert model.outbox.answer_for('q0').message == 'already stored'
    calls = len(learner.calls)
    clock.advance(60)
    model.pump()
    assert len(learner.calls) == calls  # nothing acknowledged is ever sent again


def test_restart_sends_unsent_labels_once_their_query_returns(model_factory, clock,
                                                              query_factory):
    learner = FakeLearner()
    model, _ = model_factory(sink=learner, undo_window_s=0.0)
    learner.model = model
    for k in range(3):
        model.add_query(query_factory(f'q{k}'))
    model.answer(Choice.LEFT)  # q0: delivered at once
    learner.up = False
    model.answer(Choice.RIGHT)  # q1, q2: the app dies before they are delivered
    model.answer(Choice.EQUAL)
    assert sorted(learner.stored) == ['q0'] and model.unsent_count() == 2
    model.outbox.close()

    restarted, _ = model_factory(sink=learner, undo_window_s=0.0)
    learner.model, learner.up = restarted, True
    restarted.set_learner_available(True)
    assert restarted.unsent_count() == 2 and learner.calls.count('q1') == 1
    # The learner republishes its unanswered queries: q1 with the same segments (sent now,
    # not shown), q2 from another run with other segments (its old label is stale).
    assert not restarted.add_query(query_factory('q1'))
    assert learner.stored['q1'].choice is Choice.RIGHT
    assert restarted.add_query(query_factory('q2', segments='other-run'))
    assert restarted.current.query_id == 'q2'
    assert 'another run' in restarted.messages[-1].text
    assert not restarted.add_query(query_factory('q0'))  # acknowledged before: not shown
    assert sorted(learner.stored) == ['q0', 'q1']
    assert restarted.outbox.counts() == {'unsent': 0, 'acknowledged': 2, 'refused': 0,
                                         'withdrawn': 0, 'stale': 1}


def test_refusals_are_reported_and_transient_ones_retried(model_factory, clock, query_factory):
    learner = FakeLearner()
    model, _ = model_factory(sink=learner, undo_window_s=0.0)
    learner.model = model
    model.add_query(query_factory('ghost-1'))
    model.answer(Choice.LEFT)
    assert model.outbox.answer_for('ghost-1').state is EntryState.REFUSED
    assert model.messages[-1].level == 'error' and 'UnknownQueryError' in model.messages[-1].text
    clock.advance(30)
    model.pump()
    assert learner.calls == ['ghost-1']
    # An answer for a label that is not being sent (late, after a timeout) is ignored.
    model.on_submit_result('nope', True, 'stored')
    assert 'ignored' in model.messages[-1].text


def test_status_history_budget_and_banner(model_factory, clock, tmp_path):
    model, _ = model_factory()
    assert model.budget() is None
    assert model.banner().startswith('Waiting for the learner (submit_label)')
    model.set_learner_available(True)
    statuses = [LearnerStatus(phase=Phase.FEEDBACK, labels_stored=0, feedback_budget=300),
                LearnerStatus(phase=Phase.FEEDBACK, labels_stored=0, feedback_budget=300,
                              env_steps=5),  # nothing plotted changed
                LearnerStatus(phase=Phase.LEARNING, labels_stored=40, feedback_budget=300),
                LearnerStatus(phase=Phase.LEARNING, labels_stored=40, feedback_budget=300,
                              reward_model_version=1, reward_model_accuracy=0.75)]
    for status in statuses:
        clock.advance(10)
        model.on_status(status)
    assert [(p.labels_stored, p.reward_model_version) for p in model.history] == [
        (0, 0), (40, 0), (40, 1)]
    assert math.isnan(model.history[0].accuracy) and model.history[-1].accuracy == 0.75
    assert model.history[-1].elapsed_s == pytest.approx(40)
    assert model.budget() == (40, 300)
    standalone, _ = model_factory(standalone=True, outbox_dir=str(tmp_path / 'standalone'))
    assert standalone.banner() is None


def test_bad_inputs_are_reported_and_frames_checked(model_factory, clock, query_factory,
                                                    segment_factory):
    model, _ = model_factory(episode_refresh_s=5.0)
    model.reject_query('broken', 'MalformedMessageError: observations: 57 values')
    assert model.messages[-1].level == 'error' and 'broken' in model.messages[-1].text
    assert model.queries_rejected == 1 and model.current is None
    for k in range(4):
        model.add_query(query_factory(f'q{k}', frames=(k == 1)))
    wanted = model.frames_wanted()  # shown and next: q0 and q2 (q1 came with frames)
    assert wanted == ['q0-l', 'q0-r', 'q2-l', 'q2-r']
    assert model.frames_wanted() == []  # asked once
    good = np.zeros((2, 8, 8, 3), np.uint8)
    assert not model.on_frames('q0-l', np.zeros((3, 8, 8, 3), np.uint8), 5)  # 3 for 10 steps
    assert 'unusable' in model.messages[-1].text
    assert not model.on_frames('q0-l', np.zeros((2, 8, 8, 7), np.uint8), 5)
    assert not model.on_frames('q0-l', np.zeros((2, 8, 8, 3), np.float32), 5)
    assert model.displayed(model.current.left).frames is None
    assert model.on_frames('q0-l', good, 5)
    assert model.displayed(model.current.left).frames.shape == (2, 8, 8, 3)
    assert not model.on_frames('unknown-segment', good, 5)
    # Episodes: the first finished one is shown, the next only after episode_refresh_s.
    for ep in range(2):
        for k in range(3):
            model.on_segment(segment_factory(f'e{ep}s{k}', episode=ep, start_step=10 * k,
                                             end=(k == 2)))
    assert model.episode.index == 0 and model.episode.length == 30
    clock.advance(5.0)
    for k in range(3):
        model.on_segment(segment_factory(f'e2s{k}', episode=2, start_step=10 * k, end=(k == 2)))
    assert model.episode.index == 2
    model.on_segment(segment_factory('late', episode=3, start_step=20, end=True))
    assert model.episode.index == 2  # joined mid-episode: never shown


def test_frames_that_cannot_be_had_are_noted_on_the_query_shown(model_factory,
                                                               query_factory):
    model, _ = model_factory()
    for k in range(2):
        model.add_query(query_factory(f'q{k}'))
    assert model.frames_wanted() == ['q0-l', 'q0-r', 'q1-l', 'q1-r']
    assert model.frames_note() is None  # asked for, not failed
    model.on_frames('q0-r', np.zeros((2, 8, 8, 3), np.uint8), 5)
    model.on_frames_failed('q0-l', "segment 'q0-l' is not in the cache")
    note = model.frames_note()
    assert note is not None and "clip A (left): segment 'q0-l' is not in the cache" in note
    assert 'clip B' not in note and 'recorded states' in note
    assert model.frames_wanted() == []  # a failed segment is not asked for again
    model.on_frames_failed('not-shown', 'timed out')  # no longer on display: ignored
    assert model.frames.failure('not-shown') is None
    model.answer(Choice.LEFT)  # the next query: its frames were not refused
    assert model.current.query_id == 'q1' and model.frames_note() is None
    model.on_frames_failed('q1-r', 'timed out')
    assert 'clip B (right): timed out' in model.frames_note()


def test_a_failed_outbox_write_keeps_the_query_shown(model_factory, query_factory):
    model, sink = model_factory()
    model.add_query(query_factory('q0'))
    model.outbox.close()  # e.g. the disk went away
    assert model.answer(Choice.LEFT) is None
    assert model.current.query_id == 'q0'
    assert model.messages[-1].level == 'error' and 'not saved' in model.messages[-1].text
    assert sink.sent == []


def test_a_label_that_could_not_be_saved_is_asked_again(tmp_path, clock, query_factory):
    from pref_rl_gui.config import LabelerConfig
    from pref_rl_gui.model import LabelingModel
    from pref_rl_gui.outbox import Outbox
    from pref_rl_learner.preferences.log import StoreError

    outbox = Outbox.open(tmp_path, background=True)
    learner = FakeLearner()
    model = LabelingModel(LabelerConfig(labeler_id='alice', undo_window_s=0.0), outbox,
                          sink=learner, clock=clock)
    learner.model = model

    def full_disk(meta, arrays=None):
        raise StoreError('No space left on device')

    outbox._log.append = full_disk
    for k in range(2):
        model.add_query(query_factory(f'q{k}'))
    model.answer(Choice.LEFT)
    assert model.current.query_id == 'q1'  # the window did not wait for the disk
    outbox.sync(5)
    model.pump()
    assert model.current.query_id == 'q0' and [q.query_id for q in model.queued()] == ['q1']
    assert "'q0' could not be saved" in model.messages[-1].text
    assert learner.calls == [] and model.unsent_count() == 0
    outbox.close()
