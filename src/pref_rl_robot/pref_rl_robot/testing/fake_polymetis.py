"""A fake ``polymetis`` module: Polymetis' client API over a kinematic Panda stand-in.

It offers what :mod:`pref_rl_robot.panda.polymetis_backend` uses, with Polymetis' signatures
and torch tensors: ``RobotInterface(ip_address, port)`` with ``get_robot_state``,
``get_joint_positions``, ``get_ee_pose`` (position, quaternion xyzw), ``move_to_joint_positions``,
``go_home``, ``start_cartesian_impedance(Kx, Kxd)``, ``update_desired_ee_pose(position,
orientation)``, ``terminate_current_policy``; ``GripperInterface(ip_address, port)`` with
``goto``, ``grasp``, ``get_state``. The model:

* The end effector follows the desired position of a running Cartesian impedance controller
  to first order, ``x' = (x_d - x) / time_constant_s``, evaluated lazily on the clock (wall
  clock, or a :class:`SimulatedClock` that tests advance explicitly).
* IK fails (the call logs a warning and returns -1, as Polymetis does) for positions farther
  than ``reach_m`` from the shoulder (0, 0, 0.333) or below ``min_z_m``.
* ``update_desired_ee_pose`` without a running controller raises :class:`FakeRpcError`,
  like the real server; blocking moves (``go_home``) stop the controller and take
  ``time_to_go`` seconds of the clock. Joint angles are not modelled beyond the home pose.
* Test hooks: ``jam()`` freezes the arm, ``shove(offset)`` displaces it, and every call is
  recorded in ``calls``.

``with installed() as fake:`` puts the module in ``sys.modules['polymetis']`` and restores
what was there on exit; ``fake.robots`` / ``fake.grippers`` are the interfaces made since.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pref_rl_robot.panda.backend import WallClock

log = logging.getLogger('polymetis.fake')

HOME_JOINTS = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
"""Home pose of the fake (Polymetis' Franka rest pose), rad."""
HOME_EE_POSITION = (0.307, 0.0, 0.487)
"""End-effector position at the home pose, m."""
EE_DOWN_XYZW = (1.0, 0.0, 0.0, 0.0)
"""End-effector orientation at the home pose (pointing down)."""
SHOULDER = (0.0, 0.0, 0.333)
"""Centre of the reachable sphere, m."""


class FakeRpcError(RuntimeError):
    """What the fake raises where Polymetis raises ``grpc.RpcError``."""


class SimulatedClock:
    """A clock that moves only when told to (``sleep`` advances it at once); thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current simulated time, s."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` (nothing for ``seconds <= 0``)."""
        if seconds > 0:
            with self._lock:
                self._now += float(seconds)

    advance = sleep


@dataclass
class FakeWorld:
    """Settings and the interfaces made while the fake is installed."""

    clock: Any
    """Time source (``now()``, ``sleep(s)``) of the simulated arm."""
    time_constant_s: float = 0.05
    """First-order tracking time constant of the end effector, s."""
    reach_m: float = 0.8
    """IK fails beyond this distance from the shoulder, m."""
    min_z_m: float = -0.1
    """IK fails below this height, m."""
    home_time_s: float = 2.0
    """Duration of ``go_home`` when no ``time_to_go`` is given, s."""
    robots: list[RobotInterface] = field(default_factory=list)
    """Every ``RobotInterface`` made."""
    grippers: list[GripperInterface] = field(default_factory=list)
    """Every ``GripperInterface`` made."""


@dataclass(frozen=True)
class RobotState:
    """The subset of Polymetis' ``RobotState`` the fake reports."""

    timestamp_s: float
    joint_positions: list[float]
    joint_velocities: list[float]


@dataclass(frozen=True)
class GripperState:
    """The subset of Polymetis' ``GripperState`` the fake reports."""

    width: float
    is_grasped: bool
    is_moving: bool


class RobotInterface:
    """Polymetis' ``RobotInterface`` over the first-order arm; see the module docstring."""

    world: FakeWorld  # set on the classes the installed module exposes

    def __init__(self, ip_address: str = 'localhost', port: int = 50051,
                 time_to_go_default: float = 2.0, **_: Any) -> None:
        self.ip_address, self.port = ip_address, port
        self.hz = 1000
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        """(method, arguments) of every call, in order."""
        self.ik_failures = 0
        """``update_desired_ee_pose`` calls that returned -1."""
        self.policy: str | None = None
        """``'cartesian_impedance'`` while that controller runs, else None."""
        self.jammed = False
        """True: the arm does not move (``jam()``)."""
        self._lock = threading.RLock()
        self._position = np.array(HOME_EE_POSITION)
        self._desired = self._position.copy()
        self._joints = np.array(HOME_JOINTS)
        self._time = self.world.clock.now()
        self._updates = 0
        self.world.robots.append(self)

    # --- Polymetis API -----------------------------------------------------------------------

    def get_robot_state(self) -> RobotState:
        """Time, joint positions and velocities (velocities are zero)."""
        with self._lock:
            self._advance()
            return RobotState(self._time, self._joints.tolist(), [0.0] * 7)

    def get_joint_positions(self) -> torch.Tensor:
        """Joint angles, ``[7]``."""
        return torch.tensor(self.get_robot_state().joint_positions, dtype=torch.float32)

    def get_ee_pose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(position ``[3]``, quaternion xyzw ``[4]``)."""
        with self._lock:
            self._advance()
            return (torch.tensor(self._position, dtype=torch.float32),
                    torch.tensor(EE_DOWN_XYZW, dtype=torch.float32))

    def move_to_joint_positions(self, positions: Any, time_to_go: float | None = None,
                                delta: bool = False, **_: Any) -> list[RobotState]:
        """Blocking joint move: stops the controller, takes ``time_to_go`` of the clock. Only
        the home pose moves the modelled end effector (to ``HOME_EE_POSITION``)."""
        self._record('move_to_joint_positions', positions, time_to_go)
        joints = np.array(torch.as_tensor(positions).tolist(), dtype=np.float64)
        with self._lock:
            self._advance()
            self.policy = None
            if delta:
                joints = joints + self._joints
        self.world.clock.sleep(self.world.home_time_s if time_to_go is None else time_to_go)
        with self._lock:
            self._advance()
            self._joints = joints
            if np.allclose(joints, HOME_JOINTS, atol=1e-3) and not self.jammed:
                self._position = np.array(HOME_EE_POSITION)
            self._desired = self._position.copy()
        return []

    def go_home(self, *args: Any, **kwargs: Any) -> list[RobotState]:
        """``move_to_joint_positions(HOME_JOINTS)``."""
        self._record('go_home')
        return self.move_to_joint_positions(torch.tensor(HOME_JOINTS), *args, **kwargs)

    def start_cartesian_impedance(self, Kx: Any = None, Kxd: Any = None,  # noqa: N803
                                  **_: Any) -> list[RobotState]:
        """Start the Cartesian controller, desired pose = current pose (non-blocking)."""
        self._record('start_cartesian_impedance', Kx, Kxd)
        with self._lock:
            self._advance()
            self.policy = 'cartesian_impedance'
            self._desired = self._position.copy()
        return []

    def update_desired_ee_pose(self, position: Any = None, orientation: Any = None) -> int:
        """New desired pose; -1 (with a warning) when IK fails, as Polymetis does.

        Raises:
            FakeRpcError: no Cartesian controller is running.
        """
        self._record('update_desired_ee_pose', position, orientation)
        with self._lock:
            if self.policy != 'cartesian_impedance':
                raise FakeRpcError('no controller running: use start_cartesian_impedance')
            self._advance()
            target = (self._position.copy() if position is None
                      else np.array(torch.as_tensor(position).tolist(), dtype=np.float64))
            if not self._reachable(target):
                self.ik_failures += 1
                log.warning('Unable to find valid joint target. Skipping '
                            'update_desired_ee_pose command...')
                return -1
            self._desired = target
            self._updates += 1
            return self._updates

    def terminate_current_policy(self, return_log: bool = True,
                                 timeout: float | None = None) -> list[RobotState]:
        """Stop the running controller; the arm stays where it is."""
        self._record('terminate_current_policy')
        with self._lock:
            self._advance()
            self.policy = None
            self._desired = self._position.copy()
        return []

    # --- Test hooks ----------------------------------------------------------------------

    @property
    def desired_position(self) -> np.ndarray:
        """Desired end-effector position of the controller, m."""
        with self._lock:
            return self._desired.copy()

    @property
    def position(self) -> np.ndarray:
        """Current end-effector position, m."""
        with self._lock:
            self._advance()
            return self._position.copy()

    def jam(self, jammed: bool = True) -> None:
        """Freeze (or free) the arm: it stops following the desired position."""
        with self._lock:
            self._advance()
            self.jammed = jammed

    def shove(self, offset: Any) -> None:
        """Displace the end effector by ``offset`` (an external push), m."""
        with self._lock:
            self._advance()
            self._position = self._position + np.asarray(offset, dtype=np.float64)

    def calls_to(self, method: str) -> list[tuple[Any, ...]]:
        """Arguments of every recorded call of ``method``."""
        return [args for name, args in self.calls if name == method]

    # --- Internals -----------------------------------------------------------------------

    def _record(self, method: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((method, args))

    def _reachable(self, target: np.ndarray) -> bool:
        return (np.isfinite(target).all() and target[2] >= self.world.min_z_m
                and float(np.linalg.norm(target - SHOULDER)) <= self.world.reach_m)

    def _advance(self) -> None:
        now = self.world.clock.now()
        elapsed = now - self._time
        self._time = now
        if elapsed <= 0 or self.jammed or self.policy != 'cartesian_impedance':
            return
        decay = math.exp(-elapsed / self.world.time_constant_s)
        self._position = self._desired + (self._position - self._desired) * decay


class GripperInterface:
    """Polymetis' ``GripperInterface``: the width jumps to its target (0 to 0.08 m)."""

    world: FakeWorld

    def __init__(self, ip_address: str = 'localhost', port: int = 50052) -> None:
        self.ip_address, self.port = ip_address, port
        self.width = 0.08
        """Current opening, m."""
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        """(method, arguments) of every call."""
        self.world.grippers.append(self)

    def goto(self, width: float, speed: float, force: float, blocking: bool = True) -> None:
        """Open or close to ``width``."""
        self.calls.append(('goto', (width, speed, force, blocking)))
        self.width = min(max(float(width), 0.0), 0.08)

    def grasp(self, speed: float, force: float, blocking: bool = True, **_: Any) -> None:
        """Close the fingers."""
        self.calls.append(('grasp', (speed, force, blocking)))
        self.width = 0.0

    def get_state(self) -> GripperState:
        """Width and flags."""
        return GripperState(width=self.width, is_grasped=False, is_moving=False)


def make_module(world: FakeWorld) -> types.ModuleType:
    """A ``polymetis`` module whose interfaces share ``world``."""
    module = types.ModuleType('polymetis')
    module.__version__ = '0.0-fake'
    module.__doc__ = 'Fake polymetis (pref_rl_robot.testing.fake_polymetis).'
    module.RobotInterface = type('RobotInterface', (RobotInterface,), {'world': world})
    module.GripperInterface = type('GripperInterface', (GripperInterface,), {'world': world})
    module.FakeRpcError = FakeRpcError
    module.world = world
    return module


@contextlib.contextmanager
def installed(clock: Any = None, **settings: Any) -> Iterator[FakeWorld]:
    """Install the fake as ``polymetis`` for the ``with`` block; yields its :class:`FakeWorld`.

    Args:
        clock: time source of the arm (default: the wall clock); pass a
            :class:`SimulatedClock`, and the same clock to the backend, for fast tests.
        settings: other :class:`FakeWorld` fields (``time_constant_s``, ``reach_m``, ...).
    """
    world = FakeWorld(clock=clock if clock is not None else WallClock(), **settings)
    missing = object()
    previous = sys.modules.get('polymetis', missing)
    sys.modules['polymetis'] = make_module(world)
    try:
        yield world
    finally:
        if previous is missing:
            sys.modules.pop('polymetis', None)
        else:
            sys.modules['polymetis'] = previous
