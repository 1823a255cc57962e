"""PEBBLE: SAC + unsupervised pre-training + preference-learned reward with relabelling.

Lee, Smith, Abbeel, "PEBBLE: Feedback-Efficient Interactive Reinforcement Learning via
Relabeling Experience and Unsupervised Pre-training", ICML 2021
(https://arxiv.org/abs/2106.05091), Algorithm 2:

1. ``seed_steps`` uniformly random actions;
2. ``unsupervised_steps`` of SAC on the k-NN state-entropy reward (exploration);
3. then the first feedback session, reward learning, relabelling of the whole replay buffer
   with the learned reward, and a reset of the critics (their values belong to the intrinsic
   reward), followed by ``reset_updates`` extra updates;
4. afterwards SAC on the learned reward, with a feedback session whenever the schedule says
   so and budget is left, each followed by reward training and relabelling.

``algorithm: sac`` runs the same loop on the true reward (no queries): the upper bound.
``init`` and ``fewshot`` run exactly the PEBBLE loop; only the reward ensemble's starting point
and its trainer differ (:func:`pref_rl_learner.fewshot.arms.make_reward_learning`).
The run is deterministic for a seed, and resumes from a checkpoint as if never stopped.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.fewshot.arms import make_reward_learning
from pref_rl_learner.pebble.config import TrainConfig
from pref_rl_learner.pebble.evaluation import evaluate_policy
from pref_rl_learner.pebble.feedback import FeedbackSession
from pref_rl_learner.pebble.state import RunState, load_run_state, save_run_state
from pref_rl_learner.pebble.tasks import task_module
from pref_rl_learner.preferences.store import PreferenceStore
from pref_rl_learner.run_log import RunLog
from pref_rl_learner.sac.agent import SAC
from pref_rl_learner.sac.replay import ReplayBuffer
from pref_rl_learner.schedule import FeedbackBudget, FeedbackSchedule
from pref_rl_learner.state_entropy import StateEntropyReward
from pref_rl_learner.teacher import ScriptedTeacher

CHECKPOINT_NAME = 'checkpoint.pt'


@dataclass(frozen=True)
class RunSummary:
    """What a finished (or paused) run reports."""

    step: int
    """Environment steps done."""
    queries: int
    """Queries asked (skipped ones included)."""
    eval_success: float
    """Success rate on the held-out goals at the last evaluation (NaN if none)."""
    eval_return: float
    """Mean true return on the held-out goals at the last evaluation (NaN if none)."""
    seconds: float
    """Wall-clock time of this invocation."""


class PebbleTrainer:
    """One run: the env, the agent, the reward ensemble, the teacher and the logs."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tasks = task_module()
        self.spec = tasks.task_spec(config.task)
        self.segment_length = config.segment_length or self.spec.segment_length
        _seed_everything(config.seed)
        self.env = tasks.make_task(config.task, goals='train', seed=config.seed)
        self.eval_env = tasks.make_task(config.task, goals='eval', seed=config.seed + 10_000)
        obs_shape = tuple(self.env.observation_space.shape)
        act_dim = int(self.env.action_space.shape[0])
        obs_dim = int(np.prod(obs_shape))
        self.agent = SAC(obs_dim, act_dim, config.sac, seed=config.seed)
        self.buffer = ReplayBuffer(obs_shape, act_dim, config.replay_capacity,
                                   device=self.agent.device)
        checkpoint = self.run_dir / CHECKPOINT_NAME
        # init/fewshot: the pretrained weights, unless the run's own checkpoint restores them.
        self.reward_model, self.reward_trainer = make_reward_learning(
            config, obs_shape, act_dim, load=not (resume and checkpoint.exists()))
        self.teacher = ScriptedTeacher(config.teacher_config,
                                       np.random.default_rng([config.seed, 1]))
        self.schedule = FeedbackSchedule(dataclasses.replace(
            config.schedule, first_session_step=max(config.schedule.first_session_step,
                                                    config.learning_starts)))
        self.budget = FeedbackBudget(config.schedule.total_budget)
        self.entropy = StateEntropyReward(k=config.entropy_k)
        self.store = PreferenceStore.open(self.run_dir / 'preferences', config.store)
        self.rng = np.random.default_rng([config.seed, 2])
        self.sample_generator = torch.Generator().manual_seed(config.seed)
        self.feedback = FeedbackSession(self)
        self.state = RunState()
        self._obs: np.ndarray | None = None
        self._stop_requested = False
        if resume:
            try:
                load_run_state(self, checkpoint)
            except BaseException:
                self.store.close()  # release the store's lock before reporting the error
                raise
        self.log = RunLog(self.run_dir, tensorboard=config.tensorboard,
                          resume_step=self.state.step if resume else None)

    # ----------------------------------------------------------------------------- the loop

    def run(self, stop_at_step: int | None = None,
            progress: Callable[[int, dict[str, float]], None] | None = None) -> RunSummary:
        """Train until ``total_steps`` (or pause at the first checkpoint at/after
        ``stop_at_step``); returns the summary. Writes a final checkpoint either way."""
        cfg, st = self.config, self.state
        started = time.monotonic()
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=cfg.seed if st.step == 0 else None)
        if st.step == 0 and st.last_eval_step < 0:
            self._evaluate()
        while st.step < cfg.total_steps:
            self._env_step()
            self._learn()
            if st.step % cfg.eval_interval_steps == 0 or st.step == cfg.total_steps:
                self._evaluate()
            if progress is not None:
                progress(st.step, self._progress_figures())
            if self._obs is None:  # an episode just ended: the only place we checkpoint
                if st.step - st.last_checkpoint_step >= cfg.checkpoint_interval_steps:
                    self.save_checkpoint()
                if self._stop_requested or (stop_at_step is not None
                                            and st.step >= stop_at_step):
                    if st.last_checkpoint_step != st.step:
                        self.save_checkpoint()
                    break
                self._obs, _ = self.env.reset()
        else:
            self.save_checkpoint()
        self.close()
        return RunSummary(st.step, self.budget.asked, st.last_eval_success,
                          st.last_eval_return, time.monotonic() - started)

    def close(self) -> None:
        """Close the logs and release the preference store (it holds a lock)."""
        self.log.close()
        self.store.close()

    def request_stop(self) -> None:
        """Pause at the next episode end, after writing a checkpoint (safe from a signal)."""
        self._stop_requested = True

    def _env_step(self) -> None:
        cfg, st = self.config, self.state
        obs = self._obs
        if st.step < cfg.seed_steps:
            action = self.rng.uniform(-1.0, 1.0, self.env.action_space.shape).astype(np.float32)
        else:
            action = self.agent.act(obs.reshape(-1))
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.buffer.add(obs, action, float(reward), next_obs, terminated, truncated)
        if self.reward_model.version > 0:
            self._label_latest()
        st.step += 1
        st.episode_return += float(reward)
        st.episode_length += 1
        st.episode_success = st.episode_success or bool(info.get('success', False))
        if terminated or truncated:
            self.teacher.observe_episode_return(st.episode_return, st.episode_length)
            self.log.write('train', st.step, {
                'episode': st.episode, 'return': st.episode_return,
                'success': float(st.episode_success), 'length': st.episode_length})
            st.episode += 1
            st.episode_return, st.episode_length, st.episode_success = 0.0, 0, False
            self._obs = None
        else:
            self._obs = next_obs

    def _label_latest(self) -> None:
        """Give the transition just added the current learned reward (PEBBLE labels each new
        transition with r̂ at insertion; the whole buffer is relabelled after training)."""
        self.buffer.relabel(self.reward_model.reward, start=len(self.buffer) - 1)

    def _learn(self) -> None:
        cfg, st = self.config, self.state
        if st.step <= cfg.seed_steps:
            return
        if cfg.algorithm == 'sac':
            self.agent.update(self.buffer.sample(cfg.sac.batch_size, self.sample_generator))
            return
        if st.step <= cfg.learning_starts:
            self._unsupervised_update()
            return
        first = st.step == cfg.learning_starts + 1
        if first or (self.schedule.is_session_due(st.step) and self.budget.remaining() > 0):
            self.feedback.run()
            if first and cfg.unsupervised_steps > 0:
                # The critics were fitted to the intrinsic reward: start them afresh.
                self.agent.reset_critic()
                for _ in range(cfg.reset_updates):
                    self.agent.update(self.buffer.sample(cfg.sac.batch_size,
                                                         self.sample_generator))
        if self.reward_model.version > 0:
            self.agent.update(self.buffer.sample(cfg.sac.batch_size, self.sample_generator))

    def _unsupervised_update(self) -> None:
        """SAC update on the normalised k-NN state-entropy reward of s'."""
        batch = self.buffer.sample(self.config.sac.batch_size, self.sample_generator)
        visited = self.buffer.observations_view()
        intrinsic = self.entropy(batch.next_observations, visited)
        self.agent.update(batch._replace(rewards=intrinsic.to(batch.rewards.dtype)))

    # ------------------------------------------------------------------------------ events

    def _evaluate(self) -> None:
        st = self.state
        result = evaluate_policy(self.agent, self.eval_env, self.config.eval_episodes,
                                 seed=self.config.seed)
        st.last_eval_step = st.step
        st.last_eval_success, st.last_eval_return = result.success_rate, result.mean_return
        self.log.write('eval', st.step, {
            'success_rate': result.success_rate, 'return': result.mean_return,
            'queries': self.budget.asked, 'labelled': self.budget.labelled,
            'skipped': self.budget.skipped, 'episodes': result.episodes})

    def _progress_figures(self) -> dict[str, float]:
        st = self.state
        return {'queries': self.budget.asked, 'eval_success': st.last_eval_success,
                'eval_return': st.last_eval_return}

    def save_checkpoint(self) -> None:
        """Write ``<run>/checkpoint.pt`` atomically (only at an episode boundary)."""
        self.state.last_checkpoint_step = self.state.step
        save_run_state(self, self.run_dir / CHECKPOINT_NAME)

    def pairs_already_labelled(self) -> SegmentPairs | None:
        """Every trained-on pair (for k-center's distance to what was already asked)."""
        train, val = self.store.preference_batches()
        if train.num_pairs + val.num_pairs == 0:
            return None
        return SegmentPairs(*(np.concatenate([a, b]) for a, b in
                              zip(train[:4], val[:4], strict=True)))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
