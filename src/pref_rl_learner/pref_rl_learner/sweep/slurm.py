"""Run a sweep on SLURM through submitit, several runs per allocation.

The runs (expansion order, seeds innermost) are cut into groups of ``runs_per_allocation``;
each group is one SLURM job (all of them submitted as one job array) that runs its runs side
by side with the local runner, splitting the allocation's CPUs (its affinity mask) and GPUs
(its ``CUDA_VISIBLE_DEVICES``) between them. Run directories are written under the sweep's
output directory, which must be on a file system the nodes share; submitit's own logs go to
``<out>/slurm/``. A run cut off by the time limit keeps its last checkpoint:
``pref-rl sweep ... --slurm --resume`` submits what is left and the runs continue from there.

submitit is optional (``pip install submitit==1.5.4``) and imported only when submitting.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pref_rl_learner.sweep.grid import SweepError, SweepRun, SweepSpec
from pref_rl_learner.sweep.local import Command, LocalRunner, group_runs, plan_slots
from pref_rl_learner.sweep.runs import RunResult, train_command

SUBMITIT_VERSION = '1.5.4'
"""The submitit release this module is tested with."""
CLUSTERS = ('slurm', 'local', 'debug')
"""submitit executors: ``slurm``; ``local`` (background processes on this machine) and
``debug`` (in this process, when results are awaited) for trying a sweep out."""


class SubmititMissingError(SweepError):
    """``--slurm`` was asked for but submitit is not installed."""


@dataclass(frozen=True)
class SlurmOptions:
    """How sweep runs are submitted to SLURM."""

    partition: str | None = None
    """SLURM partition (None: the cluster's default)."""
    time_min: int = 240
    """Time limit of each allocation in minutes (its runs go side by side: the longest run
    must fit)."""
    runs_per_allocation: int = 1
    """Runs sharing one allocation (consecutive runs: seeds of one configuration)."""
    cpus_per_task: int = 4
    """CPUs of each allocation, split between its runs."""
    gpus_per_node: int = 0
    """GPUs of each allocation, handed to its runs round-robin (0: CPU only)."""
    mem_gb: int | None = None
    """Memory of each allocation in GB (None: the partition's default)."""
    cluster: str = 'slurm'
    """submitit executor: one of :data:`CLUSTERS`."""

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise SweepError(f"cluster {self.cluster!r} is not one of {', '.join(CLUSTERS)}")
        for name in ('time_min', 'runs_per_allocation', 'cpus_per_task'):
            if getattr(self, name) < 1:
                raise SweepError(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.gpus_per_node < 0:
            raise SweepError(f'gpus_per_node must be >= 0, got {self.gpus_per_node}')

    def executor_parameters(self, name: str) -> dict[str, Any]:
        """Parameters of ``submitit.AutoExecutor.update_parameters``."""
        parameters: dict[str, Any] = {
            'name': name, 'timeout_min': self.time_min, 'nodes': 1, 'tasks_per_node': 1,
            'cpus_per_task': self.cpus_per_task, 'gpus_per_node': self.gpus_per_node,
            'stderr_to_stdout': True}
        if self.mem_gb is not None:
            parameters['mem_gb'] = self.mem_gb
        if self.partition:
            parameters['slurm_partition'] = self.partition
        return parameters


def import_submitit() -> Any:
    """Import submitit, or say how to install it.

    Raises:
        SubmititMissingError: it is not installed.
    """
    try:
        import submitit
    except ImportError:
        raise SubmititMissingError(
            f'running a sweep on SLURM needs submitit: pip install submitit=={SUBMITIT_VERSION}'
        ) from None
    return submitit


def allocation_groups(runs: Sequence[SweepRun], options: SlurmOptions) -> list[list[SweepRun]]:
    """The runs of each allocation."""
    return group_runs(runs, options.runs_per_allocation)


def run_allocation(spec: SweepSpec, out: Path, runs: Sequence[SweepRun],
                   command: Command = train_command) -> list[RunResult]:
    """Body of one SLURM job: run ``runs`` side by side on the allocation's CPUs and GPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    gpus = [g for g in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if g.strip()]
    slots = plan_slots(cpus, gpus, jobs=len(runs))
    runner = LocalRunner(spec, out, slots, runs_per_job=1, command=command, progress=False,
                         poll_s=1.0)
    results = runner.run(runs)
    for result in results:
        print(f'{result.name}: {result.status} (exit {result.exit_code})', flush=True)
    return results


def submit(spec: SweepSpec, out: Path, runs: Sequence[SweepRun], options: SlurmOptions,
           command: Command = train_command) -> list[Any]:
    """Submit one job per group of runs (one job array); returns the submitit jobs."""
    submitit = import_submitit()
    out = Path(out).resolve()
    groups = allocation_groups(runs, options)
    if not groups:
        return []
    jobs = []
    try:
        executor = submitit.AutoExecutor(folder=out / 'slurm', cluster=options.cluster)
        executor.update_parameters(**options.executor_parameters(f'pref-rl-{spec.name}'))
        with executor.batch():
            for group in groups:
                jobs.append(executor.submit(run_allocation, spec, out, group, command))
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        raise SweepError(f'cannot submit to {options.cluster}: {err}') from err
    return jobs


def wait(jobs: Sequence[Any], groups: Sequence[Sequence[SweepRun]]) -> list[RunResult]:
    """Wait for the jobs; a job that failed as a whole marks its runs failed."""
    results: list[RunResult] = []
    for job, group in zip(jobs, groups, strict=True):
        try:
            results.extend(job.result())
        except Exception as err:  # submitit re-raises whatever the job raised
            print(f'job {job.job_id} failed: {str(err).splitlines()[-1] if str(err) else err}')
            results.extend(RunResult(run.name, 'failed') for run in group)
    return results
