"""Shared helpers of the benchmarks: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'


def machine() -> dict:
    """What the figures were measured on."""
    try:
        cpu = next(line.split(':', 1)[1].strip()
                   for line in Path('/proc/cpuinfo').read_text().splitlines()
                   if line.startswith('model name'))
    except (OSError, StopIteration):
        cpu = platform.processor() or 'unknown'
    mem_kb = next((int(line.split()[1]) for line in Path('/proc/meminfo').read_text().splitlines()
                   if line.startswith('MemTotal')), 0)
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, cwd=RESULTS.parent, check=False).stdout.strip()
    except OSError:
        commit = ''
    return {'cpu': cpu, 'cores': os.cpu_count(), 'memory_gib': round(mem_kb / 2**20, 1),
            'python': platform.python_version(), 'os': platform.platform(),
            'rmw': os.environ.get('RMW_IMPLEMENTATION', ''), 'commit': commit,
            'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}


def write_result(name: str, figures: dict, notes: str) -> Path:
    """Write ``bench/results/<name>.json`` (flat figures + machine) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f'{name}.json'
    path.write_text(json.dumps({'benchmark': name, 'notes': notes, 'machine': machine(),
                                **figures}, indent=2) + '\n')
    return path


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float('nan')
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]
