"""The DRLHP reward for a stable-baselines3 ``VecEnv``: one worker for every sub-env.

:class:`PreferenceRewardVecEnv` wraps a ``VecEnv`` (``DummyVecEnv``, ``SubprocVecEnv``, or
any other) the way ``imitation``'s reward wrappers do: it runs in the agent's process, so the
worker process is its child there and never a daemonic ``SubprocVecEnv`` child's. Every
sub-env gets an :class:`~.client.EnvTrack` on one shared :class:`~.client.WorkerClient`: one
preference store, one label budget, one reward model, clips from every sub-env in one pool
(sessions are timed in the sum of all sub-envs' steps), and the reward of the whole batch
computed in one call. The user API is the single-env wrapper's (:mod:`.api`).

SB3 resets a finished sub-env itself and hands its last observation over in
``infos[i]['terminal_observation']``; that observation ends the sub-env's last clip, and
``infos[i]['TimeLimit.truncated']`` tells truncation from termination.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from pref_rl_learner.drlhp.api import PreferenceRewardApi
from pref_rl_learner.drlhp.config import DrlhpConfig, DrlhpError
from pref_rl_learner.drlhp.segments import ObsTransform


class PreferenceRewardVecEnv(PreferenceRewardApi, VecEnvWrapper):
    """Turns every sub-env of ``venv`` into one rewarded by the shared learned reward.

    Args:
        venv: the vectorised env (observations batched as SB3 does, dicts included).
        config: workflow, segments, labels, reward model and worker settings.
        log_dir: preference store, ``train``/``val`` files and checkpoints.
        obs_transform: maps one sub-env's observation to the reward model's input.
        task: task name recorded in stored segments.

    Raises:
        ObservationTransformError, CheckpointError, DrlhpError, WorkerError: as
        :class:`~.wrapper.PreferenceRewardWrapper`.
    """

    def __init__(self, venv: VecEnv, config: DrlhpConfig, log_dir: str | Path,
                 obs_transform: ObsTransform | None = None, task: str = '') -> None:
        VecEnvWrapper.__init__(self, venv)
        self._attach(config, log_dir, obs_transform, task)

    def _attach(self, config: DrlhpConfig, log_dir: str | Path,
                obs_transform: ObsTransform | None, task: str) -> None:
        self._tracks = self._connect(config, log_dir, obs_transform, task,
                                     self.observation_space, self.action_space, self.num_envs)
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------------ VecEnv
    def reset(self) -> Any:
        """Reset every sub-env and start new episodes of clips."""
        self._require_open()
        observations = self.venv.reset()
        for i, track in enumerate(self._tracks):
            track.reset(_index(observations, i))
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions to the sub-envs."""
        self._require_open()
        if self._tracks[0].last_obs is None:
            raise DrlhpError('call reset() before step()')
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Collect the sub-envs' steps; rewards r̂(o_t, a_t) for the batch at once once the
        predicted reward is in use."""
        observations, true_rewards, dones, infos = self.venv.step_wait()
        client, tracks = self._client, self._tracks
        encoded = np.stack([t.encode(a) for t, a in zip(tracks, self._actions, strict=True)])
        next_obs = [t.observe(infos[i]['terminal_observation']
                              if dones[i] and 'terminal_observation' in infos[i]
                              else _index(observations, i)) for i, t in enumerate(tracks)]
        predicted = client.using_predicted_reward
        if predicted:
            rewards = client.rewards(np.stack([t.last_obs for t in tracks]), encoded)
        else:
            rewards = true_rewards
        for i, track in enumerate(tracks):
            true_reward = float(true_rewards[i])
            infos[i]['true_reward'] = true_reward
            infos[i]['using_predicted_reward'] = predicted
            truncated = bool(dones[i]) and bool(infos[i].get('TimeLimit.truncated', False))
            track.record(encoded[i], next_obs[i], true_reward,
                         bool(dones[i]) and not truncated, truncated)
            if dones[i]:  # SB3 has reset the sub-env: observations[i] starts the next one
                track.reset(_index(observations, i))
        client.after_steps()
        return observations, np.asarray(rewards, np.float32), dones, infos

    def _close_inner(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ pickling, copies
    def __getstate__(self) -> dict[str, Any]:
        """The inner VecEnv and the constructor arguments (see :mod:`.api`)."""
        return {'venv': self.venv, 'config': self.config, 'log_dir': str(self.log_dir),
                'obs_transform': self._transform, 'task': self._task}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Attach to the ``log_dir``'s live worker here, or start one (see :mod:`.api`)."""
        VecEnvWrapper.__init__(self, state['venv'])
        self._attach(state['config'], state['log_dir'], state['obs_transform'], state['task'])


def _index(observations: Any, i: int) -> Any:
    """Sub-env ``i``'s observation of a batch (dict observations batched per key)."""
    if isinstance(observations, dict):
        return {key: value[i] for key, value in observations.items()}
    if isinstance(observations, tuple):
        return tuple(value[i] for value in observations)
    return observations[i]
