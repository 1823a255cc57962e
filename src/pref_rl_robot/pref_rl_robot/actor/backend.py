"""The env an actor steps: which backend makes it, and the robot hooks some envs offer.

Backends:

- ``sim``: :func:`pref_rl_robot.tasks.make_task` (point mass, reacher, MetaWorld, the
  simulated Panda tasks);
- ``polymetis``: a real (or Polymetis-simulated) Franka Panda through
  :func:`pref_rl_robot.tasks.panda_tasks.make_panda_task`, imported only when asked for.

The Panda envs (:class:`pref_rl_robot.panda.PandaEnv`, either backend) expose on
``env.unwrapped`` their safety envelope ``safety`` (``engage_estop(reason)``,
``release_estop()``, ``estop_engaged``, ``interventions``, ``stats.watchdog_hold``) and
``hold()`` / ``idle(seconds)`` to keep the arm in place while no action comes. Other tasks
have none of these: :class:`RobotHooks` calls them where they exist and otherwise does nothing
(a simulation holds still by itself, and an e-stop there simply stops the stepping).
"""

from __future__ import annotations

import importlib

import gymnasium

from pref_rl_learner.config import ConfigError
from pref_rl_robot.tasks import DEFAULT_GOAL, make_task

BACKENDS = ('sim', 'polymetis')
"""Valid values of the ``backend`` parameter."""


def make_backend(backend: str, task: str, *, goal: str = DEFAULT_GOAL,
                 seed: int | None = None, render_size: int = 64) -> gymnasium.Env:
    """Make the env of ``task`` on ``backend`` (one of :data:`BACKENDS`), aimed at ``goal``
    (``'person'`` on a real arm: the target is in the person's head).

    Raises:
        ConfigError: unknown backend.
        pref_rl_robot.tasks.TaskError: unknown task or bad arguments (``sim``).
    """
    if backend == 'sim':
        return make_task(task, goal=goal, seed=seed, render_size=render_size)
    if backend == 'polymetis':
        panda_tasks = importlib.import_module('pref_rl_robot.tasks.panda_tasks')
        return panda_tasks.make_panda_task(task, backend='polymetis', goal=goal, seed=seed,
                                           render_size=render_size)
    raise ConfigError(f'unknown backend {backend!r} (valid: {", ".join(BACKENDS)})')


class RobotHooks:
    """The optional robot side of an env: e-stop, hold, idle and safety counters."""

    def __init__(self, env: gymnasium.Env) -> None:
        self._unwrapped = env.unwrapped
        self.safety = getattr(self._unwrapped, 'safety', None)
        """The env's safety envelope, or None (simulated tasks)."""
        self._estop = False

    @property
    def estop_engaged(self) -> bool:
        """True while the e-stop is engaged (by :meth:`engage_estop` or by the envelope)."""
        return self._estop or bool(getattr(self.safety, 'estop_engaged', False))

    def engage_estop(self, reason: str) -> None:
        """Engage the e-stop: the envelope refuses commands, the actor stops stepping."""
        self._estop = True
        if self.safety is not None and hasattr(self.safety, 'engage_estop'):
            self.safety.engage_estop(reason)

    def release_estop(self) -> None:
        """Release the e-stop (an explicit call is the only way out of it)."""
        if self.safety is not None and hasattr(self.safety, 'release_estop'):
            self.safety.release_estop()
        self._estop = False

    def hold(self) -> None:
        """Command the arm to hold its position (no-op for simulated tasks)."""
        hold = getattr(self._unwrapped, 'hold', None)
        if callable(hold):
            hold()

    def idle(self, seconds: float) -> None:
        """Keep holding for ``seconds`` (feeds the watchdog; no-op for simulated tasks)."""
        idle = getattr(self._unwrapped, 'idle', None)
        if callable(idle):
            idle(seconds)

    def go_home(self) -> bool:
        """Move to the home pose when the env can; True if it did."""
        go_home = getattr(self._unwrapped, 'go_home', None)
        if callable(go_home):
            go_home()
            return True
        return False

    def safety_counts(self) -> tuple[int, int]:
        """(all interventions, watchdog holds) of the safety envelope; (0, 0) without one."""
        if self.safety is None:
            return 0, 0
        interventions = getattr(self.safety, 'interventions', 0)
        holds = getattr(getattr(self.safety, 'stats', None), 'watchdog_hold', 0)
        return int(interventions), int(holds)
