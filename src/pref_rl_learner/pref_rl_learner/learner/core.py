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
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_newest_usable,
    previous_path,
    save_checkpoint,
    save_checkpoint_keeping_previous,
)
from pref_rl_learner.durable import remove_stale_temp_files
from pref_rl_learner.learner.config import LearnerConfig
from pref_rl_learner.learner.evaluation import SessionEvaluator
from pref_rl_learner.learner.intake import SegmentIntake, SegmentRejectedError
from pref_rl_learner.learner.segment_store import SegmentStore
from pref_rl_learner.learner.state import (
    CHECKPOINT_NAME,
    FORMAT,
    CheckpointPathError,
    LearnerState,
    checkpoint_target,
)
from pref_rl_learner.pebble.config import TrainConfig, to_mapping
from pref_rl_learner.pebble.feedback import query_id
from pref_rl_learner.pebble.learning import PebbleLearning, UpdateKind
from pref_rl_learner.pebble.reward_learning import labelled_pairs, unasked_pairs
from pref_rl_learner.preferences.store import PreferenceStore
from pref_rl_learner.reward.training import TrainingReport
from pref_rl_learner.schedule import FeedbackBudget
from pref_rl_learner.types import (
    LearnerStatus,
    Phase,
    PolicyWeights,
    PreferenceLabel,
    PreferenceQuery,
    Segment,
)

__all__ = ['CheckpointPathError', 'LearnerCore', 'SegmentRejectedError', 'query_id']


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
            from pref_rl_learner.pebble.tasks import task_suite
            spec = task_suite().task_spec(config.task)
            observation_shape = observation_shape or tuple(spec.observation_shape)
            action_dim = action_dim or int(spec.action_dim)
            segment_length = segment_length or spec.segment_length
        self.segment_length = int(segment_length)
        checkpoint = self.run_dir / CHECKPOINT_NAME
        # init/fewshot read their pretrained reward model unless the run's own checkpoint
        # (which holds the model and the few-shot trainer's state) is resumed.
        self.learning = PebbleLearning(config, tuple(observation_shape), int(action_dim),
                                       load_prior=not checkpoint.exists())
        self.intake = SegmentIntake(config.task, self.learning.observation_shape,
                                    self.learning.action_dim, config.algorithm == 'sac',
                                    learner.stats_window_episodes,
                                    max_backlog=learner.max_backlog_transitions,
                                    max_magnitude=learner.max_input_magnitude,
                                    max_id_length=learner.max_id_length)
        self.segments = SegmentStore(self.segment_length, learner.segment_store_capacity)
        self.state = LearnerState()
        self.last_report: TrainingReport | None = None
        self.last_fit_seconds = 0.0
        """Wall time of the last :meth:`train_reward_model`: training or adaptation, the
        normaliser fit and the relabelling of the replay buffer."""
        self._data = threading.Lock()
        self._model = threading.RLock()
        self._labels = threading.Lock()
        self._wake = threading.Event()
        self._label_in = threading.Event()  # a label arrived: a chunk of updates stops early
        self._queries_out: list[PreferenceQuery] = []
        self._weights_out: PolicyWeights | None = None
        self.evaluator = evaluator
        self.finished = False
        """``total_steps`` reached, evaluated and summarised (only with an evaluator)."""
        self.summary: dict | None = None
        """The end summary (also in ``summary.json``) once :attr:`finished`."""
        self._started = time.monotonic()
        self.store = PreferenceStore.open(self.run_dir / 'preferences',
                                          self.learning.store_config())
        self.notes: list[str] = []
        """What the node should log about this start (stale temp files, a fallback)."""
        self.checkpoints_written = 0
        self.on_reward_model: Callable[[], None] | None = None
        """Called from the worker's thread after every training that yields a new reward
        model (the node publishes its status at once rather than at its next timer tick)."""
        try:
            # The store's lock makes this process the run directory's only owner: temp files
            # of saves killed before their rename are garbage.
            removed = remove_stale_temp_files(self.run_dir)
            if removed:
                self.notes.append(f'removed {len(removed)} partial checkpoint file(s) of '
                                  'killed saves: ' + ', '.join(p.name for p in removed))
            self.resumed = checkpoint.exists() or previous_path(checkpoint).exists()
            if self.resumed:
                note = load_newest_usable(checkpoint, self._load)
                if note:
                    self.notes.append(note)
            self._sync_with_store()
            if evaluator is not None:
                evaluator.open(resume_step=self.state.env_steps)
        except BaseException:
            self.store.close()  # release the store's lock before reporting the error
            raise
        if self.state.policy_version > 0:
            self._export_weights()  # a restarted learner re-announces its policy

    @property
    def agent(self):
        """The SAC agent (the learning component's)."""
        return self.learning.agent

    @property
    def reward_model(self):
        """The reward ensemble (the learning component's)."""
        return self.learning.reward_model

    @property
    def budget(self) -> FeedbackBudget:
        """The feedback budget (rebuilt from the durable store on start)."""
        return self.learning.budget

    @property
    def buffer(self):
        """The replay buffer (the learning component's)."""
        return self.learning.buffer

    def _sync_with_store(self) -> None:
        """Take what is durable from the store: answers (the budget), sessions, pending
        queries. The store is newer than any checkpoint: labels acknowledged after the last
        checkpoint are counted here and trained on by the worker."""
        self.learning.preferences.sync_budget(self.store)
        session = self.learning.sessions
        while self.store.has_query(query_id(session, 0)):
            session += 1
        self.learning.sessions = session
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
        with self._data:
            self.intake.receive(segment)
            self._admit()
            steps = self.state.env_steps
        self._wake.set()
        return steps

    def _lag(self) -> int:
        """SAC updates the worker owes for the transitions admitted so far."""
        allowed = int(self.learner.updates_per_step
                      * max(0, self.state.env_steps - self.config.seed_steps))
        return allowed - self.state.budgeted_updates

    def _may_admit(self) -> bool:
        if self.learner.hold_for_labels and self.store.pending_queries():
            return False
        return (self.learner.max_update_lag < 0
                or self.state.env_steps >= self.config.total_steps
                or self._lag() <= self.learner.max_update_lag)

    def _admit(self) -> int:
        """Move received segments into the buffer while the worker keeps up (``_data`` held).

        Returns the number of segments admitted.
        """
        return self.intake.admit(self._may_admit, self._add)

    def _add(self, segment: Segment) -> None:
        rewards = (segment.rewards if segment.rewards is not None
                   else np.zeros(segment.length, np.float32))
        for t in range(segment.length):
            self.learning.add(segment.observations[t], segment.actions[t], float(rewards[t]),
                              segment.next_observations[t], bool(segment.terminated[t]),
                              bool(segment.truncated[t]))
        self.state.env_steps += segment.length
        self.segments.add(segment)

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
        self._label_in.set()
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
            returns = [r for r, _ in self.intake.episodes]
            successes = [float(s) for _, s in self.intake.episodes]
            return LearnerStatus(
                phase=self._phase(env, pending=counts['queries'] > counts['labelled']),
                env_steps=env, gradient_steps=self.agent.num_updates,
                feedback_session=max(self.learning.sessions - 1, 0),
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
        kind = self.learning.update_kind(max(env_steps, cfg.seed_steps + 1))
        if kind is UpdateKind.ENTROPY:
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
            self._label_in.clear()  # every label stored so far is seen by _maybe_train
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
            if len(self.learning.buffer) == 0:
                # Resumed from a checkpoint older than the labels (a crash): the reward
                # normaliser needs transitions, so train once segments arrive again.
                return False
        every = self.learner.train_after_labels
        if self.store.pending_queries() and not (every and new >= every):
            return False
        self.train_reward_model()
        return True

    def train_reward_model(self) -> TrainingReport | None:
        """Fit the reward to every stored label (the learning component decides how).
        Returns None when no label is trainable yet."""
        with self._model:
            trainable = self._trainable_labels()
            start = time.perf_counter()
            report = self.learning.fit_reward(self.store, guard=self._data)
            self.last_fit_seconds = time.perf_counter() - start
            with self._data:
                self.state.labels_trained = trainable
                if report is not None:
                    # Held-out accuracy when the run keeps a validation split, else the
                    # accuracy on the labels it trained on (every label, by default).
                    self.state.reward_model_accuracy = float(
                        report.train_accuracy if report.val_accuracy is None
                        else report.val_accuracy)
                    self.last_report = report
            if report is not None and self.on_reward_model is not None:
                self.on_reward_model()
            return report

    def _maybe_start_session(self) -> bool:
        """Select, store and queue the queries of the next session when one is due."""
        with self._data:
            env_steps = self.state.env_steps
        if not self.learning.session_due(env_steps) or self.store.pending_queries():
            return False
        # Nothing is outstanding here, so everything not yet answered may be asked.
        preferences = self.learning.preferences
        num = preferences.queries_for_session(env_steps)
        if num == 0:
            return False
        session = self.learning.sessions
        pairs, segments = self._candidates(preferences.pool_size(num))
        if pairs.num_pairs < num:
            return False  # too few segments yet: retry after more data
        chosen, sampler = preferences.select(pairs, num, session,
                                             labelled=lambda: labelled_pairs(self.store))
        queries = []
        for j, index in enumerate(chosen):
            left, right = segments[int(index)]
            query = PreferenceQuery(
                query_id=query_id(session, j), left=left, right=right,
                feedback_session=session, sampler=sampler,
                reward_model_version=self.reward_model.version, stamp_ns=time.time_ns())
            self.store.add_query(query)  # durable before anyone can answer it
            queries.append(query)
        self.learning.sessions += 1
        with self._data:
            self._queries_out.extend(queries)
        return True

    def _candidates(self, pool: int) -> tuple[SegmentPairs, list[tuple[Segment, Segment]]]:
        """Up to ``pool`` never-asked pairs of distinct stored segments."""
        with self._data:
            pairs, segments = self.segments.draw_pairs(pool, self.learning.rng)
        keep = unasked_pairs([(a.segment_id, b.segment_id) for a, b in segments], self.store)
        index = np.asarray(keep, dtype=np.int64)
        return pairs.take(index), [segments[i] for i in keep]

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
        kind = self.learning.update_kind(env_steps)
        if kind is UpdateKind.NONE:
            st.budgeted_updates = allowed  # nothing to learn from yet: skip these updates
            return False
        done = 0
        while done < todo and not (done and self._label_in.is_set()):
            # A label that may complete a session stops the chunk: training waits for one
            # update at most, not a whole chunk.
            self.learning.update(kind, guard=self._data)  # ingest shares the buffer
            done += 1
        st.budgeted_updates += done
        if not self.learning.verify_agent():
            return True  # rolled back to the last finite state: nothing to publish
        if self.agent.num_updates - st.last_export_updates >= self.learner.policy_publish_interval:
            self._export_weights()
        return True

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
        path = self._checkpoint_target(path)
        with self._model, self._data:
            self.learning.verify_agent()  # restores the last finite state if need be
            if not self.learning.finite():
                raise CheckpointError('the learner state holds non-finite values: no '
                                      'checkpoint written (the last one is kept)')
            # Segments held back by pacing go into the checkpoint as they are: admitting
            # them here would outrun learning (and skip the feedback sessions in between).
            state = self.state_dict()
            if path == self.run_dir / CHECKPOINT_NAME:
                save_checkpoint_keeping_previous(path, state)
            else:
                save_checkpoint(path, state)
            self.checkpoints_written += 1
        return path

    def _checkpoint_target(self, path: str | Path | None) -> Path:
        extra = Path(self.learner.checkpoint_dir) if self.learner.checkpoint_dir else None
        return checkpoint_target(path, self.run_dir, self.store.directory, extra)

    def early_checkpoint_due(self) -> bool:
        """The first checkpoint is due as soon as the seed phase is over (if configured and
        none was written by this process or exists yet)."""
        return (self.learner.first_checkpoint_after_seed and self.checkpoints_written == 0
                and not (self.run_dir / CHECKPOINT_NAME).exists()
                and self.state.env_steps > self.config.seed_steps)

    def state_dict(self) -> dict:
        """The learning component, the segment store, the intake and the counters (the
        caller holds the locks)."""
        return {'format': FORMAT, 'config': to_mapping(self.config),
                'state': dataclasses.asdict(self.state),
                'learning': self.learning.state_dict(),
                'segments': self.segments.state_dict(),
                'intake': self.intake.state_dict()}

    def _load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`checkpoint`.

        Raises:
            CheckpointError: unreadable, of another format, or written for a different config.
        """
        state = load_checkpoint(path, map_location=self.agent.device)
        if state.get('format') != FORMAT or 'segments' not in state:
            raise CheckpointError(f'{path}: not a learner checkpoint of format {FORMAT}')
        if state.get('config') != to_mapping(self.config):
            raise CheckpointError(f'{path}: written for a different config; resume with the '
                                  "run's own config")
        try:
            self.state = LearnerState(**state['state'])
            self.learning.load_state_dict(state['learning'])
            self.segments.load_state_dict(state['segments'])
            self.intake.load_state_dict(state['intake'],
                                        (segment.segment_id for segment in self.segments))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f'{path}: incomplete or inconsistent checkpoint: '
                                  f'{err}') from err
