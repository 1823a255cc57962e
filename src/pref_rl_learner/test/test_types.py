import math

import numpy as np
import pytest

from pref_rl_learner.errors import (
    InvalidLabelError,
    InvalidQueryError,
    InvalidSegmentError,
    InvalidWeightsError,
)
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import Choice, PolicyWeights, PreferenceLabel, PreferenceQuery


def test_valid_segment_exposes_shapes():
    seg = make_segment(length=10, obs_dim=5, act_dim=2, with_frames=True)
    assert seg.length == 10
    assert seg.observation_shape == (5,)
    assert seg.action_shape == (2,)
    assert seg.frames.shape == (10, 64, 64, 3)


@pytest.mark.parametrize('field', ['observations', 'actions', 'next_observations', 'rewards'])
def test_nan_is_rejected_naming_the_field(field):
    seg = make_segment(length=4, obs_dim=3)
    bad = getattr(seg, field).copy()
    bad.flat[1] = np.nan
    with pytest.raises(InvalidSegmentError, match=field):
        make_segment(length=4, obs_dim=3, **{field: bad})


def test_inconsistent_lengths_are_rejected():
    seg = make_segment(length=4, obs_dim=3)
    with pytest.raises(InvalidSegmentError, match='actions has 3 steps'):
        make_segment(length=4, obs_dim=3, actions=seg.actions[:3])
    with pytest.raises(InvalidSegmentError, match='next_observations'):
        make_segment(length=4, obs_dim=3, next_observations=seg.next_observations[:, :2])
    with pytest.raises(InvalidSegmentError, match='rewards'):
        make_segment(length=4, obs_dim=3, rewards=np.zeros(5, np.float32))


def test_frames_must_match_stride():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    assert make_segment(length=9, frames=frames, frame_stride=3).frames.shape[0] == 3
    with pytest.raises(InvalidSegmentError, match='expected 4'):
        make_segment(length=10, frames=frames, frame_stride=3)
    with pytest.raises(InvalidSegmentError, match='uint8'):
        make_segment(length=9, frames=frames.astype(np.float32), frame_stride=3)
    with pytest.raises(InvalidSegmentError, match='no frames'):
        make_segment(length=9, frame_stride=3)


def test_wrong_dtype_and_empty_segment_are_rejected():
    with pytest.raises(InvalidSegmentError, match='dtype'):
        make_segment(length=2, obs_dim=1, observations=np.array([['a'], ['b']]))
    with pytest.raises(InvalidSegmentError, match='at least one'):
        make_segment(length=0)
    with pytest.raises(InvalidSegmentError, match='segment_id'):
        make_segment(segment_id='')


def test_label_choice_is_validated():
    label = PreferenceLabel('q1', 2, 'alice', 1.5)
    assert label.choice is Choice.RIGHT
    with pytest.raises(InvalidLabelError, match='choice 0'):
        PreferenceLabel('q1', 0)
    with pytest.raises(InvalidLabelError, match='choice 9'):
        PreferenceLabel('q1', 9)
    with pytest.raises(InvalidLabelError, match='query_id'):
        PreferenceLabel('', Choice.LEFT)
    with pytest.raises(InvalidLabelError, match='response_time'):
        PreferenceLabel('q1', Choice.LEFT, response_time_s=math.nan)


def test_query_needs_matching_observation_shapes():
    with pytest.raises(InvalidQueryError, match='observation shapes differ'):
        PreferenceQuery('q', make_segment(obs_dim=3), make_segment(obs_dim=4))
    with pytest.raises(InvalidQueryError, match='query_id'):
        PreferenceQuery('', make_segment(), make_segment())


def test_policy_weights_reject_non_finite():
    weights = PolicyWeights(1, {'w': np.ones((2, 2)), 'b': np.zeros(2, np.float64)})
    assert weights.tensors['b'].dtype == np.float32
    with pytest.raises(InvalidWeightsError, match="'w'"):
        PolicyWeights(1, {'w': np.array([np.inf])})
