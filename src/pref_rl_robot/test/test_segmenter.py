import numpy as np
import pytest

from pref_rl_robot.fake_robot import FakeRobot, FakeRobotConfig
from pref_rl_robot.segmenter import Segmenter


def run(segmenter, env, steps, frames=False):
    obs, _ = env.reset(seed=0)
    out = []
    for _ in range(steps):
        action = env.sample_action()
        frame = env.render() if frames else None
        next_obs, reward, terminated, truncated, info = env.step(action)
        seg = segmenter.add(obs, action, next_obs, reward, terminated, truncated,
                            info['success'], policy_version=2, frame=frame)
        if seg is not None:
            out.append(seg)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    return out


def test_segments_are_contiguous_and_never_span_episodes():
    env = FakeRobot(FakeRobotConfig(episode_length=12))
    segments = run(Segmenter('fake', 'r', length=5), env, 24)
    assert [(s.episode, s.start_step, s.length) for s in segments] == [
        (0, 0, 5), (0, 5, 5), (0, 10, 2), (1, 0, 5), (1, 5, 5), (1, 10, 2)]
    first, second = segments[0], segments[1]
    np.testing.assert_array_equal(first.next_observations[:-1], first.observations[1:])
    np.testing.assert_array_equal(first.next_observations[-1], second.observations[0])
    assert segments[2].truncated[-1] and not segments[1].truncated.any()
    assert all(s.policy_version == 2 and s.rewards.shape == (s.length,) for s in segments)
    assert len({s.segment_id for s in segments}) == len(segments)


def test_frames_are_taken_every_stride_steps():
    env = FakeRobot(FakeRobotConfig(episode_length=100, image_size=16))
    (segment, *_rest) = run(Segmenter('fake', 'r', length=10, frame_stride=4), env, 10,
                            frames=True)
    assert segment.frames.shape == (3, 16, 16, 3) and segment.frame_stride == 4


def test_missing_frame_is_an_error():
    segmenter = Segmenter('fake', 'r', length=3, frame_stride=1)
    with pytest.raises(ValueError, match='no frame'):
        segmenter.add(np.zeros(4), np.zeros(2), np.zeros(4), 0.0, False, False, False)
