"""``pref-rl plot``: arms from run configs, mean curves over seeds, queries to success."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from pref_rl_learner.plotting import (
    PlotError,
    group_runs,
    load_runs,
    mean_curve,
    plot_runs,
    queries_to_success,
)


def make_run(root: Path, name: str, algorithm: str, seed: int,
             rows: list[tuple[int, float, int]], task: str = 'point_mass',
             **config) -> Path:
    """A run directory with config.yaml and eval.csv rows of (step, success, queries)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    full = {'task': task, 'algorithm': algorithm, 'seed': seed,
            'reward_training': {'lr': 0.0003}, **config}
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(full))
    with open(run_dir / 'eval.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['step', 'success_rate', 'return', 'queries', 'labelled', 'skipped',
                         'episodes'])
        for step, success, queries in rows:
            writer.writerow([step, success, -10 * (1 - success), queries, queries, 0, 8])
    return run_dir


@pytest.fixture
def arms(tmp_path) -> list[Path]:
    """Three arms: fewshot reaches 90% after 5 / 10 queries / never, pebble after 60 / 120 /
    90, sac (no queries) at step 2000 in both seeds; seeds of different lengths."""
    runs = [
        make_run(tmp_path, 'fewshot-s0', 'fewshot', 0,
                 [(0, 0.0, 0), (1000, 0.5, 5), (2000, 0.9, 5), (3000, 1.0, 10)]),
        make_run(tmp_path, 'fewshot-s1', 'fewshot', 1,
                 [(0, 0.0, 0), (1000, 0.25, 5), (2000, 0.875, 10), (3000, 0.95, 10)]),
        make_run(tmp_path, 'fewshot-s2', 'fewshot', 2,
                 [(0, 0.0, 0), (1000, 0.5, 5), (2000, 0.5, 10)]),
        make_run(tmp_path, 'pebble-s0', 'pebble', 0,
                 [(0, 0.0, 0), (1000, 0.2, 30), (2000, 0.95, 60), (3000, 0.95, 90)]),
        make_run(tmp_path, 'pebble-s1', 'pebble', 1,
                 [(0, 0.0, 0), (1000, 0.1, 30), (2000, 0.6, 60), (3000, 0.8, 90),
                  (4000, 0.9, 120)]),
        make_run(tmp_path, 'pebble-s2', 'pebble', 2,
                 [(0, 0.0, 0), (1000, 0.1, 30), (2000, 0.6, 60), (3000, 1.0, 90)]),
        make_run(tmp_path, 'sac-s0', 'sac', 0, [(0, 0.0, 0), (1000, 0.5, 0), (2000, 1.0, 0)]),
        make_run(tmp_path, 'sac-s1', 'sac', 1, [(0, 0.0, 0), (1000, 0.5, 0), (2000, 1.0, 0)]),
    ]
    return runs


def test_runs_group_into_arms_labelled_by_algorithm_and_task(arms):
    groups = group_runs(arms)
    assert list(groups) == ['fewshot point_mass', 'pebble point_mass', 'sac point_mass']
    assert [d.name for d in groups['pebble point_mass']] == ['pebble-s0', 'pebble-s1',
                                                             'pebble-s2']


def test_arms_alike_in_label_are_told_apart_by_what_differs(tmp_path):
    rows = [(0, 0.0, 0), (1000, 1.0, 10)]
    runs = [make_run(tmp_path, 'a0', 'pebble', 0, rows, reward_training={'lr': 0.001}),
            make_run(tmp_path, 'a1', 'pebble', 1, rows, reward_training={'lr': 0.001}),
            make_run(tmp_path, 'b0', 'pebble', 0, rows),
            make_run(tmp_path, 'c0', 'pebble', 0, rows, task='reacher')]
    groups = group_runs(runs)
    assert {label: [d.name for d in dirs] for label, dirs in groups.items()} == {
        'pebble point_mass (reward_training.lr=0.001)': ['a0', 'a1'],
        'pebble point_mass (reward_training.lr=0.0003)': ['b0'],
        'pebble reacher': ['c0']}


def test_mean_curve_over_seeds_of_different_lengths(arms):
    curve = mean_curve(load_runs(arms)['pebble point_mass'])
    assert curve.step.tolist() == [0, 1000, 2000, 3000, 4000]
    assert curve.seeds.tolist() == [3, 3, 3, 3, 1]
    np.testing.assert_allclose(curve.mean['success_rate'], [0, 0.4 / 3, 2.15 / 3, 2.75 / 3,
                                                            0.9])
    np.testing.assert_allclose(curve.std['success_rate'][-1], 0.0)
    np.testing.assert_allclose(curve.std['success_rate'][2],
                               np.std([0.95, 0.6, 0.6]))
    np.testing.assert_allclose(curve.mean['queries'], [0, 30, 60, 90, 120])


def test_queries_to_success_per_run_and_per_arm(arms):
    result = queries_to_success(arms, threshold=0.9)
    assert [(r.run_dir.name, r.queries, r.step) for r in result.runs] == [
        ('fewshot-s0', 5, 2000), ('fewshot-s1', 10, 3000), ('fewshot-s2', None, None),
        ('pebble-s0', 60, 2000), ('pebble-s1', 120, 4000), ('pebble-s2', 90, 3000),
        ('sac-s0', 0, 2000), ('sac-s1', 0, 2000)]
    fewshot = result.arm('fewshot point_mass')
    assert fewshot.queries == (5, 10, None) and fewshot.not_reached == 1
    assert fewshot.mean == 7.5 and fewshot.std == 2.5
    pebble = result.arm('pebble point_mass')
    assert (pebble.mean, pebble.not_reached) == (90.0, 0)
    assert pebble.std == pytest.approx(np.std([60, 120, 90]))
    table = result.format_table()
    assert 'queries to 90% (mean ± std)' in table.splitlines()[0]
    assert 'fewshot point_mass  3     1            7.5 ± 2.5' in table
    assert table.splitlines()[1].endswith('5, 10, -')
    # A lower bar is reached earlier: fewshot-s2 now counts too.
    assert queries_to_success(arms, threshold=0.5).arm('fewshot point_mass').queries == (
        5, 10, 5)
    with pytest.raises(PlotError):
        queries_to_success(arms, threshold=90)


def test_plot_writes_a_png_with_every_arm(arms, tmp_path, monkeypatch):
    import matplotlib.image
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, 'close', lambda fig: (figures.append(fig), close(fig)))
    out = plot_runs(arms, tmp_path / 'fig' / 'arms.png', title='arms', threshold=0.9)
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    (fig,) = figures
    steps_panel, queries_panel = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in steps_panel.get_legend().get_texts()] == [
        'fewshot point_mass (n=3)', 'pebble point_mass (n=3)', 'sac point_mass (n=2)']
    # SAC asks no queries: it has no curve against queries.
    assert [line.get_label() for line in queries_panel.get_lines()
            if not line.get_label().startswith('_')] == [
        'fewshot point_mass (n=3)', 'pebble point_mass (n=3)']
    (pebble,) = [line for line in steps_panel.get_lines()
                 if line.get_label() == 'pebble point_mass (n=3)']
    assert list(pebble.get_xdata()) == [0, 1000, 2000, 3000, 4000]


def test_a_directory_without_evaluations_is_reported(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(PlotError, match='no eval.csv'):
        load_runs([tmp_path / 'empty'])
