"""Reward training: learning a known reward, loss variants, adaptive L2, early stop, state."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from pref_rl_learner.batches import PreferenceBatch, SegmentPairs
from pref_rl_learner.config import ConfigError, field_docs
from pref_rl_learner.reward import (
    RewardEnsemble,
    RewardModelConfig,
    RewardModelError,
    RewardTrainer,
    RewardTrainingConfig,
    preference_loss,
)

OBS, ACT = 4, 2
GOAL = np.array([0.5, -0.3, 0.2, 0.0], np.float32)



def reach_pairs(seed: int, count: int, steps: int = 15, reward: str = 'goal',
                ) -> PreferenceBatch:
    """Pairs of random-walk segments labelled by a known reward (oracle teacher).

    ``goal``: r(s, a) = −‖s − g‖; ``linear``: a fixed random linear function of (s, a).
    """
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(42).normal(size=OBS + ACT)

    def segments():
        start = rng.uniform(-1, 1, (count, 1, OBS))
        actions = rng.uniform(-1, 1, (count, steps, ACT)).astype(np.float32)
        moves = 0.1 * np.concatenate([actions, actions], -1)[..., :OBS]
        observations = (start + np.cumsum(moves, 1)).astype(np.float32)
        if reward == 'goal':
            rewards = -np.linalg.norm(observations - GOAL, axis=-1)
        else:
            rewards = np.concatenate([observations, actions], -1) @ weights
        return observations, actions, rewards.sum(1)

    (obs_l, act_l, ret_l), (obs_r, act_r, ret_r) = segments(), segments()
    return PreferenceBatch(obs_l, act_l, obs_r, act_r, (ret_r > ret_l).astype(np.float32))


def model_and_trainer(hidden=(64, 64, 64), model_seed=0, **training):
    model = RewardEnsemble((OBS,), ACT, RewardModelConfig(hidden_sizes=hidden, device='cpu'),
                           seed=model_seed)
    return model, RewardTrainer(model, RewardTrainingConfig(**training), seed=model_seed)


def test_learns_known_reward_to_95_percent_on_held_out_pairs():
    torch.manual_seed(0)
    train, held_out = reach_pairs(0, 1000), reach_pairs(1, 1000)
    model, trainer = model_and_trainer(lr=1e-3)
    _, before = trainer.evaluate(held_out)
    report = trainer.train(train, held_out)
    loss, accuracy = trainer.evaluate(held_out)
    assert before < 0.8  # not solved by the initialisation
    assert accuracy >= 0.95, report
    assert report.val_accuracy == pytest.approx(accuracy)
    assert report.reached_target and report.train_accuracy >= 0.97
    assert min(report.member_train_accuracy) == report.train_accuracy
    assert model.version == 1 and trainer.trainings == 1
    # The normalised reward ranks states like the true one (closer to the goal is better).
    states = torch.from_numpy(np.random.default_rng(5).uniform(-1, 1, (500, OBS)).astype(
        np.float32))
    model.fit_normalizer(states, torch.zeros(500, ACT))
    predicted = model.reward(states, torch.zeros(500, ACT)).numpy()
    true = -np.linalg.norm(states.numpy() - GOAL, axis=-1)
    assert np.corrcoef(predicted, true)[0, 1] > 0.9


def test_a_step_capped_training_costs_the_same_at_any_label_count_and_still_learns():
    """``max_gradient_steps``: each session's training takes exactly the cap (the last epoch
    part way), warm-started, so after sessions of growing labels the reward is as good on
    held-out pairs as the uncapped one's, at a fraction of the steps."""
    held_out = reach_pairs(1, 1000)
    labels = reach_pairs(0, 600)
    runs = {}
    for cap in (12, 0):
        model, trainer = model_and_trainer(lr=1e-3, batch_size=64, max_gradient_steps=cap,
                                           max_epochs=20, target_accuracy=None)
        steps = []
        for count in range(100, 601, 100):  # six sessions of 100 more labels
            report = trainer.train(PreferenceBatch(*(a[:count] for a in labels)))
            steps.append(report.gradient_steps)
        runs[cap] = steps, trainer.evaluate(held_out)[1]
    capped_steps, capped_accuracy = runs[12]
    free_steps, free_accuracy = runs[0]
    assert capped_steps == [12] * 6  # 2, 4, ..., 10 batches an epoch: epochs cut part way
    assert free_steps == [20 * -(-n // 64) for n in range(100, 601, 100)]
    assert capped_accuracy >= 0.9 and capped_accuracy >= free_accuracy - 0.03, runs


def test_stops_at_target_accuracy_before_the_epoch_cap():
    torch.manual_seed(0)
    model, trainer = model_and_trainer(hidden=(32, 32), lr=1e-3, max_epochs=200,
                                       target_accuracy=0.95)
    report = trainer.train(reach_pairs(2, 200, reward='linear'))
    assert report.reached_target
    assert report.epochs < 200 and report.train_accuracy >= 0.95
    assert trainer.total_epochs == report.epochs
    capped = model_and_trainer(hidden=(32, 32), max_epochs=3, target_accuracy=1.0)[1]
    report = capped.train(reach_pairs(2, 200, reward='linear'))
    assert report.epochs == 3 and not report.reached_target


def test_equal_labels_pull_returns_together():
    torch.manual_seed(0)
    data = reach_pairs(3, 100)
    model, trainer = model_and_trainer(hidden=(32, 32), lr=1e-3, max_epochs=40,
                                       target_accuracy=None)
    # First make the returns differ: learn from decisive labels.
    trainer.train(data)

    def gap() -> float:
        with torch.no_grad(), model.evaluating():
            left = model.segment_returns(torch.from_numpy(data.left_observations),
                                         torch.from_numpy(data.left_actions))
            right = model.segment_returns(torch.from_numpy(data.right_observations),
                                          torch.from_numpy(data.right_actions))
        return float((right - left).abs().mean())

    separated = gap()
    report = trainer.train(data._replace(right_preferred=np.full(100, 0.5, np.float32)))
    assert separated > 1.0
    assert gap() < 0.25 * separated  # measured: 1.82 -> 0.24
    assert math.isnan(report.train_accuracy)  # no decisive labels to score


def test_random_response_loss_is_bounded():
    logits = torch.tensor([-50.0, 0.0, 3.0], requires_grad=True)
    targets = torch.tensor([1.0, 0.5, 0.0])
    plain = preference_loss(logits, targets).detach()
    robust = preference_loss(logits, targets, random_response=0.1)
    assert plain[0] == pytest.approx(50.0, abs=1e-3)  # a confident mistake costs ~|logit|
    assert robust[0].item() <= -math.log(0.05) + 1e-6  # at most −log(ε/2)
    assert torch.isfinite(robust).all()
    # Matches the model P = (1 − ε)σ(x) + ε/2 where it is safe to compute directly.
    p = 0.9 * torch.sigmoid(torch.tensor(3.0)) + 0.05
    assert robust[2].item() == pytest.approx(-math.log(1 - p.item()), rel=1e-5)
    assert robust[1].item() == pytest.approx(math.log(2), rel=1e-5)
    robust.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert abs(logits.grad[0]) < 1e-3  # a hopeless pair hardly pulls on the model


def test_equal_targets_are_minimised_at_equal_returns():
    logits = torch.linspace(-3, 3, 61)
    for eps in (0.0, 0.1):
        losses = preference_loss(logits, torch.full_like(logits, 0.5), eps)
        assert logits[losses.argmin()].abs() < 1e-6


def test_adaptive_l2_follows_the_validation_gap():
    torch.manual_seed(0)
    train = reach_pairs(4, 150)
    shuffled = np.random.default_rng(0).permutation(train.right_preferred)
    settings = dict(hidden=(32, 32), lr=3e-3, max_epochs=15, target_accuracy=None,
                    adaptive_l2=True, weight_decay=1e-3, l2_factor=1.5)
    # Validation labels unrelated to the inputs: val loss far above train loss -> more L2.
    _, trainer = model_and_trainer(**settings)
    report = trainer.train(train, reach_pairs(5, 150)._replace(right_preferred=shuffled))
    assert report.val_loss > 1.5 * report.train_loss
    assert report.l2_weight > 1e-3 * 1.5 ** 3  # measured: 6 net raises in 15 epochs
    # Validation = training pairs: val loss below 1.1 x train loss -> less L2.
    _, trainer = model_and_trainer(**settings)
    report = trainer.train(train, train)
    assert report.l2_weight < 1e-3 / 1.5 ** 5  # measured: cut every epoch
    # Without validation data the weight stays put.
    _, trainer = model_and_trainer(**settings)
    assert trainer.train(train).l2_weight == 1e-3
    # Cutting from λ = 0 leaves it at 0 (it used to jump up to l2_min).
    _, trainer = model_and_trainer(**{**settings, 'weight_decay': 0.0})
    assert trainer.train(train, train).l2_weight == 0.0


def test_member_shuffle_gives_each_member_its_own_batches():
    def trained(member_shuffle: bool) -> torch.Tensor:
        model, trainer = model_and_trainer(hidden=(16,), max_epochs=2, batch_size=10,
                                           target_accuracy=None,
                                           member_shuffle=member_shuffle)
        with torch.no_grad():  # all members start identical
            for parameter in model.head.parameters():
                parameter.copy_(parameter[:1].expand_as(parameter))
        trainer.train(reach_pairs(6, 50))
        return model.head.linears[0].weight.detach()

    same = trained(False)
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], same[2])
    different = trained(True)
    assert not torch.allclose(different[0], different[1])


def test_evaluate_scores_only_decisive_labels():
    data = reach_pairs(7, 40)
    targets = data.right_preferred.copy()
    targets[:10] = 0.5
    model, trainer = model_and_trainer(hidden=(16,))
    loss, accuracy = trainer.evaluate(data._replace(right_preferred=targets))
    probs = model.preference_probs(SegmentPairs(
        data.left_observations, data.left_actions, data.right_observations,
        data.right_actions)).mean(0)
    expected = np.mean((probs[10:] > 0.5) == (targets[10:] > 0.5))
    assert accuracy == pytest.approx(expected)
    assert loss > 0
    all_equal = data._replace(right_preferred=np.full(40, 0.5, np.float32))
    assert math.isnan(trainer.evaluate(all_equal)[1])


def test_state_round_trip_gives_identical_predictions_and_continuation():
    torch.manual_seed(0)
    data = reach_pairs(8, 60)
    model, trainer = model_and_trainer(hidden=(16, 16), max_epochs=3, target_accuracy=None,
                                       weight_decay=1e-4)
    trainer.train(data)
    model.fit_normalizer(torch.randn(50, OBS), torch.randn(50, ACT))
    buffer = io.BytesIO()
    torch.save({'model': model.state_dict(), 'trainer': trainer.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone, clone_trainer = model_and_trainer(hidden=(16, 16), model_seed=99, max_epochs=3,
                                             target_accuracy=None, weight_decay=1e-4)
    clone.load_state_dict(state['model'])
    clone_trainer.load_state_dict(state['trainer'])
    obs, act = torch.randn(30, OBS), torch.randn(30, ACT)
    assert torch.equal(clone.reward(obs, act), model.reward(obs, act))
    assert clone.version == model.version == 1
    assert clone_trainer.total_epochs == 3 and clone_trainer.l2_weight == 1e-4
    # Optimiser moments and the shuffling RNG came along: training continues identically.
    trainer.train(data)
    clone_trainer.train(data)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cnn_learns_brightness_reward():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def pairs(count: int) -> PreferenceBatch:
        # Frames of uniform noise around a per-step brightness; reward = mean intensity.
        level = rng.uniform(40, 215, (2, count, 4, 1, 1, 1))
        frames = np.clip(level + rng.normal(0, 30, (2, count, 4, 1, 16, 16)), 0, 255)
        frames = frames.astype(np.uint8)
        returns = frames.reshape(2, count, -1).mean(-1)
        actions = np.zeros((count, 4, 1), np.float32)
        return PreferenceBatch(frames[0], actions, frames[1], actions,
                               (returns[1] > returns[0]).astype(np.float32))

    config = RewardModelConfig(encoder='cnn', inputs='state', cnn_channels=(8, 8),
                               cnn_kernels=(3, 3), cnn_strides=(2, 2), hidden_sizes=(32,),
                               device='cpu')
    model = RewardEnsemble((1, 16, 16), 1, config)
    trainer = RewardTrainer(model, RewardTrainingConfig(lr=1e-3, batch_size=64, max_epochs=30))
    report = trainer.train(pairs(300))
    _, accuracy = trainer.evaluate(pairs(300))
    assert accuracy > 0.8, report


@pytest.mark.parametrize(('change', 'match'), [
    (lambda b: b._replace(right_preferred=b.right_preferred[:0], left_observations=(
        b.left_observations[:0]), right_observations=b.right_observations[:0]), 'no preference'),
    (lambda b: b._replace(right_observations=b.right_observations[:, :5]), 'observations'),
    (lambda b: b._replace(left_actions=b.left_actions[..., :1]), 'actions'),
    (lambda b: b._replace(right_preferred=b.right_preferred * 2), 'right_preferred'),
    (lambda b: b._replace(right_preferred=b.right_preferred * np.nan), 'right_preferred'),
    (lambda b: b._replace(left_observations=b.left_observations * np.inf), 'NaN or inf'),
])
def test_rejects_malformed_batches(change, match):
    _, trainer = model_and_trainer(hidden=(8,))
    with pytest.raises(RewardModelError, match=match):
        trainer.train(change(reach_pairs(9, 10)))


def test_rejects_bad_training_configs():
    for bad in ({'lr': 0.0}, {'batch_size': 0}, {'target_accuracy': 1.5},
                {'random_response': 1.0}, {'l2_band': (1.5, 1.1)}, {'l2_factor': 1.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            dataclasses.replace(RewardTrainingConfig(), **bad)
    assert all(field_docs(RewardTrainingConfig).values())  # every field documented


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_trains_on_cuda():
    model = RewardEnsemble((OBS,), ACT, RewardModelConfig(hidden_sizes=(32,), device='cuda'))
    trainer = RewardTrainer(model, RewardTrainingConfig(lr=1e-3, max_epochs=50))
    report = trainer.train(reach_pairs(10, 200, reward='linear'))
    assert model.device.type == 'cuda' and report.train_accuracy > 0.8
