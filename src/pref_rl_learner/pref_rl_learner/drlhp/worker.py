"""The DRLHP worker process: preference collection and reward training beside the agent.

Runs :func:`worker_main` in a process of its own (``spawn``/``forkserver``, torch on
``worker_torch_threads`` threads). Three channels connect it to the wrapper:

- ``clips`` (bounded ``multiprocessing.Queue``, wrapper → worker): closed clips; the wrapper
  drops a clip when the queue is full, so ``env.step`` never waits on the worker;
- ``conn`` (a duplex ``Pipe``): calls from the wrapper (``submit_label``, ``pending``,
  ``status``, ``save``, ``stop``) answered by a thread in the worker, so a label is
  acknowledged as soon as the preference store has fsynced it, even while training runs;
- ``updates`` (``multiprocessing.Queue``, worker → wrapper): new reward-model weights
  (versioned, as numpy arrays), status and a fatal error, if any.

An intake thread moves clips into a pool of recent segments as they come (so the queue
drains while training runs; the pool keeps to ``segment_pool_size`` clips and
``segment_pool_bytes``). The main thread loops: hold the next feedback session the schedule
says is due (select pairs from the clips closed by its step, store the queries, ask the
gatherer, store its answers), then, when new labels have arrived, train the ensemble for at
most ``reward_training.max_gradient_steps`` steps (warm-started, so the cost does not grow
with the labels), refit the reward normalisation and publish the weights. Sessions that fell due
meanwhile are held one after the other, never skipped; ``status`` reports the backlog.
Labels are appended to the durable :class:`~pref_rl_learner.preferences.PreferenceStore` in
``log_dir/preferences`` before anything trains on them; the store never evicts one.

No orphans: the call thread watches the pipe (EOF once the parent's end is gone, which a
``SIGKILL`` of the parent causes) and the parent pid. When the parent is gone the main loop
closes the store and the process ends with ``os._exit`` (:func:`_exit_orphan`); should
training not return within ``ORPHAN_GRACE_S``, the call thread ends it without waiting (the
store is crash-safe: every acknowledged label is already fsynced). Before it goes it unlinks
the named semaphores of the two queues the dead parent created and takes them off the
parent's ``resource_tracker``, which would otherwise warn of them as leaked. Interpreter
shutdown is never run on this path: torch's threads made it abort (``terminate called``).
"""

from __future__ import annotations

import io
import os
import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pref_rl_learner.batches import PreferenceBatch, SegmentPairs
from pref_rl_learner.drlhp.config import DrlhpConfig, DrlhpError
from pref_rl_learner.drlhp.gatherers import make_gatherer
from pref_rl_learner.drlhp.segments import Clip
from pref_rl_learner.durable import atomic_write_bytes
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery, Segment

PREFERENCE_STORE_DIR = 'preferences'
"""Sub-directory of ``log_dir`` holding the durable preference store."""
SPLIT_FILES = {'train': 'train.npz', 'val': 'val.npz'}
"""The preference-store splits saved by ``collect_only`` (read by ``train_only``)."""
ORPHAN_GRACE_S = 1.0
"""Seconds an orphaned worker waits for its main loop before exiting regardless (with the
parent check every 0.25 s, an orphan is gone within 2 s of its agent)."""
_PARENT_CHECK_S = 0.25
_QUEUE_SEMAPHORES = ('_rlock', '_wlock', '_sem')
"""The named semaphores of a ``multiprocessing.Queue`` (CPython 3.8-3.13)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What the worker process is started with (picklable)."""

    config: DrlhpConfig
    """The wrapper's config."""
    observation_shape: tuple[int, ...]
    """Shape of the transformed observations the reward model sees."""
    action_dim: int
    """Length of the encoded action vectors."""
    log_dir: str
    """Run directory: preference store, splits, checkpoints."""
    parent_pid: int
    """The agent process; the worker stops when it is gone."""
    task: str
    """Task name written into stored segments."""


# ----------------------------------------------------------------------- preference files

def save_splits(batches: tuple[PreferenceBatch, PreferenceBatch], directory: str | Path
                ) -> dict[str, Path]:
    """Write the train and val batches to ``train.npz``/``val.npz`` atomically (no pickle)."""
    paths = {}
    for split, batch in zip(('train', 'val'), batches, strict=True):
        buffer = io.BytesIO()
        np.savez(buffer, **batch._asdict())
        paths[split] = Path(directory) / SPLIT_FILES[split]
        atomic_write_bytes(paths[split], buffer.getvalue())
    return paths


def load_splits(directory: str | Path) -> tuple[PreferenceBatch, PreferenceBatch]:
    """Read what :func:`save_splits` wrote (``allow_pickle=False``: no code runs).

    Raises:
        DrlhpError: a file is missing, unreadable or lacks an array.
    """
    out = []
    for split in ('train', 'val'):
        path = Path(directory) / SPLIT_FILES[split]
        try:
            with np.load(path, allow_pickle=False) as data:
                out.append(PreferenceBatch(**{k: data[k] for k in PreferenceBatch._fields}))
        except (OSError, KeyError, ValueError) as err:
            raise DrlhpError(f'{path}: cannot read saved preferences: {err}') from err
    return out[0], out[1]


# -------------------------------------------------------------------------------- worker

class PreferenceWorker:
    """State and steps of the worker's main loop (testable without a process)."""

    def __init__(self, spec: WorkerSpec, publish: Any) -> None:
        import torch

        from pref_rl_learner.drlhp.model_io import load_reward_checkpoint
        from pref_rl_learner.pebble.reward_learning import PreferenceLearning, run_store_config
        from pref_rl_learner.preferences import PreferenceStore, PreferenceStoreConfig
        from pref_rl_learner.reward import RewardEnsemble, RewardTrainer
        from pref_rl_learner.schedule import FeedbackBudget, FeedbackSchedule

        self.spec, self.config = spec, spec.config
        self.publish = publish
        config = self.config
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.run_id = f'{time.time_ns():x}'  # query ids: unique per run, ordered per session
        self.log_dir = Path(spec.log_dir)
        self.store = PreferenceStore.open(
            self.log_dir / PREFERENCE_STORE_DIR,
            run_store_config(PreferenceStoreConfig(fsync=config.store_fsync),
                             config.reward_training, config.seed))
        self.model = RewardEnsemble(spec.observation_shape, spec.action_dim,
                                    config.reward_model, seed=config.seed)
        if config.pretrained_checkpoint:
            pretrained, _ = load_reward_checkpoint(config.pretrained_checkpoint,
                                                   str(self.model.device))
            self.model.load_state_dict(pretrained.state_dict())
        self.trainer = RewardTrainer(self.model, config.reward_training, seed=config.seed)
        self.schedule = FeedbackSchedule(config.schedule)
        # The decisions (sampler with its fallback, selection, training) are PEBBLE's
        # component's; the worker only feeds it clips and holds the sessions.
        self.preferences = PreferenceLearning(
            self.model, self.trainer, config.query, self.schedule,
            FeedbackBudget(config.schedule.total_budget), self.rng,
            prior=bool(config.pretrained_checkpoint))
        self.gatherer = make_gatherer(config, np.random.default_rng((config.seed, 1)))
        self.pool: deque[Clip] = deque()
        self.pool_bytes = 0
        self.ready_step: int | None = None
        """env_steps of the clip that filled the pool to ``session_clips`` (None: not yet)."""
        self.empty_sessions = 0
        self.saved_splits = load_splits(config.preferences_dir) \
            if config.mode == 'train_only' else None
        self.env_steps = 0
        self.sessions = 0
        self.trainings = 0
        self.clips_received = 0
        self.trained_on_labels = -1
        self.last_report: dict[str, float] = {}
        self.lock = threading.Lock()  # the store is thread-safe; this guards the counters
        self.pool_lock = threading.Lock()  # clips arrive on the intake thread
        self.orphaned = threading.Event()
        """Set by the call thread once the parent is gone."""
        self.parent_queues: tuple[Any, ...] = ()
        """The parent's ``multiprocessing`` queues (their semaphores go with an orphan)."""

    # ---------------------------------------------------------------------------- clips
    def take_clip(self, clip: Clip) -> None:
        """Add a clip to the pool of query candidates (thread-safe)."""
        config = self.config
        with self.pool_lock:
            self.pool.append(clip)
            self.pool_bytes += clip.nbytes
            while len(self.pool) > 2 and (len(self.pool) > config.segment_pool_size
                                          or self.pool_bytes > config.segment_pool_bytes):
                self.pool_bytes -= self.pool.popleft().nbytes  # the oldest goes first
            self.clips_received += 1
            if self.ready_step is None and self.clips_received >= config.session_clips:
                self.ready_step = clip.env_steps
            self.env_steps = max(self.env_steps, clip.env_steps)
            for true_return, length in clip.finished_episodes:
                self.gatherer.observe_episode(true_return, length)

    def pool_snapshot(self, until_step: int | None = None) -> list[Clip]:
        """The pool's clips, oldest first, as a list (safe while clips arrive); with
        ``until_step`` only those closed by then (what a session at that step sees, however
        far the agent has run on since)."""
        with self.pool_lock:
            if until_step is None:
                return list(self.pool)
            return [c for c in self.pool if c.env_steps <= until_step]

    # ------------------------------------------------------------------------- sessions
    def session_cutoff(self, session: int) -> int | None:
        """The env step whose pool session ``session`` draws from: its scheduled step, not
        before the pool first held ``session_clips`` clips (None: not filled yet)."""
        if self.ready_step is None:
            return None
        return max(self.schedule.session_step(session), self.ready_step)

    def sessions_due(self) -> int:
        """Sessions the schedule has called for by now (held or not): those whose step has
        come, once the pool has filled (sessions due before it are held on that pool)."""
        return 0 if self.ready_step is None else self.schedule.sessions_due(self.env_steps)

    def session_due(self) -> bool:
        """Whether the next feedback session is due: the clips up to its step are in (the
        queue is FIFO, so a later clip means all earlier ones arrived)."""
        cutoff = self.session_cutoff(self.sessions)
        return (self.config.collects and cutoff is not None and self.env_steps >= cutoff
                and self.sessions_due() > self.sessions)

    def run_session(self) -> int:
        """Select pairs, store them as queries, store the answers given now; returns the
        number of queries asked."""
        from pref_rl_learner.pebble.reward_learning import labelled_pairs

        config, store, preferences = self.config, self.store, self.preferences
        preferences.sync_budget(store)
        session, self.sessions = self.sessions, self.sessions + 1
        # The rate at the session's scheduled step (sessions that fell due together, while
        # training ran, are held one after the other, each at its own rate).
        pending = len(store.pending_queries())
        num = preferences.queries_for_session(self.schedule.session_step(session), pending)
        if not self.gatherer.answers_immediately:
            num = min(num, config.max_pending_queries - pending)
        if num <= 0:
            return 0
        candidates = self._candidate_pairs(preferences.pool_size(num),
                                           self.session_cutoff(session))
        if not candidates:
            self.empty_sessions += 1
            return 0
        pairs = _stack_pairs(candidates)
        chosen, sampler = preferences.select(pairs, num, session,
                                             labelled=lambda: labelled_pairs(store))
        queries = []
        for n, index in enumerate(chosen):
            left, right = candidates[int(index)]
            query = PreferenceQuery(
                query_id=f'q-{self.run_id}-{session:05d}-{n:03d}', left=self._segment(left),
                right=self._segment(right), feedback_session=session, sampler=sampler,
                reward_model_version=self.model.version, stamp_ns=time.time_ns())
            store.add_query(query)
            queries.append(query)
        with self.pool_lock:  # the teacher's episode returns come with the clips
            labels = self.gatherer.ask(queries, pairs.take(chosen))
        for label in labels:
            store.add_label(label)
        return len(queries)

    def _candidate_pairs(self, count: int, until_step: int | None
                         ) -> list[tuple[Clip, Clip]]:
        """Up to ``count`` random pairs of distinct pool clips (closed by ``until_step``)
        never asked before."""
        from pref_rl_learner.pebble.reward_learning import unasked_pairs

        clips = self.pool_snapshot(until_step)
        if len(clips) < 2:
            return []
        draws = [self.rng.choice(len(clips), size=2, replace=False) for _ in range(4 * count)]
        keep = unasked_pairs([(clips[i].segment_id, clips[j].segment_id) for i, j in draws],
                             self.store)[:count]
        return [(clips[draws[k][0]], clips[draws[k][1]]) for k in keep]

    def _segment(self, clip: Clip) -> Segment:
        return Segment(segment_id=clip.segment_id, task=self.spec.task,
                       observations=np.ascontiguousarray(clip.observations),
                       actions=clip.actions,
                       next_observations=np.ascontiguousarray(clip.next_observations),
                       terminated=clip.terminated, truncated=clip.truncated,
                       rewards=clip.rewards, source_id='drlhp', episode=clip.episode,
                       start_step=clip.start_step)

    # ------------------------------------------------------------------------- training
    def training_due(self) -> bool:
        """Whether to train now: new labels (or, for ``train_only``, rounds left to run)."""
        config = self.config
        if not config.trains:
            return False
        if self.saved_splits is not None:
            return self.trainings < config.n_initial_training_steps
        counts = self.store.counts()
        return (counts['train'] >= config.min_labels_to_train
                and counts['labelled'] != self.trained_on_labels)

    def train(self) -> None:
        """One training on the stored labels (at most ``reward_training.max_gradient_steps``
        steps, warm-started), then normalisation and publication."""
        from pref_rl_learner.drlhp.model_io import checkpoint_path, save_reward_checkpoint

        config = self.config
        if self.saved_splits is not None:
            train, val = self.saved_splits
        else:
            self.trained_on_labels = self.store.counts()['labelled']
            train, val = self.store.preference_batches()
        report = self.preferences.train(train, val)
        if config.normalize_reward:
            obs, act = self._normalizer_sample(train)
            self.model.fit_normalizer(obs, act)
        with self.lock:
            self.trainings += 1
            self.last_report = {
                'train_accuracy': report.train_accuracy, 'train_loss': report.train_loss,
                'val_accuracy': _nan(report.val_accuracy), 'val_loss': _nan(report.val_loss),
                'l2_weight': report.l2_weight, 'epochs': report.epochs,
                'gradient_steps': report.gradient_steps}
        if config.checkpoint_interval and self.trainings % config.checkpoint_interval == 0:
            save_reward_checkpoint(checkpoint_path(self.log_dir, self.trainings), self.model,
                                   self.trainings, {'trainer': self.trainer.state_dict()})
        from pref_rl_learner.drlhp.model_io import weights_to_numpy
        self.publish(('model', self.model.version, self.trainings,
                      weights_to_numpy(self.model), self.status()))

    def _normalizer_sample(self, train: PreferenceBatch) -> tuple[np.ndarray, np.ndarray]:
        """Recent transitions from the pool (up to the last session's step, so the same
        seed gives the same statistics), or the labelled segments when there is none."""
        budget = self.config.normalizer_samples
        pool = self.pool_snapshot(self.session_cutoff(max(self.sessions - 1, 0)))
        if pool:
            clips, steps = [], 0
            for clip in reversed(pool):
                clips.append(clip)
                steps += clip.rewards.shape[0]
                if steps >= budget:
                    break
            obs = np.concatenate([c.observations for c in clips])[:budget]
            act = np.concatenate([c.actions for c in clips])[:budget]
            return obs, act
        obs = np.concatenate([train.left_observations, train.right_observations])
        act = np.concatenate([train.left_actions, train.right_actions])
        obs = obs.reshape(-1, *obs.shape[2:])[:budget]
        return obs, act.reshape(-1, act.shape[-1])[:budget]

    # --------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Counts and the last training's figures (plain data)."""
        with self.lock:
            counts = self.store.counts()
            due = self.sessions_due()
            return {**counts, 'answered': counts['labelled'],
                    'labelled': counts['labelled'] - counts['skip'],
                    'pending': len(self.store.pending_queries()),
                    'trainings': self.trainings, 'sessions': self.sessions,
                    'sessions_due': due, 'session_backlog': max(due - self.sessions, 0),
                    'empty_sessions': self.empty_sessions,
                    'clips_received': self.clips_received, 'env_steps': self.env_steps,
                    'pool_clips': len(self.pool), 'pool_bytes': self.pool_bytes,
                    'reward_model_version': self.model.version, **self.last_report}

    def save_preferences(self) -> dict[str, str]:
        """Write the store's train/val splits into ``log_dir``; returns the paths."""
        paths = save_splits(self.store.preference_batches(), self.log_dir)
        return {k: str(v) for k, v in paths.items()}

    def submit_label(self, query_id: str, choice: int, labeler_id: str,
                     response_time_s: float) -> bool:
        """Store a person's answer (True once on disk, False for a repeated answer)."""
        return self.store.add_label(PreferenceLabel(
            query_id=query_id, choice=Choice(choice), labeler_id=labeler_id,
            response_time_s=response_time_s, stamp_ns=time.time_ns()))

    def pending(self) -> list[PreferenceQuery]:
        """The queries waiting for an answer, oldest first, with their segments."""
        return [self.store.query(q) for q in self.store.pending_queries()]

    def close(self) -> None:
        """Write the splits (``collect_only``) and close the store."""
        try:
            if self.config.mode == 'collect_only':
                self.save_preferences()
        finally:
            self.store.close()


def _stack_pairs(pairs: list[tuple[Clip, Clip]]) -> SegmentPairs:
    left, right = [p[0] for p in pairs], [p[1] for p in pairs]
    return SegmentPairs(np.stack([c.observations for c in left]),
                        np.stack([c.actions for c in left]),
                        np.stack([c.observations for c in right]),
                        np.stack([c.actions for c in right]),
                        np.stack([c.rewards for c in left]),
                        np.stack([c.rewards for c in right]))


def _nan(value: float | None) -> float:
    return float('nan') if value is None else float(value)


# ------------------------------------------------------------------------ process entry

def parent_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
        return state not in ('Z', 'X')
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _serve_calls(conn: Any, worker: PreferenceWorker, spec: WorkerSpec,
                 stop: threading.Event) -> None:
    """Answer the wrapper's calls; on a lost parent stop the worker (and exit if stuck)."""
    orphaned = False
    while not stop.is_set():
        try:
            if not conn.poll(_PARENT_CHECK_S):
                if not parent_alive(spec.parent_pid):
                    orphaned = True
                    break
                continue
            request_id, op, args = conn.recv()
        except (EOFError, OSError):
            orphaned = True
            break
        try:
            if op == 'label':
                result: Any = worker.submit_label(*args)
            elif op == 'pending':
                result = worker.pending()
            elif op == 'status':
                result = worker.status()
            elif op == 'save':
                result = worker.save_preferences()
            elif op == 'stop':
                stop.set()
                result = True
            else:
                raise DrlhpError(f'unknown worker call {op!r}')
            reply = (request_id, 'ok', result)
        except PrefRLError as err:
            reply = (request_id, 'error', (type(err).__name__, str(err)))
        except Exception as err:  # report, never kill the call thread
            reply = (request_id, 'error', ('WorkerError', repr(err)))
        try:
            conn.send(reply)
        except (OSError, EOFError):
            orphaned = True
            break
    if orphaned:
        stop.set()
        worker.orphaned.set()
        time.sleep(ORPHAN_GRACE_S)  # the main loop normally ends the process before this
        _exit_orphan(worker.parent_queues)


_EXIT_LOCK = threading.Lock()


def _exit_orphan(queues: tuple[Any, ...]) -> None:
    """End an orphaned worker now: release the dead parent's queue semaphores (unlink, and
    off its ``resource_tracker``), then ``os._exit`` (no interpreter shutdown)."""
    import _multiprocessing
    from multiprocessing import resource_tracker

    with _EXIT_LOCK:  # the main loop and the call thread may both get here
        for channel in queues:
            for attribute in _QUEUE_SEMAPHORES:
                name = getattr(getattr(getattr(channel, attribute, None), '_semlock', None),
                               'name', None)
                if name is None:
                    continue
                try:
                    _multiprocessing.sem_unlink(name)
                    resource_tracker.unregister(name, 'semaphore')
                except (OSError, AttributeError):
                    pass  # already gone, or a platform without named semaphores
        os._exit(0)


def worker_main(spec: WorkerSpec, conn: Any, clips: Any, updates: Any) -> None:
    """Entry point of the worker process (see the module docstring)."""
    import torch

    torch.set_num_threads(spec.config.worker_torch_threads)
    updates.cancel_join_thread()  # never block exit on a parent that stopped reading
    try:
        worker = PreferenceWorker(spec, updates.put)
        worker.parent_queues = (clips, updates)
    except BaseException as err:
        conn.send((0, 'error', (type(err).__name__, str(err))))
        return
    conn.send((0, 'ok', worker.status()))
    stop = threading.Event()
    calls = threading.Thread(target=_serve_calls, args=(conn, worker, spec, stop),
                             name='drlhp-calls', daemon=True)
    calls.start()
    intake = threading.Thread(target=_take_clips, args=(clips, worker, stop),
                              name='drlhp-intake', daemon=True)
    intake.start()
    try:
        while not stop.is_set():
            busy = worker.session_due()
            if busy:
                worker.run_session()
                updates.put(('status', worker.status()))
            if worker.training_due():  # after every session with new labels
                worker.train()
                busy = True
            if not busy:
                stop.wait(0.02)
        intake.join()
        worker.close()
        if worker.orphaned.is_set():
            _exit_orphan(worker.parent_queues)  # nobody is left to read ``updates``
        updates.put(('stopped', worker.status()))
    except BaseException:
        updates.put(('error', traceback.format_exc()))
        worker.store.close()
        raise


def _take_clips(clips: Any, worker: PreferenceWorker, stop: threading.Event) -> None:
    """Intake thread: move clips from the queue into the pool, also while training runs."""
    while not stop.is_set():
        try:
            worker.take_clip(clips.get(timeout=0.05))
        except queue.Empty:
            continue
        except (EOFError, OSError, ValueError):
            return  # the queue is gone with the parent
