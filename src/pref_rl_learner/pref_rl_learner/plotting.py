"""``pref-rl plot``: compare arms by held-out success against env steps and against queries.

Runs whose configs differ only in ``seed`` form one curve (an *arm*): the mean across seeds
with a band of ± one standard deviation. A curve is labelled by its algorithm and task
(``fewshot point_mass``, ``pebble point_mass``, ``sac point_mass``); when two arms would share
a label, the config values that tell them apart are added. Seeds need not have the same
length: at each evaluation step the mean is over the seeds that reached it (the legend gives
the number of seeds). :func:`queries_to_success` gives, per run and per arm, the queries
asked before held-out success first reached a threshold (the few-shot paper's measure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.run_log import read_csv

PANELS = (('success_rate', 'held-out success rate'), ('return', 'held-out return'))
AXES = (('step', 'environment steps'), ('queries', 'queries asked'))
IGNORED_KEYS = ('seed', 'goal')
"""Config keys that do not separate arms (runs differing only there are averaged): the seed
and the run's target (one arm learns each target it is given)."""
MAX_LABEL_KEYS = 3
"""Most config values added to a label to tell arms apart."""


class PlotError(PrefRLError):
    """A run directory has no evaluation log to plot."""


def run_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a flat dict of dotted keys ({} when there is none)."""
    config_file = Path(run_dir) / 'config.yaml'
    if not config_file.exists():
        return {}
    return _flatten(yaml.safe_load(config_file.read_text()) or {})


def _flatten(mapping: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = tuple(value) if isinstance(value, list) else value
    return out


def run_label(run_dir: Path) -> str:
    """Base label of a run: algorithm (the arm) and task, from its config."""
    config = run_config(Path(run_dir))
    if not config:
        return Path(run_dir).name
    return f"{config.get('algorithm', '?')} {config.get('task', '?')}"


def group_runs(run_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """Runs grouped into arms (configs equal but for the seed), keyed by a unique label, in
    order of first appearance."""
    keyed: dict[tuple, list[Path]] = {}
    configs: dict[tuple, dict[str, Any]] = {}
    for run_dir in map(Path, run_dirs):
        config = run_config(run_dir)
        key = (tuple(sorted((k, repr(v)) for k, v in config.items() if k not in IGNORED_KEYS))
               if config else ('dir', str(run_dir)))
        keyed.setdefault(key, []).append(run_dir)
        configs[key] = config
    base = {key: run_label(dirs[0]) for key, dirs in keyed.items()}
    labels = {}
    for key in keyed:
        same = [k for k in keyed if base[k] == base[key]]
        label = base[key]
        if len(same) > 1:
            differing = [name for name in configs[key] if name not in IGNORED_KEYS
                         and len({repr(configs[k].get(name)) for k in same}) > 1]
            shown = [f'{name}={_value(configs[key].get(name))}'
                     for name in differing[:MAX_LABEL_KEYS]]
            label += f" ({', '.join(shown)}{', ...' if len(differing) > MAX_LABEL_KEYS else ''})"
        labels[key] = label
    if len(set(labels.values())) != len(labels):  # arms alike in every shown value
        seen: dict[str, int] = {}
        for key, label in labels.items():
            seen[label] = seen.get(label, 0) + 1
            labels[key] = label if seen[label] == 1 else f'{label} #{seen[label]}'
    return {labels[key]: dirs for key, dirs in keyed.items()}


def _value(value: Any) -> str:
    if isinstance(value, str) and '/' in value:
        return Path(value).name
    if isinstance(value, tuple):
        return 'x'.join(map(str, value))
    return str(value)


def _eval_log(run_dir: Path) -> dict[str, list[float]]:
    eval_csv = Path(run_dir) / 'eval.csv'
    if not eval_csv.exists():
        raise PlotError(f'{run_dir}: no eval.csv (is it a pref-rl run directory?)')
    columns = read_csv(eval_csv)
    if not columns:
        raise PlotError(f'{eval_csv}: no evaluations logged yet')
    return columns


def load_runs(run_dirs: Sequence[Path]) -> dict[str, list[dict[str, list[float]]]]:
    """Evaluation logs (``eval.csv`` columns) grouped into arms by :func:`group_runs`."""
    return {label: [_eval_log(d) for d in dirs] for label, dirs in group_runs(run_dirs).items()}


@dataclass(frozen=True)
class Curve:
    """One arm's mean curve over its seeds."""

    step: np.ndarray
    """Evaluation steps reached by at least one seed, sorted."""
    seeds: np.ndarray
    """Seeds that reached each step."""
    mean: dict[str, np.ndarray]
    """Column -> mean over the seeds at each step."""
    std: dict[str, np.ndarray]
    """Column -> standard deviation (population) over the seeds at each step."""


def mean_curve(runs: Sequence[dict[str, list[float]]],
               columns: Sequence[str] = ('success_rate', 'return', 'queries')) -> Curve:
    """Mean and std across seeds at each evaluation step; runs of different lengths (or
    evaluated at different steps) contribute where they have a value."""
    steps = np.array(sorted({s for run in runs for s in run['step']}))
    mean = {c: np.full(len(steps), math.nan) for c in columns}
    std = {c: np.full(len(steps), math.nan) for c in columns}
    seeds = np.zeros(len(steps), dtype=int)
    index = {s: i for i, s in enumerate(steps)}
    per_step: list[list[dict[str, float]]] = [[] for _ in steps]
    for run in runs:
        for row, step in enumerate(run['step']):
            per_step[index[step]].append({c: run[c][row] for c in columns if c in run})
    for i, rows in enumerate(per_step):
        seeds[i] = len(rows)
        for c in columns:
            values = [r[c] for r in rows if c in r and not math.isnan(r[c])]
            if values:
                mean[c][i], std[c][i] = np.mean(values), np.std(values)
    return Curve(steps, seeds, mean, std)


def plot_runs(run_dirs: Sequence[Path], out: Path, title: str = '',
              threshold: float | None = None) -> Path:
    """Draw the 2×2 figure (success/return × steps/queries), one curve per arm, to ``out``
    (PNG); ``threshold`` draws that success level as a dotted line."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = load_runs(run_dirs)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), squeeze=False)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for number, (label, runs) in enumerate(groups.items()):
        curve = mean_curve(runs)
        color = colors[number % len(colors)]
        for row, (metric, metric_name) in enumerate(PANELS):
            mean, std = curve.mean[metric], curve.std[metric]
            for col, (axis_key, axis_name) in enumerate(AXES):
                x = curve.step if axis_key == 'step' else curve.mean['queries']
                if axis_key == 'queries' and not np.nan_to_num(x).any():
                    continue  # no queries (SAC on the true reward): nothing to draw there
                ax = axes[row][col]
                ax.plot(x, mean, color=color, label=f'{label} (n={len(runs)})')
                if len(runs) > 1:
                    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
                ax.set_xlabel(axis_name)
                ax.set_ylabel(metric_name)
                ax.grid(alpha=0.3)
    if threshold is not None:
        for ax in axes[0]:  # the success panels
            ax.axhline(threshold, color='grey', linestyle=':', linewidth=1)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ------------------------------------------------------------------ queries to success

@dataclass(frozen=True)
class RunQueries:
    """Queries one run needed to reach the success threshold."""

    run_dir: Path
    """The run."""
    arm: str
    """Its arm's label (as in the plot)."""
    queries: int | None
    """Queries asked at the first evaluation with success >= threshold (None: never)."""
    step: int | None
    """Env step of that evaluation (None: never)."""


@dataclass(frozen=True)
class ArmQueries:
    """Queries to the success threshold over one arm's seeds."""

    arm: str
    """Arm label."""
    queries: tuple[int | None, ...]
    """Per run, in the order given (None: never reached)."""

    @property
    def reached(self) -> list[int]:
        """Values of the runs that reached the threshold."""
        return [q for q in self.queries if q is not None]

    @property
    def not_reached(self) -> int:
        """Runs that never reached it."""
        return len(self.queries) - len(self.reached)

    @property
    def mean(self) -> float | None:
        """Mean over the runs that reached it (None if none did)."""
        return float(np.mean(self.reached)) if self.reached else None

    @property
    def std(self) -> float | None:
        """Standard deviation (population) over the runs that reached it."""
        return float(np.std(self.reached)) if self.reached else None


@dataclass(frozen=True)
class QueriesToSuccess:
    """Per-run and per-arm queries needed to reach a held-out success threshold."""

    threshold: float
    """Success rate to reach."""
    runs: tuple[RunQueries, ...]
    """One entry per run, in the order given."""
    arms: tuple[ArmQueries, ...]
    """One entry per arm, in order of first appearance."""

    def arm(self, label: str) -> ArmQueries:
        """The arm called ``label`` (KeyError if none)."""
        for arm in self.arms:
            if arm.arm == label:
                return arm
        raise KeyError(label)

    def format_table(self) -> str:
        """A plain-text table: arm, runs, reached, mean ± std queries, per-run values."""
        head = ('arm', 'runs', 'not reached', f'queries to {self.threshold:.0%} (mean ± std)',
                'per run')
        rows = [head]
        for arm in self.arms:
            figure = '-' if arm.mean is None else f'{arm.mean:.1f} ± {arm.std:.1f}'
            rows.append((arm.arm, str(len(arm.queries)), str(arm.not_reached), figure,
                         ', '.join('-' if q is None else str(q) for q in arm.queries)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         for r in rows)


def first_reaching(columns: dict[str, list[float]],
                   threshold: float) -> tuple[int | None, int | None]:
    """(queries, step) at the first evaluation with success >= threshold, or (None, None)."""
    for row, success in enumerate(columns['success_rate']):
        if success >= threshold:
            queries = columns.get('queries', [0.0] * len(columns['step']))[row]
            return int(queries), int(columns['step'][row])
    return None, None


def queries_to_success(run_dirs: Sequence[Path], threshold: float = 0.9) -> QueriesToSuccess:
    """Queries each run had asked when held-out success first reached ``threshold``, and
    per arm the mean/std over the runs that reached it and how many never did.

    Raises:
        PlotError: a run has no evaluation log.
    """
    if not 0.0 <= threshold <= 1.0:
        raise PlotError(f'threshold must be a success rate in [0, 1], got {threshold}')
    per_run: dict[Path, RunQueries] = {}
    arms = []
    for label, dirs in group_runs(run_dirs).items():
        values = []
        for run_dir in dirs:
            queries, step = first_reaching(_eval_log(run_dir), threshold)
            per_run[run_dir] = RunQueries(run_dir, label, queries, step)
            values.append(queries)
        arms.append(ArmQueries(label, tuple(values)))
    return QueriesToSuccess(threshold, tuple(per_run[Path(d)] for d in run_dirs), tuple(arms))
