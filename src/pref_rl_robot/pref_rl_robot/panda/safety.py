"""The safety envelope every Panda command passes, simulated or real.

:class:`SafetyEnvelope` sits between an env (which turns actions into end-effector targets)
and a :class:`~pref_rl_robot.panda.backend.PandaBackend`. It owns the backend's command token,
so the backend's motion methods are reachable only through it, and on every command it

1. refuses it while the **e-stop** is engaged (the arm holds; :class:`EstopEngagedError`);
2. refuses a target that is not numeric, not of shape ``(3,)`` (``refused_shape``) or not
   finite (``refused_nonfinite``), holding the arm (:class:`RefusedCommandError`);
3. clamps the target into the **workspace box** (``clamped_box``), then limits the displacement
   from the measured end-effector position to ``max_step_m`` (``clamped_step``) and to
   ``max_speed_m_s`` times the command's duration (``clamped_velocity``), then clamps into the
   box again (the measured position may lie outside it);
4. holds instead of moving when, at the next command, the arm is farther than
   ``max_tracking_error_m`` from the previous target (``tracking_error``: it was pushed away,
   or the controller does not follow) and when the backend reports an IK failure
   (``ik_failure``).

Its **watchdog** holds the arm once no command arrived within ``watchdog_s`` (``watchdog_hold``,
counted once per stall): :meth:`SafetyEnvelope.idle` advances time and checks it (simulation
and robot alike) and, on a robot, a background thread checks it against the wall clock.
Every intervention is counted per kind, kept in a short history and logged (at most one log
line per kind every ``log_interval_s``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from pref_rl_robot.panda.backend import CommandToken, PandaBackend
from pref_rl_robot.panda.errors import EstopEngagedError, RefusedCommandError
from pref_rl_robot.panda.safety_config import (
    FRANKA_MAX_GRIPPER_WIDTH,
    FRANKA_WORKSPACE_HIGH,
    FRANKA_WORKSPACE_LOW,
    INTERVENTION_KINDS,
    SafetyConfig,
    SafetyStats,
)

log = logging.getLogger(__name__)
_EPS = 1e-9

__all__ = [
    'FRANKA_MAX_GRIPPER_WIDTH',
    'FRANKA_WORKSPACE_HIGH',
    'FRANKA_WORKSPACE_LOW',
    'INTERVENTION_KINDS',
    'CommandReport',
    'Intervention',
    'SafetyConfig',
    'SafetyEnvelope',
    'SafetyStats',
]


@dataclass(frozen=True)
class Intervention:
    """One intervention, as kept in :attr:`SafetyEnvelope.events`."""

    time: float
    """Backend time it happened at, s."""
    kind: str
    """One of :data:`INTERVENTION_KINDS`."""
    detail: str
    """What was refused or changed."""


@dataclass(frozen=True)
class CommandReport:
    """What :meth:`SafetyEnvelope.command` did with one command."""

    target: np.ndarray
    """Position sent to the backend, or held at when nothing was sent, ``float64 [3]``."""
    applied: bool
    """False when the arm held instead (IK failure, tracking error)."""
    interventions: tuple[str, ...]
    """Kinds of the interventions on this command."""
    ik_failure: bool
    """The backend found no IK solution for the target."""
    tracking_error_m: float
    """Distance of the arm from the previous target when this command arrived, m."""


class SafetyEnvelope:
    """Checks, clamps or refuses every command to one backend; see the module docstring."""

    def __init__(self, backend: PandaBackend, config: SafetyConfig | None = None) -> None:
        self._config = config or SafetyConfig()
        self._backend = backend
        self._token = CommandToken(self)
        backend.attach(self._token)
        self._low = np.array(self._config.workspace_low)
        self._high = np.array(self._config.workspace_high)
        self._lock = threading.RLock()
        self._counts = dict.fromkeys(INTERVENTION_KINDS, 0)
        self._events: deque[Intervention] = deque(maxlen=256)
        self._last_logged: dict[str, float] = {}
        self._unlogged = dict.fromkeys(INTERVENTION_KINDS, 0)
        self._estop_reason: str | None = None
        self._last_command_time = backend.now()
        self._last_target: np.ndarray | None = None
        self._holding = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- State -------------------------------------------------------------------------------

    @property
    def config(self) -> SafetyConfig:
        """The limits in force (the task's box already intersected in)."""
        return self._config

    @property
    def estop_engaged(self) -> bool:
        """True while the e-stop is engaged."""
        return self._estop_reason is not None

    @property
    def estop_reason(self) -> str | None:
        """Why the e-stop was engaged; None when it is not."""
        return self._estop_reason

    @property
    def holding(self) -> bool:
        """True while the arm holds because of the watchdog, an e-stop or a hold request,
        until the next accepted command."""
        return self._holding

    @property
    def stats(self) -> SafetyStats:
        """A snapshot of the per-kind intervention counts."""
        with self._lock:
            return SafetyStats(**self._counts)

    @property
    def interventions(self) -> int:
        """Total interventions so far."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def events(self) -> tuple[Intervention, ...]:
        """The last 256 interventions, oldest first."""
        with self._lock:
            return tuple(self._events)

    @property
    def last_command_time(self) -> float:
        """Backend time of the last accepted command (or hold/homing), s."""
        return self._last_command_time

    # --- Commands ----------------------------------------------------------------------------

    def command(self, target: Any, duration: float) -> CommandReport:
        """Check ``target`` (end-effector position, m) and send it, to be reached in
        ``duration`` seconds.

        Raises:
            EstopEngagedError: the e-stop is engaged (the arm holds).
            RefusedCommandError: ``target`` is not a finite ``(3,)`` vector (the arm holds).
        """
        with self._lock:
            self.check_estop('command')
            requested = self._checked_vector(target, 'target')
            kinds: list[str] = []
            current = self._backend.ee_position()
            tracking_error = (0.0 if self._last_target is None
                              else float(np.linalg.norm(current - self._last_target)))
            if tracking_error > self._config.max_tracking_error_m:
                self._record('tracking_error', f'arm {tracking_error:.3f} m from its target')
                return self._held_report(kinds + ['tracking_error'], False, tracking_error)
            clamped = self._clamped(requested, current, duration, kinds)
            try:
                result = self._backend.move_ee(self._token, clamped, duration)
            except Exception:
                log.exception('backend failed on a command; holding')
                self._hold()
                raise
            if result.ik_failed:
                self._record('ik_failure', f'no IK solution for {np.round(clamped, 3)}')
                return self._held_report(kinds + ['ik_failure'], True, tracking_error)
            self._accepted(clamped)
            return CommandReport(clamped, True, tuple(kinds), False, tracking_error)

    def home(self, ee_position: Any) -> np.ndarray:
        """Bring the arm to its start pose with the end effector at ``ee_position`` (clamped
        into the box); returns the position used.

        Raises:
            EstopEngagedError: the e-stop is engaged.
            RefusedCommandError: ``ee_position`` is not a finite ``(3,)`` vector.
        """
        with self._lock:
            self.check_estop('home')
            position = self._checked_vector(ee_position, 'home position')
            clamped = np.clip(position, self._low, self._high)
            if not np.array_equal(clamped, position):
                self._record('clamped_box', f'home position {np.round(position, 3)} -> '
                                            f'{np.round(clamped, 3)}')
            self._backend.home(self._token, clamped, self._config.max_step_m)
            self._accepted(clamped)
            return clamped

    def gripper(self, width: float) -> None:
        """Move the gripper to ``width`` m, clamped into [0, 0.08].

        Raises:
            EstopEngagedError: the e-stop is engaged.
            RefusedCommandError: ``width`` is not a finite number.
        """
        with self._lock:
            self.check_estop('gripper')
            try:
                value = float(width)
            except (TypeError, ValueError):
                self._refuse('refused_shape', f'gripper width {width!r} is not a number')
            if not math.isfinite(value):
                self._refuse('refused_nonfinite', f'gripper width {value}')
            self._backend.move_gripper(self._token, min(max(value, 0.0),
                                                        FRANKA_MAX_GRIPPER_WIDTH))

    def hold(self) -> np.ndarray:
        """Hold the current end-effector position now (allowed while e-stopped); returns it."""
        with self._lock:
            return self._hold()

    # --- E-stop ------------------------------------------------------------------------------

    def engage_estop(self, reason: str) -> None:
        """Engage the e-stop: hold now and refuse every command until :meth:`release_estop`."""
        with self._lock:
            self._estop_reason = str(reason) or 'no reason given'
            self._hold()
            log.error('e-stop engaged: %s (the arm holds; every command is refused)',
                      self._estop_reason)

    def release_estop(self) -> None:
        """Release the e-stop; the arm keeps holding until the next command."""
        with self._lock:
            if self._estop_reason is not None:
                log.warning('e-stop released (was: %s)', self._estop_reason)
            self._estop_reason = None
            self._last_command_time = self._backend.now()

    def check_estop(self, what: str) -> None:
        """Raise :class:`EstopEngagedError` for ``what`` (counted as ``refused_estop``, the
        arm holds) if the e-stop is engaged; else do nothing."""
        with self._lock:
            if self._estop_reason is not None:
                self._record('refused_estop', what)
                self._hold()
                raise EstopEngagedError(f'{what} refused: e-stop engaged '
                                        f'({self._estop_reason}); release it first')

    # --- Watchdog ----------------------------------------------------------------------------

    def check_watchdog(self) -> bool:
        """Hold the arm if no command arrived within ``watchdog_s``; True while holding."""
        with self._lock:
            if self._holding:
                return True
            stalled = self._backend.now() - self._last_command_time
            if stalled >= self._config.watchdog_s - _EPS:
                self._hold()
                self._record('watchdog_hold', f'no command for {stalled:.3f} s')
            return self._holding

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` pass without a command (simulate or wait); the watchdog holds the
        arm as soon as its period runs out, not at the end of the wait."""
        remaining = float(seconds)
        while remaining > _EPS:
            chunk = remaining
            if not self._holding:
                until = self._last_command_time + self._config.watchdog_s - self._backend.now()
                chunk = min(chunk, max(until, _EPS))
            remaining -= self._backend.advance(chunk)
            self.check_watchdog()

    def start_watchdog_thread(self, poll_s: float = 0.02) -> None:
        """Check the watchdog every ``poll_s`` wall-clock seconds in a daemon thread (robots:
        holds even when nobody calls the env)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,),
                                        name='panda-watchdog', daemon=True)
        self._thread.start()

    def stop_watchdog_thread(self) -> None:
        """Stop the thread started by :meth:`start_watchdog_thread` (no-op when none)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5.0)

    def _watch(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                self.check_watchdog()
            except Exception:  # keep watching: a failed hold is logged, never silent
                log.exception('watchdog check failed')

    # --- Internals ---------------------------------------------------------------------------

    def _clamped(self, target: np.ndarray, current: np.ndarray, duration: float,
                 kinds: list[str]) -> np.ndarray:
        out = np.clip(target, self._low, self._high)
        if not np.array_equal(out, target):
            kinds.append('clamped_box')
            self._record('clamped_box', f'{np.round(target, 3)} -> {np.round(out, 3)}')
        displacement = out - current
        distance = float(np.linalg.norm(displacement))
        speed_limit = self._config.max_speed_m_s * max(float(duration), 0.0)
        limit = distance
        for kind, bound in (('clamped_step', self._config.max_step_m),
                            ('clamped_velocity', speed_limit)):
            if distance > bound + _EPS:
                kinds.append(kind)
                self._record(kind, f'displacement {distance:.3f} m > {bound:.3f} m')
                limit = min(limit, bound)
        if limit < distance:
            out = current + displacement * (limit / distance)
        # Box last: the measured position itself may lie outside the box.
        return np.clip(out, self._low, self._high)

    def _checked_vector(self, value: Any, what: str) -> np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            self._refuse('refused_shape', f'{what} {value!r} is not numeric')
        if array.shape != (3,):
            self._refuse('refused_shape', f'{what} has shape {array.shape}, expected (3,)')
        if not np.isfinite(array).all():
            self._refuse('refused_nonfinite', f'{what} {array.tolist()} is not finite')
        return array

    def _refuse(self, kind: str, detail: str) -> NoReturn:
        self._record(kind, detail)
        self._hold()
        self._last_command_time = self._backend.now()
        raise RefusedCommandError(f'safety envelope refused the command: {detail}')

    def _held_report(self, kinds: list[str], ik_failure: bool,
                     tracking_error: float) -> CommandReport:
        held = self._hold()
        # The command stream is alive (the watchdog restarts) but the arm holds.
        self._last_command_time = self._backend.now()
        return CommandReport(held, False, tuple(kinds), ik_failure, tracking_error)

    def _hold(self) -> np.ndarray:
        held = np.asarray(self._backend.hold(self._token), dtype=np.float64)
        self._last_target = held
        self._holding = True
        return held

    def _accepted(self, target: np.ndarray) -> None:
        self._last_target = target
        self._last_command_time = self._backend.now()
        self._holding = False

    def _record(self, kind: str, detail: str) -> None:
        self._counts[kind] += 1
        self._events.append(Intervention(self._backend.now(), kind, detail))
        now = time.monotonic()  # rate-limit logs in wall-clock time, whatever the backend
        last = self._last_logged.get(kind)
        if last is not None and now - last < self._config.log_interval_s:
            self._unlogged[kind] += 1
            return
        more = self._unlogged[kind]
        self._unlogged[kind] = 0
        self._last_logged[kind] = now
        suffix = f' (+{more} more since the last report)' if more else ''
        log.warning('safety %s: %s%s', kind, detail, suffix)
