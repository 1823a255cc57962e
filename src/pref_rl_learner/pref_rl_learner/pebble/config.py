"""Configuration of one training run (``pref-rl train``): one YAML file maps onto it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pref_rl_learner.config import ConfigError, load_yaml_config
from pref_rl_learner.fewshot.adapt import FewShotConfig
from pref_rl_learner.pebble.evaluation import DEFAULT_EVAL_EPISODES
from pref_rl_learner.pebble.tasks import DEFAULT_GOAL, PERSON_GOAL
from pref_rl_learner.preferences.store import PreferenceStoreConfig
from pref_rl_learner.query_selection import QuerySelectionConfig
from pref_rl_learner.reward.ensemble import RewardModelConfig
from pref_rl_learner.reward.training import RewardTrainingConfig
from pref_rl_learner.sac.agent import SACConfig
from pref_rl_learner.schedule import FeedbackScheduleConfig
from pref_rl_learner.teacher import TEACHER_PRESETS, TeacherConfig

ALGORITHMS = ('pebble', 'init', 'fewshot', 'sac')
PRETRAINED_ALGORITHMS = ('init', 'fewshot')
"""Algorithms that start from ``pretrained_reward``."""


@dataclass(frozen=True)
class TrainConfig:
    """A PEBBLE (or FewShotPEBBLE, or plain SAC on the true reward) run on one task with a
    scripted teacher."""

    task: str = 'point_mass'
    """Task name (``pref-rl train --list-tasks``): point_mass, reacher or a MetaWorld v3 name."""
    goal: str = DEFAULT_GOAL
    """The run's one target, which the learner never observes: ``eval:i`` (held-out target
    ``i``: what a few-shot run learns), ``train:i`` or coordinates ``'x,y[,z]'``. The scripted
    teacher and the evaluation judge against it. ``person`` (a real arm's ROS session only):
    the target is in the labelling person's head, so nothing is evaluated."""
    algorithm: str = 'pebble'
    """``pebble`` (reward learned from preferences, from scratch), ``init`` (the same, the
    reward ensemble starting from ``pretrained_reward``), ``fewshot`` (FewShotPEBBLE: every
    session resets the ensemble to the meta-initialisation in ``pretrained_reward`` and adapts
    it, see ``fewshot``) or ``sac`` (true reward: the oracle upper bound)."""
    pretrained_reward: str = ''
    """Reward checkpoint the ``init`` and ``fewshot`` arms start from: ``pref-rl pretrain``'s
    ``best_model.pt`` (``init`` also takes a ``pref-rl reward-train`` output). Its
    architecture must equal ``reward_model``. Read when the run starts (a resumed run
    restores the weights from its own checkpoint)."""
    seed: int = 0
    """Seeds every random generator of the run (env, networks, sampling, teacher, split)."""
    total_steps: int = 100_000
    """Environment steps of the run."""
    seed_steps: int = 1000
    """Uniformly random actions before learning starts (PEBBLE: 1000)."""
    unsupervised_steps: int = 9000
    """Steps of state-entropy pre-training after the seed steps (PEBBLE: 9000; 0 disables it,
    as in the few-shot paper's PEBBLE baseline)."""
    entropy_k: int = 5
    """k of the k-nearest-neighbour state-entropy estimate."""
    reset_updates: int = 100
    """Gradient updates right after the critic reset that ends pre-training (B-Pref: 100)."""
    replay_capacity: int = 1_000_000
    """Replay buffer size in transitions."""
    segment_length: int = 0
    """Steps per queried segment; 0 takes the task's default (10 goal tasks, 25 MetaWorld)."""
    teacher_preset: str = 'oracle'
    """Scripted teacher: oracle, mistake, noisy, skip, myopic or equal (B-Pref)."""
    teacher: TeacherConfig | None = None
    """Explicit teacher parameters; when given they replace ``teacher_preset``."""
    eval_interval_steps: int = 5000
    """Environment steps between evaluations on the target."""
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    """Deterministic evaluation episodes on the target, each from its own random start."""
    checkpoint_interval_steps: int = 10_000
    """A checkpoint is written at the first episode end after every this many steps."""
    tensorboard: bool = True
    """Also write TensorBoard event files under ``<path>/tb``."""
    sac: SACConfig = field(default_factory=SACConfig)
    """Soft actor-critic."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Reward ensemble architecture."""
    reward_training: RewardTrainingConfig = field(default_factory=RewardTrainingConfig)
    """Reward ensemble training (for ``fewshot``: the fallback when adaptation fails)."""
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    """Adaptation of the ``fewshot`` arm (ignored by the other algorithms)."""
    query: QuerySelectionConfig = field(default_factory=QuerySelectionConfig)
    """Query selection."""
    schedule: FeedbackScheduleConfig = field(default_factory=FeedbackScheduleConfig)
    """Feedback sessions and budget."""
    store: PreferenceStoreConfig = field(default_factory=PreferenceStoreConfig)
    """Preference store (validation share)."""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f'algorithm {self.algorithm!r} is not one of {ALGORITHMS}')
        if self.algorithm in PRETRAINED_ALGORITHMS and not self.pretrained_reward:
            raise ConfigError(f'algorithm {self.algorithm} needs pretrained_reward: the path '
                              "of a reward checkpoint (`pref-rl pretrain`'s best_model.pt)")
        if self.teacher is None and self.teacher_preset not in TEACHER_PRESETS:
            raise ConfigError(f'teacher_preset {self.teacher_preset!r} is not one of '
                              f'{", ".join(TEACHER_PRESETS)}')
        for name in ('total_steps', 'eval_interval_steps', 'checkpoint_interval_steps',
                     'replay_capacity', 'entropy_k', 'eval_episodes'):
            if getattr(self, name) < 1:
                raise ConfigError(f'{name} must be >= 1, got {getattr(self, name)}')
        for name in ('seed_steps', 'unsupervised_steps', 'reset_updates', 'segment_length'):
            if getattr(self, name) < 0:
                raise ConfigError(f'{name} must be >= 0, got {getattr(self, name)}')
        if self.seed_steps < self.sac.batch_size and self.seed_steps > 0:
            raise ConfigError(f'seed_steps ({self.seed_steps}) must be at least sac.batch_size '
                              f'({self.sac.batch_size}) so the first update has a full batch')

    @property
    def target_known(self) -> bool:
        """Whether the run's target is given (not ``person``): evaluation needs it."""
        return self.goal.strip() != PERSON_GOAL

    @property
    def teacher_config(self) -> TeacherConfig:
        """The teacher actually used."""
        return self.teacher if self.teacher is not None else TEACHER_PRESETS[self.teacher_preset]

    @property
    def teacher_name(self) -> str:
        """Labeler id recorded with every scripted label."""
        return 'teacher/custom' if self.teacher is not None else f'teacher/{self.teacher_preset}'

    @property
    def learning_starts(self) -> int:
        """First step at which preferences are asked (end of seed + pre-training)."""
        return self.seed_steps + self.unsupervised_steps


def to_mapping(config: Any) -> dict[str, Any]:
    """Nested plain dict of a config dataclass (what :func:`load_config` reads back)."""
    return dataclasses.asdict(config)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config file, apply dotted ``overrides`` and build a :class:`TrainConfig`.

    Raises:
        ConfigError: unreadable YAML, an unknown key (named, with its path) or a bad value.
    """
    return load_yaml_config(TrainConfig, path, overrides)
