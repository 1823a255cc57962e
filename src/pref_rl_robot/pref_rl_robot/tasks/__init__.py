"""Tasks for preference RL: goal-conditioned point mass and reacher, MetaWorld v3, Panda.

``make_task(name, goals='train'|'eval', seed=..., render_size=...)`` returns a gymnasium env;
``task_spec(name)`` describes it without building it. See :mod:`.registry` for the contract.
"""

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
    'task_names',
    'task_spec',
]
