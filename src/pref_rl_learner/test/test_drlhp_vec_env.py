"""The DRLHP reward where SB3 and gymnasium users put it: the VecEnv form under DummyVecEnv
and SubprocVecEnv (one worker, store, budget and reward model), gymnasium's and SB3's env
checkers, pickling and deep copies, a session count that the seed fixes."""

import copy
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import gymnasium
import numpy as np
import pytest

from pref_rl_learner.drlhp import (
    DrlhpConfig,
    DrlhpError,
    ObservationTransformError,
    PreferenceRewardVecEnv,
    PreferenceRewardWrapper,
)
from pref_rl_learner.preferences import PreferenceStore
from pref_rl_learner.reward import RewardModelConfig, RewardTrainingConfig
from pref_rl_learner.schedule import FeedbackScheduleConfig


def small_config(**overrides) -> DrlhpConfig:
    """Clips of 10 steps, a session of 8 queries every 200 steps, a small fast ensemble."""
    base = dict(
        segment_length=10, store_fsync=False, min_labels_to_train=8, checkpoint_interval=0,
        min_session_clips=16,
        schedule=FeedbackScheduleConfig(kind='constant', queries_per_session=8,
                                        session_interval_steps=200, total_budget=64),
        reward_model=RewardModelConfig(hidden_sizes=(32, 32), device='cpu'),
        reward_training=RewardTrainingConfig(random_response=0.1, adaptive_l2=True,
                                             weight_decay=1e-4, batch_size=32,
                                             max_gradient_steps=20))
    base.update(overrides)
    return DrlhpConfig(**base)


def stored_queries(log_dir) -> list:
    with PreferenceStore.open(log_dir / 'preferences') as store:
        return [store.query(q) for q in store.query_ids()]


@pytest.mark.parametrize('vec_env_cls', ['dummy', 'subproc'])
def test_ppo_on_the_vec_env_form_shares_one_worker_store_and_model(tmp_path, vec_env_cls):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls = DummyVecEnv if vec_env_cls == 'dummy' else SubprocVecEnv
    venv = PreferenceRewardVecEnv(make_vec_env('CartPole-v1', n_envs=4, seed=0,
                                               vec_env_cls=cls),
                                  small_config(), tmp_path, task='CartPole-v1')
    try:
        worker = venv.worker_pid
        agent = PPO('MlpPolicy', venv, n_steps=128, batch_size=64, n_epochs=2, seed=0)
        agent.learn(1024)
        status = venv.wait_for(trainings=1, labelled=16, timeout_s=60)
        assert venv.worker_pid == worker and status['envs_attached'] == 4
        assert status['clips_dropped'] == 0 and venv.using_predicted_reward
        # The predicted reward, for the whole batch at once, from the one shared model.
        observations = venv.reset()
        _, rewards, _, infos = venv.step(np.zeros(4, np.int64))
        encoded = np.eye(2, dtype=np.float32)[np.zeros(4, int)]
        np.testing.assert_allclose(
            rewards, venv.predict_rewards(observations.astype(np.float32), encoded),
            rtol=1e-4, atol=1e-5)
        assert all(info['true_reward'] == 1.0 for info in infos)
        mean_reward, _ = evaluate_policy(agent, venv, n_eval_episodes=2)
        assert np.isfinite(mean_reward)
    finally:
        venv.close()
    queries = stored_queries(tmp_path)
    # One store: clips of every sub-env among the queried segments.
    tracks = {s.segment_id.rsplit('-', 1)[0] for q in queries for s in (q.left, q.right)}
    assert len(tracks) == 4, tracks
    assert len(queries) >= status['queries'] >= 16  # (evaluation stepped on)
    assert not (tmp_path / 'preferences').with_name('preferences-1').exists()


def test_single_env_wrappers_on_one_log_dir_share_one_worker(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env('CartPole-v1', n_envs=2, seed=0,
                        wrapper_class=PreferenceRewardWrapper,
                        wrapper_kwargs={'config': small_config(), 'log_dir': tmp_path})
    try:
        pids = venv.get_attr('worker_pid')
        assert pids[0] is not None and pids[0] == pids[1]
        assert venv.envs[0].status['envs_attached'] == 2
        with pytest.raises(DrlhpError, match='another config'):
            PreferenceRewardWrapper(gymnasium.make('CartPole-v1'),
                                    small_config(segment_length=5), tmp_path)
    finally:
        venv.close()


def _construct_in_daemon(log_dir, out) -> None:
    try:
        PreferenceRewardWrapper(gymnasium.make('CartPole-v1'), small_config(), log_dir)
        out.put('started')
    except DrlhpError as err:
        out.put(str(err))


def test_a_daemonic_process_is_told_to_use_the_vec_env_form(tmp_path):
    context = multiprocessing.get_context('spawn')
    out = context.Queue()
    child = context.Process(target=_construct_in_daemon, args=(tmp_path, out), daemon=True)
    child.start()
    message = out.get(timeout=60)
    child.join(10)
    assert 'daemonic' in message and 'PreferenceRewardVecEnv' in message


def test_gymnasium_and_sb3_env_checkers_pass(tmp_path):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = PreferenceRewardWrapper(gymnasium.make('Pendulum-v1'), small_config(), tmp_path)
    try:
        assert env.spec is not None  # RecordConstructorArgs: the spec can re-create it
        check_env(env, skip_render_check=True)  # re-creates and closes a copy
        sb3_check_env(env, warn=False)
        env.reset(seed=0)
        env.step(env.action_space.sample())  # the original still works
        assert env.status['envs_attached'] >= 1
    finally:
        env.close()


def test_pickle_and_deepcopy_reconnect(tmp_path):
    env = PreferenceRewardWrapper(gymnasium.make('Pendulum-v1'), small_config(), tmp_path)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(600):
        env.step(rng.uniform(-2, 2, 1).astype(np.float32))
    env.wait_for(trainings=1, timeout_s=60)
    queries = env.refresh_status()['queries']
    copied, unpickled = copy.deepcopy(env), pickle.loads(pickle.dumps(env))
    for other in (copied, unpickled):  # attached to the live worker of this process
        assert other.worker_pid == env.worker_pid and other.trainings == env.trainings
        other.reset(seed=1)
        _, reward, *_ = other.step(np.zeros(1, np.float32))
        assert np.isfinite(reward) and other.using_predicted_reward
        other.close()
    status = env.refresh_status()  # the copies are closed, the run goes on
    assert status['holders'] == 1 and status['queries'] >= queries
    data = pickle.dumps(env)
    # Another process cannot open the live run's store: a clear StoreError, no lock error.
    script = textwrap.dedent('''
        import pickle, sys
        try:
            pickle.loads(sys.stdin.buffer.read())
        except Exception as err:
            print(type(err).__name__, err)
    ''')
    child = subprocess.run([sys.executable, '-c', script], input=data, capture_output=True,
                           timeout=120)
    assert child.stdout.decode().startswith('StoreError'), child.stdout + child.stderr
    assert 'open in another store' in child.stdout.decode()
    old_pid = env.worker_pid
    env.close()
    queries = env.status['queries']  # the worker's last figures
    # Once the run is gone the copy starts a worker of its own on the durable store.
    revived = pickle.loads(data)
    try:
        assert revived.worker_pid not in (None, old_pid)
        assert revived.refresh_status()['queries'] == queries
    finally:
        revived.close()


def test_the_seed_fixes_the_sessions_whatever_the_worker_speed(tmp_path):
    """A worker stopped while the agent runs holds the same sessions, with the same pairs
    and labels, as one that kept up: each session draws from the clips closed by its
    step, and the first waits for a pool of ``min_session_clips``."""

    def run(log_dir, stall: bool):
        env = PreferenceRewardWrapper(gymnasium.make('Pendulum-v1'),
                                      small_config(queue_size=512), log_dir)
        if stall:
            os.kill(env.worker_pid, signal.SIGSTOP)
        try:
            rng = np.random.default_rng(0)
            env.reset(seed=0)
            for step in range(1000):
                env.step(rng.uniform(-2, 2, 1).astype(np.float32))
                if step % 200 == 199:
                    env.reset()
        finally:
            if stall:
                os.kill(env.worker_pid, signal.SIGCONT)
        deadline_status = env.wait_for(labelled=48, timeout_s=60)
        status = env.refresh_status()
        assert status['sessions'] == status['sessions_due'] == 6, status
        assert status['session_backlog'] == 0 and deadline_status['clips_dropped'] == 0
        env.close()
        return status, [(q.feedback_session, q.left.episode, q.left.start_step,
                         q.right.episode, q.right.start_step) for q in stored_queries(log_dir)]

    kept_up, pairs = run(tmp_path / 'a', stall=False)
    stalled, stalled_pairs = run(tmp_path / 'b', stall=True)
    assert kept_up['labelled'] == stalled['labelled'] == 48  # sessions at 0, 200, ... 1000
    assert [p[0] for p in pairs].count(0) == 8  # the first session has its full size
    assert pairs == stalled_pairs


def test_channels_last_pixels_are_named_as_such(tmp_path):
    class Pixels(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        action_space = gymnasium.spaces.Discrete(3)

    config = small_config(reward_model=RewardModelConfig(encoder='cnn', device='cpu'))
    with pytest.raises(ObservationTransformError, match=r'\[H, W, C\].*HWC.*pixel_transform'):
        PreferenceRewardWrapper(Pixels(), config, tmp_path)

