"""The agent's side of the DRLHP worker, shared by every env wrapper on one ``log_dir``.

A :class:`WorkerClient` owns the worker process and its channels, the local CPU copy of the
reward ensemble, the choice of reward (true or predicted) and the run's counters. Envs attach
to it through an :class:`EnvTrack` each (one per gymnasium env, one per sub-env of a
``VecEnv``): the track turns that env's transitions into clips and hands them to the client.
So the single-env :class:`~.wrapper.PreferenceRewardWrapper` and the vectorised
:class:`~.vec_env.PreferenceRewardVecEnv` run the same code, and any number of them on one
``log_dir`` in one process (the sub-envs of a ``DummyVecEnv``, a deep copy, an env that
gymnasium's checker re-creates from its spec) share one worker, one preference store, one
label budget and one reward model: :func:`acquire_client` hands out the live client of a
``log_dir`` and the worker stops when the last holder releases it.

The worker is started by the process that acquires the client; a daemonic process (a
``SubprocVecEnv`` child) cannot start one, and :func:`acquire_client` says so and points to
the VecEnv form, which runs in the agent's process around the ``SubprocVecEnv``.
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
    Clip,
    ClipRecorder,
    ObsTransform,
    check_cnn_layout,
    checked_observation,
)
from pref_rl_learner.drlhp.step_reward import StepReward
from pref_rl_learner.drlhp.worker import WorkerSpec, worker_main
from pref_rl_learner.errors import InvalidLabelError
from pref_rl_learner.preferences import ConflictingLabelError, StoreError, UnknownQueryError
from pref_rl_learner.reward import RewardEnsemble
from pref_rl_learner.types import Choice, PreferenceLabel

STARTUP_TIMEOUT_S = 120.0
"""Longest wait for the worker to start (it imports torch and opens the store)."""
STATUS_REFRESH_S = 0.25
"""How often :meth:`WorkerClient.wait_for` asks the worker for fresh figures."""
_REMOTE_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (UnknownQueryError, ConflictingLabelError, StoreError,
                                  InvalidLabelError, DrlhpError, CheckpointError)}
_CLIENTS: dict[Path, WorkerClient] = {}
"""Live clients of this process by resolved ``log_dir``."""
_CLIENTS_LOCK = threading.Lock()


def acquire_client(config: DrlhpConfig, log_dir: str | Path, observation_shape: tuple[int, ...],
                   action_dim: int, task: str = '') -> WorkerClient:
    """The live client of ``log_dir`` in this process (one more holder), or a new one with
    its worker started. Release it with :meth:`WorkerClient.release`.

    Raises:
        DrlhpError: ``log_dir`` is in use here with another config or other shapes, or this
            is a daemonic process (a ``SubprocVecEnv`` child), which cannot start a worker.
        StoreError: the preference store is open in another process.
        WorkerError: the worker did not start.
    """
    key = Path(log_dir).resolve()
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is not None and not client.closed:
            if client.config != config:
                raise DrlhpError(f'{key} is in use by a DRLHP wrapper with another config; '
                                 'envs sharing a log_dir share one worker and one config')
            if (client.observation_shape, client.action_dim) != (observation_shape,
                                                                  action_dim):
                raise DrlhpError(
                    f'{key} is in use by a DRLHP wrapper for observations '
                    f'{client.observation_shape} and {client.action_dim}-D actions; this env '
                    f'gives {observation_shape} and {action_dim}-D')
            client.holders += 1
            return client
        if config.mode != 'pretrained' and multiprocessing.current_process().daemon:
            raise DrlhpError(
                'the DRLHP worker cannot start in a daemonic process (a SubprocVecEnv child): '
                'wrap the vectorised env instead, PreferenceRewardVecEnv(SubprocVecEnv(...), '
                'config, log_dir), which runs the worker in the agent process')
        client = WorkerClient(config, key, observation_shape, action_dim, task)
        _CLIENTS[key] = client
        return client


def reward_input_shape(config: DrlhpConfig, transform: ObsTransform,
                       space: gymnasium.Space) -> tuple[int, ...]:
    """Shape of what the reward model sees, from ``transform`` of a sample of ``space``.

    Raises:
        ObservationTransformError: the transform fails, or its output does not suit the
            configured encoder (``cnn`` needs ``[C, H, W]``; HWC is named as such).
    """
    keep = config.reward_model.encoder == 'cnn'
    shape = tuple(checked_observation(transform, space.sample(), None, keep).shape)
    if keep:
        check_cnn_layout(shape)
    return shape


class WorkerClient:
    """Worker process, local reward model and counters of one run (see the module docstring).

    Use :func:`acquire_client`; envs attach through :class:`EnvTrack`.
    """

    def __init__(self, config: DrlhpConfig, log_dir: Path, observation_shape: tuple[int, ...],
                 action_dim: int, task: str) -> None:
        self.config = config
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.observation_shape = observation_shape
        self.action_dim = action_dim
        self.keep_uint8 = config.reward_model.encoder == 'cnn'
        self.run_id = uuid.uuid4().hex[:12]
        self.holders = 1
        self.closed = False
        self.model = self._initial_model()
        self.step_reward = StepReward(self.model)
        self.has_model = bool(config.pretrained_checkpoint)
        self.trainings = 0
        self.choice = 'predicted' if config.mode == 'pretrained' else 'auto'
        self.env_steps = 0
        """Transitions of every attached env."""
        self.clips_sent = 0
        self.clips_dropped = 0
        self.tracks: list[EnvTrack] = []
        self.status_figures: dict[str, Any] = {}
        self._unsent_episodes: tuple[tuple[float, int], ...] = ()
        self._polled_at = -1
        self._call_lock = threading.Lock()
        self._call_ids = itertools.count(1)
        self.process: Any = None
        self.worker_pid: int | None = None
        if config.mode != 'pretrained':
            self._start_worker(task)

    # ------------------------------------------------------------------------- set-up
    def _initial_model(self) -> RewardEnsemble:
        config = self.config
        if config.pretrained_checkpoint:
            model, _ = load_reward_checkpoint(config.pretrained_checkpoint, 'cpu')
            if (model.observation_shape != self.observation_shape
                    or model.action_dim != self.action_dim):
                raise CheckpointError(
                    f'{config.pretrained_checkpoint}: reward model for observations '
                    f'{model.observation_shape} and {model.action_dim}-D actions, this env '
                    f'gives {self.observation_shape} and {self.action_dim}-D')
            return model
        local = dataclasses.replace(config.reward_model, device='cpu')
        return RewardEnsemble(self.observation_shape, self.action_dim, local,
                              seed=config.seed).eval()

    def _start_worker(self, task: str) -> None:
        config = self.config
        context = multiprocessing.get_context(config.start_method)
        self._conn, child_conn = context.Pipe(duplex=True)
        self._clips = context.Queue(maxsize=config.queue_size)
        self._updates = context.Queue()
        spec = WorkerSpec(config=config, observation_shape=self.observation_shape,
                          action_dim=self.action_dim, log_dir=str(self.log_dir),
                          parent_pid=os.getpid(), task=task)
        self.process = context.Process(
            target=worker_main, args=(spec, child_conn, self._clips, self._updates),
            name='drlhp-worker', daemon=True)
        self.process.start()
        self.worker_pid = self.process.pid
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
        self.status_figures = payload

    def release(self) -> None:
        """One holder less; the last one stops the worker (at most ``shutdown_timeout_s``)."""
        with _CLIENTS_LOCK:
            if self.closed:
                return
            self.holders -= 1
            if self.holders > 0:
                return
            self.closed = True
            if _CLIENTS.get(self.log_dir) is self:
                del _CLIENTS[self.log_dir]
        self._stop_worker()

    def require_open(self) -> None:
        """Raises DrlhpError once the client is closed."""
        if self.closed:
            raise DrlhpError('the wrapper is closed')

    # ------------------------------------------------------------------- reward choice
    @property
    def using_predicted_reward(self) -> bool:
        """Whether envs return the predicted reward (else the env's true reward)."""
        if self.choice != 'auto':
            return self.choice == 'predicted'
        return (self.config.trains and self.has_model
                and self.trainings >= self.config.n_initial_training_steps)

    def switch_to_predicted_reward(self) -> None:
        """Raises DrlhpError while there is no model."""
        self.poll()
        if not self.has_model:
            raise DrlhpError('no reward model yet: wait for a training or load a checkpoint')
        self.choice = 'predicted'

    def rewards(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Normalised r̂ ``[B]`` of transformed observations ``[B, *obs]`` and encoded
        actions ``[B, A]`` (numpy for MLP members, torch otherwise)."""
        return self.step_reward.batch(observations, actions)

    def predict_rewards(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Normalised r̂ ``[B]`` through the torch model (any batch, any encoder)."""
        out = self.model.reward(torch.as_tensor(np.asarray(observations)),
                                torch.as_tensor(np.asarray(actions, np.float32)))
        return out.numpy()

    # ---------------------------------------------------------------------------- clips
    def send(self, clip: Clip) -> None:
        """Queue ``clip``; a dropped clip's finished-episode returns (which the teacher's
        thresholds need) ride along with the next clip that gets through."""
        if self.process is None:
            return
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

    def after_steps(self) -> None:
        """Attached envs have stepped: take the worker's updates at each clip boundary."""
        boundary = self.env_steps // self.config.segment_length
        if boundary != self._polled_at:
            self._polled_at = boundary
            self.poll()

    # --------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """The worker's latest figures and the agent side's counters."""
        self.poll()
        tracks = self.tracks
        return {**self.status_figures, 'clips_sent': self.clips_sent,
                'clips_dropped': self.clips_dropped,
                'partial_clips_discarded': sum(t.recorder.partial_discarded for t in tracks),
                'episode_end_clips_aligned': sum(t.recorder.ends_aligned for t in tracks),
                'episode_end_clips_padded': sum(t.recorder.ends_padded for t in tracks),
                'wrapper_trainings': self.trainings, 'env_steps_wrapper': self.env_steps,
                'envs_attached': len(tracks), 'holders': self.holders,
                'using_predicted_reward': self.using_predicted_reward}

    def refresh_status(self) -> dict[str, Any]:
        """Ask the worker for its current figures (a round trip)."""
        self.status_figures.update(self.call('status'))
        return self.status()

    def wait_for(self, trainings: int = 0, labelled: int = 0, timeout_s: float = 60.0
                 ) -> dict[str, Any]:
        """Block until ``trainings`` trainings have arrived and the worker holds
        ``labelled`` labels other than SKIP, asking it for fresh figures meanwhile.

        Raises:
            WorkerError: not reached within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        asked = 0.0
        while True:
            self.poll()
            if self.trainings >= trainings and \
                    self.status_figures.get('labelled', 0) >= labelled:
                return self.status()
            now = time.monotonic()
            if now > deadline:
                raise WorkerError(f'waited {timeout_s} s for {trainings} trainings and '
                                  f'{labelled} labels; status {self.status()}')
            if self.process is not None and now - asked >= STATUS_REFRESH_S:
                asked = now
                self.status_figures.update(self.call('status'))
            time.sleep(0.02)

    # ------------------------------------------------------------------------ the worker
    def poll(self) -> None:
        """Take the worker's messages; swap in the newest weights."""
        if self.process is None:
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
                self.status_figures.update(message[4])
            elif kind in ('status', 'stopped'):
                self.status_figures.update(message[1])
            elif kind == 'error':
                self.status_figures['worker_error'] = message[1]
                if not self.closed:
                    raise WorkerError(f'the DRLHP worker failed:\n{message[1]}')
        if newest is not None:
            _, _, trainings, weights, _ = newest
            load_numpy_weights(self.model, weights)
            self.model.eval()
            self.step_reward = StepReward(self.model)
            self.trainings = trainings
            self.has_model = True

    def call(self, op: str, args: tuple = ()) -> Any:
        """A round trip to the worker's call thread (thread-safe)."""
        self.require_open()
        if self.process is None:
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
        process = self.process
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
        self.process = None

    def _drain_updates(self) -> None:
        with contextlib.suppress(WorkerError):
            self.poll()


class EnvTrack:
    """One env's episode as the reward model sees it: transformed observations, encoded
    actions, clips handed to the shared :class:`WorkerClient`."""

    def __init__(self, client: WorkerClient, transform: ObsTransform,
                 action_space: gymnasium.Space) -> None:
        self.client = client
        self.transform = transform
        self.encode = ActionEncoder(action_space)
        self.recorder = ClipRecorder(client.config.segment_length,
                                     f'{client.run_id}-{len(client.tracks)}')
        self.last_obs: np.ndarray | None = None
        self.episode_return = 0.0
        self.episode_length = 0
        client.tracks.append(self)

    def observe(self, observation: Any) -> np.ndarray:
        """The reward model's input for ``observation`` (checked)."""
        return checked_observation(self.transform, observation, self.client.observation_shape,
                                   self.client.keep_uint8)

    def reset(self, observation: Any) -> None:
        """A new episode starts at ``observation``."""
        self.last_obs = self.observe(observation)
        self.recorder.start_episode()
        self.episode_return, self.episode_length = 0.0, 0

    def record(self, encoded: np.ndarray, next_obs: np.ndarray, true_reward: float,
               terminated: bool, truncated: bool) -> None:
        """One transition from :attr:`last_obs`; closes and sends clips."""
        client = self.client
        client.env_steps += 1
        self.episode_return += true_reward
        self.episode_length += 1
        if terminated or truncated:
            self.recorder.end_episode(self.episode_return, self.episode_length)
        if client.config.collects:
            clip = self.recorder.add(self.last_obs, encoded, next_obs, true_reward,
                                     client.env_steps, terminated, truncated)
            if clip is not None:
                client.send(clip)
        self.last_obs = next_obs


def label_args(query_id: str, choice: Choice | int, labeler_id: str,
               response_time_s: float) -> tuple[str, int, str, float]:
    """A label checked here (typed errors) and flattened for the worker call."""
    label = PreferenceLabel(query_id=query_id, choice=choice, labeler_id=labeler_id,
                            response_time_s=response_time_s)
    return label.query_id, int(label.choice), label.labeler_id, label.response_time_s


def _remote_error(payload: tuple[str, str]) -> Exception:
    name, message = payload
    return _REMOTE_ERRORS.get(name, WorkerError)(message)
