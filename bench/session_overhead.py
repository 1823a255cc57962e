"""Benchmark: wall time to 80% held-out success, the ROS 2 session against one process.

Both sides run the same ``pref-rl train`` YAML (same task, seed, SAC, reward model, feedback
schedule, evaluation schedule) from a cold start as child processes of this script:

- **session**: ``pref-rl launch launch/sim_session.launch.xml`` with the learner, the scripted
  teacher, the robot and the segment recorder as separate processes talking over DDS (the
  robot steps the env and acts with its local copy of the policy, flow-controlled by the
  learner; queries, labels and weights cross processes; the recorder writes the bag);
- **one process** (the peer): ``pref-rl train``: :class:`PebbleTrainer` stepping the env,
  labelling and learning in one loop.

Both evaluate on the held-out goals every ``eval_interval_steps`` transitions and append to
``<run>/eval.csv``; this script polls that file and takes the wall time (from the child's
start) of the first evaluation with success ≥ the threshold, then stops the child. Rounds
alternate the two sides so slow phases of this shared machine hit both.

Figures: per side the seconds and env steps to the threshold (median over rounds), and
``overhead_ratio`` = session / one process (the goal is ≤ 1.10).

Run: scripts/bench session_overhead (or python bench/session_overhead.py inside
scripts/env.sh); --quick for a smoke run (one round, threshold 0.3).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / 'config' / 'bench_session_point_mass.yaml'


def first_success(eval_csv: Path, threshold: float) -> tuple[int, float] | None:
    """(env steps, success) of the first evaluation at or above ``threshold``."""
    if not eval_csv.exists():
        return None
    with open(eval_csv, newline='') as handle:
        for row in csv.DictReader(handle):
            try:
                step, success = int(float(row['step'])), float(row['success_rate'])
            except (KeyError, ValueError):
                continue
            if success >= threshold:
                return step, success
    return None


def run_until(command: list[str], run_dir: Path, threshold: float, timeout_s: float,
              log: Path) -> dict:
    """Start ``command``, poll ``run_dir/eval.csv`` until the threshold, stop the child."""
    started = time.monotonic()
    with open(log, 'w') as handle:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
    reached = None
    try:
        while time.monotonic() - started < timeout_s and proc.poll() is None:
            reached = first_success(run_dir / 'eval.csv', threshold)
            if reached is not None:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        reached = reached or first_success(run_dir / 'eval.csv', threshold)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if reached is None:
        return {'reached': False, 'seconds': None, 'env_steps': None}
    return {'reached': True, 'seconds': round(seconds, 1), 'env_steps': reached[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG,
                        help='pref-rl train YAML both sides run')
    parser.add_argument('--threshold', type=float, default=0.8)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--timeout', type=float, default=900.0, help='seconds per run')
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.threshold = 1, 0.3
    work = Path(tempfile.mkdtemp(prefix='pref-rl-session-overhead-'))
    sides = {
        'session': lambda run: ['pref-rl', 'launch', 'launch/sim_session.launch.xml',
                                f'train_config:={args.config}', f'run_dir:={run}',
                                '--log-dir', str(run.parent / f'{run.name}-launch-log')],
        'one_process': lambda run: ['pref-rl', 'train', '--config', str(args.config),
                                    '--path', str(run), '--no-progress', '--set',
                                    'tensorboard=false'],
    }
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for index in range(args.rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in order:
            run = work / f'{name}-{index}'
            result = run_until(sides[name](run), run, args.threshold, args.timeout,
                               work / f'{name}-{index}.log')
            print(f'[session_overhead] round {index} {name}: {result}', flush=True)
            results[name].append(result)

    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in results[name] if r['reached']]
        return round(statistics.median(values), 1) if values else None

    figures: dict = {'config': str(args.config.relative_to(ROOT)
                                   if args.config.is_relative_to(ROOT) else args.config),
                     'threshold': args.threshold, 'rounds': args.rounds}
    for name in sides:
        figures[f'{name}_seconds'] = median(name, 'seconds')
        figures[f'{name}_env_steps'] = median(name, 'env_steps')
        figures[f'{name}_seconds_per_round'] = [r['seconds'] for r in results[name]]
        figures[f'{name}_reached'] = sum(r['reached'] for r in results[name])
    if figures['session_seconds'] and figures['one_process_seconds']:
        figures['overhead_ratio'] = round(figures['session_seconds']
                                          / figures['one_process_seconds'], 3)
    path = write_result(
        'session_overhead', figures,
        'Peer: the same pref-rl train YAML in one process (pref-rl train). Both are child '
        'processes started cold; seconds from start to the first held-out evaluation with '
        'success >= threshold (polled from eval.csv every 0.2 s), median over rounds.')
    print(path)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
