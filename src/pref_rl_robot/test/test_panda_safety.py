"""The Panda safety envelope, against a recording backend: nothing reaches it unchecked."""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import pytest

from pref_rl_learner.errors import PrefRLError
from pref_rl_robot.panda import (
    INTERVENTION_KINDS,
    CommandResult,
    EstopEngagedError,
    PandaBackend,
    RefusedCommandError,
    SafetyConfig,
    SafetyConfigError,
    SafetyEnvelope,
    UnguardedCommandError,
)
from pref_rl_robot.panda.backend import CommandToken
from pref_rl_robot.tasks import InvalidActionError

BOX = SafetyConfig(workspace_low=(0.2, -0.3, 0.05), workspace_high=(0.8, 0.3, 0.6),
                   max_step_m=0.05, max_speed_m_s=0.4, watchdog_s=0.5)


class RecordingBackend(PandaBackend):
    """A kinematic arm that records every call reaching its motion hooks.

    ``advance`` moves the end effector to the last target at once (a perfect controller), and
    the clock moves only in ``advance``.
    """

    def __init__(self, start: tuple[float, float, float] = (0.5, 0.0, 0.3)) -> None:
        super().__init__()
        self.position = np.array(start, dtype=np.float64)
        self.target = self.position.copy()
        self.time = 0.0
        self.log: list[tuple[str, float, np.ndarray | float]] = []
        self.ik_fails = False

    def _move_ee(self, target: np.ndarray, duration: float) -> CommandResult:
        self.log.append(('move_ee', self.time, target.copy(), self.position.copy(), duration))
        if self.ik_fails:
            return CommandResult(ik_failed=True)
        self.target = target.copy()
        return CommandResult()

    def _hold(self) -> np.ndarray:
        self.log.append(('hold', self.time, self.position.copy()))
        self.target = self.position.copy()
        return self.position.copy()

    def _move_gripper(self, width: float) -> None:
        self.log.append(('gripper', self.time, width))

    def _home(self, ee_position: np.ndarray, max_step_m: float) -> None:
        self.log.append(('home', self.time, ee_position.copy()))
        self.position = ee_position.copy()
        self.target = ee_position.copy()

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> float:
        self.time += seconds
        self.position = self.target.copy()
        return seconds

    def ee_position(self) -> np.ndarray:
        return self.position.copy()

    def ee_velocity(self) -> np.ndarray:
        return np.zeros(3)

    def block_position(self) -> None:
        return None

    def reset_scene(self, goal: np.ndarray, block_position: np.ndarray | None) -> None:
        pass

    def render(self, size: int) -> np.ndarray:
        return np.zeros((size, size, 3), np.uint8)

    def calls(self, kind: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == kind]


def _envelope(config: SafetyConfig = BOX) -> tuple[SafetyEnvelope, RecordingBackend]:
    backend = RecordingBackend()
    return SafetyEnvelope(backend, config), backend


def test_a_target_outside_the_box_is_clamped_and_counted() -> None:
    envelope, backend = _envelope()
    envelope.home([0.79, 0.0, 0.3])
    report = envelope.command([0.9, 0.0, 0.3], duration=0.1)
    sent = backend.calls('move_ee')[-1][2]
    np.testing.assert_allclose(sent, [0.8, 0.0, 0.3])
    assert report.interventions == ('clamped_box',) and report.applied
    assert envelope.stats.clamped_box == 1 and envelope.interventions == 1
    # Below the floor: z is clamped, x and y pass.
    envelope.home([0.5, 0.1, 0.07])
    envelope.command([0.5, 0.1, 0.0], duration=0.1)
    np.testing.assert_allclose(backend.calls('move_ee')[-1][2], [0.5, 0.1, 0.05])
    assert envelope.stats.clamped_box == 2


def test_step_and_velocity_limits_shorten_the_displacement() -> None:
    envelope, backend = _envelope()

    def command(offset: list[float], duration: float) -> tuple[np.ndarray, tuple[str, ...]]:
        start = backend.position.copy()
        report = envelope.command(start + offset, duration)
        backend.advance(duration)
        return report.target - start, report.interventions

    # 0.2 m in 1 s: within the speed limit (0.4 m/s) but over the 0.05 m step limit.
    displacement, kinds = command([0.2, 0.0, 0.0], 1.0)
    np.testing.assert_allclose(displacement, [0.05, 0.0, 0.0])
    assert kinds == ('clamped_step',)
    # 0.03 m in 0.05 s (0.6 m/s): within the step limit, over the speed limit -> 0.02 m.
    displacement, kinds = command([0.0, 0.03, 0.0], 0.05)
    np.testing.assert_allclose(displacement, [0.0, 0.02, 0.0])
    assert kinds == ('clamped_velocity',)
    # Both limits: the tighter one wins, the direction is kept, both are counted.
    displacement, kinds = command([0.0, -0.06, 0.08], 0.1)
    np.testing.assert_allclose(np.linalg.norm(displacement), 0.04)
    np.testing.assert_allclose(displacement / np.linalg.norm(displacement), [0, -0.6, 0.8])
    assert kinds == ('clamped_step', 'clamped_velocity')
    stats = envelope.stats
    assert (stats.clamped_step, stats.clamped_velocity, stats.clamped_box) == (2, 2, 0)
    # Within every limit: sent unchanged, nothing counted.
    displacement, kinds = command([0.01, 0.01, -0.01], 0.1)
    np.testing.assert_allclose(displacement, [0.01, 0.01, -0.01])
    assert kinds == () and envelope.interventions == 4


@pytest.mark.parametrize('target, kind', [
    ([np.nan, 0.0, 0.3], 'refused_nonfinite'),
    ([0.5, np.inf, 0.3], 'refused_nonfinite'),
    ([0.5, 0.0], 'refused_shape'),
    ([[0.5, 0.0, 0.3]], 'refused_shape'),
    ('up', 'refused_shape'),
    (None, 'refused_shape'),
])
def test_malformed_targets_are_refused_and_the_arm_holds(target: object, kind: str) -> None:
    envelope, backend = _envelope()
    with pytest.raises(RefusedCommandError) as caught:
        envelope.command(target, duration=0.1)
    assert isinstance(caught.value, InvalidActionError) and isinstance(caught.value, PrefRLError)
    assert backend.calls('move_ee') == []
    assert len(backend.calls('hold')) == 1 and envelope.holding
    assert getattr(envelope.stats, kind) == 1 and envelope.interventions == 1


def test_nothing_reaches_the_backend_unchecked() -> None:
    envelope, backend = _envelope()
    rng = np.random.default_rng(0)
    garbage = [np.nan, np.inf, -np.inf, 1e9, -1e9]
    for i in range(600):
        target = backend.position + rng.normal(0.0, 0.2, 3)
        if i % 7 == 0:
            target[rng.integers(3)] = garbage[rng.integers(len(garbage))]
        if i % 11 == 0:
            target = rng.normal(size=rng.integers(1, 5))
        duration = float(rng.choice([0.01, 0.1, 1.0]))
        with contextlib.suppress(RefusedCommandError):
            envelope.command(target, duration)
        backend.advance(duration)
    moves = backend.calls('move_ee')
    assert len(moves) > 400
    low, high = np.array(BOX.workspace_low), np.array(BOX.workspace_high)
    for _, _, sent, position, duration in moves:
        assert sent.shape == (3,) and np.isfinite(sent).all()
        assert (sent >= low - 1e-12).all() and (sent <= high + 1e-12).all()
        step = np.linalg.norm(sent - position)
        assert step <= BOX.max_step_m + 1e-9
        assert step <= BOX.max_speed_m_s * duration + 1e-9
    stats = envelope.stats
    assert stats.clamped_box and stats.clamped_step and stats.clamped_velocity
    assert stats.refused_nonfinite and stats.refused_shape
    assert envelope.interventions == stats.total > len(moves) // 2


def test_the_backend_refuses_commands_without_the_envelopes_token() -> None:
    envelope, backend = _envelope()
    for call in (lambda t: backend.move_ee(t, np.array([0.5, 0.0, 0.3]), 0.1),
                 lambda t: backend.hold(t), lambda t: backend.move_gripper(t, 0.0),
                 lambda t: backend.home(t, np.array([0.5, 0.0, 0.3]), 0.05)):
        for token in (None, CommandToken(object())):
            with pytest.raises(UnguardedCommandError):
                call(token)
    assert backend.log == []
    # A second envelope cannot take over a guarded backend.
    with pytest.raises(UnguardedCommandError):
        SafetyEnvelope(backend, BOX)
    # An unguarded backend refuses too.
    with pytest.raises(UnguardedCommandError):
        RecordingBackend().hold(None)


def test_estop_refuses_every_command_until_released() -> None:
    envelope, backend = _envelope()
    envelope.command(backend.position + [0.01, 0, 0], 0.1)
    envelope.engage_estop('operator pressed the button')
    assert envelope.estop_engaged and envelope.estop_reason == 'operator pressed the button'
    assert backend.log[-1][0] == 'hold'
    moves = len(backend.calls('move_ee'))
    with pytest.raises(EstopEngagedError, match='operator pressed'):
        envelope.command(backend.position + [0.01, 0, 0], 0.1)
    with pytest.raises(EstopEngagedError):
        envelope.home([0.5, 0.0, 0.3])
    with pytest.raises(EstopEngagedError):
        envelope.gripper(0.04)
    with pytest.raises(EstopEngagedError):  # checked before the NaN
        envelope.command([np.nan] * 3, 0.1)
    assert len(backend.calls('move_ee')) == moves and not backend.calls('home')
    assert not backend.calls('gripper')
    assert envelope.stats.refused_estop == 4 and envelope.stats.refused_nonfinite == 0
    envelope.hold()  # holding is always allowed
    envelope.release_estop()
    assert not envelope.estop_engaged
    envelope.command(backend.position + [0.01, 0, 0], 0.1)
    assert len(backend.calls('move_ee')) == moves + 1


def test_watchdog_holds_once_per_stall_at_its_deadline() -> None:
    envelope, backend = _envelope()
    envelope.command(backend.position + [0.02, 0, 0], 0.1)
    backend.advance(0.1)
    assert not envelope.check_watchdog()
    envelope.idle(2.0)  # stalls for 2 s in one call: the hold comes at 0.5 s, not at 2 s
    holds = backend.calls('hold')
    assert len(holds) == 1
    assert holds[0][1] == pytest.approx(BOX.watchdog_s)
    assert envelope.holding and envelope.stats.watchdog_hold == 1
    assert backend.time == pytest.approx(2.1)
    envelope.idle(2.0)  # still the same stall: no second count
    assert envelope.stats.watchdog_hold == 1
    # A new command ends the stall; the next stall is counted again.
    envelope.command(backend.position + [0.01, 0, 0], 0.1)
    assert not envelope.holding
    envelope.idle(0.3)
    assert envelope.stats.watchdog_hold == 1
    envelope.idle(0.3)
    assert envelope.stats.watchdog_hold == 2


def test_watchdog_thread_holds_without_anyone_calling() -> None:
    envelope, backend = _envelope()
    envelope.command(backend.position + [0.02, 0, 0], 0.1)
    envelope.start_watchdog_thread(poll_s=0.005)
    try:
        time.sleep(0.05)
        assert envelope.stats.watchdog_hold == 0  # the clock has not moved
        backend.time += 0.6  # time passes with no command
        deadline = time.monotonic() + 10.0
        while envelope.stats.watchdog_hold == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        envelope.stop_watchdog_thread()
    assert envelope.stats.watchdog_hold == 1 and envelope.holding
    assert len(backend.calls('hold')) == 1


def test_ik_failure_and_tracking_error_make_the_arm_hold() -> None:
    envelope, backend = _envelope()
    backend.ik_fails = True
    report = envelope.command(backend.position + [0.02, 0, 0], 0.1)
    assert report.ik_failure and not report.applied and report.interventions == ('ik_failure',)
    assert backend.log[-1][0] == 'hold' and envelope.stats.ik_failure == 1
    backend.ik_fails = False
    envelope.command(backend.position + [0.02, 0, 0], 0.1)
    backend.advance(0.1)
    # Something shoves the arm 8 cm away from its target: the next command holds instead.
    backend.position = backend.position + [0.0, 0.08, 0.0]
    moves = len(backend.calls('move_ee'))
    report = envelope.command(backend.position + [0.01, 0, 0], 0.1)
    assert not report.applied and report.tracking_error_m == pytest.approx(0.08)
    assert report.interventions == ('tracking_error',) and envelope.stats.tracking_error == 1
    assert len(backend.calls('move_ee')) == moves and backend.log[-1][0] == 'hold'
    # Held where it is now, so the following command goes through.
    assert envelope.command(backend.position + [0.01, 0, 0], 0.1).applied


def test_home_and_gripper_are_checked_too() -> None:
    envelope, backend = _envelope()
    assert envelope.home([0.5, 0.9, 0.3]).tolist() == [0.5, 0.3, 0.3]
    assert envelope.stats.clamped_box == 1
    with pytest.raises(RefusedCommandError):
        envelope.home([0.5, np.nan, 0.3])
    envelope.gripper(0.5)
    envelope.gripper(-1.0)
    with pytest.raises(RefusedCommandError):
        envelope.gripper(float('nan'))
    assert [entry[2] for entry in backend.calls('gripper')] == [0.08, 0.0]


def test_interventions_are_logged_at_a_limited_rate(caplog: pytest.LogCaptureFixture) -> None:
    config = SafetyConfig(max_step_m=1.0, max_speed_m_s=10.0, log_interval_s=0.05)
    envelope, backend = _envelope(config)
    with caplog.at_level(logging.WARNING, logger='pref_rl_robot.panda.safety'):
        for _ in range(5):
            envelope.command([2.0, 0.0, 0.3], 0.1)
            backend.advance(0.1)
        time.sleep(0.06)  # one log interval later the next line reports the rest
        envelope.command([2.0, 0.0, 0.3], 0.1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all('clamped_box' in line for line in lines)
    assert '+4 more' in lines[1]
    assert envelope.stats.clamped_box == 6
    assert [e.kind for e in envelope.events] == ['clamped_box'] * 6


def test_config_never_looser_than_the_franka_limits() -> None:
    default = SafetyConfig()
    assert default.workspace_low == (0.1, -0.4, -0.05)
    assert default.workspace_high == (1.0, 0.4, 1.0)
    for kwargs in ({'workspace_low': (0.0, -0.4, -0.05)}, {'workspace_high': (1.0, 0.5, 1.0)},
                   {'workspace_low': (0.5, 0.0, 0.5), 'workspace_high': (0.4, 0.1, 0.6)},
                   {'max_step_m': 0.0}, {'watchdog_s': -1.0}, {'max_speed_m_s': float('nan')}):
        with pytest.raises(SafetyConfigError):
            SafetyConfig(**kwargs)
    tight = BOX.tightened((0.0, -0.1, 0.1), (0.7, 1.0, 2.0))
    assert tight.workspace_low == (0.2, -0.1, 0.1) and tight.workspace_high == (0.7, 0.3, 0.6)
    assert set(INTERVENTION_KINDS) >= {'clamped_box', 'clamped_step', 'clamped_velocity',
                                       'refused_nonfinite', 'refused_shape', 'refused_estop',
                                       'watchdog_hold', 'ik_failure'}
