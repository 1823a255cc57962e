"""Finished sweep runs kept in the repository, so a long benchmark outlives its machine.

A headline sweep takes hours and its run directories (checkpoints, logs) live under the
git-ignored ``runs/``. Each finished run's overrides and evaluation curve are kept as a small
JSON record under ``bench/results/runs/<benchmark>/``, next to the prior the runs started from
(``prior.pt`` and its pretraining ``pretrain_eval.csv``). On a fresh machine the benchmark
restores that prior instead of pretraining again, leaves the recorded runs out of the sweep
(``pref-rl sweep --skip``) and counts them in its figures.

A record counts only while the sweep file, its base config and the prior are the ones it ran
with (its ``digest``); the others are reported as stale and left out, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

from pref_rl_learner.durable import atomic_write_bytes
from pref_rl_learner.run_log import read_csv
from pref_rl_learner.sweep.runs import is_finished


def digest(sweep: Path, prior: Path) -> str:
    """What a run's result depends on besides its overrides: the sweep file, its base config
    and the prior's bytes (first 16 hex digits of their SHA-256)."""
    spec = json.loads(sweep.read_text())
    h = hashlib.sha256()
    for part in (sweep.read_bytes(), (sweep.parent / spec['base']).read_bytes(),
                 prior.read_bytes() if prior.exists() else b''):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


class RunArchive:
    """The records of one benchmark's finished runs, in ``directory``."""

    PRIOR, PRIOR_EVAL = 'prior.pt', 'pretrain_eval.csv'

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def restore_prior(self, pretrain: Path) -> bool:
        """Put the kept prior into ``pretrain`` when that has none; True if it did."""
        kept = self.directory / self.PRIOR
        if (pretrain / 'best_model.pt').exists() or not kept.exists():
            return False
        pretrain.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.directory / self.PRIOR_EVAL, pretrain / 'eval.csv')
        shutil.copyfile(kept, pretrain / 'best_model.pt')
        return True

    def keep_prior(self, pretrain: Path) -> None:
        """Keep ``pretrain``'s chosen checkpoint and its pretraining curve."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for source, name in (('best_model.pt', self.PRIOR), ('eval.csv', self.PRIOR_EVAL)):
            data = (pretrain / source).read_bytes()
            target = self.directory / name
            if not target.exists() or target.read_bytes() != data:
                atomic_write_bytes(target, data)

    def keep(self, run_dir: Path, key: str) -> None:
        """Keep the finished run in ``run_dir`` (its ``sweep_run.json`` and ``eval.csv``)."""
        evals = {column: [None if math.isnan(v) else v for v in values]
                 for column, values in read_csv(run_dir / 'eval.csv').items()}
        overrides = json.loads((run_dir / 'sweep_run.json').read_text())['overrides']
        record = {'run': run_dir.name, 'digest': key, 'overrides': overrides, 'eval': evals}
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.directory / f'{run_dir.name}.json',
                           (json.dumps(record, indent=1) + '\n').encode())

    def keep_finished(self, out: Path, key: str, kept: set[str]) -> list[str]:
        """Keep every finished run under the sweep directory ``out`` whose name is not in
        ``kept`` (run while the sweep goes on, so a lost machine loses only the runs in
        progress); adds them to ``kept`` and returns their names."""
        new = [run_dir for run_dir in sorted(p.parent for p in out.glob('*/sweep_run.json'))
               if run_dir.name not in kept and is_finished(run_dir)]
        for run_dir in new:
            self.keep(run_dir, key)
            kept.add(run_dir.name)
        return [run_dir.name for run_dir in new]

    def records(self, key: str) -> tuple[list[dict], list[str]]:
        """(records made with ``key``, names of the stale ones), each record's curve with
        NaN for an empty cell as in :func:`read_csv`."""
        fresh, stale = [], []
        for path in sorted(self.directory.glob('*.json')):
            record = json.loads(path.read_text())
            if record.get('digest') != key:
                stale.append(record.get('run', path.stem))
                continue
            record['eval'] = {column: [math.nan if v is None else float(v) for v in values]
                              for column, values in record['eval'].items()}
            fresh.append(record)
        return fresh, stale
