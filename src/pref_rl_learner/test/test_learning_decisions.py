"""PEBBLE's decisions are made once (PebbleLearning / PreferenceLearning) and every driver
gets them: the critic reset, the sampler fallback, every query-selection option, the session
schedule, the prior of ``init``; regression tests for the defects the three copies grew."""

import dataclasses

import numpy as np
import pytest
import torch
from test_drlhp_worker import feed as feed_worker
from test_drlhp_worker import make_worker, point_mass_config, rollout_clips
from test_fewshot_arms import pretrained  # noqa: F401 (a fixture)
from test_learner_core import PACE, feed, rollout
from test_pebble_run import TINY

from pref_rl_learner.config import from_mapping
from pref_rl_learner.learner import LearnerCore
from pref_rl_learner.pebble import reward_learning
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.learning import NORMALIZER_SAMPLES, UpdateKind
from pref_rl_learner.pebble.trainer import PebbleTrainer
from pref_rl_learner.preferences import PreferenceStore
from pref_rl_learner.query_selection import QuerySelectionConfig
from pref_rl_learner.run_log import read_csv
from pref_rl_learner.teacher import TeacherConfig


def tiny(**changes) -> TrainConfig:
    return dataclasses.replace(from_mapping(TrainConfig, TINY), **changes)


def recording_updates(trainer: PebbleTrainer) -> list[torch.Tensor]:
    """Replace the agent's update by one that records every batch's rewards."""
    seen, update = [], trainer.agent.update

    def record(batch):
        seen.append(batch.rewards.clone())
        return update(batch)

    trainer.agent.update = record
    return seen


def test_a_session_that_trained_nothing_never_lets_sac_see_the_true_reward(tmp_path):
    # Point-mass true rewards are negative; the k-NN entropy reward is positive. A teacher
    # that skips every pair trains no reward model: SAC must stay on the intrinsic reward
    # (it used to reset the critics and take reset_updates on the buffer's true rewards).
    trainer = PebbleTrainer(tiny(teacher=TeacherConfig(eps_skip=1e9)), tmp_path)
    seen = recording_updates(trainer)
    trainer.run()
    assert trainer.learning.budget.skipped == 24 and trainer.learning.reward_model.version == 0
    assert not trainer.learning.critic_reset_done
    assert len(seen) == TINY['total_steps'] - TINY['seed_steps']
    assert all(bool((rewards >= 0).all()) for rewards in seen)


def test_the_critics_are_reset_once_right_after_the_first_real_training(tmp_path):
    trainer = PebbleTrainer(tiny(), tmp_path)
    resets = []
    reset = trainer.agent.reset_critic
    trainer.agent.reset_critic = lambda: (resets.append(trainer.state.step), reset())[1]
    trainer.run()
    learning_starts = TINY['seed_steps'] + TINY['unsupervised_steps']
    assert resets == [learning_starts]  # the first session's training, then the reset
    feedback = read_csv(tmp_path / 'feedback.csv')
    assert feedback['reward_model_version'][0] == 1.0


def test_sessions_follow_the_schedule_from_the_end_of_pretraining(tmp_path):
    # The first gap used to be one step short of the interval (L + 1, then L + I).
    trainer = PebbleTrainer(tiny(), tmp_path)
    trainer.run()
    learning_starts = TINY['seed_steps'] + TINY['unsupervised_steps']
    interval = TINY['schedule']['session_interval_steps']
    steps = read_csv(tmp_path / 'feedback.csv')['step']
    assert steps == [float(learning_starts + k * interval) for k in range(4)]


def test_uniform_sessions_zero_with_an_uncertainty_sampler_falls_back_to_uniform(tmp_path):
    # pref-rl train used to raise QuerySelectionError on the first session.
    config = tiny(query=QuerySelectionConfig(sampler='entropy', uniform_sessions=0,
                                             pool_multiplier=4))
    trainer = PebbleTrainer(config, tmp_path)
    trainer.run()
    store = PreferenceStore.open(tmp_path / 'preferences')
    try:
        samplers = [store.query(f'session{s:04d}-q000').sampler for s in range(4)]
    finally:
        store.close()
    assert samplers == ['uniform', 'entropy', 'entropy', 'entropy']


def test_init_without_any_feedback_learns_from_the_prior(tmp_path, pretrained):  # noqa: F811
    # init with total_budget 0 used to run its whole length without a single SAC update.
    from test_fewshot_arms import REWARD_MODEL

    config = tiny(algorithm='init', pretrained_reward=str(pretrained), unsupervised_steps=0,
                  reward_model=from_mapping(TrainConfig, {'reward_model': REWARD_MODEL}
                                            ).reward_model,
                  schedule=dataclasses.replace(tiny().schedule, total_budget=0))
    trainer = PebbleTrainer(config, tmp_path / 'run')
    assert trainer.learning.update_kind(TINY['seed_steps'] + 1) is UpdateKind.LEARNED
    seen = recording_updates(trainer)
    trainer.run()
    assert len(seen) == TINY['total_steps'] - TINY['seed_steps']
    # SAC learnt from the prior's (normalised) reward, never from the env's: every stored
    # transition carries r̂ of the prior (a state-only model here).
    buffer, model = trainer.learning.buffer, trainer.learning.reward_model
    assert model.version == 0 and model.normalizer.fitted
    torch.testing.assert_close(buffer.rewards, model.reward(buffer.observations_view()))
    assert not torch.allclose(buffer.true_rewards, buffer.rewards)


# --------------------------------------------------- query options reach the selector ---

OPTIONS = QuerySelectionConfig(sampler='kcenter', pool_multiplier=3, uniform_sessions=0,
                               kcenter_features='state')


@pytest.fixture
def selections(monkeypatch):
    """Every select_queries call the component makes, with its arguments."""
    calls = []
    select = reward_learning.select_queries

    def spy(pairs, num, sampler, rng, **kwargs):
        calls.append({'pool': pairs.num_pairs, 'num': num, 'sampler': sampler, **kwargs})
        return select(pairs, num, sampler, rng, **kwargs)

    monkeypatch.setattr(reward_learning, 'select_queries', spy)
    return calls


def _check_options(calls, num=None):
    assert calls, 'the driver never selected queries'
    first = calls[0]
    assert first['sampler'] == 'kcenter' and first['kcenter_features'] == 'state'
    num = first['num'] if num is None else num
    assert first['num'] == num and num < first['pool'] <= OPTIONS.pool_multiplier * num
    assert calls[-1]['labelled'] is not None  # later sessions see what was labelled


def test_query_options_reach_the_selector_in_pref_rl_train(tmp_path, selections):
    PebbleTrainer(tiny(query=OPTIONS), tmp_path).run()
    _check_options(selections, TINY['schedule']['queries_per_session'])


def test_query_options_reach_the_selector_in_the_ros_learner(tmp_path, selections):
    config = from_mapping(TrainConfig, {
        'task': 'point_mass', 'total_steps': 3000, 'seed_steps': 300, 'unsupervised_steps': 0,
        'sac': {'hidden_sizes': [32, 32], 'batch_size': 64, 'device': 'cpu'},
        'reward_model': {'hidden_sizes': [32, 32]}, 'reward_training': {'max_epochs': 5},
        'query': dataclasses.asdict(OPTIONS),
        'schedule': {'queries_per_session': 5, 'session_interval_steps': 300,
                     'total_budget': 10}})
    core = LearnerCore(config, PACE, tmp_path)
    try:
        from test_learner_core import Teacher

        feed(core, rollout(1000, seed=3), teacher=Teacher())
    finally:
        core.close()
    assert len(selections) == 2
    _check_options(selections, 5)


def test_query_options_reach_the_selector_in_the_drlhp_worker(tmp_path, selections):
    config = point_mass_config(query=OPTIONS)
    worker = make_worker(tmp_path, config, [])
    try:
        feed_worker(worker, [c._replace(env_steps=100) for c in rollout_clips(60)])
        worker.run_session()
        worker.train()
        worker.run_session()
    finally:
        worker.close()
    _check_options(selections)


def test_every_driver_trains_on_every_label_by_default(tmp_path):
    trainer = PebbleTrainer(tiny(), tmp_path)
    trainer.run()
    counts = trainer.learning.budget
    store = PreferenceStore.open(tmp_path / 'preferences')
    try:
        split = store.counts()
    finally:
        store.close()
    assert split['val'] == 0 and split['train'] == counts.labelled > 0
    assert np.isfinite(read_csv(tmp_path / 'feedback.csv')['train_accuracy']).all()


def test_a_small_buffer_never_asks_the_same_pair_twice_in_a_session(tmp_path):
    # With few segments the random draw repeats pairs; pref-rl train used to store both
    # copies and fail with DuplicatePairError ("already asked as query ...").
    config = tiny(total_steps=300, seed_steps=256, unsupervised_steps=0, eval_interval_steps=300,
                  schedule=dataclasses.replace(tiny().schedule, queries_per_session=30,
                                               total_budget=30),
                  query=QuerySelectionConfig(sampler='uniform', pool_multiplier=10))
    trainer = PebbleTrainer(config, tmp_path)
    trainer.run()
    store = PreferenceStore.open(tmp_path / 'preferences')
    try:
        pairs = [frozenset((store.query(f'session0000-q{j:03d}').left.segment_id,
                            store.query(f'session0000-q{j:03d}').right.segment_id))
                 for j in range(30)]
    finally:
        store.close()
    assert len(set(pairs)) == 30


def test_the_normaliser_is_fitted_to_the_same_replay_sample_it_always_was(tmp_path):
    """One pass over the buffer serves the normaliser fit and the relabelling: the
    statistics are those of ``NORMALIZER_SAMPLES`` transitions drawn by ``buffer.sample``
    from the run's generator (the draw is unchanged), and every stored transition carries
    the new model's normalised reward."""
    trainer = PebbleTrainer(tiny(), tmp_path)
    trainer.run()
    learning = trainer.learning
    state = learning.sample_generator.get_state()
    version = learning.reward_model.version
    store = PreferenceStore.open(tmp_path / 'preferences', learning.store_config())
    try:
        assert learning.fit_reward(store) is not None
    finally:
        store.close()
    assert learning.reward_model.version == version + 1
    replay = torch.Generator()
    replay.set_state(state)  # the draw fit_reward made, as buffer.sample makes it
    sample = learning.buffer.sample(min(NORMALIZER_SAMPLES, len(learning.buffer)), replay)
    raw = learning.reward_model.member_rewards(sample.observations, sample.actions).double()
    normalizer = learning.reward_model.normalizer
    torch.testing.assert_close(normalizer.mean, raw.mean(dim=1).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(normalizer.std, raw.std(dim=1, correction=0).float(), rtol=1e-5,
                               atol=1e-6)
    observations, actions = learning.buffer.stored_inputs()
    torch.testing.assert_close(learning.buffer.rewards,
                               learning.reward_model.reward(observations, actions))
    assert learning.labels_from == learning.reward_model.version and learning.unlabelled == 0
