"""``pref-rl train``: PEBBLE (or FewShotPEBBLE, or SAC on the true reward) in one process.

A loop over env steps around the run's
:class:`~pref_rl_learner.pebble.learning.PebbleLearning`, which makes every learning
decision (Lee, Smith, Abbeel 2021, https://arxiv.org/abs/2106.05091, Algorithm 2): each step
adds the transition, holds a feedback session when the schedule says so (the scripted teacher
answers at once, :mod:`~pref_rl_learner.pebble.feedback`) and does one SAC update of the
phase's kind. The run is deterministic for a seed, and resumes from a checkpoint as if never
stopped.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pref_rl_learner.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_newest_usable,
    save_checkpoint_keeping_previous,
)
from pref_rl_learner.config import ConfigError
from pref_rl_learner.durable import remove_stale_temp_files
from pref_rl_learner.pebble.config import TrainConfig, to_mapping
from pref_rl_learner.pebble.evaluation import evaluate_policy
from pref_rl_learner.pebble.feedback import FeedbackSession
from pref_rl_learner.pebble.learning import PebbleLearning
from pref_rl_learner.pebble.state import (
    FORMAT,
    RunState,
    global_rng_state,
    set_global_rng_state,
)
from pref_rl_learner.pebble.tasks import task_suite
from pref_rl_learner.preferences.store import PreferenceStore
from pref_rl_learner.run_log import RunLog
from pref_rl_learner.sac.agent import SAC
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
    """Success rate on the run's target at the last evaluation (NaN if none)."""
    eval_return: float
    """Mean true return on the run's target at the last evaluation (NaN if none)."""
    seconds: float
    """Wall-clock time of this invocation."""


class PebbleTrainer:
    """One run: the env, the teacher, the logs, and the run's :class:`PebbleLearning`.

    It holds only what the loop over env steps needs on top of the learning component: the
    envs, the scripted teacher, the preference store, the episode counters and the logs.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tasks = task_suite()
        self.spec = tasks.task_spec(config.task)
        self.segment_length = config.segment_length or self.spec.segment_length
        _seed_everything(config.seed)
        if not config.target_known:
            raise ConfigError(f'goal {config.goal!r}: pref-rl train runs a scripted teacher, '
                              'which needs the target (eval:i, train:i or coordinates)')
        self.env = tasks.make_task(config.task, goal=config.goal, seed=config.seed)
        self.eval_env = tasks.make_task(config.task, goal=config.goal, seed=config.seed + 10_000)
        checkpoint = self.run_dir / CHECKPOINT_NAME
        # init/fewshot: the pretrained weights, unless the run's own checkpoint restores them.
        self.learning = PebbleLearning(
            config, tuple(self.env.observation_space.shape),
            int(self.env.action_space.shape[0]), load_prior=not (resume and checkpoint.exists()))
        self.teacher = ScriptedTeacher(config.teacher_config,
                                       np.random.default_rng([config.seed, 1]))
        self.action_rng = np.random.default_rng([config.seed, 3])
        self.store = PreferenceStore.open(self.run_dir / 'preferences',
                                          self.learning.store_config())
        self.state = RunState()
        self._obs: np.ndarray | None = None
        self._stop_requested = False
        self.notes: list[str] = [
            f'removed partial checkpoint file {p.name} of a killed save'
            for p in remove_stale_temp_files(self.run_dir)]
        """What the start did that a user should hear of (the CLI prints it)."""
        if resume:
            try:
                note = load_newest_usable(checkpoint, lambda path: self.load_state_dict(
                    load_checkpoint(path, map_location=self.learning.agent.device), path))
                if note:
                    self.notes.append(note)
            except BaseException:
                self.store.close()  # release the store's lock before reporting the error
                raise
        self.log = RunLog(self.run_dir, tensorboard=config.tensorboard,
                          resume_step=self.state.step if resume else None)
        self.feedback = FeedbackSession(config, self.learning, self.store, self.teacher,
                                        self.segment_length, self.log)

    @property
    def agent(self) -> SAC:
        """The SAC agent (the learning component's)."""
        return self.learning.agent

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
                self.learning.verify_agent()  # undo updates that produced non-finite values
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
        return RunSummary(st.step, self.learning.budget.asked, st.last_eval_success,
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
            action = self.action_rng.uniform(-1.0, 1.0,
                                             self.env.action_space.shape).astype(np.float32)
        else:
            action = self.agent.act(obs.reshape(-1))
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.learning.add(obs, action, float(reward), next_obs, terminated, truncated)
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

    def _learn(self) -> None:
        """A feedback session when one is due, then one SAC update of the phase's kind."""
        step = self.state.step
        if self.learning.session_due(step):
            self.feedback.run(step)
        self.learning.update(self.learning.update_kind(step))

    # ------------------------------------------------------------------------------ events

    def _evaluate(self) -> None:
        st, budget = self.state, self.learning.budget
        result = evaluate_policy(self.agent, self.eval_env, self.config.eval_episodes,
                                 seed=self.config.seed)
        st.last_eval_step = st.step
        st.last_eval_success, st.last_eval_return = result.success_rate, result.mean_return
        self.log.write('eval', st.step, {
            'success_rate': result.success_rate, 'return': result.mean_return,
            'queries': budget.asked, 'labelled': budget.labelled,
            'skipped': budget.skipped, 'episodes': result.episodes})

    def _progress_figures(self) -> dict[str, float]:
        st = self.state
        return {'queries': self.learning.budget.asked, 'eval_success': st.last_eval_success,
                'eval_return': st.last_eval_return}

    # ------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        """Write ``<run>/checkpoint.pt`` atomically (only at an episode boundary)."""
        self.learning.verify_agent()  # never save a non-finite state: the last finite one
        self.state.last_checkpoint_step = self.state.step
        save_checkpoint_keeping_previous(self.run_dir / CHECKPOINT_NAME, self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """The whole run: the learning component, the teacher, the counters and every
        generator (Python, NumPy, torch, the env's)."""
        return {'format': FORMAT, 'config': to_mapping(self.config),
                'run': dataclasses.asdict(self.state),
                'learning': self.learning.state_dict(),
                'teacher': self.teacher.state_dict(),
                'rng': {**global_rng_state(), 'action': self.action_rng.bit_generator.state,
                        'env': self.env.unwrapped.np_random.bit_generator.state}}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """Restore :meth:`state_dict` output read from ``path``.

        Raises:
            CheckpointError: of another format, written for a different config, or
                incomplete.
        """
        if state.get('format') != FORMAT:
            raise CheckpointError(f'{path}: checkpoint format {state.get("format")!r}, '
                                  f'this version reads {FORMAT}')
        if state.get('config') != to_mapping(self.config):
            raise CheckpointError(f'{path}: written for a different config; resume with the '
                                  "run's own config.yaml")
        try:
            self.state = RunState(**state['run'])
            self.learning.load_state_dict(state['learning'])
            self.teacher.load_state_dict(state['teacher'])
            rng = state['rng']
            set_global_rng_state(rng)
            self.action_rng.bit_generator.state = rng['action']
            env_rng = np.random.Generator(np.random.PCG64())
            env_rng.bit_generator.state = rng['env']
            self.env.unwrapped.np_random = env_rng
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f'{path}: incomplete or inconsistent checkpoint: '
                                  f'{err}') from err


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
