"""Benchmark: per-step overhead of the DRLHP wrapper while its worker trains, vs the bare env.

Workload: the point mass (``pref_rl_robot.tasks.make_task('point_mass')``, pure numpy, about
10 µs a step), random actions drawn up front, episodes of 50 steps. The wrapper
(:class:`pref_rl_learner.drlhp.PreferenceRewardWrapper`) records clips of 10 steps, sends them
to its worker process over the bounded queue, and returns the predicted reward of its local
CPU copy of the ensemble (3 members, 3×256 MLPs over state and action, the DRLHP/PEBBLE
default) evaluated one step at a time (numpy, see below). Meanwhile the worker asks the
scripted teacher every 500 steps and retrains on every new batch of labels (50 epochs, no
early stop), so training runs during the measurement.

Figures (best of ``ROUNDS`` interleaved rounds of ``steps`` steps each):

- ``unwrapped_us_per_step``: the bare env (the peer);
- ``wrapped_true_reward_us_per_step``: the wrapper returning the true reward (recording,
  transform checks and clip sending only);
- ``wrapped_predicted_us_per_step``: the wrapper returning the predicted reward (one forward
  pass of the ensemble per step) while the worker trains;
- ``overhead_ratio_*``: wrapped over unwrapped;
- ``reward_per_step_numpy_us`` (what ``step`` uses: :mod:`pref_rl_learner.drlhp.step_reward`),
  ``reward_per_step_torch_us`` (the torch model on one transition) and
  ``reward_batched_inference_us_per_step`` (torch on clips of 10 at once: what a design
  that labels whole clips after the fact would pay per transition);
- trainings and labels that happened during the measurement, clips dropped.

One torch thread in the agent process (the worker uses one as well), wall time
(``time.perf_counter``). Run: scripts/bench (or python bench/drlhp_overhead.py inside
scripts/env.sh); --quick for a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

ROUNDS = 3


def run_steps(env, actions: np.ndarray) -> float:
    """µs per step over ``actions``, resetting at episode ends."""
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / len(actions) * 1e6


def inference_costs(wrapper, repeats: int) -> tuple[float, float, float]:
    """µs per transition, best of 3: numpy per step (what ``step`` uses), torch per step,
    torch on clips of 10 at once."""
    from pref_rl_learner.drlhp.step_reward import StepReward

    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (10, 6)).astype(np.float32)
    act = rng.uniform(-1, 1, (10, 2)).astype(np.float32)
    step_reward = StepReward(wrapper.reward_model)
    costs: dict[str, list[float]] = {'numpy': [], 'torch': [], 'batched': []}
    for _ in range(3):
        for name, call in (('numpy', step_reward), ('torch', step_reward._torch)):
            start = time.perf_counter()
            for i in range(repeats):
                call(obs[i % 10], act[i % 10])
            costs[name].append((time.perf_counter() - start) / repeats * 1e6)
        start = time.perf_counter()
        for _ in range(repeats // 10):
            wrapper.predict_rewards(obs, act)
        costs['batched'].append((time.perf_counter() - start) / (repeats // 10 * 10) * 1e6)
    return min(costs['numpy']), min(costs['torch']), min(costs['batched'])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='a short smoke run')
    args = parser.parse_args()
    steps = 2000 if args.quick else 20_000

    from pref_rl_learner.drlhp import DrlhpConfig, PreferenceRewardWrapper
    from pref_rl_learner.reward import RewardModelConfig, RewardTrainingConfig
    from pref_rl_learner.schedule import FeedbackScheduleConfig
    from pref_rl_robot.tasks import make_task

    torch.set_num_threads(1)
    config = DrlhpConfig(
        segment_length=10, store_fsync=False, min_labels_to_train=10,
        n_initial_training_steps=1, checkpoint_interval=0,
        schedule=FeedbackScheduleConfig(kind='constant', queries_per_session=20,
                                        session_interval_steps=500, first_session_step=500,
                                        total_budget=100_000),
        reward_model=RewardModelConfig(device='cpu'),
        reward_training=RewardTrainingConfig(random_response=0.1, adaptive_l2=True,
                                             max_epochs=50, target_accuracy=None))
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 2)).astype(np.float32)
    bare = make_task('point_mass', seed=0)
    with tempfile.TemporaryDirectory() as log_dir:
        wrapper = PreferenceRewardWrapper(make_task('point_mass', seed=0), config, log_dir)
        try:
            run_steps(wrapper, actions[:2000])  # first labels and trainings
            wrapper.wait_for(trainings=1, timeout_s=300)
            before = wrapper.refresh_status()
            figures: dict[str, list[float]] = {'bare': [], 'true': [], 'predicted': []}
            for _ in range(ROUNDS):
                figures['bare'].append(run_steps(bare, actions))
                wrapper.switch_to_true_reward()
                figures['true'].append(run_steps(wrapper, actions))
                wrapper.switch_to_predicted_reward()
                figures['predicted'].append(run_steps(wrapper, actions))
            after = wrapper.refresh_status()
            numpy_us, torch_us, batched_us = inference_costs(wrapper,
                                                             2000 if args.quick else 10_000)
        finally:
            wrapper.close()
    bare_us, true_us, predicted_us = (min(figures[k]) for k in ('bare', 'true', 'predicted'))
    result = {
        'peer': 'the unwrapped point-mass env',
        'steps_per_round': steps, 'rounds': ROUNDS,
        'unwrapped_us_per_step': round(bare_us, 2),
        'wrapped_true_reward_us_per_step': round(true_us, 2),
        'wrapped_predicted_us_per_step': round(predicted_us, 2),
        'overhead_ratio_true_reward': round(true_us / bare_us, 2),
        'overhead_ratio_predicted': round(predicted_us / bare_us, 2),
        'reward_per_step_numpy_us': round(numpy_us, 2),
        'reward_per_step_torch_us': round(torch_us, 2),
        'reward_batched_inference_us_per_step': round(batched_us, 2),
        'trainings_during_measurement': after['trainings'] - before['trainings'],
        'labels_during_measurement': after['labelled'] - before['labelled'],
        'clips_sent': after['clips_sent'], 'clips_dropped': after['clips_dropped'],
        'torch_threads_agent': 1, 'clock': 'wall (perf_counter)',
    }
    path = write_result('drlhp_overhead', result,
                        'DRLHP wrapper per-step cost while the worker trains, vs the bare env'
                        + (' (quick run)' if args.quick else ''))
    for key, value in result.items():
        print(f'{key}: {value}')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
