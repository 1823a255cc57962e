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

Meta-training runs a whole meta-batch as one computation (:meth:`MAML.meta_batch_loss`): the
``T`` tasks' copies of the ``M`` members are ``T·M`` networks whose weights are stacked
``[T·M, in, out]``, so every layer of every inner step (gradients by explicit
backpropagation, differentiable: the second-order terms stay exact), of the query pass and of
the meta-gradient is one batched matrix product for all tasks and members, and nothing is
read back to Python. Adaptation at run time (:meth:`MAML.step`, one task: ``T = 1``) takes the
same inner step (:meth:`MAML.stacked_step`) without the graph.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.func import functional_call

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.reward.ensemble import RewardEnsemble
from pref_rl_learner.reward.layers import StackedTape
from pref_rl_learner.reward.training import PairTensors, preference_loss

Params = dict[str, torch.Tensor]
"""Parameters of the ensemble by ``named_parameters`` name."""
_HEAD = 'head.'
_HEAD_LINEARS = _HEAD + 'linears.'
"""Name prefix of the stacked linear layers of the ensemble's MLP head."""


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
             create_graph: bool = False, inner_lrs: Params | None = None) -> Params:
        """One inner update θ ← θ − α ⊙ ∇_θ ℒ(θ; data) (see :meth:`adapt`).

        When :attr:`batches_tasks`, the members' gradients come from one stacked explicit
        backpropagation (:meth:`stacked_step`, the inner step of pretraining's meta-batch);
        otherwise (pixels, batch norm) from autograd (:meth:`autograd_step`). Same update.
        ``inner_lrs``: rates to use instead of α (e.g. α scaled per member).
        """
        inner_lrs = self.inner_lrs if inner_lrs is None else inner_lrs
        if not self.batches_tasks:
            return self.autograd_step(params, data, create_graph, inner_lrs)
        stacked, weights = stack_tasks([data])
        return self.stacked_step(dict(params), inner_lrs, stacked, weights, create_graph)

    def stacked_step(self, params: Params, inner_lrs: Params, data: PairTensors,
                     weights: torch.Tensor, create_graph: bool) -> Params:
        """θ ← θ − α ⊙ ∇ℒ for ``G = T·M`` stacked networks at once (only when
        :attr:`batches_tasks`): ``params`` and ``inner_lrs`` ``[G, ...]`` (or ``[M, ...]`` when
        ``T`` is 1), ``data`` the ``T`` stacked tasks ``[T, N, ...]`` and ``weights`` ``[T, N]``
        (:func:`stack_tasks`). Slice (𝒯, m) of every gradient is ∇ of copy (𝒯, m)'s own loss
        Σ_n w_n ℓ_n alone. With ``create_graph`` the update is differentiable in ``params``
        and ``inner_lrs`` (exact second order unless ``first_order``); without it, constant."""
        features = self._stacked_features(data)
        second_order = create_graph and not self.config.first_order
        with torch.set_grad_enabled(create_graph):
            grads = self.model.head.stacked_gradients(
                _head_names(params), features,
                lambda rewards: self._task_losses(rewards, data, weights)[0].sum(),
                create_graph=second_order)
            return _sgd(params, inner_lrs, grads)

    def forward_step(self, params: Params, data: PairTensors
                     ) -> tuple[torch.Tensor, PendingStep]:
        """The forward half of :meth:`step` (only when :attr:`batches_tasks`; no graph): the
        logits ``[M, N]`` of ``data`` under ``params`` (in train mode: equal to eval mode's
        without dropout), and what :meth:`finish_step` needs to complete the update. Lets
        adaptation read the logits (its stopping check) before deciding to take the step."""
        stacked, weights = stack_tasks([data])
        with torch.no_grad():
            rewards, tape = self.model.head.stacked_forward(
                _head_names(params), self._stacked_features(stacked), create_graph=False)
        logits = self._task_losses(rewards, stacked, weights)[1][0]
        return logits, PendingStep(rewards, tape, stacked, weights)

    def finish_step(self, params: Params, pending: PendingStep) -> Params:
        """Complete :meth:`forward_step`: the same update as :meth:`step` (no graph)."""
        rewards = pending.rewards.detach().requires_grad_()
        with torch.enable_grad():
            loss = self._task_losses(rewards, pending.data, pending.weights)[0].sum()
            (grad,) = torch.autograd.grad(loss, rewards)
        with torch.no_grad():
            grads = self.model.head.stacked_backward(_head_names(params), pending.tape,
                                                     rewards, grad, create_graph=False)
            return _sgd(params, self.inner_lrs, grads)

    def autograd_step(self, params: Mapping[str, torch.Tensor], data: PairTensors,
                      create_graph: bool = False, inner_lrs: Params | None = None) -> Params:
        """:meth:`step` by autograd through :func:`functional_call` of the whole ensemble
        (any architecture: pixels, batch norm; the members through the ensemble's own
        kernel). The reference the stacked step is tested against."""
        inner_lrs = self.inner_lrs if inner_lrs is None else inner_lrs
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
                updated[name] = params[name] - inner_lrs[name] * grad
            else:
                with torch.no_grad():
                    updated[name] = params[name] - inner_lrs[name] * grad
        return updated

    def meta_loss(self, support: PairTensors, query: PairTensors
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ℒ(θ'; query) with θ' adapted on ``support``, query logits ``[M, N]``)."""
        adapted = self.adapt(support, create_graph=True)
        return self.loss(adapted, query)

    # ------------------------------------------------------------------------ meta-batch

    @property
    def batches_tasks(self) -> bool:
        """Whether :meth:`meta_batch_loss` runs tasks and members as one stacked computation:
        an MLP on vector observations without batch norm (every parameter a stacked linear
        layer). Otherwise (pixels, batch norm) it loops over the tasks."""
        return all(name.startswith(_HEAD_LINEARS) for name, _ in self.model.named_parameters())

    def meta_batch_loss(self, supports: Sequence[PairTensors], queries: Sequence[PairTensors]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1/T Σ_𝒯 ℒ(θ'_𝒯; 𝒟^q_𝒯), mean post-adaptation query accuracy over the tasks).

        The outer objective of one meta-batch of ``T`` tasks: each task's θ'_𝒯 adapted on its
        support set (``inner_steps``, graph kept: exact second order unless ``first_order``),
        its ensemble loss on its query set, averaged over tasks; backward of the first entry
        gives the meta-gradient in θ and α. Both entries are tensors (NaN accuracy when no
        query label is decisive); tasks may have different numbers of pairs (padded, masked).
        """
        if not self.batches_tasks:
            terms = [self.meta_loss(s, q) for s, q in zip(supports, queries, strict=True)]
            accuracy = torch.stack([pair_accuracies(logits[None], q.targets[None])[0]
                                    for (_, logits), q in zip(terms, queries, strict=True)])
            return torch.stack([loss for loss, _ in terms]).mean(), accuracy.nanmean()
        tasks, members = len(supports), self.model.ensemble_size
        support, support_weights = stack_tasks(supports)
        query, query_weights = stack_tasks(queries)

        def per_task_member(x: torch.Tensor) -> torch.Tensor:
            """``[M, ...]`` -> ``[T·M, ...]``: task 𝒯's copy of member ``m`` at ``𝒯·M + m``."""
            return x.unsqueeze(0).expand(tasks, *x.shape).reshape(tasks * members, *x.shape[1:])

        params = {n: per_task_member(p) for n, p in self.model.named_parameters()}
        inner_lrs = {n: per_task_member(lr) for n, lr in self.inner_lrs.items()}
        for _ in range(self.config.inner_steps):
            params = self.stacked_step(params, inner_lrs, support, support_weights,
                                       create_graph=True)
        rewards = functional_call(self.model.head, _head_names(params),
                                  (self._stacked_features(query),), {'kernel': 'stacked'})
        per_task, logits = self._task_losses(rewards, query, query_weights)
        accuracy = pair_accuracies(logits, query.targets, query_weights > 0).nanmean()
        return per_task.sum(dim=1).mean(), accuracy

    def _stacked_features(self, data: PairTensors) -> torch.Tensor:
        """Stacked tasks' steps ``[T, N, 2, L, ...]`` as every task-member copy's input
        ``[T·M, N·2·L, F]``."""
        tasks = data.observations.shape[0]
        features = self.model.vector_features(data.observations, data.actions)
        features = features.reshape(tasks, 1, -1, features.shape[-1])
        return features.expand(-1, self.model.ensemble_size, -1, -1).flatten(0, 1)

    def _task_losses(self, rewards: torch.Tensor, data: PairTensors, weights: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ_n w_n ℓ_n per task and member ``[T, M]``, logits ``[T, M, N]``) from the
        per-step rewards ``[T·M, N·2·L]`` of the stacked tasks ``data``."""
        tasks, pairs, _, steps = data.observations.shape[:4]
        returns = rewards.reshape(tasks, -1, pairs, 2, steps).sum(dim=-1)
        logits = returns[..., 1] - returns[..., 0]  # [T, M, N]
        per_pair = preference_loss(logits, data.targets[:, None].expand_as(logits),
                                   self.config.random_response)
        return (per_pair * weights[:, None]).sum(dim=-1), logits

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


class PendingStep(NamedTuple):
    """An inner step whose forward pass is done (:meth:`MAML.forward_step`)."""

    rewards: torch.Tensor
    tape: StackedTape
    data: PairTensors
    weights: torch.Tensor


def _sgd(params: Params, inner_lrs: Params, head_grads: Mapping[str, torch.Tensor]) -> Params:
    """θ − α ⊙ g for every parameter, ``head_grads`` named as the head's parameters."""
    return {n: p - inner_lrs[n] * head_grads[n[len(_HEAD):]] for n, p in params.items()}


def _head_names(params: Params) -> Params:
    """The ensemble's parameters named as parameters of its head module."""
    return {n[len(_HEAD):]: p for n, p in params.items()}


def pair_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy of the ensemble-mean P(right ≻ left) on decisive labels (NaN without any)."""
    return float(pair_accuracies(logits[None], targets[None])[0])


def pair_accuracies(logits: torch.Tensor, targets: torch.Tensor,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`pair_accuracy` of each of ``T`` tasks: logits ``[T, M, N]``, targets ``[T, N]``
    (``valid`` masks padding) -> ``[T]``, NaN for a task without a decisive label. No host
    read."""
    decisive = targets != 0.5
    if valid is not None:
        decisive = decisive & valid
    prob = torch.sigmoid(logits.detach()).mean(dim=1)
    hits = ((prob > 0.5) == (targets > 0.5)) & decisive
    return hits.sum(dim=1).float() / decisive.sum(dim=1).float()


def stack_tasks(tasks: Sequence[PairTensors]) -> tuple[PairTensors, torch.Tensor]:
    """``T`` tasks' pairs padded to the largest and stacked (``[T, N, ...]``), and weights
    ``[T, N]``: 1/n_𝒯 on each of task 𝒯's n_𝒯 pairs, 0 on padding (Σ_n w ℓ is the task's
    mean loss; a task without pairs weighs 0)."""
    pad = torch.nn.utils.rnn.pad_sequence
    counts = torch.tensor([t.targets.shape[0] for t in tasks], device=tasks[0].targets.device)
    stacked = PairTensors(pad([t.observations for t in tasks], batch_first=True),
                          pad([t.actions for t in tasks], batch_first=True),
                          pad([t.targets for t in tasks], batch_first=True))
    rows = torch.arange(stacked.targets.shape[1], device=counts.device)
    dtype = stacked.targets.dtype
    weights = (rows[None] < counts[:, None]).to(dtype) / counts.clamp(min=1)[:, None].to(dtype)
    return stacked, weights


def member_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's accuracy on decisive labels ``[M]`` (NaN without any), on the logits'
    device: no host read."""
    decisive = targets != 0.5
    hits = ((logits.detach() > 0) == (targets > 0.5)) & decisive
    return hits.sum(dim=1).float() / decisive.sum().float()
