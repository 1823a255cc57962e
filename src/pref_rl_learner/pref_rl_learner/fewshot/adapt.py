"""Few-shot adaptation of the meta-trained reward ensemble in every feedback session.

FewShotPEBBLE (Hejna & Sadigh, CoRL 2022, https://arxiv.org/abs/2212.03363, Sec. 4.2): at each
feedback session the reward ensemble is reset to the meta-initialisation θ and adapted with the
learned per-parameter learning rates α on *all* labels stored so far,

    θ ← θ − α ⊙ ∇_θ ℒ(θ; 𝒟)        (at most ``adapt_max_steps`` epochs)

until every member's training accuracy reaches ``target_accuracy`` (paper: 40 epochs, 0.95).
When it does not, adaptation "fails" and ordinary training takes over, from θ again
(:class:`~pref_rl_learner.reward.training.RewardTrainer`: Adam, ``reward_training``'s
``max_epochs`` and target; paper: up to 1000 epochs): weights that missed the target may have
blown up (the learned rates were meta-trained for a couple of steps, not 40) or collapsed to a
constant reward that Adam cannot leave. Resetting every session means the reward
is always θ plus a small, label-driven step: the prior learned from the offline tasks is never
washed out by early, scarce labels.

:class:`FewShotTrainer` has :class:`RewardTrainer`'s interface (``train(train, val)`` →
report, ``state_dict``/``load_state_dict``, one ``model.version`` increment per ``train``), so
PEBBLE and the ROS learner use it unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from pref_rl_learner.batches import PreferenceBatch
from pref_rl_learner.config import ConfigError
from pref_rl_learner.fewshot.maml import MAML, MAMLConfig, Params, member_accuracy
from pref_rl_learner.reward.ensemble import RewardEnsemble
from pref_rl_learner.reward.training import (
    PairTensors,
    RewardTrainer,
    RewardTrainingConfig,
    TrainingReport,
    pair_tensors,
    preference_loss,
)

ADAPTED = 'adapted'
"""Report path: adaptation with the learned learning rates reached the target."""
FALLBACK = 'fallback'
"""Report path: it did not, and ordinary (Adam) training took over from θ."""
NOT_REACHED = 'not_reached'
"""Report path: it did not, and ``fallback`` is off: the adapted weights are kept."""


@dataclass(frozen=True)
class FewShotConfig:
    """Adaptation of the ``fewshot`` arm in every feedback session (paper's values)."""

    adapt_max_steps: int = 40
    """Most epochs of learned-learning-rate SGD over every stored label (paper: 40). An epoch
    is one step while the labels fit in one ``reward_training.batch_size`` batch."""
    adapt_min_steps: int = 2
    """Epochs always taken, even when the target is reached earlier: the meta-initialisation
    was trained to be good after ``maml.inner_steps`` (paper: 2) steps, not before."""
    target_accuracy: float = 0.95
    """Adaptation succeeds once every member's accuracy on the training labels reaches this
    (paper: 0.95)."""
    fallback: bool = True
    """When adaptation misses the target, train with Adam (``reward_training``) from θ
    instead; False keeps the adapted weights (the last finite ones if they blew up)."""
    safeguard: bool = False
    """Not in the paper: a member's epoch is kept only when it does not raise that member's
    loss on the labels; otherwise the member stays where it was and its step α ⊙ ∇ℒ is
    halved (doubled again, up to α, after a kept epoch). The learned rates were meta-trained
    for ``maml.inner_steps`` steps on the pretraining pairs and can overshoot on a session's
    labels (``bench/adaptation_probe.py``). Needs an MLP reward on vector observations."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.adapt_max_steps < 1:
            raise ConfigError(f'{name}.adapt_max_steps must be >= 1, got '
                              f'{self.adapt_max_steps}')
        if not 0 <= self.adapt_min_steps <= self.adapt_max_steps:
            raise ConfigError(f'{name}.adapt_min_steps must be in [0, adapt_max_steps], got '
                              f'{self.adapt_min_steps}')
        if not 0 < self.target_accuracy <= 1:
            raise ConfigError(f'{name}.target_accuracy must be in (0, 1], got '
                              f'{self.target_accuracy}')


@dataclass(frozen=True)
class FewShotReport(TrainingReport):
    """A :class:`TrainingReport` that also says how the session's reward was obtained."""

    path: str
    """``adapted``, ``fallback`` or ``not_reached`` (module constants)."""
    adapt_steps: int
    """Epochs of adaptation run before stopping or falling back."""
    adapt_accuracy: float
    """Lowest member's training accuracy right after adaptation."""

    def figures(self) -> dict[str, float]:
        """The adaptation figures for a run log (``adapt_path``: 1 adapted, 0 fell back,
        −1 kept without reaching the target)."""
        code = {ADAPTED: 1.0, FALLBACK: 0.0, NOT_REACHED: -1.0}[self.path]
        return {'adapt_path': code, 'adapt_steps': float(self.adapt_steps),
                'adapt_accuracy': self.adapt_accuracy}


class FewShotTrainer:
    """Resets ``model`` to its meta-initialisation and adapts it, every :meth:`train` call.

    Args:
        model: the ensemble, holding the meta-initialisation θ when constructed.
        inner_lrs: the learned α by parameter name (``pref-rl pretrain``'s).
        config: adaptation settings.
        training: the fallback's settings (Adam); also its minibatch size and ε.
        seed: seeds the minibatch order and the fallback's shuffling.
    """

    def __init__(self, model: RewardEnsemble, inner_lrs: Params, config: FewShotConfig,
                 training: RewardTrainingConfig, seed: int = 0) -> None:
        self.model, self.config, self.training = model, config, training
        self.maml = MAML(model, MAMLConfig(learn_inner_lr=False,
                                           random_response=training.random_response))
        self.maml.load_state_dict({'inner_lrs': inner_lrs})
        if config.safeguard and not self.maml.batches_tasks:
            raise ConfigError('fewshot.safeguard needs an MLP reward on vector observations '
                              '(its steps are scaled per ensemble member)')
        self.meta_init: Params = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.fallback_trainer = RewardTrainer(model, training, seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.counts = {ADAPTED: 0, FALLBACK: 0, NOT_REACHED: 0}

    def reset_to_meta_init(self) -> None:
        """Put θ back into the model (normalisation and version are left alone)."""
        self.maml.load_parameters(self.meta_init)

    def train(self, train: PreferenceBatch, val: PreferenceBatch | None = None
              ) -> FewShotReport:
        """Reset to θ, adapt on ``train``; fall back to Adam when the target is missed.

        Raises:
            RewardModelError: a batch is empty or malformed.
        """
        start = time.perf_counter()
        data = pair_tensors(self.model, train, 'train')
        if val is not None:
            pair_tensors(self.model, val, 'val')  # reject a malformed val set up front
        self.reset_to_meta_init()
        adapt = self._adapt_safeguarded if self.config.safeguard else self._adapt
        params, steps, member_acc, diverged, train_loss = adapt(data)
        self.maml.load_parameters(params)
        adapt_acc = _lowest(member_acc)
        reached = (not diverged and not math.isnan(adapt_acc)
                   and adapt_acc >= self.config.target_accuracy)
        if not reached and self.config.fallback:
            # Adam starts from θ: adapted weights that missed the target may have blown up
            # or collapsed to a constant reward it cannot leave.
            self.reset_to_meta_init()
            self.fallback_trainer.reset()
            base = self.fallback_trainer.train(train, val)  # increments model.version
            self.counts[FALLBACK] += 1
            # The session's wall time: the adaptation tried first, then Adam's.
            return FewShotReport(**{**vars(base), 'seconds': time.perf_counter() - start},
                                 path=FALLBACK, adapt_steps=steps, adapt_accuracy=adapt_acc)
        path = ADAPTED if reached else NOT_REACHED
        self.counts[path] += 1
        val_loss, val_acc = (None, None) if val is None else self.fallback_trainer.evaluate(val)
        self.model.version += 1
        batches = -(-train.num_pairs // self.training.batch_size)
        return FewShotReport(
            epochs=steps, gradient_steps=steps * batches, train_loss=train_loss,
            train_accuracy=adapt_acc,
            member_train_accuracy=tuple(float(a) for a in member_acc), val_loss=val_loss,
            val_accuracy=val_acc, l2_weight=self.fallback_trainer.l2_weight,
            reached_target=reached, seconds=time.perf_counter() - start, path=path,
            adapt_steps=steps, adapt_accuracy=adapt_acc)

    def evaluate(self, batch: PreferenceBatch) -> tuple[float, float]:
        """(mean member loss, accuracy of the ensemble mean) of the current weights."""
        return self.fallback_trainer.evaluate(batch)

    def _adapt(self, data: PairTensors) -> tuple[Params, int, torch.Tensor, bool, float]:
        """Epochs of θ ← θ − α ⊙ ∇ℒ until the target; (weights, epochs, member accuracy,
        diverged, mean member loss on ``data``). The learned rates were meta-trained for a
        few steps; over many they can blow up, and then the last finite weights are returned
        with ``diverged`` set.

        Every member adapts in the same step (:meth:`MAML.step`: one stacked computation for
        an MLP head). Before every epoch the weights are checked (finite, each member's
        accuracy on every label: the stopping rule), the only values read back to the host.
        Without dropout the check reuses the forward pass of the epoch's first minibatch
        (:meth:`MAML.forward_step`), so it evaluates only the pairs outside it: with the
        labels in one minibatch it costs nothing."""
        config, model, maml = self.config, self.model, self.maml
        count, batch = data.targets.shape[0], self.training.batch_size
        fused = maml.batches_tasks and not model.config.dropout
        params, previous = maml.initial_parameters(), None
        member_acc, loss, steps = torch.full((model.ensemble_size,), math.nan), math.nan, 0
        while True:
            more = steps < config.adapt_max_steps
            drawn = self.generator.get_state()
            order = (torch.randperm(count, generator=self.generator).to(data.targets.device)
                     if more else None)
            model.train()
            pending = known = None
            if more and fused:
                known, pending = maml.forward_step(params, _take(data, order[:batch]))
            accuracy, checked_loss = self._check(params, data, order, known)
            if accuracy is None:  # non-finite: θ unusable (to the fallback), or blown up
                return (params if previous is None else previous), steps, member_acc, True, loss
            member_acc, loss = accuracy, checked_loss
            if not more or (steps >= config.adapt_min_steps
                            and _lowest(member_acc) >= config.target_accuracy):
                if more:
                    self.generator.set_state(drawn)  # the epoch not taken draws no order
                return params, steps, member_acc, False, loss
            previous = params
            for begin in range(0, count, batch):
                if begin == 0 and pending is not None:
                    params = maml.finish_step(params, pending)
                else:
                    params = maml.step(params, _take(data, order[begin:begin + batch]))
            steps += 1

    def _adapt_safeguarded(self, data: PairTensors
                           ) -> tuple[Params, int, torch.Tensor, bool, float]:
        """:meth:`_adapt` with ``safeguard``: every epoch each member takes its step scaled by
        its own factor s_m (1 at θ); the step is kept when the member's loss on ``data`` does
        not rise (then s_m doubles, up to 1), else the member keeps its weights and s_m
        halves. So each member's loss never rises and no weight blows up; ``diverged`` only
        when θ itself is not finite."""
        config, maml = self.config, self.maml
        count, batch = data.targets.shape[0], self.training.batch_size
        params = {n: p.detach() for n, p in maml.initial_parameters().items()}
        accuracy, loss, finite = self._member_check(params, data)
        if not bool(finite.all()):
            return params, 0, accuracy, True, math.nan
        scale, steps = torch.ones_like(loss), 0
        while steps < config.adapt_max_steps and not (
                steps >= config.adapt_min_steps and _lowest(accuracy) >= config.target_accuracy):
            rates = {n: lr * _per_member(scale, lr) for n, lr in maml.inner_lrs.items()}
            order = torch.randperm(count, generator=self.generator).to(data.targets.device)
            self.model.train()
            candidate = params
            for begin in range(0, count, batch):
                candidate = maml.step(candidate, _take(data, order[begin:begin + batch]),
                                      inner_lrs=rates)
            new_accuracy, new_loss, finite = self._member_check(candidate, data)
            keep = finite & (new_loss <= loss)
            params = {n: torch.where(_per_member(keep, p), candidate[n], p)
                      for n, p in params.items()}
            accuracy = torch.where(keep, new_accuracy, accuracy)
            loss = torch.where(keep, new_loss, loss)
            scale = torch.where(keep, (2 * scale).clamp(max=1.0), scale / 2)
            steps += 1
        return params, steps, accuracy, False, float(loss.mean())

    @torch.no_grad()
    def _member_check(self, params: Params, data: PairTensors
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each member's (accuracy, mean preference loss, all weights and returns finite) on
        ``data`` under ``params`` in eval mode, each ``[M]`` (weights stacked by member)."""
        joined, targets = self._logits(params, data)
        finite = torch.isfinite(joined).all(dim=1)
        for p in params.values():
            finite &= torch.isfinite(p).flatten(1).all(dim=1)
        loss = preference_loss(joined, targets.expand_as(joined),
                               self.training.random_response).mean(dim=1)
        return member_accuracy(joined, targets), torch.where(finite, loss, math.inf), finite

    @torch.no_grad()
    def _logits(self, params: Params, data: PairTensors, order: torch.Tensor | None = None,
                known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits ``[M, N]`` of ``data``'s pairs in ``order`` under ``params`` in eval
        mode, chunked; their targets ``[N]``). ``known``: the logits ``[M, B]`` of the first
        ``B`` pairs of ``order``, already computed (only the others are evaluated)."""
        model = self.model
        steps = 2 * data.observations.shape[2]
        chunk = max(1, model.config.inference_chunk // steps)
        count = data.targets.shape[0]
        order = torch.arange(count, device=data.targets.device) if order is None else order
        logits = [] if known is None else [known]
        with model.evaluating():
            for begin in range(0 if known is None else known.shape[1], count, chunk):
                logits.append(self.maml.pair_logits(
                    params, _take(data, order[begin:begin + chunk])))
        return torch.cat(logits, dim=1), data.targets[order]

    @torch.no_grad()
    def _check(self, params: Params, data: PairTensors, order: torch.Tensor | None = None,
               known: torch.Tensor | None = None) -> tuple[torch.Tensor | None, float]:
        """(each member's accuracy on ``data`` ``[M]``, mean member preference loss) of
        ``params`` in eval mode, chunked; (None, NaN) when a weight or a return is not
        finite. One read back to the host. ``order``, ``known``: as :meth:`_logits`."""
        joined, targets = self._logits(params, data, order, known)
        finite = torch.stack([torch.isfinite(joined).all(),
                              *(torch.isfinite(p).all() for p in params.values())]).all()
        loss = preference_loss(joined, targets.expand_as(joined),
                               self.training.random_response).mean()
        figures = torch.cat([finite[None].to(loss.dtype), loss[None],
                             member_accuracy(joined, targets).to(loss.dtype)]).tolist()
        if not figures[0]:
            return None, math.nan
        return torch.tensor(figures[2:]), figures[1]

    def state_dict(self) -> dict[str, Any]:
        """θ, α, the fallback trainer, the counters and the shuffling generator."""
        return {'meta_init': {n: t.clone() for n, t in self.meta_init.items()},
                'inner_lrs': self.maml.state_dict()['inner_lrs'],
                'fallback': self.fallback_trainer.state_dict(),
                'counts': dict(self.counts), 'generator': self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (θ and α included: a resumed run needs no
        pretrained file).

        Raises:
            MAMLStateError: α of other parameters or shapes; KeyError / RuntimeError: an
                incomplete state or θ of other shapes.
        """
        meta_init = state['meta_init']
        for name, tensor in self.meta_init.items():
            if tuple(meta_init[name].shape) != tuple(tensor.shape):
                raise RuntimeError(f'meta_init {name}: saved shape '
                                   f'{tuple(meta_init[name].shape)}, model {tuple(tensor.shape)}')
        self.maml.load_state_dict({'inner_lrs': state['inner_lrs']})
        self.meta_init = {n: meta_init[n].to(t.device).clone() for n, t in self.meta_init.items()}
        self.fallback_trainer.load_state_dict(state['fallback'])
        self.counts = {k: int(state['counts'][k]) for k in self.counts}
        self.generator.set_state(state['generator'].cpu())


def _take(data: PairTensors, index: torch.Tensor) -> PairTensors:
    """The pairs ``index`` of ``data``."""
    return PairTensors(data.observations[index], data.actions[index], data.targets[index])


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[M]`` values shaped to broadcast over a parameter stacked by member ``[M, ...]``."""
    return values.reshape(-1, *(1,) * (like.dim() - 1))


def _lowest(member_acc: torch.Tensor) -> float:
    return float(member_acc.min()) if member_acc.numel() else math.nan
