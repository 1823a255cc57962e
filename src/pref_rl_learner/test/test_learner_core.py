"""The asynchronous learner core: segments in, queries out, labels whenever they come."""

import math
import time

import numpy as np
import pytest
import torch

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import from_mapping
from pref_rl_learner.errors import InvalidLabelError, InvalidSegmentError
from pref_rl_learner.learner import (
    LearnerConfig,
    LearnerCore,
    LearnerWorker,
    SegmentRejectedError,
    query_id,
)
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.preferences import ConflictingLabelError, UnknownQueryError
from pref_rl_learner.teacher import TEACHER_PRESETS, ScriptedTeacher
from pref_rl_learner.types import Choice, Phase, PreferenceLabel, Segment

CONFIG = {
    'task': 'point_mass', 'seed': 0, 'total_steps': 5000, 'seed_steps': 300,
    'unsupervised_steps': 300, 'reset_updates': 20, 'replay_capacity': 10_000,
    'sac': {'hidden_sizes': [64, 64], 'batch_size': 64, 'device': 'cpu'},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [64, 64]},
    'reward_training': {'max_epochs': 50},
    'schedule': {'queries_per_session': 25, 'session_interval_steps': 500,
                 'total_budget': 100},
}
PACE = LearnerConfig(updates_per_step=0.5, policy_publish_interval=200)


def config(**changes):
    mapping = {**CONFIG, **changes}
    return from_mapping(TrainConfig, mapping)


def rollout(steps, seed):
    """Segments of a random policy on the point mass (10 steps each): the robot's actor
    before any policy weights arrive."""
    from pref_rl_robot.actor import Actor, ActorConfig

    return Actor.from_config(ActorConfig(task='point_mass', seed=seed),
                             source_id=f'sim{seed}').run(max_steps=steps)


@pytest.fixture(scope='module')
def segments():
    return rollout(3000, seed=0)


def pair_of(query):
    return SegmentPairs(query.left.observations[None], query.left.actions[None],
                        query.right.observations[None], query.right.actions[None],
                        query.left.rewards[None], query.right.rewards[None])


class Teacher:
    """Answers queries with the oracle from their true rewards."""

    def __init__(self, seed=1):
        self.teacher = ScriptedTeacher(TEACHER_PRESETS['oracle'], np.random.default_rng(seed))

    def label(self, query):
        choice = Choice(int(self.teacher.label(pair_of(query))[0]))
        return PreferenceLabel(query.query_id, choice, 'teacher/oracle')


def feed(core, segments, teacher=None, asked=None):
    """Ingest ``segments``, working between them; answer queries at once with ``teacher``."""
    for segment in segments:
        core.ingest(segment)
        while core.work_step():
            pass
        for query in core.take_queries():
            if asked is not None:
                asked.append(query)
            if teacher is not None:
                assert core.submit_label(teacher.label(query)) == 'stored'


def held_out_accuracy(core, seed=7, num=300):
    """Oracle agreement of the reward model on pairs from a rollout it never saw."""
    rng = np.random.default_rng(seed)
    fresh = [s for s in rollout(1500, seed) if s.length == 10]
    left, right = rng.integers(0, len(fresh), num), rng.integers(0, len(fresh), num)
    stack = {name: np.stack([getattr(fresh[i], name) for i in idx])
             for name, idx in (('observations', left), ('actions', left))}
    pairs = SegmentPairs(stack['observations'], stack['actions'],
                         np.stack([fresh[i].observations for i in right]),
                         np.stack([fresh[i].actions for i in right]))
    truth = (np.stack([fresh[i].rewards.sum() for i in right])
             > np.stack([fresh[i].rewards.sum() for i in left]))
    predicted = core.reward_model.preference_probs(pairs).mean(axis=0) > 0.5
    return float((predicted == truth).mean())


@pytest.mark.slow
def test_pebble_from_asynchronous_labels(tmp_path, segments):
    core = LearnerCore(config(), PACE, tmp_path)
    assert core.status().phase is Phase.WAITING
    feed(core, segments[:20])
    assert core.status().phase is Phase.SEED and core.agent.num_updates == 0
    feed(core, segments[20:40])
    assert core.status().phase is Phase.UNSUPERVISED and core.agent.num_updates > 0
    weights = []
    teacher = Teacher()
    for segment in segments[40:]:
        feed(core, [segment], teacher)
        if (w := core.take_weights()) is not None:
            weights.append(w.version)
    status = core.status()
    # Sessions at 600, 1100, 1600, 2100 of 25 queries: the whole budget of 100.
    assert status.queries_published == status.labels_stored == 100
    assert core.budget.asked == 100 and core.budget.remaining() == 0
    assert status.reward_model_version == 4 == core.reward_model.version
    assert status.phase is Phase.LEARNING and status.env_steps == 3000
    # updates_per_step 0.5 after the 300 seed steps, plus the reset updates.
    assert status.gradient_steps == int(0.5 * (3000 - 300)) + 20
    assert weights == list(range(1, len(weights) + 1)) and len(weights) >= 5
    assert status.policy_version == weights[-1]
    assert 0 <= status.reward_model_accuracy <= 1
    assert not math.isnan(status.mean_true_return) and status.success_rate >= 0
    # The reward model agrees with the true reward on pairs it never saw.
    assert held_out_accuracy(core) >= 0.75
    core.close()


def test_budget_counts_outstanding_queries(tmp_path, segments):
    core = LearnerCore(config(schedule={'queries_per_session': 20,
                                        'session_interval_steps': 300, 'total_budget': 30}),
                       PACE, tmp_path)
    asked = []
    feed(core, segments[:61], asked=asked)  # 610 steps: the first session was due at 600
    assert [q.query_id for q in asked] == [query_id(0, j) for j in range(20)]
    assert all(q.sampler == 'uniform' for q in asked)
    teacher = Teacher()
    for query in asked[:15]:
        core.submit_label(teacher.label(query))
    # Sessions 1 and 2 are due by step 1200, but 5 queries are still outstanding.
    feed(core, segments[61:130], asked=asked)
    assert len(asked) == 20 and core.status().phase is Phase.FEEDBACK
    assert core.reward_model.version == 0 and core.budget.asked == 15
    for query in asked[15:]:
        core.submit_label(teacher.label(query))
    feed(core, segments[130:131], asked=asked)
    # Trained on the session, then the next session asks what the budget has left: 10.
    assert core.reward_model.version == 1
    assert [q.query_id for q in asked[20:]] == [query_id(1, j) for j in range(10)]
    assert asked[20].sampler == 'disagreement'
    for query in asked[20:]:
        core.submit_label(teacher.label(query))
    feed(core, segments[131:200], asked=asked)
    assert len(asked) == 30 and core.budget.remaining() == 0
    assert core.status().queries_published == 30 == core.status().labels_stored
    pairs = {frozenset((q.left.segment_id, q.right.segment_id)) for q in asked}
    assert len(pairs) == 30  # no pair asked twice
    core.close()


def test_bad_segments_and_labels_are_refused(tmp_path, segments):
    core = LearnerCore(config(), PACE, tmp_path)
    good = segments[0]
    fields = {name: getattr(good, name) for name in (
        'segment_id', 'task', 'observations', 'actions', 'next_observations', 'terminated',
        'truncated', 'rewards', 'success', 'source_id', 'episode', 'start_step')}
    with pytest.raises(SegmentRejectedError, match='task'):
        core.ingest(Segment(**{**fields, 'task': 'reacher'}))
    with pytest.raises(SegmentRejectedError, match='observation shape'):
        core.ingest(Segment(**{**fields, 'observations': good.observations[:, :3],
                               'next_observations': good.next_observations[:, :3]}))
    with pytest.raises(SegmentRejectedError, match='action shape'):
        core.ingest(Segment(**{**fields, 'actions': np.zeros((10, 3), np.float32)}))
    nan = good.observations.copy()
    nan[3, 1] = np.nan
    with pytest.raises(InvalidSegmentError, match='non-finite'):
        Segment(**{**fields, 'observations': nan})
    assert core.status().env_steps == 0 and len(core.buffer) == 0 and len(core.segments) == 0
    assert core.ingest(good) == 10
    with pytest.raises(SegmentRejectedError, match='received before'):
        core.ingest(good)
    assert core.status().env_steps == 10 and len(core.buffer) == 10
    asked = []
    feed(core, segments[1:61], asked=asked)
    query = asked[0]
    with pytest.raises(UnknownQueryError):
        core.submit_label(PreferenceLabel('session0099-q000', Choice.LEFT, 'person'))
    for bad in (0, 9):
        with pytest.raises(InvalidLabelError, match='choice'):
            PreferenceLabel(query.query_id, bad, 'person')
    label = PreferenceLabel(query.query_id, Choice.LEFT, 'person', response_time_s=2.0)
    assert core.submit_label(label) == 'stored'
    retry = PreferenceLabel(query.query_id, Choice.LEFT, 'person', response_time_s=3.0)
    assert core.submit_label(retry) == 'already stored'
    with pytest.raises(ConflictingLabelError):
        core.submit_label(PreferenceLabel(query.query_id, Choice.RIGHT, 'person'))
    assert core.budget.asked == 1 and core.store.counts()['labelled'] == 1
    assert core.store.label(query.query_id).choice is Choice.LEFT
    core.close()


def test_resume_keeps_every_label_once_and_republishes_pending(tmp_path, segments):
    teacher = Teacher()
    core = LearnerCore(config(), PACE, tmp_path)
    asked = []
    feed(core, segments[:61], asked=asked)
    assert len(asked) == 25
    acknowledged = {}
    for query in asked[:10]:
        label = teacher.label(query)
        core.submit_label(label)
        acknowledged[query.query_id] = label.choice
    core.checkpoint()
    saved = core.status()
    for query in asked[10:18]:  # acknowledged after the checkpoint: only in the store
        label = teacher.label(query)
        core.submit_label(label)
        acknowledged[query.query_id] = label.choice
    feed(core, segments[61:70])  # data after the checkpoint is lost with the process
    core.close()

    resumed = LearnerCore(config(), PACE, tmp_path)
    assert resumed.resumed
    assert resumed.status().env_steps == saved.env_steps == 610
    assert resumed.agent.num_updates == saved.gradient_steps
    republished = resumed.take_queries()
    assert [q.query_id for q in republished] == [q.query_id for q in asked[18:]]
    np.testing.assert_array_equal(republished[0].left.observations, asked[18].left.observations)
    counts = resumed.store.counts()
    assert counts['labelled'] == len(acknowledged) == 18 and resumed.budget.asked == 18
    for qid, choice in acknowledged.items():
        assert resumed.store.label(qid).choice is choice
    # A label retried after the restart is not stored twice.
    retry = PreferenceLabel(asked[0].query_id, acknowledged[asked[0].query_id], 'teacher/oracle')
    assert resumed.submit_label(retry) == 'already stored'
    # Segments the checkpoint holds are not taken twice; later ones are welcome again.
    with pytest.raises(SegmentRejectedError):
        resumed.ingest(segments[60])
    worker = LearnerWorker(resumed)
    worker.start()
    try:
        for query in republished:
            resumed.submit_label(teacher.label(query))
        for segment in segments[61:120]:
            resumed.ingest(segment)
        deadline = time.monotonic() + 30
        while resumed.reward_model.version == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert worker.error is None
    assert resumed.reward_model.version >= 1  # training went on from the stored labels
    asked_after = resumed.take_queries()
    assert all(q.query_id.startswith('session0001') for q in asked_after)
    assert resumed.store.counts()['labelled'] == 25
    resumed.close()


def test_a_run_without_checkpoint_resumes_from_its_store(tmp_path, segments):
    core = LearnerCore(config(), PACE, tmp_path)
    asked = []
    feed(core, segments[:61], asked=asked)
    core.submit_label(Teacher().label(asked[0]))
    core.close()  # no checkpoint was written
    again = LearnerCore(config(), PACE, tmp_path)
    assert not again.resumed and again.status().env_steps == 0
    assert [q.query_id for q in again.take_queries()] == [q.query_id for q in asked[1:]]
    assert again.budget.asked == 1 and again.learning.sessions == 1
    again.close()


def test_pacing_holds_segments_until_learning_catches_up(tmp_path, segments):
    pace = LearnerConfig(updates_per_step=1.0, max_update_lag=16, update_chunk=4)
    core = LearnerCore(config(), pace, tmp_path)
    for segment in segments[:60]:
        core.ingest(segment)
    # 300 seed steps go in freely; then a segment only while the worker owes <= 16 updates.
    assert core.status().env_steps == 320 and len(core.buffer) == 320
    assert core.work_step()  # 4 updates: owes 16, so one more segment may enter
    assert core.status().env_steps == 330 and core.agent.num_updates == 4
    while core.work_step():
        pass
    assert core.status().env_steps == 600 and core.agent.num_updates == 300
    core.close()

    # A checkpoint keeps held-back segments held back (admitting them would outrun learning
    # past the feedback sessions) and loses none: the resumed learner admits them at pace.
    held = LearnerCore(config(), pace, tmp_path / 'held')
    for segment in segments[:60]:
        held.ingest(segment)
    held.checkpoint()
    assert held.status().env_steps == 320
    held.close()
    resumed = LearnerCore(config(), pace, tmp_path / 'held')
    assert resumed.status().env_steps == 320 and resumed.intake.backlog == 28
    with pytest.raises(SegmentRejectedError, match='received before'):
        resumed.ingest(segments[59])  # in the restored backlog: not taken twice
    while resumed.work_step():
        pass
    assert resumed.status().env_steps == 600 and resumed.agent.num_updates == 300
    resumed.close()

    unpaced = LearnerCore(config(), LearnerConfig(max_update_lag=-1), tmp_path / 'free')
    for segment in segments[:60]:
        unpaced.ingest(segment)
    assert unpaced.status().env_steps == 600 and unpaced.agent.num_updates == 0
    unpaced.close()


def test_hold_for_labels_keeps_data_back_until_the_session_is_answered(tmp_path, segments):
    """A replayed bag waits for its labeller: with ``hold_for_labels`` no transition enters
    while a session's queries are unanswered; the answers let the rest in. Without it the data
    runs on to the end with nothing answered (the replay session's flake)."""
    schedule = {'queries_per_session': 5, 'session_interval_steps': 300, 'total_budget': 10}
    results = {}
    for hold in (True, False):
        core = LearnerCore(config(schedule=schedule),
                           LearnerConfig(max_update_lag=-1, hold_for_labels=hold),
                           tmp_path / str(hold))
        asked = []
        feed(core, segments[:70], asked=asked)  # the first session is due at 600 steps
        results[hold] = core.status().env_steps, len(asked), core.intake.backlog
        if hold:
            assert core.status().phase is Phase.FEEDBACK
            teacher = Teacher()
            for query in asked:
                core.submit_label(teacher.label(query))
            while core.work_step():
                pass
            assert core.status().env_steps == 700 and core.intake.backlog == 0
            assert core.status().labels_stored == 5 and core.reward_model.version == 1
        core.close()
    # The session was asked at 600 steps; the 10 segments after it waited.
    assert results[True] == (600, 5, 10)
    assert results[False] == (700, 5, 0)


def test_a_sessions_last_label_is_trained_on_after_one_more_update_at_most(tmp_path, segments):
    """A label stops the worker's chunk of SAC updates (training waits for one update, not a
    whole chunk); the new model is announced through ``on_reward_model`` once per training;
    and the whole buffer carries the new model's normalised reward."""
    pace = LearnerConfig(updates_per_step=1.0, update_chunk=50, max_update_lag=-1,
                         policy_publish_interval=10_000)
    core = LearnerCore(config(schedule={'queries_per_session': 5,
                                        'session_interval_steps': 300, 'total_budget': 10}),
                       pace, tmp_path)
    announced = []
    core.on_reward_model = lambda: announced.append(core.reward_model.version)
    asked = []
    feed(core, segments[:61], asked=asked)  # the first session was due at 600
    assert len(asked) == 5
    teacher = Teacher()
    for query in asked[:4]:
        core.submit_label(teacher.label(query))
    for segment in segments[61:70]:  # updates owed: a full chunk of 50 would run now
        core.ingest(segment)
    update = core.learning.update

    def update_then_label(*args, **kwargs):  # the last label arrives during an update
        core.learning.update = update
        core.submit_label(teacher.label(asked[4]))
        return update(*args, **kwargs)
    core.learning.update = update_then_label
    before = core.agent.num_updates
    assert core.work_step()
    assert core.agent.num_updates == before + 1 and core.reward_model.version == 0
    assert core.work_step() and core.reward_model.version == 1  # trains straight away
    assert announced == [1]
    observations, actions = core.buffer.stored_inputs()
    torch.testing.assert_close(core.buffer.rewards,
                               core.reward_model.reward(observations, actions))
    while core.work_step():  # the updates held back are still made
        pass
    assert core.agent.num_updates - before >= 9 * 10 - 1
    core.close()
