"""Clips without frames are drawn from their observations; clips with frames show the frame
of each step; episodes are joined from the segment stream."""

import numpy as np
import pytest

from pref_rl_gui.clips import clips_of
from pref_rl_gui.episodes import EpisodeAssembler
from pref_rl_gui.schematic import MIN_ZOOM_SPAN, schematics, segment_schematics, states


def test_point_mass_top_view_shares_one_scale(segment_factory):
    a, b = segment_factory('a'), segment_factory('b')
    left, right = segment_schematics([a, b])
    assert left.bounds == right.bounds and left.arena == (-1.0, 1.0, -1.0, 1.0)
    path = left.paths[0][1]
    assert path.shape == (11, 2)  # steps 0..T
    np.testing.assert_array_equal(path[:10], a.observations[:, :2])
    np.testing.assert_array_equal(path[10], a.next_observations[-1, :2])
    assert left.goal is None  # the target is hidden from the observations
    x0, x1, y0, y1 = left.bounds
    assert x1 - x0 == pytest.approx(y1 - y0)  # square
    assert x1 - x0 >= MIN_ZOOM_SPAN * 2
    points = np.concatenate([left.paths[0][1], right.paths[0][1]])
    assert (points[:, 0] >= x0).all() and (points[:, 0] <= x1).all()
    assert (points[:, 1] >= y0).all() and (points[:, 1] <= y1).all()


def test_small_motions_are_zoomed_in_on():
    obs = np.zeros((11, 4), np.float32)
    obs[:, 0] = np.linspace(0.50, 0.52, 11)  # a tiny move
    (drawing,) = schematics('point_mass', [obs])
    x0, x1, _, _ = drawing.bounds
    assert x1 - x0 == pytest.approx(MIN_ZOOM_SPAN * 2 * 1.15)
    assert x0 < 0.50 and x1 > 0.52


def test_reacher_arm_and_fingertip(segment_factory):
    # Joint angles (cos, sin) drawn through the arm's forward kinematics, checked against
    # the MuJoCo model's own fingertip.
    from pref_rl_robot.tasks import make_task

    env = make_task('reacher', seed=0, render_size=16)
    obs, _ = env.reset(seed=2)
    (drawing,) = schematics('reacher', [obs[None]])
    np.testing.assert_allclose(drawing.paths[0][1][0], env.unwrapped.fingertip(), atol=1e-5)
    assert drawing.goal is None
    seg = segment_factory('r', task='reacher', obs_dim=6)
    (drawing,) = segment_schematics([seg])
    s = states([seg])
    assert drawing.arm.shape == (11, 3, 2)
    np.testing.assert_allclose(np.hypot(*drawing.arm[:, 1].T), 0.1, atol=1e-6)
    np.testing.assert_allclose(drawing.arm[:, 2], drawing.paths[0][1])
    assert len(s) == 11


def test_unknown_layouts_fall_back_to_shared_traces(segment_factory):
    a = segment_factory('a', task='cartpole', obs_dim=3)
    b = segment_factory('b', task='cartpole', obs_dim=3)
    left, right = segment_schematics([a, b])
    assert left.bounds is None and left.trace_names == ('obs[0]', 'obs[1]', 'obs[2]')
    joined = np.concatenate([left.traces, right.traces])
    np.testing.assert_allclose(joined.min(axis=0), 0.0)
    np.testing.assert_allclose(joined.max(axis=0), 1.0)
    # A known task name with an unexpected observation size is drawn as traces too.
    (odd,) = segment_schematics([segment_factory('m', task='button-press-v3', obs_dim=12)])
    assert odd.bounds is None and odd.traces.shape == (11, 8)


def test_clip_frames_follow_the_step_across_segments(segment_factory):
    segs = [segment_factory(f's{k}', start_step=10 * k, frames=True) for k in range(2)]
    (clip,) = clips_of([segs])
    assert clip.steps == 20 and clip.has_frames and clip.starts == (0, 10)
    expected = {0: segs[0].frames[0], 4: segs[0].frames[0], 5: segs[0].frames[1],
                10: segs[1].frames[0], 19: segs[1].frames[1], 20: segs[1].frames[1],
                99: segs[1].frames[1]}
    for step, frame in expected.items():
        np.testing.assert_array_equal(clip.frame(step), frame)
    no_frames = [segs[0], segment_factory('plain', start_step=10)]
    (clip,) = clips_of([no_frames])
    assert not clip.has_frames and clip.frame(3) is None
    assert clip.schematic.paths[0][1].shape == (21, 2)
    assert 'episode 0, steps 0-20' in clip.label


def test_episodes_are_joined_from_step_zero_without_gaps(segment_factory):
    asm = EpisodeAssembler(max_open=2)
    assert asm.add(segment_factory('a0', episode=1)) is None
    assert asm.add(segment_factory('b1', episode=2, start_step=10)) is None  # joined late
    assert asm.add(segment_factory('b2', episode=2, start_step=20, end=True)) is None
    episode = asm.add(segment_factory('a1', episode=1, start_step=10, end=True))
    assert episode.index == 1 and episode.length == 20
    assert [s.segment_id for s in episode.segments] == ['a0', 'a1']
    asm.add(segment_factory('c0', episode=3))
    assert asm.add(segment_factory('c2', episode=3, start_step=20, end=True)) is None  # gap
    for source in ('x', 'y', 'z'):  # more open episodes than max_open: the oldest go
        asm.add(segment_factory(f'{source}0', source_id=source))
    assert asm.add(segment_factory('x1', source_id='x', start_step=10, end=True)) is None
    assert asm.add(segment_factory('z1', source_id='z', start_step=10, end=True)) is not None
    assert asm.completed == 2
