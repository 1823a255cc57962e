"""Franka Panda backends (PyBullet, Polymetis) behind one env and one safety envelope.

* :mod:`.safety`: :class:`SafetyConfig`, :class:`SafetyEnvelope` (workspace box, step and
  velocity limits, NaN/shape rejection, watchdog, e-stop, intervention counts).
* :mod:`.backend`: the :class:`PandaBackend` seam; its motion methods accept only the token of
  the envelope guarding it.
* :mod:`.pybullet_backend`, :mod:`.polymetis_backend`: the two backends (imported on use).
* :mod:`.env`: :class:`PandaEnv`, the gymnasium env; :mod:`.task`: :class:`PandaTask`.

Make tasks with ``pref_rl_robot.tasks.make_task('panda_reach' | 'panda_push', ...)`` (PyBullet)
or :func:`pref_rl_robot.tasks.panda_tasks.make_panda_task` (either backend, safety settings).
"""

from pref_rl_robot.panda.backend import Clock, CommandResult, PandaBackend, WallClock
from pref_rl_robot.panda.env import PandaEnv
from pref_rl_robot.panda.errors import (
    EstopEngagedError,
    PandaConfigError,
    PolymetisUnavailableError,
    RefusedCommandError,
    SafetyConfigError,
    SafetyError,
    TrackerError,
    UnguardedCommandError,
)
from pref_rl_robot.panda.safety import (
    INTERVENTION_KINDS,
    CommandReport,
    Intervention,
    SafetyConfig,
    SafetyEnvelope,
    SafetyStats,
)
from pref_rl_robot.panda.task import PandaTask

__all__ = [
    'INTERVENTION_KINDS',
    'Clock',
    'CommandReport',
    'CommandResult',
    'EstopEngagedError',
    'Intervention',
    'PandaBackend',
    'PandaConfigError',
    'PandaEnv',
    'PandaTask',
    'PolymetisUnavailableError',
    'RefusedCommandError',
    'SafetyConfig',
    'SafetyConfigError',
    'SafetyEnvelope',
    'SafetyError',
    'SafetyStats',
    'TrackerError',
    'UnguardedCommandError',
    'WallClock',
]
