"""``pref-rl collect``: the command-line front of :mod:`pref_rl_learner.fewshot.collect`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

FAMILIES = ('point_mass', 'reacher', 'metaworld', 'panda_reach', 'panda_push')
# (kept equal to collect_config.FAMILIES, which imports numpy: the parser must stay light)

DESCRIPTION = """\
Record an offline multi-task dataset for MAML reward pretraining: per task (a goal of
point_mass/reacher/panda_*, or a variation of a MetaWorld env) episodes of a scripted expert
with action noise, of experts aimed elsewhere (another goal; for MetaWorld another env's
expert, and this env's expert solving another variation) and of random actions, cut into
segments of the task's segment length with the task's true rewards. Held-out goals
(variations) become 'eval' tasks. One compressed, checksummed shard per task plus
manifest.json; rerunning an interrupted command resumes it. Same seed, same data.

defaults per family (episodes per task: expert / cross / within / random, noise levels):
  point_mass, reacher  40 / 40 / - / 20, eps 0.1 0.3 0.6 1.0; all train + eval goals
  metaworld            15 / 10 / 25 / 2, eps 0.1; 25 train + 2 eval variations of each
                       ML10 training env (the few-shot paper's recipe; 1.5-2 h on 2 cores)
  panda_reach          10 / 4 / - / 2, eps 0.2 0.5 0.8
  panda_push           50 / 5 / - / 8, eps 0.15, init-noise 0.3 (paper's counts; ~15 min on
                       2 cores; scripted pusher unless --sac-experts)
"""


def _count_or_all(text: str) -> int | str:
    if text == 'all':
        return text
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an int or 'all', got {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected a count >= 0, got {value}')
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``collect`` to the ``pref-rl`` sub-commands."""
    p = subparsers.add_parser(
        'collect', help='record an offline multi-task dataset for reward pretraining',
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('family', nargs='?', choices=FAMILIES,
                   help='what to collect (omit with --info)')
    p.add_argument('--out', type=Path, default=None,
                   help='dataset directory (default: datasets/<family>)')
    p.add_argument('--seed', type=int, default=None, help='seed (default 0)')
    p.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                   help='parallel worker processes (default: all cores)')
    tasks = p.add_argument_group('tasks')
    tasks.add_argument('--tasks-per-env', type=_count_or_all, default=None, metavar='N|all',
                       help='training targets (variations per MetaWorld env), the first N '
                            '(default all; 0: none)')
    tasks.add_argument('--eval-tasks-per-env', type=_count_or_all, default=None,
                       metavar='N|all', help='held-out targets/variations recorded as eval '
                                             'tasks, to measure a prior on (default 0; '
                                             'pref-rl pretrain refuses such a dataset)')
    tasks.add_argument('--envs', nargs='+', default=None, metavar='ENV',
                       help='metaworld: environments (default: the ML10 training envs)')
    episodes = p.add_argument_group('episodes per task')
    episodes.add_argument('--expert-ep', dest='expert_episodes', type=int, default=None,
                          metavar='N', help='noisy expert episodes')
    episodes.add_argument('--cross-ep', '--cross-env-ep', '--cross-goal-ep',
                          dest='cross_episodes', type=int, default=None, metavar='N',
                          help="another goal's expert (metaworld: another env's expert)")
    episodes.add_argument('--within-env-ep', dest='within_episodes', type=int, default=None,
                          metavar='N', help='metaworld: expert of another variation')
    episodes.add_argument('--random-ep', dest='random_episodes', type=int, default=None,
                          metavar='N', help='uniform random actions')
    episodes.add_argument('--epsilon', type=float, nargs='+', default=None, metavar='EPS',
                          help='action-noise level(s), cycled over the noisy episodes')
    episodes.add_argument('--noise-type', choices=('gaussian', 'uniform'), default=None,
                          help='gaussian: a + eps*N(0,1); uniform: random action with '
                               'probability eps (default gaussian)')
    episodes.add_argument('--init-noise', type=float, default=None, metavar='F',
                          help='goal tasks: expert episodes start with random actions for up '
                               'to this share of the episode (initial-state noise)')
    episodes.add_argument('--episode-steps', type=int, default=None, metavar='N',
                          help="steps per episode (default: the task's episode length)")
    episodes.add_argument('--segment-stride', type=int, default=None, metavar='N',
                          help='steps between segment starts (default: segment length, '
                               'no overlap)')
    episodes.add_argument('--sac-experts', default=None, metavar='PATH',
                          help='goal tasks: SAC expert checkpoint(s) instead of the scripted '
                               'expert: one file (goal-conditioned) or a directory of '
                               '<split>_goal<NN>.pt')
    p.add_argument('--overwrite', action='store_true',
                   help='replace a dataset already in --out (else an unfinished collection '
                        'with the same settings is resumed)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--info', type=Path, default=None, metavar='DIR',
                   help='summarize the dataset in DIR and verify every shard, then exit')
    p.set_defaults(handler=_cmd_collect, _parser=p)


def _cmd_collect(args: argparse.Namespace) -> int:
    from pref_rl_learner.fewshot.dataset import describe, load_dataset

    if args.info is not None:
        print(describe(args.info))
        dataset = load_dataset(args.info)
        print(f'all {len(dataset.tasks)} shards verified')
        return 0
    if args.family is None:
        args._parser.error('a family is required (or --info DIR)')
    from pref_rl_learner.fewshot.collect import collect, plan_jobs
    from pref_rl_learner.fewshot.collect_config import default_config

    config = default_config(
        args.family, seed=args.seed, tasks_per_env=args.tasks_per_env,
        eval_tasks_per_env=args.eval_tasks_per_env, envs=args.envs,
        expert_episodes=args.expert_episodes, cross_episodes=args.cross_episodes,
        within_episodes=args.within_episodes, random_episodes=args.random_episodes,
        epsilon=args.epsilon, noise_type=args.noise_type, init_noise=args.init_noise,
        episode_steps=args.episode_steps, segment_stride=args.segment_stride,
        sac_experts=args.sac_experts)
    out = args.out or Path('datasets') / args.family
    jobs = plan_jobs(config)
    splits = [job.split for job in jobs]
    print(f'collecting {config.family} into {out}: {splits.count("train")} train + '
          f'{splits.count("eval")} eval tasks x {config.episodes_per_task} episodes, '
          f'{args.workers} worker(s)')
    report = collect(config, out, workers=max(1, args.workers),
                     progress=not args.no_progress, overwrite=args.overwrite)
    print(describe(out))
    resumed = f' ({report.reused} tasks kept from an interrupted run)' if report.reused else ''
    print(f'{report.tasks} tasks, {report.segments} segments in {report.seconds:.1f} s'
          f'{resumed}')
    return 0
