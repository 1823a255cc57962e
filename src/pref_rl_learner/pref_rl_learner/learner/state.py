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
