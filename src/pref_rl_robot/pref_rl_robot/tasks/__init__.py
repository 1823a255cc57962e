"""Tasks for preference RL: point mass and reacher, MetaWorld v3, Panda; each has one target
the learner cannot see.

``make_task(name, goal='eval:3', seed=..., render_size=...)`` returns a gymnasium env;
``task_spec(name)`` describes it without building it, ``goal_set(name, split)`` gives a
split's target coordinates. See :mod:`.registry` for the contract.

This module is the task suite ``pref_rl_learner`` finds through the entry point
``pref_rl.task_suites: default`` (its ``TaskSuite`` protocol): the envs, the scripted experts
and the MetaWorld pretraining sets.
"""

from pref_rl_robot.tasks.experts import scripted_expert
from pref_rl_robot.tasks.metaworld_collect import check_envs as metaworld_check_envs
from pref_rl_robot.tasks.metaworld_collect import metaworld_behaviours
from pref_rl_robot.tasks.metaworld_collect import training_envs as metaworld_training_envs
from pref_rl_robot.tasks.registry import (
    DEFAULT_GOAL,
    PERSON_GOAL,
    EpisodeStateError,
    InvalidActionError,
    Target,
    TaskArgumentError,
    TaskError,
    TaskSpec,
    UnknownTaskError,
    goal_set,
    make_task,
    resolve_target,
    task_names,
    task_spec,
)

__all__ = [
    'DEFAULT_GOAL',
    'PERSON_GOAL',
    'EpisodeStateError',
    'InvalidActionError',
    'TaskArgumentError',
    'TaskError',
    'Target',
    'TaskSpec',
    'UnknownTaskError',
    'goal_set',
    'make_task',
    'metaworld_behaviours',
    'metaworld_check_envs',
    'metaworld_training_envs',
    'resolve_target',
    'scripted_expert',
    'task_names',
    'task_spec',
]
