"""SAC experts for collection: an actor read from a checkpoint acts as a task's expert.

The few-shot paper used SAC experts trained on the true reward for block push. Scripted
experts are task knowledge and live with the tasks (the task suite's ``scripted_expert``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pref_rl_learner.fewshot.rollout import CollectError, Policy


def load_sac_expert(path: str | Path, observation_dim: int, action_dim: int) -> Policy:
    """The deterministic (mean) action of a SAC actor saved in checkpoint ``path``.

    Accepts a ``pref-rl train`` run checkpoint (``checkpoint.pt``: the agent's actor, its
    ``log_std_bounds`` from the run config) or a checkpoint holding ``architecture`` (JSON)
    and ``actor`` (named tensors), as ``SAC.actor_state()`` exports them.

    Raises:
        CollectError: the file is missing, holds no actor, or the actor's observation or
            action size differs from the task's.
        CheckpointError: the checkpoint is truncated or corrupt.
    """
    from pref_rl_learner.checkpoint import load_checkpoint
    from pref_rl_learner.errors import InvalidWeightsError
    from pref_rl_learner.sac.agent import SACConfig
    from pref_rl_learner.sac.networks import ActorPolicy

    path = Path(path)
    if not path.is_file():
        raise CollectError(f'{path}: no SAC expert checkpoint there')
    state = load_checkpoint(path)
    if 'architecture' in state and 'actor' in state:
        architecture, tensors = state['architecture'], state['actor']
    elif isinstance(_run_agent(state), dict) and 'actor' in _run_agent(state):
        agent = _run_agent(state)
        sac = (state.get('config') or {}).get('sac') or {}
        bounds = list(sac.get('log_std_bounds', SACConfig().log_std_bounds))
        architecture = json.dumps({
            'type': 'tanh_gaussian_mlp', 'observation_dim': int(agent['observation_dim']),
            'action_dim': int(agent['action_dim']),
            'hidden_sizes': [int(h) for h in agent['hidden_sizes']],
            'log_std_bounds': bounds, 'activation': 'relu'})
        tensors = agent['actor']
    else:
        raise CollectError(f'{path}: holds no SAC actor (neither a pref-rl train checkpoint '
                           'nor architecture + actor)')
    try:
        policy = ActorPolicy.from_state(architecture, tensors)
    except InvalidWeightsError as err:
        raise CollectError(f'{path}: {err}') from err
    actor = policy.actor
    if (actor.observation_dim, actor.action_dim) != (observation_dim, action_dim):
        raise CollectError(f'{path}: actor for observations of {actor.observation_dim} and '
                           f'actions of {actor.action_dim}, the task has {observation_dim} '
                           f'and {action_dim}')
    act: Callable[[np.ndarray], np.ndarray] = policy.act
    return lambda observation: act(observation, True)


def sac_expert_path(experts: str | Path, split: str, goal_index: int) -> Path:
    """The checkpoint of the expert for goal ``goal_index`` of ``split``: ``experts`` itself
    when it is a file (one goal-conditioned expert for every goal), else
    ``experts/<split>_goal<NN>.pt`` (one expert per goal)."""
    experts = Path(experts)
    return experts if experts.is_file() else experts / f'{split}_goal{goal_index:02d}.pt'


def _run_agent(state: dict) -> dict | None:
    """The SAC agent's state inside a ``pref-rl train`` checkpoint (format 2 keeps it under
    ``learning``; format 1 at the top)."""
    learning = state.get('learning')
    if isinstance(learning, dict) and isinstance(learning.get('agent'), dict):
        return learning['agent']
    return state.get('agent')
