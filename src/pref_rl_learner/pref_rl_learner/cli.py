"""The ``pref-rl`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from pref_rl_learner.errors import LaunchFileError, PrefRLError

COMMAND_ENTRY_POINTS = 'pref_rl.commands'
"""Entry-point group through which other packages of the stack add sub-commands (e.g.
``pref_rl_gui``'s ``label``): each names a ``register(subparsers)`` function, which adds its
parser with ``set_defaults(handler=...)`` and imports heavy dependencies inside the handler
only. This package never imports the packages that depend on it."""


def _launch_arguments(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition(':=')
        if not sep or not name:
            raise LaunchFileError(f"launch argument {pair!r} is not of the form name:=value")
        out[name] = value
    return out


def _cmd_launch(args: argparse.Namespace) -> int:
    from pref_rl_learner.launcher import ProcessRunner, load_launch_file

    plan = load_launch_file(args.file, _launch_arguments(args.arguments))
    if args.show_args:
        for a in plan.arguments:
            default = 'required' if a.default is None else f'default: {a.default!r}'
            choices = f", one of: {', '.join(a.choices)}" if a.choices else ''
            print(f"{a.name} ({default}{choices})\n    {a.description or 'no description'}")
        return 0
    if args.print:  # one line per process: its label, then a command a shell can run
        for node in plan.nodes:
            flags = ' [on_exit=shutdown]' if node.shutdown_on_exit else ''
            if node.respawn:
                flags += f' [respawn, delay {node.respawn_delay_s:g} s]'
            print(f'{node.name}{flags}: {node.shell_command()}')
        return 0
    log_dir = args.log_dir or Path('log') / 'launch' / time.strftime('%Y-%m-%d-%H-%M-%S')
    return ProcessRunner(plan.nodes, log_dir=log_dir, stop_timeout_s=args.stop_timeout).run()


def _cmd_train(args: argparse.Namespace) -> int:
    if args.list_tasks:
        from pref_rl_learner.pebble.tasks import task_suite

        tasks = task_suite()
        for name in tasks.task_names():
            spec = tasks.task_spec(name)
            print(f'{name}: obs {spec.observation_shape}, act {spec.action_dim}, episode '
                  f'{spec.episode_length}, segment {spec.segment_length}, goals '
                  f'{spec.num_train_goals} train / {spec.num_eval_goals} eval')
        return 0
    from pref_rl_learner.pebble.run import parse_overrides, train

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    train(args.config, args.path, parse_overrides(args.set), stop_at_step=args.stop_at_step,
          progress=not args.no_progress)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from pref_rl_learner.plotting import plot_runs, queries_to_success

    out = args.out or Path(args.runs[0]) / 'curves.png'
    threshold = args.threshold if args.table else None
    print(plot_runs(args.runs, out, title=args.title, threshold=threshold))
    if args.table:
        print(queries_to_success(args.runs, threshold=args.threshold).format_table())
    return 0


def _cmd_reward_train(args: argparse.Namespace) -> int:
    import dataclasses

    from pref_rl_learner.offline_reward import format_summary, load_config, train_reward_model

    config = load_config(args.config)
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed,
                                     store=dataclasses.replace(config.store, seed=args.seed))
    if args.val_fraction is not None:
        config = dataclasses.replace(config, store=dataclasses.replace(
            config.store, validation_fraction=args.val_fraction))
    print(format_summary(train_reward_model(args.bag, args.out, config=config,
                                            store_dir=args.store)))
    return 0


def _cmd_bag(args: argparse.Namespace) -> int:
    from pref_rl_learner.bag import check_bag, read_metadata, recover_bag
    from pref_rl_learner.bag.metadata import format_info
    from pref_rl_learner.bag.recover import describe_file

    if args.bag_command == 'info':
        if args.bag.is_file():  # one .mcap file, as `ros2 bag info FILE.mcap` accepts
            print(format_info(args.bag.parent, describe_file(args.bag)))
        else:
            print(format_info(args.bag, read_metadata(args.bag)))
        return 0
    report = check_bag(args.bag)
    print(report.format())
    if report.ok or not args.recover:
        return 0 if report.ok else 1
    recovery = recover_bag(args.bag)
    print(recovery.format())
    return 0 if recovery.after.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pref-rl`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog='pref-rl',
        description='Preference-based reinforcement learning on robots (ROS 2).')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    launch = sub.add_parser(
        'launch', help='run a ROS 2 XML launch file (the same files `ros2 launch` runs)',
        description='Run an XML launch file: each node as its own process, output prefixed '
                    'with the node name, Ctrl-C stops everything. Mirrors `ros2 launch FILE '
                    'name:=value ...` for the XML frontend, with the elements and '
                    'substitutions documented in the README.')
    launch.add_argument('file', type=Path, help='path of a *.launch.xml file')
    launch.add_argument('arguments', nargs='*', metavar='name:=value',
                        help='launch arguments, as for ros2 launch')
    launch.add_argument('-s', '--show-args', action='store_true',
                        help='list the arguments the file declares and exit')
    launch.add_argument('-p', '--print', action='store_true',
                        help='print each process and its command (shell-quoted: cd, env '
                             'changes, argv) and exit without running them')
    launch.add_argument('--log-dir', type=Path, default=None,
                        help='where node output is logged (default: log/launch/<time>)')
    launch.add_argument('--stop-timeout', type=float, default=5.0, metavar='S',
                        help='seconds between SIGINT, SIGTERM and SIGKILL on shutdown')
    launch.set_defaults(handler=_cmd_launch)

    train = sub.add_parser(
        'train', help='train PEBBLE, init or FewShotPEBBLE (or SAC on the true reward) with a '
                 'scripted teacher',
        description='Start a run from a YAML config (see config/*.yaml; keys map one-to-one '
                    'onto pref_rl_learner.pebble.config.TrainConfig) or resume the run in '
                    '--path. Writes config.yaml, train/eval/feedback CSVs, TensorBoard events '
                    '(tb/), the preference store and checkpoint.pt into the run directory. '
                    'Ctrl-C pauses at the next episode end with a checkpoint.')
    train.add_argument('--config', type=Path, help='YAML config (required for a new run)')
    train.add_argument('--path', type=Path, default=None,
                       help='run directory (default: runs/<time>-<algorithm>-<task>-s<seed>); '
                            'an existing run there is resumed')
    train.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                       help='override a config value, e.g. --set seed=3 --set sac.batch_size=256')
    train.add_argument('--stop-at-step', type=int, default=None, metavar='N',
                       help='pause at the first episode end at or after step N (resumable)')
    train.add_argument('--no-progress', action='store_true', help='no progress bar')
    train.add_argument('--torch-threads', type=int, default=1, metavar='N',
                       help="torch intra-op CPU threads (default 1, as the learner node: the "
                            "small networks run faster on one; 0: torch's default)")
    train.add_argument('--list-tasks', action='store_true', help='list the tasks and exit')
    train.set_defaults(handler=_cmd_train)

    plot = sub.add_parser(
        'plot', help='plot held-out success and return against env steps and queries',
        description='Draw a PNG of held-out success rate and return against environment '
                    'steps and against queries asked, for one or more run directories. Runs '
                    'differing only in seed are averaged (mean ± std) into one curve per arm, '
                    'labelled by algorithm and task (plus what else differs, if needed).')
    plot.add_argument('runs', nargs='+', type=Path, help='run directories')
    plot.add_argument('--out', type=Path, default=None,
                      help='output PNG (default: <first run>/curves.png)')
    plot.add_argument('--title', default='', help='figure title')
    plot.add_argument('--table', action='store_true',
                      help='also print, per arm, the queries asked when held-out success first '
                           'reached --threshold (mean ± std over the seeds that reached it, '
                           'how many never did, and each run)')
    plot.add_argument('--threshold', type=float, default=0.9, metavar='S',
                      help='success rate of --table (default 0.9)')
    plot.set_defaults(handler=_cmd_plot)

    reward = sub.add_parser(
        'reward-train', help='train a reward model offline from recorded bags',
        description='Rebuild a preference store from the queries and labels recorded in the '
                    'bags (duplicates stored once, labels without their query skipped), train '
                    'a reward ensemble on its train split, report train and validation '
                    'accuracy and write a reward-model checkpoint a learner can start from. '
                    'Deterministic for a given seed.')
    reward.add_argument('--bag', type=Path, nargs='+', required=True, metavar='DIR',
                        help='bag directories (or .mcap files), read in this order')
    reward.add_argument('--out', type=Path, required=True, help='checkpoint to write')
    reward.add_argument('--config', type=Path, default=None,
                        help='YAML with reward_model / reward_training / store / seed sections '
                             '(pref_rl_learner.offline_reward.RewardTrainConfig)')
    reward.add_argument('--store', type=Path, default=None,
                        help='directory of the rebuilt preference store (default: OUT with '
                             'suffix .store)')
    reward.add_argument('--seed', type=int, default=None,
                        help='seed of initialisation, shuffling and the validation split')
    reward.add_argument('--val-fraction', type=float, default=None, metavar='F',
                        help='share of labels held out for validation (default 0.2)')
    reward.set_defaults(handler=_cmd_reward_train)

    bag = sub.add_parser(
        'bag', help='inspect, validate and recover recorded bags (rosbag2, MCAP)',
        description='Bags written by the segment_recorder node (docs/bags.md).')
    bag_sub = bag.add_subparsers(dest='bag_command', required=True, metavar='BAG_COMMAND')
    check = bag_sub.add_parser(
        'check', help='validate a bag; --recover salvages what a crash left',
        description='Check metadata.yaml against the files and every file record by record '
                    '(bounds, CRCs, statistics); report each file as ok, missing, truncated, '
                    'corrupt, count mismatch, unlisted or open. Exit status 0: the bag is '
                    'valid (after recovery, with --recover); 1: it is not.')
    check.add_argument('bag', type=Path, help='bag directory, or one .mcap file')
    check.add_argument('--recover', action='store_true',
                       help='salvage the intact messages of torn or corrupt files into closed '
                            'files (originals kept in .torn/), rebuild metadata.yaml and name '
                            'what was lost')
    check.set_defaults(handler=_cmd_bag)
    info = bag_sub.add_parser('info', help='summarize a bag, like `ros2 bag info`')
    info.add_argument('bag', type=Path, help='bag directory, or one .mcap file')
    info.set_defaults(handler=_cmd_bag)
    from pref_rl_learner.fewshot import collect_cli, pretrain_cli
    from pref_rl_learner.sweep import cli as sweep_cli

    for register in (collect_cli.register, pretrain_cli.register, sweep_cli.register):
        register(sub)
    for entry_point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        entry_point.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pref-rl``; returns the process exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == 'launch' and all(':=' in e for e in extra):
        args.arguments += extra  # `pref-rl launch FILE -p a:=1`: arguments after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.handler(args)
    except PrefRLError as err:
        print(f'pref-rl {args.command}: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
