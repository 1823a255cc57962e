"""Training the reward ensemble from labelled segment pairs (Bradley-Terry on segment returns).

Christiano et al. 2017 (https://arxiv.org/abs/1706.03741, section 2.2.3) model the chance that
segment σ¹ is preferred over σ⁰ from their predicted returns,

    P̂[σ¹ ≻ σ⁰] = σ(Σ_t r̂(s¹_t, a¹_t) − Σ_t r̂(s⁰_t, a⁰_t)),

and fit r̂ by cross-entropy against the labels μ (1, 0, or 0.5 when the segments were judged
equal). Optionally the model assumes a 10% chance that the human answers uniformly at random:
P = (1 − ε)·P̂ + ε/2, which bounds the loss of a confidently wrong prediction by −log(ε/2).
With validation data, an adaptive L2 penalty keeps the validation loss within a band above the
training loss (the paper uses 1.1× to 1.5×).

All members train in one batched pass with one optimiser; each member draws its own random
order of the training pairs every epoch (as B-Pref does), so members see different batches and
stay diverse. Training stops when every member's training accuracy over the epoch reaches
``target_accuracy`` (PEBBLE/B-Pref: 0.97, few-shot preference RL: 0.95) or at ``max_epochs``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from pref_rl_learner.batches import PreferenceBatch
from pref_rl_learner.config import ConfigError
from pref_rl_learner.reward.ensemble import RewardEnsemble, RewardModelError


@dataclass(frozen=True)
class RewardTrainingConfig:
    """How the reward ensemble is fitted to preferences in one feedback session."""

    lr: float = 3e-4
    """Adam learning rate."""
    batch_size: int = 256
    """Pairs per gradient step, per member (100 in the few-shot code's human configs). With
    pixels, memory grows as M × batch × 2 × T frames: use a few dozen pairs."""
    max_epochs: int = 200
    """Cap on epochs per :meth:`RewardTrainer.train` call. B-Pref/PEBBLE use 200 (its
    ``reward_update``); the few-shot code allows 25k, which only matters for a handful of pairs
    (an epoch is then one step). 200 epochs over 1000 pairs at batch 256 is 800 steps."""
    max_gradient_steps: int = 0
    """Cap on gradient steps (batches of ``batch_size`` pairs per member) per
    :meth:`RewardTrainer.train` call, on top of ``max_epochs``; the last epoch may stop part
    way. Warm-started from the previous weights and optimiser, a training then costs the same
    with 50 labels or 5,000: the bound on label → reward latency (DRLHP's worker, a running
    session). 0: no cap (``max_epochs`` epochs over every label, as B-Pref)."""
    target_accuracy: float | None = 0.97
    """Stop once every member's training accuracy over an epoch is at least this (B-Pref 0.97,
    few-shot 0.95); None always trains ``max_epochs``."""
    random_response: float = 0.0
    """ε of the random-response preference model P = (1 − ε)·σ(ΔR) + ε/2 (DRLHP: 0.1)."""
    weight_decay: float = 0.0
    """Initial L2 weight λ: the loss adds λ·Σ‖W‖² over weight matrices and kernels."""
    adaptive_l2: bool = False
    """After each epoch with validation data, scale λ to keep val loss inside ``l2_band``
    (both losses re-evaluated in eval mode each epoch: about a third more compute)."""
    l2_band: tuple[float, float] = (1.1, 1.5)
    """(low, high): λ grows when val loss > high × train loss, shrinks when < low × it."""
    l2_factor: float = 1.2
    """Multiplicative step of adaptive L2 per epoch."""
    l2_min: float = 1e-6
    """Smallest λ adaptive L2 uses (a raise from 0 starts here; cuts stop here)."""
    member_shuffle: bool = True
    """Each member draws its own permutation of the pairs every epoch (B-Pref); False: all
    members see the same batches (cheaper, but only the initialisation separates them)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        checks = {
            'lr': self.lr > 0, 'batch_size': self.batch_size >= 1,
            'max_epochs': self.max_epochs >= 1,
            'max_gradient_steps': self.max_gradient_steps >= 0,
            'target_accuracy': self.target_accuracy is None or 0 < self.target_accuracy <= 1,
            'random_response': 0 <= self.random_response < 1,
            'weight_decay': self.weight_decay >= 0,
            'l2_band': len(self.l2_band) == 2 and 0 < self.l2_band[0] <= self.l2_band[1],
            'l2_factor': self.l2_factor > 1, 'l2_min': self.l2_min > 0,
        }
        for field, ok in checks.items():
            if not ok:
                raise ConfigError(f'{name}.{field} is out of range: {getattr(self, field)!r}')


@dataclass(frozen=True)
class TrainingReport:
    """Outcome of one :meth:`RewardTrainer.train` call."""

    epochs: int
    """Epochs run (the last one possibly part way, under ``max_gradient_steps``)."""
    gradient_steps: int
    """Gradient steps taken."""
    train_loss: float
    """Preference loss (no L2 term) over the last epoch, mean over members."""
    train_accuracy: float
    """Lowest member's accuracy over the last epoch (the stopping criterion); decisive
    labels only, NaN when every label is EQUAL."""
    member_train_accuracy: tuple[float, ...]
    """Each member's accuracy over the last epoch."""
    val_loss: float | None
    """Mean member preference loss on the validation pairs (None without them)."""
    val_accuracy: float | None
    """Accuracy of the ensemble-mean prediction on decisive validation labels."""
    l2_weight: float
    """λ at the end."""
    reached_target: bool
    """Whether training stopped because ``target_accuracy`` was reached."""
    seconds: float
    """Wall time of the call."""


def preference_loss(logits: torch.Tensor, targets: torch.Tensor,
                    random_response: float = 0.0) -> torch.Tensor:
    """Element-wise −[μ log P + (1 − μ) log(1 − P)], P = (1 − ε)·σ(logits) + ε/2.

    ``logits`` = R_right − R_left, ``targets`` μ = P(right ≻ left) as labelled. Computed in
    log space, so it is finite for any logit; with ε > 0 it is at most −log(ε/2).
    """
    if random_response == 0.0:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    # log P = log((1 − ε)σ(x) + ε/2) = logaddexp(log(1 − ε) + log σ(x), log(ε/2)).
    keep, rand = math.log1p(-random_response), math.log(random_response / 2)
    rand_t = logits.new_tensor(rand)
    log_p = torch.logaddexp(F.logsigmoid(logits) + keep, rand_t)
    log_not_p = torch.logaddexp(F.logsigmoid(-logits) + keep, rand_t)
    return -(targets * log_p + (1 - targets) * log_not_p)


class PairTensors(NamedTuple):
    """A PreferenceBatch on the device, left and right stacked: index 0 left, 1 right
    (:func:`pair_tensors` builds one)."""

    observations: torch.Tensor  # [N, 2, T, *obs]
    actions: torch.Tensor  # [N, 2, T, A]
    targets: torch.Tensor  # [N]


class RewardTrainer:
    """Fits a :class:`RewardEnsemble` to preferences: Adam, Bradley-Terry loss, early stop.

    Keeps the optimiser across calls (PEBBLE trains the same model every feedback session);
    :meth:`reset` starts it afresh. Each :meth:`train` increments ``model.version``.
    """

    def __init__(self, model: RewardEnsemble, config: RewardTrainingConfig,
                 seed: int = 0) -> None:
        self.model, self.config = model, config
        self.generator = torch.Generator().manual_seed(seed)
        self.l2_weight = config.weight_decay
        self.trainings = 0
        self.total_epochs = 0
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def reset(self, reinitialize_model: bool = False, seed: int = 0) -> None:
        """Fresh optimiser and initial λ; with ``reinitialize_model`` also fresh weights."""
        if reinitialize_model:
            self.model.reset_parameters(seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.l2_weight = self.config.weight_decay

    def train(self, train: PreferenceBatch, val: PreferenceBatch | None = None
              ) -> TrainingReport:
        """Train until every member reaches ``target_accuracy``, or for ``max_epochs`` epochs
        or ``max_gradient_steps`` steps, whichever comes first.

        Raises:
            RewardModelError: a batch is empty or malformed.
        """
        start = time.perf_counter()
        config, model = self.config, self.model
        data = pair_tensors(self.model, train, 'train')
        val_data = None if val is None else pair_tensors(self.model, val, 'val')
        model.train()
        reached, epochs, steps = False, 0, 0
        step_cap = config.max_gradient_steps or math.inf
        while epochs < config.max_epochs and steps < step_cap:
            epochs += 1
            loss_sum, correct, decisive, seen, taken = self._epoch(data, step_cap - steps)
            steps += taken
            train_loss = float(loss_sum.mean()) / seen
            # Over the pairs this epoch saw (all of them unless the step cap cut it short).
            member_acc = [float(c / d) if d else math.nan
                          for c, d in zip(correct.tolist(), decisive.tolist(), strict=True)]
            if config.adaptive_l2 and val_data is not None:
                self._adapt_l2(self._evaluate(data)[0], self._evaluate(val_data)[0])
            target = config.target_accuracy
            if target is not None and all(a >= target for a in member_acc):  # NaN: never
                reached = True
                break
        val_loss, val_acc = (None, None) if val_data is None else self._evaluate(val_data)
        model.version += 1
        self.trainings += 1
        self.total_epochs += epochs
        return TrainingReport(
            epochs=epochs, gradient_steps=steps, train_loss=train_loss,
            train_accuracy=min(member_acc),
            member_train_accuracy=tuple(member_acc), val_loss=val_loss, val_accuracy=val_acc,
            l2_weight=self.l2_weight, reached_target=reached,
            seconds=time.perf_counter() - start)

    def evaluate(self, batch: PreferenceBatch) -> tuple[float, float]:
        """(mean member loss, accuracy of the ensemble-mean prediction on decisive labels)."""
        return self._evaluate(pair_tensors(self.model, batch, 'batch'))

    def state_dict(self) -> dict[str, Any]:
        """Optimiser, λ, counters and shuffling RNG (tensors and plain values only)."""
        return {'optimizer': self.optimizer.state_dict(), 'l2_weight': self.l2_weight,
                'trainings': self.trainings, 'total_epochs': self.total_epochs,
                'generator': self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (e.g. from ``torch.load(weights_only=True)``)."""
        self.optimizer.load_state_dict(state['optimizer'])
        self.l2_weight = float(state['l2_weight'])
        self.trainings = int(state['trainings'])
        self.total_epochs = int(state['total_epochs'])
        self.generator.set_state(state['generator'].cpu())

    # ----------------------------------------------------------------------------- helpers

    def _epoch(self, data: PairTensors, max_steps: float = math.inf
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        """One pass over the pairs, or its first ``max_steps`` batches; returns per member
        (summed loss, correct decisive, decisive seen) [M], then pairs seen per member and
        steps taken."""
        model, config = self.model, self.config
        members, count = model.ensemble_size, data.targets.shape[0]
        steps = data.observations.shape[2]
        # Every member its own order of the pairs (or one shared order).
        if config.member_shuffle:
            order = torch.stack([torch.randperm(count, generator=self.generator)
                                 for _ in range(members)])
        else:
            order = torch.randperm(count, generator=self.generator).expand(members, count)
        order = order.to(model.device)
        loss_sum = torch.zeros(members, device=model.device)
        correct = torch.zeros(members, device=model.device)
        decisive = torch.zeros(members, device=model.device)
        seen = taken = 0
        for begin in range(0, count, config.batch_size):
            if taken >= max_steps:
                break
            index = order[:, begin:begin + config.batch_size]  # [M, B]
            size = index.shape[1]
            if config.member_shuffle:
                flat = index.reshape(-1)
                obs = data.observations[flat].reshape(members, size * 2, steps,
                                                      *model.observation_shape)
                act = data.actions[flat].reshape(members, size * 2, steps, -1)
                returns = model.segment_returns(obs, act, per_member=True, validate=False)
            else:
                obs = data.observations[index[0]].flatten(0, 1)  # [B·2, T, *obs]
                act = data.actions[index[0]].flatten(0, 1)
                returns = model.segment_returns(obs, act, validate=False)
            returns = returns.reshape(members, size, 2)
            logits = returns[..., 1] - returns[..., 0]  # R_right − R_left  [M, B]
            targets = data.targets[index]
            per_pair = preference_loss(logits, targets, config.random_response)
            # Sum of the members' mean losses: each member's gradient is its own loss's.
            loss = per_pair.mean(dim=1).sum()
            if self.l2_weight > 0:
                loss = loss + self.l2_weight * sum(w.square().sum()
                                                   for w in model.weight_parameters())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                loss_sum += per_pair.sum(dim=1)
                hits = ((logits > 0) == (targets > 0.5)) & (targets != 0.5)
                correct += hits.sum(dim=1)
                decisive += (targets != 0.5).sum(dim=1)
            seen, taken = seen + size, taken + 1
        return loss_sum.cpu(), correct.cpu(), decisive.cpu(), seen, taken

    def _adapt_l2(self, train_loss: float, val_loss: float) -> None:
        """DRLHP: keep val loss within [low, high] × train loss by scaling λ."""
        low, high = self.config.l2_band
        if val_loss > high * train_loss:  # over-fitting: regularise more
            self.l2_weight = max(self.l2_weight * self.config.l2_factor, self.config.l2_min)
        elif val_loss < low * train_loss and self.l2_weight > 0:  # under-fitting: less
            # (a cut never raises λ: from 0 there is nothing to cut)
            self.l2_weight = max(self.l2_weight / self.config.l2_factor, self.config.l2_min)

    @torch.no_grad()
    def _evaluate(self, data: PairTensors) -> tuple[float, float]:
        model, eps = self.model, self.config.random_response
        steps = 2 * data.observations.shape[2]
        chunk = max(1, model.config.inference_chunk // steps)
        losses, probs = [], []
        with model.evaluating():
            for begin in range(0, data.targets.shape[0], chunk):
                obs = data.observations[begin:begin + chunk]
                act = data.actions[begin:begin + chunk]
                returns = model.segment_returns(obs.flatten(0, 1), act.flatten(0, 1),
                                                validate=False).reshape(model.ensemble_size,
                                                                        -1, 2)
                logits = returns[..., 1] - returns[..., 0]
                targets = data.targets[begin:begin + chunk]
                losses.append(preference_loss(logits, targets.expand_as(logits), eps))
                probs.append(((1 - eps) * torch.sigmoid(logits) + eps / 2).mean(dim=0))
        loss = float(torch.cat(losses, dim=1).mean())
        prob, targets = torch.cat(probs), data.targets
        decisive = targets != 0.5
        if not bool(decisive.any()):
            return loss, math.nan
        hits = (prob > 0.5) == (targets > 0.5)
        return loss, float(hits[decisive].float().mean())


def pair_tensors(model: RewardEnsemble, batch: PreferenceBatch, name: str = 'batch'
                 ) -> PairTensors:
    """Validate a PreferenceBatch and move it to ``model``'s device, left/right stacked.

    Raises:
        RewardModelError: the batch is empty, or its shapes, dtypes or values do not fit
            ``model`` (``name`` says which batch in the message).
    """
    count = batch.num_pairs
    if count == 0:
        raise RewardModelError(f'{name}: no preference pairs')
    obs_l, obs_r = np.asarray(batch.left_observations), np.asarray(batch.right_observations)
    act_l, act_r = np.asarray(batch.left_actions), np.asarray(batch.right_actions)
    if obs_l.shape != obs_r.shape or obs_l.shape[0] != count or obs_l.ndim < 3 \
            or obs_l.shape[2:] != model.observation_shape:
        raise RewardModelError(
            f'{name}: left/right observations {obs_l.shape}/{obs_r.shape} must both be '
            f'[N={count}, T, *{model.observation_shape}]')
    if act_l.shape != act_r.shape or act_l.shape[:2] != obs_l.shape[:2] or (
            model.config.inputs == 'state_action' and act_l.shape[2:] != (model.action_dim,)):
        raise RewardModelError(f'{name}: left/right actions {act_l.shape}/{act_r.shape} '
                               f'must both be [{count}, {obs_l.shape[1]}, '
                               f'{model.action_dim}]')
    targets = np.asarray(batch.right_preferred, dtype=np.float32)
    if targets.shape != (count,) or not np.all((targets >= 0) & (targets <= 1)):
        raise RewardModelError(f'{name}: right_preferred must be [N] in [0, 1] (NaN is '
                               f'not), got shape {targets.shape}')
    for label, array in (('observations', obs_l), ('observations', obs_r),
                         ('actions', act_l), ('actions', act_r)):
        if array.dtype.kind == 'f' and not np.isfinite(array).all():
            raise RewardModelError(f'{name}: {label} hold NaN or inf')
    obs_dtype = np.uint8 if obs_l.dtype == np.uint8 else np.float32
    if obs_dtype == np.uint8 and model.encoder is None:
        raise RewardModelError(f'{name}: uint8 observations need the cnn encoder')
    device = model.device
    return PairTensors(
        torch.from_numpy(np.stack([obs_l, obs_r], axis=1).astype(obs_dtype)).to(device),
        torch.from_numpy(np.stack([act_l, act_r], axis=1).astype(np.float32)).to(device),
        torch.from_numpy(targets).to(device))
