"""``pref-rl plot``: held-out success and return against env steps and against queries.

Runs whose configs differ only in ``seed`` form one curve: the mean across seeds with a
band of ± one standard deviation (curves are aligned on the evaluation steps they share).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.run_log import read_csv

PANELS = (('success_rate', 'held-out success rate'), ('return', 'held-out return'))
AXES = (('step', 'environment steps'), ('queries', 'queries asked'))


class PlotError(PrefRLError):
    """A run directory has no evaluation log to plot."""


def run_label(run_dir: Path) -> str:
    """Curve label: algorithm, task and teacher from the run's config (seed left out)."""
    config_file = run_dir / 'config.yaml'
    if not config_file.exists():
        return run_dir.name
    config = yaml.safe_load(config_file.read_text()) or {}
    label = f"{config.get('algorithm', '?')} {config.get('task', '?')}"
    if config.get('algorithm') == 'pebble':
        label += f" ({config.get('teacher_preset', 'custom')}, {config['query']['sampler']})"
    return label


def load_runs(run_dirs: Sequence[Path]) -> dict[str, list[dict[str, list[float]]]]:
    """Evaluation logs grouped by :func:`run_label`."""
    groups: dict[str, list[dict[str, list[float]]]] = defaultdict(list)
    for run_dir in run_dirs:
        eval_csv = Path(run_dir) / 'eval.csv'
        if not eval_csv.exists():
            raise PlotError(f'{run_dir}: no eval.csv (is it a pref-rl run directory?)')
        columns = read_csv(eval_csv)
        if not columns:
            raise PlotError(f'{eval_csv}: no evaluations logged yet')
        groups[run_label(Path(run_dir))].append(columns)
    return groups


def plot_runs(run_dirs: Sequence[Path], out: Path, title: str = '') -> Path:
    """Draw the 2×2 figure (success/return × steps/queries) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = load_runs(run_dirs)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), squeeze=False)
    for label, runs in groups.items():
        length = min(len(r['step']) for r in runs)
        for row, (metric, metric_name) in enumerate(PANELS):
            values = np.array([r[metric][:length] for r in runs])
            mean, std = values.mean(axis=0), values.std(axis=0)
            for col, (axis_key, axis_name) in enumerate(AXES):
                x = np.array([r[axis_key][:length] for r in runs]).mean(axis=0)
                if axis_key == 'queries' and not x.any():
                    continue  # no queries (SAC on the true reward): nothing to draw there
                ax = axes[row][col]
                ax.plot(x, mean, label=f'{label} (n={len(runs)})')
                if len(runs) > 1:
                    ax.fill_between(x, mean - std, mean + std, alpha=0.2)
                ax.set_xlabel(axis_name)
                ax.set_ylabel(metric_name)
                ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
