"""``pref-rl pretrain``: MAML reward pretraining on a ``pref-rl collect`` dataset."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` sub-command."""
    parser = subparsers.add_parser(
        'pretrain', help='meta-train (MAML) a reward model on a multi-task dataset',
        description='Meta-train the reward ensemble with MAML and learned per-parameter inner '
                    'learning rates on the training tasks of a `pref-rl collect` dataset, the '
                    'pairs labelled by the scripted teacher from each task\'s true rewards. '
                    'A few training tasks (holdout_tasks) are kept out as validation '
                    'targets and scored after adaptation every eval_interval steps; held-out '
                    '(eval) targets are refused: they must never reach the prior. The best '
                    'checkpoint is OUT/best_model.pt (the `pretrained_reward` '
                    'of the init and fewshot arms of `pref-rl train`), the latest '
                    'OUT/last_model.pt; curves in OUT/train.csv, OUT/eval.csv, '
                    'OUT/curves.png. Keys of --config map onto '
                    'pref_rl_learner.fewshot.pretrain.PretrainConfig (see '
                    'config/pretrain_*.yaml).')
    parser.add_argument('--dataset', type=Path, required=True, metavar='DIR',
                        help='dataset directory written by `pref-rl collect`')
    parser.add_argument('--out', type=Path, required=True, metavar='DIR',
                        help='output directory (checkpoints, logs, resolved config)')
    parser.add_argument('--config', type=Path, default=None, metavar='YAML',
                        help='pretraining config (default: the paper\'s point-mass values)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override a config value, e.g. --set steps=2000 '
                             '--set maml.inner_steps=3')
    parser.add_argument('--seed', type=int, default=None, help='overrides the config\'s seed')
    parser.add_argument('--resume', action='store_true',
                        help='continue from OUT/last_model.pt (same config)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--torch-threads', type=int, default=1, metavar='N',
                        help="torch intra-op CPU threads (default 1: the small networks run "
                             "faster on one, and much faster on a busy machine; 0: torch's "
                             "default)")
    parser.set_defaults(handler=_cmd_pretrain)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import torch
    import yaml

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    from pref_rl_learner.fewshot.pretrain import (
        CONFIG_NAME,
        LAST_NAME,
        PretrainError,
        load_pretrain_config,
        pretrain,
    )
    from pref_rl_learner.pebble.run import parse_overrides

    overrides = parse_overrides(args.set)
    if args.seed is not None:
        overrides['seed'] = args.seed
    config = load_pretrain_config(args.config, overrides)
    if (args.out / LAST_NAME).exists() and not args.resume:
        raise PretrainError(f'{args.out} already holds a pretraining; pass --resume to '
                            'continue it or choose a new --out')
    try:
        from pref_rl_learner.fewshot.dataset import load_dataset
    except ImportError as err:
        raise PretrainError(f'cannot read datasets in this install: {err}') from None
    dataset = load_dataset(args.dataset)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / CONFIG_NAME).write_text(
        yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, unit='step', dynamic_ncols=True, desc='pretrain')

    def report(step: int, figures: dict[str, float]) -> None:
        if bar is not None and (step % 20 == 0 or step == config.steps):
            bar.n = step
            bar.set_postfix({k: f'{v:.3g}' for k, v in figures.items()
                             if k in ('meta_loss', 'query_accuracy', 'eval_accuracy')},
                            refresh=True)

    try:
        result = pretrain(dataset, args.out, config, progress=report, resume=args.resume)
    finally:
        if bar is not None:
            bar.close()
    accuracy = ('n/a (no validation task)' if not math.isfinite(result.best_accuracy)
                else f'{result.best_accuracy:.3f}')
    held = ', '.join(result.eval_tasks) or 'none'
    print(f'best post-adaptation accuracy on validation tasks ({held}): {accuracy} at step '
          f'{result.best_step} of {result.steps} ({result.seconds:.0f} s)')
    print(f'best checkpoint: {result.best_path}')
    print(f'last checkpoint: {result.last_path}')
    return 0
