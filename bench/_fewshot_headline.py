"""The few-shot headline benchmarks' shared procedure (issue 15): one hidden target per run.

Each ``bench/fewshot_<family>.py`` names a :class:`Headline` and calls :func:`main`, which
does everything, each step skipped when its output is already there (so an interrupted
benchmark resumes where it stopped, across sessions):

1. ``pref-rl collect FAMILY`` of the **training targets only** into ``datasets/<dataset>``;
2. ``pref-rl pretrain`` (MAML with learned per-parameter inner learning rates); the
   checkpoint is chosen on training targets kept out of meta-training, never on a held-out
   one;
3. ``pref-rl collect`` of the held-out targets into ``datasets/<dataset>_eval``: only to
   measure the prior on each held-out target's pairs **before any label** (the control that
   says whether the task is too easy for the prior);
4. ``pref-rl sweep`` of the family's sweep file: every arm on every chosen held-out target ×
   seeds, the same budget and schedule for ``pebble``, ``init`` and ``fewshot``, plus the
   controls: ``fewshot`` with a teacher answering at random (``teacher_preset: random``, same
   prior, same budget) and SAC on the true reward (the upper bound);
5. per arm: queries to the threshold per run, the fraction of runs that reach it, success
   against queries (mean and spread over runs), and the checks the issue asks for
   (``checks``), written to ``bench/results/<name>.json`` and ``.png``.

A learning claim stands only beside its controls: if the random-label arm reaches the
threshold, or the prior ranks a held-out target's pairs above 0.75 before adaptation, the
result file says so (``control_verdict``) instead of claiming a few-shot result.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _run_archive import RunArchive, digest
from common import RESULTS, write_result

from pref_rl_learner.plotting import first_reaching
from pref_rl_learner.run_log import read_csv
from pref_rl_learner.sweep.runs import is_finished

ROOT = Path(__file__).resolve().parent.parent
ARMS = ('fewshot', 'init', 'pebble', 'fewshot_random_labels', 'sac_true_reward')
"""Arm names in the result file, in plotting order."""
PRIOR_TOO_GOOD = 0.75
"""Above this pre-adaptation accuracy on a target's pairs the prior already knows the target."""


@dataclass(frozen=True)
class Headline:
    """One family's headline benchmark."""

    name: str
    """Result name: ``bench/results/<name>.json`` and ``.png``; runs in ``runs/<name>``."""
    family: str
    """``pref-rl collect`` family (the task the runs learn)."""
    dataset: str
    """Dataset directory under ``datasets/`` of the training targets."""
    collect_args: tuple[str, ...]
    """Extra ``pref-rl collect`` arguments of the training set (counts, envs)."""
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
    fewshot_max_queries: int
    """The claim checked: ``fewshot`` reaches the threshold within this many queries ..."""
    fewshot_min_fraction: float
    """... on at least this fraction of its runs."""
    eval_collect_args: tuple[str, ...] = ()
    """Extra ``pref-rl collect`` arguments of the held-out set (the prior's control), after
    ``collect_args``; that set holds no training target whatever they say."""
    eval_tasks: str = 'all'
    """Held-out targets/variations per env in that set."""
    eval_dataset: str = ''
    """Directory under ``datasets/`` of that set; empty: ``<dataset>_eval`` (two headlines
    that share a training set but learn different envs need their own)."""


def _run(name: str, command: list[str]) -> None:
    print(f'[{name}] $', ' '.join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def _sweep_keeping(name: str, command: list[str], out: Path, archive: RunArchive | None,
                   key: str, poll_s: float = 60.0) -> None:
    """Run the ``pref-rl sweep`` ``command``; with an ``archive``, keep each run in it as it
    finishes (checked every ``poll_s``), also when the sweep is interrupted."""
    print(f'[{name}] $', ' '.join(command), flush=True)
    process = subprocess.Popen(command, cwd=ROOT)
    kept: set[str] = set()

    def keep() -> None:
        if archive is not None:
            for run in archive.keep_finished(out, key, kept):
                print(f'[{name}] kept {run} in {archive.directory}', flush=True)

    try:
        while process.poll() is None:
            time.sleep(poll_s)
            keep()
    except KeyboardInterrupt:  # the sweep has it too: it pauses its runs at a checkpoint
        process.wait()
        raise
    finally:
        keep()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)


def overrides_of(run_dir: Path) -> dict:
    """The sweep run's config overrides (its ``sweep_run.json``)."""
    return json.loads((run_dir / 'sweep_run.json').read_text())['overrides']


def arm_of(overrides: dict) -> str:
    """The arm of a sweep run, from its overrides: algorithm, and the random-label control."""
    algorithm = overrides['algorithm']
    if algorithm == 'sac':
        return 'sac_true_reward'
    if overrides.get('teacher_preset') == 'random':
        return f'{algorithm}_random_labels'
    return algorithm


def target_of(task_id: str) -> str:
    """The ``goal`` (``eval:i`` or ``train:i``) of a dataset task id
    (``<env>/<split>/goal03``, ``<env>/<split>/var1``)."""
    *_, split, name = task_id.split('/')
    return f'{split}:' + str(int(name.removeprefix('goal').removeprefix('var')))


def prior_accuracy(checkpoint: Path, eval_dataset: Path, support: int, pairs: int = 256,
                   draws: int = 4) -> dict[str, dict]:
    """Per held-out target: the prior's accuracy on oracle-labelled pairs of that target's
    segments before any label, and after adapting (its inner steps) on ``support`` labels."""
    import torch

    from pref_rl_learner.fewshot.dataset import load_dataset
    from pref_rl_learner.fewshot.maml import MAML
    from pref_rl_learner.fewshot.meta_checkpoint import load_pretrained
    from pref_rl_learner.fewshot.pretrain import evaluate
    from pref_rl_learner.fewshot.task_pairs import TaskPairSampler
    from pref_rl_learner.teacher import TeacherConfig

    torch.set_num_threads(1)
    pretrained = load_pretrained(checkpoint)
    maml = MAML(pretrained.model, pretrained.maml)
    maml.load_state_dict({'inner_lrs': pretrained.inner_lrs})
    dataset = load_dataset(eval_dataset)
    sampler = TaskPairSampler(dataset, 0, TeacherConfig())  # the dataset's segments
    out = {}
    for i, task_id in enumerate(sampler.task_ids):
        sets = [sampler.draw(task_id, np.random.default_rng([i, d]), support, pairs)
                for d in range(draws)]
        post, pre = evaluate(maml, sets)
        out[target_of(task_id)] = {'pre_adaptation': round(pre, 3),
                                   f'post_adaptation_{support}_labels': round(post, 3)}
    return out


def finished_runs(run_dirs: list[Path]) -> tuple[list[dict], dict[str, int]]:
    """The finished runs among ``run_dirs`` as ``{'run', 'overrides', 'eval'}`` (the eval
    curve's columns), and per arm the runs still going or paused."""
    done, unfinished = [], {arm: 0 for arm in ARMS}
    for run_dir in run_dirs:
        if not is_finished(run_dir):
            if (run_dir / 'sweep_run.json').exists():
                unfinished[arm_of(overrides_of(run_dir))] += 1
            continue
        done.append({'run': run_dir.name, 'overrides': overrides_of(run_dir),
                     'eval': read_csv(run_dir / 'eval.csv')})  # evaluated at its last step
    return done, unfinished


def run_figures(runs: list[dict], unfinished: dict[str, int], threshold: float) -> dict:
    """Per arm and per finished run (``finished_runs``' or a kept record): queries to
    ``threshold``, best and final success, queries asked; ``unfinished``: per arm, the runs
    still going or paused (counted in ``runs_unfinished`` only)."""
    arms: dict[str, dict] = {arm: {'runs': [], 'runs_unfinished': unfinished.get(arm, 0)}
                             for arm in ARMS}
    for run in runs:
        evals, overrides = run['eval'], run['overrides']
        arm = arm_of(overrides)
        queries, step = first_reaching(evals, threshold)
        arms[arm]['runs'].append({
            'run': run['run'], 'target': str(overrides['goal']), 'seed': overrides.get('seed'),
            'queries_to_threshold': queries, 'steps_to_threshold': step,
            'reached_threshold': queries is not None,
            'best_success': round(max(evals['success_rate']), 3),
            'final_success': round(evals['success_rate'][-1], 3),
            'queries_asked': int(evals['queries'][-1])})
        # The schedule (same for every run of an arm): queries asked by each evaluation.
        arms[arm].setdefault('queries_by_eval_step', {
            int(step): int(q) for step, q in zip(evals['step'], evals['queries'], strict=True)})
    for data in arms.values():
        runs = data['runs']
        reached = [r['queries_to_threshold'] for r in runs if r['reached_threshold']]
        data.update({
            'runs_total': len(runs),
            'fraction_reaching_threshold': (round(len(reached) / len(runs), 3)
                                            if runs else None),
            'queries_to_threshold_mean_of_reaching': (round(float(np.mean(reached)), 1)
                                                      if reached else None),
            'final_success_mean': (round(float(np.mean([r['final_success'] for r in runs])),
                                         3) if runs else None),
            'best_success_mean': (round(float(np.mean([r['best_success'] for r in runs])), 3)
                                  if runs else None)})
    return arms


def checks(arms: dict, priors: dict, headline: Headline, threshold: float) -> dict:
    """The issue's claims, each with the numbers that decide it (``priors``: the prior's
    accuracy on the swept targets, the ones the runs learn)."""
    few = arms['fewshot']['runs']
    within = [r for r in few if r['reached_threshold']
              and r['queries_to_threshold'] <= headline.fewshot_max_queries]
    fraction = len(within) / len(few) if few else math.nan
    peb = arms['pebble']
    few_mean = arms['fewshot']['queries_to_threshold_mean_of_reaching']
    peb_mean = peb['queries_to_threshold_mean_of_reaching']
    if peb['runs'] and peb['fraction_reaching_threshold'] == 0:
        # Never within its budget: the ratio is at least budget / fewshot's queries, and the
        # claim holds only if that bound is 4 (a budget too small to tell says so).
        budget = max(r['queries_asked'] for r in peb['runs'])
        bound = budget / few_mean if few_mean else math.nan
        ratio = (f'> {bound:.2f} (pebble never reached {threshold:.0%} within its '
                 f'{budget} queries)')
        ratio_ok = bool(bound >= 4)
    elif few_mean and peb_mean:
        ratio = round(peb_mean / few_mean, 2)
        ratio_ok = ratio >= 4
    else:
        ratio, ratio_ok = None, False
    floor = schedule_floor(arms, threshold)
    floors = floor.get('schedule_floor_queries_per_sac_run', [])
    floor_fraction = (sum(f <= headline.fewshot_max_queries for f in floors) / len(floors)
                      if floors else math.nan)
    testable = bool(floors) and floor_fraction >= headline.fewshot_min_fraction
    control = arms['fewshot_random_labels']
    control_success = control['final_success_mean']
    pre = [v['pre_adaptation'] for v in priors.values()]
    too_easy = sorted(t for t, v in priors.items() if v['pre_adaptation'] > PRIOR_TOO_GOOD)
    verdict = []
    if control['fraction_reaching_threshold']:
        reached = sum(r['reached_threshold'] for r in control['runs'])
        verdict.append(
            f'the random-label control reached {threshold:.0%} at some evaluation on '
            f"{reached} of {len(control['runs'])} runs (final success "
            f"{control['final_success_mean']:.2f} on average, fewshot's "
            f"{arms['fewshot']['final_success_mean']:.2f}): wherever the control gets there, "
            'the labels are not what got the arm there')
    if floors and not testable:
        verdict.append(
            f'the schedule cannot show the fewshot claim: SAC on the true reward reached '
            f'{threshold:.0%} by an evaluation with at most {headline.fewshot_max_queries} '
            f'queries asked on {floor_fraction:.0%} of its runs, not '
            f'{headline.fewshot_min_fraction:.0%} (the policy needs the steps between '
            'sessions to follow even a perfect reward): space the sessions further apart')
    if too_easy:
        verdict.append(f'the prior ranks the pairs of {", ".join(too_easy)} above '
                       f'{PRIOR_TOO_GOOD} before any label: too easy for the prior')
    return {
        f'fewshot_fraction_reaching_{threshold:.0%}_within_{headline.fewshot_max_queries}'
        '_queries': round(fraction, 3) if few else None,
        'fewshot_claim_holds': bool(few) and fraction >= headline.fewshot_min_fraction,
        'pebble_over_fewshot_queries': ratio,
        'pebble_needs_4x_or_never': ratio_ok,
        'random_label_control_final_success_mean': control_success,
        'random_label_control_below_20pct': (control_success is not None
                                             and control_success < 0.2),
        'prior_pre_adaptation_accuracy_mean': round(float(np.mean(pre)), 3) if pre else None,
        'prior_pre_adaptation_accuracy_max': round(float(np.max(pre)), 3) if pre else None,
        'control_verdict': '; '.join(verdict) or 'controls do not explain the result',
        **floor,
        f'sac_true_reward_fraction_within_{headline.fewshot_max_queries}_queries_of_schedule':
            round(floor_fraction, 3) if floors else None,
        'fewshot_claim_testable_on_this_schedule': testable,
    }


def schedule_floor(arms: dict, threshold: float) -> dict:
    """The fewest queries the schedule lets any reward show: the queries the learning arms
    had asked by the step at which SAC on the true reward (a perfect reward, learned by the
    same SAC) first reached ``threshold``. A reward right after the first session still
    shows that many, because the policy needs those steps to follow it."""
    sac = [r for r in arms['sac_true_reward']['runs'] if r['reached_threshold']]
    few = arms['fewshot']['runs']
    if not sac or not few:
        return {}
    asked = arms['fewshot']['queries_by_eval_step']
    floors = [asked.get(r['steps_to_threshold']) for r in sac]
    floors = [f for f in floors if f is not None]
    return {
        'sac_true_reward_steps_to_threshold': sorted(r['steps_to_threshold'] for r in sac),
        'schedule_floor_queries_per_sac_run': sorted(floors),
        'schedule_floor_queries_mean': round(float(np.mean(floors)), 1) if floors else None,
    }


def plot(runs: list[dict], arms: dict, out: Path, title: str, threshold: float) -> Path:
    """Success against queries (mean and spread over runs), success against env steps, and
    queries to the threshold per run with the fraction of runs that got there."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    curves: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for run in runs:
        curves[arm_of(run['overrides'])].append(run['eval'])
    fig, (by_queries, by_steps, per_run) = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = dict(zip(ARMS, ('tab:green', 'tab:blue', 'tab:orange', 'tab:red', 'tab:gray'),
                      strict=True))
    for arm, runs in curves.items():
        if not runs:
            continue
        steps = sorted({s for run in runs for s in run['step']})
        success = np.array([[run['success_rate'][run['step'].index(s)]
                             if s in run['step'] else np.nan for s in steps] for run in runs])
        queries = np.array([[run['queries'][run['step'].index(s)]
                             if s in run['step'] else np.nan for s in steps] for run in runs])
        mean, std = np.nanmean(success, 0), np.nanstd(success, 0)
        label = f'{arm} (n={len(runs)})'
        by_steps.plot(steps, mean, color=colors[arm], label=label)
        by_steps.fill_between(steps, mean - std, mean + std, color=colors[arm], alpha=0.15)
        if arm == 'sac_true_reward':
            by_queries.axhline(mean[-1], color=colors[arm], linestyle='--', label=label)
            continue
        x = np.nanmean(queries, 0)
        by_queries.plot(x, mean, marker='o', markersize=3, color=colors[arm], label=label)
        by_queries.fill_between(x, mean - std, mean + std, color=colors[arm], alpha=0.15)
    for ax, name in ((by_queries, 'queries asked'), (by_steps, 'env steps')):
        ax.axhline(threshold, color='black', linestyle=':', linewidth=1)
        ax.set_xlabel(name)
        ax.set_ylabel('success rate on the run\'s target')
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    by_queries.legend(fontsize=7)
    shown = [arm for arm in ARMS if arm != 'sac_true_reward' and arms[arm]['runs']]
    top = max([r['queries_asked'] for arm in shown for r in arms[arm]['runs']] or [1])
    for i, arm in enumerate(shown):
        runs = arms[arm]['runs']
        values = [r['queries_to_threshold'] if r['reached_threshold'] else top * 1.15
                  for r in runs]
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(values))
        per_run.scatter(i + jitter, values, color=colors[arm], s=14)
        per_run.text(i, top * 1.25, f"{arms[arm]['fraction_reaching_threshold']:.0%}",
                     ha='center', fontsize=8)
    per_run.axhline(top * 1.15, color='grey', linewidth=0.5)
    per_run.set_xticks(range(len(shown)), [a.replace('_', '\n') for a in shown], fontsize=7)
    per_run.set_ylabel(f'queries to {threshold:.0%} (top line: never; % : runs reaching)')
    per_run.set_ylim(0, top * 1.35)
    per_run.grid(alpha=0.3, axis='y')
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _unfinished(last_model: Path) -> bool:
    """Whether a pretraining stopped before its last step (``last_model.pt`` says which step,
    ``pretrain_config.yaml`` how many); such a run is resumed."""
    config = last_model.parent / 'pretrain_config.yaml'
    if not last_model.exists() or not config.exists():
        return False
    import yaml

    from pref_rl_learner.fewshot.meta_checkpoint import load_pretrained

    steps = int((yaml.safe_load(config.read_text()) or {}).get('steps', 0))
    return int(load_pretrained(last_model).info.get('step', steps)) < steps


def _quick_sweep(sweep: Path, steps: int) -> Path:
    spec = json.loads(sweep.read_text())
    spec['base'] = str((sweep.parent / spec['base']).resolve())
    spec['seeds'] = 1
    spec['grid']['total_steps'] = [steps]
    spec['grid']['goal'] = spec['grid']['goal'][:1]
    path = Path(tempfile.mkdtemp()) / 'quick.json'
    path.write_text(json.dumps(spec))
    return path


def main(headline: Headline, doc: str) -> None:
    """Run ``headline`` end to end (``doc``: the benchmark script's docstring, for --help)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument('--threshold', type=float, default=0.9)
    parser.add_argument('--out', type=Path, default=ROOT / 'runs' / headline.name,
                        help='sweep output directory (resumed if it exists)')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--summarize-only', action='store_true',
                        help='write the result file from the runs finished so far (a sweep '
                             'still running elsewhere); the file says how many are done')
    parser.add_argument('--quick', action='store_true',
                        help='one target, one seed, short runs, 50%% threshold, nothing '
                             'written to bench/results: a smoke test of the pipeline')
    parser.add_argument('--archive', type=Path, default=RESULTS / 'runs' / headline.name,
                        help='where the finished runs and the prior are kept (in the '
                             'repository: a fresh machine resumes from them)')
    args = parser.parse_args()
    started = time.monotonic()
    dataset = ROOT / 'datasets' / headline.dataset
    eval_dataset = ROOT / 'datasets' / (headline.eval_dataset or f'{headline.dataset}_eval')
    pretrain = ROOT / 'runs' / headline.pretrain_dir
    archive = RunArchive(args.archive)
    if not args.quick and archive.restore_prior(pretrain):
        print(f'[{headline.name}] the kept prior {args.archive / archive.PRIOR} restored '
              f'into {pretrain}', flush=True)
    if not (pretrain / 'best_model.pt').exists() and not (dataset / 'manifest.json').exists():
        _run(headline.name, ['pref-rl', 'collect', headline.family, '--out', str(dataset),
                             *headline.collect_args, '--eval-tasks-per-env', '0',
                             '--no-progress'])
    last = pretrain / 'last_model.pt'
    if not (pretrain / 'best_model.pt').exists() or _unfinished(last):
        _run(headline.name, ['pref-rl', 'pretrain', '--dataset', str(dataset),
                             '--out', str(pretrain), '--no-progress',
                             *(['--resume'] if last.exists() else []),
                             '--config', str(ROOT / 'config' / headline.pretrain_config),
                             *(f'--set={item}' for item in headline.pretrain_overrides)])
    if not (eval_dataset / 'manifest.json').exists():
        _run(headline.name, ['pref-rl', 'collect', headline.family, '--out',
                             str(eval_dataset), *headline.collect_args,
                             *headline.eval_collect_args, '--tasks-per-env', '0',
                             '--eval-tasks-per-env', headline.eval_tasks, '--no-progress'])
    sweep = ROOT / 'config' / 'sweeps' / headline.sweep
    kept: list[dict] = []
    key = ''
    if args.quick:
        sweep = _quick_sweep(sweep, headline.quick_steps)
        args.threshold, args.out = 0.5, Path(tempfile.mkdtemp()) / 'sweep'
    else:
        archive.keep_prior(pretrain)
        key = digest(sweep, pretrain / 'best_model.pt')
        kept, stale = archive.records(key)
        print(f'[{headline.name}] {len(kept)} finished run(s) kept in {args.archive}'
              + (f'; {len(stale)} stale (another sweep, base config or prior), left out'
                 if stale else ''), flush=True)
    kept_names = {r['run'] for r in kept}
    if not args.summarize_only:
        resume = ['--resume'] if args.out.exists() else []
        _sweep_keeping(headline.name,
                       ['pref-rl', 'sweep', str(sweep), '--out', str(args.out),
                        '--jobs', str(args.jobs), '--no-progress', *resume,
                        *(f'--skip={name}' for name in sorted(kept_names))],
                       args.out, None if args.quick else archive, key)
    # A kept run counts from its record (same digest: the same result as a copy here).
    run_dirs = sorted(p.parent for p in args.out.glob('*/sweep_run.json')
                      if p.parent.name not in kept_names)
    runs, unfinished = finished_runs(run_dirs)
    if not args.quick:
        for run in runs:
            archive.keep(args.out / run['run'], key)
        runs += kept
    spec = json.loads(sweep.read_text())
    base = yaml.safe_load((sweep.parent / spec['base']).read_text())
    support = int(spec['grid'].get('schedule.queries_per_session',
                                   [base['schedule']['queries_per_session']])[0])
    priors = prior_accuracy(pretrain / 'best_model.pt', eval_dataset, support)
    swept = {target: priors[target] for target in spec['grid']['goal'] if target in priors}
    arms = run_figures(runs, unfinished, args.threshold)
    planned = len(spec['grid']['goal']) * len(next(iter(spec['paired_keys'][0].values()))) * (
        spec['seeds'] if isinstance(spec['seeds'], int) else len(spec['seeds']))
    figures = {
        'threshold': args.threshold,
        'runs_planned': planned,
        'runs_finished': sum(len(a['runs']) for a in arms.values()),
        'targets': spec['grid']['goal'],
        'checks': checks(arms, swept, headline, args.threshold),
        'prior_accuracy_per_target': priors,
        'pretraining': _pretraining_summary(pretrain),
        'arms': arms,
        'wall_minutes_this_invocation': round((time.monotonic() - started) / 60, 1)}
    print(json.dumps(figures['checks'], indent=1), flush=True)
    if args.quick:
        print(json.dumps({k: v for k, v in figures.items() if k != 'arms'}, indent=1))
        return
    plot(runs, arms, RESULTS / f'{headline.name}.png', headline.title, args.threshold)
    print(write_result(headline.name, figures, headline.notes))


def _pretraining_summary(pretrain: Path) -> dict:
    """Outer steps and, at the chosen checkpoint, the validation (training-target) accuracy
    before and after adaptation."""
    evals = read_csv(pretrain / 'eval.csv')
    best = max(range(len(evals['step'])), key=lambda i: evals['accuracy_post_adaptation'][i])
    return {'steps': int(evals['step'][-1]), 'best_step': int(evals['step'][best]),
            'validation_accuracy_post_adaptation': round(
                evals['accuracy_post_adaptation'][best], 3),
            'validation_accuracy_pre_adaptation': round(
                evals['accuracy_pre_adaptation'][best], 3)}
