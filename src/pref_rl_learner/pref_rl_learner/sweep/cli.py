"""``pref-rl sweep``: run a JSON grid of ``pref-rl train`` runs locally or on SLURM."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` sub-command."""
    sweep = subparsers.add_parser(
        'sweep', help='run a grid of training runs (JSON sweep file), locally or on SLURM',
        description='Expand a sweep file (base config, grid of dotted keys, paired_keys, '
                    'seeds; see pref_rl_learner.sweep.grid) into runs, check every run\'s '
                    'config, and run each as `pref-rl train` into OUT/<run> (its config.yaml, '
                    'logs, sweep_run.json and sweep.log). Locally, jobs are balanced over a CPU '
                    'set and a GPU list; with --slurm, groups of runs share an allocation. '
                    'Ctrl-C pauses the runs at a checkpoint (--resume continues them). Exit '
                    'status 0: no run failed; 1: some did (see the table); 2: the sweep is '
                    'invalid; 130: interrupted.')
    sweep.add_argument('file', type=Path, help='sweep file (JSON)')
    sweep.add_argument('--out', type=Path, required=True,
                       help='output directory: one run directory per run')
    sweep.add_argument('--dry-run', action='store_true',
                       help='check the sweep, print the runs, where they would go and their '
                            'commands; run nothing')
    sweep.add_argument('--resume', action='store_true',
                       help='skip finished runs in OUT, continue the others from their '
                            'checkpoints')
    sweep.add_argument('--no-progress', action='store_true', help='no progress bar')
    sweep.add_argument('--skip', action='append', default=[], metavar='NAME',
                       help='leave out the runs with this name (shell patterns such as '
                            '"*-s1" work; repeat it for more): runs done elsewhere. A pattern '
                            'that matches no run is an error')
    local = sweep.add_argument_group('local runner')
    local.add_argument('--cpus', default=None, metavar='LIST',
                       help='CPUs to use, e.g. 0-3,6 (default: all this process may use)')
    local.add_argument('--gpus', default='', metavar='LIST',
                       help='CUDA devices, e.g. 0,1, given to jobs round-robin (default: none, '
                            'runs use the CPU)')
    local.add_argument('--jobs', type=int, default=None, metavar='N',
                       help='jobs at a time, each on its share of the CPUs (default: one per '
                            'CPU, divided by --runs-per-job)')
    local.add_argument('--runs-per-job', type=int, default=1, metavar='K',
                       help='runs a job runs side by side on its CPUs/GPU (consecutive runs: '
                            'seeds of one configuration)')
    slurm = sweep.add_argument_group('SLURM (needs submitit)')
    slurm.add_argument('--slurm', action='store_true', help='submit to SLURM through submitit')
    slurm.add_argument('--partition', default=None, help='SLURM partition')
    slurm.add_argument('--time', type=int, default=240, metavar='MIN',
                       help='time limit of an allocation in minutes')
    slurm.add_argument('--runs-per-allocation', type=int, default=1, metavar='K',
                       help='runs sharing one allocation, side by side')
    slurm.add_argument('--cpus-per-task', type=int, default=4, metavar='N',
                       help='CPUs per allocation')
    slurm.add_argument('--gpus-per-node', type=int, default=0, metavar='N',
                       help='GPUs per allocation')
    slurm.add_argument('--mem-gb', type=int, default=None, metavar='GB',
                       help='memory per allocation')
    slurm.add_argument('--slurm-cluster', default='slurm', choices=('slurm', 'local', 'debug'),
                       help="submitit executor ('local'/'debug' try the submission out on "
                            'this machine)')
    slurm.add_argument('--wait', action='store_true',
                       help='wait for the allocations and print the results table')
    sweep.set_defaults(handler=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Handler of ``pref-rl sweep``."""
    from pref_rl_learner.sweep.grid import expand_sweep, load_sweep, validate_runs
    from pref_rl_learner.sweep.local import LocalRunner, parse_cpus, parse_gpus, plan_slots
    from pref_rl_learner.sweep.runs import (
        format_results,
        prepare_output,
        skip_runs,
        write_results,
    )

    spec = load_sweep(args.file)
    runs = expand_sweep(spec)
    validate_runs(spec, runs)
    if args.skip:
        kept = skip_runs(runs, args.skip)
        print(f'{len(runs) - len(kept)} of {len(runs)} run(s) left out by --skip')
        runs = kept
    out = args.out.resolve()
    if args.slurm:
        return _slurm(args, spec, runs, out)
    cpus = parse_cpus(args.cpus) if args.cpus else tuple(sorted(os.sched_getaffinity(0)))
    groups = -(-len(runs) // max(1, args.runs_per_job))
    jobs = args.jobs or max(1, min(groups, len(cpus) // max(1, args.runs_per_job)))
    runner = LocalRunner(spec, out, plan_slots(cpus, parse_gpus(args.gpus), jobs),
                         runs_per_job=args.runs_per_job, progress=not args.no_progress)
    if args.dry_run:
        print(f'sweep {spec.name}: {len(runs)} runs of {spec.base}, {jobs} job(s) at a time')
        for slot, group in runner.plan(runs):
            for run in group:
                print(f'{run.name}  [job {slot.index}: {slot.describe()}]\n    '
                      + shlex.join(runner.command(spec, run, out / run.name)))
        return 0
    todo, skipped = prepare_output(spec, runs, out, args.resume)
    if skipped:
        print(f'{len(skipped)} run(s) already finished: skipped')
    results = runner.run(todo, already=skipped)
    print(format_results(results))
    print(f'results: {write_results(out, results)}')
    if runner.interrupted:
        print('interrupted: `--resume` continues the sweep (paused runs from their checkpoints)')
        return 130
    return 0 if all(r.ok for r in results) else 1


def _slurm(args: argparse.Namespace, spec, runs, out: Path) -> int:
    from pref_rl_learner.sweep.runs import format_results, prepare_output, write_results
    from pref_rl_learner.sweep.slurm import SlurmOptions, allocation_groups, submit, wait

    options = SlurmOptions(partition=args.partition, time_min=args.time,
                           runs_per_allocation=args.runs_per_allocation,
                           cpus_per_task=args.cpus_per_task, gpus_per_node=args.gpus_per_node,
                           mem_gb=args.mem_gb, cluster=args.slurm_cluster)
    if args.dry_run:
        print(f'sweep {spec.name}: {len(runs)} runs in '
              f'{len(allocation_groups(runs, options))} allocation(s): '
              f'{options.executor_parameters(spec.name)}')
        for number, group in enumerate(allocation_groups(runs, options)):
            print(f"allocation {number}: {', '.join(r.name for r in group)}")
        return 0
    todo, skipped = prepare_output(spec, runs, out, args.resume)
    if skipped:
        print(f'{len(skipped)} run(s) already finished: skipped')
    jobs = submit(spec, out, todo, options)
    groups = allocation_groups(todo, options)
    for job, group in zip(jobs, groups, strict=True):
        print(f"job {job.job_id}: {', '.join(r.name for r in group)}")
    print(f'submitit logs: {out / "slurm"}')
    if not args.wait:
        return 0
    results = skipped + wait(jobs, groups)
    print(format_results(results))
    print(f'results: {write_results(out, results)}')
    return 0 if all(r.ok for r in results) else 1
