"""The DRLHP wrapper with its worker process: workflows round-trip, switching, external
labels, full queues, typed errors, pixels."""

import os
import queue
import signal
import threading

import gymnasium
import numpy as np
import pytest
from test_drlhp_worker import point_mass_config

from pref_rl_learner.checkpoint import CheckpointError
from pref_rl_learner.config import ConfigError
from pref_rl_learner.drlhp import (
    DrlhpConfig,
    DrlhpError,
    ObservationTransformError,
    PreferenceRewardWrapper,
    load_reward_checkpoint,
    pixel_transform,
)
from pref_rl_learner.drlhp.model_io import checkpoint_path
from pref_rl_learner.drlhp.segments import checked_observation
from pref_rl_learner.errors import InvalidLabelError
from pref_rl_learner.preferences import ConflictingLabelError, UnknownQueryError
from pref_rl_learner.reward import RewardModelConfig
from pref_rl_learner.types import Choice


def point_mass(seed: int = 0) -> gymnasium.Env:
    from pref_rl_robot.tasks import make_task

    return make_task('point_mass', seed=seed)


def run_steps(env: gymnasium.Env, steps: int, seed: int = 0) -> list[tuple[float, float]]:
    """Random actions; returns (returned reward, info['true_reward']) per step."""
    rng = np.random.default_rng(seed)
    out = []
    env.reset(seed=seed)
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 2))
        out.append((reward, info['true_reward']))
        if terminated or truncated:
            env.reset()
    return out


def test_collect_only_then_train_only_then_pretrained_round_trip(tmp_path):
    # 1. Collect only: labels from the scripted teacher, saved as train/val files.
    collect = PreferenceRewardWrapper(point_mass(), point_mass_config(mode='collect_only'),
                                      tmp_path / 'collect', task='point_mass')
    rewards = run_steps(collect, 600)
    status = collect.wait_for(labelled=20, timeout_s=60)
    assert not collect.using_predicted_reward and status['trainings'] == 0
    assert all(r == t for r, t in rewards)  # the true reward throughout
    with pytest.raises(DrlhpError, match='no reward model'):
        collect.switch_to_predicted_reward()
    collect.close()
    collect.close()  # idempotent
    assert (tmp_path / 'collect' / 'train.npz').exists()
    assert (tmp_path / 'collect' / 'val.npz').exists()
    assert not (tmp_path / 'collect' / 'checkpoints').exists()

    # 2. Train only from those files: two trainings, a checkpoint every training.
    config = point_mass_config(mode='train_only', preferences_dir=str(tmp_path / 'collect'),
                               n_initial_training_steps=2, checkpoint_interval=1)
    train = PreferenceRewardWrapper(point_mass(), config, tmp_path / 'train')
    assert not train.using_predicted_reward
    train.wait_for(trainings=2, timeout_s=60)
    assert train.using_predicted_reward and train.reward_model_version == 2
    rewards = run_steps(train, 20)
    assert all(r != t for r, t in rewards)  # predicted now; the true reward is in info
    obs = np.random.default_rng(1).uniform(-1, 1, (8, 4)).astype(np.float32)
    act = np.random.default_rng(2).uniform(-1, 1, (8, 2)).astype(np.float32)
    expected = train.predict_rewards(obs, act)
    train.switch_to_true_reward()
    assert not train.using_predicted_reward
    assert all(r == t for r, t in run_steps(train, 10))
    train.switch_to_predicted_reward()
    assert train.using_predicted_reward
    train.close()
    for trainings in (1, 2):
        model, state = load_reward_checkpoint(checkpoint_path(tmp_path / 'train', trainings))
        assert state['trainings'] == trainings and model.version == trainings
    assert not checkpoint_path(tmp_path / 'train', 3).exists()

    # 3. The pretrained model, no further training and no worker.
    pretrained = PreferenceRewardWrapper(
        point_mass(), DrlhpConfig(mode='pretrained', segment_length=10,
                                  pretrained_checkpoint=str(checkpoint_path(tmp_path / 'train',
                                                                            2))),
        tmp_path / 'use')
    assert pretrained.worker_pid is None and pretrained.using_predicted_reward
    np.testing.assert_allclose(pretrained.predict_rewards(obs, act), expected, rtol=1e-5)
    rewards = run_steps(pretrained, 10)
    assert all(r != t for r, t in rewards)
    with pytest.raises(DrlhpError, match='no worker'):
        pretrained.pending_queries()
    pretrained.close()


def test_collect_and_train_switches_after_n_initial_trainings(tmp_path):
    config = point_mass_config(n_initial_training_steps=2, checkpoint_interval=2)
    env = PreferenceRewardWrapper(point_mass(), config, tmp_path)
    run_steps(env, 150)  # one session (step 100)
    env.wait_for(trainings=1, timeout_s=60)
    assert env.trainings == 1 and not env.using_predicted_reward
    assert all(r == t for r, t in run_steps(env, 20))
    run_steps(env, 150, seed=1)  # another session, another training
    env.wait_for(trainings=2, timeout_s=60)
    assert env.using_predicted_reward
    assert all(r != t for r, t in run_steps(env, 20, seed=2))
    status = env.status
    assert status['clips_dropped'] == 0 and status['clips_sent'] == 34
    env.close()
    assert checkpoint_path(tmp_path, 2).exists() and not checkpoint_path(tmp_path, 1).exists()


def test_external_labels_through_the_thread_safe_api(tmp_path):
    config = point_mass_config(label_source='external', min_labels_to_train=4,
                               max_pending_queries=10)
    env = PreferenceRewardWrapper(point_mass(), config, tmp_path)
    run_steps(env, 150)
    pending = []
    for _ in range(200):
        pending = env.pending_queries()
        if len(pending) == 8:
            break
        threading.Event().wait(0.05)
    assert len(pending) == 8  # the decay schedule's first session
    answers = {q.query_id: Choice.LEFT if q.left.rewards.sum() > q.right.rewards.sum()
               else Choice.RIGHT for q in pending}
    ids = list(answers)
    results: list[bool] = []
    helper = threading.Thread(target=lambda: results.extend(
        env.submit_label(i, answers[i], 'gui') for i in ids[:4]))
    helper.start()
    results.extend(env.submit_label(i, answers[i], 'gui', 0.5) for i in ids[4:])
    helper.join()
    assert results == [True] * 8
    assert env.submit_label(ids[0], answers[ids[0]], 'gui') is False  # a retry
    other = Choice.RIGHT if answers[ids[0]] == Choice.LEFT else Choice.LEFT
    with pytest.raises(ConflictingLabelError):
        env.submit_label(ids[0], other, 'gui')
    with pytest.raises(UnknownQueryError):
        env.submit_label('no-such-query', Choice.LEFT)
    with pytest.raises(InvalidLabelError):
        env.submit_label(ids[1], 9)
    assert env.pending_queries() == []
    env.wait_for(trainings=1, labelled=8, timeout_s=60)
    assert env.using_predicted_reward
    env.close()


def test_full_queue_drops_clips_and_close_does_not_hang(tmp_path):
    config = point_mass_config(mode='collect_only', queue_size=2, shutdown_timeout_s=1.0)
    env = PreferenceRewardWrapper(point_mass(), config, tmp_path)
    os.kill(env.worker_pid, signal.SIGSTOP)  # a worker that takes nothing
    try:
        run_steps(env, 200)
        assert env.clips_sent == 2 and env.clips_dropped == 18
    finally:
        env.close()  # stopped worker, full queue: terminated after the timeout
    assert env.status['clips_dropped'] == 18


def test_a_dropped_clip_hands_its_finished_episodes_to_the_next(tmp_path):
    env = PreferenceRewardWrapper(point_mass(), point_mass_config(mode='collect_only'),
                                  tmp_path)
    real_queue = env._client._clips
    try:
        env._client._clips = queue.Queue(maxsize=1)  # an in-process queue with room for one clip
        rng = np.random.default_rng(0)
        env.reset(seed=0)
        episodes = 0
        while env.clips_dropped == 0 or episodes < 3:
            *_, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2))
            if terminated or truncated:
                episodes += 1
                env.reset()
        delivered = [env._client._clips.get_nowait()]
        env._client._clips = queue.Queue()  # room again
        while env._client._clips.empty():
            *_, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2))
            if terminated or truncated:
                episodes += 1
                env.reset()
        delivered.append(env._client._clips.get_nowait())
        # Every finished episode reaches the worker with some clip, none twice.
        assert sum(len(clip.finished_episodes) for clip in delivered) == episodes
    finally:
        env._client._clips = real_queue
        env.close()


def test_bad_observations_and_configs_are_typed_errors(tmp_path):
    calls = {'n': 0}

    def turns_nan(obs):
        calls['n'] += 1
        return obs if calls['n'] < 5 else np.full(4, np.nan)

    env = PreferenceRewardWrapper(point_mass(), point_mass_config(mode='collect_only'),
                                  tmp_path / 'a', obs_transform=turns_nan)
    env.reset(seed=0)
    env.step(np.zeros(2))
    with pytest.raises(ObservationTransformError, match='NaN'):
        for _ in range(5):
            env.step(np.zeros(2))
    env.close()
    with pytest.raises(DrlhpError, match='closed'):
        env.step(np.zeros(2))
    with pytest.raises(ObservationTransformError, match='shape'):
        checked_observation(lambda o: np.zeros(7), None, (6,))
    with pytest.raises(ObservationTransformError, match='numeric'):
        checked_observation(lambda o: np.array(['a']), None, None)
    with pytest.raises(ObservationTransformError, match='failed'):
        checked_observation(lambda o: o['missing'], {}, None)
    for bad in ({'mode': 'nope'}, {'segment_length': 0}, {'queue_size': 0},
                {'label_source': 'gui'}, {'teacher_preset': 'perfect'},
                {'start_method': 'fork'}, {'mode': 'pretrained'},
                {'mode': 'train_only'}, {'reply_timeout_s': 0.0}):
        with pytest.raises(ConfigError):
            DrlhpConfig(**bad)
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'\x00' * 100)
    with pytest.raises(CheckpointError):
        PreferenceRewardWrapper(point_mass(), DrlhpConfig(
            mode='pretrained', pretrained_checkpoint=str(corrupt)), tmp_path / 'c')


def test_pretrained_checkpoint_must_fit_the_env(tmp_path):
    from pref_rl_learner.drlhp import save_reward_checkpoint
    from pref_rl_learner.reward import RewardEnsemble

    model = RewardEnsemble((5,), 2, RewardModelConfig(hidden_sizes=(8,), device='cpu'))
    save_reward_checkpoint(tmp_path / 'm.pt', model, 1)
    with pytest.raises(CheckpointError, match='observations'):
        PreferenceRewardWrapper(point_mass(), DrlhpConfig(
            mode='pretrained', pretrained_checkpoint=str(tmp_path / 'm.pt')), tmp_path)


@pytest.mark.parametrize('shape', [(16, 16, 3), (24, 20, 4), (12, 12)])
def test_pixel_transform_any_size_and_channels(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = pixel_transform()(image)
    channels = shape[2] if len(shape) == 3 else 1
    # uint8 stays uint8 (one byte per value); the cnn encoder scales it to [0, 1].
    assert out.shape == (channels, shape[0], shape[1]) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], image.reshape(*shape[:2], -1)[:, :, 0])
    assert pixel_transform()(image.astype(np.float32) / 255).dtype == np.float32
    assert pixel_transform('pixels')({'pixels': image, 'state': 1}).shape == out.shape
    with pytest.raises(ObservationTransformError):
        pixel_transform()(np.zeros((2, 2, 2, 2), np.uint8))


@pytest.mark.parametrize('config', [
    RewardModelConfig(hidden_sizes=(32, 32), device='cpu'),
    RewardModelConfig(hidden_sizes=(16,), inputs='state', negative_slope=0.2, device='cpu'),
    RewardModelConfig(hidden_sizes=(16,), batch_norm=True, device='cpu'),
])
def test_per_step_reward_matches_the_ensemble(config):
    import torch

    from pref_rl_learner.drlhp.step_reward import StepReward
    from pref_rl_learner.reward import RewardEnsemble

    model = RewardEnsemble((6,), 2, config, seed=3).eval()
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(20, 6)).astype(np.float32)
    act = rng.normal(size=(20, 2)).astype(np.float32)
    model.fit_normalizer(torch.from_numpy(obs), torch.from_numpy(act))
    step_reward = StepReward(model)
    assert step_reward.numpy_path == (not config.batch_norm)
    expected = model.reward(torch.from_numpy(obs), torch.from_numpy(act)).numpy()
    got = [step_reward(obs[i], act[i]) for i in range(20)]
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_wait_for_without_stepping_sees_labels_given_meanwhile(tmp_path):
    config = point_mass_config(mode='collect_only', label_source='external',
                               max_pending_queries=8)
    env = PreferenceRewardWrapper(point_mass(), config, tmp_path)
    try:
        run_steps(env, 150)
        for _ in range(200):
            pending = env.pending_queries()
            if len(pending) == 8:
                break
            threading.Event().wait(0.05)
        for query in pending[:5]:
            env.submit_label(query.query_id, Choice.LEFT)
        env.submit_label(pending[5].query_id, Choice.SKIP)
        # No step since the labels: the status is asked for, not waited for.
        status = env.wait_for(labelled=5, timeout_s=5)
        assert status['labelled'] == 5 and status['answered'] == 6
    finally:
        env.close()
