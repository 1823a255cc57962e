"""Benchmark: MAML reward pretraining, outer steps per second, batched vs the per-task loop.

Workload: ``config/pretrain_point_mass.yaml`` (reward ensemble of 3 members, 3x128, state
input, linear output; 4 tasks per meta-batch, 24 support + 24 query pairs of 10-step
segments, 2 inner steps with learned per-parameter rates, exact second order, Adam on theta
and alpha) on a synthetic point-mass family generated here: 4-D states (position, velocity)
along random smooth walks, task k's true reward ``-|position - goal_k|``, 16 training goals
and 4 held-out ones (the goal is never in the state: labels must teach it). Labels come from
the oracle scripted teacher, as in ``pref-rl pretrain``.

- ``batched`` (after): ``pretrain``'s own outer step (:meth:`MAML.meta_batch_loss`: all
  tasks and members as stacked ``[T*M, in, out]`` weights, one computation, inner gradients
  by explicit backpropagation (``BatchedMLP.stacked_gradients``), no host reads);
- ``loop`` (before, the peer): the per-task loop pretraining ran before
  (``pref_rl_learner.testing.maml_meta_gradient_by_loop``): one task's meta-loss and
  backward after the other, members through the ensemble's CPU kernel, figures read per task;
- ``limit``: the matrix products of one outer step (captured from the batched step: the same
  FLOPs as the loop's), run alone as fp32 ``torch.mm`` on preallocated, cache-hot operands.

Each outer step includes drawing and labelling its meta-batch and the Adam step. Trials of
``steps`` outer steps alternate between the three in one process (a shared machine slows all
alike); figures are medians, wall clock, at the torch thread counts of ``--threads`` (1 and
2 by default). Accuracy at equal steps: both variants pretrain from the same seed for the
same number of steps and are evaluated on the same fixed held-out draws
(``pretrain.evaluate``: accuracy of the ensemble mean on the query pairs after adapting on
the support pairs, and before adapting).
Run: scripts/bench maml_pretrain (or python bench/maml_pretrain.py inside scripts/env.sh).
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

from pref_rl_learner.fewshot.dataset import MultiTaskDataset, TaskData
from pref_rl_learner.fewshot.maml import MAML
from pref_rl_learner.fewshot.pretrain import (
    _outer_step,
    draw_meta_batch,
    evaluate,
    load_pretrain_config,
    outer_lr_at,
    split_tasks,
)
from pref_rl_learner.fewshot.task_pairs import TaskPairSampler
from pref_rl_learner.host_memory import retain_freed_memory
from pref_rl_learner.reward import RewardEnsemble
from pref_rl_learner.testing import maml_meta_gradient_by_loop

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / 'config' / 'pretrain_point_mass.yaml'
TRAIN_GOALS, EVAL_GOALS, SEGMENTS, LENGTH = 16, 4, 96, 25


def point_mass_family(seed: int = 0) -> MultiTaskDataset:
    """Reach tasks on a plane: random smooth walks, reward minus the distance to the goal."""
    rng = np.random.default_rng(seed)
    tasks, split = {}, {}
    for k in range(TRAIN_GOALS + EVAL_GOALS):
        goal = rng.uniform(-0.8, 0.8, 2)
        velocity = np.cumsum(rng.normal(0.0, 0.02, (SEGMENTS, LENGTH, 2)), axis=1)
        position = np.clip(rng.uniform(-1, 1, (SEGMENTS, 1, 2)) + np.cumsum(velocity, 1), -1, 1)
        states = np.concatenate([position, velocity], -1).astype(np.float32)
        reward = -np.linalg.norm(position - goal, axis=-1).astype(np.float32)
        task_id = f'reach/{k}'
        tasks[task_id] = TaskData(task_id, 'reach', states,
                                  np.zeros((SEGMENTS, LENGTH, 2), np.float32), reward,
                                  np.array(['random'] * SEGMENTS))
        split[task_id] = 'train' if k < TRAIN_GOALS else 'eval'
    return MultiTaskDataset(tasks, split)


class Pretraining:
    """One pretraining run in memory: model, MAML, Adam, sampler and held-out draws."""

    def __init__(self, dataset: MultiTaskDataset, config, batched: bool) -> None:
        self.config, self.batched, self.step = config, batched, 0
        self.train_ids, eval_ids = split_tasks(dataset, config)
        self.sampler = TaskPairSampler(dataset, config.segment_length, config.teacher)
        model = RewardEnsemble(self.sampler.observation_shape, self.sampler.action_dim,
                               config.reward_model, seed=config.seed)
        self.sampler.check_model(model)
        retain_freed_memory()  # as pretrain() does (process-wide: both variants get it)
        self.maml = MAML(model, config.maml)
        self.optimizer = torch.optim.Adam(self.maml.meta_parameters(), lr=config.outer_lr)
        self.eval_sets = [self.sampler.draw(task, np.random.default_rng([config.seed, 11, i, d]),
                                            config.support_pairs, config.query_pairs)
                          for i, task in enumerate(eval_ids) for d in range(config.eval_draws)]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            if self.batched:
                _outer_step(self.maml, self.optimizer, self.sampler, self.train_ids,
                            self.config, self.step)
            else:
                self._loop_step()
            self.step += 1

    def _loop_step(self) -> None:
        """The outer step as pretraining ran it before the batched one (same draws)."""
        config, step = self.config, self.step
        supports, queries = draw_meta_batch(self.sampler, self.train_ids, config, step)
        torch.manual_seed(config.seed * 1_000_003 + step)
        self.maml.model.train()
        for group in self.optimizer.param_groups:
            group['lr'] = outer_lr_at(config, step)
        self.optimizer.zero_grad(set_to_none=True)
        maml_meta_gradient_by_loop(self.maml, supports, queries)
        self.optimizer.step()

    def step_gemms(self) -> list:
        """The matrix products of one batched outer step's meta-loss and meta-gradient."""
        supports, queries = draw_meta_batch(self.sampler, self.train_ids, self.config, 0)
        gemms = capture_gemms(lambda: self.maml.meta_batch_loss(supports, queries)[0]
                              .backward())
        self.optimizer.zero_grad(set_to_none=True)
        return gemms


def speed(dataset: MultiTaskDataset, config, threads: int, steps: int, trials: int) -> dict:
    """Median outer steps/s of loop, batched and the matmul limit, interleaved."""
    torch.set_num_threads(threads)
    loop, batched = Pretraining(dataset, config, False), Pretraining(dataset, config, True)
    gemms = batched.step_gemms()
    replay = gemm_replay(gemms)
    runners = {'loop': loop.run, 'batched': batched.run, 'limit': replay}
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(2)  # warm-up
    for _ in range(trials):
        for name, run in runners.items():
            start = time.perf_counter()
            run(steps)
            rates[name].append(steps / (time.perf_counter() - start))
    return {'gflop': gemm_flop(gemms) / 1e9,
            **{name: statistics.median(values) for name, values in rates.items()}}


def accuracy_curves(dataset: MultiTaskDataset, config, steps: int, every: int) -> dict:
    """Held-out (post, pre) accuracy every ``every`` steps for loop and batched, same seed."""
    torch.set_num_threads(1)
    curves = {}
    for name, batched in (('loop', False), ('batched', True)):
        run, points = Pretraining(dataset, config, batched), []
        while run.step < steps:
            run.run(every)
            post, pre = evaluate(run.maml, run.eval_sets)
            points.append((run.step, round(post, 4), round(pre, 4)))
        curves[name] = points
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer trials (smoke run)')
    parser.add_argument('--no-write', action='store_true', help='print only')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='torch thread counts to measure speed at')
    args = parser.parse_args()
    steps, trials, budget, every = (3, 2, 20, 10) if args.quick else (10, 7, 400, 100)
    dataset = point_mass_family()
    config = load_pretrain_config(CONFIG, {'steps': budget})
    figures: dict = {'config': str(CONFIG.relative_to(ROOT)), 'outer_steps_per_trial': steps,
                     'trials': trials}
    load_before = os.getloadavg()[0]
    for threads in args.threads:
        result = speed(dataset, config, threads, steps, trials)
        key = f'{threads}thread'
        figures['outer_step_gflop'] = round(result['gflop'], 3)
        figures[f'{key}_loop_outer_steps_per_s'] = round(result['loop'], 2)
        figures[f'{key}_batched_outer_steps_per_s'] = round(result['batched'], 2)
        figures[f'{key}_matmul_limit_outer_steps_per_s'] = round(result['limit'], 2)
        figures[f'{key}_matmul_gflop_per_s'] = round(result['limit'] * result['gflop'], 1)
        figures[f'{key}_speedup_batched_vs_loop'] = round(result['batched'] / result['loop'], 3)
        figures[f'{key}_batched_fraction_of_matmul_limit'] = round(
            result['batched'] / result['limit'], 3)
        figures[f'{key}_loop_fraction_of_matmul_limit'] = round(
            result['loop'] / result['limit'], 3)
        print(f"{key}: loop {result['loop']:.2f} batched {result['batched']:.2f} limit "
              f"{result['limit']:.2f} outer steps/s ({result['gflop']:.2f} GFLOP/step)",
              flush=True)
    curves = accuracy_curves(dataset, config, budget, every)
    for name, points in curves.items():
        figures[f'{name}_held_out_accuracy_post_adaptation_vs_step'] = [
            [s, post] for s, post, _ in points]
        figures[f'{name}_held_out_accuracy_pre_adaptation_vs_step'] = [
            [s, pre] for s, _, pre in points]
        figures[f'{name}_final_held_out_accuracy_post_adaptation'] = points[-1][1]
        print(name, points, flush=True)
    figures['final_accuracy_difference_batched_minus_loop'] = round(
        curves['batched'][-1][1] - curves['loop'][-1][1], 4)
    figures['accuracy_steps'] = budget
    figures['torch_version'] = torch.__version__
    figures['load_average_1min_before'] = round(load_before, 2)
    figures['load_average_1min_after'] = round(os.getloadavg()[0], 2)
    figures['peer'] = ('loop: the per-task MAML outer step pretraining ran before (same draws, '
                       'same maths); limit: the step\'s matrix products alone as fp32 torch.mm '
                       'on preallocated operands')
    if not args.no_write:
        print(f"wrote {write_result('maml_pretrain', figures, notes=__doc__)}")


if __name__ == '__main__':
    main()
