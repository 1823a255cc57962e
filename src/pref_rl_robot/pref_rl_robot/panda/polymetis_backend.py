"""Franka Panda through Polymetis (facebookresearch/fairo): the real robot or its own sim.

**Untested on hardware**: this backend is exercised only against
:mod:`pref_rl_robot.testing.fake_polymetis`, a stand-in with Polymetis' client API.

Polymetis is distributed through conda only, so it is imported when a backend is made and a
missing install raises :class:`PolymetisUnavailableError` with the install command. Control:
a non-blocking Cartesian impedance controller (``start_cartesian_impedance``) whose desired
end-effector pose is updated once per control period (``update_desired_ee_pose``; orientation
fixed pointing down). That call solves IK on the client and, when it fails, only logs a warning
and returns -1: this backend reports it (``CommandResult.ik_failed``) so the safety envelope
counts it and holds the arm. Reset: ``go_home`` (a blocking joint move), the Cartesian
controller again, then a ramp of the desired position to the start position in steps of at
most the envelope's ``max_step_m`` per period. The gripper moves with ``goto``.

The block of ``panda_push`` is seen through an :class:`ObjectTracker` (any callable returning
its position); frames come from a :class:`Camera` callable or, without one, a schematic
drawing. Keep the Polymetis gRPC server on localhost: it listens without authentication.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pref_rl_robot.panda.backend import Clock, CommandResult, PandaBackend, WallClock
from pref_rl_robot.panda.errors import (
    PandaConfigError,
    PolymetisUnavailableError,
    TrackerError,
)
from pref_rl_robot.panda.safety import SafetyConfig
from pref_rl_robot.panda.schematic import draw_scene, fit_frame
from pref_rl_robot.panda.task import PandaTask

log = logging.getLogger(__name__)

INSTALL_HINT = ('Polymetis is distributed through conda only: in a conda environment run '
                '`conda install -c pytorch -c fair-robotics -c aihabitat -c conda-forge '
                'polymetis` (see docs/panda.md), or use backend="pybullet"')
"""What :class:`PolymetisUnavailableError` tells the user."""
EE_DOWN_XYZW = (1.0, 0.0, 0.0, 0.0)
"""End-effector orientation sent with every target: pointing straight down."""


class ObjectTracker(Protocol):
    """Where the block is: ``(x, y)`` or ``(x, y, z)`` in the robot base frame, metres."""

    def __call__(self) -> Any: ...


Camera = Callable[[], np.ndarray]
"""Returns an RGB frame ``[H, W, 3]`` (uint8, or float in [0, 1])."""


@dataclass(frozen=True)
class PolymetisConfig:
    """How to reach and drive a Panda through Polymetis."""

    ip_address: str = 'localhost'
    """Address of the Polymetis servers. Keep them on this machine: they listen without
    authentication (a non-loopback address needs ``allow_remote``)."""
    robot_port: int = 50051
    """Port of the robot (controller manager) server."""
    gripper_port: int = 50052
    """Port of the gripper server."""
    use_gripper: bool = True
    """Connect to the gripper server and close the gripper at each reset."""
    allow_remote: bool = False
    """Accept a non-loopback ``ip_address`` (only behind a trusted, isolated network)."""
    control_hz: float = 10.0
    """Env steps per second: one desired end-effector pose per period."""
    kx: tuple[float, ...] = ()
    """Cartesian stiffness (6 values) for ``start_cartesian_impedance``; empty: Polymetis'
    default."""
    kxd: tuple[float, ...] = ()
    """Cartesian damping (6 values); empty: Polymetis' default."""
    gripper_speed_m_s: float = 0.05
    """Finger speed of ``GripperInterface.goto``, m/s."""
    gripper_force_n: float = 10.0
    """Grip force of ``GripperInterface.goto``, N."""
    settle_tolerance_m: float = 0.01
    """After the ramp to the start position, wait until the arm is this close to it, m."""
    settle_timeout_s: float = 5.0
    """Longest such wait; past it the episode starts anyway, with a warning, s."""

    def __post_init__(self) -> None:
        if not self.allow_remote and not _is_loopback(self.ip_address):
            raise PandaConfigError(
                f'Polymetis address {self.ip_address!r} is not on this machine; its gRPC '
                f'server has no authentication, keep it on localhost (or set allow_remote)')
        if not self.control_hz > 0:
            raise PandaConfigError(f'control_hz must be positive, got {self.control_hz!r}')
        for name in ('kx', 'kxd'):
            if len(getattr(self, name)) not in (0, 6):
                raise PandaConfigError(f'{name} must hold 0 or 6 values')


def _is_loopback(address: str) -> bool:
    if address == 'localhost':
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def import_polymetis() -> Any:
    """The ``polymetis`` module.

    Raises:
        PolymetisUnavailableError: it is not installed (the message says how to install it).
    """
    try:
        return importlib.import_module('polymetis')
    except ImportError as error:
        raise PolymetisUnavailableError(f'cannot import polymetis ({error}). '
                                        f'{INSTALL_HINT}') from error


class PolymetisPandaBackend(PandaBackend):
    """A Panda behind a Polymetis server; see the module docstring."""

    realtime = True

    def __init__(self, config: PolymetisConfig, *, task: PandaTask,
                 tracker: ObjectTracker | None = None, camera: Camera | None = None,
                 clock: Clock | None = None, workspace: SafetyConfig | None = None) -> None:
        super().__init__()
        polymetis = import_polymetis()
        import torch  # Polymetis' tensors; torch comes with it

        self._torch = torch
        self._config = config
        self._task = task
        self._tracker = tracker
        self._camera = camera
        self._clock = clock or WallClock()
        box = workspace or SafetyConfig()
        self._box = (box.workspace_low, box.workspace_high)
        self.control_period_s = 1.0 / config.control_hz
        self._robot = polymetis.RobotInterface(ip_address=config.ip_address,
                                               port=config.robot_port)
        self._gripper = (polymetis.GripperInterface(ip_address=config.ip_address,
                                                    port=config.gripper_port)
                         if config.use_gripper else None)
        self._orientation = torch.tensor(EE_DOWN_XYZW, dtype=torch.float32)
        self._impedance = False
        self._period_start: float | None = None
        self._goal: np.ndarray | None = None
        self._velocity = np.zeros(3)
        self._sample = (self._clock.now(), self.ee_position())

    # --- Motion hooks (reached only through the safety envelope) ----------------------------

    def _move_ee(self, target: np.ndarray, duration: float) -> CommandResult:
        if not self._impedance:
            self._start_impedance()
        status = self._robot.update_desired_ee_pose(position=self._tensor(target),
                                                    orientation=self._orientation)
        self._period_start = self._clock.now()
        # Polymetis returns -1 (and only logs a warning) when its IK finds no solution.
        return CommandResult(ik_failed=_is_failure(status))

    def _hold(self) -> np.ndarray:
        position, orientation = self._robot.get_ee_pose()
        held = _as_array(position)
        if self._impedance:
            try:
                status = self._robot.update_desired_ee_pose(position=position,
                                                            orientation=orientation)
                if not _is_failure(status):
                    return held
                log.warning('hold: IK failed at the current pose; restarting the controller')
            except Exception:  # the controller died: restart it, which holds the joints
                log.exception('hold: updating the desired pose failed; restarting the '
                              'controller')
        self._start_impedance()
        return held

    def _move_gripper(self, width: float) -> None:
        if self._gripper is not None:
            self._gripper.goto(width=width, speed=self._config.gripper_speed_m_s,
                               force=self._config.gripper_force_n, blocking=True)

    def _home(self, ee_position: np.ndarray, max_step_m: float) -> None:
        if self._impedance:
            self._robot.terminate_current_policy()
            self._impedance = False
        self._robot.go_home()
        self._start_impedance()
        desired = self.ee_position()
        while True:
            offset = ee_position - desired
            distance = float(np.linalg.norm(offset))
            if distance < 1e-6:
                break
            desired = desired + offset * min(1.0, max_step_m / distance)
            status = self._robot.update_desired_ee_pose(position=self._tensor(desired),
                                                        orientation=self._orientation)
            if _is_failure(status):
                self._hold()
                raise PandaConfigError(f'no IK solution on the way to the start position '
                                       f'{np.round(ee_position, 3)}: check the task box')
            self._clock.sleep(self.control_period_s)
        deadline = self._clock.now() + self._config.settle_timeout_s
        while float(np.linalg.norm(self.ee_position() - desired)) > \
                self._config.settle_tolerance_m:
            if self._clock.now() >= deadline:
                log.warning('the arm did not settle within %.3f m of the start position in '
                            '%.1f s', self._config.settle_tolerance_m,
                            self._config.settle_timeout_s)
                break
            self._clock.sleep(self.control_period_s)
        self._period_start = None
        self._velocity = np.zeros(3)
        self._sample = (self._clock.now(), self.ee_position())

    # --- Scene and sensing -----------------------------------------------------------------

    def now(self) -> float:
        """The clock's time, s."""
        return self._clock.now()

    def advance(self, seconds: float) -> float:
        """Wait until ``seconds`` after the last command (right after one) or for ``seconds``
        (otherwise), then sample the end-effector velocity over that time."""
        now = self._clock.now()
        start, self._period_start = self._period_start, None
        wait = seconds if start is None else start + seconds - now
        self._clock.sleep(wait)
        then, before = self._sample
        now, position = self._clock.now(), self.ee_position()
        if now > then:
            self._velocity = (position - before) / (now - then)
        self._sample = (now, position)
        return seconds

    def ee_position(self) -> np.ndarray:
        """Measured end-effector position (``get_ee_pose``), m."""
        position, _ = self._robot.get_ee_pose()
        return _as_array(position)

    def ee_velocity(self) -> np.ndarray:
        """End-effector velocity over the last control period (finite difference), m/s."""
        return self._velocity.copy()

    def block_position(self) -> np.ndarray | None:
        """The tracker's block position (z = the block's half size when it gives only x, y).

        Raises:
            TrackerError: the tracker returned something other than 2 or 3 finite numbers.
        """
        if self._tracker is None:
            return None
        try:
            position = np.asarray(self._tracker(), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as error:
            raise TrackerError(f'object tracker returned a non-numeric value: {error}') from None
        if position.shape == (2,):
            position = np.append(position, self._task.block_half_size_m)
        if position.shape != (3,) or not np.isfinite(position).all():
            raise TrackerError(f'object tracker must return finite (x, y) or (x, y, z), got '
                               f'{position.tolist()}')
        return position

    def reset_scene(self, goal: np.ndarray | None, block_position: np.ndarray | None) -> None:
        """Remember the goal for drawings (None: the person's target, not drawn; the block
        is placed by a person, not here)."""
        self._goal = None if goal is None else np.asarray(goal, dtype=np.float64)

    def render(self, size: int) -> np.ndarray:
        """The camera's frame fitted to ``[size, size, 3]``, or a schematic drawing."""
        if self._camera is not None:
            return fit_frame(self._camera(), size)
        block = self.block_position() if self._task.needs_block else None
        return draw_scene(size, *self._box, self.ee_position(), self._goal, block,
                          self._task.block_half_size_m)

    def close(self) -> None:
        """Stop the running controller (the arm keeps its pose under Polymetis' default)."""
        if self._impedance:
            self._impedance = False
            try:
                self._robot.terminate_current_policy()
            except Exception:
                log.exception('terminating the Polymetis controller failed')

    # --- Internals -----------------------------------------------------------------------

    def _start_impedance(self) -> None:
        gains = {}
        if self._config.kx:
            gains['Kx'] = self._torch.tensor(self._config.kx, dtype=self._torch.float32)
        if self._config.kxd:
            gains['Kxd'] = self._torch.tensor(self._config.kxd, dtype=self._torch.float32)
        self._robot.start_cartesian_impedance(**gains)
        self._impedance = True

    def _tensor(self, vector: np.ndarray) -> Any:
        return self._torch.tensor(np.asarray(vector, dtype=np.float32))


def _is_failure(status: Any) -> bool:
    try:
        return int(status) == -1
    except (TypeError, ValueError):
        return False


def _as_array(tensor: Any) -> np.ndarray:
    values = tensor.tolist() if hasattr(tensor, 'tolist') else list(tensor)
    return np.array(values, dtype=np.float64)
