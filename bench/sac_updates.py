"""Benchmark: SAC gradient steps per second, pref_rl_learner.sac vs stable-baselines3 SAC.

Both agents get the same problem and settings: actor and twin critics 3x256 (ReLU), batch 512,
Adam 3e-4 for actor, critics and temperature, tau 0.005, target update every 2 steps, learned
temperature starting at 0.1, one gradient step per call. Both replay buffers hold the same
20k random transitions. One step of ours is ``buffer.sample(512) + agent.update(batch)``; the
peer's is one step of ``model.train(gradient_steps=N, batch_size=512)`` (its own sampling
included; its logger is set up first). Trials of N steps alternate between the two in one
process, so slow phases of a shared machine hit both; figures are medians over trials, in
wall-clock updates/s, plus updates per CPU-second of the process (robust to other processes
taking the cores) at one thread. Sizes: MetaWorld-like (39-D observation, 4-D action) and
small (4-D observation, 2-D action), same networks.

Why the ratio is what it is: at these sizes an update is dominated by fp32 matrix products
(about three quarters of the peer's time at one thread). Ours skips the critic weight
gradients of the actor loss (the peer computes and discards them), backpropagates the actor
loss through the minimising critic only (row by row), runs both critics as one batched matmul
per layer, and uses fused Adam, one foreach Polyak update and no per-step reads back to
Python. That removes about a sixth of the matmul work and part of the rest; a much larger
ratio at the same precision would need fewer floating-point operations than SAC's maths does.
Run: scripts/bench sac_updates (or python bench/sac_updates.py inside scripts/env.sh).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

BATCH, HIDDEN, FILL = 512, (256, 256, 256), 20_000
SIZES = {'obs39_act4': (39, 4), 'obs4_act2': (4, 2)}


def random_transitions(obs_dim: int, act_dim: int, n: int, seed: int = 0) -> dict:
    """``n`` random transitions, 500-step episodes, no terminal states."""
    rng = np.random.default_rng(seed)
    return {'obs': rng.standard_normal((n, obs_dim), dtype=np.float32),
            'next_obs': rng.standard_normal((n, obs_dim), dtype=np.float32),
            'act': rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
            'rew': rng.standard_normal(n, dtype=np.float32),
            'truncated': (np.arange(n) % 500) == 499}


def make_ours(obs_dim: int, act_dim: int, data: dict):
    from pref_rl_learner.sac import SAC, ReplayBuffer, SACConfig
    agent = SAC(obs_dim, act_dim, SACConfig(hidden_sizes=HIDDEN, batch_size=BATCH,
                                            device='cpu'), seed=0)
    buffer = ReplayBuffer((obs_dim,), act_dim, FILL)
    for i in range(len(data['rew'])):
        buffer.add(data['obs'][i], data['act'][i], float(data['rew'][i]), data['next_obs'][i],
                   False, bool(data['truncated'][i]))
    generator = torch.Generator().manual_seed(0)

    def steps(n: int) -> None:
        for _ in range(n):
            agent.update(buffer.sample(BATCH, generator))
    return steps


def make_sb3(obs_dim: int, act_dim: int, data: dict):
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure

    class Box(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(obs_dim, np.float32), {}

        def step(self, action):
            return np.zeros(obs_dim, np.float32), 0.0, False, False, {}

    model = SB3SAC('MlpPolicy', Box(), learning_rate=3e-4, buffer_size=FILL, learning_starts=0,
                   batch_size=BATCH, tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1,
                   ent_coef='auto_0.1', target_update_interval=2, device='cpu', seed=0,
                   policy_kwargs={'net_arch': list(HIDDEN), 'n_critics': 2})
    model.set_logger(configure(None, []))
    rb, n = model.replay_buffer, len(data['rew'])
    rb.observations[:n, 0] = data['obs']
    rb.next_observations[:n, 0] = data['next_obs']
    rb.actions[:n, 0] = data['act']
    rb.rewards[:n, 0] = data['rew']
    rb.dones[:n, 0] = data['truncated']
    rb.timeouts[:n, 0] = data['truncated']  # SB3 does not bootstrap-cut time limits
    rb.pos, rb.full = n % FILL, n >= FILL

    def steps(k: int) -> None:
        model.train(gradient_steps=k, batch_size=BATCH)
    return steps


def measure(runners: dict, steps: int, trials: int) -> dict[str, dict[str, list[float]]]:
    """Alternating trials; per runner the wall and CPU updates/s of every trial."""
    out = {name: {'wall': [], 'cpu': []} for name in runners}
    for run in runners.values():
        run(3)  # warm-up: first-call allocations, thread pools
    for _ in range(trials):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(steps)
            out[name]['wall'].append(steps / (time.perf_counter() - wall))
            out[name]['cpu'].append(steps / (time.process_time() - cpu))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer trials (smoke run)')
    args = parser.parse_args()
    steps, trials = (5, 2) if args.quick else (20, 11)
    figures: dict = {}
    load_before = os.getloadavg()[0]
    for size, (obs_dim, act_dim) in SIZES.items():
        data = random_transitions(obs_dim, act_dim, FILL)
        runners = {'ours': make_ours(obs_dim, act_dim, data),
                   'sb3': make_sb3(obs_dim, act_dim, data)}
        thread_counts = (1, 2) if size == 'obs39_act4' else (1,)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            result = measure(runners, steps, trials)
            key = f'{size}_{threads}thread'
            ours = statistics.median(result['ours']['wall'])
            peer = statistics.median(result['sb3']['wall'])
            figures[f'{key}_ours_updates_per_s'] = round(ours, 2)
            figures[f'{key}_sb3_updates_per_s'] = round(peer, 2)
            figures[f'{key}_speedup_ours_vs_sb3'] = round(ours / peer, 3)
            line = (f'{key:20s} ours {ours:6.1f} upd/s  sb3 {peer:6.1f} upd/s  '
                    f'ratio {ours / peer:.2f}')
            if threads == 1:
                ours_cpu = statistics.median(result['ours']['cpu'])
                peer_cpu = statistics.median(result['sb3']['cpu'])
                figures[f'{key}_ours_updates_per_cpu_s'] = round(ours_cpu, 2)
                figures[f'{key}_sb3_updates_per_cpu_s'] = round(peer_cpu, 2)
                figures[f'{key}_speedup_per_cpu_s_ours_vs_sb3'] = round(ours_cpu / peer_cpu, 3)
                line += f'   per CPU-s: ours {ours_cpu:.1f} sb3 {peer_cpu:.1f}'
            print(line, flush=True)
    figures['batch_size'] = BATCH
    figures['hidden_sizes'] = 'x'.join(map(str, HIDDEN))
    figures['trials'] = trials
    figures['updates_per_trial'] = steps
    figures['torch_version'] = torch.__version__
    figures['load_average_1min_before'] = round(load_before, 2)
    figures['load_average_1min_after'] = round(os.getloadavg()[0], 2)
    figures['peer'] = ('stable-baselines3 SAC (MlpPolicy, net_arch 3x256, 2 critics), '
                       'model.train(gradient_steps=N, batch_size=512)')
    path = write_result('sac_updates', figures, notes=__doc__)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
