"""Task registry: names -> :class:`TaskSpec` and ``make_task``, plus the goal-set contract.

Every task is a gymnasium env with a flat float32 observation, float32 actions in [-1, 1],
``info['success']`` on every step and episodes truncated at ``TaskSpec.episode_length``. The
goal-conditioned tasks hold two disjoint goal sets: ``goals='train'`` draws the goal of each
episode from the training set, ``goals='eval'`` from the held-out set (the few-shot
preference-learning protocol, https://arxiv.org/abs/2212.03363: pretrain on training goals,
adapt and evaluate on held-out ones). ``reset(options={'goal_index': i})`` picks goal ``i`` of
the current set, so an evaluation can visit every held-out goal. The env exposes
``env.unwrapped.goal`` (the current goal) and ``env.unwrapped.goal_set`` (the current set).

The env modules are imported on first use: the point mass never pays for MuJoCo or
MetaWorld, and MetaWorld is imported only when a MetaWorld env is made. This module also holds
what every task shares (typed errors, argument and action checks), so that the env modules
import it and not each other.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from pref_rl_learner.errors import PrefRLError

GOAL_SETS = ('train', 'eval')
"""Valid values of ``make_task(goals=...)``."""


class TaskError(PrefRLError):
    """Base class of the errors the tasks raise on bad input."""


class UnknownTaskError(TaskError, ValueError):
    """``make_task``/``task_spec`` was given a name that is not a task; the message lists them."""


class TaskArgumentError(TaskError, ValueError):
    """A bad ``goals``, ``render_size``, ``seed`` or reset option (e.g. ``goal_index``)."""


class InvalidActionError(TaskError, ValueError):
    """An action has the wrong shape or a non-finite (NaN/inf) component."""


class EpisodeStateError(TaskError, RuntimeError):
    """``step`` was called before ``reset`` or after the episode was truncated."""


@dataclass(frozen=True)
class TaskSpec:
    """What a learner needs to know about a task before making it."""

    name: str
    """Registry name, e.g. ``'point_mass'``, ``'reacher'``, ``'button-press-v3'``."""
    episode_length: int
    """Steps before the episode is truncated."""
    segment_length: int
    """Steps per preference segment: 10 for point mass/reacher, 25 for MetaWorld (few-shot)."""
    observation_shape: tuple[int, ...]
    """Shape of the flat float32 observation (the goal is part of it)."""
    action_dim: int
    """Size of the float32 action vector, each component in [-1, 1]."""
    num_train_goals: int
    """Size of the training goal set (``goals='train'``)."""
    num_eval_goals: int
    """Size of the held-out goal set (``goals='eval'``), disjoint from the training set."""


# name -> module that defines it. Each module has ``spec(name) -> TaskSpec`` and
# ``make(name, *, goals, seed, render_size) -> gymnasium.Env``.
_POINT_MASS = 'pref_rl_robot.tasks.point_mass'
_REACHER = 'pref_rl_robot.tasks.reacher'
_METAWORLD = 'pref_rl_robot.tasks.metaworld_tasks'
_PANDA = 'pref_rl_robot.tasks.panda_tasks'
_PANDA_TASKS = ('panda_reach', 'panda_push')


def _module_for(name: str) -> Any:
    if not isinstance(name, str):
        raise UnknownTaskError(f'task name must be a str, got {type(name).__name__} {name!r}')
    if name == 'point_mass':
        return importlib.import_module(_POINT_MASS)
    if name == 'reacher':
        return importlib.import_module(_REACHER)
    if name in _PANDA_TASKS:
        return importlib.import_module(_PANDA)
    metaworld_tasks = importlib.import_module(_METAWORLD)
    if name in metaworld_tasks.METAWORLD_TASKS:
        return metaworld_tasks
    raise UnknownTaskError(f'unknown task {name!r}; valid tasks: {", ".join(task_names())}')


def task_names() -> tuple[str, ...]:
    """Every task ``make_task`` accepts: point mass, reacher, the MetaWorld v3 tasks, then the
    Franka Panda tasks (PyBullet)."""
    metaworld_tasks = importlib.import_module(_METAWORLD)
    return ('point_mass', 'reacher', *metaworld_tasks.METAWORLD_TASKS, *_PANDA_TASKS)


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name`` (cheap: builds no env, never imports MetaWorld).

    Raises:
        UnknownTaskError: ``name`` is not in :func:`task_names`.
    """
    return _module_for(name).spec(name)


def make_task(name: str, *, goals: str = 'train', seed: int | None = None,
              render_size: int = 64) -> gymnasium.Env:
    """Make task ``name`` with ``render_mode='rgb_array'``.

    Args:
        name: one of :func:`task_names`.
        goals: ``'train'`` (training goals) or ``'eval'`` (held-out goals).
        seed: seeds the env's generator (goal draws, initial states) and its action space;
            ``reset(seed=...)`` reseeds as usual in gymnasium.
        render_size: side of the square ``uint8 [S, S, 3]`` frames ``render()`` returns.

    Raises:
        UnknownTaskError: unknown ``name``.
        TaskArgumentError: ``goals``, ``seed`` or ``render_size`` is invalid.
    """
    module = _module_for(name)
    check_make_arguments(goals, seed, render_size)
    return module.make(name, goals=goals, seed=None if seed is None else int(seed),
                       render_size=int(render_size))


# --- What every task shares ----------------------------------------------------------------


def check_make_arguments(goals: str, seed: Any, render_size: Any) -> None:
    """Check ``make_task``'s ``goals``, ``seed`` and ``render_size`` arguments.

    Raises:
        TaskArgumentError: naming the first bad argument.
    """
    check_goals(goals)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise TaskArgumentError(f'seed must be a non-negative int or None, got {seed!r}')
    if (isinstance(render_size, bool) or not isinstance(render_size, (int, np.integer))
            or not 8 <= render_size <= 1024):
        raise TaskArgumentError(f'render_size must be an int in [8, 1024], got {render_size!r}')


def check_goals(goals: str) -> str:
    """Return ``goals`` if it names a goal set, else raise :class:`TaskArgumentError`."""
    if goals not in GOAL_SETS:
        raise TaskArgumentError(f"goals must be 'train' or 'eval', got {goals!r}")
    return goals


def requested_goal_index(options: Mapping[str, Any] | None, num_goals: int) -> int | None:
    """The ``goal_index`` reset option, checked against ``num_goals``; None when not given.

    Raises:
        TaskArgumentError: an option other than ``goal_index``, or an index that is not an int
            in ``[0, num_goals)``.
    """
    if not options:
        return None
    unknown = sorted(set(options) - {'goal_index'})
    if unknown:
        raise TaskArgumentError(f'unknown reset option(s) {", ".join(map(repr, unknown))} '
                                f"(valid: 'goal_index')")
    index = options['goal_index']
    if index is None:
        return None
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TaskArgumentError(f'goal_index must be an int, got {type(index).__name__} '
                                f'{index!r}')
    if not 0 <= index < num_goals:
        raise TaskArgumentError(f'goal_index {index} out of range: the goal set has '
                                f'{num_goals} goals (0..{num_goals - 1})')
    return int(index)


def checked_action(action: Any, action_dim: int) -> np.ndarray:
    """``action`` as a float64 vector clipped to [-1, 1], after checking shape and finiteness.

    Raises:
        InvalidActionError: not numeric, shape other than ``(action_dim,)``, or NaN/inf.
    """
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidActionError(f'action must be numeric, got {action!r}') from error
    if arr.shape != (action_dim,):
        raise InvalidActionError(f'action must have shape ({action_dim},), got {arr.shape}')
    # Python scalars: for a handful of entries this is several times faster than numpy calls.
    values = arr.tolist()
    if not all(map(math.isfinite, values)):
        raise InvalidActionError(f'action must be finite, got {values}')
    return np.array([min(1.0, max(-1.0, v)) for v in values])


def frozen(array: Any, dtype: type = np.float32) -> np.ndarray:
    """A read-only copy of ``array`` (goal sets are constants callers must not edit)."""
    out = np.array(array, dtype=dtype)
    out.flags.writeable = False
    return out


def default_to_offscreen_gl() -> None:
    """Without a display and without ``MUJOCO_GL``, render MuJoCo through OSMesa.

    ``scripts/env.sh`` sets ``MUJOCO_GL=osmesa``; this gives a process started without it the
    same headless default instead of GLFW's failure to open a window. It must run before the
    first MuJoCo frame (gymnasium picks the backend when it creates its renderer).
    """
    if 'MUJOCO_GL' in os.environ or os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'):
        return
    os.environ['MUJOCO_GL'] = 'osmesa'
    os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
