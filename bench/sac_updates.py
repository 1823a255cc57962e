"""Benchmark: SAC gradient steps per second against stable-baselines3 and the matmul limit.

Both agents get the same problem and settings: actor and twin critics 3x256 (ReLU), batch 512,
Adam 3e-4 for actor, critics and temperature, tau 0.005, target update every 2 steps, learned
temperature starting at 0.1, one gradient step per call. Both replay buffers hold the same
20k random transitions. One step of ours is ``buffer.sample(512) + agent.update(batch)``; the
peer's is one step of ``model.train(gradient_steps=N, batch_size=512)`` (its own sampling
included; its logger is set up first). The limit: the matrix products one of our updates runs
(captured from it, forward and backward; their FLOPs are ``*_ours_update_gflop``) replayed
alone as fp32 ``torch.mm`` on preallocated, cache-hot operands, i.e. the machine's matmul
rate at the update's own shapes, measured in the same run. ``*_sb3_update_gflop`` counts the
peer's products the same way. A variant with ``torch.compile(agent.update)`` is measured at
one thread, with the time of its first (compiling) call. Trials of N steps alternate between
the runners in one process, so slow phases of a shared machine hit all; figures are medians
over trials, in wall-clock updates/s, plus updates per CPU-second of the process at one
thread. All run with freed host memory retained (``pref_rl_learner.host_memory``, set
process-wide by our SAC), which spares both agents a page fault per fresh activation.
Sizes: MetaWorld-like (39-D observation, 4-D action) and small (4-D, 2-D), same networks.

Why the ratios are what they are: an update is fp32 matrix products, and both agents run
them at a large fraction of the rate the same products reach alone. Ours computes fewer: it
skips the critic weight gradients of the actor loss (the peer computes and discards them),
backpropagates the actor loss through the minimising critic only (row by row), runs both
critics as one batched matmul per layer, and uses fused Adam, one foreach Polyak update and
no per-step reads back to Python. The ratio to the peer is therefore bounded by the FLOP
ratio times the efficiency ratio; 2x the peer would need updates faster than the fp32 matmul
limit of our own (smaller) product list. Inductor's ``torch.compile`` takes about 50 s to
compile cold (``torch_compile_first_call_s`` is about 10 s from its on-disk cache) and fuses
only the elementwise remainder, which is not where the time goes: it is not used. Nor are
per-member ``addmm`` critics (measured no faster than the batched ``baddbmm`` here).
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
from common import capture_gemms, gemm_flop, gemm_replay, write_result

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


def make_ours(obs_dim: int, act_dim: int, data: dict, compile_update: bool = False):
    from pref_rl_learner.sac import SAC, ReplayBuffer, SACConfig
    agent = SAC(obs_dim, act_dim, SACConfig(hidden_sizes=HIDDEN, batch_size=BATCH,
                                            device='cpu'), seed=0)
    update = torch.compile(agent.update) if compile_update else agent.update
    buffer = ReplayBuffer((obs_dim,), act_dim, FILL)
    for i in range(len(data['rew'])):
        buffer.add(data['obs'][i], data['act'][i], float(data['rew'][i]), data['next_obs'][i],
                   False, bool(data['truncated'][i]))
    generator = torch.Generator().manual_seed(0)

    def steps(n: int) -> None:
        for _ in range(n):
            update(buffer.sample(BATCH, generator))
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


def make_compiled(obs_dim: int, act_dim: int, data: dict):
    """Ours with ``torch.compile(agent.update)`` (default inductor backend); also returns
    the seconds the first (compiling) call took."""
    steps = make_ours(obs_dim, act_dim, data, compile_update=True)
    start = time.perf_counter()
    steps(1)
    return steps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer trials (smoke run)')
    parser.add_argument('--no-write', action='store_true', help='print only')
    args = parser.parse_args()
    steps, trials = (5, 3) if args.quick else (20, 11)
    figures: dict = {}
    load_before = os.getloadavg()[0]
    for size, (obs_dim, act_dim) in SIZES.items():
        data = random_transitions(obs_dim, act_dim, FILL)
        torch.set_num_threads(1)
        runners = {'ours': make_ours(obs_dim, act_dim, data),
                   'sb3': make_sb3(obs_dim, act_dim, data)}
        gemms = {name: capture_gemms(lambda run=run: run(1)) for name, run in runners.items()}
        gflop = {name: gemm_flop(shapes) / 1e9 for name, shapes in gemms.items()}
        runners['limit'] = gemm_replay(gemms['ours'])
        figures[f'{size}_ours_update_gflop'] = round(gflop['ours'], 4)
        figures[f'{size}_sb3_update_gflop'] = round(gflop['sb3'], 4)
        if size == 'obs39_act4':
            runners['compiled'], seconds = make_compiled(obs_dim, act_dim, data)
            figures['torch_compile_first_call_s'] = round(seconds, 1)
        thread_counts = (1, 2) if size == 'obs39_act4' else (1,)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            if threads > 1:
                runners.pop('compiled', None)  # measured at one thread
            result = measure(runners, steps, trials)
            key = f'{size}_{threads}thread'
            ours, peer, limit = (statistics.median(result[n]['wall'])
                                 for n in ('ours', 'sb3', 'limit'))
            figures[f'{key}_ours_updates_per_s'] = round(ours, 2)
            figures[f'{key}_sb3_updates_per_s'] = round(peer, 2)
            figures[f'{key}_matmul_limit_updates_per_s'] = round(limit, 2)
            figures[f'{key}_matmul_gflop_per_s'] = round(limit * gflop['ours'], 1)
            figures[f'{key}_speedup_ours_vs_sb3'] = round(ours / peer, 3)
            figures[f'{key}_ours_fraction_of_matmul_limit'] = round(ours / limit, 3)
            figures[f'{key}_sb3_fraction_of_its_matmul_limit'] = round(
                peer * gflop['sb3'] / (limit * gflop['ours']), 3)
            line = (f'{key:20s} ours {ours:6.1f} upd/s  sb3 {peer:6.1f}  limit {limit:6.1f} '
                    f'({limit * gflop["ours"]:5.1f} GFLOP/s)  vs sb3 {ours / peer:.2f}  '
                    f'of limit {ours / limit:.2f}')
            if 'compiled' in result:
                compiled = statistics.median(result['compiled']['wall'])
                figures[f'{key}_torch_compile_updates_per_s'] = round(compiled, 2)
                figures[f'{key}_speedup_torch_compile_vs_eager'] = round(compiled / ours, 3)
                line += f'  compiled {compiled:.1f}'
            if threads == 1:
                ours_cpu, peer_cpu, limit_cpu = (statistics.median(result[n]['cpu'])
                                                 for n in ('ours', 'sb3', 'limit'))
                figures[f'{key}_ours_updates_per_cpu_s'] = round(ours_cpu, 2)
                figures[f'{key}_sb3_updates_per_cpu_s'] = round(peer_cpu, 2)
                figures[f'{key}_matmul_limit_updates_per_cpu_s'] = round(limit_cpu, 2)
                figures[f'{key}_speedup_per_cpu_s_ours_vs_sb3'] = round(ours_cpu / peer_cpu, 3)
                figures[f'{key}_ours_fraction_of_matmul_limit_per_cpu_s'] = round(
                    ours_cpu / limit_cpu, 3)
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
                       'model.train(gradient_steps=N, batch_size=512); limit: our update\'s '
                       'matrix products alone, as fp32 torch.mm on preallocated operands')
    if not args.no_write:
        path = write_result('sac_updates', figures, notes=__doc__)
        print(f'wrote {path}')


if __name__ == '__main__':
    main()
