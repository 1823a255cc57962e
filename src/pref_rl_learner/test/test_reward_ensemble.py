"""Reward ensemble: shapes, batched members equal independent networks, inference, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import ConfigError, field_docs, from_mapping
from pref_rl_learner.reward import RewardEnsemble, RewardModelConfig, RewardModelError

KERNELS = ('stacked', 'per_member')



def small(**overrides) -> RewardModelConfig:
    return RewardModelConfig(**{'hidden_sizes': (32, 32, 32), 'device': 'cpu', **overrides})


def independent_mlps(model: RewardEnsemble) -> list[nn.Sequential]:
    """Member m of ``model`` as its own nn.Sequential holding slice m of the weights."""
    nets = []
    for m in range(model.ensemble_size):
        layers: list[nn.Module] = []
        for i, linear in enumerate(model.head.linears):
            torch_linear = nn.Linear(linear.in_features, linear.out_features)
            with torch.no_grad():
                torch_linear.weight.copy_(linear.weight[m].T)
                torch_linear.bias.copy_(linear.bias[m])
            last = i == len(model.head.linears) - 1
            layers += [torch_linear, nn.Tanh() if last else nn.LeakyReLU(0.01)]
        nets.append(nn.Sequential(*layers))
    return nets


def test_forward_shapes_and_range():
    model = RewardEnsemble((6,), 2, small())
    rewards = model(torch.randn(4, 7, 6), torch.randn(4, 7, 2))
    assert rewards.shape == (3, 4, 7)
    assert rewards.abs().max() < 1  # tanh output
    assert model.segment_returns(torch.randn(5, 10, 6), torch.randn(5, 10, 2)).shape == (3, 5)
    assert model.reward(torch.randn(9, 6), torch.randn(9, 2)).shape == (9,)
    state_only = RewardEnsemble((6,), 2, small(inputs='state', ensemble_size=2))
    assert state_only(torch.randn(4, 6)).shape == (2, 4)
    # Actions do not matter to a state-only model.
    obs = torch.randn(4, 6)
    assert torch.equal(state_only(obs, torch.randn(4, 2)), state_only(obs, torch.zeros(4, 2)))


@pytest.mark.parametrize('kernel', KERNELS)
def test_batched_members_equal_independent_mlps(kernel):
    model = RewardEnsemble((5,), 3, small(member_batching=kernel), seed=3)
    nets = independent_mlps(model)
    obs, act = torch.randn(20, 5), torch.randn(20, 3)
    expected = torch.stack([net(torch.cat([obs, act], -1)).squeeze(-1) for net in nets])
    torch.testing.assert_close(model(obs, act), expected, rtol=1e-5, atol=1e-6)
    # Per-member inputs: member m sees only slice m.
    obs_m, act_m = torch.randn(3, 20, 5), torch.randn(3, 20, 3)
    out = model(obs_m, act_m, per_member=True)
    for m, net in enumerate(nets):
        torch.testing.assert_close(out[m], net(torch.cat([obs_m[m], act_m[m]], -1)).squeeze(-1),
                                   rtol=1e-5, atol=1e-6)
    # Gradients: member m's weight gradient is exactly its own network's.
    out.square().sum().backward()
    for m, net in enumerate(nets):
        net(torch.cat([obs_m[m], act_m[m]], -1)).square().sum().backward()
        torch.testing.assert_close(model.head.linears[0].weight.grad[m], net[0].weight.grad.T,
                                   rtol=1e-4, atol=1e-6)


def test_kernels_agree_with_batch_norm_and_dropout():
    stacked = RewardEnsemble((4,), 2, small(batch_norm=True, member_batching='stacked'), seed=1)
    per_member = RewardEnsemble((4,), 2, small(batch_norm=True, member_batching='per_member'),
                                seed=1)
    obs, act = torch.randn(3, 50, 4) * 3 + 1, torch.randn(3, 50, 2)
    torch.testing.assert_close(stacked(obs, act, per_member=True),
                               per_member(obs, act, per_member=True))
    # Running statistics are kept per member and updated identically by both kernels.
    for a, b in zip(stacked.head.norms, per_member.head.norms, strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked) == 1
    stacked.eval()
    per_member.eval()
    torch.testing.assert_close(stacked(obs[0], act[0]), per_member(obs[0], act[0]))
    dropped = RewardEnsemble((4,), 2, small(dropout=0.5))
    with dropped.evaluating():  # no dropout in eval mode: deterministic
        assert torch.equal(dropped(obs[0], act[0]), dropped(obs[0], act[0]))
    assert dropped.training
    assert not torch.equal(dropped(obs[0], act[0]), dropped(obs[0], act[0]))


def test_seeded_initialisation():
    a = RewardEnsemble((4,), 2, small(), seed=7)
    b = RewardEnsemble((4,), 2, small(), seed=7)
    c = RewardEnsemble((4,), 2, small(), seed=8)
    obs, act = torch.randn(10, 4), torch.randn(10, 2)
    assert torch.equal(a(obs, act), b(obs, act))
    assert not torch.equal(a(obs, act), c(obs, act))
    out = a(obs, act)
    assert not torch.allclose(out[0], out[1])  # members start different


@pytest.mark.parametrize('size', [64, 84])
def test_cnn_forward_shapes(size):
    config = RewardModelConfig(encoder='cnn', hidden_sizes=(64,), device='cpu',
                               batch_norm=True, dropout=0.5)
    model = RewardEnsemble((3, size, size), 4, config)
    frames = torch.randint(0, 256, (2, 5, 3, size, size), dtype=torch.uint8)
    assert model(frames, torch.randn(2, 5, 4)).shape == (3, 2, 5)
    assert model.segment_returns(frames, torch.randn(2, 5, 4)).shape == (3, 2)
    per_member = frames.unsqueeze(0).expand(3, -1, -1, -1, -1, -1)
    assert model(per_member, torch.randn(3, 2, 5, 4), per_member=True).shape == (3, 2, 5)
    assert model.encoder.output_dim == 16 * {64: 4, 84: 7}[size] ** 2


def test_cnn_members_equal_independent_convnets():
    config = RewardModelConfig(encoder='cnn', cnn_channels=(4, 6), cnn_kernels=(3, 3),
                               cnn_strides=(2, 1), hidden_sizes=(8,), device='cpu')
    model = RewardEnsemble((2, 12, 12), 1, config, seed=2)
    frames = torch.rand(7, 2, 12, 12)
    act = torch.randn(7, 1)
    shared = model(frames, act)
    # The same frames given per member take the grouped path for every layer.
    stacked = frames.expand(3, -1, -1, -1, -1)
    torch.testing.assert_close(model(stacked, act.expand(3, -1, -1), per_member=True), shared)
    conv1, conv2 = model.encoder.convs
    for m in range(3):
        first, second = slice(4 * m, 4 * m + 4), slice(6 * m, 6 * m + 6)
        x = nn.functional.conv2d(frames, conv1.weight[first], conv1.bias[first], stride=2)
        x = nn.functional.leaky_relu(x, 0.01)
        x = nn.functional.conv2d(x, conv2.weight[second], conv2.bias[second])
        x = torch.cat([nn.functional.leaky_relu(x, 0.01).flatten(1), act], -1)
        head = model.head.linears
        x = nn.functional.leaky_relu(x @ head[0].weight[m] + head[0].bias[m], 0.01)
        expected = torch.tanh(x @ head[1].weight[m] + head[1].bias[m]).squeeze(-1)
        torch.testing.assert_close(shared[m], expected, rtol=1e-5, atol=1e-6)


def test_preference_probs_match_returns_and_chunking():
    rng = np.random.default_rng(0)
    pairs = SegmentPairs(*(rng.normal(size=s).astype(np.float32)
                           for s in [(13, 6, 4), (13, 6, 2), (13, 6, 4), (13, 6, 2)]))
    model = RewardEnsemble((4,), 2, small(dropout=0.3, batch_norm=True))
    model.train()
    model(torch.randn(3, 100, 4), torch.randn(3, 100, 2), per_member=True)  # move BN stats
    probs = model.preference_probs(pairs)
    assert probs.shape == (3, 13) and probs.dtype == np.float32
    assert model.training  # mode restored
    with model.evaluating(), torch.no_grad():
        left = model.segment_returns(torch.from_numpy(pairs.left_observations),
                                     torch.from_numpy(pairs.left_actions))
        right = model.segment_returns(torch.from_numpy(pairs.right_observations),
                                      torch.from_numpy(pairs.right_actions))
    np.testing.assert_allclose(probs, torch.sigmoid(right - left).numpy(), rtol=1e-5)
    tiny = RewardEnsemble((4,), 2, dataclasses.replace(model.config, inference_chunk=7))
    tiny.load_state_dict(model.state_dict())
    np.testing.assert_allclose(tiny.preference_probs(pairs), probs, rtol=1e-5)  # 1 pair/chunk
    assert model.preference_probs(pairs.take(np.arange(0))).shape == (3, 0)


def test_reward_normalisation():
    model = RewardEnsemble((4,), 2, small(inference_chunk=64))
    obs, act = torch.randn(500, 4), torch.randn(500, 2)
    members = model(obs, act).detach()  # [M, N]
    torch.testing.assert_close(model.reward(obs, act), members.mean(0))  # identity at first
    model.fit_normalizer(obs, act)
    normalised = model.reward(obs, act)
    assert abs(float(normalised.mean())) < 1e-4
    # DRLHP: each member normalised on its own, then averaged (not the mean normalised).
    each = (members - members.mean(1, keepdim=True)) / members.std(1, keepdim=True,
                                                                  correction=0)
    torch.testing.assert_close(normalised, each.mean(0))
    mean_first = members.mean(0)
    assert not torch.allclose(normalised, (mean_first - mean_first.mean())
                              / mean_first.std(correction=0), atol=1e-3)
    assert model.reward(obs.reshape(50, 10, 4), act.reshape(50, 10, 2)).shape == (50, 10)
    assert {'normalizer.mean', 'normalizer.std'} <= set(model.state_dict())
    assert model.reward(obs.numpy(), act.numpy()).shape == (500,)  # numpy accepted
    with pytest.raises(RewardModelError, match='empty'):
        model.fit_normalizer(torch.zeros(0, 4), torch.zeros(0, 2))


@pytest.mark.parametrize(('obs', 'act', 'match'), [
    (torch.randn(5, 3), torch.randn(5, 2), 'observation shape'),
    (torch.randn(5, 4), torch.randn(5, 3), 'actions of shape'),
    (torch.randn(5, 4), torch.randn(6, 2), 'actions of shape'),
    (torch.full((5, 4), float('nan')), torch.randn(5, 2), 'NaN'),
    (torch.randn(5, 4), torch.full((5, 2), float('inf')), 'NaN or inf'),
    (torch.randn(5, 4), None, 'needs actions'),
    (torch.zeros(5, 4, dtype=torch.uint8), torch.randn(5, 2), 'cnn'),
])
def test_rejects_malformed_inputs(obs, act, match):
    model = RewardEnsemble((4,), 2, small())
    with pytest.raises(RewardModelError, match=match):
        model(obs, act)
    with pytest.raises(RewardModelError):
        model.reward(obs, act)


def test_rejects_bad_configs_and_shapes():
    for bad in ({'ensemble_size': 0}, {'hidden_sizes': ()}, {'inputs': 'pixels'},
                {'encoder': 'resnet'}, {'dropout': 1.0}, {'member_batching': 'vmap'},
                {'cnn_kernels': (3, 3)}, {'device': 'tpu'}):
        with pytest.raises(ConfigError):
            RewardEnsemble((4,), 2, dataclasses.replace(small(), **bad))
    with pytest.raises(RewardModelError, match=r'\[C, H, W\]'):
        RewardEnsemble((4,), 2, small(encoder='cnn'))
    with pytest.raises(RewardModelError, match='too small'):
        RewardEnsemble((3, 16, 16), 2, small(encoder='cnn'))
    with pytest.raises(RewardModelError, match=r'too small.*channels last, HWC'):
        RewardEnsemble((16, 16, 3), 2, small(encoder='cnn'))  # the order named, not the size
    with pytest.raises(RewardModelError, match='segment observations'):
        RewardEnsemble((4,), 2, small()).segment_returns(torch.randn(5, 4), torch.randn(5, 2))
    config = from_mapping(RewardModelConfig, {'hidden_sizes': [8, 8], 'device': 'cpu'})
    assert config.hidden_sizes == (8, 8)
    assert all(field_docs(RewardModelConfig).values())  # every field documented


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_runs_on_cuda():
    model = RewardEnsemble((4,), 2, small(device='cuda'))
    assert model.device.type == 'cuda'
    cpu = RewardEnsemble((4,), 2, small())
    obs, act = torch.randn(10, 4), torch.randn(10, 2)
    torch.testing.assert_close(model.reward(obs, act), cpu.reward(obs, act), rtol=1e-4,
                               atol=1e-5)
    assert model.reward(obs, act).device.type == 'cpu'  # on the device of the input


def test_normaliser_loads_scalar_statistics_of_older_checkpoints():
    model = RewardEnsemble((4,), 2, small())
    state = model.state_dict()
    state['normalizer.mean'] = torch.tensor(0.5)
    state['normalizer.std'] = torch.tensor(2.0)
    model.load_state_dict(state)
    torch.testing.assert_close(model.normalizer.mean, torch.full((3,), 0.5))
    torch.testing.assert_close(model.normalizer.std, torch.full((3,), 2.0))
