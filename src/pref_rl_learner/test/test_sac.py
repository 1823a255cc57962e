"""SAC: update semantics against a textbook step, state, critic reset, actor export, learning."""

from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from torch import distributions as D  # noqa: N812

from pref_rl_learner.batches import TransitionBatch
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.errors import InvalidWeightsError
from pref_rl_learner.sac import SAC, ReplayBuffer, SACConfig
from pref_rl_learner.sac.agent import SACStateError
from pref_rl_learner.sac.networks import Actor, EnsembleMLP

OBS, ACT, B = 5, 2, 64
SMALL = SACConfig(hidden_sizes=(32, 32), batch_size=B, device='cpu')



def random_batch(seed: int = 0, n: int = B) -> TransitionBatch:
    g = torch.Generator().manual_seed(seed)
    return TransitionBatch(torch.randn(n, OBS, generator=g),
                           torch.rand(n, ACT, generator=g) * 2 - 1,
                           torch.randn(n, generator=g), torch.randn(n, OBS, generator=g),
                           (torch.rand(n, generator=g) < 0.2).float())


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def round_trip(state: dict) -> dict:
    raw = io.BytesIO()
    torch.save(state, raw)
    raw.seek(0)
    return torch.load(raw, weights_only=True)


def test_config_defaults_validation_and_mapping() -> None:
    cfg = SACConfig()
    assert (cfg.hidden_sizes, cfg.batch_size, cfg.tau, cfg.init_temperature) == (
        (256, 256, 256), 512, 0.005, 0.1)
    assert from_mapping(SACConfig, {'hidden_sizes': [256, 256]}).hidden_sizes == (256, 256)
    for bad in ({'tau': 0.0}, {'discount': 1.5}, {'num_critics': 0}, {'hidden_sizes': ()},
                {'log_std_bounds': (2.0, -5.0)}, {'actor_lr': -1.0},
                {'target_update_interval': 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            SACConfig(**bad)
    with pytest.raises(ConfigError, match='device'):
        SAC(OBS, ACT, SACConfig(device='tpu'))


def test_log_prob_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    actor = Actor(OBS, ACT, (16,), (-5.0, 2.0))
    obs = torch.randn(200, OBS)
    action, log_pi = actor.sample(obs, torch.Generator().manual_seed(1))
    mean, log_std = actor.distribution(obs)
    assert ((log_std >= -5.0) & (log_std <= 2.0)).all()
    squashed = D.TransformedDistribution(D.Normal(mean, log_std.exp()),
                                         [D.TanhTransform(cache_size=1)])
    # Away from |a| = 1, where float32 atanh is exact enough to compare.
    inside = action.abs().amax(dim=1) < 0.999
    expected = squashed.log_prob(action).sum(dim=1)
    torch.testing.assert_close(log_pi[inside], expected[inside], atol=1e-3, rtol=1e-4)
    assert inside.sum() > 150


def test_min_output_gradient_equals_dense_autograd() -> None:
    torch.manual_seed(0)
    critic = EnsembleMLP(3, OBS + ACT, (32, 32), 1).double()
    x = torch.randn(100, OBS + ACT, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(100, dtype=torch.float64)
    (fast,) = torch.autograd.grad((critic.min_output(x) * weights).sum(), x)
    dense = critic(x).amin(dim=0).squeeze(-1)
    (expected,) = torch.autograd.grad((dense * weights).sum(), x)
    torch.testing.assert_close(fast, expected)
    torch.testing.assert_close(critic.min_output(x), dense)
    assert all(p.grad is None for p in critic.parameters())


def textbook_update(agent: SAC, batch: TransitionBatch, update_index: int
                    ) -> dict[str, list[torch.Tensor]]:
    """SAC as written in the papers, plain autograd everywhere (the reference).

    Returns the gradients each optimiser stepped with (Adam hides a wrong gradient scale in
    the weights, so the test compares these too).
    """
    cfg = agent.config
    grads = {}
    obs, actions, rewards, next_obs, terminated = batch
    alpha = agent.log_alpha.exp().detach()
    with torch.no_grad():
        next_actions, next_log_pi = agent.actor.sample(next_obs, agent._generator)
        q_next = agent.critic_target(torch.cat([next_obs, next_actions], 1)).squeeze(-1)
        y = rewards + cfg.discount * (1 - terminated) * (q_next.min(0).values
                                                         - alpha * next_log_pi)
    q = agent.critic(torch.cat([obs, actions], 1)).squeeze(-1)
    loss = sum(torch.nn.functional.mse_loss(q_j, y) for q_j in q)
    agent.critic_optimizer.zero_grad()
    loss.backward()
    grads['critic'] = [p.grad.clone() for p in agent.critic.parameters()]
    agent.critic_optimizer.step()
    if update_index % cfg.actor_update_interval == 0:
        new_actions, log_pi = agent.actor.sample(obs, agent._generator)
        q_pi = agent.critic(torch.cat([obs, new_actions], 1)).squeeze(-1).min(0).values
        actor_loss = (alpha * log_pi - q_pi).mean()
        agent.actor_optimizer.zero_grad()
        actor_loss.backward()
        grads['actor'] = [p.grad.clone() for p in agent.actor.parameters()]
        agent.actor_optimizer.step()
        temperature_loss = (agent.log_alpha.exp()
                            * (-log_pi.detach() - agent.target_entropy)).mean()
        agent.temperature_optimizer.zero_grad()
        temperature_loss.backward()
        grads['temperature'] = [agent.log_alpha.grad.clone()]
        agent.temperature_optimizer.step()
    if update_index % cfg.target_update_interval == 0:
        with torch.no_grad():
            for target, online in zip(agent.critic_target.parameters(),
                                      agent.critic.parameters(), strict=True):
                target.mul_(1 - cfg.tau).add_(cfg.tau * online)
    return grads


@pytest.mark.parametrize('actor_interval', [1, 2])
def test_update_equals_the_textbook_sac_step(actor_interval: int) -> None:
    cfg = SACConfig(hidden_sizes=(32, 32), batch_size=B, device='cpu', tau=0.1,
                    actor_update_interval=actor_interval)
    agent = SAC(OBS, ACT, cfg, seed=3)
    reference = copy.deepcopy(agent)
    for i in range(1, 5):
        batch = random_batch(i)
        agent.update(batch)
        expected = textbook_update(reference, batch, i)
        mine = {'critic': [p.grad for p in agent.critic.parameters()],
                'actor': [p.grad for p in agent.actor.parameters()],
                'temperature': [agent.log_alpha.grad]}
        for name, grads in expected.items():
            for g, h in zip(mine[name], grads, strict=True):
                torch.testing.assert_close(g, h, atol=1e-6, rtol=1e-4, msg=name)
        for ours, theirs in ((agent.actor, reference.actor), (agent.critic, reference.critic),
                             (agent.critic_target, reference.critic_target)):
            for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
                torch.testing.assert_close(p, q, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(agent.log_alpha, reference.log_alpha)


def test_update_schedules_and_metrics() -> None:
    agent = SAC(OBS, ACT, SACConfig(hidden_sizes=(32, 32), batch_size=B, device='cpu',
                                    actor_update_interval=2), seed=0)
    assert agent.metrics() == {}
    actor, critic, target = params(agent.actor), params(agent.critic), params(
        agent.critic_target)
    alpha = agent.temperature
    agent.update(random_batch(1))
    assert not same(critic, params(agent.critic))
    assert same(actor, params(agent.actor)) and agent.temperature == alpha  # interval 2
    assert same(target, params(agent.critic_target))  # target interval 2
    agent.update(random_batch(2))
    assert not same(actor, params(agent.actor)) and agent.temperature != alpha
    assert not same(target, params(agent.critic_target))
    for _ in range(20):
        agent.update(random_batch(3))
    every = [p for m in (agent.actor, agent.critic, agent.critic_target) for p in params(m)]
    assert all(torch.isfinite(p).all() for p in every)
    figures = agent.metrics()
    assert set(figures) == {'critic_loss', 'actor_loss', 'temperature', 'entropy', 'q_mean'}
    assert all(math.isfinite(v) for v in figures.values())
    assert figures['temperature'] > 0


@pytest.mark.parametrize(('target_entropy', 'direction'), [(10.0, 1.0), (-10.0, -1.0)])
def test_temperature_moves_towards_the_entropy_target(target_entropy: float,
                                                      direction: float) -> None:
    """Entropy below the target raises alpha (more exploration), above it lowers alpha."""
    cfg = SACConfig(hidden_sizes=(32, 32), batch_size=B, device='cpu',
                    target_entropy=target_entropy)
    agent = SAC(OBS, ACT, cfg, seed=0)
    for i in range(5):
        agent.update(random_batch(i))
    assert direction * (agent.temperature - cfg.init_temperature) > 0
    fixed = SAC(OBS, ACT, SACConfig(hidden_sizes=(32, 32), device='cpu',
                                    learn_temperature=False), seed=0)
    fixed.update(random_batch(0))
    assert fixed.temperature == pytest.approx(0.1)


def test_act_shapes_bounds_and_determinism() -> None:
    agent = SAC(OBS, ACT, SMALL, seed=0)
    obs = np.random.default_rng(0).standard_normal((7, OBS)).astype(np.float32)
    single = agent.act(obs[0])
    assert single.shape == (ACT,) and single.dtype == np.float32
    many = agent.act(obs)
    assert many.shape == (7, ACT) and (np.abs(many) <= 1).all()
    np.testing.assert_array_equal(agent.act(obs, deterministic=True),
                                  agent.act(obs, deterministic=True))
    assert not np.array_equal(agent.act(obs), agent.act(obs))


def test_state_round_trip_gives_identical_actions_and_next_update() -> None:
    agent = SAC(OBS, ACT, SMALL, seed=1)
    for i in range(3):
        agent.update(random_batch(i))
    state = round_trip(agent.state_dict())
    twin = SAC(OBS, ACT, SMALL, seed=99)
    twin.load_state_dict(state)
    assert twin.num_updates == 3
    obs = np.random.default_rng(0).standard_normal((4, OBS)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs), twin.act(obs))  # same noise state too
    batch = random_batch(7)
    agent.update(batch)
    twin.update(batch)
    for m, n in ((agent.actor, twin.actor), (agent.critic, twin.critic),
                 (agent.critic_target, twin.critic_target)):
        assert same(params(m), params(n))
    assert torch.equal(agent.log_alpha, twin.log_alpha)
    assert agent.metrics() == twin.metrics()
    with pytest.raises(SACStateError, match='obs, act'):
        SAC(OBS + 1, ACT, SMALL).load_state_dict(state)


def test_reset_critic_reinitialises_critics_only() -> None:
    agent = SAC(OBS, ACT, SMALL, seed=0)
    for i in range(3):
        agent.update(random_batch(i))
    actor, critic, log_alpha = params(agent.actor), params(agent.critic), agent.log_alpha.item()
    actor_state = copy.deepcopy(agent.actor_optimizer.state_dict())
    agent.reset_critic()
    assert same(actor, params(agent.actor)) and agent.log_alpha.item() == log_alpha
    assert all(not torch.equal(a, b) for a, b in zip(critic, params(agent.critic), strict=True))
    assert same(params(agent.critic), params(agent.critic_target))
    assert agent.critic_optimizer.state_dict()['state'] == {}
    assert agent.actor_optimizer.state_dict()['state'].keys() == actor_state['state'].keys()
    # A fresh draw, not the initial weights again; and updates still work afterwards.
    assert not same(params(agent.critic), params(SAC(OBS, ACT, SMALL, seed=0).critic))
    agent.update(random_batch(5))
    assert not same(params(agent.critic), params(agent.critic_target))


def test_actor_export_rebuilds_the_same_policy() -> None:
    agent = SAC(OBS, ACT, SMALL, seed=0)
    for i in range(3):
        agent.update(random_batch(i))
    architecture, tensors = agent.actor_state()
    assert json.loads(architecture)['hidden_sizes'] == [32, 32]
    assert all(a.dtype == np.float32 for a in tensors.values())
    policy = SAC.actor_from_state(architecture, tensors)
    obs = np.random.default_rng(0).standard_normal((9, OBS)).astype(np.float32)
    np.testing.assert_allclose(policy.act(obs, deterministic=True),
                               agent.act(obs, deterministic=True), atol=1e-6)
    assert policy.act(obs[0]).shape == (ACT,)
    broken = dict(tensors)
    broken['layers.0.weight'] = np.full_like(broken['layers.0.weight'], np.nan)
    with pytest.raises(InvalidWeightsError, match='non-finite'):
        SAC.actor_from_state(architecture, broken)
    with pytest.raises(InvalidWeightsError, match='shape'):
        SAC.actor_from_state(architecture, {**tensors, 'layers.0.bias': np.zeros(3)})
    with pytest.raises(InvalidWeightsError, match='missing'):
        SAC.actor_from_state(architecture, {'layers.0.bias': tensors['layers.0.bias']})
    with pytest.raises(InvalidWeightsError, match='architecture'):
        SAC.actor_from_state('{"type": "cnn"}', tensors)


def evaluate(env, policy, episodes: int) -> tuple[float, float]:
    """Success rate and mean return over ``episodes`` from seeded random starts."""
    successes, returns = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        done, total, success = False, 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += reward
            success = success or bool(info['success'])
            done = terminated or truncated
        successes.append(success)
        returns.append(total)
    return float(np.mean(successes)), float(np.mean(returns))


@pytest.mark.slow
def test_sac_learns_point_mass_from_the_true_reward() -> None:
    """1000 random steps, then 3000 steps with one update each (2x256, batch 256)."""
    from pref_rl_robot.tasks import make_task

    seed_steps, total_steps = 1000, 4000
    env = make_task('point_mass', goal='eval:0', seed=0)
    eval_env = make_task('point_mass', goal='eval:0', seed=1)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SAC(obs_dim, act_dim, SACConfig(hidden_sizes=(256, 256), batch_size=256,
                                            device='cpu'), seed=0)
    buffer = ReplayBuffer(env.observation_space.shape, act_dim, total_steps)
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    episodes = 10  # from ten random starts
    random_success, random_return = evaluate(
        eval_env, lambda o: rng.uniform(-1, 1, act_dim).astype(np.float32), episodes)
    obs, _ = env.reset(seed=0)
    for step in range(total_steps):
        action = (rng.uniform(-1, 1, act_dim).astype(np.float32) if step < seed_steps
                  else agent.act(obs))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step >= seed_steps:
            agent.update(buffer.sample(256, generator))
    success, mean_return = evaluate(eval_env, lambda o: agent.act(o, deterministic=True),
                                    episodes)
    # The run's hidden target: random reaches it never; SAC on the true reward learns it.
    assert random_success == 0.0
    assert success >= 0.7, (success, mean_return)
    assert mean_return > random_return + 30, (mean_return, random_return)
