"""Run a sweep on this machine: jobs balanced over a CPU set and a GPU list.

The CPUs are cut into ``jobs`` disjoint shares of near-equal size (when there are more jobs
than CPUs, jobs share CPUs round-robin); job ``i`` gets GPU ``gpus[i % len(gpus)]``, or none
(``CUDA_VISIBLE_DEVICES`` empty: the run uses the CPU). The runs, in expansion order (seeds
innermost), are cut into groups of ``runs_per_job`` (so a group is several seeds of one
configuration); whenever a job is free it takes the next group and runs its runs side by side
on its CPU share and GPU. Each ``pref-rl train`` process is pinned to its job's CPUs
(``sched_setaffinity``) and told to use that many threads. A failed run does not stop the
others.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pref_rl_learner.sweep.grid import SweepError, SweepRun, SweepSpec
from pref_rl_learner.sweep.runs import (
    RUN_LOG,
    RunResult,
    result_of,
    train_command,
    write_run_record,
)

Command = Callable[[SweepSpec, SweepRun, Path], list[str]]
"""Builds the command of a run (default: :func:`~pref_rl_learner.sweep.runs.train_command`)."""


@dataclass(frozen=True)
class Slot:
    """Where one job runs."""

    index: int
    """Job number."""
    cpus: tuple[int, ...]
    """CPUs its processes are pinned to."""
    gpu: str | None
    """CUDA device it sees (``CUDA_VISIBLE_DEVICES``); None: no GPU."""

    def describe(self) -> str:
        """``cpus 0-1, gpu 0``-style text."""
        return f"cpus {format_cpus(self.cpus)}, {'gpu ' + self.gpu if self.gpu else 'no gpu'}"


def parse_cpus(text: str) -> tuple[int, ...]:
    """``'0-3,6'`` -> ``(0, 1, 2, 3, 6)`` (sorted, duplicates dropped).

    Raises:
        SweepError: malformed list, or CPUs this process may not run on.
    """
    cpus: set[int] = set()
    try:
        for part in text.split(','):
            first, sep, last = part.strip().partition('-')
            low, high = int(first), int(last) if sep else int(first)
            if low < 0 or high < low:
                raise ValueError(part)
            cpus.update(range(low, high + 1))
    except ValueError:
        raise SweepError(f'--cpus {text!r}: expected a list such as 0-3,6') from None
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise SweepError(f'--cpus {text!r}: CPU(s) {format_cpus(sorted(cpus - allowed))} are '
                         f'not available (this process may use {format_cpus(sorted(allowed))})')
    return tuple(sorted(cpus))


def parse_gpus(text: str) -> tuple[str, ...]:
    """``'0,1'`` -> ``('0', '1')``; an empty string means no GPU."""
    gpus = tuple(g.strip() for g in text.split(',') if g.strip())
    if len(set(gpus)) != len(gpus):
        raise SweepError(f'--gpus {text!r} lists a GPU twice')
    return gpus


def format_cpus(cpus: Sequence[int]) -> str:
    """``(0, 1, 2, 3, 6)`` -> ``'0-3,6'``."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ','.join(str(a) if a == b else f'{a}-{b}' for a, b in ranges)


def plan_slots(cpus: Sequence[int], gpus: Sequence[str], jobs: int) -> list[Slot]:
    """``jobs`` slots: disjoint near-equal CPU shares (round-robin when jobs > CPUs) and
    GPUs round-robin."""
    if jobs < 1:
        raise SweepError(f'--jobs must be >= 1, got {jobs}')
    if not cpus:
        raise SweepError('no CPUs to run on')
    cpus = list(cpus)
    slots = []
    for i in range(jobs):
        if jobs <= len(cpus):
            share = tuple(cpus[i * len(cpus) // jobs:(i + 1) * len(cpus) // jobs])
        else:
            share = (cpus[i % len(cpus)],)
        slots.append(Slot(i, share, gpus[i % len(gpus)] if gpus else None))
    return slots


def group_runs(runs: Sequence[SweepRun], runs_per_job: int) -> list[list[SweepRun]]:
    """Consecutive groups of ``runs_per_job`` runs (seeds of one configuration together)."""
    if runs_per_job < 1:
        raise SweepError(f'--runs-per-job must be >= 1, got {runs_per_job}')
    return [list(runs[i:i + runs_per_job]) for i in range(0, len(runs), runs_per_job)]


def child_environment(slot: Slot, threads: int) -> dict[str, str]:
    """Environment of a run on ``slot`` using ``threads`` threads."""
    env = dict(os.environ)
    env['CUDA_VISIBLE_DEVICES'] = slot.gpu or ''
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        env[name] = str(threads)
    env['PYTHONUNBUFFERED'] = '1'
    return env


@dataclass
class _Active:
    run: SweepRun
    slot: Slot
    process: subprocess.Popen
    log: Any
    command: list[str]


class LocalRunner:
    """Runs groups of sweep runs as ``pref-rl train`` processes on CPU/GPU slots."""

    def __init__(self, spec: SweepSpec, out: Path, slots: Sequence[Slot],
                 runs_per_job: int = 1, command: Command = train_command,
                 progress: bool = True, poll_s: float = 0.2) -> None:
        self.spec, self.out, self.slots = spec, Path(out), list(slots)
        self.runs_per_job, self.command = runs_per_job, command
        self.progress, self.poll_s = progress, poll_s
        self.interrupted = False  # set when Ctrl-C (SIGINT) stopped the last run() early

    def plan(self, runs: Sequence[SweepRun]) -> list[tuple[Slot, list[SweepRun]]]:
        """The first assignment of groups to slots (what a dry run shows); later groups go to
        whichever slot frees up first, so this is exact only up to one group per slot."""
        groups = group_runs(runs, self.runs_per_job)
        return [(self.slots[i % len(self.slots)], group) for i, group in enumerate(groups)]

    def run(self, runs: Sequence[SweepRun], already: Sequence[RunResult] = ()) -> list[RunResult]:
        """Run everything; returns one result per run (``already`` first, then in run order).

        Ctrl-C (or SIGTERM) stops starting runs, asks the running ones to pause (they
        checkpoint at the next episode end; ``--resume`` continues them) and reports; a second
        one kills them.
        """
        pending = deque(group_runs(runs, self.runs_per_job))
        free = deque(self.slots)
        busy: dict[int, int] = {}
        active: list[_Active] = []
        results: dict[str, RunResult] = {}
        bar = self._bar(len(runs) + len(already), len(already))
        self.interrupted = False
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread:
            previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
            # Ctrl-C pauses even when the sweep was started with SIGINT ignored (nohup, `&`
            # in a script), which Python would otherwise keep.
            previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while pending or active:
                try:
                    while pending and free and not self.interrupted:
                        slot, group = free.popleft(), pending.popleft()
                        busy[slot.index] = len(group)
                        threads = max(1, len(slot.cpus) // len(group))
                        for run in group:
                            active.append(self._start(run, slot, threads))
                    time.sleep(self.poll_s)
                    for job in [a for a in active if a.process.poll() is not None]:
                        active.remove(job)
                        results[job.run.name] = self._finish(job)
                        busy[job.slot.index] -= 1
                        if busy[job.slot.index] == 0:
                            free.append(job.slot)
                        if bar is not None:
                            bar.update(1)
                            failed = sum(not r.ok for r in results.values())
                            bar.set_postfix(failed=failed, refresh=True)
                except KeyboardInterrupt:
                    if self.interrupted:  # second Ctrl-C: stop now
                        for job in active:
                            job.process.kill()
                    self.interrupted = True
                    for job in active:
                        _signal(job.process, signal.SIGINT)
                    pending.clear()
        finally:
            for job in active:  # only on an unexpected error: leave no orphans behind
                job.process.kill()
                job.process.wait()
            if on_main_thread:
                signal.signal(signal.SIGTERM, previous_term)
                signal.signal(signal.SIGINT, previous_int)
            if bar is not None:
                bar.close()
        not_started = [RunResult(r.name, 'not started') for r in runs if r.name not in results]
        ordered = [results[r.name] for r in runs if r.name in results]
        return list(already) + ordered + not_started

    def _bar(self, total: int, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit='run', desc=f'sweep {self.spec.name}',
                    dynamic_ncols=True)

    def _start(self, run: SweepRun, slot: Slot, threads: int) -> _Active:
        run_dir = self.out / run.name
        run_dir.mkdir(parents=True, exist_ok=True)
        command = self.command(self.spec, run, run_dir)
        write_run_record(self.spec, run, run_dir, command, 'running')
        log = open(run_dir / RUN_LOG, 'ab')  # noqa: SIM115 - closed in _finish
        log.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} {slot.describe()}\n'.encode())
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL,
                                   env=child_environment(slot, threads))
        # Pin from here rather than in a preexec_fn (not safe with threads, e.g. tqdm's): the
        # child has only just exec'd, and threads it creates later inherit the mask.
        # If it already exited, its exit status tells what happened.
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(process.pid, slot.cpus)
        return _Active(run, slot, process, log, command)

    def _finish(self, job: _Active) -> RunResult:
        job.log.close()
        run_dir = self.out / job.run.name
        result = result_of(job.run, run_dir, job.process.returncode,
                           interrupted=self.interrupted)
        write_run_record(self.spec, job.run, run_dir, job.command, result.status,
                         job.process.returncode)
        return result


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _signal(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
