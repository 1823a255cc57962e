"""Reward-model weights between processes and on disk (checkpoints of the DRLHP worker).

Weights cross the process boundary as plain numpy arrays (never torch's shared-memory
tensors, which need the sender alive until they are received). Checkpoints use the core's
atomic, checksummed, ``weights_only`` format (:mod:`pref_rl_learner.checkpoint`) and carry
the model config, so a pretrained model can be rebuilt without the run's config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pref_rl_learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.reward import RewardEnsemble, RewardModelConfig

CHECKPOINT_DIR = 'checkpoints'
"""Sub-directory of ``log_dir`` holding reward-model checkpoints."""
CHECKPOINT_FORMAT = 'pref_rl.drlhp.reward_model'
"""``format`` entry of a DRLHP reward-model checkpoint."""


def weights_to_numpy(model: RewardEnsemble) -> dict[str, Any]:
    """``state_dict`` with tensors as numpy arrays (picklable without torch sharing)."""
    return {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in model.state_dict().items()}


def load_numpy_weights(model: RewardEnsemble, weights: dict[str, Any]) -> None:
    """Load what :func:`weights_to_numpy` produced into ``model``."""
    model.load_state_dict({k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v)
                           for k, v in weights.items()})


def checkpoint_path(log_dir: str | Path, trainings: int) -> Path:
    """``log_dir/checkpoints/reward_model_<trainings>.pt``."""
    return Path(log_dir) / CHECKPOINT_DIR / f'reward_model_{trainings:06d}.pt'


def save_reward_checkpoint(path: str | Path, model: RewardEnsemble, trainings: int,
                           extra: dict[str, Any] | None = None) -> Path:
    """Atomically write the model, its config and shapes to ``path``."""
    config = dataclasses.asdict(model.config)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    save_checkpoint(path, {
        'format': CHECKPOINT_FORMAT, 'model': model.state_dict(), 'model_config': config,
        'observation_shape': list(model.observation_shape), 'action_dim': model.action_dim,
        'trainings': int(trainings), **(extra or {})})
    return Path(path)


def load_reward_checkpoint(path: str | Path, device: str = 'cpu'
                           ) -> tuple[RewardEnsemble, dict[str, Any]]:
    """Rebuild the ensemble saved at ``path`` on ``device``; returns (model, whole state).

    Raises:
        CheckpointError: missing, corrupt, not a DRLHP reward-model checkpoint, or weights
            that do not fit the saved config.
    """
    state = load_checkpoint(path)
    if state.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{path}: not a DRLHP reward-model checkpoint '
                              f"(format {state.get('format')!r})")
    try:
        config = from_mapping(RewardModelConfig, {**state['model_config'], 'device': device})
        model = RewardEnsemble(tuple(state['observation_shape']), int(state['action_dim']),
                               config)
        model.load_state_dict(state['model'])
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as err:
        raise CheckpointError(f'{path}: reward model cannot be rebuilt: {err}') from err
    model.eval()
    return model, state
