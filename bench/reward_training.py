"""Benchmark: reward-ensemble training throughput, batched members vs a per-member loop.

Workload (MetaWorld-sized): 39-D observations, 4-D actions, segments of 25 steps, 3 members of
3×256 leaky-ReLU MLPs with tanh output, Bradley-Terry loss on segment returns, Adam 3e-4,
batch 256 pairs per member, each member its own permutation of the pairs every epoch.

- ``stacked`` and ``per_member``: :class:`pref_rl_learner.reward.RewardTrainer`, member
  weights stacked ``[M, in, out]``: one module, one forward/backward and one optimiser step
  per batch, with either ``member_batching`` kernel: one ``baddbmm`` per layer for all members
  (``stacked``, the default on CUDA) or one ``addmm`` per member on weight slices
  (``per_member``, the default on CPU);
- ``loop`` (the peer): the straightforward per-member implementation: ``M`` separate
  ``nn.Sequential`` MLPs and ``M`` Adam optimisers, stepped one after the other in a Python
  loop over the same data, batch size and per-member orders.

Two workloads: ``large`` (1024 labelled pairs, 4 steps of 256 pairs per epoch: big matrix
products, compute-bound) and ``few`` (32 pairs, one step per epoch, as in early or few-shot
feedback sessions, where per-step overhead weighs more). Figures: pair-updates per second
(members × pairs / s: each member consuming one labelled pair once), epochs per second, each
variant's speed over the loop, the torch thread count and the clock. On CPU the default is one
torch thread timed by process CPU time (``time.process_time``), so that other load on a shared
machine does not distort the comparison; ``--threads N`` (N > 1) and CUDA use wall time. Each
figure is the best of 3 interleaved rounds, each after a warm-up epoch.
Run: scripts/bench (or python bench/reward_training.py inside scripts/env.sh); --quick for a
smoke run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

OBS, ACT, T, MEMBERS, HIDDEN, BATCH, ROUNDS = 39, 4, 25, 3, 256, 256, 3
WORKLOADS = {
    # A PEBBLE feedback session late in training: ~1000 labels, batch 256 (compute-bound).
    'large': (1024, 1),
    # An early or few-shot session: 32 labels, one batch per epoch (overhead weighs more).
    'few': (32, 15),
}
VARIANTS = ('stacked', 'per_member', 'loop')


def make_pairs(count: int, seed: int = 0):
    """Random labelled pairs with MetaWorld-sized inputs (the labels only need to exist)."""
    from pref_rl_learner.batches import PreferenceBatch
    rng = np.random.default_rng(seed)

    def part(*shape):
        return rng.normal(size=shape).astype(np.float32)

    return PreferenceBatch(part(count, T, OBS), part(count, T, ACT), part(count, T, OBS),
                           part(count, T, ACT), rng.integers(0, 2, count).astype(np.float32))


def trainer_runner(pairs, device: str, member_batching: str) -> Callable[[int], None]:
    """``run(epochs)`` training a RewardEnsemble with RewardTrainer."""
    from pref_rl_learner.reward import (
        RewardEnsemble,
        RewardModelConfig,
        RewardTrainer,
        RewardTrainingConfig,
    )
    config = RewardModelConfig(device=device, member_batching=member_batching)
    model = RewardEnsemble((OBS,), ACT, config, seed=0)

    def run(epochs: int) -> None:
        training = RewardTrainingConfig(batch_size=BATCH, max_epochs=epochs,
                                        target_accuracy=None)
        RewardTrainer(model, training).train(pairs)

    return run


def loop_runner(pairs, device: str) -> Callable[[int], None]:
    """``run(epochs)`` of the peer: separate MLPs and optimisers stepped in a Python loop."""
    dev = torch.device(device)
    nets = []
    for _ in range(MEMBERS):
        layers: list[nn.Module] = []
        sizes = (OBS + ACT, HIDDEN, HIDDEN, HIDDEN)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        nets.append(nn.Sequential(*layers, nn.Linear(HIDDEN, 1), nn.Tanh()).to(dev))
    optimizers = [torch.optim.Adam(net.parameters(), lr=3e-4) for net in nets]
    # The trainer's on-device layout: [N, 2 (left, right), T, features].
    inputs = torch.from_numpy(np.stack([
        np.concatenate([pairs.left_observations, pairs.left_actions], -1),
        np.concatenate([pairs.right_observations, pairs.right_actions], -1)], 1)).to(dev)
    targets = torch.from_numpy(pairs.right_preferred).to(dev)
    generator = torch.Generator().manual_seed(0)
    count = targets.shape[0]

    def run(epochs: int) -> None:
        for _ in range(epochs):
            for net, optimizer in zip(nets, optimizers, strict=True):
                order = torch.randperm(count, generator=generator).to(dev)
                for begin in range(0, count, BATCH):
                    index = order[begin:begin + BATCH]
                    returns = net(inputs[index]).squeeze(-1).sum(-1)  # [B, 2]
                    logits = returns[:, 1] - returns[:, 0]
                    loss = F.binary_cross_entropy_with_logits(logits, targets[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()

    return run


def timed(run: Callable[[int], None], epochs: int, device: str, clock) -> float:
    """Seconds (by ``clock``) for ``run(epochs)`` after a one-epoch warm-up."""
    run(1)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    start = clock()
    run(epochs)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer pairs and epochs')
    parser.add_argument('--device', default='auto', help='auto, cpu or cuda')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--no-write', action='store_true', help='print only')
    args = parser.parse_args()
    from pref_rl_learner.device import resolve_device
    device = str(resolve_device(args.device))
    torch.set_num_threads(args.threads)
    cpu_clock = device == 'cpu' and args.threads == 1
    clock = time.process_time if cpu_clock else time.perf_counter
    figures: dict = {'device': device, 'torch_threads': torch.get_num_threads(),
                     'clock': 'process_cpu_time' if cpu_clock else 'wall',
                     'segment_steps': T, 'members': MEMBERS, 'batch_pairs': BATCH}
    for workload, (count, epochs) in WORKLOADS.items():
        if args.quick:
            count, epochs = min(count, 256), 1
        pairs = make_pairs(count)
        figures[f'{workload}_pairs'] = count
        runners = {'stacked': trainer_runner(pairs, device, 'stacked'),
                   'per_member': trainer_runner(pairs, device, 'per_member'),
                   'loop': loop_runner(pairs, device)}
        best = dict.fromkeys(VARIANTS, math.inf)
        for _ in range(1 if args.quick else ROUNDS):  # interleaved: load hits all alike
            for name in VARIANTS:
                best[name] = min(best[name], timed(runners[name], epochs, device, clock))
        for name in VARIANTS:
            rate = epochs / best[name]
            figures[f'{workload}_{name}_epochs_per_s'] = round(rate, 3)
            figures[f'{workload}_{name}_pair_updates_per_s'] = round(rate * count * MEMBERS, 1)
            print(f'{workload:6s} {name:10s} {rate:8.3f} epochs/s '
                  f'{rate * count * MEMBERS:10.1f} pair-updates/s', flush=True)
        for name in ('stacked', 'per_member'):
            ratio = best['loop'] / best[name]
            figures[f'{workload}_speedup_{name}_vs_loop'] = round(ratio, 2)
            print(f'{workload:6s} {name} vs loop: {ratio:.2f}x', flush=True)
    figures['peer'] = ('per-member loop: 3 nn.Sequential MLPs and 3 Adam optimisers stepped in '
                       'turn on the same data, batch size and per-member orders')
    print(f"({device}, {torch.get_num_threads()} torch threads, {figures['clock']} clock)")
    if not args.no_write and not args.quick:
        print(f"wrote {write_result('reward_training', figures, notes=__doc__)}")


if __name__ == '__main__':
    main()
