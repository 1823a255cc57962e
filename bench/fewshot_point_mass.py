"""Headline benchmark: queries to 90% held-out point-mass success, fewshot / init / pebble.

One command does everything, each step skipped when its output is already there:

1. ``pref-rl collect point_mass`` (the default dataset: noisy expert, cross-goal and random
   episodes for the 16 training goals, plus the 8 held-out goals as eval tasks);
2. ``pref-rl pretrain`` with ``config/pretrain_point_mass.yaml`` (MAML with learned
   per-parameter inner learning rates; the best checkpoint by post-adaptation accuracy);
3. ``pref-rl sweep config/sweeps/headline_point_mass.json`` (the three arms, 3 seeds each,
   oracle teacher, evaluation on the held-out goals every 1000 env steps), two runs at a time;
4. per arm, the queries asked at the first evaluation with success ≥ 90% (mean ± std over the
   seeds that got there, and how many never did), success at the end, and the curves
   (``bench/results/fewshot_point_mass.png``).

The peer is ``pebble`` (the same PEBBLE learning its reward from scratch), in the same run:
``pebble_over_fewshot_queries`` is the ratio of queries to 90% (goal ≥ 6, with fewshot at
≤ 6 queries). When pebble never reaches 90% the ratio is a lower bound computed from the
queries it asked in its whole run, and says so. Queries to 50% and the best evaluation of
each run are reported as well.

Run: scripts/bench fewshot_point_mass (about 20 minutes on 2 cores; --quick: one seed, shorter
runs, 50% threshold, a smoke test of the pipeline only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result

from pref_rl_learner.plotting import plot_runs, queries_to_success
from pref_rl_learner.run_log import read_csv

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / 'datasets' / 'point_mass'
PRETRAIN = ROOT / 'runs' / 'pretrain_point_mass'
SWEEP = ROOT / 'config' / 'sweeps' / 'headline_point_mass.json'
ARMS = ('fewshot', 'init', 'pebble')


def run(command: list[str]) -> None:
    print('[fewshot_point_mass] $', ' '.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def arm_of(run_dir: Path) -> str:
    return json.loads((run_dir / 'sweep_run.json').read_text())['overrides']['algorithm']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threshold', type=float, default=0.9)
    parser.add_argument('--out', type=Path, default=ROOT / 'runs' / 'headline_point_mass',
                        help='sweep output directory (resumed if it exists)')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args()
    started = time.monotonic()
    if not (DATASET / 'manifest.json').exists():
        run(['pref-rl', 'collect', 'point_mass', '--out', str(DATASET), '--no-progress'])
    if not (PRETRAIN / 'best_model.pt').exists():
        run(['pref-rl', 'pretrain', '--dataset', str(DATASET), '--out', str(PRETRAIN),
             '--config', str(ROOT / 'config' / 'pretrain_point_mass.yaml'), '--no-progress'])
    sweep = SWEEP
    if args.quick:
        spec = json.loads(SWEEP.read_text())
        spec['base'] = str((SWEEP.parent / spec['base']).resolve())
        spec['seeds'] = 1
        spec['grid']['total_steps'] = [4000]
        sweep = Path(tempfile.mkdtemp()) / 'quick.json'
        sweep.write_text(json.dumps(spec))
        args.threshold, args.out = 0.5, Path(tempfile.mkdtemp()) / 'sweep'
    resume = ['--resume'] if args.out.exists() else []
    run(['pref-rl', 'sweep', str(sweep), '--out', str(args.out), '--jobs', str(args.jobs),
         '--no-progress', *resume])

    run_dirs = sorted(p.parent for p in args.out.glob('*/sweep_run.json'))
    table = queries_to_success(run_dirs, threshold=args.threshold)
    print(table.format_table(), flush=True)
    figures: dict = {'threshold': args.threshold, 'seeds_per_arm': len(run_dirs) // len(ARMS)}
    by_arm: dict[str, dict] = {arm: {'queries': [], 'final': [], 'asked': []} for arm in ARMS}
    for entry in table.runs:
        arm = arm_of(entry.run_dir)
        evals = read_csv(entry.run_dir / 'eval.csv')
        by_arm[arm]['queries'].append(entry.queries)
        by_arm[arm]['final'].append(round(evals['success_rate'][-1], 3))
        by_arm[arm]['asked'].append(int(evals['queries'][-1]))
    half = queries_to_success(run_dirs, threshold=0.5)
    for entry in half.runs:
        by_arm[arm_of(entry.run_dir)].setdefault('half', []).append(entry.queries)
    for entry in table.runs:
        evals = read_csv(entry.run_dir / 'eval.csv')
        by_arm[arm_of(entry.run_dir)].setdefault('best', []).append(
            round(max(evals['success_rate']), 3))
    for arm, data in by_arm.items():
        figures[f'{arm}_queries_to_50pct_per_seed'] = data['half']
        figures[f'{arm}_best_success_per_seed'] = data['best']
        reached = [q for q in data['queries'] if q is not None]
        figures[f'{arm}_queries_to_threshold_per_seed'] = data['queries']
        figures[f'{arm}_queries_to_threshold_mean'] = (
            round(sum(reached) / len(reached), 1) if reached else None)
        figures[f'{arm}_seeds_not_reaching'] = len(data['queries']) - len(reached)
        figures[f'{arm}_final_success_per_seed'] = data['final']
        figures[f'{arm}_queries_asked_per_seed'] = data['asked']
    few = figures['fewshot_queries_to_threshold_mean']
    peb = figures['pebble_queries_to_threshold_mean']
    if few:
        if peb is not None and figures['pebble_seeds_not_reaching'] == 0:
            figures['pebble_over_fewshot_queries'] = round(peb / max(few, 1), 1)
        else:
            bound = min(figures['pebble_queries_asked_per_seed'])
            figures['pebble_over_fewshot_queries'] = (
                f'> {round(bound / max(few, 1), 1)} (pebble did not reach '
                f'{args.threshold:.0%} on every seed within {bound}+ queries)')
    figures['wall_minutes_this_invocation'] = round((time.monotonic() - started) / 60, 1)
    if args.quick:  # a smoke test: nothing is written to bench/results
        print(json.dumps(figures, indent=1))
        return
    plot_runs(run_dirs, RESULTS / 'fewshot_point_mass.png',
              title='point mass, held-out goals: fewshot / init / pebble',
              threshold=args.threshold)
    print(write_result(
        'fewshot_point_mass', figures,
        'Peer: pebble (reward from scratch), same sweep, same seeds, same teacher (oracle). '
        'Queries: asked at the first held-out evaluation (every 1000 env steps, 16 episodes '
        'over the 8 held-out goals) with success >= threshold. Pretraining on the 16 '
        'training goals (pref-rl collect point_mass defaults; config/pretrain_point_mass.yaml).'
    ))


if __name__ == '__main__':
    main()
