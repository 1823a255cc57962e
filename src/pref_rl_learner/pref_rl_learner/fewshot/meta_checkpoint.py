"""Checkpoints of a pretrained reward model: what ``pref-rl pretrain`` writes and the arms read.

A meta checkpoint is a reward-model checkpoint (:func:`pref_rl_learner.offline_reward.
save_reward_model`'s layout, so :func:`~pref_rl_learner.offline_reward.load_reward_model` reads
it and gets the meta-initialisation θ) with three more entries: ``maml`` (the learned inner
learning rates α and the inner-loop config), ``pretrain_config`` (the
:class:`~pref_rl_learner.fewshot.pretrain.PretrainConfig` as plain data) and ``pretrain``
(step, accuracies, and in ``last_model.pt`` the outer optimiser's state). It is checksummed
and atomic like every pref-rl checkpoint (:mod:`pref_rl_learner.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pref_rl_learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.fewshot.maml import MAML, MAMLConfig, Params
from pref_rl_learner.offline_reward import (
    CHECKPOINT_FORMAT,
    reward_model_from_state,
    reward_model_state,
)
from pref_rl_learner.reward.ensemble import RewardEnsemble


@dataclass(frozen=True)
class PretrainedReward:
    """A reward ensemble read from a checkpoint, with its MAML state when it has one."""

    model: RewardEnsemble
    """The ensemble (the meta-initialisation θ for a ``pref-rl pretrain`` checkpoint)."""
    inner_lrs: Params | None
    """Learned inner learning rates α by parameter name; None for a checkpoint written by
    ``pref-rl reward-train`` (usable by the ``init`` arm only)."""
    maml: MAMLConfig | None
    """The inner-loop settings it was meta-trained with (None without MAML state)."""
    info: dict[str, Any]
    """What the checkpoint says about its training (plain data, for reports)."""
    path: Path
    """Where it was read from."""


def save_meta_checkpoint(path: str | Path, maml: MAML, *, seed: int,
                         pretrain_config: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Atomically write θ (with its normaliser), α, the config and ``info`` to ``path``.

    ``info`` is plain data and tensors (e.g. the step, accuracies, an optimiser state).
    """
    state = reward_model_state(maml.model, seed, {
        'kind': 'maml', **{k: v for k, v in info.items() if k != 'optimizer'}})
    state.update(maml=maml.state_dict(), pretrain_config=dict(pretrain_config),
                 pretrain=dict(info))
    save_checkpoint(path, state)


def load_pretrained(path: str | Path, device: str | None = 'cpu') -> PretrainedReward:
    """Read a ``pref-rl pretrain`` or ``pref-rl reward-train`` checkpoint.

    Raises:
        CheckpointError: missing, truncated, corrupt, not a reward-model checkpoint, or its
            MAML state does not fit its model.
    """
    path = Path(path)
    state = load_checkpoint(path)
    model = reward_model_from_state(state, path, device)
    info = dict(state.get('pretrain') or state.get('training') or {})
    info.pop('optimizer', None)
    maml_state = state.get('maml')
    if maml_state is None:
        return PretrainedReward(model, None, None, info, path)
    try:
        maml_config = from_mapping(MAMLConfig, maml_state['config'])
        maml = MAML(model, maml_config)
        maml.load_state_dict(maml_state)
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(f'{path}: malformed MAML state: {err}') from None
    lrs = {n: t.detach().clone() for n, t in maml.inner_lrs.items()}
    return PretrainedReward(model, lrs, maml_config, info, path)


def read_pretrain_state(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint of ``path`` (to resume pretraining), checked to be a MAML one.

    Raises:
        CheckpointError: unreadable or not written by ``pref-rl pretrain``.
    """
    state = load_checkpoint(path, map_location=torch.device('cpu'))
    if state.get('format') != CHECKPOINT_FORMAT or 'maml' not in state \
            or 'pretrain' not in state:
        raise CheckpointError(f'{path}: not a `pref-rl pretrain` checkpoint')
    return state
