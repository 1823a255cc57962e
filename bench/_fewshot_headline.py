"""The few-shot headline benchmarks' shared procedure (issue 5): fewshot / init / pebble.

Each ``bench/fewshot_<family>.py`` names a :class:`Headline` and calls :func:`main`, which
does everything, each step skipped when its output is already there:

1. ``pref-rl collect FAMILY`` into ``datasets/<dataset>`` (training tasks only for MetaWorld;
   the held-out goals or variations become eval tasks for checkpoint selection);
2. ``pref-rl pretrain`` (MAML with learned per-parameter inner learning rates; the best
   checkpoint by post-adaptation accuracy on the held-out tasks);
3. ``pref-rl sweep`` of the family's sweep file (the three arms, same seeds, oracle teacher,
   evaluation on held-out goals), two runs at a time;
4. per arm: the queries asked at the first evaluation with success ≥ the threshold (mean over
   the seeds that got there and how many never did), queries to 50%, the best and the final
   evaluation, the queries asked, and the curves (``bench/results/<name>.png``).

The peer is ``pebble`` (PEBBLE learning its reward from scratch) in the same sweep:
``pebble_over_fewshot_queries`` is the ratio of queries to the threshold. When pebble never
gets there the ratio is a lower bound from the queries it asked in its whole run, and says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result

from pref_rl_learner.plotting import plot_runs, queries_to_success
from pref_rl_learner.run_log import read_csv

ROOT = Path(__file__).resolve().parent.parent
ARMS = ('fewshot', 'init', 'pebble')


@dataclass(frozen=True)
class Headline:
    """One family's headline benchmark."""

    name: str
    """Result name: ``bench/results/<name>.json`` and ``.png``; runs in ``runs/<name>``."""
    family: str
    """``pref-rl collect`` family."""
    dataset: str
    """Dataset directory under ``datasets/``."""
    collect_args: tuple[str, ...]
    """Extra ``pref-rl collect`` arguments (counts, tasks)."""
    pretrain_config: str
    """Pretraining config under ``config/``."""
    pretrain_overrides: tuple[str, ...]
    """``--set KEY=VALUE`` overrides of the pretraining config (a CPU-affordable budget)."""
    pretrain_dir: str
    """Pretraining output under ``runs/`` (the sweep file's ``pretrained_reward`` points here)."""
    sweep: str
    """Sweep file under ``config/sweeps/``."""
    title: str
    """Plot title."""
    notes: str
    """What the figures mean (written into the result file)."""
    quick_steps: int
    """``total_steps`` of the ``--quick`` smoke test."""
    pretrained_figures: Callable[[Path], dict] | None = None
    """Extra figures about the pretrained checkpoint (given its path)."""


def _run(name: str, command: list[str]) -> None:
    print(f'[{name}] $', ' '.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def _arm_of(run_dir: Path) -> str:
    return json.loads((run_dir / 'sweep_run.json').read_text())['overrides']['algorithm']


def _quick_sweep(sweep: Path, steps: int) -> Path:
    spec = json.loads(sweep.read_text())
    spec['base'] = str((sweep.parent / spec['base']).resolve())
    spec['seeds'] = 1
    spec['grid']['total_steps'] = [steps]
    path = Path(tempfile.mkdtemp()) / 'quick.json'
    path.write_text(json.dumps(spec))
    return path


def _figures(run_dirs: list[Path], threshold: float) -> dict:
    table = queries_to_success(run_dirs, threshold=threshold)
    print(table.format_table(), flush=True)
    half = {e.run_dir: e.queries for e in queries_to_success(run_dirs, threshold=0.5).runs}
    by_arm: dict[str, dict[str, list]] = {
        arm: {'queries': [], 'half': [], 'best': [], 'final': [], 'asked': []} for arm in ARMS}
    for entry in table.runs:
        evals = read_csv(entry.run_dir / 'eval.csv')
        data = by_arm[_arm_of(entry.run_dir)]
        data['queries'].append(entry.queries)
        data['half'].append(half[entry.run_dir])
        data['best'].append(round(max(evals['success_rate']), 3))
        data['final'].append(round(evals['success_rate'][-1], 3))
        data['asked'].append(int(evals['queries'][-1]))
    figures: dict = {'threshold': threshold, 'seeds_per_arm': len(run_dirs) // len(ARMS)}
    for arm, data in by_arm.items():
        reached = [q for q in data['queries'] if q is not None]
        figures[f'{arm}_queries_to_threshold_per_seed'] = data['queries']
        figures[f'{arm}_queries_to_threshold_mean'] = (
            round(sum(reached) / len(reached), 1) if reached else None)
        figures[f'{arm}_seeds_not_reaching'] = len(data['queries']) - len(reached)
        figures[f'{arm}_queries_to_50pct_per_seed'] = data['half']
        figures[f'{arm}_best_success_per_seed'] = data['best']
        figures[f'{arm}_final_success_per_seed'] = data['final']
        figures[f'{arm}_queries_asked_per_seed'] = data['asked']
    few = figures['fewshot_queries_to_threshold_mean']
    peb = figures['pebble_queries_to_threshold_mean']
    if few is not None:
        if peb is not None and figures['pebble_seeds_not_reaching'] == 0:
            figures['pebble_over_fewshot_queries'] = round(peb / max(few, 1), 1)
        else:
            bound = min(figures['pebble_queries_asked_per_seed'])
            figures['pebble_over_fewshot_queries'] = (
                f'> {round(bound / max(few, 1), 1)} (pebble did not reach '
                f'{threshold:.0%} on every seed within {bound}+ queries)')
    return figures


def main(headline: Headline, doc: str) -> None:
    """Run ``headline`` end to end (``doc``: the benchmark script's docstring, for --help)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument('--threshold', type=float, default=0.9)
    parser.add_argument('--out', type=Path, default=ROOT / 'runs' / headline.name,
                        help='sweep output directory (resumed if it exists)')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--quick', action='store_true',
                        help='one seed, short runs, 50%% threshold, nothing written to '
                             'bench/results: a smoke test of the pipeline')
    args = parser.parse_args()
    started = time.monotonic()
    dataset = ROOT / 'datasets' / headline.dataset
    pretrain = ROOT / 'runs' / headline.pretrain_dir
    if not (dataset / 'manifest.json').exists():
        _run(headline.name, ['pref-rl', 'collect', headline.family, '--out', str(dataset),
                             *headline.collect_args, '--no-progress'])
    if not (pretrain / 'best_model.pt').exists():
        _run(headline.name, ['pref-rl', 'pretrain', '--dataset', str(dataset),
                             '--out', str(pretrain), '--no-progress',
                             '--config', str(ROOT / 'config' / headline.pretrain_config),
                             *(f'--set={item}' for item in headline.pretrain_overrides)])
    sweep = ROOT / 'config' / 'sweeps' / headline.sweep
    if args.quick:
        sweep = _quick_sweep(sweep, headline.quick_steps)
        args.threshold, args.out = 0.5, Path(tempfile.mkdtemp()) / 'sweep'
    resume = ['--resume'] if args.out.exists() else []
    _run(headline.name, ['pref-rl', 'sweep', str(sweep), '--out', str(args.out),
                         '--jobs', str(args.jobs), '--no-progress', *resume])
    run_dirs = sorted(p.parent for p in args.out.glob('*/sweep_run.json'))
    figures = _figures(run_dirs, args.threshold)
    figures['pretraining'] = _pretraining_summary(pretrain)
    if headline.pretrained_figures is not None:
        figures['pretraining'].update(headline.pretrained_figures(pretrain / 'best_model.pt'))
    figures['wall_minutes_this_invocation'] = round((time.monotonic() - started) / 60, 1)
    if args.quick:
        print(json.dumps(figures, indent=1))
        return
    plot_runs(run_dirs, RESULTS / f'{headline.name}.png', title=headline.title,
              threshold=args.threshold)
    print(write_result(headline.name, figures, headline.notes))


def _pretraining_summary(pretrain: Path) -> dict:
    """Outer steps and the best held-out accuracy, before and after adaptation."""
    evals = read_csv(pretrain / 'eval.csv')
    best = max(range(len(evals['step'])), key=lambda i: evals['accuracy_post_adaptation'][i])
    return {'steps': int(evals['step'][-1]), 'best_step': int(evals['step'][best]),
            'held_out_accuracy_post_adaptation': round(evals['accuracy_post_adaptation'][best], 3),
            'held_out_accuracy_pre_adaptation': round(evals['accuracy_pre_adaptation'][best], 3)}
