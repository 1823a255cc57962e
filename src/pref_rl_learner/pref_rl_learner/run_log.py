"""Run logs: CSV files (one per stream) and TensorBoard scalars, resumable.

Each stream (``train``, ``eval``, ``feedback``) is a CSV whose columns are fixed by its first
row, flushed after every row so that ``pref-rl plot`` and ``tensorboard --logdir`` can follow
a run live. On resume, rows logged after the checkpoint being resumed are dropped first, so a
resumed run's files equal those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import IO

STREAMS = ('train', 'eval', 'feedback')


class RunLog:
    """Writes ``<run>/<stream>.csv`` and ``<run>/tb/`` event files."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, IO[str]] = {}
        self._writers: dict[str, csv.DictWriter] = {}
        if resume_step is not None:
            for stream in STREAMS:
                _truncate_after(self.run_dir / f'{stream}.csv', resume_step)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # heavy import: only when used

            self._tb = SummaryWriter(str(self.run_dir / 'tb'), purge_step=resume_step)

    def write(self, stream: str, step: int, values: Mapping[str, float | int]) -> None:
        """Append one row (``step`` first) to ``stream`` and mirror it to TensorBoard."""
        if stream not in STREAMS:
            raise ValueError(f'unknown log stream {stream!r} (known: {", ".join(STREAMS)})')
        row = {'step': step, **values}
        writer = self._writers.get(stream)
        if writer is None:
            path = self.run_dir / f'{stream}.csv'
            exists = path.exists() and path.stat().st_size > 0
            handle = open(path, 'a', newline='')  # noqa: SIM115 - closed in close()
            writer = csv.DictWriter(handle, fieldnames=_header(path) if exists else list(row),
                                    extrasaction='ignore', restval='')
            if not exists:
                writer.writeheader()
            self._files[stream], self._writers[stream] = handle, writer
        writer.writerow(row)
        self._files[stream].flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f'{stream}/{key}', value, step)

    def close(self) -> None:
        """Flush and close every file."""
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        self._writers.clear()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _header(path: Path) -> list[str]:
    with open(path, newline='') as f:
        return next(csv.reader(f))


def _truncate_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= step]
    with open(path, 'w', newline='') as f:
        csv.writer(f).writerows(kept)


def read_csv(path: str | Path) -> dict[str, list[float]]:
    """Columns of a run CSV as float lists (empty cells become NaN)."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: [float(r[key]) if r[key] not in ('', None) else math.nan for r in rows]
            for key in rows[0]}
