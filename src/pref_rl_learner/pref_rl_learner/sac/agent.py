"""Soft Actor-Critic with a learned temperature, written for update throughput.

Haarnoja et al., "Soft Actor-Critic Algorithms and Applications" (2018,
https://arxiv.org/abs/1812.05905), with the defaults of PEBBLE (Lee et al. 2021) and of the
few-shot preference learning code (Hejna & Sadigh 2022). One :meth:`SAC.update` is, in order:

1. critic: ``y = r + gamma (1 - d) (min_j Qbar_j(s', a') - alpha log pi(a'|s'))`` with
   ``a' ~ pi(.|s')``; minimise ``sum_j E[(Q_j(s, a) - y)^2]``;
2. every ``actor_update_interval`` updates, actor: minimise
   ``E[alpha log pi(a~|s) - min_j Q_j(s, a~)]`` (with the critics just updated), and
   temperature: minimise ``E[alpha (-log pi(a~|s) - Hbar)]`` over ``log alpha``;
3. every ``target_update_interval`` updates: ``Qbar <- (1 - tau) Qbar + tau Q``.

Where the speed comes from: the critics are one batched ensemble MLP (a ``baddbmm`` per layer
for all members); the actor loss reaches the critics through detached weights, so no critic
weight gradients are computed for it; Adam is the fused multi-tensor kernel; the target update
is one ``_foreach_lerp_``; nothing in :meth:`SAC.update` reads a value back to Python (the
figures of :meth:`SAC.metrics` are kept as tensors and read lazily); on the CPU, freed
activations stay in the process for the next update
(:func:`~pref_rl_learner.host_memory.retain_freed_memory`) instead of page-faulting anew.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pref_rl_learner.batches import TransitionBatch
from pref_rl_learner.config import ConfigError
from pref_rl_learner.device import resolve_device
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.host_memory import retain_freed_memory
from pref_rl_learner.sac.networks import Actor, ActorPolicy, EnsembleMLP, actor_tensors


class SACStateError(PrefRLError, ValueError):
    """A SAC state dict does not fit this agent (other sizes or missing entries)."""


@dataclass(frozen=True)
class SACConfig:
    """Hyperparameters of SAC (defaults: PEBBLE / few-shot preference learning, MetaWorld)."""

    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    """Hidden layer widths of the actor and of every critic (2x256 for point mass, reacher)."""
    num_critics: int = 2
    """Critic ensemble size; targets and the actor loss use the minimum over members."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    temperature_lr: float = 3e-4
    """Adam learning rate of ``log alpha``."""
    batch_size: int = 512
    """Transitions per gradient step (the trainer samples batches of this size)."""
    discount: float = 0.99
    """gamma."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    target_update_interval: int = 2
    """Update the target critics every this many updates."""
    actor_update_interval: int = 1
    """Update the actor and temperature every this many updates."""
    init_temperature: float = 0.1
    """Initial entropy temperature alpha."""
    learn_temperature: bool = True
    """Learn alpha towards ``target_entropy``; else keep ``init_temperature``."""
    target_entropy: float | None = None
    """Entropy target Hbar; ``None`` means ``-action_dim``."""
    log_std_bounds: tuple[float, float] = (-5.0, 2.0)
    """Range of the actor's log standard deviation (before tanh squashing of the action)."""
    device: str = 'auto'
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError(f'hidden_sizes {self.hidden_sizes} must be positive widths')
        if self.num_critics < 1:
            raise ConfigError(f'num_critics {self.num_critics} must be >= 1')
        for name in ('actor_lr', 'critic_lr', 'temperature_lr', 'init_temperature'):
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} {getattr(self, name)} must be > 0')
        for name in ('batch_size', 'target_update_interval', 'actor_update_interval'):
            if getattr(self, name) < 1:
                raise ConfigError(f'{name} {getattr(self, name)} must be >= 1')
        if not 0.0 <= self.discount <= 1.0:
            raise ConfigError(f'discount {self.discount} must be in [0, 1]')
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f'tau {self.tau} must be in (0, 1]')
        if len(self.log_std_bounds) != 2 or not self.log_std_bounds[0] < self.log_std_bounds[1]:
            raise ConfigError(f'log_std_bounds {self.log_std_bounds} must be (low, high), '
                              'low < high')


class SAC:
    """The agent: actor, critic ensemble, target critics, temperature and their optimisers."""

    def __init__(self, observation_dim: int, action_dim: int, config: SACConfig,
                 seed: int = 0) -> None:
        self.config = config
        self.observation_dim, self.action_dim = int(observation_dim), int(action_dim)
        self.device = resolve_device(config.device)
        if self.device.type == 'cpu':
            retain_freed_memory()  # no page faults on each update's fresh activations
        self.target_entropy = (float(-action_dim) if config.target_entropy is None
                               else float(config.target_entropy))
        # Initial weights come from a CPU generator (identical on every device); the policy's
        # noise from one on the device. Both are part of the state.
        self._init_generator = torch.Generator().manual_seed(seed)
        self._generator = torch.Generator(self.device).manual_seed(seed + 1)
        self.actor = Actor(self.observation_dim, self.action_dim, config.hidden_sizes,
                           config.log_std_bounds).to(self.device)
        self.actor.reset_parameters(self._init_generator)
        self.critic = EnsembleMLP(config.num_critics, self.observation_dim + self.action_dim,
                                  config.hidden_sizes, 1).to(self.device)
        self.critic_target = EnsembleMLP(config.num_critics,
                                         self.observation_dim + self.action_dim,
                                         config.hidden_sizes, 1).to(self.device)
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(config.init_temperature)),
                                                   device=self.device))
        self.actor_optimizer = _adam(self.actor.parameters(), config.actor_lr)
        self.temperature_optimizer = _adam([self.log_alpha], config.temperature_lr)
        self.reset_critic()
        self.num_updates = 0
        """Gradient steps taken (the actor/target schedules count these)."""
        self._last: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------------------- acting

    @property
    def temperature(self) -> float:
        """The current alpha (a device read: not for inner loops)."""
        return float(self.log_alpha.detach().exp())

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """``[obs_dim] -> [act_dim]`` or ``[N, obs_dim] -> [N, act_dim]``, float32 in [-1, 1]."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device)
        single = obs.dim() == 1
        action = self.actor.act(obs.reshape(1, -1) if single else obs, deterministic,
                                self._generator)
        action = action.cpu().numpy()
        return action[0] if single else action

    # ---------------------------------------------------------------------------- learning

    def update(self, batch: TransitionBatch) -> None:
        """One gradient step on ``batch`` (tensors on :attr:`device`)."""
        self.num_updates += 1
        cfg = self.config
        obs, actions, rewards, next_obs, terminated = batch
        alpha = self.log_alpha.detach().exp()

        # 1. Critic: soft Bellman target from the target critics, a' ~ pi(.|s').
        with torch.no_grad():
            next_actions, next_log_pi = self.actor.sample(next_obs, self._generator)
            next_q = self.critic_target(torch.cat((next_obs, next_actions), dim=-1))
            soft_value = next_q.amin(dim=0).squeeze(-1) - alpha * next_log_pi
            target = rewards + cfg.discount * (1.0 - terminated) * soft_value
        q = self.critic(torch.cat((obs, actions), dim=-1)).squeeze(-1)  # [E, B]
        critic_loss = (q - target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        self._last['critic_loss'] = critic_loss.detach()
        self._last['q_mean'] = q.detach().mean()

        # 2. Actor and temperature, with the critics just updated.
        if self.num_updates % cfg.actor_update_interval == 0:
            new_actions, log_pi = self.actor.sample(obs, self._generator)
            # Critic weights are constants here: the gradient reaches the actor through the
            # action only, via the minimising critic of each row.
            q_pi = self.critic.min_output(torch.cat((obs, new_actions), dim=-1))
            actor_loss = (alpha * log_pi - q_pi).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            log_pi = log_pi.detach()
            if cfg.learn_temperature:
                # J(alpha) = E[alpha (-log pi - Hbar)]; its gradient in log alpha is
                # alpha E[-log pi - Hbar], written directly (no autograd for one scalar).
                self.log_alpha.grad = alpha * (-log_pi - self.target_entropy).mean()
                self.temperature_optimizer.step()
            self._last['actor_loss'] = actor_loss.detach()
            self._last['entropy'] = -log_pi.mean()
        self._last['temperature'] = alpha

        # 3. Polyak averaging of the target critics.
        if self.num_updates % cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)

    def metrics(self) -> dict[str, float]:
        """Figures of the last update: critic_loss, actor_loss, temperature, entropy, q_mean.

        Read from the device here (one transfer), not during :meth:`update`. Empty before
        the first update.
        """
        if not self._last:
            return {}
        names = list(self._last)
        values = torch.stack([self._last[n].float() for n in names]).tolist()
        return dict(zip(names, values, strict=True))

    def reset_critic(self) -> None:
        """Fresh critic weights, targets equal to them, and a fresh critic optimiser.

        PEBBLE calls this after unsupervised pre-training: Q was fitted to the intrinsic
        reward. The actor, temperature and their optimisers are kept.
        """
        self.critic.reset_parameters(self._init_generator)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.critic_optimizer = _adam(self._critic_params, self.config.critic_lr)

    # ---------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        """Networks, optimisers, ``log alpha``, update counter and generators (tensors, ints,
        plain containers: loadable with ``torch.load(weights_only=True)``)."""
        return {
            'observation_dim': self.observation_dim, 'action_dim': self.action_dim,
            'hidden_sizes': list(self.config.hidden_sizes),
            'num_critics': self.config.num_critics,
            'actor': self.actor.state_dict(), 'critic': self.critic.state_dict(),
            'critic_target': self.critic_target.state_dict(),
            'log_alpha': self.log_alpha.detach().clone(),
            'actor_optimizer': self.actor_optimizer.state_dict(),
            'critic_optimizer': self.critic_optimizer.state_dict(),
            'temperature_optimizer': self.temperature_optimizer.state_dict(),
            'num_updates': self.num_updates,
            'generator': self._generator.get_state(),
            'init_generator': self._init_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (onto this agent's device).

        Raises:
            SACStateError: the state was written for other sizes or lacks an entry.
        """
        try:
            sizes = (state['observation_dim'], state['action_dim'],
                     tuple(state['hidden_sizes']), state['num_critics'])
            mine = (self.observation_dim, self.action_dim, self.config.hidden_sizes,
                    self.config.num_critics)
            if sizes != mine:
                raise SACStateError(f'SAC state for (obs, act, hidden, critics) = {sizes}, '
                                    f'this agent is {mine}')
            self.actor.load_state_dict(state['actor'])
            self.critic.load_state_dict(state['critic'])
            self.critic_target.load_state_dict(state['critic_target'])
            with torch.no_grad():
                self.log_alpha.copy_(state['log_alpha'])
            self.actor_optimizer.load_state_dict(state['actor_optimizer'])
            self.critic_optimizer.load_state_dict(state['critic_optimizer'])
            self.temperature_optimizer.load_state_dict(state['temperature_optimizer'])
            self.num_updates = int(state['num_updates'])
            self._generator.set_state(state['generator'].cpu())
            self._init_generator.set_state(state['init_generator'].cpu())
        except KeyError as err:
            raise SACStateError(f'SAC state lacks {err}') from err
        self._last = {}

    def actor_state(self) -> tuple[str, dict[str, np.ndarray]]:
        """(architecture JSON, named float32 arrays): enough to rebuild the actor elsewhere."""
        return self.actor.architecture(), actor_tensors(self.actor)

    @staticmethod
    def actor_from_state(architecture: str, tensors: dict, seed: int = 0) -> ActorPolicy:
        """A CPU policy with ``.act(obs, deterministic)`` from :meth:`actor_state`'s output.

        Raises:
            InvalidWeightsError: unknown architecture, or missing/misshapen/non-finite tensors.
        """
        return ActorPolicy.from_state(architecture, tensors, seed)


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over every tensor of the group)."""
    return torch.optim.Adam(params, lr=lr, fused=True)
