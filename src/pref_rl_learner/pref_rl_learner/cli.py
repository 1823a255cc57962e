"""The ``pref-rl`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pref_rl_learner.errors import LaunchFileError


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
            print(f"{a.name} ({default})\n    {a.description or 'no description'}")
        return 0
    if args.print:
        for node in plan.nodes:
            flag = ' [on_exit=shutdown]' if node.shutdown_on_exit else ''
            print(f"{node.name}{flag}: {' '.join(node.command)}")
        return 0
    log_dir = args.log_dir or Path('log') / 'launch' / time.strftime('%Y-%m-%d-%H-%M-%S')
    return ProcessRunner(plan.nodes, log_dir=log_dir, stop_timeout_s=args.stop_timeout).run()


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
                    'name:=value ...` for the XML subset documented in the README.')
    launch.add_argument('file', type=Path, help='path of a *.launch.xml file')
    launch.add_argument('arguments', nargs='*', metavar='name:=value',
                        help='launch arguments, as for ros2 launch')
    launch.add_argument('-s', '--show-args', action='store_true',
                        help='list the arguments the file declares and exit')
    launch.add_argument('-p', '--print', action='store_true',
                        help='print the resolved node commands and exit without running them')
    launch.add_argument('--log-dir', type=Path, default=None,
                        help='where node output is logged (default: log/launch/<time>)')
    launch.add_argument('--stop-timeout', type=float, default=5.0, metavar='S',
                        help='seconds between SIGINT, SIGTERM and SIGKILL on shutdown')
    launch.set_defaults(handler=_cmd_launch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pref-rl``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except LaunchFileError as err:
        print(f'pref-rl {args.command}: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
