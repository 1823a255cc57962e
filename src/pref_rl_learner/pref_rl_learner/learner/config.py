"""Settings of the asynchronous PEBBLE learner beyond the run's :class:`TrainConfig`.

The algorithm (task, SAC, reward model, query selection, feedback schedule and budget, seed
and unsupervised steps, ...) is configured by the same
:class:`~pref_rl_learner.pebble.config.TrainConfig` YAML file as ``pref-rl train``; this
dataclass only holds what an asynchronous learner needs on top: how hard the worker trains
per received transition, when labels trigger training, when weights are exported, and the
size of the segment store.
"""

from __future__ import annotations

from dataclasses import dataclass

from pref_rl_learner.config import ConfigError


@dataclass(frozen=True)
class LearnerConfig:
    """How the asynchronous learner paces its work (one ROS parameter per field)."""

    updates_per_step: float = 1.0
    """SAC gradient updates per received transition (PEBBLE: 1). The worker never runs more
    than this many updates ahead of the data received."""
    max_update_lag: int = 200
    """Pacing: received segments enter the replay buffer (and ``env_steps``, which the robot's
    flow control follows) only while the worker is at most this many updates behind
    ``updates_per_step`` x transitions, so the robot never outruns learning by more than its
    ``max_steps_ahead`` (as in PEBBLE's one update per env step). Negative: no pacing."""
    hold_for_labels: bool = False
    """Pacing: while a feedback session has unanswered queries, received segments wait in the
    backlog (and ``env_steps`` stays put), so data never runs past the labeller. For data that
    can wait, such as a replayed bag: without it, a bag replays to its end before a person (or
    a teacher that is still being discovered) answers, and the run learns from no label. A
    live robot keeps acting under PEBBLE's schedule instead (off)."""
    update_chunk: int = 8
    """Updates per work step: the worker releases its lock between chunks, so a checkpoint
    or a label never waits for more than one chunk (plus a reward training)."""
    policy_publish_interval: int = 500
    """Export the actor as new PolicyWeights after every this many SAC updates."""
    train_after_labels: int = 0
    """Train the reward model after every this many new labels even while the session still
    has unanswered queries; 0: only once every query of the session is answered."""
    segment_store_capacity: int = 2000
    """Full-length segments kept as query candidates (the oldest are dropped first)."""
    stats_window_episodes: int = 20
    """Episodes averaged in ``mean_true_return`` and ``success_rate``."""
    max_backlog_transitions: int = 20_000
    """Most transitions held back by pacing; a segment beyond it is refused (counted and
    logged by the node). A robot under flow control (``max_steps_ahead``) stays far below."""
    max_input_magnitude: float = 1e6
    """Observations, next observations and rewards of a received segment must lie within
    ±this; finite but larger values (no task produces them) are refused like malformed ones.
    Actions must lie in [-1, 1] (a small rounding margin aside)."""
    max_id_length: int = 256
    """Longest segment, source and task id accepted (characters)."""
    checkpoint_dir: str = ''
    """A directory besides the run directory where ``save_checkpoint`` may also write
    (empty: the run directory only)."""
    first_checkpoint_after_seed: bool = True
    """Write the first checkpoint as soon as the seed phase is over, so a crash early in a run
    loses at most one checkpoint interval of training."""

    def __post_init__(self) -> None:
        if not self.updates_per_step >= 0:
            raise ConfigError(f'LearnerConfig.updates_per_step {self.updates_per_step} must '
                              'be >= 0')
        for name in ('update_chunk', 'policy_publish_interval', 'segment_store_capacity',
                     'stats_window_episodes', 'max_backlog_transitions', 'max_id_length'):
            if getattr(self, name) < 1:
                raise ConfigError(f'LearnerConfig.{name} {getattr(self, name)} must be >= 1')
        if not self.max_input_magnitude > 0:
            raise ConfigError(f'LearnerConfig.max_input_magnitude {self.max_input_magnitude} '
                              'must be > 0')
        if self.train_after_labels < 0:
            raise ConfigError(f'LearnerConfig.train_after_labels {self.train_after_labels} '
                              'must be >= 0')
