"""Diagnostic: few-shot adaptation length on the prior's validation targets' dataset pairs.

The companion of ``bench/adaptation_probe.py`` (which replays a run's own labels, asked on the
policy's segments). Here the labels are what meta-training saw: oracle-labelled pairs of the
pretraining dataset, on the training targets that ``pref-rl pretrain`` kept out of
meta-training (``holdout_tasks``; never a held-out target). For N labels (4 draws per target)
it reports held-out pair accuracy after a session as the config runs it (``session``) and
after exactly k epochs (``k<k>``, no early stop, no fallback).

Run (inside scripts/env.sh, from the directory the prior was made in):
python bench/adaptation_dataset_pairs.py --config config/fewshot_point_mass.yaml \
    --prior runs/pretrain_point_mass/best_model.pt --dataset datasets/point_mass_hidden_goal \
    --pretrain-config config/pretrain_point_mass.yaml
Writes bench/results/adaptation_dataset_pairs_<task>.json.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from common import write_result

from pref_rl_learner.batches import PreferenceBatch
from pref_rl_learner.config import from_mapping
from pref_rl_learner.fewshot.arms import make_reward_learning
from pref_rl_learner.fewshot.dataset import load_dataset
from pref_rl_learner.fewshot.pretrain import load_pretrain_config, split_tasks
from pref_rl_learner.fewshot.task_pairs import TaskPairSampler
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.teacher import TeacherConfig


def _batch(pairs) -> PreferenceBatch:
    """Sampled pairs as a PreferenceBatch (incomparable ones dropped)."""
    keep = ~torch.isnan(pairs.targets)
    obs, act = pairs.observations[keep].numpy(), pairs.actions[keep].numpy()
    return PreferenceBatch(obs[:, 0], act[:, 0], obs[:, 1], act[:, 1],
                           pairs.targets[keep].numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', type=Path, required=True, help='a fewshot train config')
    parser.add_argument('--prior', type=Path, required=True, help="pref-rl pretrain's checkpoint")
    parser.add_argument('--dataset', type=Path, required=True, help='the pretraining dataset')
    parser.add_argument('--pretrain-config', type=Path, required=True,
                        help='the config the prior was pretrained with (its validation '
                             'targets and segment length)')
    parser.add_argument('--labels', type=int, nargs='+', default=[6, 8, 12, 16, 24])
    parser.add_argument('--epochs', type=int, nargs='+', default=[2, 5, 10, 20, 40])
    parser.add_argument('--draws', type=int, default=4)
    parser.add_argument('--pairs', type=int, default=512, help='held-out pairs scored')
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = from_mapping(TrainConfig, yaml.safe_load(args.config.read_text()))
    config = replace(config, pretrained_reward=str(args.prior.resolve()))
    pretrain_config = load_pretrain_config(args.pretrain_config)
    dataset = load_dataset(args.dataset)
    _, validation = split_tasks(dataset, pretrain_config)
    sampler = TaskPairSampler(dataset, pretrain_config.segment_length, TeacherConfig())
    variants = {'session': {}} | {
        f'k{k}': {'adapt_max_steps': k, 'adapt_min_steps': k, 'target_accuracy': 1.0,
                  'fallback': False} for k in args.epochs}
    rows = {}
    for count in args.labels:
        scores: dict[str, list[float]] = {name: [] for name in variants}
        for task in validation:
            for draw in range(args.draws):
                support, query = sampler.draw(task, np.random.default_rng([draw, count]),
                                              count, args.pairs)
                support, query = _batch(support), _batch(query)
                shape = tuple(support.left_observations.shape[2:])
                for name, fields in variants.items():
                    run = replace(config, fewshot=replace(config.fewshot, **fields))
                    _, trainer = make_reward_learning(run, shape,
                                                      int(support.left_actions.shape[2]))
                    trainer.train(support)
                    scores[name].append(trainer.evaluate(query)[1])
        rows[str(count)] = {name: round(float(np.mean(v)), 3) for name, v in scores.items()}
        print(count, rows[str(count)], flush=True)
    print(write_result(f'adaptation_dataset_pairs_{config.task}', {
        'config': str(args.config), 'validation_targets': validation, 'draws': args.draws,
        'held_out_pairs': args.pairs, 'by_labels': rows},
        "Held-out pair accuracy (ensemble mean) on the prior's validation targets' dataset "
        'pairs after adapting on N oracle-labelled dataset pairs: session = as the config '
        'runs it; k<k> = exactly k epochs of the learned rates, no fallback.'))


if __name__ == '__main__':
    main()
