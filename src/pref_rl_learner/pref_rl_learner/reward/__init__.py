"""Learned rewards: an ensemble of reward predictors and its training from preferences.

- :mod:`.ensemble`: :class:`RewardEnsemble` (MLP or CNN members, batched) and its config.
- :mod:`.training`: Bradley-Terry training (:class:`RewardTrainer`), adaptive L2, early stop.
- :mod:`.normalizer`: zero-mean unit-variance normalisation of the reward handed to RL.
- :mod:`.layers`: member-batched linear, MLP and grouped-conv layers.
"""

from pref_rl_learner.reward.ensemble import RewardEnsemble, RewardModelConfig, RewardModelError
from pref_rl_learner.reward.normalizer import RewardNormalizer
from pref_rl_learner.reward.training import (
    RewardTrainer,
    RewardTrainingConfig,
    TrainingReport,
    preference_loss,
)

__all__ = ['RewardEnsemble', 'RewardModelConfig', 'RewardModelError', 'RewardNormalizer',
           'RewardTrainer', 'RewardTrainingConfig', 'TrainingReport', 'preference_loss']
