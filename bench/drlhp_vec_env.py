"""Benchmark: SB3 PPO on LunarLander-v3 through the DRLHP VecEnv form vs the true reward.

Workload: stable-baselines3 PPO (``MlpPolicy``; SB3's default rollout of 2,048 steps, here 256
per sub-env, batch 64, 10 epochs; the rl-zoo LunarLander γ 0.999, λ 0.98, entropy 0.01: 146
policy updates in 300k steps, where the zoo's 1,024 steps per sub-env gave 36) on 8 sub-envs of
``LunarLander-v3``
(``DummyVecEnv``; Box2D from PyPI, a benchmark-only dependency in ``bench/requirements.txt``).
Arms, each on the same 3 seeds:

- ``wrapped``: PPO on :class:`pref_rl_learner.drlhp.PreferenceRewardVecEnv`, one worker for
  the 8 sub-envs, scripted oracle labels only (DRLHP's defaults: decaying rate q·H/(H+t) from
  20 queries per 1,000 steps, budget 500, disagreement selection, 10% random-response model,
  adaptive L2, normalised reward; the predicted reward from the first training on);
- ``random_labels`` (the control): the same, every answer a coin flip (teacher preset
  ``random``): what PPO reaches on a reward learned from labels that carry nothing;
- ``true_reward`` (the peer): the same PPO on the env's own reward;
- ``random``: uniformly random actions.

Figures: mean true return of 10 deterministic evaluation episodes per seed (a fresh env),
labels used, feedback sessions held vs due by the schedule, trainings, clips dropped,
episode-end clips (aligned and padded), steps per second. Then the worker's memory with
pixels: 64×64×3 ``uint8`` frames through ``pixel_transform`` and the ``cnn`` ensemble, the
worker's RSS (``/proc/<pid>/status`` VmRSS) after each of 1,200 clips of 25 steps, the RSS
per 1,000 clips, against the float32 two-frames-per-step layout the wrapper used before
(``float32_layout_mb_per_1000_clips``, computed), and the store's bytes on disk per query.

Run: scripts/bench drlhp_vec_env (or python bench/drlhp_vec_env.py inside scripts/env.sh);
``--steps`` sets the PPO budget per run (default 300k), --quick for a smoke run. Finished runs
are kept in ``bench/results/drlhp_vec_env.partial.json``; a rerun with the same ``--steps``
resumes after them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import gymnasium
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result

NAME = 'drlhp_vec_env'
N_ENVS = 8
SEEDS = (0, 1, 2)
EVAL_EPISODES = 10
PPO_STEPS_PER_ENV = 256
LEARNED_ARMS = {'wrapped': 'oracle', 'random_labels': 'random'}
"""The arms on a learned reward, by the scripted teacher that labels for them."""


def drlhp_config(seed: int, teacher_preset: str = 'oracle'):
    from pref_rl_learner.drlhp import DrlhpConfig
    from pref_rl_learner.reward import RewardModelConfig, RewardTrainingConfig

    return DrlhpConfig(
        segment_length=25, store_fsync=False, seed=seed, teacher_preset=teacher_preset,
        reward_model=RewardModelConfig(hidden_sizes=(64, 64), device='cpu'),
        reward_training=RewardTrainingConfig(random_response=0.1, adaptive_l2=True,
                                             weight_decay=1e-4, max_epochs=100,
                                             batch_size=64, max_gradient_steps=100))


def ppo(env, seed: int):
    from stable_baselines3 import PPO

    return PPO('MlpPolicy', env, n_steps=PPO_STEPS_PER_ENV, batch_size=64, n_epochs=10,
               gamma=0.999, gae_lambda=0.98, ent_coef=0.01, seed=seed, verbose=0)


def evaluate(act, seed: int) -> float:
    env = gymnasium.make('LunarLander-v3')
    returns = []
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 + 100 * seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def run_arm(arm: str, seed: int, steps: int, root: Path) -> dict:
    from stable_baselines3.common.env_util import make_vec_env

    from pref_rl_learner.drlhp import PreferenceRewardVecEnv

    venv = make_vec_env('LunarLander-v3', n_envs=N_ENVS, seed=seed)
    out: dict = {}
    learned = arm in LEARNED_ARMS
    if learned:
        venv = PreferenceRewardVecEnv(venv, drlhp_config(seed, LEARNED_ARMS[arm]),
                                      root / f'{arm}-{seed}', task='LunarLander-v3')
    start = time.perf_counter()
    agent = ppo(venv, seed)
    agent.learn(steps)
    seconds = time.perf_counter() - start
    if learned:
        status = venv.refresh_status()
        out = {k: status[k] for k in (
            'labelled', 'answered', 'sessions', 'sessions_due', 'session_backlog',
            'trainings', 'clips_sent', 'clips_dropped', 'episode_end_clips_aligned',
            'episode_end_clips_padded', 'partial_clips_discarded', 'val_accuracy')}
    venv.close()
    if learned:
        out['queried_segments_with_abs_reward_ge_50'] = terminal_queries(root / f'{arm}-{seed}')
    out['return'] = evaluate(lambda o: agent.predict(o, deterministic=True)[0], seed)
    out['steps_per_s'] = steps / seconds
    return out


def terminal_queries(log_dir: Path) -> int:
    """Queried segments holding a step with |true reward| >= 50 (a landing or a crash)."""
    from pref_rl_learner.preferences import PreferenceStore

    with PreferenceStore.open(log_dir / 'preferences') as store:
        count = 0
        for query_id in store.query_ids():
            query = store.query(query_id)
            count += sum(int(np.abs(s.rewards).max() >= 50) for s in (query.left, query.right))
        return count


class Frames(gymnasium.Env):
    """64×64×3 uint8 frames of noise (as incompressible as camera frames), random rewards."""

    observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        frame = self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        return frame, float(self.np_random.normal()), False, self.t >= 200, {}


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def pixel_memory(clips: int, root: Path) -> dict:
    from pref_rl_learner.drlhp import DrlhpConfig, PreferenceRewardWrapper, pixel_transform
    from pref_rl_learner.reward import RewardModelConfig
    from pref_rl_learner.schedule import FeedbackScheduleConfig

    length = 25
    config = DrlhpConfig(
        segment_length=length, store_fsync=False, mode='collect_only', queue_size=4096,
        schedule=FeedbackScheduleConfig(kind='constant', queries_per_session=10,
                                        session_interval_steps=5000, total_budget=100),
        reward_model=RewardModelConfig(encoder='cnn', device='cpu'))
    env = PreferenceRewardWrapper(Frames(), config, root / 'pixels',
                                  obs_transform=pixel_transform())
    env.reset(seed=0)
    pid = env.worker_pid
    warm = 200
    marks: dict[int, float] = {}
    while env.clips_sent < clips + warm:
        if env.step(env.action_space.sample())[3]:  # truncated
            env.reset()
        sent = env.clips_sent
        if sent in (warm, clips + warm) and sent not in marks:
            deadline = time.monotonic() + 60
            while env.refresh_status()['clips_received'] < sent and time.monotonic() < deadline:
                time.sleep(0.05)
            marks[sent] = rss_mb(pid)
    status = env.refresh_status()
    env.close()
    store_bytes = sum(p.stat().st_size for p in (root / 'pixels' / 'preferences').glob('*'))
    per_1000 = (marks[clips + warm] - marks[warm]) / clips * 1000
    old_layout = 2 * length * 3 * 64 * 64 * 4 * 1000 / 2**20
    return {'pixel_clips_measured': clips, 'pixel_frame_shape': '64x64x3 uint8',
            'worker_rss_mb_per_1000_clips': round(per_1000, 1),
            'worker_rss_mb_at_start_of_measure': round(marks[warm], 1),
            'clip_payload_mb_per_1000_clips': round((length + 1) * 3 * 64 * 64 * 1000 / 2**20, 1),
            'float32_layout_mb_per_1000_clips': round(old_layout, 1),
            'ratio_float32_layout_over_measured': round(old_layout / per_1000, 2),
            'store_bytes_per_query': round(store_bytes / max(status['queries'], 1)),
            'pixel_queries_stored': status['queries'],
            'pixel_clips_dropped': status['clips_dropped']}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='a short smoke run')
    parser.add_argument('--steps', type=int, default=300_000, help='PPO env steps per run')
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    steps = 8192 if args.quick else args.steps
    root = Path(tempfile.mkdtemp(prefix='drlhp-vec-'))
    partial = RESULTS / f'{NAME}.partial.json'
    done = json.loads(partial.read_text()) if partial.exists() and not args.quick else {}
    if done.get('steps') != steps or done.get('ppo_steps_per_env') != PPO_STEPS_PER_ENV:
        done = {}
    if done:
        figures: dict = {k: v for k, v in done.items()
                         if k not in ('steps', 'ppo_steps_per_env', 'runs')}
        print(f'resuming from {partial}', flush=True)
    else:
        figures = pixel_memory(100 if args.quick else 1000, root)
    print(json.dumps(figures), flush=True)
    runs: dict[str, list[dict]] = {arm: done.get('runs', {}).get(arm, [])
                                   for arm in ('wrapped', 'random_labels', 'true_reward')}
    for index, seed in enumerate(SEEDS):
        for arm in runs:
            if index < len(runs[arm]):
                continue
            result = run_arm(arm, seed, steps, root)
            runs[arm].append(result)
            print(arm, seed, json.dumps(result), flush=True)
            if not args.quick:
                partial.write_text(json.dumps({'steps': steps, 'ppo_steps_per_env':
                                               PPO_STEPS_PER_ENV, 'runs': runs, **figures},
                                              indent=1))
    rng = np.random.default_rng(0)
    random_returns = [evaluate(lambda o: int(rng.integers(4)), seed) for seed in SEEDS]
    wrapped = [r['return'] for r in runs['wrapped']]
    control = [r['return'] for r in runs['random_labels']]
    true = [r['return'] for r in runs['true_reward']]
    figures.update({
        'ppo_steps_per_run': steps, 'ppo_steps_per_env_per_rollout': PPO_STEPS_PER_ENV,
        'ppo_epochs': 10, 'n_envs': N_ENVS, 'seeds': len(SEEDS),
        'eval_episodes_per_seed': EVAL_EPISODES,
        'wrapped_return_mean': round(float(np.mean(wrapped)), 1),
        'wrapped_return_per_seed': [round(x, 1) for x in wrapped],
        'random_labels_return_mean': round(float(np.mean(control)), 1),
        'random_labels_return_per_seed': [round(x, 1) for x in control],
        'wrapped_minus_random_labels_return': round(float(np.mean(wrapped) - np.mean(control)),
                                                    1),
        'random_labels_labels_per_seed': [r['labelled'] for r in runs['random_labels']],
        'true_reward_return_mean': round(float(np.mean(true)), 1),
        'true_reward_return_per_seed': [round(x, 1) for x in true],
        'random_return_mean': round(float(np.mean(random_returns)), 1),
        'wrapped_minus_true_reward_return': round(float(np.mean(wrapped) - np.mean(true)), 1),
        'labels_per_seed': [r['labelled'] for r in runs['wrapped']],
        'sessions_held_per_seed': [r['sessions'] for r in runs['wrapped']],
        'sessions_due_per_seed': [r['sessions_due'] for r in runs['wrapped']],
        'session_backlog_per_seed': [r['session_backlog'] for r in runs['wrapped']],
        'trainings_per_seed': [r['trainings'] for r in runs['wrapped']],
        'clips_dropped_per_seed': [r['clips_dropped'] for r in runs['wrapped']],
        'episode_end_clips_aligned_per_seed': [r['episode_end_clips_aligned']
                                               for r in runs['wrapped']],
        'queried_segments_with_abs_reward_ge_50_per_seed': [
            r['queried_segments_with_abs_reward_ge_50'] for r in runs['wrapped']],
        'val_accuracy_per_seed': [round(r['val_accuracy'], 3) for r in runs['wrapped']],
        'wrapped_steps_per_s_mean': round(float(np.mean([r['steps_per_s']
                                                          for r in runs['wrapped']])), 1),
        'true_reward_steps_per_s_mean': round(float(np.mean([r['steps_per_s']
                                                             for r in runs['true_reward']])), 1),
        'peer': 'PPO on the true reward (same seeds, same steps); random actions'})
    path = write_result(NAME, figures,
                        f'SB3 PPO on LunarLander-v3, {N_ENVS} DummyVecEnv sub-envs, {steps} steps '
                        f'per run, seeds {SEEDS}; wrapped = PreferenceRewardVecEnv with oracle '
                        'labels only, random_labels = the same with coin-flip answers (the '
                        'control). Pixel memory: 64x64x3 uint8 frames, cnn ensemble.'
                        + (' (quick run)' if args.quick else ''))
    partial.unlink(missing_ok=True)
    plot(figures, path.with_suffix('.png'))
    print(f'wrote {path}')


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    arms = ['wrapped', 'random_labels', 'true_reward', 'random']
    means = [figures[f'{arm}_return_mean'] for arm in arms]
    ax.bar([a.replace('_', '\n') for a in arms], means,
           color=['tab:blue', 'tab:orange', 'tab:green', 'tab:gray'])
    for i, arm in enumerate(arms[:3]):
        ax.scatter([i] * len(SEEDS), figures[f'{arm}_return_per_seed'], color='k', zorder=3, s=12)
    for i, mean in enumerate(means):
        ax.annotate(f'{mean:.0f}', (i, mean), textcoords='offset points', ha='center',
                    xytext=(0, 4 if mean >= 0 else -12), fontsize=8)
    ax.axhline(0, color='k', linewidth=0.5)
    ax.set_ylabel('true return (10 eval episodes)')
    ax.set_title(f"PPO LunarLander-v3, {figures['ppo_steps_per_run']} steps, 8 envs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
