"""MetaWorld episodes for an ML10-style pretraining set (few-shot preference learning).

For one task (an environment and one of its variations) the episodes are, as in the paper's
data: the environment's scripted expert (``metaworld.policies``) with ε-noise (``expert``);
the expert of another training environment acting in this one (``cross_env``); this
environment's expert solving another variation (``within_env``); uniform random actions
(``random``). Rewards are always this task's own.

A scripted MetaWorld policy reads object and goal positions from the observation; the tasks
hide the goal (partial observability), so the experts act on the env's
``expert_observation`` (the goal filled in), while the dataset keeps what the learner sees.
The expert of variation ``j`` acting in variation ``i`` is this expert fed observations whose
object and goal positions are shifted by (reset observation of ``j``) - (reset observation
of ``i``): it does the task as if the objects and goal stood where variation ``j`` puts
them, while the hand and the reward are those of variation ``i``.

Evaluation environments (the few-shot paper's adaptation targets and ML10's test set) are
refused: a pretraining set never contains a task used for evaluation.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from pref_rl_learner.fewshot.rollout import Behaviour, CollectError, Policy

POSITION_INDICES = np.r_[4:7, 11:14, 22:25, 29:32, 36:39]
"""Entries of the 39-D MetaWorld observation holding object and goal positions (object 1,
object 2, the same one step earlier, goal)."""


def _tasks_module() -> Any:
    from pref_rl_robot.tasks import metaworld_tasks

    return metaworld_tasks


def training_envs() -> tuple[str, ...]:
    """The ML10 training environments (the default pretraining set)."""
    return tuple(_tasks_module().ML10_TRAIN)


def evaluation_envs() -> tuple[str, ...]:
    """Environments never collected: few-shot adaptation targets and ML10 test envs."""
    module = _tasks_module()
    return tuple(dict.fromkeys(module.FEW_SHOT_EVAL + module.ML10_TEST))


def check_envs(envs: Sequence[str], held_out_only: bool = False) -> tuple[str, ...]:
    """``envs`` (default: :func:`training_envs`) after refusing evaluation and unknown ones.

    ``held_out_only``: the dataset records held-out variations only (an evaluation set, which
    pretraining refuses), so evaluation environments are allowed.

    Raises:
        CollectError: an environment is an evaluation task (unless ``held_out_only``),
            unknown, or has no scripted expert.
    """
    envs = tuple(envs) or training_envs()
    module = _tasks_module()
    for name in envs:
        if name in evaluation_envs() and not held_out_only:
            raise CollectError(f'{name} is an evaluation task (adaptation target or ML10 test '
                               'env); a pretraining set must not contain it. Training envs: '
                               + ', '.join(training_envs()))
        if name not in module.METAWORLD_TASKS:
            raise CollectError(f'unknown MetaWorld env {name!r}; training envs: '
                               + ', '.join(training_envs()))
    if len(set(envs)) != len(envs):
        raise CollectError(f'envs listed twice: {list(envs)}')
    return envs


def scripted_policy(env_name: str) -> Policy:
    """MetaWorld's scripted expert of ``env_name`` (observation -> unclipped action)."""
    from metaworld.policies import ENV_POLICY_MAP

    if env_name not in ENV_POLICY_MAP:
        raise CollectError(f'MetaWorld has no scripted policy for {env_name!r}')
    get_action = ENV_POLICY_MAP[env_name]().get_action

    def policy(observation: np.ndarray) -> np.ndarray:
        # Policies warn on every step whose gain saturates; the action is clipped anyway.
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Constant.*too high')
            return get_action(observation)

    return policy


def shifted(policy: Policy, shift: np.ndarray) -> Policy:
    """``policy`` fed observations moved by ``shift`` (a 39-D offset)."""
    shift = np.asarray(shift, np.float32)
    return lambda observation: policy(observation + shift)


def metaworld_behaviours(env_name: str, split: str, goal_index: int, env: Any, *,
                         expert_episodes: int, cross_episodes: int, within_episodes: int,
                         random_episodes: int, epsilon: Sequence[float], noise_type: str,
                         rng: np.random.Generator) -> list[Behaviour]:
    """The episodes' behaviours for variation ``goal_index`` of ``split`` of ``env_name``
    (``env`` is that environment in that variation)."""
    def seeing_goal(policy: Policy) -> Policy:
        fill = env.unwrapped.expert_observation
        return lambda observation: policy(fill(observation))

    own = scripted_policy(env_name)
    behaviours = []
    for k in range(expert_episodes):
        behaviours.append(Behaviour('expert', seeing_goal(own), epsilon[k % len(epsilon)],
                                    noise_type))
    others = [name for name in training_envs() if name != env_name]
    for k in range(cross_episodes):
        other = others[int(rng.integers(len(others)))]
        behaviours.append(Behaviour('cross_env', seeing_goal(scripted_policy(other)),
                                    epsilon[k % len(epsilon)], noise_type))
    if within_episodes:
        variations = _tasks_module().NUM_VARIATIONS
        own_start = _reset_observation(env_name, split, goal_index)
        for k in range(within_episodes):
            j = int(rng.integers(variations - 1))
            j += j >= goal_index  # any variation but this one
            shift = np.zeros_like(own_start)
            shift[POSITION_INDICES] = (_reset_observation(env_name, split, j)
                                       - own_start)[POSITION_INDICES]
            behaviours.append(Behaviour('within_env', seeing_goal(shifted(own, shift)),
                                        epsilon[k % len(epsilon)], noise_type))
    behaviours += [Behaviour('random', None)] * random_episodes
    return behaviours


@functools.cache
def _reset_observation(env_name: str, split: str, goal_index: int) -> np.ndarray:
    """The reset observation of a variation as its expert sees it (goal filled in)."""
    from pref_rl_robot.tasks.registry import make_task

    env = make_task(env_name, goal=f'{split}:{goal_index}', render_size=8)
    try:
        observation, _ = env.reset()
        return env.unwrapped.expert_observation(observation)
    finally:
        env.close()
