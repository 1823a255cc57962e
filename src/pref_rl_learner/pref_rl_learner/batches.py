"""Batches passed between the core learning modules (NamedTuples, shapes in comments).

Segments inside the core are plain arrays cut from the replay buffer; the validated
:class:`pref_rl_learner.types.Segment` dataclass is for data crossing a process boundary.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class TransitionBatch(NamedTuple):
    """SAC minibatch (torch tensors on the learner's device)."""

    observations: torch.Tensor
    """float32 ``[B, *obs_shape]``."""
    actions: torch.Tensor
    """float32 ``[B, act_dim]``, in [-1, 1]."""
    rewards: torch.Tensor
    """float32 ``[B]``."""
    next_observations: torch.Tensor
    """float32 ``[B, *obs_shape]``."""
    terminated: torch.Tensor
    """float32 ``[B]``: 1.0 where the episode ended in a terminal state (not a time limit)."""


class SegmentPairs(NamedTuple):
    """Candidate or queried pairs of segments (numpy), ``P`` pairs of ``T`` steps."""

    left_observations: np.ndarray
    """float32 ``[P, T, *obs_shape]``."""
    left_actions: np.ndarray
    """float32 ``[P, T, act_dim]``."""
    right_observations: np.ndarray
    """float32 ``[P, T, *obs_shape]``."""
    right_actions: np.ndarray
    """float32 ``[P, T, act_dim]``."""
    left_rewards: np.ndarray | None = None
    """float32 ``[P, T]`` true rewards, when known (scripted teachers need them)."""
    right_rewards: np.ndarray | None = None
    """float32 ``[P, T]`` true rewards, when known."""

    @property
    def num_pairs(self) -> int:
        """``P`` (``len()`` of a NamedTuple is its field count, so it is not overridden)."""
        return int(self.left_observations.shape[0])

    def take(self, index: np.ndarray) -> SegmentPairs:
        """The pairs at ``index`` (an int array), as a new SegmentPairs."""
        return SegmentPairs(*(None if a is None else a[index] for a in self))


class PreferenceBatch(NamedTuple):
    """Labelled pairs for reward learning (numpy), ``N`` pairs of ``T`` steps."""

    left_observations: np.ndarray
    """float32 ``[N, T, *obs_shape]``."""
    left_actions: np.ndarray
    """float32 ``[N, T, act_dim]``."""
    right_observations: np.ndarray
    """float32 ``[N, T, *obs_shape]``."""
    right_actions: np.ndarray
    """float32 ``[N, T, act_dim]``."""
    right_preferred: np.ndarray
    """float32 ``[N]``: P(right ≻ left) as labelled: 1 right, 0 left, 0.5 equal."""

    @property
    def num_pairs(self) -> int:
        """``N``."""
        return int(self.right_preferred.shape[0])
