"""MAML over the reward ensemble, with learned per-parameter inner learning rates.

Few-shot preference learning (Hejna & Sadigh, CoRL 2022, https://arxiv.org/abs/2212.03363)
meta-trains the reward model with MAML (Finn et al. 2017, https://arxiv.org/abs/1703.03400):
for a task 𝒯 with a support set 𝒟ˢ and a query set 𝒟^q of labelled segment pairs,

    θ'_𝒯 = θ − α ⊙ ∇_θ ℒ(θ; 𝒟ˢ)            (repeated ``inner_steps`` times)
    min_{θ, α}  Σ_𝒯 ℒ(θ'_𝒯; 𝒟^q)

where ℒ is the Bradley-Terry preference loss of :mod:`pref_rl_learner.reward.training` and the
inner learning rates α have the shape of θ and are learned with it (Meta-SGD, Li et al. 2017,
https://arxiv.org/abs/1707.09835; the paper's "lr learned"), starting from ``inner_lr``.

The model is the ordinary :class:`~pref_rl_learner.reward.ensemble.RewardEnsemble`, called
functionally (:func:`torch.func.functional_call`) with explicit parameters, so the adapted
weights θ' never overwrite the meta-initialisation θ. Every member adapts on its own loss
(the ensemble loss is the sum of the members' mean losses), so the members stay distinct
meta-initialisations and their disagreement still ranks queries after adaptation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.reward.ensemble import RewardEnsemble
from pref_rl_learner.reward.training import PairTensors, preference_loss

Params = dict[str, torch.Tensor]
"""Parameters of the ensemble by ``named_parameters`` name."""


class MAMLStateError(PrefRLError, ValueError):
    """Saved inner learning rates do not match the reward model's parameters."""


@dataclass(frozen=True)
class MAMLConfig:
    """The inner loop of MAML (defaults: few-shot preference learning)."""

    inner_steps: int = 2
    """Gradient steps of adaptation on the support set during meta-training (paper: 2)."""
    inner_lr: float = 1e-3
    """Initial value of every per-parameter inner learning rate α (paper: 1e-3)."""
    learn_inner_lr: bool = True
    """Learn α with θ in the outer loop (Meta-SGD); False keeps α fixed (plain MAML)."""
    first_order: bool = False
    """Drop the second-order terms (FOMAML): the inner gradients are treated as constants.
    Cheaper; α is still learned through the update θ − α ⊙ g."""
    random_response: float = 0.0
    """ε of the random-response preference model in the inner and outer losses (as
    ``reward_training.random_response``)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.inner_steps < 1:
            raise ConfigError(f'{name}.inner_steps must be >= 1, got {self.inner_steps}')
        if not (math.isfinite(self.inner_lr) and self.inner_lr > 0):
            raise ConfigError(f'{name}.inner_lr must be finite and > 0, got {self.inner_lr}')
        if not 0.0 <= self.random_response < 1.0:
            raise ConfigError(f'{name}.random_response must be in [0, 1), '
                              f'got {self.random_response}')


class MAML:
    """A reward ensemble θ (the meta-initialisation) and its inner learning rates α.

    Args:
        model: the ensemble; its parameters are θ and are updated only by the outer
            optimiser (never by :meth:`adapt`).
        config: inner-loop settings.
    """

    def __init__(self, model: RewardEnsemble, config: MAMLConfig) -> None:
        self.model, self.config = model, config
        self.inner_lrs: Params = {
            name: torch.full_like(p, config.inner_lr, requires_grad=config.learn_inner_lr)
            for name, p in model.named_parameters()}

    def meta_parameters(self) -> list[torch.Tensor]:
        """What the outer optimiser updates: θ, and α when it is learned."""
        params = list(self.model.parameters())
        if self.config.learn_inner_lr:
            params += list(self.inner_lrs.values())
        return params

    def initial_parameters(self) -> Params:
        """θ as a name → tensor mapping (the live parameters, gradients flow into them)."""
        return dict(self.model.named_parameters())

    # ------------------------------------------------------------------------------ losses

    def pair_logits(self, params: Mapping[str, torch.Tensor], data: PairTensors
                    ) -> torch.Tensor:
        """R_right − R_left of every pair under weights ``params``, per member ``[M, N]``."""
        observations = data.observations.flatten(0, 1)  # [N·2, T, *obs]
        actions = data.actions.flatten(0, 1)
        rewards = functional_call(self.model, dict(params), (observations, actions),
                                  {'validate': False})  # [M, N·2, T]
        returns = rewards.sum(dim=-1).reshape(self.model.ensemble_size, -1, 2)
        return returns[..., 1] - returns[..., 0]

    def loss(self, params: Mapping[str, torch.Tensor], data: PairTensors
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ_m mean_n ℓ_mn, logits ``[M, N]``): each member's gradient is its own loss's."""
        logits = self.pair_logits(params, data)
        targets = data.targets.expand_as(logits)
        per_pair = preference_loss(logits, targets, self.config.random_response)
        return per_pair.mean(dim=1).sum(), logits

    # ------------------------------------------------------------------------- inner loop

    def adapt(self, data: PairTensors, steps: int | None = None,
              params: Mapping[str, torch.Tensor] | None = None,
              create_graph: bool = False) -> Params:
        """θ' after ``steps`` (default ``inner_steps``) full-batch steps θ ← θ − α ⊙ ∇ℒ.

        Args:
            data: the labelled pairs to adapt on (the support set).
            params: start from these weights instead of θ.
            create_graph: keep the graph through the updates (meta-training), so the outer
                loss differentiates into θ and α. Without it the result is detached: cheap
                adaptation at deployment.
        """
        current = dict(params) if params is not None else self.initial_parameters()
        for _ in range(self.config.inner_steps if steps is None else steps):
            current = self.step(current, data, create_graph)
        return current

    def step(self, params: Mapping[str, torch.Tensor], data: PairTensors,
             create_graph: bool = False) -> Params:
        """One inner update θ ← θ − α ⊙ ∇_θ ℒ(θ; data) (see :meth:`adapt`)."""
        names = list(params)
        if not create_graph:
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
        loss, _ = self.loss(params, data)
        second_order = create_graph and not self.config.first_order
        grads = torch.autograd.grad(loss, [params[n] for n in names],
                                    create_graph=second_order, allow_unused=True)
        updated = {}
        for name, grad in zip(names, grads, strict=True):
            if grad is None:  # a parameter the loss does not reach (e.g. unused norm)
                updated[name] = params[name]
                continue
            if create_graph:
                updated[name] = params[name] - self.inner_lrs[name] * grad
            else:
                with torch.no_grad():
                    updated[name] = params[name] - self.inner_lrs[name] * grad
        return updated

    def meta_loss(self, support: PairTensors, query: PairTensors
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ℒ(θ'; query) with θ' adapted on ``support``, query logits ``[M, N]``)."""
        adapted = self.adapt(support, create_graph=True)
        return self.loss(adapted, query)

    # ----------------------------------------------------------------------------- state

    def load_parameters(self, params: Mapping[str, torch.Tensor]) -> None:
        """Copy ``params`` into the model's parameters (e.g. adapted weights)."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(params[name])

    def state_dict(self) -> dict[str, Any]:
        """α and the config (plain data and tensors: loads with ``weights_only=True``)."""
        return {'inner_lrs': {n: t.detach().clone() for n, t in self.inner_lrs.items()},
                'config': dataclasses.asdict(self.config)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the α of :meth:`state_dict` (the config is the constructor's).

        Raises:
            MAMLStateError: the saved α name other parameters or have other shapes.
        """
        saved = state['inner_lrs']
        if set(saved) != set(self.inner_lrs):
            raise MAMLStateError(f'inner learning rates for parameters {sorted(saved)}, the '
                                 f'model has {sorted(self.inner_lrs)}')
        for name, lr in self.inner_lrs.items():
            if tuple(saved[name].shape) != tuple(lr.shape):
                raise MAMLStateError(f'inner learning rate {name}: saved shape '
                                     f'{tuple(saved[name].shape)}, model {tuple(lr.shape)}')
            with torch.no_grad():
                lr.copy_(saved[name])


def pair_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy of the ensemble-mean P(right ≻ left) on decisive labels (NaN without any)."""
    decisive = targets != 0.5
    if not bool(decisive.any()):
        return math.nan
    prob = torch.sigmoid(logits.detach()).mean(dim=0)
    hits = (prob > 0.5) == (targets > 0.5)
    return float(hits[decisive].float().mean())


def member_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's accuracy on decisive labels ``[M]`` (NaN without any)."""
    decisive = targets != 0.5
    if not bool(decisive.any()):
        return torch.full((logits.shape[0],), math.nan)
    hits = ((logits.detach() > 0) == (targets > 0.5)) & decisive
    return hits.sum(dim=1).float().cpu() / float(decisive.sum())
