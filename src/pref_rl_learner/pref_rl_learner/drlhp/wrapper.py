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

The agent side lives in :mod:`.client`, shared with the VecEnv form (:mod:`.vec_env`):
wrappers on one ``log_dir`` in one process (the sub-envs of a ``DummyVecEnv``, copies, an env
re-created from its gymnasium spec) share one worker, store, budget and reward model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium

from pref_rl_learner.drlhp.api import PreferenceRewardApi
from pref_rl_learner.drlhp.config import DrlhpConfig, DrlhpError
from pref_rl_learner.drlhp.segments import ObsTransform


class PreferenceRewardWrapper(PreferenceRewardApi, gymnasium.Wrapper,
                              gymnasium.utils.RecordConstructorArgs):
    """Turns ``env`` into an env rewarded by a reward model learned from preferences.

    Args:
        env: any gymnasium env (Box/Discrete/MultiBinary actions).
        config: workflow, segments, labels, reward model and worker settings.
        log_dir: preference store, ``train``/``val`` files and checkpoints go here; wrappers
            on one ``log_dir`` in this process share one worker (and must share ``config``).
        obs_transform: maps an observation to the reward model's input (default: the
            observation as an array); use :func:`~.segments.pixel_transform` for pixels. A
            picklable callable keeps the wrapper picklable.
        task: task name recorded in stored segments.

    Raises:
        ObservationTransformError: ``obs_transform`` fails on a sample observation, or gives
            channels-last pixels to the ``cnn`` encoder.
        CheckpointError: ``pretrained_checkpoint`` is missing, corrupt or does not fit.
        DrlhpError: inside a daemonic process (a ``SubprocVecEnv`` child: use
            :class:`~.vec_env.PreferenceRewardVecEnv` around it), or ``log_dir`` in use here
            with another config.
        WorkerError: the worker process did not start.
    """

    def __init__(self, env: gymnasium.Env, config: DrlhpConfig, log_dir: str | Path,
                 obs_transform: ObsTransform | None = None, task: str = '') -> None:
        gymnasium.utils.RecordConstructorArgs.__init__(
            self, config=config, log_dir=str(log_dir), obs_transform=obs_transform, task=task)
        gymnasium.Wrapper.__init__(self, env)
        self._attach(config, log_dir, obs_transform, task)

    def _attach(self, config: DrlhpConfig, log_dir: str | Path,
                obs_transform: ObsTransform | None, task: str) -> None:
        self._track, = self._connect(config, log_dir, obs_transform, task,
                                     self.env.observation_space, self.env.action_space, 1)

    # ----------------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset the env and start a new episode of clips."""
        self._require_open()
        observation, info = self.env.reset(seed=seed, options=options)
        self._track.reset(observation)
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env; the reward is r̂(o_t, a_t) once the predicted reward is in use."""
        self._require_open()
        track, client = self._track, self._client
        if track.last_obs is None:
            raise DrlhpError('call reset() before step()')
        observation, true_reward, terminated, truncated, info = self.env.step(action)
        next_obs = track.observe(observation)
        encoded = track.encode(action)
        predicted = client.using_predicted_reward
        reward = client.step_reward(track.last_obs, encoded) if predicted \
            else float(true_reward)
        info['true_reward'] = float(true_reward)
        info['using_predicted_reward'] = predicted
        track.record(encoded, next_obs, float(true_reward), bool(terminated), bool(truncated))
        client.after_steps()
        return observation, reward, terminated, truncated, info

    def _close_inner(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------ pickling, copies
    def __getstate__(self) -> dict[str, Any]:
        """The inner env and the constructor arguments (see :mod:`.api`); a copy is open
        even when the original was closed (it attaches anew)."""
        return {'env': self.env, 'config': self.config, 'log_dir': str(self.log_dir),
                'obs_transform': self._transform, 'task': self._task,
                '_saved_kwargs': self._saved_kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Attach to the ``log_dir``'s live worker here, or start one (see :mod:`.api`)."""
        gymnasium.Wrapper.__init__(self, state['env'])
        self._saved_kwargs = state['_saved_kwargs']
        self._attach(state['config'], state['log_dir'], state['obs_transform'], state['task'])
