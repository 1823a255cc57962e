"""Held-out evaluation of the asynchronous learner's policy, and the run's end summary.

The ROS session's counterpart of what :class:`~pref_rl_learner.pebble.trainer.PebbleTrainer`
does in one process: the deterministic policy is evaluated on the task's held-out goals
(:func:`~pref_rl_learner.pebble.evaluation.evaluate_policy`) at the start, every
``eval_interval_steps`` received transitions and once ``total_steps`` is reached, each
evaluation appended to ``<run_dir>/eval.csv`` (:class:`~pref_rl_learner.run_log.RunLog`), so
``pref-rl plot`` reads a session's run directory like a ``pref-rl train`` one. At the end
:meth:`SessionEvaluator.finish` writes ``summary.json`` and ``learning_curves.png``.

Resumable: on a restart the rows logged after the checkpoint being resumed are dropped and
the evaluation schedule continues from the last kept row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from pref_rl_learner.durable import atomic_write_bytes
from pref_rl_learner.pebble.config import TrainConfig, to_mapping
from pref_rl_learner.pebble.evaluation import EvalResult, Policy, evaluate_policy
from pref_rl_learner.run_log import RunLog, read_csv

EVAL_NAME = 'eval.csv'
SUMMARY_NAME = 'summary.json'
PLOT_NAME = 'learning_curves.png'
CONFIG_NAME = 'config.yaml'
EVAL_SEED_OFFSET = 10_000
"""The evaluation env's seed is the run's seed plus this (as in ``PebbleTrainer``)."""


class SessionEvaluator:
    """Evaluates a policy on the run's target on a schedule and logs each evaluation.

    Args:
        config: the run (task, seed, ``total_steps``, ``eval_interval_steps``,
            ``eval_episodes``).
        run_dir: where ``eval.csv``, ``config.yaml``, ``summary.json`` and the plot go.
        env: the evaluation env; by default the task on the run's target
            (``make_task(task, goal=config.goal)``), made on first use.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path,
                 env: gym.Env | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self._env = env
        self._log: RunLog | None = None
        self.last_eval_step = -1
        """Env steps at the last logged evaluation (-1: none yet)."""
        self.history: list[dict[str, float]] = []
        """Every logged evaluation of the run, oldest first (read back on resume)."""
        self._reported = 0
        self._figure_sources: list[Callable[[], Mapping[str, Any]]] = []

    def add_figures(self, source: Callable[[], Mapping[str, Any]]) -> None:
        """Have :meth:`finish` add ``source()``'s figures to the summary (a driver's own
        counts, e.g. the ROS learner's queries with frames); the core's figures win a clash."""
        self._figure_sources.append(source)

    @property
    def env(self) -> gym.Env:
        """The evaluation env on the run's target (made on first use)."""
        if self._env is None:
            from pref_rl_learner.pebble.tasks import task_suite
            self._env = task_suite().make_task(self.config.task, goal=self.config.goal,
                                                seed=self.config.seed + EVAL_SEED_OFFSET)
        return self._env

    def target_description(self) -> str:
        """The run's target as ``eval:3 at (0.20, 0.80)`` (its name where there are many
        coordinates)."""
        return self.env.unwrapped.target.describe()

    def open(self, resume_step: int) -> None:
        """Start logging; rows after ``resume_step`` (a crash's leftovers) are dropped."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.run_dir / CONFIG_NAME
        if not config_file.exists():  # pref-rl plot labels curves from it
            atomic_write_bytes(config_file, yaml.safe_dump(
                to_mapping(self.config), sort_keys=False).encode())
        self._log = RunLog(self.run_dir, tensorboard=False, resume_step=resume_step)
        path = self.run_dir / EVAL_NAME
        columns = read_csv(path) if path.exists() else {}
        steps = columns.get('step', [])
        self.history = [{key: values[i] for key, values in columns.items()}
                        for i in range(len(steps))]
        self.last_eval_step = int(steps[-1]) if steps else -1
        self._reported = len(self.history)

    def due(self, env_steps: int) -> bool:
        """Whether an evaluation is due at ``env_steps`` received transitions."""
        if self.last_eval_step < 0:
            return True  # the policy before any learning
        total = self.config.total_steps
        if env_steps >= total:
            return self.last_eval_step < total  # the final one
        interval = self.config.eval_interval_steps
        return env_steps >= (self.last_eval_step // interval + 1) * interval

    def evaluate(self, policy: Policy, env_steps: int,
                 figures: Mapping[str, float | int]) -> EvalResult:
        """Evaluate ``policy`` now and log it at ``env_steps`` with ``figures`` (queries,
        labels, reward-model version, ...)."""
        if self._log is None:
            raise RuntimeError('SessionEvaluator.open() was not called')
        result = evaluate_policy(policy, self.env, self.config.eval_episodes,
                                 seed=self.config.seed)
        row = {'success_rate': result.success_rate, 'return': result.mean_return,
               **figures, 'episodes': result.episodes}
        self._log.write('eval', env_steps, row)
        self.history.append({'step': float(env_steps), **{k: float(v) for k, v in row.items()}})
        self.last_eval_step = env_steps
        return result

    def take_new(self) -> list[dict[str, float]]:
        """Evaluations logged since the last call (for progress reports)."""
        new = self.history[self._reported:]
        self._reported = len(self.history)
        return new

    def finish(self, figures: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``summary.json`` (first vs last evaluation plus ``figures`` and those of
        every :meth:`add_figures` source) and the plot.

        Returns the summary.
        """
        first = self.history[0] if self.history else {}
        last = self.history[-1] if self.history else {}
        summary: dict[str, Any] = {
            'task': self.config.task, 'algorithm': self.config.algorithm,
            'target': self.target_description(),
            'eval_episodes': self.config.eval_episodes,
            'eval_success_before': first.get('success_rate', math.nan),
            'eval_success_after': last.get('success_rate', math.nan),
            'eval_return_before': first.get('return', math.nan),
            'eval_return_after': last.get('return', math.nan),
            'evaluations': len(self.history),
            **{k: v for source in self._figure_sources for k, v in source().items()},
            **figures,
        }
        summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in summary.items()}
        if self._log is not None:
            self._log.close()
        if self.history:
            from pref_rl_learner.plotting import plot_runs  # matplotlib: only at the end
            summary['plot'] = str(plot_runs([self.run_dir], self.run_dir / PLOT_NAME,
                                            title=f'{self.config.algorithm} on '
                                                  f'{self.config.task} (ROS session)'))
        atomic_write_bytes(self.run_dir / SUMMARY_NAME,
                           (json.dumps(summary, indent=2) + '\n').encode())
        return summary

    def close(self) -> None:
        """Close the log files."""
        if self._log is not None:
            self._log.close()
