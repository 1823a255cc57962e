"""A sweep's output directory: one ``pref-rl train`` run directory per sweep run.

``<out>/sweep.json`` records the sweep (base, every run's name and overrides);
``<out>/<run>/`` is the run directory of ``pref-rl train`` (its ``config.yaml``, CSV logs,
checkpoint) plus ``sweep_run.json`` (the run's overrides, command, status and exit code) and
``sweep.log`` (the run's console output). ``<out>/results.csv`` holds the last results
table. Shared by the local runner and the SLURM submission.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from pref_rl_learner.config import ConfigError
from pref_rl_learner.durable import atomic_write_bytes
from pref_rl_learner.run_log import read_csv
from pref_rl_learner.sweep.grid import SweepError, SweepRun, SweepSpec, set_arguments

RUN_RECORD = 'sweep_run.json'
"""Per-run record: sweep, overrides, command, status, exit code."""
RUN_LOG = 'sweep.log'
"""Per-run console output (stdout and stderr of ``pref-rl train``)."""
STATUSES = ('finished', 'failed', 'paused', 'interrupted', 'skipped', 'not started')
"""``finished``: exit 0 at total_steps; ``failed``: non-zero exit; ``paused``: exit 0 before
total_steps (stopped at a checkpoint; resumable); ``interrupted``: non-zero exit after the
sweep was interrupted; ``skipped``: already finished (``--resume``); ``not started``: the
sweep was interrupted first."""


@dataclass(frozen=True)
class RunResult:
    """How one run of a sweep ended."""

    name: str
    """Run name (its directory under the sweep's output)."""
    status: str
    """One of :data:`STATUSES`."""
    exit_code: int | None = None
    """Exit status of ``pref-rl train`` (None when it did not run here)."""
    step: int | None = None
    """Env step of the last evaluation."""
    queries: int | None = None
    """Queries asked at the last evaluation."""
    success: float | None = None
    """Held-out success rate at the last evaluation."""

    @property
    def ok(self) -> bool:
        """True unless the run failed."""
        return self.status != 'failed'


def train_command(spec: SweepSpec, run: SweepRun, run_dir: Path) -> list[str]:
    """The ``pref-rl train`` command of one run (run with this interpreter, no PATH needed)."""
    command = [sys.executable, '-m', 'pref_rl_learner.cli', 'train', '--config', str(spec.base)]
    for argument in set_arguments(run):
        command += ['--set', argument]
    return command + ['--path', str(run_dir), '--no-progress']


def last_evaluation(run_dir: Path) -> tuple[int | None, int | None, float | None]:
    """(step, queries, success rate) of the last row of ``eval.csv``; Nones if none."""
    eval_csv = run_dir / 'eval.csv'
    try:
        columns = read_csv(eval_csv)
    except (OSError, ValueError, KeyError):
        return None, None, None
    if not columns or not columns.get('step'):
        return None, None, None
    success = columns.get('success_rate', [math.nan])[-1]
    queries = columns.get('queries', [math.nan])[-1]
    return (int(columns['step'][-1]), None if math.isnan(queries) else int(queries),
            None if math.isnan(success) else success)


def is_finished(run_dir: Path) -> bool:
    """True when the run directory holds a run evaluated at its ``total_steps``."""
    try:
        config = yaml.safe_load((run_dir / 'config.yaml').read_text()) or {}
        total = int(config['total_steps'])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return False
    step, _, _ = last_evaluation(run_dir)
    return step is not None and step >= total and (run_dir / 'checkpoint.pt').exists()


def result_of(run: SweepRun, run_dir: Path, exit_code: int | None,
              status: str | None = None, interrupted: bool = False) -> RunResult:
    """The result of a run that exited with ``exit_code`` (status inferred unless given;
    ``interrupted``: the sweep was stopped while the run was going)."""
    if status is None:
        if exit_code != 0:
            status = 'interrupted' if interrupted else 'failed'
        else:
            status = 'finished' if is_finished(run_dir) else 'paused'
    step, queries, success = last_evaluation(run_dir)
    return RunResult(run.name, status, exit_code, step, queries, success)


def write_run_record(spec: SweepSpec, run: SweepRun, run_dir: Path, command: Sequence[str],
                     status: str, exit_code: int | None = None) -> None:
    """Write ``<run>/sweep_run.json`` atomically."""
    record = {'sweep': spec.name, 'run': run.name, 'index': run.index, 'base': str(spec.base),
              'overrides': dict(run.overrides), 'command': list(command), 'status': status,
              'exit_code': exit_code, 'time': time.strftime('%Y-%m-%dT%H:%M:%S')}
    atomic_write_bytes(run_dir / RUN_RECORD, (json.dumps(record, indent=2) + '\n').encode())


def skip_runs(runs: Sequence[SweepRun], patterns: Sequence[str]) -> list[SweepRun]:
    """The runs whose names match none of the shell-style ``patterns`` (``--skip``: runs done
    elsewhere, e.g. kept as records by a benchmark on another machine).

    Raises:
        SweepError: a pattern matches no run of the sweep (a typo would skip nothing).
    """
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(r.name, p) for r in runs)]
    if unmatched:
        raise SweepError(f'--skip {unmatched[0]!r} matches no run of this sweep'
                         + (f' (and {len(unmatched) - 1} more patterns)'
                            if len(unmatched) > 1 else ''))
    return [r for r in runs if not any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]


def prepare_output(spec: SweepSpec, runs: Sequence[SweepRun], out: Path,
                   resume: bool) -> tuple[list[SweepRun], list[RunResult]]:
    """Check ``out`` against the runs; returns (runs to start, results of skipped runs).

    Without ``resume`` no run directory may exist yet. With it, finished runs are skipped,
    runs with a checkpoint are resumed by ``pref-rl train``, and a run directory without a
    checkpoint (the run died before its first one) is cleared and started again.

    Raises:
        SweepError: run directories exist and ``resume`` is off.
    """
    existing = [run for run in runs if (out / run.name).exists()]
    if existing and not resume:
        names = ', '.join(r.name for r in existing[:5]) + (' ...' if len(existing) > 5 else '')
        raise SweepError(f'{out} already holds {len(existing)} run(s) of this sweep ({names}); '
                         'pass --resume to skip the finished ones and continue the others, '
                         'or choose another --out')
    todo, skipped = [], []
    for run in runs:
        run_dir = out / run.name
        if run_dir.exists() and is_finished(run_dir):
            _check_same_config(spec, run, run_dir)
            skipped.append(result_of(run, run_dir, None, status='skipped'))
        else:
            if run_dir.exists() and not (run_dir / 'checkpoint.pt').exists():
                shutil.rmtree(run_dir)  # nothing to resume from: start it afresh
            todo.append(run)
    out.mkdir(parents=True, exist_ok=True)
    record = {'name': spec.name, 'base': str(spec.base), 'seeds': list(spec.seeds),
              'runs': [{'name': r.name, 'overrides': dict(r.overrides)} for r in runs]}
    atomic_write_bytes(out / 'sweep.json', (json.dumps(record, indent=2) + '\n').encode())
    return todo, skipped


def _check_same_config(spec: SweepSpec, run: SweepRun, run_dir: Path) -> None:
    """A finished run is skipped only if the sweep still asks for the config it ran with."""
    from pref_rl_learner.pebble.config import load_config, to_mapping

    try:
        ran = to_mapping(load_config(run_dir / 'config.yaml'))
    except ConfigError as err:
        raise SweepError(f'{run_dir}: cannot read the finished run\'s config: {err}') from None
    wanted = to_mapping(load_config(spec.base, dict(run.overrides)))
    changed = sorted(k for k in wanted.keys() | ran.keys() if wanted.get(k) != ran.get(k))
    if changed:
        raise SweepError(f'{run_dir} finished with another config than the sweep now gives '
                         f'run {run.name} (differs in {", ".join(changed)}); remove the run '
                         'directory to run it again, or choose another --out')


def format_results(results: Sequence[RunResult]) -> str:
    """A plain-text table: run, status, exit code, last step, queries, held-out success."""
    header = ('run', 'status', 'exit', 'step', 'queries', 'success')
    rows = [header] + [(r.name, r.status, _cell(r.exit_code), _cell(r.step), _cell(r.queries),
                        '-' if r.success is None else f'{r.success:.2f}') for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    failed = sum(not r.ok for r in results)
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines.append(', '.join(f'{n} {s}' for s, n in counts.items() if n)
                 + (f' -- {failed} FAILED (see <run>/{RUN_LOG})' if failed else ''))
    return '\n'.join(lines)


def _cell(value: int | None) -> str:
    return '-' if value is None else str(value)


def write_results(out: Path, results: Sequence[RunResult]) -> Path:
    """Write ``<out>/results.csv`` (one row per run) atomically; returns its path."""
    buffer = io.StringIO()
    fields = list(asdict(results[0])) if results else ['name']
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for result in results:
        writer.writerow(asdict(result))
    path = out / 'results.csv'
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path
