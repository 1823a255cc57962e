"""Checkpoint contents of a PEBBLE run and their save/restore.

Everything a run needs to continue as if never stopped: networks and optimisers, the
replay buffer, the reward ensemble and its trainer, the teacher's return history, the
budget, counters, and every random generator (Python, NumPy, torch, the env's). Taken only
at episode boundaries, so no simulator state has to be captured. The preference store is
not inside: it is durable on its own and is reopened.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pref_rl_learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pref_rl_learner.pebble.config import to_mapping

if TYPE_CHECKING:
    from pref_rl_learner.pebble.trainer import PebbleTrainer

FORMAT = 1


@dataclass
class RunState:
    """Counters of a run (mutable; saved as plain data)."""

    step: int = 0
    episode: int = 0
    session: int = 0
    episode_return: float = 0.0
    episode_length: int = 0
    episode_success: bool = False
    last_eval_step: int = -1
    last_eval_success: float = math.nan
    last_eval_return: float = math.nan
    last_checkpoint_step: int = 0


def learning_state_dict(owner: Any) -> dict[str, Any]:
    """The learning components every PEBBLE-style run checkpoints: ``owner``'s agent, replay
    buffer, reward ensemble (and its version), reward trainer and state-entropy statistics
    (shared by :class:`PebbleTrainer` and the ROS learner's core)."""
    return {
        'agent': owner.agent.state_dict(),
        'buffer': owner.buffer.state_dict(),
        'reward_model': owner.reward_model.state_dict(),
        'reward_model_version': owner.reward_model.version,
        'reward_trainer': owner.reward_trainer.state_dict(),
        'entropy': owner.entropy.stats.state_dict(),
    }


def load_learning_state(owner: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`learning_state_dict` saved into ``owner`` (raises what the
    components raise on missing or misshapen entries)."""
    owner.agent.load_state_dict(state['agent'])
    owner.buffer.load_state_dict(state['buffer'])
    owner.reward_model.load_state_dict(state['reward_model'])
    owner.reward_model.version = int(state['reward_model_version'])
    owner.reward_trainer.load_state_dict(state['reward_trainer'])
    owner.entropy.stats.load_state_dict(state['entropy'])


def save_run_state(t: PebbleTrainer, path: Path) -> None:
    """Atomically write the whole run state to ``path``."""
    save_checkpoint(path, {
        'format': FORMAT,
        'config': to_mapping(t.config),
        'run': dataclasses.asdict(t.state),
        **learning_state_dict(t),
        'teacher': t.teacher.state_dict(),
        'budget': t.budget.state_dict(),
        'rng': {
            'python': random.getstate(),
            'numpy_global': _numpy_global_state(),
            'torch': torch.get_rng_state(),
            'run': t.rng.bit_generator.state,
            'sample_generator': t.sample_generator.get_state(),
            'env': t.env.unwrapped.np_random.bit_generator.state,
        },
    })


def load_run_state(t: PebbleTrainer, path: Path) -> None:
    """Restore a checkpoint written by :func:`save_run_state` into ``t``.

    Raises:
        CheckpointError: unreadable, of another format, or written for a different config.
    """
    state = load_checkpoint(path, map_location=t.agent.device)
    if state.get('format') != FORMAT:
        raise CheckpointError(f'{path}: checkpoint format {state.get("format")!r}, '
                              f'this version reads {FORMAT}')
    if state.get('config') != to_mapping(t.config):
        raise CheckpointError(f'{path}: written for a different config; resume with the '
                              "run's own config.yaml")
    try:
        t.state = RunState(**state['run'])
        load_learning_state(t, state)
        t.teacher.load_state_dict(state['teacher'])
        t.budget.load_state_dict(state['budget'])
        _restore_rngs(t, state['rng'])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f'{path}: incomplete or inconsistent checkpoint: {err}') from err


def _numpy_global_state() -> dict[str, Any]:
    state = np.random.get_state(legacy=False)
    state['state']['key'] = state['state']['key'].tolist()  # plain data: no numpy in pickles
    return state


def _restore_rngs(t: PebbleTrainer, rng: dict[str, Any]) -> None:
    python = rng['python']
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_global = rng['numpy_global']
    numpy_global['state']['key'] = np.asarray(numpy_global['state']['key'], dtype=np.uint32)
    np.random.set_state(numpy_global)
    torch.set_rng_state(rng['torch'])
    t.rng.bit_generator.state = rng['run']
    t.sample_generator.set_state(rng['sample_generator'])
    env_rng = np.random.Generator(np.random.PCG64())
    env_rng.bit_generator.state = rng['env']
    t.env.unwrapped.np_random = env_rng
