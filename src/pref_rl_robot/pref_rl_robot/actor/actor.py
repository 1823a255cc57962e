"""The actor loop: step an env with the local policy and cut the transitions into segments.

:class:`Actor` is everything the ``robot`` node does, without ROS: it owns the env (through a
backend), a :class:`~pref_rl_robot.actor.policy.LocalPolicy` and a
:class:`~pref_rl_robot.segmenter.Segmenter`; :meth:`Actor.step` makes one env step and returns
the segment that step closed, if any. Around the stepping it keeps

- **flow control**: with ``max_steps_ahead`` > 0 it steps only while a learner is connected
  and its transitions (published or in the open segment) exceed the learner's consumption
  (``LearnerStatus.env_steps``, set with :meth:`Actor.set_learner_steps`) by less than
  ``max_steps_ahead``; otherwise its mode is WAITING and the arm holds. Both counts are taken
  from a baseline set when a learner (re)appears: the first status after start or after
  :meth:`Actor.learner_lost`, or a status whose count went down (a learner resumed from an
  older checkpoint). Segments published while no learner listened never reach it, so
  counting them would make the robot wait for good. Segments travel on a reliable topic that
  keeps the last 256 messages: a writer that ran further ahead would overwrite messages the
  learner has not read yet, so this bound is what makes the stream lossless
  (:meth:`Actor.max_unread_segments`);
- **policy versions**: new weights are checked on arrival and take over at the next segment
  boundary, so all actions of a segment come from the one version recorded in it;
- **frames**: with ``frame_stride`` > 0 a frame is rendered every ``frame_stride`` steps of a
  segment; they are attached to the segment (``attach_frames``) or kept in a bounded
  :class:`~pref_rl_robot.actor.frame_cache.FrameCache` for :meth:`Actor.frames`;
- **e-stop and resets**: while the e-stop is engaged nothing is stepped and resets are refused;
  a reset drops the unfinished segment (its transitions were never published) and starts a
  new episode.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from dataclasses import dataclass

import gymnasium
import numpy as np

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import PolicyWeights, Segment
from pref_rl_robot.actor.backend import BACKENDS, RobotHooks, make_backend
from pref_rl_robot.actor.frame_cache import FrameCache, SegmentFrames
from pref_rl_robot.actor.policy import CheckedWeights, LocalPolicy, WeightsRejectedError
from pref_rl_robot.segmenter import Segmenter
from pref_rl_robot.tasks import DEFAULT_GOAL, PERSON_GOAL, TaskSpec, UnknownTaskError, task_spec


class Mode(enum.IntEnum):
    """What the actor is doing (values match ``RobotStatus.msg``)."""

    STEPPING = 0
    """Stepping the policy and producing segments."""
    WAITING = 1
    """Holding: too far ahead of the learner, or nobody is listening yet."""
    ESTOP = 2
    """Holding with the e-stop engaged: nothing is stepped until it is released."""
    WATCHDOG = 3
    """Holding because the env's watchdog saw commands stop (robot backends)."""


class EstopEngagedError(PrefRLError, RuntimeError):
    """A reset (or another motion) was asked for while the e-stop is engaged."""


@dataclass(frozen=True)
class ActorConfig:
    """Parameters of the actor (the ``robot`` node declares them as ROS parameters)."""

    backend: str = 'sim'
    """Where the env runs: ``sim`` (pref_rl_robot.tasks) or ``polymetis`` (a Panda)."""
    task: str = 'point_mass'
    """Task name, e.g. ``point_mass``, ``reacher``, ``button-press-v3``, ``panda_reach``."""
    goal: str = DEFAULT_GOAL
    """The task's one target, never observed: ``eval:i`` (held-out target ``i``), ``train:i``
    or coordinates ``'x,y[,z]'``. ``person`` on a real arm (``backend: polymetis``): the target
    is in the person's head, and segments carry no true reward."""
    seed: int = 0
    """Seeds the env (first episode), the random actions and the policy's sampling noise."""
    segment_length: int = 0
    """Transitions per segment (0: the task's default, ``TaskSpec.segment_length``)."""
    max_steps_ahead: int = 0
    """Step only while fewer than this many transitions are ahead of the learner's
    consumption (0: no flow control). Must be 0 or at least one segment."""
    connect_grace_s: float = 1.0
    """Under flow control, wait this long after a learner (re)appears before stepping: its
    status can arrive before DDS has matched its ``segments`` reader, and segments published
    before that match never reach it."""
    frame_stride: int = 0
    """Render a frame every this many steps of a segment (0: no frames)."""
    frame_size: int = 64
    """Side of the square rendered frames, pixels."""
    attach_frames: bool = False
    """Put the frames into every segment; otherwise keep them for get_segment_frames only."""
    frame_cache_segments: int = 256
    """Keep the frames of this many most recent segments for get_segment_frames."""
    deterministic: bool = False
    """Act with the policy's mean action instead of sampling (no exploration)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f'backend {self.backend!r} is not one of {", ".join(BACKENDS)}')
        if self.goal.strip() in ('', PERSON_GOAL) and self.backend == 'sim':
            raise ConfigError(f"goal {self.goal!r}: a simulated task needs its target "
                              "('eval:0', 'train:3', 'x,y'); the simulated teacher and the "
                              "evaluation judge against it")
        for name in ('seed', 'segment_length', 'max_steps_ahead', 'frame_stride',
                     'connect_grace_s'):
            if getattr(self, name) < 0:
                raise ConfigError(f'{name} must be >= 0, got {getattr(self, name)}')
        if not 8 <= self.frame_size <= 1024:
            raise ConfigError(f'frame_size must be in [8, 1024], got {self.frame_size}')
        if self.frame_cache_segments < 1:
            raise ConfigError(f'frame_cache_segments must be >= 1, got '
                              f'{self.frame_cache_segments}')


@dataclass(frozen=True)
class ActorStatus:
    """A snapshot of the actor (mirrors ``RobotStatus.msg``)."""

    source_id: str
    """Id written into this actor's segments."""
    task: str
    """Task name."""
    mode: Mode
    """What the actor is doing."""
    episode: int
    """Index of the current episode."""
    env_steps: int
    """Env steps taken since start (including dropped, unpublished ones)."""
    segments: int
    """Segments produced since start."""
    policy_version: int
    """Version of the acting policy (0: random actions)."""
    weights_rejected: int
    """Policy weights refused since start."""
    safety_interventions: int
    """Commands the env's safety envelope clamped or refused (0 without one)."""
    watchdog_holds: int
    """Times the env's watchdog made the arm hold (0 without one)."""
    stamp_ns: int = 0
    """When the snapshot was taken (ns since the epoch)."""


def _space_dim(env: object, space: str, shape_attr: str) -> int:
    """Flat size of an env's observation or action, from its gymnasium space or a shape."""
    shape = getattr(getattr(env, space, None), 'shape', None) or getattr(env, shape_attr)
    return math.prod(shape)


class Actor:
    """Steps ``env`` with a local policy; see the module docstring for what it keeps.

    Args:
        env: a gymnasium-style env (``reset(seed=)``, ``step``, ``render`` for frames,
            ``info['success']`` when the task defines success).
        config: the actor's parameters (``backend`` is not used here: the env is given).
        source_id: written into every segment (the node uses its own name).
        spec: the task's spec, for the default segment length and episode length; looked
            up by ``config.task`` when None.
    """

    def __init__(self, env: gymnasium.Env, config: ActorConfig, source_id: str = 'robot',
                 spec: TaskSpec | None = None) -> None:
        self.env, self.config, self.source_id = env, config, source_id
        if spec is None:
            try:
                spec = task_spec(config.task)
            except UnknownTaskError:
                if not config.segment_length:
                    raise ConfigError(f'task {config.task!r} is not registered: set '
                                      'segment_length explicitly') from None
        self.spec = spec
        self.segment_length = config.segment_length or spec.segment_length
        if 0 < config.max_steps_ahead < self.segment_length:
            raise ConfigError(
                f'max_steps_ahead ({config.max_steps_ahead}) must be 0 or at least one segment '
                f'({self.segment_length} steps): the learner only ever consumes whole segments')
        self.hooks = RobotHooks(env)
        self.policy = LocalPolicy(_space_dim(env, 'observation_space', 'observation_shape'),
                                  _space_dim(env, 'action_space', 'action_shape'),
                                  deterministic=config.deterministic, seed=config.seed)
        self.frame_cache = FrameCache(config.frame_cache_segments)
        self.segmenter = self._new_segmenter(episode=0)
        self.env_steps = 0
        """Env steps taken since start."""
        self.emitted_steps = 0
        """Transitions in the segments produced so far (what flow control counts)."""
        self.segments = 0
        """Segments produced since start."""
        self.dropped_steps = 0
        """Transitions of unfinished segments dropped by resets (never published)."""
        self.weights_rejected = 0
        """Policy weights refused since start."""
        self.learner_steps = 0
        """The learner's consumption (``LearnerStatus.env_steps``; 0 until one arrives)."""
        self._baseline: tuple[int, int] | None = None  # (emitted, learner) steps at contact
        self._baseline_time = 0.0  # time.monotonic() of the baseline
        self.consumer_connected = True
        """False makes the actor wait (the node: no subscriber on ``segments`` yet)."""
        self.last_error = ''
        """Why the actor engaged the e-stop itself (an env that refused a step), else ''."""
        self._pending = 0  # transitions in the open segment
        self._episode_steps = 0
        self._next_weights: CheckedWeights | None = None
        self._obs: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: ActorConfig, source_id: str = 'robot') -> Actor:
        """Make the env on ``config.backend`` and the actor stepping it."""
        env = make_backend(config.backend, config.task, goal=config.goal.strip(),
                           seed=config.seed, render_size=config.frame_size)
        return cls(env, config, source_id)

    def _new_segmenter(self, episode: int) -> Segmenter:
        # A real arm without a target (the person's, in their head) has no true reward.
        knows_reward = getattr(self.env.unwrapped, 'goal', ()) is not None
        segmenter = Segmenter(self.config.task, self.source_id, self.segment_length,
                              frame_stride=self.config.frame_stride, knows_reward=knows_reward)
        segmenter.episode = episode
        return segmenter

    # ---------------------------------------------------------------------------- state

    @property
    def episode(self) -> int:
        """Index of the current episode."""
        return self.segmenter.episode

    @property
    def learner_connected(self) -> bool:
        """True once a learner status arrived (since start or :meth:`learner_lost`)."""
        return self._baseline is not None

    @property
    def steps_ahead(self) -> int:
        """Transitions produced (published or in the open segment) minus the learner's, both
        counted from the baseline (0 while no learner is connected)."""
        if self._baseline is None:
            return 0
        emitted, consumed = self._baseline
        return (self.emitted_steps + self._pending - emitted) - (self.learner_steps - consumed)

    @property
    def mode(self) -> Mode:
        """ESTOP, else WAITING (no consumer, or max_steps_ahead reached), else STEPPING."""
        if self.hooks.estop_engaged:
            return Mode.ESTOP
        limit = self.config.max_steps_ahead
        if not self.consumer_connected or (limit and (
                not self.learner_connected or self.steps_ahead >= limit
                or time.monotonic() - self._baseline_time < self.config.connect_grace_s)):
            return Mode.WAITING
        return Mode.STEPPING

    def status(self) -> ActorStatus:
        """A snapshot for ``RobotStatus``."""
        interventions, holds = self.hooks.safety_counts()
        return ActorStatus(source_id=self.source_id, task=self.config.task, mode=self.mode,
                           episode=self.episode, env_steps=self.env_steps, segments=self.segments,
                           policy_version=self.policy.version,
                           weights_rejected=self.weights_rejected,
                           safety_interventions=interventions, watchdog_holds=holds,
                           stamp_ns=time.time_ns())

    def max_unread_segments(self) -> int | None:
        """Most segments the learner can be behind by under flow control (None: no bound).

        ``max_steps_ahead`` transitions make at most ``ceil(N / L)`` full segments plus one
        shorter last segment per episode ending inside them.
        """
        n = self.config.max_steps_ahead
        if not n:
            return None
        episode_length = self.spec.episode_length if self.spec is not None else 1
        return math.ceil(n / self.segment_length) + math.ceil(n / episode_length)

    # ---------------------------------------------------------------------------- inputs

    def set_learner_steps(self, env_steps: int) -> None:
        """Record the learner's consumption (the ``env_steps`` of its latest status).

        The first status after start or :meth:`learner_lost`, and a count lower than the last
        one (a learner restarted from an older checkpoint), set the flow-control baseline;
        stepping resumes ``connect_grace_s`` later.
        """
        env_steps = int(env_steps)
        if self._baseline is None or env_steps < self.learner_steps:
            self._baseline = (self.emitted_steps, env_steps)
            self._baseline_time = time.monotonic()
        self.learner_steps = env_steps

    def learner_lost(self) -> None:
        """The learner went away: wait (under flow control) until one reports again."""
        self._baseline = None

    def apply_weights(self, weights: PolicyWeights) -> None:
        """Check ``weights``; they act from the next segment boundary on.

        Raises:
            WeightsRejectedError: refused (stale version, bad tensors, other sizes); counted
                in :attr:`weights_rejected`, and the acting policy is unchanged.
        """
        try:
            checked = self.policy.check(weights)
            if self._next_weights is not None and checked.version <= self._next_weights.version:
                raise WeightsRejectedError(f'version {checked.version} is not newer than the '
                                           f'pending version {self._next_weights.version}')
        except WeightsRejectedError:
            self.weights_rejected += 1
            raise
        self._next_weights = checked
        if self._pending == 0:
            self._take_next_weights()

    def reject_weights(self, reason: str) -> WeightsRejectedError:
        """Count weights refused before reaching :meth:`apply_weights` (e.g. a message that
        does not convert); returns the error to report."""
        self.weights_rejected += 1
        return WeightsRejectedError(reason)

    def _take_next_weights(self) -> None:
        if self._next_weights is not None:
            self.policy.apply(self._next_weights)
            self._next_weights = None

    # ---------------------------------------------------------------------------- stepping

    def step(self) -> Segment | None:
        """One env step if the mode is STEPPING; the segment it closed, if any."""
        if self.mode is not Mode.STEPPING:
            return None
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.config.seed)
        stride = self.config.frame_stride
        frame = self.env.render() if stride and self._pending % stride == 0 else None
        action = self.policy.act(self._obs)
        try:
            next_obs, reward, terminated, truncated, info = self.env.step(action)
        except PrefRLError as err:
            # A robot's safety envelope (or a broken env) refused the command: stop moving.
            self.last_error = f'env refused a step: {type(err).__name__}: {err}'
            self.engage_estop(self.last_error)
            return None
        self.env_steps += 1
        self._pending += 1
        self._episode_steps += 1
        segment = self.segmenter.add(self._obs, action, next_obs, float(reward),
                                     bool(terminated), bool(truncated),
                                     bool(info.get('success', False)),
                                     policy_version=self.policy.version, frame=frame)
        if terminated or truncated:
            self._obs, _ = self.env.reset()
            self._episode_steps = 0
        else:
            self._obs = next_obs
        return None if segment is None else self._close(segment)

    def _close(self, segment: Segment) -> Segment:
        self.emitted_steps += segment.length
        self.segments += 1
        self._pending = 0
        self._take_next_weights()
        if segment.frames is not None:
            self.frame_cache.put(segment.segment_id, segment.frames, segment.frame_stride)
            if not self.config.attach_frames:
                segment = dataclasses.replace(segment, frames=None, frame_stride=0)
        return segment

    def run(self, max_steps: int | None = None, max_segments: int | None = None,
            max_seconds: float | None = None) -> list[Segment]:
        """Step until a limit is reached or the mode leaves STEPPING; the closed segments."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        segments: list[Segment] = []
        steps = 0
        while self.mode is Mode.STEPPING:
            if max_steps is not None and steps >= max_steps:
                break
            if max_segments is not None and len(segments) >= max_segments:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            segment = self.step()
            steps += 1
            if segment is not None:
                segments.append(segment)
        return segments

    # ---------------------------------------------------------------------------- commands

    def hold(self) -> None:
        """Keep the arm where it is (called when the actor stops stepping)."""
        self.hooks.hold()

    def idle(self, seconds: float) -> None:
        """Keep holding for ``seconds`` (called periodically while not stepping)."""
        self.hooks.idle(seconds)

    def engage_estop(self, reason: str) -> None:
        """Engage the e-stop and hold; nothing is stepped until :meth:`release_estop`."""
        self.hooks.engage_estop(reason)
        self.hooks.hold()

    def release_estop(self) -> None:
        """Release the e-stop; stepping resumes where it stopped (same episode)."""
        self.hooks.release_estop()
        self.last_error = ''

    def reset_episode(self, seed: int | None = None, go_home: bool = False) -> int:
        """End the current episode and start a new one; returns the new episode's index.

        The unfinished segment is dropped (counted in :attr:`dropped_steps`). ``seed``
        reseeds the env; ``go_home`` moves a robot to its home pose first.

        Raises:
            EstopEngagedError: the e-stop is engaged.
        """
        if self.hooks.estop_engaged:
            raise EstopEngagedError('the e-stop is engaged: release it before resetting')
        self.dropped_steps += self._pending
        self._pending = 0
        self._take_next_weights()
        episode = self.episode + (1 if self._episode_steps else 0)
        self.segmenter = self._new_segmenter(episode)
        if go_home:
            self.hooks.go_home()
        self._obs, _ = self.env.reset(seed=seed)
        self._episode_steps = 0
        return episode

    def frames(self, segment_id: str) -> SegmentFrames:
        """The frames of a recent segment.

        Raises:
            UnknownSegmentError: unknown or evicted id, or frames are off.
        """
        return self.frame_cache.get(segment_id)

    def close(self) -> None:
        """Close the env."""
        close = getattr(self.env, 'close', None)
        if callable(close):
            close()
