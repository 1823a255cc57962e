"""Configuration of the DRLHP wrapper: workflow, segments, labels, worker process.

Defaults follow Christiano et al. 2017 ("Deep reinforcement learning from human preferences",
https://arxiv.org/abs/1706.03741) with the parts their public reimplementations left out
switched on: ensemble-disagreement pair selection, a decaying query rate, the 10%
random-response preference model, adaptive L2 and a normalised reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.query_selection import QuerySelectionConfig
from pref_rl_learner.reward import RewardModelConfig, RewardTrainingConfig
from pref_rl_learner.schedule import FeedbackScheduleConfig
from pref_rl_learner.teacher import TEACHER_PRESETS

MODES = ('collect_and_train', 'collect_only', 'train_only', 'pretrained')
"""Workflows of the wrapper (see :attr:`DrlhpConfig.mode`)."""
LABEL_SOURCES = ('scripted', 'external')
"""Where labels come from: the scripted teacher or a person / another program."""
START_METHODS = ('spawn', 'forkserver')
"""Multiprocessing start methods the worker may use (never ``fork``: torch is loaded)."""


class DrlhpError(PrefRLError):
    """The DRLHP wrapper cannot do what was asked (no reward model yet, worker gone, ...)."""


class ObservationTransformError(DrlhpError, ValueError):
    """``obs_transform`` returned something the reward model cannot take (shape, NaN, dtype)."""


class WorkerError(DrlhpError):
    """The background worker failed, did not answer in time or has stopped."""


def _drlhp_training() -> RewardTrainingConfig:
    return RewardTrainingConfig(random_response=0.1, adaptive_l2=True, weight_decay=1e-4,
                                max_epochs=100, max_gradient_steps=100)


def _drlhp_schedule() -> FeedbackScheduleConfig:
    return FeedbackScheduleConfig(kind='decay', queries_per_session=20,
                                  session_interval_steps=1000, total_budget=500,
                                  decay_horizon_steps=50_000)


@dataclass(frozen=True)
class DrlhpConfig:
    """Everything the DRLHP wrapper and its worker process do (one frozen config)."""

    mode: str = 'collect_and_train'
    """``collect_and_train``: ask for labels and train, switch to the predicted reward after
    ``n_initial_training_steps`` trainings; ``collect_only``: ask for labels, never train,
    write ``train.npz``/``val.npz`` into ``log_dir`` on close (and on
    :meth:`~pref_rl_learner.drlhp.wrapper.PreferenceRewardWrapper.save_preferences`);
    ``train_only``: train ``n_initial_training_steps`` times on the ``train.npz``/``val.npz``
    in ``preferences_dir``, ask for nothing; ``pretrained``: load ``pretrained_checkpoint``
    and use it from the first step, no worker process at all."""
    segment_length: int = 25
    """Steps per clip ``T`` (DRLHP: 25 for Atari/MuJoCo; 10 suits the point mass). An
    episode's last clip ends at its last step (overlapping the clip before, or padded after
    the end when the episode is shorter than ``T``), so terminal rewards are shown."""
    n_initial_training_steps: int = 1
    """Reward-model trainings (each a :meth:`RewardTrainer.train` call on the stored labels)
    before the wrapper switches to the predicted reward by itself."""
    min_labels_to_train: int = 8
    """Trainable (left/right/equal) labels in the train split before the first training."""
    label_source: str = 'scripted'
    """``scripted``: :class:`~pref_rl_learner.teacher.ScriptedTeacher` from the true rewards;
    ``external``: queries wait until a person answers through ``submit_label``."""
    teacher_preset: str = 'oracle'
    """Name in ``TEACHER_PRESETS`` of the scripted teacher (B-Pref's six teachers)."""
    max_pending_queries: int = 50
    """External labels: no new queries are asked while this many wait for an answer."""
    schedule: FeedbackScheduleConfig = field(default_factory=_drlhp_schedule)
    """When to ask and how many: ``kind='decay'`` is DRLHP's q·H/(H+t) rate; the budget
    counts every query asked. Sessions are timed in env steps of the wrapped env."""
    query: QuerySelectionConfig = field(default_factory=QuerySelectionConfig)
    """Pair selection: ``disagreement`` (default) asks the pairs the ensemble members
    disagree on most (DRLHP's ensemble-uncertainty selection); ``uniform`` asks random ones."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """The ensemble; ``encoder='cnn'`` for pixels ([C, H, W] from ``obs_transform``). The
    wrapper's local copy always runs on the CPU; ``device`` applies to the worker."""
    reward_training: RewardTrainingConfig = field(default_factory=_drlhp_training)
    """Training: ``random_response=0.1`` is DRLHP's 10%-random-answer model,
    ``adaptive_l2`` keeps val loss within ``l2_band`` (1.1–1.5) × train loss, and a training
    is at most ``max_gradient_steps`` (100) steps, warm-started from the previous weights and
    optimiser, so it costs the same with 50 labels or 5,000 and the worker keeps up with a
    fast agent (0: every training runs up to ``max_epochs`` epochs over every label)."""
    normalize_reward: bool = True
    """Refit the reward normalisation (zero mean, unit std) on recent segments after every
    training; False leaves the raw member-mean reward."""
    normalizer_samples: int = 10_000
    """Most recent transitions the normalisation is fitted on."""
    segment_pool_size: int = 2000
    """Most recent segments the worker keeps as candidates for queries (older ones go)."""
    segment_pool_bytes: int = 1 << 30
    """Byte budget of that pool: the oldest clips go once their arrays hold more (a clip of
    ``T`` steps holds ``T + 1`` observations, uint8 for pixels: about 0.3 MB for 25 steps of
    64×64×3 frames). Queried clips are kept in the preference store, which never evicts."""
    min_session_clips: int = 0
    """Clips the pool must hold before the first session (0: twice
    ``schedule.queries_per_session``), so the first session asks its full size from a pool
    fixed by the seed, not by how fast the agent stepped."""
    queue_size: int = 256
    """Segments in flight to the worker; when the queue is full a segment is dropped and
    counted (``env.step`` never waits). Labels never go through this queue."""
    checkpoint_interval: int = 1
    """Write a reward-model checkpoint to ``log_dir/checkpoints`` every this many trainings
    (0: never)."""
    pretrained_checkpoint: str = ''
    """Checkpoint used by ``mode='pretrained'`` (and, when set, the starting weights of the
    other training modes)."""
    preferences_dir: str = ''
    """Directory with ``train.npz``/``val.npz`` written by a ``collect_only`` run
    (``mode='train_only'``)."""
    seed: int = 0
    """Seeds the worker's pair draws, teacher, model initialisation and training order."""
    start_method: str = 'spawn'
    """``spawn`` or ``forkserver`` for the worker process."""
    worker_torch_threads: int = 1
    """torch intra-op threads in the worker (it runs beside the agent)."""
    store_fsync: bool = True
    """fsync every label before it counts as stored (off only for tests and benchmarks)."""
    reply_timeout_s: float = 30.0
    """Longest wait for the worker to answer a call (``submit_label``, ``pending_queries``)."""
    shutdown_timeout_s: float = 10.0
    """Longest wait for the worker to stop on :meth:`close` before it is terminated."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.mode not in MODES:
            raise ConfigError(f"{name}.mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.label_source not in LABEL_SOURCES:
            raise ConfigError(f'{name}.label_source: {self.label_source!r} is not one of '
                              f"{', '.join(LABEL_SOURCES)}")
        if self.teacher_preset not in TEACHER_PRESETS:
            raise ConfigError(f'{name}.teacher_preset: {self.teacher_preset!r} is not one of '
                              f"{', '.join(TEACHER_PRESETS)}")
        if self.start_method not in START_METHODS:
            raise ConfigError(f'{name}.start_method: {self.start_method!r} is not one of '
                              f"{', '.join(START_METHODS)}")
        for key, low in (('segment_length', 1), ('n_initial_training_steps', 0),
                         ('min_labels_to_train', 1), ('max_pending_queries', 1),
                         ('normalizer_samples', 1), ('segment_pool_size', 2),
                         ('queue_size', 1), ('checkpoint_interval', 0),
                         ('worker_torch_threads', 1), ('segment_pool_bytes', 1),
                         ('min_session_clips', 0)):
            if getattr(self, key) < low:
                raise ConfigError(f'{name}.{key}: {getattr(self, key)} must be >= {low}')
        for key in ('reply_timeout_s', 'shutdown_timeout_s'):
            if not getattr(self, key) > 0:
                raise ConfigError(f'{name}.{key}: {getattr(self, key)} must be > 0')
        if self.mode == 'pretrained' and not self.pretrained_checkpoint:
            raise ConfigError(f"{name}: mode='pretrained' needs pretrained_checkpoint")
        if self.mode == 'train_only' and not self.preferences_dir:
            raise ConfigError(f"{name}: mode='train_only' needs preferences_dir")
        if self.mode == 'train_only' and self.n_initial_training_steps < 1:
            raise ConfigError(f"{name}: mode='train_only' needs n_initial_training_steps >= 1")

    @property
    def session_clips(self) -> int:
        """Clips the pool holds before the first session (``min_session_clips`` resolved)."""
        return self.min_session_clips or max(2, 2 * self.schedule.queries_per_session)

    @property
    def collects(self) -> bool:
        """Whether this workflow asks for labels."""
        return self.mode in ('collect_and_train', 'collect_only')

    @property
    def trains(self) -> bool:
        """Whether this workflow trains the reward model."""
        return self.mode in ('collect_and_train', 'train_only')
