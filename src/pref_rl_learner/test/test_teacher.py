"""Scripted teachers: label statistics match B-Pref's definitions, and the threshold fixes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from bpref_reference import BPrefTeacher

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.checkpoint import load_checkpoint, save_checkpoint
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.teacher import TEACHER_PRESETS, ScriptedTeacher, TeacherConfig, TeacherError
from pref_rl_learner.types import Choice

LEFT, RIGHT, EQUAL, SKIP = (int(c) for c in (Choice.LEFT, Choice.RIGHT, Choice.EQUAL,
                                             Choice.SKIP))


def make_pairs(left_rewards: np.ndarray, right_rewards: np.ndarray) -> SegmentPairs:
    """Pairs with dummy observations/actions and the given true rewards ``[P, T]``."""
    left_rewards = np.asarray(left_rewards, np.float32)
    right_rewards = np.asarray(right_rewards, np.float32)
    num, length = left_rewards.shape
    obs = np.zeros((num, length, 2), np.float32)
    act = np.zeros((num, length, 1), np.float32)
    return SegmentPairs(obs, act, obs, act, left_rewards, right_rewards)


def constant_pairs(returns_left: float, returns_right: float, num: int,
                   length: int = 5) -> SegmentPairs:
    """``num`` identical pairs whose segments spread their return evenly over the steps."""
    return make_pairs(np.full((num, length), returns_left / length),
                      np.full((num, length), returns_right / length))


def assert_binomial(successes: int, trials: int, p: float, sigmas: float = 4.5) -> None:
    """The count is within ``sigmas`` binomial standard deviations of ``trials·p``."""
    std = math.sqrt(trials * p * (1 - p))
    assert abs(successes - trials * p) <= sigmas * std + 1, (successes, trials, p)


@pytest.mark.parametrize('beta', [0.5, 1.0, 3.0])
def test_p_right_is_sigmoid_of_beta_times_return_difference(beta):
    rng = np.random.default_rng(0)
    teacher = ScriptedTeacher(TeacherConfig(beta=beta), rng)
    trials = 4000
    for delta in (-2.0, -0.5, 0.0, 0.4, 1.5):
        labels = teacher.label(constant_pairs(1.0, 1.0 + delta, trials))
        assert set(np.unique(labels)) <= {LEFT, RIGHT}
        p = 1 / (1 + math.exp(-beta * delta))
        assert_binomial(int(np.sum(labels == RIGHT)), trials, p)


def test_p_right_uses_the_myopic_return():
    # Right is better undiscounted (1.0 early vs 0.6 late), worse once early steps fade.
    gamma, beta, length, trials = 0.8, 2.0, 6, 6000
    left = np.zeros((trials, length))
    left[:, -1] = 0.6
    right = np.zeros((trials, length))
    right[:, 0] = 1.0
    labels = ScriptedTeacher(TeacherConfig(beta=beta, gamma=gamma),
                             np.random.default_rng(1)).label(make_pairs(left, right))
    delta_gamma = 1.0 * gamma ** (length - 1) - 0.6
    assert_binomial(int(np.sum(labels == RIGHT)), trials, 1 / (1 + math.exp(-beta * delta_gamma)))


def test_beta_zero_answers_at_random():
    labels = ScriptedTeacher(TeacherConfig(beta=0.0), np.random.default_rng(2)).label(
        constant_pairs(0.0, 10.0, 4000))
    assert_binomial(int(np.sum(labels == RIGHT)), 4000, 0.5)


def test_oracle_is_always_right_and_ties_go_left():
    rng = np.random.default_rng(3)
    left, right = rng.normal(size=(500, 10)), rng.normal(size=(500, 10))
    right[:50] = left[:50]  # exact ties
    labels = ScriptedTeacher(TEACHER_PRESETS['oracle'], rng).label(make_pairs(left, right))
    s1 = left.astype(np.float32).sum(1, dtype=np.float64)
    s2 = right.astype(np.float32).sum(1, dtype=np.float64)
    np.testing.assert_array_equal(labels, np.where(s2 > s1, RIGHT, LEFT))
    assert (labels[:50] == LEFT).all()
    assert labels.dtype == np.int8


def test_mistakes_flip_about_eps_of_the_answers():
    rng = np.random.default_rng(4)
    left, right = rng.normal(size=(8000, 5)), rng.normal(size=(8000, 5))
    pairs = make_pairs(left, right)
    truth = ScriptedTeacher(TeacherConfig(), rng).label(pairs)
    noisy = ScriptedTeacher(TEACHER_PRESETS['mistake'], rng).label(pairs)
    assert_binomial(int(np.sum(noisy != truth)), 8000, 0.1)
    assert set(np.unique(noisy)) == {LEFT, RIGHT}


def test_myopic_weighting_changes_labels_exactly_when_later_steps_dominate():
    rng = np.random.default_rng(5)
    length, gamma = 10, 0.9
    left, right = rng.normal(size=(3000, length)), rng.normal(size=(3000, length))
    pairs = make_pairs(left, right)
    myopic = ScriptedTeacher(TEACHER_PRESETS['myopic'], rng).label(pairs)
    full = ScriptedTeacher(TEACHER_PRESETS['oracle'], rng).label(pairs)
    weights = gamma ** (length - 1 - np.arange(length))  # later steps weigh more
    r1, r2 = pairs.left_rewards.astype(np.float64), pairs.right_rewards.astype(np.float64)
    weighted_right = r2 @ weights > r1 @ weights
    np.testing.assert_array_equal(myopic == RIGHT, weighted_right)
    changed = myopic != full
    assert 0 < changed.sum() < 3000  # some, not all, answers change
    np.testing.assert_array_equal(changed, weighted_right != (r2.sum(1) > r1.sum(1)))
    # A hand-made pair: 1.0 at the first step loses to 0.5 at the last once γ = 0.9.
    early, late = np.zeros((1, length)), np.zeros((1, length))
    early[0, 0], late[0, -1] = 1.0, 0.5
    hand = make_pairs(early, late)
    assert ScriptedTeacher(TEACHER_PRESETS['oracle'], rng).label(hand)[0] == LEFT
    assert ScriptedTeacher(TEACHER_PRESETS['myopic'], rng).label(hand)[0] == RIGHT


def observed(config: TeacherConfig, returns: list[float], length: int = 100,
             seed: int = 0) -> ScriptedTeacher:
    teacher = ScriptedTeacher(config, np.random.default_rng(seed))
    for ret in returns:
        teacher.observe_episode_return(ret, length)
    return teacher


def test_equal_threshold_yields_equal():
    # scale = 200 · 10 / 100 = 20, δ_equal = 0.1 · 20 = 2.
    teacher = observed(TEACHER_PRESETS['equal'], [200.0] * 10)
    assert teacher.thresholds(10) == (0.0, pytest.approx(2.0))
    pairs = make_pairs(np.full((4, 10), 1.0), np.array([[1.0] * 10, [1.15] * 10, [1.25] * 10,
                                                        [0.7] * 10]))
    np.testing.assert_array_equal(teacher.label(pairs), [EQUAL, EQUAL, RIGHT, LEFT])


def test_equal_threshold_uses_the_magnitude_for_negative_returns():
    teacher = observed(TEACHER_PRESETS['equal'], [-200.0] * 10)
    assert teacher.thresholds(10) == (0.0, pytest.approx(2.0))
    pairs = make_pairs(np.full((3, 10), -1.0), np.array([[-1.1] * 10, [-0.7] * 10,
                                                         [-1.5] * 10]))
    np.testing.assert_array_equal(teacher.label(pairs), [EQUAL, RIGHT, LEFT])


def test_skip_with_positive_returns_is_b_pref_rule():
    # scale = 10, δ_skip = 1: skip unless max(S¹, S²) > 1.
    teacher = observed(TEACHER_PRESETS['skip'], [100.0] * 10)
    left = np.array([0.5, 0.9, 1.0, 0.2, 3.0])[:, None] * np.full((1, 10), 0.1)
    right = np.array([0.8, 0.1, 1.2, 0.95, 0.0])[:, None] * np.full((1, 10), 0.1)
    labels = teacher.label(make_pairs(left, right))
    np.testing.assert_array_equal(labels, [SKIP, SKIP, RIGHT, SKIP, LEFT])
    s1, s2 = left.sum(1), right.sum(1)
    np.testing.assert_array_equal(labels == SKIP, ~(np.maximum(s1, s2) > 1.0 + 1e-6))


def test_skip_with_negative_returns_skips_pairs_near_the_worst():
    # Point-mass-like costs: episodes average −100 per 100 steps, scale = −10, δ_skip = 1.
    teacher = observed(TEACHER_PRESETS['skip'], [-100.0] * 10)
    returns = np.array([[-10.0, -9.5], [-10.0, -2.0], [-3.0, -9.2], [-9.8, -9.9]])
    pairs = constant_pairs(0, 0, 4, length=10)._replace(
        left_rewards=np.repeat(returns[:, :1] / 10, 10, axis=1).astype(np.float32),
        right_rewards=np.repeat(returns[:, 1:] / 10, 10, axis=1).astype(np.float32))
    labels = teacher.label(pairs)
    # Floor F = −10 (worst recent episode per 10 steps): skip when max(S¹, S²) − F ≤ 1.
    np.testing.assert_array_equal(labels, [SKIP, RIGHT, LEFT, SKIP])
    # B-Pref's literal rule (skip unless max > scale·ε = −1) would skip every pair here.
    assert (np.maximum(returns[:, 0], returns[:, 1]) <= -1.0).all()


def test_skip_rule_works_for_a_single_pair_batch_with_negative_returns():
    teacher = observed(TEACHER_PRESETS['skip'], [-100.0] * 10)  # per-10-step floor −10
    assert teacher.label(constant_pairs(-9.5, -9.6, 1, length=10))[0] == SKIP
    assert teacher.label(constant_pairs(-3.0, -3.1, 1, length=10))[0] == LEFT


def test_thresholds_after_two_rounds_are_scale_times_eps_not_eps_squared():
    config = TeacherConfig(eps_skip=0.1, eps_equal=0.2)
    teacher = observed(config, [100.0] * 10)  # scale 10 for H = 10
    assert teacher.thresholds(10) == (pytest.approx(1.0), pytest.approx(2.0))
    teacher.label(constant_pairs(5.0, 6.0, 8, length=10))  # round 1
    for _ in range(10):
        teacher.observe_episode_return(300.0, 100)  # scale 30 now
    teacher.label(constant_pairs(5.0, 6.0, 8, length=10))  # round 2
    skip, equal = teacher.thresholds(10)
    assert (skip, equal) == (pytest.approx(3.0), pytest.approx(6.0))  # not 0.3 / 1.2 (ε²)
    # and the labels use them: |ΔS| = 5 < 6 is EQUAL, max 2.5 ≤ 3 is SKIP.
    labels = teacher.label(make_pairs(np.array([[1.0] * 10, [0.1] * 10]),
                                      np.array([[1.5] * 10, [0.25] * 10])))
    np.testing.assert_array_equal(labels, [EQUAL, SKIP])


def test_no_episode_yet_means_no_skip_and_no_equal():
    teacher = ScriptedTeacher(TeacherConfig(eps_equal=0.5, eps_skip=0.5),
                              np.random.default_rng(0))
    assert teacher.scale(10) is None and teacher.thresholds(10) == (0.0, 0.0)
    labels = teacher.label(make_pairs(np.array([[0.2] * 10, [1.0] * 10]),
                                      np.array([[0.25] * 10, [0.15] * 10])))
    np.testing.assert_array_equal(labels, [RIGHT, LEFT])


def test_a_pairs_answer_does_not_depend_on_its_batch():
    # The skip floor and scale come from the teacher's episodes, never from the batch: the
    # same pair is SKIP alone and beside a much worse pair (it was RIGHT there before).
    for returns in ([-100.0] * 10, [100.0] * 10, [-50.0, 50.0] * 5):
        alone = observed(TEACHER_PRESETS['skip'], returns).label(
            constant_pairs(-9.5, -9.4, 1, length=10))
        beside = observed(TEACHER_PRESETS['skip'], returns).label(make_pairs(
            np.array([[-0.95] * 10, [-5.0] * 10]), np.array([[-0.94] * 10, [-5.0] * 10])))
        assert alone[0] == beside[0], returns
    rng = np.random.default_rng(3)
    rewards = rng.normal(-1.0, 1.0, size=(2, 1000, 10))
    teacher = observed(TEACHER_PRESETS['skip'], [-100.0] * 10)
    whole = teacher.label(make_pairs(*rewards))
    one_by_one = [observed(TEACHER_PRESETS['skip'], [-100.0] * 10).label(
        make_pairs(rewards[0][i:i + 1], rewards[1][i:i + 1]))[0] for i in range(1000)]
    np.testing.assert_array_equal(whole, one_by_one)


REWARD_SIGNS = {'positive': (1.0, 0.5), 'negative': (-1.0, 0.5), 'mixed': (0.0, 1.0)}
"""Per-step true rewards ~ N(mean, std) for the B-Pref comparison."""


def _bpref_config(name: str) -> TeacherConfig:
    return dataclasses.replace(TEACHER_PRESETS[name], bpref_thresholds=True)


@pytest.mark.parametrize('sign', sorted(REWARD_SIGNS))
@pytest.mark.parametrize('name', sorted(TEACHER_PRESETS))
def test_bpref_thresholds_reproduce_bpref_labels(name: str, sign: str):
    """With ``bpref_thresholds`` every preset answers as B-Pref's own code over two sessions
    (the second with its ε² thresholds): exactly for the deterministic presets, in
    distribution for the random ones."""
    mean, std = REWARD_SIGNS[sign]
    rng = np.random.default_rng(7)
    config = _bpref_config(name)
    episode_returns = list(rng.normal(mean * 100, 20, size=10))
    ours = observed(config, episode_returns, seed=1)
    margin = float(np.mean(episode_returns)) * 10 / 100
    beta = -1.0 if math.isinf(config.beta) else config.beta
    theirs = BPrefTeacher(beta, config.gamma, config.eps_mistake, config.eps_skip,
                          config.eps_equal, np.random.default_rng(2))
    random_preset = config.beta < math.inf or config.eps_mistake > 0
    for session in range(2):
        r1, r2 = rng.normal(mean, std, size=(2, 20_000, 10))
        theirs.set_thresholds(margin, first_session=session == 0)
        assert ours.thresholds(10) == (pytest.approx(theirs.thres_skip),
                                       pytest.approx(theirs.thres_equal))
        labels = ours.label(make_pairs(r1, r2))
        keep, expected = theirs.get_label(r1.astype(np.float32).astype(np.float64),
                                          r2.astype(np.float32).astype(np.float64))
        np.testing.assert_array_equal(labels == SKIP, ~keep)
        kept = labels[keep]
        mapped = np.select([expected == -1, expected == 1], [EQUAL, RIGHT], LEFT)
        if not random_preset:
            np.testing.assert_array_equal(kept, mapped)
        else:
            for choice in (LEFT, RIGHT, EQUAL):
                assert abs(np.mean(kept == choice) - np.mean(mapped == choice)) < 0.015


@pytest.mark.parametrize('sign', sorted(REWARD_SIGNS))
def test_default_thresholds_equal_bpref_first_session_on_positive_rewards(sign: str):
    """The fixed rule is B-Pref's first-session rule where that rule is meaningful (positive
    returns) and keeps skipping sensibly where it is not (B-Pref skips nothing on negative
    returns and its floor of 0 misjudges mixed ones)."""
    mean, std = REWARD_SIGNS[sign]
    rng = np.random.default_rng(11)
    episode_returns = list(rng.normal(mean * 100, 20, size=10))
    r1, r2 = rng.normal(mean, std, size=(2, 20_000, 10))
    ours = observed(TEACHER_PRESETS['skip'], episode_returns).label(make_pairs(r1, r2))
    theirs = BPrefTeacher(-1.0, 1.0, 0.0, 0.1, 0.0, np.random.default_rng(0))
    theirs.set_thresholds(float(np.mean(episode_returns)) * 10 / 100, first_session=True)
    keep, _ = theirs.get_label(r1, r2)
    skip_rate = float(np.mean(ours == SKIP))
    if sign == 'positive':
        np.testing.assert_array_equal(ours == SKIP, ~keep)
    else:
        assert 0.0 < skip_rate < 0.5, skip_rate


def test_scale_uses_the_last_margin_episodes_and_their_lengths():
    teacher = observed(TeacherConfig(margin_episodes=3), [1000.0, 10.0, 20.0])
    teacher.observe_episode_return(30.0, 50)  # drops the 1000
    assert teacher.scale(10) == pytest.approx((1.0 + 2.0 + 6.0) / 3)


def test_skip_overrides_equal_and_mistakes_never_touch_equal_or_skip():
    config = TeacherConfig(eps_skip=0.1, eps_equal=0.1, eps_mistake=1.0)
    teacher = observed(config, [100.0] * 10)  # both thresholds 1 for H = 10
    pairs = make_pairs(np.array([[0.05] * 10, [0.3] * 10, [0.3] * 10]),
                       np.array([[0.06] * 10, [0.35] * 10, [0.6] * 10]))
    # pair 0: max 0.6 ≤ 1 and |ΔS| < 1 → SKIP; pair 1: |ΔS| 0.5 → EQUAL; pair 2: flipped.
    np.testing.assert_array_equal(teacher.label(pairs), [SKIP, EQUAL, LEFT])


def test_every_preset_is_constructible_and_matches_b_pref():
    # B-Pref's six, and the coin-flip control.
    assert set(TEACHER_PRESETS) == {'oracle', 'mistake', 'noisy', 'skip', 'myopic', 'equal',
                                    'random'}
    assert TEACHER_PRESETS['random'] == TeacherConfig(beta=0.0)
    assert TEACHER_PRESETS['oracle'] == TeacherConfig(math.inf, 1.0, 0.0, 0.0, 0.0)
    assert TEACHER_PRESETS['mistake'].eps_mistake == 0.1
    assert TEACHER_PRESETS['noisy'].beta == 1.0
    assert TEACHER_PRESETS['skip'].eps_skip == 0.1
    assert TEACHER_PRESETS['myopic'].gamma == 0.9
    assert TEACHER_PRESETS['equal'].eps_equal == 0.1
    pairs = constant_pairs(1.0, 2.0, 3)
    for config in TEACHER_PRESETS.values():
        labels = ScriptedTeacher(config, np.random.default_rng(0)).label(pairs)
        assert labels.shape == (3,)


def test_config_validation_and_yaml_infinity():
    assert from_mapping(TeacherConfig, {'beta': float('inf')}).beta == math.inf
    for bad in ({'beta': -1.0}, {'beta': math.nan}, {'gamma': 0.0}, {'gamma': 1.5},
                {'eps_mistake': 1.5}, {'eps_skip': -0.1}, {'eps_equal': math.inf},
                {'margin_episodes': 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TeacherConfig(**bad)


def test_missing_or_bad_rewards_raise_a_typed_error():
    teacher = ScriptedTeacher(TeacherConfig(), np.random.default_rng(0))
    pairs = constant_pairs(1.0, 2.0, 2)
    with pytest.raises(TeacherError, match='true rewards'):
        teacher.label(pairs._replace(right_rewards=None))
    with pytest.raises(TeacherError, match='right_rewards has shape'):
        teacher.label(pairs._replace(right_rewards=np.zeros((3, 5), np.float32)))
    with pytest.raises(TeacherError, match='NaN'):
        teacher.label(pairs._replace(left_rewards=np.full((2, 5), np.nan, np.float32)))
    with pytest.raises(TeacherError, match='finite'):
        teacher.observe_episode_return(math.nan, 10)
    # B-Pref's [P, T, 1] reward layout is accepted.
    three_d = pairs._replace(left_rewards=pairs.left_rewards[..., None])
    np.testing.assert_array_equal(teacher.label(three_d), [RIGHT, RIGHT])


def test_state_dict_round_trips_through_a_checkpoint(tmp_path):
    config = TeacherConfig(beta=1.0, eps_mistake=0.2, eps_equal=0.05)
    teacher = observed(config, [5.0, 7.0, 9.0], seed=11)
    pairs = make_pairs(*np.random.default_rng(0).normal(size=(2, 64, 10)))
    teacher.label(pairs)
    save_checkpoint(tmp_path / 'teacher.ckpt', {'teacher': teacher.state_dict()})
    expected = teacher.label(pairs)
    restored = ScriptedTeacher(config, np.random.default_rng(999))
    restored.load_state_dict(load_checkpoint(tmp_path / 'teacher.ckpt')['teacher'])
    np.testing.assert_array_equal(restored.label(pairs), expected)
    assert restored.thresholds(10) == teacher.thresholds(10)
    with pytest.raises(TeacherError, match='generator'):
        ScriptedTeacher(config, np.random.Generator(np.random.MT19937(0))).load_state_dict(
            teacher.state_dict())


def test_random_preset_is_the_coin_flip_control():
    # teacher_preset: random answers at random whatever the returns (the control arm).
    labels = ScriptedTeacher(TEACHER_PRESETS['random'], np.random.default_rng(4)).label(
        constant_pairs(0.0, 10.0, 4000))
    assert_binomial(int(np.sum(labels == RIGHT)), 4000, 0.5)
