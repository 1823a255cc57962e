"""PEBBLE's learning state and its steps, in one place for every driver.

Lee, Smith, Abbeel, "PEBBLE: Feedback-Efficient Interactive Reinforcement Learning via
Relabeling Experience and Unsupervised Pre-training", ICML 2021
(https://arxiv.org/abs/2106.05091), Algorithm 2:

1. ``seed_steps`` uniformly random actions, no updates;
2. ``unsupervised_steps`` of SAC on the k-NN state-entropy reward (exploration);
3. feedback sessions on the schedule from ``learning_starts`` on; after each, the reward is
   fitted to every label, its normalisation refitted and the whole replay buffer relabelled;
4. SAC on the learned reward. When SAC first switches from the intrinsic to the learned
   reward the critics are reset (their values belong to the intrinsic reward) and
   ``reset_updates`` extra updates follow. This happens after the first training that
   trained something, never after a session that only collected skips: until then the
   buffer holds the env's true rewards, which SAC must never see.

``algorithm: sac`` learns from the true reward (the upper bound). ``init`` and ``fewshot``
start from a pretrained reward, a usable reward before any label.

:class:`PebbleLearning` makes every decision of that list; ``pref-rl train``
(:class:`~pref_rl_learner.pebble.trainer.PebbleTrainer`, a loop over env steps), the ROS
learner (:class:`~pref_rl_learner.learner.core.LearnerCore`, events) drive it and keep only
their own data sources, teachers and counters. The DRLHP worker, which has no SAC, drives its
preference half (:class:`~pref_rl_learner.pebble.reward_learning.PreferenceLearning`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from pref_rl_learner.batches import TransitionBatch
from pref_rl_learner.fewshot.arms import make_reward_learning
from pref_rl_learner.pebble.config import PRETRAINED_ALGORITHMS, TrainConfig
from pref_rl_learner.pebble.finite import all_finite, clone_state
from pref_rl_learner.pebble.reward_learning import PreferenceLearning, run_store_config
from pref_rl_learner.preferences.store import PreferenceStore, PreferenceStoreConfig
from pref_rl_learner.reward.ensemble import RewardEnsemble, RewardModelError
from pref_rl_learner.reward.training import TrainingReport
from pref_rl_learner.sac.agent import SAC
from pref_rl_learner.sac.replay import ReplayBuffer
from pref_rl_learner.schedule import FeedbackBudget, FeedbackSchedule, FeedbackScheduleConfig
from pref_rl_learner.state_entropy import StateEntropyReward

NORMALIZER_SAMPLES = 10_000
"""Replay transitions used to fit the reward normalisation after each training."""
GOOD_STATE_INTERVAL = 500
"""SAC updates between two snapshots of a state verified finite (what a rollback restores)."""
TRUE_REWARDS = -1
"""``labels_from`` while the buffer holds the env's true rewards."""
Guard = AbstractContextManager
_NO_GUARD = contextlib.nullcontext()


class UpdateKind(enum.Enum):
    """Which reward a SAC update learns from (or none)."""

    NONE = 'none'
    """No update: seed phase, or nothing to learn from yet."""
    ENTROPY = 'entropy'
    """The k-NN state-entropy reward (pre-training, and on until a reward model exists)."""
    LEARNED = 'learned'
    """The learned reward."""
    TRUE = 'true'
    """The env's reward (``algorithm: sac``)."""


class PebbleLearning:
    """Agent, replay buffer, reward learning, state entropy and RNGs of one PEBBLE run.

    Args:
        config: the run.
        observation_shape, action_dim: the task's.
        load_prior: read ``init``/``fewshot``'s pretrained checkpoint (False when the run's
            own checkpoint will restore the weights).
    """

    def __init__(self, config: TrainConfig, observation_shape: tuple[int, ...],
                 action_dim: int, *, load_prior: bool = True) -> None:
        self.config = config
        self.observation_shape = tuple(int(d) for d in observation_shape)
        self.action_dim = int(action_dim)
        self.agent = SAC(int(np.prod(self.observation_shape)), self.action_dim, config.sac,
                         seed=config.seed)
        self.buffer = ReplayBuffer(self.observation_shape, self.action_dim,
                                   config.replay_capacity, device=self.agent.device)
        model, trainer = make_reward_learning(config, self.observation_shape, self.action_dim,
                                              load=load_prior)
        schedule = FeedbackSchedule(_schedule_config(config))
        self.preferences = PreferenceLearning(
            model, trainer, config.query, schedule, FeedbackBudget(config.schedule.total_budget),
            np.random.default_rng([config.seed, 2]),
            prior=config.algorithm in PRETRAINED_ALGORITHMS)
        self.entropy = StateEntropyReward(k=config.entropy_k)
        self.sample_generator = torch.Generator().manual_seed(config.seed)
        self.critic_reset_done = False
        """The one critic reset (switch from intrinsic to learned reward) has happened."""
        self.used_entropy = False
        """Some SAC update learnt from the intrinsic reward (so a critic reset is owed)."""
        self.labels_from = TRUE_REWARDS
        """Reward-model version the buffer's rewards were computed with."""
        self.unlabelled = 0
        """Newest transitions in the buffer not yet given the current learned reward."""
        self.sessions = 0
        """Feedback sessions started."""
        self.rollbacks = {'sac': 0, 'reward': 0}
        """Updates undone because they produced non-finite values (SAC, reward fits)."""
        self._good_agent: dict[str, Any] | None = None
        self._good_at = -GOOD_STATE_INTERVAL

    # ---------------------------------------------------------------------- components
    @property
    def reward_model(self) -> RewardEnsemble:
        """The reward ensemble."""
        return self.preferences.model

    @property
    def budget(self) -> FeedbackBudget:
        """Feedback budget counts."""
        return self.preferences.budget

    @property
    def rng(self) -> np.random.Generator:
        """The run's generator for candidate pairs and selection."""
        return self.preferences.rng

    def store_config(self) -> PreferenceStoreConfig:
        """The run's preference-store settings (split seed and validation share)."""
        return run_store_config(self.config.store, self.config.reward_training,
                                self.config.seed)

    # ------------------------------------------------------------------------- data in
    def add(self, observation: np.ndarray, action: np.ndarray, reward: float,
            next_observation: np.ndarray, terminated: bool, truncated: bool) -> None:
        """Append one transition (its reward is the env's until relabelled)."""
        self.buffer.add(observation, action, reward, next_observation, terminated, truncated)
        self.unlabelled = min(self.unlabelled + 1, len(self.buffer))

    # ------------------------------------------------------------------------- decisions
    def update_kind(self, env_steps: int) -> UpdateKind:
        """The reward SAC learns from at ``env_steps`` transitions (phases in the module doc)."""
        cfg = self.config
        if env_steps <= cfg.seed_steps:
            return UpdateKind.NONE
        if cfg.algorithm == 'sac':
            return UpdateKind.TRUE
        if cfg.unsupervised_steps > 0 and env_steps < cfg.learning_starts:
            return UpdateKind.ENTROPY
        if self.preferences.reward_ready:
            return UpdateKind.LEARNED
        if cfg.unsupervised_steps > 0:
            return UpdateKind.ENTROPY  # until the first reward model exists
        return UpdateKind.NONE

    def session_due(self, env_steps: int) -> bool:
        """Whether a feedback session should start at ``env_steps`` transitions: the schedule
        has more sessions due than were started and budget is left."""
        cfg = self.config
        return (cfg.algorithm != 'sac' and env_steps < cfg.total_steps
                and self.preferences.budget.remaining() > 0
                and self.preferences.schedule.sessions_due(env_steps) > self.sessions)

    # ----------------------------------------------------------------------------- steps
    def update(self, kind: UpdateKind, guard: Guard = _NO_GUARD) -> bool:
        """One SAC update of ``kind``; returns False for ``NONE`` (nothing done).

        ``guard`` is held while the replay buffer is read or relabelled (a driver whose
        buffer is fed from another thread passes its lock), not during the gradient step.
        """
        if kind is UpdateKind.NONE:
            return False
        if kind is UpdateKind.LEARNED:
            with guard:
                self._label_with_current_model()
            self._reset_critic_once(guard)
        with guard:
            batch = self._sample(entropy=kind is UpdateKind.ENTROPY)
        self.agent.update(batch)
        self.used_entropy = self.used_entropy or kind is UpdateKind.ENTROPY
        return True

    def fit_reward(self, store: PreferenceStore, guard: Guard = _NO_GUARD
                   ) -> TrainingReport | None:
        """Fit the reward to the store's labels, refit its normalisation and relabel the whole
        buffer; None (nothing changes) while no label is trainable. ``guard`` as in
        :meth:`update` (held for the normaliser sample and the relabelling only)."""
        train, val = store.preference_batches()
        if train.num_pairs == 0:
            return None
        before = clone_state(self.preferences.state_dict())
        try:
            report = self.preferences.train(train, val)
            with guard:  # one hold: the transitions evaluated are the ones relabelled
                raw = self._refit_normalizer()
                healthy = all_finite(self.reward_model.state_dict())
                if healthy:
                    self._relabel_all(raw)
        except RewardModelError:  # e.g. the normaliser's sample came out non-finite
            healthy = False
        if not healthy:
            # The fit diverged: keep the previous model (and its version); never relabel.
            self.preferences.load_state_dict(before)
            self.rollbacks['reward'] += 1
            return None
        return report

    def verify_agent(self) -> bool:
        """After SAC updates: True when the agent's state is finite (every
        ``GOOD_STATE_INTERVAL`` updates it becomes the state a rollback restores); else the
        last finite state is restored, the rollback counted, and False returned. Drivers call
        it after each chunk of updates and before acting on, publishing or saving weights."""
        state = self.agent.state_dict()
        if all_finite(state):
            if self.agent.num_updates - self._good_at >= GOOD_STATE_INTERVAL:
                self._good_agent = clone_state(state)
                self._good_at = self.agent.num_updates
            return True
        self.rollbacks['sac'] += 1
        if self._good_agent is None:
            # No finite state seen since start: begin the agent afresh.
            self.agent = SAC(int(np.prod(self.observation_shape)), self.action_dim,
                             self.config.sac, seed=self.config.seed)
        else:
            self.agent.load_state_dict(clone_state(self._good_agent))
        return False

    def finite(self) -> bool:
        """Whether everything a checkpoint would hold of the networks is finite."""
        return all_finite(self.agent.state_dict()) and all_finite(
            self.reward_model.state_dict())

    def _label_with_current_model(self) -> None:
        """The buffer carries the current model's rewards (the prior's, before any
        training; only the newest transitions are labelled when the model is unchanged)."""
        if self.labels_from != self.reward_model.version:
            raw = None
            if self.labels_from == TRUE_REWARDS and self.reward_model.version == 0:
                raw = self._refit_normalizer()  # the prior
            self._relabel_all(raw)
        elif self.unlabelled:
            self.buffer.relabel(self.reward_model.reward,
                                start=len(self.buffer) - self.unlabelled)
            self.unlabelled = 0

    def _reset_critic_once(self, guard: Guard) -> None:
        """The first switch from the intrinsic to the learned reward resets the critics."""
        if self.critic_reset_done:
            return
        self.critic_reset_done = True
        if self.used_entropy:
            # The critics were fitted to the intrinsic reward: start them afresh.
            self.agent.reset_critic()
            for _ in range(self.config.reset_updates):
                with guard:
                    batch = self._sample()
                self.agent.update(batch)

    def _relabel_all(self, raw: torch.Tensor | None = None) -> None:
        """Every stored transition gets the current model's reward (``raw``: its member
        outputs on them, when already computed)."""
        if raw is None:
            raw = self.reward_model.member_rewards(*self.buffer.stored_inputs())
        self.buffer.set_rewards(self.reward_model.normalized_mean(raw))
        self.labels_from = self.reward_model.version
        self.unlabelled = 0

    def _refit_normalizer(self) -> torch.Tensor:
        """Fit the reward normalisation to ``NORMALIZER_SAMPLES`` replay transitions drawn
        with replacement; returns the raw member outputs ``[M, len]`` of every stored
        transition, which the sample is taken from: one pass over the buffer serves the fit
        and the relabelling."""
        raw = self.reward_model.member_rewards(*self.buffer.stored_inputs())
        index = self.buffer.sample_indices(min(NORMALIZER_SAMPLES, len(self.buffer)),
                                           self.sample_generator)
        self.reward_model.fit_normalizer_to(raw[:, index])
        return raw

    def _sample(self, entropy: bool = False) -> TransitionBatch:
        """A replay batch; with ``entropy`` its rewards are the k-NN state entropy."""
        batch = self.buffer.sample(self.config.sac.batch_size, self.sample_generator)
        if entropy:
            intrinsic = self.entropy(batch.observations, self.buffer.observations_view())
            batch = batch._replace(rewards=intrinsic.to(batch.rewards.dtype))
        return batch

    # ------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Everything learnt and every generator of the learning side (tensors and plain
        data; the preference store is durable on its own)."""
        return {
            'agent': self.agent.state_dict(),
            'buffer': self.buffer.state_dict(),
            'preferences': self.preferences.state_dict(),
            'entropy': self.entropy.stats.state_dict(),
            'sample_generator': self.sample_generator.get_state(),
            'counters': {'critic_reset_done': self.critic_reset_done,
                         'used_entropy': self.used_entropy, 'labels_from': self.labels_from,
                         'unlabelled': self.unlabelled, 'sessions': self.sessions,
                         'rollbacks': dict(self.rollbacks)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (raises KeyError/TypeError/ValueError/RuntimeError on
        missing, misshapen or non-finite entries)."""
        self.agent.load_state_dict(state['agent'])
        self.buffer.load_state_dict(state['buffer'])
        self.preferences.load_state_dict(state['preferences'])
        self.entropy.stats.load_state_dict(state['entropy'])
        self.sample_generator.set_state(state['sample_generator'])
        counters = state['counters']
        self.critic_reset_done = bool(counters['critic_reset_done'])
        self.used_entropy = bool(counters['used_entropy'])
        self.labels_from = int(counters['labels_from'])
        self.unlabelled = int(counters['unlabelled'])
        self.sessions = int(counters['sessions'])
        self.rollbacks = {k: int(v) for k, v in counters['rollbacks'].items()}
        if not self.finite():
            raise ValueError('the checkpoint holds non-finite network values')


def _schedule_config(config: TrainConfig) -> FeedbackScheduleConfig:
    """The schedule, its first session no earlier than the end of pre-training."""
    return dataclasses.replace(config.schedule, first_session_step=max(
        config.schedule.first_session_step, config.learning_starts))
