import numpy as np
import pytest

from pref_rl_robot.fake_robot import FakeRobot, FakeRobotConfig


def test_reset_is_deterministic_for_a_seed():
    a, b = FakeRobot(), FakeRobot()
    np.testing.assert_array_equal(a.reset(seed=4)[0], b.reset(seed=4)[0])
    assert not np.array_equal(a.reset(seed=5)[0], b.reset(seed=6)[0])


def test_moving_towards_the_goal_increases_reward_and_reaches_success():
    env = FakeRobot(FakeRobotConfig(episode_length=200))
    obs, _ = env.reset(seed=0)
    rewards, info, truncated = [], {'success': False}, False
    while not info['success'] and not truncated:
        direction = obs[2:] - obs[:2]
        action = direction / max(np.linalg.norm(direction), 1e-6)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
    assert info['success']
    assert rewards[-1] > rewards[0]


def test_episode_truncates_and_bad_actions_are_refused():
    env = FakeRobot(FakeRobotConfig(episode_length=3))
    env.reset(seed=1)
    flags = [env.step(np.zeros(2))[3] for _ in range(3)]
    assert flags == [False, False, True]
    with pytest.raises(ValueError, match='finite'):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match='shape'):
        env.step(np.zeros(3))


def test_render_draws_robot_and_goal():
    env = FakeRobot(FakeRobotConfig(image_size=32))
    env.reset(seed=2)
    image = env.render()
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert (image == (220, 50, 50)).all(axis=-1).any()
    assert (image == (40, 200, 40)).all(axis=-1).any()
