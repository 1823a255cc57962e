"""A gymnasium wrapper whose reward is learned from preferences, asynchronously (DRLHP).

Christiano et al. 2017 (https://arxiv.org/abs/1706.03741) run three processes side by side:
the agent acting on the predicted reward, a process asking a human to compare pairs of clips,
and one fitting the reward predictor to the comparisons. :class:`PreferenceRewardWrapper`
makes any gymnasium env such an agent's env, for any algorithm (stable-baselines3 included):

- every step it records (transformed) observations and actions; clips of
  ``segment_length`` steps go to the worker process (:mod:`.worker`) over a bounded queue,
  dropped and counted when it is full, so ``step`` never waits;
- the worker asks for labels (scripted teacher or a person through :meth:`submit_label`),
  stores them durably and trains the ensemble; new weights come back and the wrapper swaps
  them into its local CPU copy at the next clip boundary (evaluated per step in numpy for
  MLP members, :mod:`.step_reward`);
- the reward returned is the true one until ``n_initial_training_steps`` trainings have
  happened, then the normalised ensemble mean r̂(o_t, a_t) (``info['true_reward']`` always
  holds the env's own reward). :meth:`switch_to_true_reward` and
  :meth:`switch_to_predicted_reward` override that choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import os
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from pref_rl_learner.checkpoint import CheckpointError
from pref_rl_learner.drlhp.config import DrlhpConfig, DrlhpError, WorkerError
from pref_rl_learner.drlhp.model_io import load_numpy_weights, load_reward_checkpoint
from pref_rl_learner.drlhp.segments import (
    ActionEncoder,
    ClipRecorder,
    ObsTransform,
    checked_observation,
    identity_transform,
)
from pref_rl_learner.drlhp.step_reward import StepReward
from pref_rl_learner.drlhp.worker import WorkerSpec, worker_main
from pref_rl_learner.errors import InvalidLabelError
from pref_rl_learner.preferences import ConflictingLabelError, StoreError, UnknownQueryError
from pref_rl_learner.reward import RewardEnsemble
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery

STARTUP_TIMEOUT_S = 120.0
"""Longest wait for the worker to start (it imports torch and opens the store)."""
_REMOTE_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (UnknownQueryError, ConflictingLabelError, StoreError,
                                  InvalidLabelError, DrlhpError, CheckpointError)}


class PreferenceRewardWrapper(gymnasium.Wrapper):
    """Turns ``env`` into an env rewarded by a reward model learned from preferences.

    Args:
        env: any gymnasium env (Box/Discrete/MultiBinary actions).
        config: workflow, segments, labels, reward model and worker settings.
        log_dir: preference store, ``train``/``val`` files and checkpoints go here.
        obs_transform: maps an observation to the reward model's input (default: the
            observation as an array); use :func:`~.segments.pixel_transform` for pixels.
        task: task name recorded in stored segments.

    Raises:
        ObservationTransformError: ``obs_transform`` fails on a sample observation.
        CheckpointError: ``pretrained_checkpoint`` is missing, corrupt or does not fit.
        WorkerError: the worker process did not start.
    """

    def __init__(self, env: gymnasium.Env, config: DrlhpConfig, log_dir: str | Path,
                 obs_transform: ObsTransform | None = None, task: str = '') -> None:
        super().__init__(env)
        self.config = config
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._transform = obs_transform or identity_transform
        sample = checked_observation(self._transform, env.observation_space.sample(), None)
        self.reward_observation_shape: tuple[int, ...] = tuple(sample.shape)
        """Shape of what the reward model sees."""
        self._encode = ActionEncoder(env.action_space)
        self._model = self._initial_model()
        self._step_reward = StepReward(self._model)
        self._has_model = bool(config.pretrained_checkpoint)
        self._trainings = 0
        self._choice = 'predicted' if config.mode == 'pretrained' else 'auto'
        self._recorder = ClipRecorder(config.segment_length, uuid.uuid4().hex[:12])
        self._last_obs: np.ndarray | None = None
        self._env_steps = 0
        self._episode_return = 0.0
        self._episode_length = 0
        self.clips_dropped = 0
        """Clips thrown away because the queue to the worker was full."""
        self._unsent_episodes: tuple[tuple[float, int], ...] = ()
        self.clips_sent = 0
        """Clips handed to the queue."""
        self._status: dict[str, Any] = {}
        self._closed = False
        self._call_lock = threading.Lock()
        self._call_ids = itertools.count(1)
        self._process: Any = None
        self._worker_pid: int | None = None
        if config.mode != 'pretrained':
            self._start_worker(task)

    # ------------------------------------------------------------------------- set-up
    def _initial_model(self) -> RewardEnsemble:
        config = self.config
        if config.pretrained_checkpoint:
            model, _ = load_reward_checkpoint(config.pretrained_checkpoint, 'cpu')
            if (model.observation_shape != self.reward_observation_shape
                    or model.action_dim != self._encode.dim):
                raise CheckpointError(
                    f'{config.pretrained_checkpoint}: reward model for observations '
                    f'{model.observation_shape} and {model.action_dim}-D actions, this env '
                    f'gives {self.reward_observation_shape} and {self._encode.dim}-D')
            return model
        local = dataclasses.replace(config.reward_model, device='cpu')
        return RewardEnsemble(self.reward_observation_shape, self._encode.dim, local,
                              seed=config.seed).eval()

    def _start_worker(self, task: str) -> None:
        config = self.config
        context = multiprocessing.get_context(config.start_method)
        self._conn, child_conn = context.Pipe(duplex=True)
        self._clips = context.Queue(maxsize=config.queue_size)
        self._updates = context.Queue()
        spec = WorkerSpec(config=config, observation_shape=self.reward_observation_shape,
                          action_dim=self._encode.dim, log_dir=str(self.log_dir),
                          parent_pid=_pid(), task=task)
        self._process = context.Process(
            target=worker_main, args=(spec, child_conn, self._clips, self._updates),
            name='drlhp-worker', daemon=True)
        self._process.start()
        self._worker_pid = self._process.pid
        child_conn.close()  # our copy: the worker then sees EOF only when we are gone
        if not self._conn.poll(STARTUP_TIMEOUT_S):
            self._stop_worker()
            raise WorkerError(f'the DRLHP worker did not start within {STARTUP_TIMEOUT_S} s')
        try:
            _, kind, payload = self._conn.recv()
        except EOFError:
            self._stop_worker()
            raise WorkerError('the DRLHP worker exited while starting') from None
        if kind != 'ok':
            self._stop_worker()
            raise _remote_error(payload)
        self._status = payload

    # ----------------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset the env and start a new episode of clips."""
        self._require_open()
        observation, info = self.env.reset(seed=seed, options=options)
        self._last_obs = checked_observation(self._transform, observation,
                                             self.reward_observation_shape)
        self._recorder.start_episode()
        self._episode_return, self._episode_length = 0.0, 0
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env; the reward is r̂(o_t, a_t) once the predicted reward is in use."""
        self._require_open()
        if self._last_obs is None:
            raise DrlhpError('call reset() before step()')
        observation, true_reward, terminated, truncated, info = self.env.step(action)
        next_obs = checked_observation(self._transform, observation,
                                       self.reward_observation_shape)
        encoded = self._encode(action)
        self._env_steps += 1
        predicted = self.using_predicted_reward
        reward = self._predict_one(self._last_obs, encoded) if predicted else float(true_reward)
        info['true_reward'] = float(true_reward)
        info['using_predicted_reward'] = predicted
        self._episode_return += float(true_reward)
        self._episode_length += 1
        if terminated or truncated:
            self._recorder.end_episode(self._episode_return, self._episode_length)
        if self.config.collects and self._process is not None:
            clip = self._recorder.add(self._last_obs, encoded, next_obs, float(true_reward),
                                      self._env_steps)
            if clip is not None:
                self._send(clip)
        if self._env_steps % self.config.segment_length == 0:
            self._poll_updates()
        self._last_obs = next_obs
        return observation, reward, terminated, truncated, info

    def close(self) -> None:
        """Stop the worker (waiting at most ``shutdown_timeout_s``), close the env.
        Idempotent; never blocks on full queues."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stop_worker()
        finally:
            self.env.close()

    # ------------------------------------------------------------------- reward choice
    @property
    def using_predicted_reward(self) -> bool:
        """Whether ``step`` returns the predicted reward (else the env's true reward)."""
        if self._choice != 'auto':
            return self._choice == 'predicted'
        return (self.config.trains and self._has_model
                and self._trainings >= self.config.n_initial_training_steps)

    def switch_to_true_reward(self) -> None:
        """Return the env's own reward from now on (until switched back)."""
        self._choice = 'true'

    def switch_to_predicted_reward(self) -> None:
        """Return the predicted reward from now on.

        Raises:
            DrlhpError: no reward model has been trained or loaded yet.
        """
        self._poll_updates()
        if not self._has_model:
            raise DrlhpError('no reward model yet: wait for a training or load a checkpoint')
        self._choice = 'predicted'

    @property
    def reward_model(self) -> RewardEnsemble:
        """The wrapper's local (CPU) copy of the ensemble."""
        return self._model

    @property
    def reward_model_version(self) -> int:
        """Version of the local copy (0: untrained)."""
        return self._model.version

    @property
    def trainings(self) -> int:
        """Reward-model trainings whose weights the wrapper has received."""
        return self._trainings

    def predict_rewards(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Normalised predicted rewards ``[B]`` of transformed observations ``[B, *obs]`` and
        encoded actions ``[B, action_dim]`` in one batch (what ``step`` computes one at a
        time)."""
        out = self._model.reward(torch.as_tensor(np.asarray(observations, np.float32)),
                                 torch.as_tensor(np.asarray(actions, np.float32)))
        return out.numpy()

    def _predict_one(self, observation: np.ndarray, action: np.ndarray) -> float:
        return self._step_reward(observation, action)

    # --------------------------------------------------------------------------- labels
    def pending_queries(self) -> list[PreferenceQuery]:
        """Queries waiting for an answer, oldest first (thread-safe)."""
        return self._call('pending')

    def submit_label(self, query_id: str, choice: Choice | int, labeler_id: str = 'human',
                     response_time_s: float = 0.0) -> bool:
        """Answer a query; returns once the label is on disk (True), or False when this exact
        answer was stored before (a retry). Thread-safe.

        Raises:
            InvalidLabelError: ``choice`` is not a :class:`Choice`.
            UnknownQueryError: no such query.
            ConflictingLabelError: the query already has a different answer.
        """
        label = PreferenceLabel(query_id=query_id, choice=choice, labeler_id=labeler_id,
                                response_time_s=response_time_s)
        return self._call('label', (label.query_id, int(label.choice), label.labeler_id,
                                    label.response_time_s))

    def save_preferences(self) -> dict[str, str]:
        """Write the preference store's ``train``/``val`` splits into ``log_dir`` now."""
        return self._call('save')

    # --------------------------------------------------------------------------- status
    @property
    def status(self) -> dict[str, Any]:
        """Latest worker figures (labels per split, trainings, accuracy...) and the wrapper's
        own counters; refreshed from the worker's updates."""
        self._poll_updates()
        return {**self._status, 'clips_sent': self.clips_sent,
                'clips_dropped': self.clips_dropped,
                'partial_clips_discarded': self._recorder.partial_discarded,
                'wrapper_trainings': self._trainings, 'env_steps_wrapper': self._env_steps,
                'using_predicted_reward': self.using_predicted_reward}

    def refresh_status(self) -> dict[str, Any]:
        """Ask the worker for its current figures (a round trip) and return :attr:`status`."""
        self._status.update(self._call('status'))
        return self.status

    @property
    def worker_pid(self) -> int | None:
        """Pid of the worker process (None without one)."""
        return self._worker_pid

    def wait_for(self, trainings: int = 0, labelled: int = 0, timeout_s: float = 60.0
                 ) -> dict[str, Any]:
        """Block until the wrapper holds ``trainings`` trainings and the worker reports
        ``labelled`` labels; returns the status.

        Raises:
            WorkerError: not reached within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self._poll_updates()
            if self._trainings >= trainings and self._status.get('labelled', 0) >= labelled:
                return self.status
            if time.monotonic() > deadline:
                raise WorkerError(f'waited {timeout_s} s for {trainings} trainings and '
                                  f'{labelled} labels; status {self.status}')
            time.sleep(0.02)

    # -------------------------------------------------------------------------- plumbing
    def _require_open(self) -> None:
        if self._closed:
            raise DrlhpError('the wrapper is closed')

    def _send(self, clip: Any) -> None:
        """Queue ``clip``; a dropped clip's finished-episode returns (which the teacher's
        thresholds need) ride along with the next clip that gets through."""
        if self._unsent_episodes:
            clip = clip._replace(
                finished_episodes=self._unsent_episodes + clip.finished_episodes)
        try:
            self._clips.put_nowait(clip)
            self.clips_sent += 1
            self._unsent_episodes = ()
        except queue.Full:
            self.clips_dropped += 1
            self._unsent_episodes = clip.finished_episodes

    def _poll_updates(self) -> None:
        """Take the worker's messages; swap in the newest weights."""
        if self._process is None:
            return
        newest = None
        while True:
            try:
                message = self._updates.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            kind = message[0]
            if kind == 'model':
                newest = message
                self._status.update(message[4])
            elif kind in ('status', 'stopped'):
                self._status.update(message[1])
            elif kind == 'error':
                self._status['worker_error'] = message[1]
                if not self._closed:
                    raise WorkerError(f'the DRLHP worker failed:\n{message[1]}')
        if newest is not None:
            _, _, trainings, weights, _ = newest
            load_numpy_weights(self._model, weights)
            self._model.eval()
            self._step_reward = StepReward(self._model)
            self._trainings = trainings
            self._has_model = True

    def _call(self, op: str, args: tuple = ()) -> Any:
        self._require_open()
        if self._process is None:
            raise DrlhpError(f"mode {self.config.mode!r} has no worker: '{op}' is unavailable")
        with self._call_lock:
            request_id = next(self._call_ids)
            try:
                self._conn.send((request_id, op, args))
            except OSError as err:
                raise WorkerError(f'the DRLHP worker is gone: {err}') from err
            deadline = time.monotonic() + self.config.reply_timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._conn.poll(remaining):
                    raise WorkerError(f"no answer to '{op}' within "
                                      f'{self.config.reply_timeout_s} s')
                try:
                    reply_id, kind, payload = self._conn.recv()
                except EOFError:
                    raise WorkerError('the DRLHP worker exited') from None
                if reply_id == request_id:  # older replies belong to timed-out calls
                    break
        if kind != 'ok':
            raise _remote_error(payload)
        return payload

    def _stop_worker(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError):
            self._conn.send((0, 'stop', ()))
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        while process.is_alive() and time.monotonic() < deadline:
            process.join(0.05)
            self._drain_updates()  # a worker flushing its queue must not wait on us
        if process.is_alive():
            process.terminate()
            process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join(2.0)
        self._drain_updates()
        for channel in (self._clips, self._updates):
            channel.cancel_join_thread()  # exiting never waits to flush a full queue
            channel.close()
        self._conn.close()
        self._process = None

    def _drain_updates(self) -> None:
        with contextlib.suppress(WorkerError):
            self._poll_updates()


def _remote_error(payload: tuple[str, str]) -> Exception:
    name, message = payload
    return _REMOTE_ERRORS.get(name, WorkerError)(message)


def _pid() -> int:
    return os.getpid()
