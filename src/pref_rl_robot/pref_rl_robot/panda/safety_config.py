"""Configuration and statistics of the Panda safety envelope (:mod:`.safety`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from pref_rl_robot.panda.errors import SafetyConfigError

FRANKA_WORKSPACE_LOW = (0.1, -0.4, -0.05)
"""Lower corner of Polymetis' Franka workspace limits, m (robot base frame)."""
FRANKA_WORKSPACE_HIGH = (1.0, 0.4, 1.0)
"""Upper corner of Polymetis' Franka workspace limits, m."""
FRANKA_MAX_GRIPPER_WIDTH = 0.08
"""Widest opening of the Franka Hand, m."""
_EPS = 1e-9


@dataclass(frozen=True)
class SafetyConfig:
    """Limits the envelope enforces on every Panda command."""

    workspace_low: tuple[float, float, float] = FRANKA_WORKSPACE_LOW
    """Lower corner (x, y, z) of the box end-effector targets are clamped into, m. Never
    looser than the Franka limits (0.1, -0.4, -0.05); a task tightens it further."""
    workspace_high: tuple[float, float, float] = FRANKA_WORKSPACE_HIGH
    """Upper corner (x, y, z) of that box, m; never looser than (1.0, 0.4, 1.0)."""
    max_step_m: float = 0.05
    """Largest distance between a target and the measured end-effector position, m."""
    max_speed_m_s: float = 0.4
    """Largest mean speed a command may ask for: the target lies within
    ``max_speed_m_s * duration`` of the measured position, m/s."""
    max_tracking_error_m: float = 0.05
    """When the arm is farther than this from the previous target at the next command, the
    arm holds instead of moving (counted as ``tracking_error``), m."""
    watchdog_s: float = 0.5
    """The arm holds position once no command arrived for this long, s."""
    log_interval_s: float = 5.0
    """At most one log line per intervention kind in this interval (the rest are counted
    and summarised in the next line), s."""

    def __post_init__(self) -> None:
        for name in ('workspace_low', 'workspace_high'):
            value = getattr(self, name)
            if len(value) != 3 or not all(map(math.isfinite, value)):
                raise SafetyConfigError(f'{name} must be 3 finite numbers, got {value!r}')
        for axis, (lo, hi, f_lo, f_hi) in enumerate(zip(
                self.workspace_low, self.workspace_high, FRANKA_WORKSPACE_LOW,
                FRANKA_WORKSPACE_HIGH, strict=True)):
            if not lo < hi:
                raise SafetyConfigError(f'workspace axis {"xyz"[axis]}: low {lo} must be '
                                        f'below high {hi}')
            if lo < f_lo - _EPS or hi > f_hi + _EPS:
                raise SafetyConfigError(
                    f'workspace axis {"xyz"[axis]} [{lo}, {hi}] is looser than the Franka '
                    f'limits [{f_lo}, {f_hi}]; a workspace may only be tighter')
        for name in ('max_step_m', 'max_speed_m_s', 'max_tracking_error_m', 'watchdog_s',
                     'log_interval_s'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SafetyConfigError(f'{name} must be a positive number, got {value!r}')

    def tightened(self, low: tuple[float, float, float],
                  high: tuple[float, float, float]) -> SafetyConfig:
        """This config with its box intersected with ``[low, high]`` (a task's box)."""
        return replace(self,
                       workspace_low=tuple(max(a, b) for a, b in zip(self.workspace_low, low,
                                                                      strict=True)),
                       workspace_high=tuple(min(a, b) for a, b in zip(self.workspace_high,
                                                                       high, strict=True)))


@dataclass(frozen=True)
class SafetyStats:
    """How often the envelope intervened, per kind (since it was made)."""

    clamped_box: int = 0
    """Targets moved into the workspace box."""
    clamped_step: int = 0
    """Targets pulled within ``max_step_m`` of the arm."""
    clamped_velocity: int = 0
    """Targets pulled within ``max_speed_m_s * duration`` of the arm."""
    refused_nonfinite: int = 0
    """Commands refused for a NaN or infinite component."""
    refused_shape: int = 0
    """Commands refused for a wrong shape or a non-numeric value."""
    refused_estop: int = 0
    """Commands refused because the e-stop was engaged."""
    watchdog_hold: int = 0
    """Stalls of the command stream that made the arm hold."""
    ik_failure: int = 0
    """Commands the backend could not solve inverse kinematics for (the arm held)."""
    tracking_error: int = 0
    """Commands replaced by a hold because the arm lagged its previous target."""

    @property
    def total(self) -> int:
        """All interventions together."""
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        """Kind -> count."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


INTERVENTION_KINDS = tuple(f.name for f in fields(SafetyStats))
"""Every intervention kind, in :class:`SafetyStats` order."""
