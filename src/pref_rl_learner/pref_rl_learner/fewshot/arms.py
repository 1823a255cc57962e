"""The three reward-learning arms of ``pref-rl train`` (and of the ROS learner).

Few-shot preference learning (Hejna & Sadigh 2022, https://arxiv.org/abs/2212.03363) compares

- ``pebble``: PEBBLE from scratch: a freshly initialised ensemble, trained with Adam
  (:class:`~pref_rl_learner.reward.training.RewardTrainer`) on every stored label each session;
- ``init``: the same training, but the ensemble starts from a pretrained checkpoint (a
  ``pref-rl pretrain`` meta-initialisation or a ``pref-rl reward-train`` model) and keeps
  training from wherever the previous session left it;
- ``fewshot`` (FewShotPEBBLE): the ensemble is reset to the meta-initialisation every session
  and adapted with the learned learning rates
  (:class:`~pref_rl_learner.fewshot.adapt.FewShotTrainer`), falling back to Adam when the
  adaptation misses its accuracy target.

(``sac`` learns from the true reward; it gets the ``pebble`` ensemble, which it never trains.)
A loaded model starts at ``version`` 0, like a fresh one, so everything else in the run (query
sampling, labelling of new transitions, critic reset) behaves as in ``pebble`` until the first
feedback session has trained or adapted it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from pref_rl_learner.batches import PreferenceBatch
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.fewshot.adapt import FewShotTrainer
from pref_rl_learner.fewshot.meta_checkpoint import PretrainedReward, load_pretrained
from pref_rl_learner.reward.ensemble import RewardEnsemble, RewardModelConfig
from pref_rl_learner.reward.training import RewardTrainer, TrainingReport

if TYPE_CHECKING:
    from pref_rl_learner.pebble.config import TrainConfig

ARCHITECTURE_FIELDS = ('ensemble_size', 'hidden_sizes', 'inputs', 'encoder', 'dropout',
                       'batch_norm', 'negative_slope', 'cnn_channels', 'cnn_kernels',
                       'cnn_strides')
"""RewardModelConfig fields that define the function a checkpoint's weights compute; the
others (device, member_batching, inference_chunk) are taken from the train config."""


class PretrainedRewardError(PrefRLError, ValueError):
    """A pretrained reward checkpoint does not fit the run: other observation or action
    shapes, another architecture, or no MAML state where the ``fewshot`` arm needs it."""


class RewardLearner(Protocol):
    """What PEBBLE and the ROS learner need from a reward trainer."""

    def train(self, train: PreferenceBatch, val: PreferenceBatch | None = None
              ) -> TrainingReport:
        """Fit the model to the labels (increments ``model.version`` once)."""

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state (tensors and plain data)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def make_reward_learning(config: TrainConfig, observation_shape: tuple[int, ...],
                         action_dim: int, *, load: bool = True
                         ) -> tuple[RewardEnsemble, RewardLearner]:
    """The reward ensemble and its trainer for ``config.algorithm``.

    Args:
        config: the run; ``init`` and ``fewshot`` read ``config.pretrained_reward``.
        observation_shape, action_dim: the task's.
        load: read the pretrained checkpoint. A run resuming from its own checkpoint passes
            False: the model's weights and the few-shot trainer's θ and α come back from
            the run checkpoint, so the pretrained file is no longer needed.

    Raises:
        CheckpointError: the pretrained checkpoint is missing, truncated or corrupt.
        PretrainedRewardError: it does not fit the task or the configured architecture, or
            ``fewshot`` is given one without learned learning rates.
    """
    model = RewardEnsemble(observation_shape, action_dim, config.reward_model,
                           seed=config.seed)
    if config.algorithm not in ('init', 'fewshot'):
        return model, RewardTrainer(model, config.reward_training, seed=config.seed)
    pretrained = load_pretrained(config.pretrained_reward) if load else None
    if pretrained is not None:
        check_compatible(pretrained, model)
        model.load_state_dict(pretrained.model.state_dict())
        model.version = 0  # behaves as a fresh model until the first session trains it
    if config.algorithm == 'init':
        return model, RewardTrainer(model, config.reward_training, seed=config.seed)
    if pretrained is not None and pretrained.inner_lrs is None:
        raise PretrainedRewardError(
            f'{pretrained.path}: holds no learned learning rates (not written by `pref-rl '
            'pretrain`): the fewshot arm needs them; use algorithm init for this checkpoint')
    inner_lrs = pretrained.inner_lrs if pretrained is not None else {
        n: p.detach().clone() for n, p in model.named_parameters()}  # replaced on resume
    return model, FewShotTrainer(model, inner_lrs, config.fewshot, config.reward_training,
                                 seed=config.seed)


def check_compatible(pretrained: PretrainedReward, model: RewardEnsemble) -> None:
    """Raise :class:`PretrainedRewardError` naming both sides when the checkpoint's shapes or
    architecture differ from ``model``'s (built from the task and the train config)."""
    saved = pretrained.model
    where = f'{pretrained.path}'
    if saved.observation_shape != model.observation_shape:
        raise PretrainedRewardError(
            f'{where}: pretrained on observations of shape {saved.observation_shape}, the '
            f'task has {model.observation_shape}')
    if model.config.inputs == 'state_action' and saved.action_dim != model.action_dim:
        raise PretrainedRewardError(
            f'{where}: pretrained with action_dim {saved.action_dim}, the task has '
            f'{model.action_dim}')
    fields = [name for name in ARCHITECTURE_FIELDS
              if model.config.encoder == 'cnn' or not name.startswith('cnn_')]
    differ = [name for name in fields if _field(saved.config, name) != _field(model.config, name)]
    if differ:
        both = ', '.join(f'{name}: checkpoint {_field(saved.config, name)!r} vs train config '
                         f'{_field(model.config, name)!r}' for name in differ)
        raise PretrainedRewardError(f'{where}: reward_model architecture differs ({both}); '
                                    'set reward_model in the train config to match')


def _field(config: RewardModelConfig, name: str) -> Any:
    value = dataclasses.asdict(config)[name]
    return list(value) if isinstance(value, tuple) else value
