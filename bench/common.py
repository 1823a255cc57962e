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


Gemm = tuple[int, int, int]
"""A matrix product ``[m, k] @ [k, n]`` by its sizes ``(m, k, n)``; it costs ``2 m k n`` FLOP."""


def gemm_flop(shapes: list[Gemm]) -> int:
    """Floating-point operations of the products ``shapes`` (a multiply-add counts as 2)."""
    return sum(2 * m * k * n for m, k, n in shapes)


def gemm_replay(shapes: list[Gemm]):
    """A function running exactly the products ``shapes``, in order, as fp32 ``torch.mm`` on
    preallocated operands: the machine's matmul limit for a workload of these shapes (no
    allocation, no elementwise work, nothing between the kernels but the loop). Products of
    one shape share their operands, so they are as hot in cache as a steady GEMM loop's."""
    import torch

    generator = torch.Generator().manual_seed(0)
    operands = {shape: (torch.randn(shape[0], shape[1], generator=generator),
                        torch.randn(shape[1], shape[2], generator=generator),
                        torch.empty(shape[0], shape[2])) for shape in set(shapes)}
    sequence = [operands[shape] for shape in shapes]

    def run(repeats: int) -> None:
        for _ in range(repeats):
            for a, b, out in sequence:
                torch.mm(a, b, out=out)
    return run


def capture_gemms(fn) -> list[Gemm]:
    """The matrix products ``fn()`` runs (forward and backward, higher-order ones included),
    each batch element of a batched product listed on its own: what its FLOPs are counted
    from and what :func:`gemm_replay` replays as the limit."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    shapes: list[Gemm] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            packet = getattr(func, 'overloadpacket', None)
            if packet in (aten.mm, aten.addmm, aten.bmm, aten.baddbmm):
                a, b = (args[0], args[1]) if packet in (aten.mm, aten.bmm) else args[1:3]
                if a.dim() == 3:
                    shapes.extend([(a.shape[1], a.shape[2], b.shape[2])] * a.shape[0])
                else:
                    shapes.append((a.shape[0], a.shape[1], b.shape[1]))
            return func(*args, **(kwargs or {}))

    with Recorder():
        fn()
    return shapes
