"""One feedback session of PEBBLE: select pairs, ask the teacher, store, train, relabel."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.fewshot.adapt import FewShotReport
from pref_rl_learner.query_selection import pool_size, select_queries
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment

if TYPE_CHECKING:
    from pref_rl_learner.pebble.trainer import PebbleTrainer

NORMALIZER_SAMPLES = 10_000
"""Replay transitions used to fit the reward normalisation after each training."""


class FeedbackSession:
    """Runs feedback sessions for a :class:`PebbleTrainer` (holds no state of its own)."""

    def __init__(self, trainer: PebbleTrainer) -> None:
        self.t = trainer
        self._replayable: set[frozenset[str]] | None = None

    def _stored_ahead(self) -> set[frozenset[str]]:
        """Pairs the store holds from sessions at or after the current one.

        They exist when a run resumes from a checkpoint older than its last labels: the
        resumed run selects the same pairs again and must reuse their stored answers (never
        ask twice) instead of treating them as already asked.
        """
        t, found = self.t, set()
        session = t.state.session
        while t.store.has_query(_query_id(session, 0)):
            j = 0
            while t.store.has_query(_query_id(session, j)):
                query = t.store.query(_query_id(session, j))
                found.add(frozenset((query.left.segment_id, query.right.segment_id)))
                j += 1
            session += 1
        return found

    def run(self) -> None:
        """Ask this session's queries, store every answer, then retrain and relabel."""
        t, st = self.t, self.t.state
        num = t.schedule.queries_for_session(st.step, t.budget.remaining())
        if num > 0:
            pairs, ids = self._candidates(num)
            if pairs.num_pairs > 0:
                choices = self._ask(pairs, ids, num)
                t.budget.record(choices)
        st.session += 1
        self._train()

    def _candidates(self, num: int) -> tuple[SegmentPairs, np.ndarray]:
        """A pool of never-asked pairs of segments, ``pool_size`` of them at most."""
        t = self.t
        pool = pool_size(t.config.query, num)
        draw = t.buffer.sample_segments(2 * pool, t.segment_length, t.rng)
        left, right = np.arange(pool), np.arange(pool, 2 * pool)
        ids = np.stack([draw.start_indices[left], draw.start_indices[right]], axis=1)
        if self._replayable is None:
            self._replayable = self._stored_ahead()
        keep = []
        for i in range(pool):
            a, b = _segment_id(ids[i, 0]), _segment_id(ids[i, 1])
            if a != b and (not t.store.has_pair(a, b) or frozenset((a, b)) in self._replayable):
                keep.append(i)
        keep = np.asarray(keep, dtype=np.int64)
        pairs = SegmentPairs(
            draw.observations[left], draw.actions[left],
            draw.observations[right], draw.actions[right],
            draw.true_rewards[left], draw.true_rewards[right]).take(keep)
        return pairs, ids[keep]

    def _ask(self, pairs: SegmentPairs, ids: np.ndarray, num: int) -> np.ndarray:
        t, st = self.t, self.t.state
        sampler = ('uniform' if st.session < t.config.query.uniform_sessions
                   else t.config.query.sampler)
        predictor = t.reward_model if t.reward_model.version > 0 else None
        labelled = t.pairs_already_labelled() if sampler.startswith('kcenter') else None
        chosen = select_queries(pairs, num, sampler, t.rng, predictor=predictor,
                                labelled=labelled)
        asked = pairs.take(chosen)
        choices = t.teacher.label(asked)
        for j, index in enumerate(chosen):
            query_id = _query_id(st.session, j)
            label = PreferenceLabel(query_id=query_id, choice=Choice(int(choices[j])),
                                    labeler_id=t.config.teacher_name)
            if not t.store.has_query(query_id):
                left, right = (self._segment(asked, j, side, ids[index, k])
                               for k, side in enumerate(('left', 'right')))
                t.store.add_query(PreferenceQuery(
                    query_id=query_id, left=left, right=right, feedback_session=st.session,
                    sampler=sampler, reward_model_version=t.reward_model.version,
                    stamp_ns=time.time_ns()))
            else:
                # Resumed from a checkpoint older than the store: this query was asked
                # already. Its stored answer is reused (never asked twice).
                stored = t.store.label(query_id)
                if stored is not None:
                    choices[j] = int(stored.choice)
                    continue
            t.store.add_label(label)
        return choices

    def _segment(self, pairs: SegmentPairs, j: int, side: str, start: int) -> Segment:
        obs = getattr(pairs, f'{side}_observations')[j]
        rewards = getattr(pairs, f'{side}_rewards')[j]
        length = obs.shape[0]
        # next_observations: o_{t+1} is o_t shifted by one inside the segment; its last entry
        # is read back from the buffer.
        last_next = self.t.buffer.next_observation(int(start) + length - 1)
        next_obs = np.concatenate([obs[1:], last_next[None]], axis=0)
        return Segment(segment_id=_segment_id(start), task=self.t.config.task,
                       observations=obs, actions=getattr(pairs, f'{side}_actions')[j],
                       next_observations=next_obs,
                       terminated=np.zeros(length, bool), truncated=np.zeros(length, bool),
                       rewards=rewards, source_id=f'pebble-seed{self.t.config.seed}',
                       start_step=int(start))

    def _train(self) -> None:
        """Train the ensemble on every stored label, refit normalisation, relabel the buffer."""
        t, st = self.t, self.t.state
        train, val = t.store.preference_batches()
        figures: dict[str, float] = {'session': st.session, **t.budget.as_dict()}
        if train.num_pairs > 0:
            report = t.reward_trainer.train(train, val if val.num_pairs else None)
            sample = t.buffer.sample(min(NORMALIZER_SAMPLES, len(t.buffer)),
                                     t.sample_generator)
            t.reward_model.fit_normalizer(sample.observations, sample.actions)
            t.buffer.relabel(t.reward_model.reward)
            figures.update(
                epochs=report.epochs, train_loss=report.train_loss,
                train_accuracy=report.train_accuracy,
                val_loss=_nan(report.val_loss), val_accuracy=_nan(report.val_accuracy),
                l2_weight=report.l2_weight, reward_model_version=t.reward_model.version)
            if isinstance(report, FewShotReport):  # which path the fewshot arm took
                figures.update(report.figures())
        t.log.write('feedback', st.step, figures)


def _query_id(session: int, index: int) -> str:
    return f'session{session:04d}-q{index:03d}'


def _segment_id(start: int) -> str:
    return f'step{int(start)}'


def _nan(value: float | None) -> float:
    return float('nan') if value is None else float(value)

