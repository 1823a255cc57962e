"""Diagnostic: few-shot adaptation against Adam on a finished run's own labels.

A headline ``fewshot`` run resets the reward to the prior θ every session and adapts it with
the learned learning rates, falling back to Adam from θ when adaptation misses 95% training
accuracy (``adapt_path`` in its ``feedback.csv``). This takes the run's labels, in the order
they were asked, and for the first N of them (every session's count by default) reports the
prior before any label; adaptation for exactly k epochs (no fallback), as in the paper
(``adapt``) and with ``fewshot.safeguard`` (``safeguarded``: no member's epoch raises its
loss); each as a session runs it (``*_session_*``: stop at the target, else fall back); and
the fallback alone (Adam from θ, the run's ``reward_training``). Training accuracy on the N
labels and accuracy on oracle-labelled pairs of the run's target from the held-out dataset
(never trained on).

Run (inside scripts/env.sh, from the directory the sweep ran in):
python bench/adaptation_probe.py RUN_DIR --eval-dataset datasets/<name>_eval
Writes bench/results/adaptation_probe_<task>.json.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from _fewshot_headline import target_of
from common import write_result

from pref_rl_learner.config import from_mapping
from pref_rl_learner.fewshot.arms import make_reward_learning
from pref_rl_learner.fewshot.dataset import load_dataset
from pref_rl_learner.fewshot.task_pairs import TaskPairSampler
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.reward_learning import run_store_config
from pref_rl_learner.preferences.store import PreferenceStore
from pref_rl_learner.teacher import TeacherConfig


def held_out_accuracy(model, pairs) -> float:
    """Accuracy of the ensemble-mean return difference on the decisive ``pairs``."""
    with torch.no_grad(), model.evaluating():
        returns = model.segment_returns(pairs.observations.flatten(0, 1),
                                        pairs.actions.flatten(0, 1), validate=False)
    returns = returns.reshape(model.ensemble_size, -1, 2).mean(dim=0)
    decisive = pairs.targets != 0.5
    hits = ((returns[:, 1] - returns[:, 0]) > 0) == (pairs.targets > 0.5)
    return round(float(hits[decisive].float().mean()), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run', type=Path, help='a finished fewshot run directory')
    parser.add_argument('--eval-dataset', type=Path, required=True,
                        help="a dataset holding the run's target: the held-out targets' "
                             '(pref-rl collect --tasks-per-env 0), or the pretraining set for '
                             'a run on a validation target (a training target pretraining '
                             'kept out of meta-training)')
    parser.add_argument('--pairs', type=int, default=512, help='held-out pairs scored')
    parser.add_argument('--epochs', type=int, nargs='+', default=[2, 5, 10, 20, 40])
    parser.add_argument('--labels', type=int, nargs='+',
                        help="label counts (default: the run's count after each session)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = from_mapping(TrainConfig, yaml.safe_load((args.run / 'config.yaml').read_text()))
    config = replace(config, pretrained_reward=str(Path(config.pretrained_reward).resolve()))
    store_config = run_store_config(config.store, config.reward_training, config.seed)
    with PreferenceStore.open(args.run / 'preferences', store_config) as store:
        batch, _ = store.preference_batches()
    with (args.run / 'feedback.csv').open() as f:
        sessions = [int(row['labelled']) for row in csv.DictReader(f)]
    sampler = TaskPairSampler(load_dataset(args.eval_dataset), 0, TeacherConfig())
    task = next(t for t in sampler.task_ids if target_of(t) == config.goal)
    _, held_out = sampler.draw(task, np.random.default_rng(0), 0, args.pairs)
    shape, action_dim = tuple(batch.left_observations.shape[2:]), int(batch.left_actions.shape[2])
    rows = {}
    for count in args.labels or sessions:
        labels = type(batch)(*(field[:count] for field in batch))
        model, _ = make_reward_learning(config, shape, action_dim)
        row = {'prior_held_out': held_out_accuracy(model, held_out)}
        for variant, safeguard in (('adapt', False), ('safeguarded', True)):
            for epochs in args.epochs:
                forced = replace(config, fewshot=replace(
                    config.fewshot, adapt_max_steps=epochs, adapt_min_steps=epochs,
                    target_accuracy=1.0, fallback=False, safeguard=safeguard))
                model, trainer = make_reward_learning(forced, shape, action_dim)
                report = trainer.train(labels)
                row[f'{variant}_{epochs}_held_out'] = held_out_accuracy(model, held_out)
                row[f'{variant}_{epochs}_train'] = round(report.train_accuracy, 3)
                row[f'{variant}_{epochs}_epochs_run'] = report.adapt_steps  # fewer: blew up
            # The session as the arm runs it: stop at the target, else fall back to Adam.
            session = replace(config, fewshot=replace(config.fewshot, safeguard=safeguard))
            model, trainer = make_reward_learning(session, shape, action_dim)
            report = trainer.train(labels)
            row[f'{variant}_session_path'] = report.path
            row[f'{variant}_session_held_out'] = held_out_accuracy(model, held_out)
        model, trainer = make_reward_learning(config, shape, action_dim)
        trainer.fallback_trainer.reset()
        report = trainer.fallback_trainer.train(labels)  # Adam from θ, as the fallback
        row.update({'adam_from_prior_held_out': held_out_accuracy(model, held_out),
                    'adam_from_prior_train': round(report.train_accuracy, 3),
                    'adam_from_prior_epochs': report.epochs})
        print(count, row, flush=True)
        rows[str(count)] = row
    name = f'adaptation_probe_{config.task}' + (
        '' if config.goal.startswith('eval:') else f"_{config.goal.replace(':', '')}")
    print(write_result(name, {
        'run': args.run.name, 'goal': config.goal, 'held_out_pairs': args.pairs,
        'labels_in_run': batch.num_pairs, 'by_labels': rows},
        'Few-shot adaptation (k epochs of the learned rates, no fallback; adapt: as in the '
        'paper, safeguarded: no member epoch raises its loss; *_session: as the arm runs it, '
        'with the fallback) against Adam from the prior (the fallback) on the first N labels '
        'of one finished fewshot run; held_out: '
        "accuracy on oracle-labelled pairs of the run's target from the held-out dataset, "
        'train: on the N labels.'))


if __name__ == '__main__':
    main()
