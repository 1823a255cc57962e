"""Tasks for preference RL: goal-conditioned point mass and reacher, MetaWorld v3, Panda.

``make_task(name, goals='train'|'eval', seed=..., render_size=...)`` returns a gymnasium env;
``task_spec(name)`` describes it without building it. See :mod:`.registry` for the contract.

This module is the task suite ``pref_rl_learner`` finds through the entry point
``pref_rl.task_suites: default`` (its ``TaskSuite`` protocol): the envs, the scripted experts
and the MetaWorld pretraining sets.
"""

from pref_rl_robot.tasks.experts import retarget, scripted_expert
from pref_rl_robot.tasks.metaworld_collect import check_envs as metaworld_check_envs
from pref_rl_robot.tasks.metaworld_collect import metaworld_behaviours
from pref_rl_robot.tasks.metaworld_collect import training_envs as metaworld_training_envs
from pref_rl_robot.tasks.registry import (
    EpisodeStateError,
    InvalidActionError,
    TaskArgumentError,
    TaskError,
    TaskSpec,
    UnknownTaskError,
    make_task,
    task_names,
    task_spec,
)

__all__ = [
    'EpisodeStateError',
    'InvalidActionError',
    'TaskArgumentError',
    'TaskError',
    'TaskSpec',
    'UnknownTaskError',
    'make_task',
    'metaworld_behaviours',
    'metaworld_check_envs',
    'metaworld_training_envs',
    'retarget',
    'scripted_expert',
    'task_names',
    'task_spec',
]
