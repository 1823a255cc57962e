"""Counters of a ``pref-rl train`` run and the process-wide generators it checkpoints.

A run checkpoint (:meth:`PebbleTrainer.state_dict`) holds the learning component's state
(networks and optimisers, replay buffer, reward ensemble and trainer, budget), the teacher's,
these counters and every random generator (Python, NumPy, torch, the env's). Taken only at
episode boundaries, so no simulator state has to be captured. The preference store is not
inside: it is durable on its own and is reopened.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

FORMAT = 2
"""Version of the run checkpoint layout (2: the learning component's state in one entry)."""


@dataclass
class RunState:
    """Counters of a run (mutable; saved as plain data)."""

    step: int = 0
    episode: int = 0
    episode_return: float = 0.0
    episode_length: int = 0
    episode_success: bool = False
    last_eval_step: int = -1
    last_eval_success: float = math.nan
    last_eval_return: float = math.nan
    last_checkpoint_step: int = 0


def _numpy_global_state() -> dict[str, Any]:
    state = np.random.get_state(legacy=False)
    state['state']['key'] = state['state']['key'].tolist()  # plain data: no numpy in pickles
    return state


def global_rng_state() -> dict[str, Any]:
    """The process-wide generators (Python, NumPy's global, torch's) as plain data."""
    return {'python': random.getstate(), 'numpy_global': _numpy_global_state(),
            'torch': torch.get_rng_state()}


def set_global_rng_state(rng: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned."""
    python = rng['python']
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_global = dict(rng['numpy_global'])
    numpy_global['state'] = dict(numpy_global['state'])
    numpy_global['state']['key'] = np.asarray(numpy_global['state']['key'], dtype=np.uint32)
    np.random.set_state(numpy_global)
    torch.set_rng_state(rng['torch'])
