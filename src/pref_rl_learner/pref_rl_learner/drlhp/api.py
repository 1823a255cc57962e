"""What a user calls on a DRLHP env, single or vectorised: one mixin over the shared client.

:class:`~.wrapper.PreferenceRewardWrapper` (a gymnasium wrapper) and
:class:`~.vec_env.PreferenceRewardVecEnv` (a stable-baselines3 ``VecEnvWrapper``) inherit
:class:`PreferenceRewardApi`; every method acts on the :class:`~.client.WorkerClient` of the
env's ``log_dir``, which every env on that ``log_dir`` in the process shares (one worker,
store, budget and reward model).

Pickling and ``deepcopy``: the state of an env is its inner env and its constructor
arguments, never the worker's locks or pipes. A copy made in the same process attaches to the
same live client (it shares the worker); one unpickled where the original run is gone starts
a worker on the same ``log_dir``, whose durable preference store keeps every label; one
unpickled in another process while the run is still live there fails with the store's
``StoreError`` naming the open store, never with a lock error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pref_rl_learner.drlhp.client import (
    EnvTrack,
    WorkerClient,
    acquire_client,
    label_args,
    reward_input_shape,
)
from pref_rl_learner.drlhp.config import DrlhpConfig, DrlhpError
from pref_rl_learner.drlhp.segments import ActionEncoder, ObsTransform, identity_transform
from pref_rl_learner.reward import RewardEnsemble
from pref_rl_learner.types import Choice, PreferenceQuery


class PreferenceRewardApi:
    """Reward choice, labels, status and model access of a DRLHP env (see module doc)."""

    _client: WorkerClient
    _closed: bool
    config: DrlhpConfig
    log_dir: Path

    # ----------------------------------------------------------------------- lifecycle
    def _connect(self, config: DrlhpConfig, log_dir: str | Path,
                 obs_transform: ObsTransform | None, task: str, observation_space: Any,
                 action_space: Any, tracks: int) -> list[EnvTrack]:
        """Keep the constructor arguments (what a copy is made from), attach to the
        ``log_dir``'s client (starting its worker if none runs here) and open; ``tracks``
        new env tracks on it, one per env of the given (single-env) spaces."""
        self.config = config
        self.log_dir = Path(log_dir)
        self._transform = obs_transform
        self._task = task
        transform = obs_transform or identity_transform
        shape = reward_input_shape(config, transform, observation_space)
        self._client = acquire_client(config, self.log_dir, shape,
                                      ActionEncoder(action_space).dim, task)
        self._closed = False
        return [EnvTrack(self._client, transform, action_space) for _ in range(tracks)]

    def close(self) -> None:
        """Detach from the worker (the last env on the ``log_dir`` stops it, waiting at most
        ``shutdown_timeout_s``), then close the wrapped env(s). Idempotent; never blocks on
        full queues."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client.release()
        finally:
            self._close_inner()

    def _close_inner(self) -> None:
        """Close what the wrapper wraps (the env, or the VecEnv's sub-envs)."""
        raise NotImplementedError

    def _require_open(self) -> None:
        if self._closed:
            raise DrlhpError('the wrapper is closed')

    # ------------------------------------------------------------------- reward choice
    @property
    def using_predicted_reward(self) -> bool:
        """Whether ``step`` returns the predicted reward (else the env's true reward)."""
        return self._client.using_predicted_reward

    def switch_to_true_reward(self) -> None:
        """Return the env's own reward from now on (until switched back); every env on this
        ``log_dir`` shares the choice."""
        self._client.choice = 'true'

    def switch_to_predicted_reward(self) -> None:
        """Return the predicted reward from now on.

        Raises:
            DrlhpError: no reward model has been trained or loaded yet.
        """
        self._client.switch_to_predicted_reward()

    @property
    def reward_model(self) -> RewardEnsemble:
        """The local (CPU) copy of the ensemble."""
        return self._client.model

    @property
    def reward_model_version(self) -> int:
        """Version of the local copy (0: untrained)."""
        return self._client.model.version

    @property
    def trainings(self) -> int:
        """Reward-model trainings whose weights have arrived."""
        return self._client.trainings

    @property
    def reward_observation_shape(self) -> tuple[int, ...]:
        """Shape of what the reward model sees (``obs_transform``'s output)."""
        return self._client.observation_shape

    def predict_rewards(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Normalised predicted rewards ``[B]`` of transformed observations ``[B, *obs]`` and
        encoded actions ``[B, action_dim]`` in one batch (what ``step`` computes)."""
        return self._client.predict_rewards(observations, actions)

    # --------------------------------------------------------------------------- labels
    def pending_queries(self) -> list[PreferenceQuery]:
        """Queries waiting for an answer, oldest first (thread-safe)."""
        return self._client.call('pending')

    def submit_label(self, query_id: str, choice: Choice | int, labeler_id: str = 'human',
                     response_time_s: float = 0.0) -> bool:
        """Answer a query; returns once the label is on disk (True), or False when this exact
        answer was stored before (a retry). Thread-safe.

        Raises:
            InvalidLabelError: ``choice`` is not a :class:`Choice`.
            UnknownQueryError: no such query.
            ConflictingLabelError: the query already has a different answer.
        """
        return self._client.call('label', label_args(query_id, choice, labeler_id,
                                                     response_time_s))

    def save_preferences(self) -> dict[str, str]:
        """Write the preference store's ``train``/``val`` splits into ``log_dir`` now."""
        return self._client.call('save')

    # --------------------------------------------------------------------------- status
    @property
    def status(self) -> dict[str, Any]:
        """Latest worker figures and the agent side's counters: ``labelled`` (answers
        other than SKIP), ``answered`` (every answer, skips included),
        ``sessions`` held, ``sessions_due`` by the schedule and ``session_backlog`` (due, not
        yet held), ``clips_sent``/``clips_dropped``, trainings, accuracies..."""
        return self._client.status()

    def refresh_status(self) -> dict[str, Any]:
        """Ask the worker for its current figures (a round trip) and return :attr:`status`."""
        return self._client.refresh_status()

    def wait_for(self, trainings: int = 0, labelled: int = 0, timeout_s: float = 60.0
                 ) -> dict[str, Any]:
        """Block until ``trainings`` trainings have arrived and the worker reports
        ``labelled`` labels other than SKIP (asking it for fresh figures, so this works without
        stepping); returns the status.

        Raises:
            WorkerError: not reached within ``timeout_s``.
        """
        return self._client.wait_for(trainings, labelled, timeout_s)

    @property
    def clips_sent(self) -> int:
        """Clips handed to the worker's queue (every env on this ``log_dir``)."""
        return self._client.clips_sent

    @property
    def clips_dropped(self) -> int:
        """Clips thrown away because the queue to the worker was full."""
        return self._client.clips_dropped

    @property
    def worker_pid(self) -> int | None:
        """Pid of the worker process (None without one)."""
        return self._client.worker_pid
