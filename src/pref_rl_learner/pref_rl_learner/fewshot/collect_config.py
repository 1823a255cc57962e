"""Settings of ``pref-rl collect``: one frozen dataclass, with per-family defaults.

The defaults follow the few-shot preference-learning datasets (Hejna & Sadigh 2022) where
they are affordable: MetaWorld and Panda push use the paper's episode counts; point mass and
reacher record 100 episodes (5,000 steps) per goal instead of 25,000 random steps, mixing
noisy experts in so that segments span good and bad behaviour for every goal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pref_rl_learner.fewshot.rollout import NOISE_TYPES, CollectError

FAMILIES = ('point_mass', 'reacher', 'metaworld', 'panda_reach', 'panda_push')
"""What ``pref-rl collect`` collects: a goal task (every training goal a task) or MetaWorld
(every environment x variation a task)."""

_GOAL_TASK = {'expert_episodes': 40, 'cross_episodes': 40, 'random_episodes': 20,
              'epsilon': (0.1, 0.3, 0.6, 1.0)}
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    'point_mass': _GOAL_TASK,
    'reacher': _GOAL_TASK,
    # The paper's MetaWorld recipe: tasks-per-env=25 cross-env-ep=10 within-env-ep=25
    # expert-ep=15 random-ep=2 epsilon=0.1 noise-type=gaussian.
    'metaworld': {'tasks_per_env': 25, 'expert_episodes': 15,
                  'cross_episodes': 10, 'within_episodes': 25, 'random_episodes': 2,
                  'epsilon': (0.1,)},
    # Paper: noise 0.8 (10k steps x 5 targets); here noise levels up to 0.8, 16 targets.
    'panda_reach': {'expert_episodes': 10, 'cross_episodes': 4, 'random_episodes': 2,
                    'epsilon': (0.2, 0.5, 0.8)},
    # Paper: random-ep 8, expert-ep 50, cross-ep 5, policy noise 0.15, init noise 0.3.
    'panda_push': {'expert_episodes': 50, 'cross_episodes': 5, 'random_episodes': 8,
                   'epsilon': (0.15,), 'init_noise': 0.3},
}
"""Per-family values that differ from the field defaults of :class:`CollectConfig`."""


@dataclass(frozen=True)
class CollectConfig:
    """What one ``pref-rl collect`` run records (build with :func:`default_config`)."""

    family: str
    """One of :data:`FAMILIES`."""
    seed: int = 0
    """Seeds every task's env and noise (with the task id): same seed, same data."""
    tasks_per_env: int | None = None
    """Training targets (goal tasks) or variations per environment (MetaWorld), the first
    ones of the set; ``None``: all of them; 0: none (an evaluation-only dataset)."""
    eval_tasks_per_env: int | None = 0
    """Held-out targets/variations per environment recorded as ``eval`` tasks; ``None``: all;
    0: none. Such a dataset measures a prior on held-out targets; ``pref-rl pretrain`` refuses
    it, since no held-out target may reach the prior."""
    envs: tuple[str, ...] = ()
    """MetaWorld only: environments (default: the ML10 training envs; evaluation envs are
    refused)."""
    expert_episodes: int = 0
    """Episodes of the task's expert with action noise, per task."""
    cross_episodes: int = 0
    """Per task: episodes of the expert of another goal (goal tasks) or of another
    environment (MetaWorld), in this task."""
    within_episodes: int = 0
    """MetaWorld only, per task: episodes of this environment's expert solving another
    variation."""
    random_episodes: int = 0
    """Episodes of uniform random actions, per task."""
    epsilon: tuple[float, ...] = (0.1,)
    """Action-noise levels; the k-th noisy episode of each kind uses ``epsilon[k % len]``."""
    noise_type: str = 'gaussian'
    """``gaussian`` (add ``eps * N(0, 1)``) or ``uniform`` (random action with probability
    ``eps``)."""
    init_noise: float = 0.0
    """Initial-state noise: expert and cross episodes start with uniform random actions for a
    share drawn uniformly in [0, init_noise] of the episode."""
    episode_steps: int = 0
    """Steps per episode; 0: the task's episode length (MetaWorld 500, Panda 100/300, point
    mass and reacher 50)."""
    segment_stride: int = 0
    """Steps between the starts of consecutive segments of an episode; 0: the segment
    length (non-overlapping segments)."""
    sac_experts: str | None = None
    """Goal tasks: SAC expert checkpoints instead of the scripted expert, either one file (a
    goal-conditioned actor for every goal) or a directory of ``<split>_goal<NN>.pt``
    (one per goal). Each is a ``pref-rl train`` checkpoint or an actor-state checkpoint."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise CollectError(f'family must be one of {", ".join(FAMILIES)}, got '
                               f'{self.family!r}')
        counts = ('expert_episodes', 'cross_episodes', 'within_episodes', 'random_episodes',
                  'episode_steps', 'segment_stride', 'seed')
        for name in counts:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CollectError(f'{name} must be an int >= 0, got {value!r}')
        if self.episodes_per_task == 0:
            raise CollectError('no episodes per task: set at least one episode count')
        if self.tasks_per_env is not None and self.tasks_per_env < 0:
            raise CollectError(f'tasks_per_env must be >= 0, got {self.tasks_per_env}')
        if self.eval_tasks_per_env is not None and self.eval_tasks_per_env < 0:
            raise CollectError(f'eval_tasks_per_env must be >= 0, got '
                               f'{self.eval_tasks_per_env}')
        if self.noise_type not in NOISE_TYPES:
            raise CollectError(f'noise_type must be one of {", ".join(NOISE_TYPES)}, got '
                               f'{self.noise_type!r}')
        top = 1.0 if self.noise_type == 'uniform' else float('inf')
        if not self.epsilon or not all(0.0 <= e <= top for e in self.epsilon):
            raise CollectError(f'epsilon must be one or more levels in [0, {top}] for '
                               f'{self.noise_type} noise, got {self.epsilon}')
        if not 0.0 <= self.init_noise <= 1.0:
            raise CollectError(f'init_noise must be in [0, 1], got {self.init_noise}')
        metaworld = self.family == 'metaworld'
        if not metaworld and (self.envs or self.within_episodes):
            raise CollectError('envs and within-env episodes apply to metaworld only')
        if metaworld and (self.sac_experts is not None or self.init_noise):
            raise CollectError('sac_experts and init_noise apply to the goal tasks only '
                               '(MetaWorld uses its scripted experts)')

    @property
    def episodes_per_task(self) -> int:
        """Episodes recorded for each task."""
        return (self.expert_episodes + self.cross_episodes + self.within_episodes
                + self.random_episodes)


def default_config(family: str, **overrides: Any) -> CollectConfig:
    """The config of ``family`` with its :data:`FAMILY_DEFAULTS`, then ``overrides``
    (entries whose value is ``None`` are ignored: absent command-line options; ``'all'``
    for ``tasks_per_env``/``eval_tasks_per_env`` means every goal of the set).

    Raises:
        CollectError: unknown family or field, or an invalid value.
    """
    if family not in FAMILIES:
        raise CollectError(f'family must be one of {", ".join(FAMILIES)}, got {family!r}')
    fields = {f.name for f in dataclasses.fields(CollectConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise CollectError(f'unknown collect setting(s) {unknown}')
    values = {**FAMILY_DEFAULTS[family],
              **{k: v for k, v in overrides.items() if v is not None}}
    for name in ('epsilon', 'envs'):
        if name in values:
            values[name] = tuple(values[name])
    for name in ('tasks_per_env', 'eval_tasks_per_env'):
        if values.get(name) == 'all':
            values[name] = None
    return CollectConfig(family=family, **values)
