"""The seam every Franka Panda backend implements (PyBullet simulation, Polymetis robot).

A backend senses (end-effector and block positions, time, camera frames) and moves the arm.
Its motion methods (:meth:`PandaBackend.move_ee`, :meth:`~PandaBackend.hold`,
:meth:`~PandaBackend.move_gripper`, :meth:`~PandaBackend.home`) take a :class:`CommandToken`
as first argument and refuse any other: the token is created by the one
:class:`~pref_rl_robot.panda.safety.SafetyEnvelope` that guards the backend and is never handed
out, so a command reaches the arm only after the envelope checked it. Subclasses implement the
private ``_move_ee``/``_hold``/``_move_gripper``/``_home`` hooks, which nothing else calls.

Frame: the robot base frame of Polymetis (x forward, z up, metres), with the table top at
z = 0. The end effector is the point between the fingertips, pointing down.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pref_rl_robot.panda.errors import UnguardedCommandError


class Clock(Protocol):
    """Time source of a backend: wall-clock on a robot, simulated in tests."""

    def now(self) -> float:
        """Seconds since an arbitrary origin, monotonic."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""


class WallClock:
    """:class:`Clock` on ``time.monotonic`` / ``time.sleep``."""

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)`` (nothing for ``seconds <= 0``)."""
        if seconds > 0:
            time.sleep(seconds)


class CommandToken:
    """Capability of one safety envelope to move one backend (opaque; identity matters)."""

    __slots__ = ('owner',)

    def __init__(self, owner: object) -> None:
        self.owner = owner

    def __repr__(self) -> str:
        return f'CommandToken(owner={type(self.owner).__name__})'


@dataclass(frozen=True)
class CommandResult:
    """What a backend reports back for one end-effector command."""

    ik_failed: bool = False
    """The backend could not find joint angles for the target and ignored the command."""


class PandaBackend(ABC):
    """A Franka Panda, simulated or real; see the module docstring for the command guard."""

    realtime: bool = False
    """True when time passes on its own (a real robot): the env then runs a watchdog thread."""
    control_period_s: float = 0.1
    """Seconds between two env steps (the arm gets one end-effector target per period)."""

    def __init__(self) -> None:
        self._token: CommandToken | None = None

    # --- Guard ---------------------------------------------------------------------------

    def attach(self, token: CommandToken) -> None:
        """Accept commands carrying ``token`` from now on; only the first call succeeds.

        Raises:
            UnguardedCommandError: the backend is already guarded by an envelope.
        """
        if self._token is not None:
            raise UnguardedCommandError(f'{type(self).__name__} is already guarded by a '
                                        f'safety envelope; a second one cannot attach')
        self._token = token

    def _check(self, token: object, what: str) -> None:
        if self._token is None or token is not self._token:
            raise UnguardedCommandError(
                f'{type(self).__name__}.{what} refused: motion commands are accepted only '
                f'through the SafetyEnvelope guarding this backend')

    # --- Motion: only through the envelope -------------------------------------------------

    def move_ee(self, token: CommandToken, target: np.ndarray, duration: float) -> CommandResult:
        """Make ``target`` (``float64 [3]``, already checked) the desired end-effector position,
        to be reached within ``duration`` seconds; returns without waiting."""
        self._check(token, 'move_ee')
        return self._move_ee(target, duration)

    def hold(self, token: CommandToken) -> np.ndarray:
        """Make the current end-effector position the desired one; returns that position."""
        self._check(token, 'hold')
        return self._hold()

    def move_gripper(self, token: CommandToken, width: float) -> None:
        """Open or close the gripper to ``width`` metres (already checked)."""
        self._check(token, 'move_gripper')
        self._move_gripper(width)

    def home(self, token: CommandToken, ee_position: np.ndarray, max_step_m: float) -> None:
        """Bring the arm to its start pose with the end effector at ``ee_position`` (checked),
        moving at most ``max_step_m`` per control period where it moves physically."""
        self._check(token, 'home')
        self._home(ee_position, max_step_m)

    @abstractmethod
    def _move_ee(self, target: np.ndarray, duration: float) -> CommandResult: ...

    @abstractmethod
    def _hold(self) -> np.ndarray: ...

    @abstractmethod
    def _move_gripper(self, width: float) -> None: ...

    @abstractmethod
    def _home(self, ee_position: np.ndarray, max_step_m: float) -> None: ...

    # --- Scene and sensing -------------------------------------------------------------------

    @abstractmethod
    def now(self) -> float:
        """Backend time in seconds (simulated time in simulation, the clock on a robot)."""

    @abstractmethod
    def advance(self, seconds: float) -> float:
        """Let about ``seconds`` pass (simulate or wait); returns the time that passed."""

    @abstractmethod
    def ee_position(self) -> np.ndarray:
        """End-effector position, ``float64 [3]``."""

    @abstractmethod
    def ee_velocity(self) -> np.ndarray:
        """End-effector linear velocity, ``float64 [3]``, m/s."""

    @abstractmethod
    def block_position(self) -> np.ndarray | None:
        """Block position ``float64 [3]``, or None when the scene has no block."""

    @abstractmethod
    def reset_scene(self, goal: np.ndarray | None, block_position: np.ndarray | None) -> None:
        """Show ``goal`` (``[3]`` or ``[2]`` on the table; None: a person's target, nothing
        to show) and, where the backend can, put the block at ``block_position``; moves no
        arm."""

    @abstractmethod
    def render(self, size: int) -> np.ndarray:
        """A camera or schematic frame, ``uint8 [size, size, 3]``."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the simulator or the connections."""
