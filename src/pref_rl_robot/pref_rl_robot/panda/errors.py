"""Typed errors of the Franka Panda backends and their safety envelope."""

from __future__ import annotations

from pref_rl_learner.errors import PrefRLError
from pref_rl_robot.tasks.registry import InvalidActionError


class SafetyError(PrefRLError):
    """Base class of the errors the safety envelope raises."""


class EstopEngagedError(SafetyError, RuntimeError):
    """A motion command (step, reset, gripper) was refused because the e-stop is engaged.

    The arm holds position until :meth:`SafetyEnvelope.release_estop` is called.
    """


class RefusedCommandError(SafetyError, InvalidActionError):
    """A command was refused: wrong shape, not numeric, or a NaN/inf component.

    It is an :class:`InvalidActionError`, so ``env.step`` keeps the task contract.
    """


class UnguardedCommandError(SafetyError, RuntimeError):
    """A backend's motion method was called without the token of its safety envelope."""


class SafetyConfigError(SafetyError, ValueError):
    """A :class:`SafetyConfig` is invalid: a box looser than the Franka limits, limits <= 0."""


class PandaConfigError(PrefRLError, ValueError):
    """A Panda task cannot be built as configured (e.g. ``panda_push`` on the real robot
    without an object tracker, an unknown backend, a non-local Polymetis address)."""


class PolymetisUnavailableError(PrefRLError, ImportError):
    """The ``polymetis`` package is not importable (it is distributed through conda only)."""


class TrackerError(PrefRLError, RuntimeError):
    """The object tracker returned something other than a finite (x, y) or (x, y, z)."""
