"""One feedback session of ``pref-rl train``: draw candidates from the replay buffer, let the
run's :class:`~pref_rl_learner.pebble.learning.PebbleLearning` choose the pairs, ask the
scripted teacher, store every answer, then fit the reward.

What is this driver's own: candidates come from the replay buffer, the teacher answers at once,
and a run resumed from a checkpoint older than its store reuses the stored answers of the
sessions it replays (never asking twice). Every decision (how many queries, which sampler,
which pairs, how the reward is fitted) is the learning component's.
"""

from __future__ import annotations

import time

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.fewshot.adapt import FewShotReport
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.learning import PebbleLearning
from pref_rl_learner.pebble.reward_learning import labelled_pairs, unasked_pairs
from pref_rl_learner.preferences.store import PreferenceStore
from pref_rl_learner.run_log import RunLog
from pref_rl_learner.teacher import ScriptedTeacher
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment


def query_id(session: int, index: int) -> str:
    """Id of the ``index``-th query of feedback session ``session``."""
    return f'session{session:04d}-q{index:03d}'


def segment_id(start: int) -> str:
    """Id of the replay segment starting at buffer step ``start``."""
    return f'step{int(start)}'


class FeedbackSession:
    """Runs the feedback sessions of one ``pref-rl train`` run (holds no learning state)."""

    def __init__(self, config: TrainConfig, learning: PebbleLearning, store: PreferenceStore,
                 teacher: ScriptedTeacher, segment_length: int, log: RunLog) -> None:
        self.config, self.learning, self.store = config, learning, store
        self.teacher, self.segment_length, self.log = teacher, segment_length, log
        self._replayable: set[frozenset[str]] | None = None

    def _stored_ahead(self) -> set[frozenset[str]]:
        """Pairs the store holds from sessions at or after the current one.

        They exist when a run resumes from a checkpoint older than its last labels: the
        resumed run selects the same pairs again and must reuse their stored answers (never
        ask twice) instead of treating them as already asked.
        """
        found, session = set(), self.learning.sessions
        while self.store.has_query(query_id(session, 0)):
            j = 0
            while self.store.has_query(query_id(session, j)):
                query = self.store.query(query_id(session, j))
                found.add(frozenset((query.left.segment_id, query.right.segment_id)))
                j += 1
            session += 1
        return found

    def run(self, step: int) -> None:
        """Ask the session's queries, store every answer, then fit the reward."""
        learning = self.learning
        num = learning.preferences.queries_for_session(step)
        if num > 0:
            pairs, ids = self._candidates(num)
            if pairs.num_pairs > 0:
                learning.budget.record(self._ask(pairs, ids, num))
        learning.sessions += 1
        self._fit(step)

    def _candidates(self, num: int) -> tuple[SegmentPairs, np.ndarray]:
        """A pool of never-asked pairs of segments, ``pool_size`` of them at most."""
        learning = self.learning
        pool = learning.preferences.pool_size(num)
        draw = learning.buffer.sample_segments(2 * pool, self.segment_length, learning.rng)
        left, right = np.arange(pool), np.arange(pool, 2 * pool)
        ids = np.stack([draw.start_indices[left], draw.start_indices[right]], axis=1)
        if self._replayable is None:
            self._replayable = self._stored_ahead()
        keep = np.asarray(unasked_pairs(
            [(segment_id(ids[i, 0]), segment_id(ids[i, 1])) for i in range(pool)],
            self.store, self._replayable), dtype=np.int64)
        pairs = SegmentPairs(
            draw.observations[left], draw.actions[left],
            draw.observations[right], draw.actions[right],
            draw.true_rewards[left], draw.true_rewards[right]).take(keep)
        return pairs, ids[keep]

    def _ask(self, pairs: SegmentPairs, ids: np.ndarray, num: int) -> np.ndarray:
        learning, store = self.learning, self.store
        session = learning.sessions
        chosen, sampler = learning.preferences.select(pairs, num, session,
                                                      labelled=lambda: labelled_pairs(store))
        asked = pairs.take(chosen)
        choices = self.teacher.label(asked)
        for j, index in enumerate(chosen):
            qid = query_id(session, j)
            label = PreferenceLabel(query_id=qid, choice=Choice(int(choices[j])),
                                    labeler_id=self.config.teacher_name)
            if not store.has_query(qid):
                left, right = (self._segment(asked, j, side, ids[index, k])
                               for k, side in enumerate(('left', 'right')))
                store.add_query(PreferenceQuery(
                    query_id=qid, left=left, right=right, feedback_session=session,
                    sampler=sampler, reward_model_version=learning.reward_model.version,
                    stamp_ns=time.time_ns()))
            else:
                # Resumed from a checkpoint older than the store: this query was asked
                # already. Its stored answer is reused (never asked twice).
                stored = store.label(qid)
                if stored is not None:
                    choices[j] = int(stored.choice)
                    continue
            store.add_label(label)
        return choices

    def _segment(self, pairs: SegmentPairs, j: int, side: str, start: int) -> Segment:
        obs = getattr(pairs, f'{side}_observations')[j]
        rewards = getattr(pairs, f'{side}_rewards')[j]
        length = obs.shape[0]
        # next_observations: o_{t+1} is o_t shifted by one inside the segment; its last entry
        # is read back from the buffer.
        last_next = self.learning.buffer.next_observation(int(start) + length - 1)
        next_obs = np.concatenate([obs[1:], last_next[None]], axis=0)
        return Segment(segment_id=segment_id(start), task=self.config.task,
                       observations=obs, actions=getattr(pairs, f'{side}_actions')[j],
                       next_observations=next_obs,
                       terminated=np.zeros(length, bool), truncated=np.zeros(length, bool),
                       rewards=rewards, source_id=f'pebble-seed{self.config.seed}',
                       start_step=int(start))

    def _fit(self, step: int) -> None:
        learning = self.learning
        figures: dict[str, float] = {'session': learning.sessions, **learning.budget.as_dict()}
        report = learning.fit_reward(self.store)
        if report is not None:
            figures.update(
                epochs=report.epochs, train_loss=report.train_loss,
                train_accuracy=report.train_accuracy,
                val_loss=_nan(report.val_loss), val_accuracy=_nan(report.val_accuracy),
                l2_weight=report.l2_weight, reward_model_version=learning.reward_model.version)
            if isinstance(report, FewShotReport):  # which path the fewshot arm took
                figures.update(report.figures())
        self.log.write('feedback', step, figures)


def _nan(value: float | None) -> float:
    return float('nan') if value is None else float(value)
