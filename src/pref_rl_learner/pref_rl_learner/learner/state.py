"""Counters of the asynchronous learner and its checkpoint layout.

A learner checkpoint (:meth:`LearnerCore.state_dict`) holds the learning component's state
(networks and optimisers, replay buffer, reward ensemble and trainer, state-entropy
statistics, generators), the segment store, the intake (segments held back by pacing,
episode figures) and these counters. The preference store is not inside: it is durable on its
own, newer than any checkpoint, and is the source of the budget, the sessions asked and the
pending queries on resume. Loading never unpickles code
(:func:`~pref_rl_learner.checkpoint.load_checkpoint` uses ``weights_only``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pref_rl_learner.checkpoint import CheckpointError, is_checkpoint_file

FORMAT = 2
"""Version of the learner checkpoint layout (2: the learning component's state in one
entry)."""
CHECKPOINT_NAME = 'checkpoint.pt'
"""File name of the learner's checkpoint inside the run directory."""


@dataclass
class LearnerState:
    """Counters of the learner (mutable; saved as plain data)."""

    env_steps: int = 0
    """Transitions received."""
    budgeted_updates: int = 0
    """SAC updates counted against ``updates_per_step`` (reset updates are not)."""
    labels_trained: int = 0
    """Trainable labels in the store when the reward model was last trained."""
    policy_version: int = 0
    """Version of the last exported policy weights."""
    last_export_updates: int = 0
    """``agent.num_updates`` at the last export."""
    reward_model_accuracy: float = math.nan
    """Accuracy of the last reward training: on the validation split when the run keeps one,
    else on the labels trained on (NaN: no training yet)."""


class CheckpointPathError(CheckpointError, ValueError):
    """``save_checkpoint`` was asked to write where a checkpoint must not go."""


def checkpoint_target(path: str | Path | None, run_dir: Path, store_dir: Path,
                      extra_dir: Path | None = None) -> Path:
    """Where a requested checkpoint may go: ``run_dir/checkpoint.pt`` by default; else a
    ``.pt`` file inside ``run_dir`` (relative paths are relative to it) or ``extra_dir``,
    never inside the preference store, never over a file that is not a pref-rl checkpoint.

    Raises:
        CheckpointPathError: naming the refused path and why.
    """
    if not path:
        return run_dir / CHECKPOINT_NAME
    target = Path(path)
    if not target.is_absolute():
        target = run_dir / target
    resolved = target.resolve()
    roots = [run_dir.resolve()] + ([extra_dir.resolve()] if extra_dir else [])
    if not any(resolved.is_relative_to(root) for root in roots):
        raise CheckpointPathError(
            f'{path}: checkpoints are written only inside the run directory {run_dir}'
            + (f' or {extra_dir}' if extra_dir else ''))
    if resolved.is_relative_to(store_dir.resolve()):
        raise CheckpointPathError(f'{path}: inside the preference store {store_dir}')
    if resolved.suffix != '.pt':
        raise CheckpointPathError(f'{path}: a checkpoint file name ends in .pt')
    if resolved.exists() and not (resolved.is_file() and is_checkpoint_file(resolved)):
        raise CheckpointPathError(f'{path}: exists and is not a pref-rl checkpoint; it is '
                                  'not overwritten')
    return resolved
