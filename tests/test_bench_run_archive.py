"""The headline benchmarks' run archive (bench/_run_archive.py): a sweep outlives its machine.

Finished runs are kept as records in the repository; a fresh machine restores the prior and
counts the kept runs, and a record made with another sweep, base config or prior is stale.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'bench'))

from _run_archive import RunArchive, digest  # noqa: E402


def _run_dir(root: Path, name: str, success: list[str]) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / 'sweep_run.json').write_text(json.dumps(
        {'overrides': {'goal': 'eval:0', 'algorithm': 'fewshot', 'seed': 0}}))
    rows = ['step,queries,success_rate'] + [f'{i * 1000},{i * 6},{s}'
                                             for i, s in enumerate(success)]
    (run / 'eval.csv').write_text('\n'.join(rows) + '\n')
    return run


def _sweep(tmp_path: Path, epochs: int) -> Path:
    (tmp_path / 'base.yaml').write_text(f'reward_training: {{max_epochs: {epochs}}}\n')
    sweep = tmp_path / 'sweep.json'
    sweep.write_text(json.dumps({'name': 'x', 'base': 'base.yaml', 'grid': {}}))
    return sweep


def test_kept_runs_come_back_with_their_curves_and_stale_ones_are_named(tmp_path):
    archive = RunArchive(tmp_path / 'archive')
    pretrain = tmp_path / 'pretrain'
    pretrain.mkdir()
    (pretrain / 'best_model.pt').write_bytes(b'prior-1')
    (pretrain / 'eval.csv').write_text('step,accuracy_post_adaptation\n100,0.9\n')
    sweep = _sweep(tmp_path, 10)
    key = digest(sweep, pretrain / 'best_model.pt')
    archive.keep_prior(pretrain)
    archive.keep(_run_dir(tmp_path / 'out', 'a-s0', ['0.0', '', '1.0']), key)
    records, stale = archive.records(key)
    assert stale == [] and [r['run'] for r in records] == ['a-s0']
    curve = records[0]['eval']
    assert curve['queries'] == [0.0, 6.0, 12.0] and curve['success_rate'][2] == 1.0
    assert math.isnan(curve['success_rate'][1])  # an empty cell, as read_csv gives it
    assert records[0]['overrides']['goal'] == 'eval:0'

    # A fresh machine: the prior comes back where the sweep expects it.
    fresh = tmp_path / 'fresh' / 'pretrain'
    assert archive.restore_prior(fresh)
    assert (fresh / 'best_model.pt').read_bytes() == b'prior-1'
    assert digest(sweep, fresh / 'best_model.pt') == key
    assert not archive.restore_prior(fresh)  # never over a prior that is there

    # Another base config or another prior: the record no longer counts.
    assert archive.records(digest(_sweep(tmp_path, 11), pretrain / 'best_model.pt')) == (
        [], ['a-s0'])
    (pretrain / 'best_model.pt').write_bytes(b'prior-2')
    assert archive.records(digest(sweep, pretrain / 'best_model.pt'))[1] == ['a-s0']


def test_the_archive_is_committed_not_ignored():
    """The archive exists to travel in git: a kept run or prior under a git-ignored path
    would be lost with the machine (``runs/`` is ignored everywhere else)."""
    import shutil
    import subprocess

    git = shutil.which('git')
    assert git is not None and (ROOT / '.git').exists(), 'needs the git checkout'
    for kept in ('bench/results/runs/fewshot_point_mass/prior.pt',
                 'bench/results/runs/fewshot_point_mass/goal=eval_0-s0.json'):
        ignored = subprocess.run([git, 'check-ignore', '-q', kept], cwd=ROOT, check=False)
        assert ignored.returncode == 1, f'{kept} is git-ignored'
    ignored = subprocess.run([git, 'check-ignore', '-q', 'runs/pretrain_point_mass/x.pt'],
                             cwd=ROOT, check=False)
    assert ignored.returncode == 0, 'runs/ at the root must stay ignored'


def test_finished_runs_are_kept_while_the_sweep_goes_on(tmp_path):
    """keep_finished archives each finished run once, and never one still going."""
    archive, out = RunArchive(tmp_path / 'archive'), tmp_path / 'out'
    for name, last_step in (('done-s0', 2000), ('going-s0', 1000)):
        run = _run_dir(out, name, ['0.0', '0.5', '1.0'][:last_step // 1000 + 1])
        (run / 'config.yaml').write_text('total_steps: 2000\n')
        (run / 'checkpoint.pt').write_bytes(b'x')
    kept: set[str] = set()
    assert archive.keep_finished(out, 'k', kept) == ['done-s0'] and kept == {'done-s0'}
    assert archive.keep_finished(out, 'k', kept) == []  # nothing new
    assert [r['run'] for r in archive.records('k')[0]] == ['done-s0']
