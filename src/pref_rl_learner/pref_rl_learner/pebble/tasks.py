"""The task contract the learner needs, and how it finds the suite that fulfils it.

The tasks live in a package that depends on this one (``pref_rl_robot``, which uses its types
and errors), so this package never imports it. Instead a task suite announces itself as the
entry point ``default`` of group ``pref_rl.task_suites`` (in its ``setup.py``), naming an
object (usually a module) with the functions of :class:`TaskSuite`. Task knowledge (the
envs, their observation layouts, scripted experts, MetaWorld task lists) lives there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from pref_rl_learner.errors import PrefRLError

ENTRY_POINT_GROUP = 'pref_rl.task_suites'
"""Entry-point group a task suite registers in."""
DEFAULT_SUITE = 'default'
"""Name of the suite's entry point."""

Policy = Callable[[np.ndarray], np.ndarray]

DEFAULT_GOAL = 'eval:0'
"""The target of a task, a run, a robot and a session when none is named: the first held-out
one (what a run learns from preferences; pretraining names its training targets)."""
PERSON_GOAL = 'person'
"""The target of a real arm's session: in the labelling person's head, given to nobody (no
true reward, no success, no evaluation). Task suites take it on real arms only."""


class TaskSuite(Protocol):
    """What ``pref-rl train``, ``collect`` and the learner ask of the tasks."""

    def make_task(self, name: str, goal: Any = DEFAULT_GOAL, seed: int | None = None,
                  **kwargs: Any) -> Any:
        """A gymnasium env of task ``name`` aimed at one hidden target (``goal``:
        ``'train:i'``, ``'eval:i'`` or coordinates)."""

    def task_spec(self, name: str) -> Any:
        """Shapes, segment length, goal counts of ``name`` without building it."""

    def task_names(self) -> Sequence[str]:
        """Every registered task."""

    def goal_set(self, name: str, split: str) -> np.ndarray:
        """Coordinates of the training (``'train'``) or held-out (``'eval'``) targets."""

    def resolve_target(self, name: str, goal: Any) -> Any:
        """The target ``goal`` names (``.name``, ``.position``, ``.describe()``), checked."""

    def scripted_expert(self, family: str, goal: Sequence[float]) -> Policy:
        """The scripted controller of goal task ``family`` aimed at coordinates ``goal``."""

    def metaworld_training_envs(self) -> tuple[str, ...]:
        """MetaWorld environments of the pretraining set (ML10 train)."""

    def metaworld_check_envs(self, envs: Sequence[str],
                             held_out_only: bool = False) -> tuple[str, ...]:
        """``envs`` (default: the training set) after refusing evaluation (unless the
        dataset holds held-out variations only) and unknown ones."""

    def metaworld_behaviours(self, env_name: str, split: str, variation: int, env: Any,
                             **kwargs: Any) -> list[Any]:
        """The episodes' behaviours of one MetaWorld pretraining task."""


_suite: TaskSuite | None = None


def task_suite() -> TaskSuite:
    """The installed task suite (loaded once).

    Raises:
        PrefRLError: no suite is installed (the ``pref_rl_robot`` package provides one).
    """
    global _suite
    if _suite is None:
        found = entry_points(group=ENTRY_POINT_GROUP).select(name=DEFAULT_SUITE)
        if not found:
            raise PrefRLError('no task suite is installed (entry point '
                              f'{ENTRY_POINT_GROUP}:{DEFAULT_SUITE}): build the whole '
                              'workspace (scripts/bootstrap) and source install/setup.bash')
        _suite = next(iter(found)).load()
    return _suite
