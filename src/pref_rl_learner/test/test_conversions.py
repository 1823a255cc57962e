import array

import numpy as np
import pytest

from pref_rl_learner.errors import InvalidLabelError, InvalidSegmentError, MalformedMessageError
from pref_rl_learner.ros import conversions as conv
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import (
    Choice,
    LearnerStatus,
    Phase,
    PolicyWeights,
    PreferenceLabel,
    PreferenceQuery,
)


def assert_segments_equal(a, b):
    for name in ('segment_id', 'task', 'source_id', 'episode', 'start_step', 'policy_version',
                 'stamp_ns', 'frame_stride'):
        assert getattr(a, name) == getattr(b, name), name
    for name in ('observations', 'actions', 'next_observations', 'rewards', 'terminated',
                 'truncated', 'success', 'frames'):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None, name
        else:
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize('with_frames', [False, True])
def test_segment_round_trip(with_frames):
    seg = make_segment(with_frames=with_frames)
    msg = conv.segment_to_ros(seg)
    assert isinstance(msg.observations, array.array)  # the fast path, not a list
    assert msg.length == 25 and list(msg.observation_shape) == [39]
    assert_segments_equal(seg, conv.segment_from_ros(msg))


def test_segment_round_trip_without_optional_fields_and_with_image_observations():
    seg = make_segment(length=3, rewards=None, success=None,
                       observations=np.zeros((3, 8, 8, 3), np.float32),
                       next_observations=np.ones((3, 8, 8, 3), np.float32))
    back = conv.segment_from_ros(conv.segment_to_ros(seg))
    assert back.rewards is None and back.success is None
    assert back.observation_shape == (8, 8, 3)
    assert_segments_equal(seg, back)


def test_segment_survives_serialization():
    from rclpy.serialization import deserialize_message, serialize_message

    from pref_rl_msgs.msg import Segment as SegmentMsg
    seg = make_segment(with_frames=True, seed=3)
    wire = serialize_message(conv.segment_to_ros(seg))
    assert_segments_equal(seg, conv.segment_from_ros(deserialize_message(wire, SegmentMsg)))


def test_malformed_segment_message_names_the_field():
    msg = conv.segment_to_ros(make_segment(length=5, obs_dim=3))
    msg.length = 6
    with pytest.raises(MalformedMessageError, match='observations: 15 values'):
        conv.segment_from_ros(msg)
    msg = conv.segment_to_ros(make_segment(length=5, obs_dim=3))
    msg.rewards = array.array('f', [1.0])
    with pytest.raises(MalformedMessageError, match='rewards'):
        conv.segment_from_ros(msg)
    msg = conv.segment_to_ros(make_segment(length=5, obs_dim=3, with_frames=True))
    msg.frame_shape = array.array('I', [64, 64])
    with pytest.raises(MalformedMessageError, match='frame_shape'):
        conv.segment_from_ros(msg)


def test_nan_in_segment_message_is_rejected():
    msg = conv.segment_to_ros(make_segment(length=5, obs_dim=3))
    msg.actions[2] = float('nan')
    with pytest.raises(InvalidSegmentError, match='actions'):
        conv.segment_from_ros(msg)


def test_query_round_trip():
    query = PreferenceQuery('q-17', make_segment(seed=1, with_frames=True),
                            make_segment(seed=2, with_frames=True), feedback_session=4,
                            sampler='disagreement', reward_model_version=9, stamp_ns=12345)
    back = conv.query_from_ros(conv.query_to_ros(query))
    assert (back.query_id, back.feedback_session, back.sampler, back.reward_model_version,
            back.stamp_ns) == ('q-17', 4, 'disagreement', 9, 12345)
    assert_segments_equal(query.left, back.left)
    assert_segments_equal(query.right, back.right)


@pytest.mark.parametrize('choice', list(Choice))
def test_label_round_trip(choice):
    label = PreferenceLabel('q-1', choice, 'alice', 2.25, stamp_ns=1_000_000_001)
    assert conv.label_from_ros(conv.label_to_ros(label)) == label


def test_label_constants_match_the_message():
    from pref_rl_msgs.msg import PreferenceLabel as LabelMsg
    for choice in Choice:
        assert getattr(LabelMsg, choice.name) == choice.value


def test_unknown_choice_in_message_is_rejected():
    msg = conv.label_to_ros(PreferenceLabel('q-1', Choice.LEFT))
    msg.choice = 0
    with pytest.raises(InvalidLabelError, match='choice 0'):
        conv.label_from_ros(msg)


def test_weights_round_trip():
    rng = np.random.default_rng(0)
    tensors = {'trunk.0.weight': rng.normal(size=(256, 39)), 'trunk.0.bias': rng.normal(size=256),
               'log_alpha': np.float32(0.1), 'empty': np.zeros((0, 3))}
    weights = PolicyWeights(5, tensors, architecture='{"hidden": [256]}', stamp_ns=99)
    back = conv.weights_from_ros(conv.weights_to_ros(weights))
    assert (back.version, back.architecture, back.stamp_ns) == (5, '{"hidden": [256]}', 99)
    assert list(back.tensors) == list(tensors)
    for name, value in weights.tensors.items():
        np.testing.assert_array_equal(back.tensors[name], value)
        assert back.tensors[name].shape == value.shape


def test_malformed_weights_are_rejected():
    msg = conv.weights_to_ros(PolicyWeights(1, {'w': np.ones((2, 3))}))
    msg.data = array.array('f', [1.0] * 5)
    with pytest.raises(MalformedMessageError, match='runs past'):
        conv.weights_from_ros(msg)
    msg.data = array.array('f', [1.0] * 7)
    with pytest.raises(MalformedMessageError, match='belong to no tensor'):
        conv.weights_from_ros(msg)
    msg.ranks = array.array('I', [1])
    with pytest.raises(MalformedMessageError, match='ranks sum'):
        conv.weights_from_ros(msg)


def test_status_round_trip():
    status = LearnerStatus(phase=Phase.FEEDBACK, env_steps=10_000, gradient_steps=9000,
                           feedback_session=2, queries_published=16, labels_stored=15,
                           labels_skipped=1, feedback_budget=100, reward_model_version=2,
                           reward_model_accuracy=0.875, policy_version=40,
                           mean_true_return=-12.5, success_rate=0.25, stamp_ns=5)
    assert conv.status_from_ros(conv.status_to_ros(status)) == status
    msg = conv.status_to_ros(status)
    msg.phase = 77
    with pytest.raises(MalformedMessageError, match='phase 77'):
        conv.status_from_ros(msg)


def test_stamp_round_trip():
    for ns in (0, 1, 1_700_000_000_999_999_999):
        assert conv.stamp_from_ros(conv.stamp_to_ros(ns)) == ns
