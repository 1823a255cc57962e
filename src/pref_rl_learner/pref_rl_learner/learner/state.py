"""Checkpoint contents of the asynchronous learner and their save/restore.

Networks and optimisers, the replay buffer, the reward ensemble and its trainer, the
state-entropy statistics, the segment store, the segments received but held back by pacing,
the counters and the random generators. The
preference store is not inside: it is durable on its own, newer than any checkpoint, and
is the source of the budget, the sessions asked and the pending queries on resume
(:meth:`LearnerCore._sync_with_store`). Loading never unpickles code
(:func:`~pref_rl_learner.checkpoint.load_checkpoint` uses ``weights_only``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pref_rl_learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pref_rl_learner.pebble.config import to_mapping
from pref_rl_learner.pebble.state import learning_state_dict, load_learning_state
from pref_rl_learner.types import Segment

if TYPE_CHECKING:
    from pref_rl_learner.learner.core import LearnerCore

FORMAT = 1
CHECKPOINT_NAME = 'checkpoint.pt'
"""File name of the learner's checkpoint inside the run directory."""


@dataclass
class LearnerState:
    """Counters of the learner (mutable; saved as plain data)."""

    env_steps: int = 0
    """Transitions received."""
    budgeted_updates: int = 0
    """SAC updates counted against ``updates_per_step`` (reset updates are not)."""
    sessions_started: int = 0
    """Feedback sessions whose queries were asked."""
    critic_reset_done: bool = False
    """The critics were reset after the first reward training."""
    labels_trained: int = 0
    """Trainable labels in the store when the reward model was last trained."""
    unlabelled: int = 0
    """Newest transitions in the buffer not yet given the learned reward."""
    policy_version: int = 0
    """Version of the last exported policy weights."""
    last_export_updates: int = 0
    """``agent.num_updates`` at the last export."""
    reward_model_accuracy: float = math.nan
    """Validation accuracy of the last reward training (NaN: not measured)."""


def save_learner_state(core: LearnerCore, path: Path) -> None:
    """Atomically write the learner's state to ``path`` (the caller holds its locks)."""
    save_checkpoint(path, {
        'format': FORMAT,
        'config': to_mapping(core.config),
        'state': dataclasses.asdict(core.state),
        **learning_state_dict(core),
        'segments': core.segments.state_dict(),
        'backlog': [_segment_state(segment) for segment in core._backlog],
        'episodes': [[float(r), bool(s)] for r, s in core.episodes],
        'rng': {'run': core.rng.bit_generator.state,
                'sample_generator': core.sample_generator.get_state()},
    })


def load_learner_state(core: LearnerCore, path: Path) -> None:
    """Restore a checkpoint written by :func:`save_learner_state` into ``core``.

    Raises:
        CheckpointError: unreadable, of another format, or written for a different config.
    """
    state = load_checkpoint(path, map_location=core.agent.device)
    if state.get('format') != FORMAT or 'segments' not in state:
        raise CheckpointError(f'{path}: not a learner checkpoint of format {FORMAT}')
    if state.get('config') != to_mapping(core.config):
        raise CheckpointError(f'{path}: written for a different config; resume with the '
                              "run's own config")
    try:
        core.state = LearnerState(**state['state'])
        load_learning_state(core, state)
        core.segments.load_state_dict(state['segments'])
        core._backlog.clear()
        core._backlog.extend(_segment_from_state(item) for item in state.get('backlog', ()))
        core.episodes.clear()
        core.episodes.extend((float(r), bool(s)) for r, s in state['episodes'])
        core.rng.bit_generator.state = state['rng']['run']
        core.sample_generator.set_state(state['rng']['sample_generator'])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f'{path}: incomplete or inconsistent checkpoint: {err}') from err
    # Segment ids in the restored store and backlog must not be ingested twice.
    for segment in (*core.segments, *core._backlog):
        core._recent_ids[segment.segment_id] = None


def _segment_state(segment: Segment) -> dict[str, Any]:
    """``segment`` as tensors and plain values, without frames (the robot serves them)."""
    fields = dataclasses.asdict(dataclasses.replace(segment, frames=None, frame_stride=0))
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
            for k, v in fields.items()}


def _segment_from_state(item: dict[str, Any]) -> Segment:
    return Segment(**{k: v.numpy() if isinstance(v, torch.Tensor) else v
                      for k, v in item.items()})
