"""The Panda in PyBullet: control reaches goals, pushing moves the block, safety holds."""

from __future__ import annotations

import numpy as np
import pytest

from pref_rl_robot.panda import (
    EstopEngagedError,
    PandaEnv,
    RefusedCommandError,
    SafetyConfig,
    UnguardedCommandError,
)
from pref_rl_robot.tasks import InvalidActionError, make_task
from pref_rl_robot.tasks.panda_tasks import PANDA_PUSH, PANDA_REACH, make_panda_task


@pytest.fixture
def reach() -> PandaEnv:
    env = make_task('panda_reach', seed=0, render_size=32)
    yield env
    env.close()


def _toward(obs: np.ndarray, target: np.ndarray, gain: float = 25.0) -> np.ndarray:
    return np.clip(gain * (target - obs[:3]), -1.0, 1.0)


@pytest.mark.parametrize('goals, indices', [('train', (0, 7, 15)), ('eval', (0, 5))])
def test_proportional_controller_reaches_reach_goals(goals: str, indices: tuple[int]) -> None:
    for i in indices:
        env = make_task('panda_reach', goal=f'{goals}:{i}', seed=1)
        try:
            obs, info = env.reset()
            goal = env.unwrapped.goal
            assert obs.shape == (6,)  # the end effector only: the goal is hidden
            assert not info['success'] and info['distance'] > 0.15
            rewards = []
            for _ in range(40):
                obs, reward, _, _, info = env.step(_toward(obs, goal))
                rewards.append(reward)
            assert info['success'], f'goal {i}: {info["distance"]:.3f} m away'
            assert info['distance'] < 0.01 and rewards[-1] > rewards[0]
            assert env.unwrapped.safety.interventions == 0
        finally:
            env.close()


def test_pushing_moves_the_block_to_the_goal() -> None:
    env = make_task('panda_push', goal='train:0', seed=0)
    try:
        obs, info = env.reset()  # goal 12 cm in +x of the block
        goal = env.unwrapped.goal
        block_start = obs[6:9].copy()
        assert not info['success'] and abs(block_start[2] - 0.025) < 0.003
        # Go down behind the block, then push it along +x.
        for target_z, steps in ((0.1, 15), (0.02, 15)):
            for _ in range(steps):
                obs, *_ = env.step(_toward(obs, np.array([block_start[0] - 0.07,
                                                          block_start[1], target_z])))
        np.testing.assert_allclose(obs[6:9], block_start, atol=2e-3)  # not touched yet
        for _ in range(40):
            action = np.array([1.0, np.clip(20 * (obs[7] - obs[1]), -1, 1),
                               np.clip(25 * (0.02 - obs[2]), -1, 1)])
            obs, reward, _, _, info = env.step(action)
            if info['success']:
                break
        assert obs[6] - block_start[0] > 0.07, 'the block did not move along the push'
        assert info['success'] and np.linalg.norm(obs[6:8] - goal) < 0.05
        assert reward > -0.1
    finally:
        env.close()


def test_targets_stay_in_the_task_box(reach: PandaEnv) -> None:
    obs, _ = reach.reset()
    for _ in range(25):
        obs, _, _, _, info = reach.step(np.array([0.0, 0.0, -1.0]))
    floor = PANDA_REACH.workspace_low[2]
    assert obs[2] > floor - 0.003 and abs(obs[2] - floor) < 0.005
    assert 'clamped_box' in info['interventions']
    stats = reach.unwrapped.safety.stats
    assert stats.clamped_box > 5 and stats.total == stats.clamped_box
    assert PANDA_PUSH.workspace_low[2] > 0.0  # the push box keeps the fingers off the table


def test_malformed_actions_are_refused_counted_and_hold(reach: PandaEnv) -> None:
    reach.reset()
    safety = reach.unwrapped.safety
    for action in ([np.nan, 0, 0], [0, np.inf, 0], [0.0, 0.0], 'down'):
        with pytest.raises(InvalidActionError) as caught:
            reach.step(action)
        assert isinstance(caught.value, RefusedCommandError)
    stats = safety.stats
    assert (stats.refused_nonfinite, stats.refused_shape) == (2, 2) and safety.holding
    # The episode goes on: a refused action is not a step.
    for _ in range(PANDA_REACH.spec.episode_length - 1):
        reach.step(np.zeros(3))
    assert reach.step(np.zeros(3))[3] is True


def test_estop_refuses_steps_and_the_arm_stays_put(reach: PandaEnv) -> None:
    obs, _ = reach.reset()
    for _ in range(3):
        obs, *_ = reach.step(np.array([1.0, 1.0, -1.0]))  # moving fast
    safety = reach.unwrapped.safety
    safety.engage_estop('test')
    held = reach.unwrapped.backend.ee_position()
    for _ in range(5):
        with pytest.raises(EstopEngagedError):
            reach.step(np.array([1.0, 1.0, -1.0]))
        reach.unwrapped.idle(0.2)
    with pytest.raises(EstopEngagedError):
        reach.reset()
    assert np.linalg.norm(reach.unwrapped.backend.ee_position() - held) < 0.005
    assert safety.stats.refused_estop == 6 and safety.estop_engaged
    safety.release_estop()
    before = reach.unwrapped.backend.ee_position()
    obs, *_ = reach.step(np.array([1.0, 0.0, 0.0]))
    assert obs[0] - before[0] > 0.01


def test_a_stalled_command_stream_makes_the_arm_hold(reach: PandaEnv) -> None:
    obs, _ = reach.reset()
    for _ in range(3):
        obs, *_ = reach.step(np.array([1.0, -1.0, -1.0]))
    safety = reach.unwrapped.safety
    last_command = safety.last_command_time
    reach.unwrapped.idle(1.5)
    assert safety.stats.watchdog_hold == 1 and safety.holding
    (event,) = [e for e in safety.events if e.kind == 'watchdog_hold']
    # Held within the watchdog period (rounded up to one 1/240 s physics step).
    late = event.time - last_command - SafetyConfig().watchdog_s
    assert -1e-9 <= late <= 1 / 240 + 1e-9
    position = reach.unwrapped.backend.ee_position()
    reach.unwrapped.idle(1.0)
    assert np.linalg.norm(reach.unwrapped.backend.ee_position() - position) < 1e-3
    assert safety.stats.watchdog_hold == 1
    # Stepping again resumes control.
    reach.step(np.array([0.0, 0.0, 1.0]))
    assert not safety.holding


def test_the_backend_cannot_be_driven_around_the_envelope(reach: PandaEnv) -> None:
    reach.reset()
    backend = reach.unwrapped.backend
    with pytest.raises(UnguardedCommandError):
        backend.move_ee(None, np.array([0.5, 0.0, 0.3]), 0.1)
    with pytest.raises(UnguardedCommandError):
        backend.hold(object())


def test_envs_coexist_with_their_own_physics_and_frames() -> None:
    left = make_panda_task('panda_reach', seed=0, render_size=32)
    right = make_panda_task('panda_reach', goal='train:15', seed=0, render_size=32)
    try:
        a, _ = left.reset()
        b, _ = right.reset()
        np.testing.assert_allclose(a[:3], b[:3])  # same seed: same start
        for _ in range(5):
            a, *_ = left.step(np.array([1.0, 0.0, 0.0]))
            b, *_ = right.step(np.array([-1.0, 0.0, 0.0]))
        assert a[0] - b[0] > 0.15
        frame_left, frame_right = left.render(), right.render()
        assert frame_left.shape == (32, 32, 3) and frame_left.dtype == np.uint8
        assert np.abs(frame_left.astype(int) - frame_right).sum() > 0
        left.close()
        b, *_ = right.step(np.array([-1.0, 0.0, 0.0]))  # the other client lives on
        assert np.isfinite(b).all() and right.render().std() > 5
    finally:
        left.close()
        right.close()
