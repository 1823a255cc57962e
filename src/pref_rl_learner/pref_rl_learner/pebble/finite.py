"""Finite-state checks and snapshots for rolling back an update that produced NaN or inf.

Finite but extreme data (or a learning rate that diverges) can drive a gradient step to
non-finite weights. Such a state must never be acted on, published or saved: the learning
component checks its state after updates and restores the last state known to be finite.
"""

from __future__ import annotations

from typing import Any

import torch


def _tensors(state: Any):
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for value in state.values():
            yield from _tensors(value)
    elif isinstance(state, (list, tuple)):
        for value in state:
            yield from _tensors(value)


def all_finite(state: Any) -> bool:
    """Whether every floating-point tensor in a (nested) state dict is finite (one host
    sync for the whole state)."""
    flags = [torch.isfinite(t).all() for t in _tensors(state) if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def clone_state(state: Any) -> Any:
    """A deep copy of a (nested) state dict whose tensors no later update can change."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: clone_state(value) for key, value in state.items()}
    if isinstance(state, list):
        return [clone_state(value) for value in state]
    if isinstance(state, tuple):
        return tuple(clone_state(value) for value in state)
    return state
