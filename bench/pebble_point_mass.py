"""PEBBLE learning curve on point mass with an oracle teacher, 3 seeds, against SAC on the
true reward (the upper bound PEBBLE approaches) and PEBBLE with a teacher answering at random
(the control: the same budget and schedule, ``teacher.beta=0``) in the same run.

Writes bench/results/pebble_point_mass.json (final held-out success of both, their ratio, the
mean success-vs-queries curve) and bench/results/pebble_point_mass.png (``pref-rl plot``).
Seeds run as parallel processes, one torch thread each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {'pebble': ROOT / 'config' / 'pebble_point_mass.yaml',
           'sac': ROOT / 'config' / 'sac_point_mass.yaml'}
SEEDS = (0, 1, 2)


ARMS = {'pebble': ('pebble', []), 'sac': ('sac', []),
        'random_labels': ('pebble', ['teacher.beta=0'])}
"""Arm -> (config, extra overrides)."""


def _train(run_dir: Path, seed: int, arm: str, overrides: list[str]) -> Path:
    config, extra = ARMS[arm]
    cmd = [sys.executable, '-m', 'pref_rl_learner.cli', 'train', '--config',
           str(CONFIGS[config]), '--path', str(run_dir), '--no-progress',
           '--set', f'seed={seed}', '--set', 'tensorboard=false']
    overrides = [*extra, *overrides]
    for o in overrides:
        cmd += ['--set', o]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return run_dir


def _final(run_dir: Path, column: str) -> float:
    from pref_rl_learner.run_log import read_csv

    return read_csv(run_dir / 'eval.csv')[column][-1]


def _previous(path: Path) -> dict:
    """The headline figures of the results file this run replaces (before/after)."""
    import json

    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    keys = ('pebble_final_success_rate', 'pebble_final_success_rate_per_seed',
            'sac_true_reward_final_success_rate', 'pebble_final_return')
    return {'previous_commit': old.get('machine', {}).get('commit'),
            **{f'previous_{k}': old[k] for k in keys if k in old}}


def _control_figures(runs: list[Path]) -> dict:
    """Final figures of the random-label control arm."""
    return {'random_labels_final_success_rate': round(float(np.mean(
                [_final(r, 'success_rate') for r in runs])), 3),
            'random_labels_final_success_rate_per_seed': [round(_final(r, 'success_rate'), 3)
                                                          for r in runs],
            'random_labels_final_return': round(float(np.mean([_final(r, 'return')
                                                               for r in runs])), 2)}


def _update_arms(runs: list[Path], arms: list[str], minutes: float) -> None:
    """Only some arms ran: add their figures to the existing results file."""
    import json

    path = RESULTS / 'pebble_point_mass.json'
    data = json.loads(path.read_text())
    if 'random_labels' in arms:
        data.update(_control_figures(runs))
        data['random_labels_commit'] = machine()['commit']
        data['random_labels_wall_minutes'] = round(minutes, 1)
        data['notes'] += (f" The random-label control ran separately (commit "
                          f"{data['random_labels_commit']}, same configs and seeds).")
    else:
        raise SystemExit('only the random_labels arm can be added to an existing result')
    path.write_text(json.dumps(data, indent=2) + '\n')
    print(f'updated {path}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--quick', action='store_true', help='one seed, a quarter of the steps')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 2)
    parser.add_argument('--arms', nargs='+', choices=sorted(ARMS), default=sorted(ARMS),
                        help='arms to run; the figures of arms not run are kept from the '
                             'results file (its notes say so)')
    args = parser.parse_args()
    import yaml

    base = yaml.safe_load(CONFIGS['pebble'].read_text())
    overrides = [f"total_steps={base['total_steps'] // 4}"] if args.quick else []
    seeds = SEEDS[:1] if args.quick else SEEDS
    out = ROOT / 'runs' / f'bench-pebble-{time.strftime("%Y%m%d-%H%M%S")}'
    started = time.monotonic()
    jobs = [(out / f'{arm}-s{s}', s, arm) for arm in args.arms for s in seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        runs = list(pool.map(lambda j: _train(*j, overrides), jobs))
    minutes = (time.monotonic() - started) / 60
    if set(args.arms) != set(ARMS):
        _update_arms(runs, args.arms, minutes)
        return
    pebble = [r for r in runs if r.name.startswith('pebble')]
    sac = [r for r in runs if r.name.startswith('sac')]
    from pref_rl_learner.plotting import plot_runs
    from pref_rl_learner.run_log import read_csv

    plot_runs(runs, RESULTS / 'pebble_point_mass.png',
              title='point mass: PEBBLE (oracle), random labels, SAC on the true reward')
    curves = [read_csv(r / 'eval.csv') for r in pebble]
    length = min(len(c['queries']) for c in curves)
    queries = np.mean([c['queries'][:length] for c in curves], axis=0)
    success = np.mean([c['success_rate'][:length] for c in curves], axis=0)
    pebble_final = float(np.mean([_final(r, 'success_rate') for r in pebble]))
    sac_final = float(np.mean([_final(r, 'success_rate') for r in sac]))
    previous = _previous(RESULTS / 'pebble_point_mass.json')
    path = write_result('pebble_point_mass', {
        **_control_figures([r for r in runs if r.name.startswith('random_labels')]),
        'peer': 'SAC on the true reward (config/sac_point_mass.yaml, same seeds, same run)',
        'seeds': len(seeds),
        'env_steps': int(read_csv(pebble[0] / 'eval.csv')['step'][-1]),
        'queries_total': int(queries[-1]),
        'pebble_final_success_rate': round(pebble_final, 3),
        'pebble_final_success_rate_per_seed': [round(_final(r, 'success_rate'), 3)
                                               for r in pebble],
        'sac_true_reward_final_success_rate': round(sac_final, 3),
        'ratio_pebble_over_sac': round(pebble_final / sac_final, 3) if sac_final else None,
        'pebble_success_vs_queries': [[int(q), round(float(s), 3)]
                                      for q, s in zip(queries, success, strict=True)],
        'pebble_final_return': round(float(np.mean([_final(r, 'return') for r in pebble])), 2),
        'sac_true_reward_final_return': round(float(np.mean([_final(r, 'return')
                                                             for r in sac])), 2),
        'wall_minutes': round(minutes, 1),
        **previous,
    }, notes='Held-out success rate (one deterministic episode per held-out goal) of PEBBLE '
             'with the oracle scripted teacher, averaged over seeds, against SAC trained on the '
             'true reward. Curves: pebble_point_mass.png. Configs: config/pebble_point_mass.yaml, '
             'config/sac_point_mass.yaml.')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
