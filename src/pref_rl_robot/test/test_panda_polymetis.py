"""The Polymetis Panda backend against the fake ``polymetis`` module (simulated clock)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from pref_rl_learner.errors import PrefRLError
from pref_rl_robot.panda import (
    EstopEngagedError,
    PandaConfigError,
    PandaEnv,
    PolymetisUnavailableError,
    SafetyConfig,
    TrackerError,
)
from pref_rl_robot.panda.polymetis_backend import PolymetisConfig
from pref_rl_robot.tasks.panda_tasks import PANDA_REACH, make_panda_task
from pref_rl_robot.testing import fake_polymetis
from pref_rl_robot.testing.fake_polymetis import FakeWorld, SimulatedClock


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with fake_polymetis.installed(clock=SimulatedClock()) as fake:
        yield fake


def _make(world: FakeWorld, name: str = 'panda_reach', **kwargs: object) -> PandaEnv:
    return make_panda_task(name, backend='polymetis', seed=0, render_size=24,
                           clock=world.clock, **kwargs)


def _toward(obs: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.clip(25.0 * (target - obs[:3]), -1.0, 1.0)


def test_missing_polymetis_is_a_typed_error_saying_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, 'polymetis', None)  # makes `import polymetis` fail
    with pytest.raises(PolymetisUnavailableError, match='conda install') as caught:
        make_panda_task('panda_reach', backend='polymetis')
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, PrefRLError)


def test_reset_homes_the_arm_and_closes_the_gripper(world: FakeWorld) -> None:
    env = _make(world)
    try:
        obs, info = env.reset()
        robot, gripper = world.robots[0], world.grippers[0]
        assert (robot.ip_address, robot.port, gripper.port) == ('localhost', 50051, 50052)
        names = [name for name, _ in robot.calls]
        assert names.index('go_home') < names.index('start_cartesian_impedance')
        assert gripper.calls[-1][0] == 'goto' and gripper.width == 0.0
        assert np.abs(obs[:3] - PANDA_REACH.start_position).max() < 0.03 + 0.01
        assert obs.shape == (6,)  # the arm only: the goal is hidden
        # The ramp to the start stayed within the step limit.
        ramp = [np.asarray(args[0]) for args in robot.calls_to('update_desired_ee_pose')]
        steps = np.linalg.norm(np.diff([fake_polymetis.HOME_EE_POSITION, *ramp], axis=0),
                               axis=1)
        assert len(ramp) >= 2 and steps.max() <= SafetyConfig().max_step_m + 1e-6
        assert not info['success']
    finally:
        env.close()
    assert world.robots[0].policy is None  # close stops the controller


def test_proportional_controller_reaches_a_goal_through_polymetis(world: FakeWorld) -> None:
    env = _make(world, goal='eval:3')
    try:
        obs, _ = env.reset()
        for _ in range(30):
            obs, _, _, _, info = env.step(_toward(obs, env.unwrapped.goal))
        assert info['success'] and info['distance'] < 0.01
        assert not info['ik_failure'] and env.unwrapped.safety.interventions == 0
        assert np.abs(obs[3:6]).max() < 0.05  # settled: the velocity estimate is near zero
    finally:
        env.close()


def test_ik_failure_is_detected_counted_and_the_arm_holds() -> None:
    with fake_polymetis.installed(clock=SimulatedClock(), reach_m=0.55) as world:
        env = _make(world)
        try:
            obs, _ = env.reset()
            robot = world.robots[0]
            failures = []
            for _ in range(20):  # out towards the far corner, beyond the reachable sphere
                obs, _, _, _, info = env.step(np.ones(3))
                failures.append(info['ik_failure'])
            safety = env.unwrapped.safety
            assert any(failures) and not failures[0]
            assert safety.stats.ik_failure == sum(failures) == robot.ik_failures
            assert 'ik_failure' in info['interventions']
            # Holding: the desired pose is where the arm is, inside the reachable sphere.
            np.testing.assert_allclose(robot.desired_position, robot.position, atol=1e-4)
            shoulder = np.array(fake_polymetis.SHOULDER)
            assert np.linalg.norm(robot.position - shoulder) <= 0.55
        finally:
            env.close()


def test_a_shoved_arm_is_held_instead_of_driven(world: FakeWorld) -> None:
    env = _make(world)
    try:
        obs, _ = env.reset()
        env.step(np.array([1.0, 0.0, 0.0]))
        robot = world.robots[0]
        robot.shove([0.0, 0.1, 0.0])
        updates = len(robot.calls_to('update_desired_ee_pose'))
        _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0]))
        assert info['interventions'] == ('tracking_error',) and info['tracking_error_m'] > 0.08
        assert env.unwrapped.safety.stats.tracking_error == 1
        (hold,) = robot.calls_to('update_desired_ee_pose')[updates:]
        np.testing.assert_allclose(robot.desired_position, hold[0].numpy(), atol=1e-6)
    finally:
        env.close()


def test_idle_past_the_watchdog_period_holds_mid_motion() -> None:
    # A slow arm (1 s time constant) is still moving when the commands stop.
    with fake_polymetis.installed(clock=SimulatedClock(), time_constant_s=1.0) as world:
        env = _make(world, name='panda_reach')
        try:
            env.reset()
            robot = world.robots[0]
            env.step(np.array([1.0, 0.0, 0.0]))
            target = robot.desired_position
            env.unwrapped.idle(2.0)
            safety = env.unwrapped.safety
            assert safety.stats.watchdog_hold == 1 and safety.holding
            (event,) = [e for e in safety.events if e.kind == 'watchdog_hold']
            assert event.time - safety.last_command_time == pytest.approx(0.5)
            held = robot.desired_position
            assert np.linalg.norm(target - held) > 0.005  # stopped short of the target
            np.testing.assert_allclose(robot.position, held, atol=1e-3)  # and stays there
        finally:
            env.close()


def test_watchdog_thread_holds_when_nobody_calls(world: FakeWorld) -> None:
    env = _make(world)
    try:
        env.reset()
        env.step(np.zeros(3))
        robot = world.robots[0]
        updates = len(robot.calls_to('update_desired_ee_pose'))
        world.clock.advance(1.0)  # time passes; the env is never called
        safety = env.unwrapped.safety
        deadline = time.monotonic() + 10.0
        while safety.stats.watchdog_hold == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert safety.stats.watchdog_hold == 1
        assert len(robot.calls_to('update_desired_ee_pose')) == updates + 1  # the hold
    finally:
        env.close()
    assert env.unwrapped.safety._thread is None


def test_estop_refuses_steps_and_resets(world: FakeWorld) -> None:
    env = _make(world)
    try:
        env.reset()
        robot = world.robots[0]
        env.unwrapped.safety.engage_estop('operator')
        calls = len(robot.calls)
        position = robot.position
        for _ in range(3):
            with pytest.raises(EstopEngagedError):
                env.step(np.ones(3))
            world.clock.advance(0.1)
        with pytest.raises(EstopEngagedError):
            env.reset()
        new = [name for name, _ in robot.calls[calls:]]
        assert 'go_home' not in new and robot.calls_to('go_home') == [()]
        # Only holds (desired = current pose) went out: the arm did not move.
        assert all(name in ('update_desired_ee_pose', 'get_ee_pose') for name in new)
        np.testing.assert_allclose(robot.position, position, atol=1e-3)
        assert env.unwrapped.safety.stats.refused_estop == 4
    finally:
        env.close()


def test_push_needs_a_tracker_and_reads_the_block_from_it(world: FakeWorld) -> None:
    with pytest.raises(PandaConfigError, match='tracker'):
        _make(world, name='panda_push')
    position = [0.52, 0.01]
    env = _make(world, name='panda_push', goal='train:0', tracker=lambda: position)
    try:
        obs, info = env.reset()
        np.testing.assert_allclose(obs[6:9], [0.52, 0.01, 0.025], atol=1e-6)
        assert obs.shape == (9,)  # arm and block: the goal is hidden
        assert info['distance'] == pytest.approx(np.linalg.norm(obs[6:8] - env.unwrapped.goal))
        position[:] = [0.62, 0.0]  # someone moved the block onto goal 0
        _, _, _, _, info = env.step(np.zeros(3))
        assert info['success']
        position[:] = [np.nan, 0.0]
        with pytest.raises(TrackerError):
            env.step(np.zeros(3))
    finally:
        env.close()


def test_frames_come_from_the_camera_or_a_schematic(world: FakeWorld) -> None:
    env = _make(world)
    try:
        env.reset()
        frame = env.render()
        assert frame.shape == (24, 24, 3) and frame.dtype == np.uint8 and frame.std() > 5
        red = (frame[..., 0] > 200) & (frame[..., 1] < 100)
        green = (frame[..., 1] > 150) & (frame[..., 0] < 100)
        assert red.any() and green.any()
    finally:
        env.close()
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[:, 8:32] = 255  # left half of the centred 48 x 48 crop
    env = _make(world, camera=lambda: picture)
    try:
        env.reset()
        frame = env.render()
        assert frame.shape == (24, 24, 3)
        assert (frame[:, :12] == 255).all() and (frame[:, 12:] == 0).all()
    finally:
        env.close()


def test_configuration_errors_are_typed(world: FakeWorld) -> None:
    with pytest.raises(PandaConfigError, match='localhost'):
        PolymetisConfig(ip_address='192.168.1.10')
    assert PolymetisConfig(ip_address='192.168.1.10', allow_remote=True).robot_port == 50051
    assert PolymetisConfig(ip_address='127.0.0.1').ip_address == '127.0.0.1'
    with pytest.raises(PandaConfigError):
        PolymetisConfig(kx=(1.0, 2.0))
    with pytest.raises(PandaConfigError, match="backend='polymetis'"):
        make_panda_task('panda_reach', polymetis=PolymetisConfig())
    with pytest.raises(PandaConfigError, match='backend must be'):
        make_panda_task('panda_reach', backend='ros')
    env = _make(world, polymetis=PolymetisConfig(use_gripper=False, kx=(600.0,) * 6,
                                                 kxd=(40.0,) * 6))
    try:
        env.reset()
        (gains,) = world.robots[-1].calls_to('start_cartesian_impedance')[:1]
        assert gains[0].tolist() == [600.0] * 6
        assert world.grippers == []
    finally:
        env.close()


def test_a_persons_target_reaches_nobody_and_segments_carry_no_true_reward(world) -> None:
    # The real session: the target is in the labeller's head (goal 'person'). The arm still
    # moves and its segments reach the learner, without true rewards or success flags.
    from pref_rl_robot.actor.actor import Actor, ActorConfig

    env = _make(world, goal='person')
    actor = Actor(env, ActorConfig(task='panda_reach', backend='polymetis', goal='person',
                                   seed=0))
    try:
        segments = actor.run(max_segments=2)
        assert [s.length for s in segments] == [25, 25]
        assert all(s.rewards is None and s.success is None for s in segments)
        assert all(s.observations.shape == (25, 6) for s in segments)
    finally:
        env.close()
    # A simulated target is scored as usual.
    scored = _make(world, goal='eval:1')
    actor = Actor(scored, ActorConfig(task='panda_reach', backend='polymetis', goal='eval:1'))
    try:
        segment = actor.run(max_segments=1)[0]
        assert segment.rewards is not None and np.isfinite(segment.rewards).all()
    finally:
        scored.close()
