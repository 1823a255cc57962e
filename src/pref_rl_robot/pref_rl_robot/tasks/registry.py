"""Task registry: names -> :class:`TaskSpec` and ``make_task``, plus the target contract.

Every task is a gymnasium env with a flat float32 observation, float32 actions in [-1, 1],
``info['success']`` on every step and episodes truncated at ``TaskSpec.episode_length``.

**A task has one target, and the learner cannot see it** (the few-shot preference-learning
protocol, https://arxiv.org/abs/2212.03363). The target is what the person wants; the
preferences teach it. ``make_task(name, goal=...)`` fixes it for the env's life: ``'train:i'``
or ``'eval:i'`` (goal ``i`` of the task's training or held-out set: pretraining covers the
training targets, a run learns a held-out one) or explicit coordinates (a sequence, or a string
``'x,y[,z]'``, which the real arm needs). The observation excludes the target and everything
computed from it; the true reward, ``info['success']`` and the rendered frames use it, so
scripted teachers, evaluation and a person at the GUI can. ``env.unwrapped.target`` is the
:class:`Target`. :func:`goal_set` gives a set's coordinates (for data collection).

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

# The contract's: the default target, and the person's own (Polymetis backend only).
from pref_rl_learner.pebble.tasks import DEFAULT_GOAL, PERSON_GOAL

GOAL_SETS = ('train', 'eval')
"""The two goal sets a target index refers to (``'train:i'``, ``'eval:i'``)."""


class TaskError(PrefRLError):
    """Base class of the errors the tasks raise on bad input."""


class UnknownTaskError(TaskError, ValueError):
    """``make_task``/``task_spec`` was given a name that is not a task; the message lists them."""


class TaskArgumentError(TaskError, ValueError):
    """A bad ``goal``, ``render_size``, ``seed`` or reset option."""


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
    """Shape of the flat float32 observation (it never holds the target)."""
    action_dim: int
    """Size of the float32 action vector, each component in [-1, 1]."""
    num_train_goals: int
    """Size of the training goal set (``goal='train:i'``)."""
    num_eval_goals: int
    """Size of the held-out goal set (``goal='eval:i'``), disjoint from the training set."""
    goal_dim: int = 0
    """Coordinates of an explicit target (``goal=(x, y[, z])``); 0: indices only (MetaWorld's
    variations)."""


@dataclass(frozen=True, eq=False)
class Target:
    """The one target of a task's env."""

    name: str
    """``'train:i'``, ``'eval:i'`` or ``'custom'`` (explicit coordinates)."""
    position: np.ndarray
    """The target's coordinates (MetaWorld: the variation's ``rand_vec``), read-only float32."""
    split: str | None = None
    """``'train'`` or ``'eval'`` for an indexed target, None for explicit coordinates."""
    index: int | None = None
    """Index in the split's goal set, None for explicit coordinates."""

    def describe(self) -> str:
        """``'eval:3 at (0.80, 0.60)'``: the name and, where short, the coordinates."""
        if len(self.position) > 3:
            return self.name
        return f'{self.name} at ({", ".join(f"{v:.2f}" for v in self.position.tolist())})'


# name -> module that defines it. Each module has ``spec(name) -> TaskSpec``,
# ``goal_set(name, split) -> array`` and ``make(name, *, target, seed, render_size) -> Env``.
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


def goal_set(name: str, split: str) -> np.ndarray:
    """Coordinates of task ``name``'s training (``'train'``) or held-out (``'eval'``) targets,
    ``float32 [num_goals, goal_dim]`` (MetaWorld: the variations' ``rand_vec``), read-only.

    Raises:
        UnknownTaskError: unknown ``name``.
        TaskArgumentError: ``split`` is not ``'train'`` or ``'eval'``.
    """
    module = _module_for(name)
    if split not in GOAL_SETS:
        raise TaskArgumentError(f"goal set must be 'train' or 'eval', got {split!r}")
    return module.goal_set(name, split)


def make_task(name: str, *, goal: Any = DEFAULT_GOAL, seed: int | None = None,
              render_size: int = 64) -> gymnasium.Env:
    """Make task ``name`` with ``render_mode='rgb_array'``, aimed at one target.

    Args:
        name: one of :func:`task_names`.
        goal: the target: ``'train:i'`` / ``'eval:i'`` (goal ``i`` of the training or held-out
            set), or explicit coordinates (a sequence of ``TaskSpec.goal_dim`` numbers, or
            the string ``'x,y[,z]'``). The observation never shows it.
        seed: seeds the env's generator (initial states) and its action space;
            ``reset(seed=...)`` reseeds as usual in gymnasium.
        render_size: side of the square ``uint8 [S, S, 3]`` frames ``render()`` returns.

    Raises:
        UnknownTaskError: unknown ``name``.
        TaskArgumentError: ``goal``, ``seed`` or ``render_size`` is invalid.
    """
    module = _module_for(name)
    check_make_arguments(seed, render_size)
    target = resolve_target(name, goal)
    return module.make(name, target=target, seed=None if seed is None else int(seed),
                       render_size=int(render_size))


def resolve_target(name: str, goal: Any) -> Target:
    """The :class:`Target` ``goal`` names for task ``name`` (see :func:`make_task`).

    Raises:
        UnknownTaskError: unknown ``name``.
        TaskArgumentError: ``goal`` is malformed, out of range, or coordinates where the task
            takes indices only.
    """
    spec = task_spec(name)
    if isinstance(goal, str) and goal.strip() == PERSON_GOAL:
        raise TaskArgumentError(f"goal {PERSON_GOAL!r} (the person's own target) is only for a "
                                'real arm; a simulated task needs its target')
    split, index, coordinates = parse_goal(goal)
    if split is not None:
        size = spec.num_train_goals if split == 'train' else spec.num_eval_goals
        if not 0 <= index < size:
            raise TaskArgumentError(f'goal {split}:{index} out of range: {name} has {size} '
                                    f'{split} targets ({split}:0..{split}:{size - 1})')
        return Target(f'{split}:{index}', goal_set(name, split)[index], split, index)
    if spec.goal_dim == 0:
        raise TaskArgumentError(f"{name} takes its target as 'train:i' or 'eval:i' only, got "
                                f'coordinates {coordinates}')
    if len(coordinates) != spec.goal_dim:
        raise TaskArgumentError(f'{name} targets have {spec.goal_dim} coordinates, got '
                                f'{len(coordinates)}: {coordinates}')
    return Target('custom', frozen(coordinates))


def parse_goal(goal: Any) -> tuple[str | None, int | None, list[float] | None]:
    """``(split, index, None)`` for ``'train:i'``/``'eval:i'``, ``(None, None, coordinates)``
    for explicit ones (a sequence or ``'x,y[,z]'``).

    Raises:
        TaskArgumentError: anything else, or non-finite coordinates.
    """
    if isinstance(goal, str):
        text = goal.strip()
        split, colon, rest = text.partition(':')
        if colon:
            if split not in GOAL_SETS or not rest.strip().isdigit():
                raise TaskArgumentError(f"goal must be 'train:<i>', 'eval:<i>' or coordinates "
                                        f"'x,y[,z]', got {goal!r}")
            return split, int(rest), None
        try:
            values = [float(part) for part in text.split(',')]
        except ValueError:
            raise TaskArgumentError(f"goal must be 'train:<i>', 'eval:<i>' or coordinates "
                                    f"'x,y[,z]', got {goal!r}") from None
    else:
        try:
            values = [float(v) for v in np.asarray(goal, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError):
            raise TaskArgumentError(f"goal must be 'train:<i>', 'eval:<i>' or a sequence of "
                                    f'coordinates, got {goal!r}') from None
        if np.ndim(goal) != 1:
            raise TaskArgumentError(f'goal coordinates must be a flat sequence, got {goal!r}')
    if not values or not all(map(math.isfinite, values)):
        raise TaskArgumentError(f'goal coordinates must be finite numbers, got {goal!r}')
    return None, None, values


# --- What every task shares ----------------------------------------------------------------


def check_make_arguments(seed: Any, render_size: Any) -> None:
    """Check ``make_task``'s ``seed`` and ``render_size`` arguments.

    Raises:
        TaskArgumentError: naming the first bad argument.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise TaskArgumentError(f'seed must be a non-negative int or None, got {seed!r}')
    if (isinstance(render_size, bool) or not isinstance(render_size, (int, np.integer))
            or not 8 <= render_size <= 1024):
        raise TaskArgumentError(f'render_size must be an int in [8, 1024], got {render_size!r}')


def check_reset_options(options: Mapping[str, Any] | None) -> None:
    """The tasks take no reset options (the target is fixed when the env is made).

    Raises:
        TaskArgumentError: any option, named.
    """
    if options:
        names = ', '.join(map(repr, sorted(options)))
        raise TaskArgumentError(f"unknown reset option(s) {names}: a task's target is fixed "
                                'when it is made (make_task(goal=...))')


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
