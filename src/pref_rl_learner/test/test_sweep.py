"""Sweeps: expansion of grid × pairs × seeds, validation, the local runner, SLURM grouping."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pref_rl_learner.cli import main
from pref_rl_learner.pebble.config import load_config
from pref_rl_learner.sweep.grid import (
    SweepError,
    expand_sweep,
    load_sweep,
    parse_sweep,
    set_arguments,
    validate_runs,
)
from pref_rl_learner.sweep.local import (
    LocalRunner,
    format_cpus,
    group_runs,
    parse_cpus,
    parse_gpus,
    plan_slots,
)
from pref_rl_learner.sweep.runs import (
    RUN_LOG,
    RUN_RECORD,
    format_results,
    prepare_output,
    skip_runs,
    write_results,
)
from pref_rl_learner.sweep.slurm import SlurmOptions, allocation_groups, import_submitit

REPO = Path(__file__).resolve().parents[3]
BASE = REPO / 'config' / 'pebble_point_mass.yaml'
TINY = REPO / 'config' / 'sweeps' / 'tiny_point_mass.json'
_FOUR = ('eval:0', 'eval:2', 'eval:5', 'eval:7')
HEADLINES = {'point_mass': (tuple(f'eval:{i}' for i in range(8)), 2),
             'reacher': (_FOUR, 2), 'panda_reach': (_FOUR, 2),
             'metaworld': (('eval:0', 'eval:1'), 1)}
"""The headline sweeps (bench/fewshot_<family>.py): their held-out targets, seeds per arm."""


def _write(tmp_path: Path, sweep: dict, name: str = 'sweep.json') -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(sweep))
    return path


def _sweep(**fields) -> dict:
    return {'base': str(BASE), 'seeds': 1, **fields}


# ----------------------------------------------------------------------------- expansion

def test_expansion_is_grid_times_pairs_times_seeds(tmp_path):
    lrs, batches = [0.0003, 0.001], [128, 256]
    budgets, per_session = [50, 100, 200], [5, 10, 20]
    seeds = [0, 7]
    spec = load_sweep(_write(tmp_path, _sweep(
        name='demo',
        grid={'reward_training.lr': lrs, 'sac.batch_size': batches},
        paired_keys=[{'schedule.total_budget': budgets,
                      'schedule.queries_per_session': per_session}],
        seeds=seeds)))
    runs = expand_sweep(spec)
    expected = [{'reward_training.lr': lr, 'sac.batch_size': bs, 'schedule.total_budget': b,
                 'schedule.queries_per_session': q, 'seed': s}
                for lr, bs in itertools.product(lrs, batches)
                for b, q in zip(budgets, per_session, strict=True) for s in seeds]
    assert len(runs) == 2 * 2 * 3 * 2 == len(expected)
    assert [dict(r.overrides) for r in runs] == expected  # content and order
    assert [r.index for r in runs] == list(range(24))
    assert runs[0].name == 'lr=0.0003-batch_size=128-total_budget=50-s0'
    assert runs[-1].name == 'lr=0.001-batch_size=256-total_budget=200-s7'
    assert len({r.name for r in runs}) == len(runs)
    assert spec.name == 'demo' and spec.base == BASE
    validate_runs(spec, runs)
    config = load_config(spec.base, dict(runs[5].overrides))
    assert (config.reward_training.lr, config.sac.batch_size, config.schedule.total_budget,
            config.schedule.queries_per_session, config.seed) == (0.0003, 128, 200, 20, 7)


def test_seed_count_and_single_values_leave_names_short(tmp_path):
    spec = load_sweep(_write(tmp_path, _sweep(grid={'total_steps': [5000]}, seeds=3)))
    runs = expand_sweep(spec)
    assert [r.name for r in runs] == ['s0', 's1', 's2']
    assert [r.seed for r in runs] == [0, 1, 2]
    assert all(r.overrides['total_steps'] == 5000 for r in runs)
    assert spec.name == 'sweep'  # the file name when the file has none


def test_names_use_full_keys_when_leaves_clash_and_all_paired_keys_when_needed(tmp_path):
    spec = load_sweep(_write(tmp_path, _sweep(
        grid={'sac.batch_size': [128, 256], 'reward_training.batch_size': [64, 128]})))
    names = [r.name for r in expand_sweep(spec)]
    assert names[0] == 'sac.batch_size=128-reward_training.batch_size=64-s0'
    # The first key of a pair group repeats: every key of the group goes into the name.
    spec = load_sweep(_write(tmp_path, _sweep(paired_keys=[
        {'algorithm': ['sac', 'sac'], 'sac.device': ['cpu', 'auto']}])))
    assert [r.name for r in expand_sweep(spec)] == ['algorithm=sac-device=cpu-s0',
                                                   'algorithm=sac-device=auto-s0']


def test_values_survive_the_command_line():
    spec = parse_sweep(_sweep(grid={'reward_training.lr': [1e-05], 'teacher_preset': ['yes'],
                                    'sac.hidden_sizes': [[32, 32]], 'pretrained_reward': ['']}),
                       REPO)
    (run,) = expand_sweep(spec)
    parsed = {}
    for argument in set_arguments(run):
        key, _, text = argument.partition('=')
        parsed[key] = yaml.safe_load(text)  # what `pref-rl train --set` does
    assert parsed == dict(run.overrides)
    assert isinstance(parsed['reward_training.lr'], float)


@pytest.mark.parametrize('change, message', [
    ({'base': None}, "'base'"),
    ({'base': 'no_such.yaml'}, 'not found'),
    ({'grid': {'reward_training.lrr': [1]}}, "reward_training has no field 'lrr'"),
    ({'grid': {'nope': [1]}}, "TrainConfig has no field 'nope'"),
    ({'grid': {'seed_steps.x': [1]}}, 'seed_steps is not a section'),
    ({'grid': {'total_steps': []}}, 'total_steps has an empty list'),
    ({'grid': {'total_steps': 5}}, 'must map to a list'),
    ({'grid': {'seed': [1, 2]}}, "'seeds'"),
    ({'paired_keys': [{'total_steps': [1, 2], 'seed_steps': [1]}]},
     'equal length, got total_steps: 2, seed_steps: 1'),
    ({'grid': {'total_steps': [1]}, 'paired_keys': [{'total_steps': [2]}]},
     "'total_steps' is in both grid and paired_keys[0]"),
    ({'paired_keys': {'total_steps': [1]}}, "'paired_keys' must be a list"),
    ({'seeds': None}, "'seeds'"),
    ({'seeds': 0}, 'count must be >= 1'),
    ({'seeds': [1, 1]}, 'twice'),
    ({'grdi': {}}, 'unknown key(s) grdi'),
])
def test_malformed_sweeps_are_rejected_by_name(tmp_path, change, message):
    sweep = {k: v for k, v in {**_sweep(), **change}.items() if v is not None}
    with pytest.raises(SweepError) as err:
        load_sweep(_write(tmp_path, sweep))
    assert message in str(err.value)
    assert 'sweep.json' in str(err.value)


@pytest.mark.parametrize('grid, message', [
    ({'sac.batch_size': [256, 'big']}, r"run batch_size=big-s0: .*expected int, got str"),
    ({'seed_steps': [1000, 10]}, r'run seed_steps=10-s0: .*seed_steps \(10\) must be at least'),
    ({'algorithm': ['fewshot']}, r'run s0: .*needs pretrained_reward'),
])
def test_bad_values_fail_before_anything_runs_naming_the_run(grid, message):
    spec = parse_sweep(_sweep(grid=grid), REPO)
    with pytest.raises(SweepError, match=message):
        validate_runs(spec, expand_sweep(spec))


@pytest.mark.parametrize('family', HEADLINES)
def test_headline_sweeps_run_every_arm_and_control_on_each_target_and_seed(family):
    # The hidden-goal protocol: every target gets fewshot, init, pebble, the random-label
    # control (the same prior and budget) and SAC on the true reward, on the same seeds,
    # and the three preference arms share one budget and schedule.
    spec = load_sweep(REPO / 'config' / 'sweeps' / f'headline_{family}.json')
    runs = expand_sweep(spec)
    validate_runs(spec, runs)
    targets, seeds = HEADLINES[family]
    arms = [('fewshot', 'oracle'), ('init', 'oracle'), ('pebble', 'oracle'),
            ('fewshot', 'random'), ('sac', 'oracle')]
    assert [(r.overrides['goal'], r.overrides['algorithm'], r.overrides['teacher_preset'],
             r.overrides['seed']) for r in runs] == [
        (t, a, teacher, s) for t in targets for a, teacher in arms for s in range(seeds)]
    assert all(t.startswith('eval:') for t in targets)  # held-out targets only
    prior = {r.overrides['pretrained_reward'] for r in runs
             if r.overrides['algorithm'] in ('init', 'fewshot')}
    assert len(prior) == 1 and '' not in prior
    assert {r.overrides['pretrained_reward'] for r in runs
            if r.overrides['algorithm'] in ('pebble', 'sac')} == {''}


# ----------------------------------------------------------------------------- placement

def test_slots_split_cpus_and_share_gpus_round_robin():
    slots = plan_slots(range(8), ('0', '1'), jobs=3)
    assert [s.cpus for s in slots] == [(0, 1), (2, 3, 4), (5, 6, 7)]
    assert [s.gpu for s in slots] == ['0', '1', '0']
    slots = plan_slots((0, 1), (), jobs=3)  # more jobs than CPUs: they share
    assert [s.cpus for s in slots] == [(0,), (1,), (0,)]
    assert [s.gpu for s in slots] == [None, None, None]
    with pytest.raises(SweepError):
        plan_slots((0,), (), jobs=0)


def test_cpu_and_gpu_lists_parse():
    allowed = sorted(os.sched_getaffinity(0))
    assert parse_cpus(format_cpus(allowed)) == tuple(allowed)
    assert format_cpus((0, 1, 2, 3, 6, 8, 9)) == '0-3,6,8-9'
    with pytest.raises(SweepError, match='not available'):
        parse_cpus('0-4095')
    with pytest.raises(SweepError, match='expected a list'):
        parse_cpus('a-b')
    assert parse_gpus('0, 1') == ('0', '1') and parse_gpus('') == ()
    with pytest.raises(SweepError, match='twice'):
        parse_gpus('0,0')


def test_runs_are_grouped_seeds_together():
    spec = parse_sweep(_sweep(grid={'total_steps': [5000, 6000]}, seeds=2), REPO)
    groups = group_runs(expand_sweep(spec), 2)
    assert [[r.name for r in g] for g in groups] == [
        ['total_steps=5000-s0', 'total_steps=5000-s1'],
        ['total_steps=6000-s0', 'total_steps=6000-s1']]


_PROBE = ('import os, sys; print("PROBE", sorted(os.sched_getaffinity(0)), '
          'repr(os.environ["CUDA_VISIBLE_DEVICES"]), os.environ["OMP_NUM_THREADS"]); '
          'sys.exit(3 if sys.argv[1].endswith("s1") else 0)')


def _probe(spec, run, run_dir):
    return [sys.executable, '-c', _PROBE, run.name]


def _probe_logs(out: Path, runs) -> dict[str, tuple[str, str, list[int], str, str]]:
    """run -> (header cpus, header gpu, child affinity, child CUDA_VISIBLE_DEVICES, threads)."""
    logs = {}
    for run in runs:
        text = (out / run.name / RUN_LOG).read_text()
        header = re.search(r'# .* cpus ([0-9,-]+), (no gpu|gpu \S+)', text)
        probe = re.search(r"PROBE \[([0-9, ]*)\] '(.*)' (\d+)", text)
        affinity = [int(c) for c in probe.group(1).split(',')]
        logs[run.name] = (header.group(1), header.group(2), affinity, probe.group(2),
                          probe.group(3))
    return logs


def test_local_runner_pins_each_job_to_its_cpus_and_gpu(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))[:2]
    spec = parse_sweep(_sweep(grid={'total_steps': [5000, 6000]}, seeds=2), REPO)
    runs = expand_sweep(spec)
    slots = plan_slots(cpus, ('0', '1'), jobs=len(cpus))
    runner = LocalRunner(spec, tmp_path, slots, runs_per_job=2, command=_probe,
                         progress=False, poll_s=0.05)
    results = runner.run(runs)
    assert [(r.name, r.status, r.exit_code) for r in results] == [
        ('total_steps=5000-s0', 'paused', 0), ('total_steps=5000-s1', 'failed', 3),
        ('total_steps=6000-s0', 'paused', 0), ('total_steps=6000-s1', 'failed', 3)]
    logs = _probe_logs(tmp_path, runs)
    for cpus_text, gpu_text, affinity, cuda, threads in logs.values():
        assert format_cpus(affinity) == cpus_text  # the child runs where it was placed
        assert gpu_text == f'gpu {cuda}'
        assert int(threads) == max(1, len(affinity) // 2)  # two runs share the job
    # Seeds of one configuration run together on one job.
    assert logs['total_steps=5000-s0'][:2] == logs['total_steps=5000-s1'][:2]
    assert logs['total_steps=6000-s0'][:2] == logs['total_steps=6000-s1'][:2]
    record = json.loads((tmp_path / 'total_steps=5000-s1' / RUN_RECORD).read_text())
    assert (record['status'], record['exit_code']) == ('failed', 3)
    assert record['overrides'] == {'total_steps': 5000, 'seed': 1}


def test_no_gpu_means_cuda_hidden(tmp_path):
    spec = parse_sweep(_sweep(), REPO)
    runs = expand_sweep(spec)
    LocalRunner(spec, tmp_path, plan_slots(sorted(os.sched_getaffinity(0))[:1], (), 1),
                command=_probe, progress=False, poll_s=0.05).run(runs)
    (log,) = _probe_logs(tmp_path, runs).values()
    assert log[1] == 'no gpu' and log[3] == ''


# ----------------------------------------------------------------------------- end to end

def _tiny_with_failure(tmp_path: Path) -> Path:
    """The example sweep plus a third arm that fails at start-up: it asks for CUDA, which the
    runner hides from runs given no GPU."""
    sweep = json.loads(TINY.read_text())
    sweep['base'] = str((TINY.parent / sweep['base']).resolve())
    sweep['paired_keys'] = [{'algorithm': ['pebble', 'sac', 'sac'],
                             'schedule.total_budget': [10, 0, 0],
                             'sac.device': ['cpu', 'cpu', 'cuda']}]
    return _write(tmp_path, sweep, 'tiny_failing.json')


@pytest.mark.slow
def test_local_sweep_runs_train_and_reports_a_failure(tmp_path, capsys):
    sweep_file, out = _tiny_with_failure(tmp_path), tmp_path / 'out'
    code = main(['sweep', str(sweep_file), '--out', str(out), '--jobs', '2', '--no-progress'])
    printed = capsys.readouterr().out
    assert code == 1  # one run failed; the others still ran
    good = ['algorithm=pebble-total_budget=10-device=cpu-s0',
            'algorithm=sac-total_budget=0-device=cpu-s0']
    bad = 'algorithm=sac-total_budget=0-device=cuda-s0'
    for name in good:
        run_dir = out / name
        config = yaml.safe_load((run_dir / 'config.yaml').read_text())
        record = json.loads((run_dir / RUN_RECORD).read_text())
        assert record['status'] == 'finished' and record['exit_code'] == 0
        for key, value in record['overrides'].items():  # the resolved config has them all
            node = config
            for part in key.split('.'):
                node = node[part]
            assert node == value
        assert (run_dir / 'eval.csv').read_text().splitlines()[-1].startswith('200,')
        assert re.search(rf'{re.escape(name)}\s+finished\s+0\s+200', printed)
    assert config['total_steps'] == 200 and config['sac']['hidden_sizes'] == [32, 32]
    assert re.search(rf'{re.escape(bad)}\s+failed\s+2', printed)
    assert 'CUDA is not available' in (out / bad / RUN_LOG).read_text()
    assert '2 finished, 1 failed' in printed
    results = (out / 'results.csv').read_text()
    assert f'{bad},failed,2' in results

    # Without --resume the output is not reused; with it the finished runs are skipped and
    # the failed one (no checkpoint) is cleared to start afresh.
    assert main(['sweep', str(sweep_file), '--out', str(out), '--no-progress']) == 2
    spec = load_sweep(sweep_file)
    todo, skipped = prepare_output(spec, expand_sweep(spec), out, resume=True)
    assert [r.name for r in todo] == [bad] and not (out / bad).exists()
    assert [(r.name, r.status, r.step, r.queries) for r in skipped] == [
        (good[0], 'skipped', 200, 10), (good[1], 'skipped', 200, 0)]
    assert 'skipped' in format_results(skipped)
    assert write_results(out, skipped).read_text().count('skipped') == 2

    # A finished run is never skipped for a run the sweep now configures differently.
    changed = json.loads(sweep_file.read_text())
    changed['grid']['reward_training.max_epochs'] = [7]
    spec = load_sweep(_write(tmp_path, changed, 'changed.json'))
    with pytest.raises(SweepError, match=rf'{re.escape(good[0])} finished with another '
                                         r'config .*differs in reward_training'):
        prepare_output(spec, expand_sweep(spec), out, resume=True)


@pytest.mark.slow
def test_sigint_pauses_a_sweep_started_with_sigint_ignored(tmp_path):
    # A sweep started by `nohup` or `&` in a script inherits SIGINT ignored; Ctrl-C (or
    # kill -INT) must still pause its runs at a checkpoint.
    sweep = json.loads(TINY.read_text())
    sweep['base'] = str((TINY.parent / sweep['base']).resolve())
    sweep['grid']['total_steps'] = [100_000]
    sweep['paired_keys'] = []
    sweep_file, out = _write(tmp_path, sweep), tmp_path / 'out'
    process = subprocess.Popen(
        [sys.executable, '-m', 'pref_rl_learner.cli', 'sweep', str(sweep_file), '--out',
         str(out), '--no-progress'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        train_csv = out / 's0' / 'train.csv'
        deadline = time.monotonic() + 120
        while not train_csv.exists() and time.monotonic() < deadline:  # the run is training
            time.sleep(0.2)
        assert train_csv.exists(), 'the run never started'
        process.send_signal(signal.SIGINT)
        printed, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # leave no sweep or run behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, printed
    record = json.loads((out / 's0' / RUN_RECORD).read_text())
    assert record['status'] == 'paused', printed
    assert (out / 's0' / 'checkpoint.pt').is_file()
    assert '--resume' in printed


def test_dry_run_prints_the_runs_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / 'out'
    assert main(['sweep', str(TINY), '--out', str(out), '--dry-run', '--cpus',
                 format_cpus(sorted(os.sched_getaffinity(0))[:1])]) == 0
    printed = capsys.readouterr().out
    assert 'tiny_point_mass: 2 runs' in printed
    assert 'algorithm=pebble-s0  [job 0: cpus' in printed
    assert '--set schedule.total_budget=10 --set seed=0 --path' in printed
    assert not out.exists()


def test_cli_reports_a_bad_sweep(tmp_path, capsys):
    bad = _write(tmp_path, _sweep(grid={'reward_training.lrr': [1]}))
    assert main(['sweep', str(bad), '--out', str(tmp_path / 'o'), '--dry-run']) == 2
    assert "pref-rl sweep: error: " in capsys.readouterr().err


def test_skip_leaves_out_runs_done_elsewhere_and_refuses_a_pattern_matching_none(
        tmp_path, capsys):
    spec = parse_sweep(_sweep(grid={'total_steps': [5000, 6000]}, seeds=2), REPO)
    runs = expand_sweep(spec)
    kept = skip_runs(runs, ['total_steps=5000-s1', '*6000-s0'])
    assert [r.name for r in kept] == ['total_steps=5000-s0', 'total_steps=6000-s1']
    with pytest.raises(SweepError, match="--skip 'total_steps=7000-s0' matches no run"):
        skip_runs(runs, ['total_steps=7000-s0'])
    sweep_file = _write(tmp_path, _sweep(grid={'total_steps': [5000, 6000]}, seeds=2))
    assert main(['sweep', str(sweep_file), '--out', str(tmp_path / 'o'), '--dry-run',
                 '--skip', '*-s1']) == 0
    printed = capsys.readouterr().out
    assert '2 of 4 run(s) left out by --skip' in printed
    assert 'total_steps=5000-s0' in printed and 'total_steps=5000-s1' not in printed


# ----------------------------------------------------------------------------- SLURM

def test_allocations_group_runs_and_carry_the_requested_resources():
    spec = parse_sweep(_sweep(grid={'total_steps': [5000, 6000, 7000]}, seeds=3), REPO)
    options = SlurmOptions(partition='gpu', time_min=90, runs_per_allocation=4,
                           cpus_per_task=8, gpus_per_node=2, mem_gb=32)
    groups = allocation_groups(expand_sweep(spec), options)
    assert [len(g) for g in groups] == [4, 4, 1]
    assert groups[0][3].name == 'total_steps=6000-s0'
    assert options.executor_parameters('pref-rl-x') == {
        'name': 'pref-rl-x', 'timeout_min': 90, 'nodes': 1, 'tasks_per_node': 1,
        'cpus_per_task': 8, 'gpus_per_node': 2, 'stderr_to_stdout': True, 'mem_gb': 32,
        'slurm_partition': 'gpu'}
    with pytest.raises(SweepError, match='cluster'):
        SlurmOptions(cluster='pbs')


def test_missing_submitit_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, 'submitit', None)
    with pytest.raises(SweepError, match=r'pip install submitit==\d'):
        import_submitit()


def test_slurm_submission_with_the_debug_executor(tmp_path):
    pytest.importorskip('submitit')
    from pref_rl_learner.sweep.slurm import submit, wait

    spec = parse_sweep(_sweep(grid={'total_steps': [5000]}, seeds=3), REPO)
    runs = expand_sweep(spec)
    options = SlurmOptions(runs_per_allocation=2, cluster='debug')
    jobs = submit(spec, tmp_path, runs, options, command=_probe)
    results = wait(jobs, allocation_groups(runs, options))
    assert [(r.name, r.status) for r in results] == [
        ('s0', 'paused'), ('s1', 'failed'), ('s2', 'paused')]
    assert all((tmp_path / r.name / RUN_LOG).exists() for r in results)


@pytest.mark.slow
def test_slurm_sweep_through_submitit_local_executor(tmp_path, capsys):
    pytest.importorskip('submitit')
    out = tmp_path / 'out'
    code = main(['sweep', str(TINY), '--out', str(out), '--slurm', '--slurm-cluster', 'local',
                 '--runs-per-allocation', '2', '--cpus-per-task', '2', '--time', '5',
                 '--wait'])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert len(re.findall(r'^job \S+: algorithm=pebble-s0, algorithm=sac-s0$', printed,
                          re.M)) == 1  # both runs in one allocation
    assert '2 finished' in printed
    for name in ('algorithm=pebble-s0', 'algorithm=sac-s0'):
        assert (out / name / 'config.yaml').exists() and (out / name / 'eval.csv').exists()
    assert list((out / 'slurm').glob('*_log.out'))
