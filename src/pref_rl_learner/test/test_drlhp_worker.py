"""The DRLHP worker's steps in-process: query selection, decaying rate, the paper's training
features (random-response model, adaptive L2, normalisation), saved splits, segments."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from pref_rl_learner.drlhp import DrlhpConfig, DrlhpError, load_splits
from pref_rl_learner.drlhp.segments import ClipRecorder
from pref_rl_learner.drlhp.worker import PreferenceWorker, WorkerSpec
from pref_rl_learner.reward import RewardModelConfig, RewardTrainingConfig
from pref_rl_learner.schedule import FeedbackSchedule, FeedbackScheduleConfig
from pref_rl_learner.types import Choice


def point_mass_config(**overrides) -> DrlhpConfig:
    """A small, fast DRLHP config for the point mass."""
    base = dict(
        segment_length=10, store_fsync=False, min_labels_to_train=4, checkpoint_interval=0,
        min_session_clips=10,
        schedule=FeedbackScheduleConfig(kind='decay', queries_per_session=12,
                                        session_interval_steps=100, first_session_step=100,
                                        total_budget=200, decay_horizon_steps=200),
        reward_model=RewardModelConfig(hidden_sizes=(32, 32), device='cpu'),
        reward_training=RewardTrainingConfig(random_response=0.1, adaptive_l2=True,
                                             weight_decay=1e-3, max_epochs=20,
                                             target_accuracy=None))
    base.update(overrides)
    return DrlhpConfig(**base)


def rollout_clips(num_clips: int, seed: int = 0):
    """Clips of random point-mass behaviour, as the wrapper would send them."""
    from pref_rl_robot.tasks import make_task

    env = make_task('point_mass', seed=seed)
    rng = np.random.default_rng(seed)
    recorder = ClipRecorder(10, f'run{seed}')
    clips, steps = [], 0
    obs, _ = env.reset(seed=seed)
    recorder.start_episode()
    while len(clips) < num_clips:
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        clip = recorder.add(obs, action, next_obs, reward, steps)
        if clip is not None:
            clips.append(clip)
        obs = next_obs
        if terminated or truncated:
            recorder.end_episode(-1.0, 50)
            obs, _ = env.reset()
            recorder.start_episode()
    return clips


def make_worker(tmp_path, config: DrlhpConfig, published: list) -> PreferenceWorker:
    spec = WorkerSpec(config=config, observation_shape=(4,), action_dim=2,
                      log_dir=str(tmp_path), parent_pid=0, task='point_mass')
    return PreferenceWorker(spec, published.append)


def feed(worker: PreferenceWorker, clips) -> None:
    for clip in clips:
        worker.take_clip(clip)


def test_clip_recorder_cuts_fixed_length_clips_and_discards_tails():
    recorder = ClipRecorder(4, 'r')
    recorder.start_episode()
    made = [recorder.add(np.full(2, t, np.float32), np.zeros(1, np.float32),
                         np.full(2, t + 1, np.float32), float(t), t + 1) for t in range(10)]
    clips = [c for c in made if c is not None]
    assert len(clips) == 2
    assert clips[1].start_step == 4 and clips[1].env_steps == 8
    np.testing.assert_array_equal(clips[1].observations[:, 0], [4, 5, 6, 7])
    np.testing.assert_array_equal(clips[1].rewards, [4, 5, 6, 7])
    recorder.start_episode()  # two steps of the first episode were left over
    assert recorder.partial_discarded == 1 and clips[0].segment_id != clips[1].segment_id


def test_decaying_query_rate_and_disagreement_selection(tmp_path):
    config = point_mass_config()
    published: list = []
    worker = make_worker(tmp_path, config, published)
    clips = rollout_clips(120)
    schedule = FeedbackSchedule(config.schedule)
    asked = []
    for step in (100, 200, 300, 400):
        feed(worker, [c._replace(env_steps=step) for c in clips[(step // 10) - 10:step // 10]])
        assert worker.session_due()
        asked.append(worker.run_session())
        assert not worker.session_due()
        if worker.training_due():
            worker.train()
    # DRLHP's decaying rate: floor(q·H/(H+t)) queries at env step t.
    assert asked == [schedule.queries_for_session(t, 10_000) for t in (100, 200, 300, 400)]
    assert asked == [8, 6, 4, 4]
    store = worker.store
    samplers = [store.query(q).sampler for q in _query_ids(store)]
    # The first session is uniform (no model yet), the later ones ask the pairs the members
    # disagree on most (ensemble-uncertainty selection).
    assert samplers[:8] == ['uniform'] * 8 and set(samplers[8:]) == {'disagreement'}
    assert worker.trainings >= 1 and published[-1][0] == 'model'
    worker.close()


def _query_ids(store):
    from pref_rl_learner.preferences.log import read_records

    return [r.meta['query_id'] for r in read_records(store.directory / 'preferences.log')
            if r.meta.get('kind') == 'query']


def _train_once(tmp_path, clips, **training) -> tuple[PreferenceWorker, list]:
    base = point_mass_config().reward_training
    config = point_mass_config(reward_training=replace(base, **training),
                               schedule=replace(point_mass_config().schedule,
                                                kind='constant', queries_per_session=40))
    published: list = []
    worker = make_worker(tmp_path, config, published)
    feed(worker, [c._replace(env_steps=100) for c in clips])
    worker.run_session()
    worker.train()
    return worker, published


def test_random_response_adaptive_l2_and_normalisation_switch(tmp_path):
    clips = rollout_clips(60)
    on, published = _train_once(tmp_path / 'on', clips)
    off, _ = _train_once(tmp_path / 'off', clips, random_response=0.0, adaptive_l2=False)
    # Same labels (same seed), different preference model: ε = 0.1 bounds the loss.
    split = ('train', 'val')
    assert ({k: v for k, v in on.store.counts().items() if k not in split}
            == {k: v for k, v in off.store.counts().items() if k not in split})
    # A validation split only where adaptive L2 uses it (DRLHP's 20%); else every label trains.
    assert on.store.counts()['val'] > 0 and off.store.counts()['val'] == 0
    assert on.trainer.config.random_response == 0.1
    assert on.last_report['train_loss'] != pytest.approx(off.last_report['train_loss'])
    # Adaptive L2 moved λ away from its start; without it λ stays put.
    assert on.last_report['l2_weight'] != pytest.approx(1e-3)
    assert off.last_report['l2_weight'] == pytest.approx(1e-3)
    # Normalised per member (DRLHP): each member has zero mean and unit std on the recent
    # transitions it was fitted on, and the reward is their mean.
    obs = np.concatenate([c.observations for c in clips])
    act = np.concatenate([c.actions for c in clips])
    members = on.model.normalizer(on.model(torch.from_numpy(obs), torch.from_numpy(act))
                                  ).detach().numpy()
    np.testing.assert_allclose(members.mean(axis=1), 0.0, atol=1e-3)
    np.testing.assert_allclose(members.std(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(on.model.reward(obs, act).numpy(), members.mean(axis=0),
                               atol=1e-5)
    # The wrapper gets the weights with the normaliser's statistics.
    assert published[-1][3]['normalizer.count'] == len(obs)
    raw, _ = _train_once(tmp_path / 'raw', clips)
    raw_config = replace(raw.config, normalize_reward=False)
    unnorm = make_worker(tmp_path / 'raw2', raw_config, [])
    feed(unnorm, [c._replace(env_steps=100) for c in clips])
    unnorm.run_session()
    unnorm.train()
    assert not unnorm.model.normalizer.fitted
    for worker in (on, off, raw, unnorm):
        worker.close()


def test_collect_only_writes_train_and_val_splits(tmp_path):
    config = point_mass_config(mode='collect_only',
                               schedule=replace(point_mass_config().schedule,
                                                kind='constant', queries_per_session=30))
    worker = make_worker(tmp_path, config, [])
    feed(worker, [c._replace(env_steps=100) for c in rollout_clips(40)])
    assert worker.run_session() == 30
    assert not worker.training_due()  # collect only: never trains
    worker.close()
    train, val = load_splits(tmp_path)
    assert train.num_pairs + val.num_pairs == 30 and val.num_pairs > 0
    assert train.left_observations.shape[1:] == (10, 4)
    assert set(np.unique(train.right_preferred)) <= {0.0, 0.5, 1.0}
    (tmp_path / 'val.npz').write_bytes(b'not a zip')
    with pytest.raises(DrlhpError, match='val.npz'):
        load_splits(tmp_path)


def test_external_gatherer_leaves_queries_pending(tmp_path):
    config = point_mass_config(label_source='external', max_pending_queries=5)
    worker = make_worker(tmp_path, config, [])
    feed(worker, [c._replace(env_steps=100) for c in rollout_clips(30)])
    assert worker.run_session() == 5  # capped by max_pending_queries
    pending = worker.pending()
    assert len(pending) == 5 and pending[0].left.rewards is not None
    assert worker.submit_label(pending[0].query_id, int(Choice.LEFT), 'alice', 1.5)
    assert not worker.submit_label(pending[0].query_id, int(Choice.LEFT), 'alice', 2.0)
    assert len(worker.pending()) == 4 and worker.status()['left'] == 1
    worker.close()


def test_episode_ends_are_aligned_or_padded_never_dropped():
    recorder = ClipRecorder(4, 'r')
    recorder.start_episode()
    step = lambda t, end=False: recorder.add(  # noqa: E731
        np.full(2, t, np.float32), np.ones(1, np.float32), np.full(2, t + 1, np.float32),
        float(t), t + 1, terminated=end)
    made = [step(t, end=(t == 9)) for t in range(10)]
    clips = [c for c in made if c is not None]
    # 10 steps: clips at steps 0-3 and 4-7, then the tail 8-9 as the last 4 steps, 6-9.
    assert len(clips) == 3 and recorder.ends_aligned == 1
    np.testing.assert_array_equal(clips[2].observations[:, 0], [6, 7, 8, 9])
    np.testing.assert_array_equal(clips[2].next_observations[:, 0], [7, 8, 9, 10])
    assert clips[2].start_step == 6 and clips[2].terminated.tolist() == [0, 0, 0, 1]
    recorder.start_episode()
    assert recorder.partial_discarded == 0
    short = [step(t, end=(t == 1)) for t in range(2)]  # an episode shorter than T: padded
    clip = short[1]
    assert short[0] is None and recorder.ends_padded == 1
    np.testing.assert_array_equal(clip.rewards, [0, 1, 0, 0])  # absorbing steps: reward 0
    np.testing.assert_array_equal(clip.frames[:, 0], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(clip.actions[:, 0], [1, 1, 0, 0])
    assert clip.terminated.tolist() == [False, True, True, True]


def test_a_segment_that_ends_an_episode_reaches_the_teacher(tmp_path):
    """Episodes of 13 steps end with +10 (a landing): with clips of 10 steps the last clip
    of each episode (steps 3-12) holds it, is queried and is preferred by the oracle."""
    config = point_mass_config(mode='collect_only', min_session_clips=4,
                               schedule=replace(point_mass_config().schedule,
                                                kind='constant', queries_per_session=6))
    worker = make_worker(tmp_path, config, [])
    recorder, steps, clips = ClipRecorder(10, 'lander'), 0, []
    rng = np.random.default_rng(0)
    for _ in range(4):
        recorder.start_episode()
        for t in range(13):
            steps += 1
            obs = rng.normal(size=worker.spec.observation_shape).astype(np.float32)
            clip = recorder.add(obs, np.zeros(2, np.float32), obs, 10.0 if t == 12 else 0.0,
                                steps, terminated=t == 12)
            if clip is not None:
                clips.append(clip)
    assert len(clips) == 8  # two per episode: steps 0-9 and the aligned end 3-12
    feed(worker, [c._replace(env_steps=100) for c in clips])
    assert worker.run_session() == 6
    ends = 0
    for query_id in worker.store.query_ids():
        query, label = worker.store.query(query_id), worker.store.label(query_id)
        left_end, right_end = (bool(s.terminated[-1]) for s in (query.left, query.right))
        ends += left_end + right_end
        if left_end != right_end:
            assert label.choice == (Choice.LEFT if left_end else Choice.RIGHT)
            assert max(query.left.rewards[-1], query.right.rewards[-1]) == 10.0
    assert ends > 0
    worker.close()


def test_training_cost_is_capped_in_gradient_steps_not_labels(tmp_path):
    clips = rollout_clips(120)
    schedule = replace(point_mass_config().schedule, kind='constant', queries_per_session=100,
                       total_budget=1000)
    training = replace(point_mass_config().reward_training, batch_size=8, max_epochs=50)
    capped = make_worker(tmp_path / 'capped', point_mass_config(
        schedule=schedule, reward_training=replace(training, max_gradient_steps=24)), [])
    free = make_worker(tmp_path / 'free', point_mass_config(
        schedule=schedule, reward_training=replace(training, max_gradient_steps=0)), [])
    for worker in (capped, free):
        feed(worker, [c._replace(env_steps=100) for c in clips])
        worker.run_session()
        worker.train()
    train_pairs = capped.store.counts()['train']
    batches = -(-train_pairs // 8)
    assert batches > 4 and 24 % batches  # the cap ends an epoch part way
    assert capped.last_report['gradient_steps'] == 24
    assert capped.last_report['epochs'] == -(-24 // batches)
    assert free.last_report['epochs'] == 50  # target_accuracy None: every epoch runs
    assert free.last_report['gradient_steps'] == 50 * batches
    for worker in (capped, free):
        worker.close()


def test_status_counts_skips_apart_and_reports_the_backlog(tmp_path):
    config = point_mass_config(label_source='external', max_pending_queries=12)
    worker = make_worker(tmp_path, config, [])
    feed(worker, [c._replace(env_steps=300) for c in rollout_clips(30)])
    assert worker.status()['sessions_due'] == 3 and worker.status()['session_backlog'] == 3
    worker.run_session()
    pending = worker.pending()
    worker.submit_label(pending[0].query_id, int(Choice.SKIP), 'alice', 1.0)
    worker.submit_label(pending[1].query_id, int(Choice.LEFT), 'alice', 1.0)
    status = worker.status()
    assert status['answered'] == 2 and status['labelled'] == 1 and status['skip'] == 1
    assert status['session_backlog'] == 2
    worker.close()


def test_the_pool_keeps_to_its_byte_budget(tmp_path):
    clips = rollout_clips(50)
    budget = 10 * clips[0].nbytes
    worker = make_worker(tmp_path, point_mass_config(segment_pool_bytes=budget), [])
    feed(worker, clips)
    status = worker.status()
    assert status['pool_clips'] == 10 and status['pool_bytes'] <= budget
    assert worker.pool_snapshot()[0].segment_id == clips[-10].segment_id  # the oldest went
    worker.close()


def test_clips_evicted_from_the_pool_after_their_query_stay_labelled_in_the_store(tmp_path):
    """The byte budget evicts pool copies only: a queried clip is in the preference store
    (with its observations and its label) before the pool can drop it."""
    clips = rollout_clips(60)
    budget = 12 * clips[0].nbytes
    config = point_mass_config(segment_pool_bytes=budget, label_source='external')
    worker = make_worker(tmp_path, config, [])
    feed(worker, [c._replace(env_steps=100) for c in clips[:12]])
    worker.run_session()
    asked = worker.pending()
    assert asked
    for query in asked:
        worker.submit_label(query.query_id, int(Choice.LEFT), 'alice', 1.0)
    by_id = {c.segment_id: c for c in clips[:12]}
    feed(worker, [c._replace(env_steps=100) for c in clips[12:]])  # the first 12 are evicted
    in_pool = {c.segment_id for c in worker.pool_snapshot()}
    assert in_pool.isdisjoint(by_id) and worker.status()['pool_bytes'] <= budget
    for query in asked:
        stored = worker.store.query(query.query_id)
        assert worker.store.label(query.query_id).choice == Choice.LEFT
        for segment in (stored.left, stored.right):
            np.testing.assert_array_equal(segment.observations,
                                          by_id[segment.segment_id].observations)
    assert worker.status()['labelled'] == len(asked)
    worker.close()
