"""Access to the task suite, which lives in ``pref_rl_robot.tasks``.

``pref_rl_robot`` depends on this package (types, errors), so the dependency back is looked
up at run time rather than declared, keeping the package graph acyclic.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pref_rl_learner.errors import PrefRLError


def task_module() -> ModuleType:
    """``pref_rl_robot.tasks`` (``make_task``, ``task_spec``, ``task_names``)."""
    try:
        return importlib.import_module('pref_rl_robot.tasks')
    except ModuleNotFoundError as err:
        raise PrefRLError('the task suite needs the pref_rl_robot package: build the whole '
                          'workspace (scripts/bootstrap) and source install/setup.bash') from err
