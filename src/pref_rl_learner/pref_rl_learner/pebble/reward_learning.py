"""The preference half of PEBBLE's decisions: which sessions ask how many queries with which
sampler, which pairs, and how the reward is fitted to the labels.

Every driver (``pref-rl train``, the ROS learner, the DRLHP worker) asks these questions of one
:class:`PreferenceLearning`; the drivers only differ in where candidate pairs come from (replay
buffer, the robot's segments, the wrapper's clip pool) and how answers arrive. Lee et al. 2021
(PEBBLE, https://arxiv.org/abs/2106.05091) and B-Pref (https://arxiv.org/abs/2111.03026) for
the samplers and the schedule; Christiano et al. 2017 (https://arxiv.org/abs/1706.03741) for the
normalised reward and the validation split that adaptive L2 needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pref_rl_learner.batches import PreferenceBatch, SegmentPairs
from pref_rl_learner.preferences.store import PreferenceStoreConfig
from pref_rl_learner.query_selection import (
    NEEDS_PREDICTOR,
    QuerySelectionConfig,
    pool_size,
    sampler_for_session,
    select_queries,
)
from pref_rl_learner.reward.training import RewardTrainingConfig, TrainingReport
from pref_rl_learner.schedule import FeedbackBudget, FeedbackSchedule

if TYPE_CHECKING:
    from pref_rl_learner.fewshot.arms import RewardLearner
    from pref_rl_learner.preferences.store import PreferenceStore
    from pref_rl_learner.reward.ensemble import RewardEnsemble

DRLHP_VALIDATION_FRACTION = 0.2
"""Validation share used when adaptive L2 needs one and none is configured (DRLHP: 20%)."""

def run_store_config(store: PreferenceStoreConfig, training: RewardTrainingConfig,
                     seed: int) -> PreferenceStoreConfig:
    """The preference store of a run: the split drawn from the run's ``seed``, and a
    validation split only where something uses it.

    B-Pref and the few-shot code train on every label, so the default holds none back. A
    validation share is kept when asked for (``store.validation_fraction`` > 0, e.g. for a
    report) or when adaptive L2 needs it (then DRLHP's 20% if none was asked for).
    """
    fraction = store.validation_fraction
    if training.adaptive_l2 and fraction == 0:
        fraction = DRLHP_VALIDATION_FRACTION
    return dataclasses.replace(store, validation_fraction=fraction, seed=int(seed))


def labelled_pairs(store: PreferenceStore) -> SegmentPairs | None:
    """Every trainable pair in ``store`` (k-center's existing centres), or None."""
    train, val = store.preference_batches()
    if train.num_pairs + val.num_pairs == 0:
        return None
    return SegmentPairs(*(np.concatenate([a, b]) for a, b in
                          zip(train[:4], val[:4], strict=True)))


def unasked_pairs(ids: Sequence[tuple[str, str]], store: PreferenceStore,
                  reusable: Collection[frozenset[str]] = frozenset()) -> list[int]:
    """Indices of the candidate pairs (segment-id pairs) that may be asked: two distinct
    segments, a pair the store never asked (unless in ``reusable``: a resumed run replaying
    its stored sessions), each unordered pair once even when the draw repeats it."""
    keep, seen = [], set()
    for index, (a, b) in enumerate(ids):
        key = frozenset((a, b))
        if a == b or key in seen or (store.has_pair(a, b) and key not in reusable):
            continue
        seen.add(key)
        keep.append(index)
    return keep


class PreferenceLearning:
    """The reward ensemble, its trainer, the feedback schedule and budget, and the query RNG.

    Args:
        model: the reward ensemble.
        trainer: trains (``pebble``, ``init``) or adapts (``fewshot``) it on the labels.
        query: query-selection settings (every field is honoured here).
        schedule: when sessions happen and how many queries each asks.
        budget: the feedback budget (asked / labelled / skipped counts).
        rng: draws candidate pairs and breaks ties in selection.
        prior: the model starts from a pretrained checkpoint (``init``, ``fewshot``), so it
            is a usable reward before any label: SAC may learn from it and uncertainty
            samplers may rank pairs with it.
    """

    def __init__(self, model: RewardEnsemble, trainer: RewardLearner,
                 query: QuerySelectionConfig, schedule: FeedbackSchedule,
                 budget: FeedbackBudget, rng: np.random.Generator, *, prior: bool = False
                 ) -> None:
        self.model, self.trainer = model, trainer
        self.query, self.schedule, self.budget = query, schedule, budget
        self.rng = rng
        self.prior = prior

    # ------------------------------------------------------------------------- sessions
    @property
    def reward_ready(self) -> bool:
        """Whether the model is a reward worth using: trained once, or a pretrained prior."""
        return self.model.version > 0 or self.prior

    def queries_for_session(self, step: int, pending: int = 0) -> int:
        """Queries the session at env step ``step`` asks: the schedule's count, never more
        than the budget left once ``pending`` unanswered queries are counted."""
        remaining = max(0, self.budget.remaining() - pending)
        return self.schedule.queries_for_session(step, remaining)

    def sync_budget(self, store: PreferenceStore) -> None:
        """Take the budget's counts from the durable ``store`` (for drivers whose answers
        arrive asynchronously: the store, not a checkpoint, is the truth)."""
        counts = store.counts()
        left, right, equal = counts['left'], counts['right'], counts['equal']
        self.budget.load_state_dict({
            'total': self.budget.total, 'asked': counts['labelled'],
            'labelled': left + right + equal, 'left': left, 'right': right, 'equal': equal,
            'incomparable': counts['incomparable'], 'skipped': counts['skip']})

    def pool_size(self, num_queries: int) -> int:
        """Candidate pairs to draw for ``num_queries`` queries."""
        return pool_size(self.query, num_queries)

    def sampler_for(self, session: int) -> str:
        """The sampler of session ``session`` (0-based): uniform for the first
        ``uniform_sessions``, then the configured one; uniform whenever that one needs a
        predictor and the model is not yet a usable reward."""
        sampler = sampler_for_session(self.query, session)
        if sampler in NEEDS_PREDICTOR and not self.reward_ready:
            return 'uniform'
        return sampler

    def select(self, pairs: SegmentPairs, num: int, session: int,
               labelled: Callable[[], SegmentPairs | None] | None = None
               ) -> tuple[np.ndarray, str]:
        """Choose ``num`` of the candidate ``pairs`` for session ``session``.

        ``labelled`` returns the pairs already labelled (k-center's centres); it is called
        only for k-center samplers. Returns (indices into ``pairs``, sampler used).
        """
        sampler = self.sampler_for(session)
        predictor = self.model if self.reward_ready else None
        centres = labelled() if labelled is not None and sampler.startswith('kcenter') else None
        chosen = select_queries(pairs, num, sampler, self.rng, predictor=predictor,
                                labelled=centres, kcenter_features=self.query.kcenter_features)
        return chosen, sampler

    # ---------------------------------------------------------------------------- reward
    def train(self, train: PreferenceBatch, val: PreferenceBatch | None = None
              ) -> TrainingReport:
        """Train (or adapt) the model on ``train`` (``val``, when it has pairs, is used by
        adaptive L2 and reported); increments ``model.version``. The trainer's config bounds
        the training (``reward_training.max_epochs``, ``max_gradient_steps``)."""
        val = val if val is not None and val.num_pairs else None
        return self.trainer.train(train, val)

    # ------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Model (and its version), trainer, budget and query RNG."""
        return {'reward_model': self.model.state_dict(),
                'reward_model_version': self.model.version,
                'reward_trainer': self.trainer.state_dict(),
                'budget': self.budget.state_dict(),
                'rng': self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (raises what the components raise on bad entries)."""
        self.model.load_state_dict(state['reward_model'])
        self.model.version = int(state['reward_model_version'])
        self.trainer.load_state_dict(state['reward_trainer'])
        self.budget.load_state_dict(state['budget'])
        self.rng.bit_generator.state = state['rng']
