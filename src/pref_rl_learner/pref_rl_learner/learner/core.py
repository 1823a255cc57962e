"""The asynchronous PEBBLE learner: segments in, queries and policy weights out, labels any time.

The ROS-free core of the ``learner`` node. PEBBLE (Lee, Smith, Abbeel 2021,
https://arxiv.org/abs/2106.05091) as :class:`~pref_rl_learner.pebble.trainer.PebbleTrainer`
runs it, but driven by events instead of one loop over env steps:

- :meth:`LearnerCore.ingest` takes a :class:`Segment` from a robot: its transitions go into
  the replay buffer, a full-length segment into the :class:`SegmentStore` (the query
  candidates), and ``env_steps`` advances. Cheap: safe to call from a message callback.
  Pacing: while the worker is more than ``max_update_lag`` SAC updates behind, received
  segments wait in a backlog, so ``env_steps`` (which the robot's flow control follows)
  advances no faster than learning, as in PEBBLE's one update per env step.
- :meth:`LearnerCore.work_step` is called in a loop by a worker thread. It does one unit of
  work: train the reward model when a session's labels are in, start a feedback session
  when the schedule says one is due, or a chunk of SAC updates (none in the seed phase; the
  k-NN state-entropy reward during unsupervised pre-training and until the first reward model
  exists; the learned reward afterwards; the true reward for ``algorithm: sac``), never more
  than ``updates_per_step`` per received transition.
- :meth:`LearnerCore.submit_label` stores a label durably (the preference store fsyncs it)
  and only then returns; a session's queries are asked once and counted against the budget
  while outstanding, so the budget is never overdrawn however late the answers come.
- :meth:`take_queries` / :meth:`take_weights` hand what is to be published to the adapter.
- With a :class:`~pref_rl_learner.learner.evaluation.SessionEvaluator` the worker also
  evaluates the policy on held-out goals (at the start, every ``eval_interval_steps``, at
  ``total_steps``) and, at ``total_steps``, writes the run's summary and plot and sets
  :attr:`LearnerCore.finished` (the node then ends the session).

Threads: ``ingest`` and ``submit_label`` may run in one thread while ``work_step`` runs in
another. ``_data`` guards the buffer, the segment store and the counters (held briefly);
``_model`` is held by the worker for a whole unit of work (SAC networks, reward model) and by
:meth:`checkpoint`, which takes both, so a checkpoint is always a consistent state.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path

import numpy as np
import torch

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.fewshot.arms import make_reward_learning
from pref_rl_learner.learner.config import LearnerConfig
from pref_rl_learner.learner.evaluation import SessionEvaluator
from pref_rl_learner.learner.segment_store import SegmentStore
from pref_rl_learner.learner.state import (
    CHECKPOINT_NAME,
    LearnerState,
    load_learner_state,
    save_learner_state,
)
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.feedback import NORMALIZER_SAMPLES
from pref_rl_learner.preferences.store import PreferenceStore
from pref_rl_learner.query_selection import pool_size, sampler_for_session, select_queries
from pref_rl_learner.reward.training import TrainingReport
from pref_rl_learner.sac.agent import SAC
from pref_rl_learner.sac.replay import ReplayBuffer
from pref_rl_learner.schedule import FeedbackBudget, FeedbackSchedule
from pref_rl_learner.state_entropy import StateEntropyReward
from pref_rl_learner.types import (
    LearnerStatus,
    Phase,
    PolicyWeights,
    PreferenceLabel,
    PreferenceQuery,
    Segment,
)

NEEDS_PREDICTOR = ('disagreement', 'entropy', 'kcenter_disagreement', 'kcenter_entropy')
"""Samplers that rank pairs by the reward ensemble (uniform is used before one exists)."""
_RECENT_IDS = 100_000
"""Segment ids remembered to refuse a segment received twice."""


class SegmentRejectedError(PrefRLError, ValueError):
    """A valid segment that this learner cannot use (other task or shapes, a repeated id)."""


def query_id(session: int, index: int) -> str:
    """Id of the ``index``-th query of feedback session ``session``."""
    return f'session{session:04d}-q{index:03d}'


class LearnerCore:
    """Replay buffer, segment store, SAC, reward ensemble and preference store of one run.

    Args:
        config: the run (task, algorithm, SAC, reward model, queries, schedule, budget).
        learner: pacing of the asynchronous learner.
        run_dir: holds ``preferences/`` (the durable label store) and ``checkpoint.pt``;
            when either exists the run resumes from it.
        observation_shape, action_dim: the task's, when known without ``pref_rl_robot``
            (tests); by default read from the task registry.
        evaluator: held-out evaluations, summary and plot (None: none; the run is never
            :attr:`finished`).
    """

    def __init__(self, config: TrainConfig, learner: LearnerConfig, run_dir: str | Path,
                 observation_shape: tuple[int, ...] | None = None,
                 action_dim: int | None = None,
                 evaluator: SessionEvaluator | None = None) -> None:
        self.config, self.learner = config, learner
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        segment_length = config.segment_length
        if observation_shape is None or action_dim is None or not segment_length:
            from pref_rl_learner.pebble.tasks import task_module
            spec = task_module().task_spec(config.task)
            observation_shape = observation_shape or tuple(spec.observation_shape)
            action_dim = action_dim or int(spec.action_dim)
            segment_length = segment_length or spec.segment_length
        self.observation_shape = tuple(int(d) for d in observation_shape)
        self.action_dim = int(action_dim)
        self.segment_length = int(segment_length)
        torch.manual_seed(config.seed)
        self.agent = SAC(int(np.prod(self.observation_shape)), self.action_dim, config.sac,
                         seed=config.seed)
        self.buffer = ReplayBuffer(self.observation_shape, self.action_dim,
                                   config.replay_capacity, device=self.agent.device)
        # init/fewshot read their pretrained reward model unless the run's own checkpoint
        # (which holds the model and the few-shot trainer's state) is resumed.
        self.reward_model, self.reward_trainer = make_reward_learning(
            config, self.observation_shape, self.action_dim,
            load=not (self.run_dir / CHECKPOINT_NAME).exists())
        self.schedule = FeedbackSchedule(dataclasses.replace(
            config.schedule, first_session_step=max(config.schedule.first_session_step,
                                                    config.learning_starts)))
        self.entropy = StateEntropyReward(k=config.entropy_k)
        self.segments = SegmentStore(self.segment_length, learner.segment_store_capacity)
        self.rng = np.random.default_rng([config.seed, 2])
        self.sample_generator = torch.Generator().manual_seed(config.seed)
        self.state = LearnerState()
        self.episodes: deque[tuple[float, bool]] = deque(maxlen=learner.stats_window_episodes)
        self.last_report: TrainingReport | None = None
        self._open_episodes: OrderedDict[tuple[str, int], list] = OrderedDict()
        self._recent_ids: OrderedDict[str, None] = OrderedDict()
        self._backlog: deque[Segment] = deque()
        self._data = threading.Lock()
        self._model = threading.RLock()
        self._labels = threading.Lock()
        self._wake = threading.Event()
        self._queries_out: list[PreferenceQuery] = []
        self._weights_out: PolicyWeights | None = None
        self.evaluator = evaluator
        self.finished = False
        """``total_steps`` reached, evaluated and summarised (only with an evaluator)."""
        self.summary: dict | None = None
        """The end summary (also in ``summary.json``) once :attr:`finished`."""
        self._started = time.monotonic()
        self.store = PreferenceStore.open(self.run_dir / 'preferences', config.store)
        try:
            self.resumed = (self.run_dir / CHECKPOINT_NAME).exists()
            if self.resumed:
                load_learner_state(self, self.run_dir / CHECKPOINT_NAME)
            self._sync_with_store()
            if evaluator is not None:
                evaluator.open(resume_step=self.state.env_steps)
        except BaseException:
            self.store.close()  # release the store's lock before reporting the error
            raise
        if self.state.policy_version > 0:
            self._export_weights()  # a restarted learner re-announces its policy

    def _sync_with_store(self) -> None:
        """Take what is durable from the store: answers (the budget), sessions, pending
        queries. The store is newer than any checkpoint: labels acknowledged after the last
        checkpoint are counted here and trained on by the worker."""
        counts = self.store.counts()
        left, right, equal = counts['left'], counts['right'], counts['equal']
        self.budget = FeedbackBudget(
            total=self.config.schedule.total_budget,
            asked=counts['labelled'], labelled=left + right + equal, left=left, right=right,
            equal=equal, incomparable=counts['incomparable'], skipped=counts['skip'])
        session = self.state.sessions_started
        while self.store.has_query(query_id(session, 0)):
            session += 1
        self.state.sessions_started = session
        self._queries_out = [self.store.query(qid) for qid in self.store.pending_queries()]

    def close(self) -> None:
        """Release the preference store (it holds a lock on the run directory)."""
        if self.evaluator is not None:
            self.evaluator.close()
        self.store.close()

    # ----------------------------------------------------------------------------- inputs

    def ingest(self, segment: Segment) -> int:
        """Take a robot's segment; returns ``env_steps`` (transitions in the buffer so far).

        The segment enters the buffer at once, or, while the worker is more than
        ``max_update_lag`` updates behind, as soon as it has caught up (pacing).

        Raises:
            SegmentRejectedError: another task, observation or action shape, no rewards for
                ``algorithm: sac``, or a segment id received before. Nothing is stored then.
        """
        if segment.task != self.config.task:
            raise SegmentRejectedError(f'segment {segment.segment_id!r} is for task '
                                       f'{segment.task!r}, this learner learns '
                                       f'{self.config.task!r}')
        if segment.observation_shape != self.observation_shape:
            raise SegmentRejectedError(f'observation shape {segment.observation_shape}, '
                                       f'expected {self.observation_shape}')
        if segment.action_shape != (self.action_dim,):
            raise SegmentRejectedError(f'action shape {segment.action_shape}, expected '
                                       f'({self.action_dim},)')
        if segment.rewards is None and self.config.algorithm == 'sac':
            raise SegmentRejectedError('algorithm sac learns from true rewards, and the '
                                       'segment has none')
        with self._data:
            if segment.segment_id in self._recent_ids:
                raise SegmentRejectedError(f'segment {segment.segment_id!r} was received '
                                           'before')
            self._recent_ids[segment.segment_id] = None
            if len(self._recent_ids) > _RECENT_IDS:
                self._recent_ids.popitem(last=False)
            self._backlog.append(segment)
            self._admit()
            steps = self.state.env_steps
        self._wake.set()
        return steps

    def _lag(self) -> int:
        """SAC updates the worker owes for the transitions admitted so far."""
        cfg = self.config
        allowed = int(self.learner.updates_per_step
                      * max(0, self.state.env_steps - cfg.seed_steps))
        return allowed - self.state.budgeted_updates

    def _admit(self) -> int:
        """Move received segments into the buffer while the worker keeps up (``_data`` held).

        Returns the number of segments admitted.
        """
        admitted = 0
        pace = self.learner.max_update_lag >= 0
        while self._backlog:
            if (pace and self.state.env_steps < self.config.total_steps
                    and self._lag() > self.learner.max_update_lag):
                break
            self._add(self._backlog.popleft())
            admitted += 1
        return admitted

    def _add(self, segment: Segment) -> None:
        rewards = (segment.rewards if segment.rewards is not None
                   else np.zeros(segment.length, np.float32))
        for t in range(segment.length):
            self.buffer.add(segment.observations[t], segment.actions[t], float(rewards[t]),
                            segment.next_observations[t], bool(segment.terminated[t]),
                            bool(segment.truncated[t]))
        self.state.env_steps += segment.length
        self.state.unlabelled = min(self.state.unlabelled + segment.length, len(self.buffer))
        self.segments.add(segment)
        self._track_episode(segment, rewards)

    def _track_episode(self, segment: Segment, rewards: np.ndarray) -> None:
        key = (segment.source_id, segment.episode)
        totals = self._open_episodes.setdefault(key, [0.0, False])
        totals[0] += float(rewards.sum())
        totals[1] = totals[1] or bool(segment.success is not None and segment.success.any())
        if segment.terminated[-1] or segment.truncated[-1]:
            del self._open_episodes[key]
            self.episodes.append((totals[0], totals[1]))
        while len(self._open_episodes) > 64:  # sources that vanished mid-episode
            self._open_episodes.popitem(last=False)

    def submit_label(self, label: PreferenceLabel) -> str:
        """Store ``label`` durably; returns ``'stored'`` or ``'already stored'``.

        Returns only once the label is on disk. Choices outside ``Choice`` are refused when
        the :class:`PreferenceLabel` is built (``InvalidLabelError``).

        Raises:
            UnknownQueryError: no query with this id was asked.
            ConflictingLabelError: the query already has another answer.
        """
        with self._labels:
            if not self.store.add_label(label):
                return 'already stored'
            self.budget.record([label.choice])
        self._wake.set()
        return 'stored'

    def pending_queries(self) -> list[PreferenceQuery]:
        """Queries asked and not answered yet (from the durable store), oldest first."""
        return [self.store.query(qid) for qid in self.store.pending_queries()]

    # ---------------------------------------------------------------------------- outputs

    def take_queries(self) -> list[PreferenceQuery]:
        """Queries to publish (already durably stored), each returned once."""
        with self._data:
            out, self._queries_out = self._queries_out, []
        return out

    def take_weights(self) -> PolicyWeights | None:
        """The newest exported policy weights not yet taken, if any."""
        with self._data:
            out, self._weights_out = self._weights_out, None
        return out

    def status(self) -> LearnerStatus:
        """Progress figures for ``learner_status``."""
        counts = self.store.counts()
        with self._data:
            st = self.state
            env = st.env_steps
            returns = [r for r, _ in self.episodes]
            successes = [float(s) for _, s in self.episodes]
            return LearnerStatus(
                phase=self._phase(env, pending=counts['queries'] > counts['labelled']),
                env_steps=env, gradient_steps=self.agent.num_updates,
                feedback_session=max(st.sessions_started - 1, 0),
                queries_published=counts['queries'], labels_stored=counts['labelled'],
                labels_skipped=counts['skip'] + counts['incomparable'],
                feedback_budget=self.budget.total,
                reward_model_version=self.reward_model.version,
                reward_model_accuracy=st.reward_model_accuracy,
                policy_version=st.policy_version,
                mean_true_return=float(np.mean(returns)) if returns else float('nan'),
                success_rate=float(np.mean(successes)) if successes else float('nan'),
                stamp_ns=time.time_ns())

    def _phase(self, env_steps: int, pending: bool) -> Phase:
        cfg = self.config
        if env_steps == 0:
            return Phase.WAITING
        if env_steps >= cfg.total_steps:
            return Phase.DONE
        if env_steps < cfg.seed_steps:
            return Phase.SEED
        if cfg.algorithm == 'sac':
            return Phase.LEARNING
        if pending:
            return Phase.FEEDBACK
        if env_steps < cfg.learning_starts or (self.reward_model.version == 0
                                               and cfg.unsupervised_steps > 0):
            return Phase.UNSUPERVISED
        return Phase.LEARNING

    # ------------------------------------------------------------------------------- work

    def wait_for_work(self, timeout: float) -> None:
        """Block until new data or a label arrives, or ``timeout`` seconds pass."""
        self._wake.wait(timeout)
        self._wake.clear()

    def work_step(self) -> bool:
        """One unit of work (reward training, a session's queries, or SAC updates).

        Returns False when there was nothing to do (wait for data or labels).
        """
        with self._model:
            if self.finished:
                return False
            learns_reward = self.config.algorithm != 'sac'
            if (self._maybe_evaluate()
                    or learns_reward and (self._maybe_train() or self._maybe_start_session())):
                worked = True
            else:
                worked = self._update_chunk()
        with self._data:
            admitted = self._admit()
        return worked or admitted > 0

    def _maybe_evaluate(self) -> bool:
        """Evaluate on held-out goals when due; at ``total_steps`` also summarise and finish."""
        evaluator = self.evaluator
        if evaluator is None:
            return False
        with self._data:
            env_steps = self.state.env_steps
        if not evaluator.due(env_steps):
            return False
        counts = self.store.counts()
        evaluator.evaluate(self.agent, env_steps, {
            'queries': self.budget.asked, 'labelled': counts['labelled'],
            'skipped': counts['skip'] + counts['incomparable'],
            'reward_model_version': self.reward_model.version,
            'policy_version': self.state.policy_version,
            'gradient_steps': self.agent.num_updates})
        if env_steps >= self.config.total_steps:
            self.summary = evaluator.finish({
                'env_steps': env_steps, 'total_steps': self.config.total_steps,
                'queries_asked': self.budget.asked, 'labels_stored': counts['labelled'],
                'labels_skipped': counts['skip'] + counts['incomparable'],
                'feedback_budget': self.budget.total,
                'reward_model_version': self.reward_model.version,
                'reward_model_accuracy': self.state.reward_model_accuracy,
                'policy_version': self.state.policy_version,
                'gradient_steps': self.agent.num_updates,
                'wall_s_this_process': round(time.monotonic() - self._started, 1)})
            self.finished = True
        return True

    def _trainable_labels(self) -> int:
        counts = self.store.counts()
        return counts['train'] + counts['val']

    def _maybe_train(self) -> bool:
        """Train when the session's labels are all in (or ``train_after_labels`` new)."""
        new = self._trainable_labels() - self.state.labels_trained
        if new <= 0:
            return False
        with self._data:
            if len(self.buffer) == 0:
                # Resumed from a checkpoint older than the labels (a crash): the reward
                # normaliser needs transitions, so train once segments arrive again.
                return False
        every = self.learner.train_after_labels
        if self.store.pending_queries() and not (every and new >= every):
            return False
        self.train_reward_model()
        return True

    def train_reward_model(self) -> TrainingReport | None:
        """Fit the ensemble to every stored label, refit its normalisation, relabel the
        buffer; the first time after unsupervised pre-training also reset the critics.
        Returns None when no label is trainable yet."""
        with self._model:
            trainable = self._trainable_labels()
            train, val = self.store.preference_batches()
            if train.num_pairs == 0:
                self.state.labels_trained = trainable
                return None
            report = self.reward_trainer.train(train, val if val.num_pairs else None)
            with self._data:
                sample = self.buffer.sample(min(NORMALIZER_SAMPLES, len(self.buffer)),
                                            self.sample_generator)
                self.reward_model.fit_normalizer(sample.observations, sample.actions)
                self.buffer.relabel(self.reward_model.reward)
                self.state.unlabelled = 0
                self.state.labels_trained = trainable
                self.state.reward_model_accuracy = (float('nan') if report.val_accuracy is None
                                                    else float(report.val_accuracy))
                self.last_report = report
            if not self.state.critic_reset_done:
                self.state.critic_reset_done = True
                if self.config.unsupervised_steps > 0:
                    # The critics were fitted to the intrinsic reward: start them afresh.
                    self.agent.reset_critic()
                    for _ in range(self.config.reset_updates):
                        self.agent.update(self._sample())
            return report

    def _maybe_start_session(self) -> bool:
        """Select, store and queue the queries of the next session when one is due."""
        st = self.state
        with self._data:
            env_steps = st.env_steps
        if (self.schedule.sessions_due(env_steps) <= st.sessions_started
                or env_steps >= self.config.total_steps or self.store.pending_queries()):
            return False
        # Nothing is outstanding here, so everything not yet answered may be asked.
        num = self.schedule.queries_for_session(env_steps, self.budget.remaining())
        if num == 0:
            return False
        session = st.sessions_started
        sampler = sampler_for_session(self.config.query, session)
        predictor = self.reward_model if self.reward_model.version > 0 else None
        if sampler in NEEDS_PREDICTOR and predictor is None:
            sampler = 'uniform'
        pairs, segments = self._candidates(pool_size(self.config.query, num))
        if pairs.num_pairs < num:
            return False  # too few segments yet: retry after more data
        labelled = self._labelled_pairs() if sampler.startswith('kcenter') else None
        chosen = select_queries(pairs, num, sampler, self.rng, predictor=predictor,
                                labelled=labelled,
                                kcenter_features=self.config.query.kcenter_features)
        queries = []
        for j, index in enumerate(chosen):
            left, right = segments[int(index)]
            query = PreferenceQuery(
                query_id=query_id(session, j), left=left, right=right,
                feedback_session=session, sampler=sampler,
                reward_model_version=self.reward_model.version, stamp_ns=time.time_ns())
            self.store.add_query(query)  # durable before anyone can answer it
            queries.append(query)
        st.sessions_started += 1
        with self._data:
            self._queries_out.extend(queries)
        return True

    def _candidates(self, pool: int) -> tuple[SegmentPairs, list[tuple[Segment, Segment]]]:
        """Up to ``pool`` never-asked pairs of distinct stored segments."""
        with self._data:
            pairs, segments = self.segments.draw_pairs(pool, self.rng)
        keep, seen = [], set()
        for i, (a, b) in enumerate(segments):
            key = frozenset((a.segment_id, b.segment_id))
            if key not in seen and not self.store.has_pair(a.segment_id, b.segment_id):
                seen.add(key)
                keep.append(i)
        index = np.asarray(keep, dtype=np.int64)
        return pairs.take(index), [segments[i] for i in keep]

    def _labelled_pairs(self) -> SegmentPairs | None:
        """Every trained-on pair (k-center's existing centres)."""
        train, val = self.store.preference_batches()
        if train.num_pairs + val.num_pairs == 0:
            return None
        return SegmentPairs(*(np.concatenate([a, b]) for a, b in
                              zip(train[:4], val[:4], strict=True)))

    def _sample(self, entropy: bool = False):
        """A replay batch; with ``entropy`` its rewards are the k-NN state entropy of s'."""
        with self._data:
            batch = self.buffer.sample(self.config.sac.batch_size, self.sample_generator)
            if entropy:
                intrinsic = self.entropy(batch.next_observations,
                                         self.buffer.observations_view())
                batch = batch._replace(rewards=intrinsic.to(batch.rewards.dtype))
        return batch

    def _update_chunk(self) -> bool:
        """Up to ``update_chunk`` SAC updates within the per-transition budget."""
        cfg, st = self.config, self.state
        with self._data:
            env_steps = st.env_steps
        if env_steps <= cfg.seed_steps or env_steps >= cfg.total_steps:
            return False
        allowed = int(self.learner.updates_per_step * (env_steps - cfg.seed_steps))
        todo = min(self.learner.update_chunk, allowed - st.budgeted_updates)
        if todo <= 0:
            return False
        if cfg.algorithm == 'sac':
            entropy = False
        elif self.reward_model.version > 0:
            entropy = False
            self._label_new_transitions()
        elif cfg.unsupervised_steps > 0:
            entropy = True  # pre-training, and on until the first reward model exists
        else:
            st.budgeted_updates = allowed  # nothing to learn from yet: skip these updates
            return False
        for _ in range(todo):
            self.agent.update(self._sample(entropy))
        st.budgeted_updates += todo
        if self.agent.num_updates - st.last_export_updates >= self.learner.policy_publish_interval:
            self._export_weights()
        return True

    def _label_new_transitions(self) -> None:
        """Give transitions received since the last relabelling the learned reward."""
        with self._data:
            new = min(self.state.unlabelled, len(self.buffer))
            if new:
                self.buffer.relabel(self.reward_model.reward, start=len(self.buffer) - new)
                self.state.unlabelled = 0

    def _export_weights(self) -> None:
        architecture, tensors = self.agent.actor_state()
        with self._data:
            self.state.policy_version += 1
            self.state.last_export_updates = self.agent.num_updates
            self._weights_out = PolicyWeights(version=self.state.policy_version,
                                              tensors=tensors, architecture=architecture,
                                              stamp_ns=time.time_ns())

    # ------------------------------------------------------------------------ checkpoints

    def checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the whole learner state atomically (default ``<run_dir>/checkpoint.pt``).

        Taken between two units of work with ingestion paused, so it is consistent; labels
        are not inside (the preference store is durable on its own).
        """
        path = Path(path) if path else self.run_dir / CHECKPOINT_NAME
        with self._model, self._data:
            # Segments held back by pacing go into the checkpoint as they are: admitting
            # them here would outrun learning (and skip the feedback sessions in between).
            save_learner_state(self, path)
        return path

