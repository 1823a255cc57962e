"""The gymnasium env every Panda backend runs behind: actions -> targets -> envelope -> arm.

``step(action)`` turns the action (``float32 [3]`` in [-1, 1]) into an end-effector target
``ee + action_scale_m * action`` (the measured position plus a bounded displacement), hands it
to the :class:`~pref_rl_robot.panda.safety.SafetyEnvelope` (which clamps or refuses it and is
the only way to the backend), then lets one control period pass. Malformed actions are passed
on unchanged so that the envelope counts them before refusing them; ``step`` then raises
:class:`~pref_rl_robot.panda.errors.RefusedCommandError`, an ``InvalidActionError``.

For the robot node the env exposes ``safety`` (the envelope: e-stop, statistics), ``hold()``
and ``idle(seconds)`` (time passes without a command; the watchdog holds the arm).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import seeding

from pref_rl_robot.panda.backend import PandaBackend
from pref_rl_robot.panda.safety import SafetyConfig, SafetyEnvelope
from pref_rl_robot.panda.task import PandaTask
from pref_rl_robot.tasks.registry import EpisodeStateError, Target, check_reset_options


class PandaEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """A :class:`PandaTask` on a :class:`PandaBackend`, guarded by a safety envelope.

    Attributes:
        safety: the :class:`SafetyEnvelope` every command passes (e-stop, statistics).
        target: the run's :class:`~pref_rl_robot.tasks.registry.Target` (never observed), or
            None on a real arm whose target is in the person's head (no true reward, no
            success).
        goal: the target's coordinates (``float32 [3]`` reach, ``[2]`` push) or None.
    """

    def __init__(self, task: PandaTask, backend: PandaBackend, *, target: Target | None,
                 seed: int | None = None, render_size: int = 64,
                 safety: SafetyConfig | None = None) -> None:
        self.task = task
        self.render_mode = 'rgb_array'
        self.metadata = {'render_modes': ['rgb_array'],
                         'render_fps': round(1.0 / backend.control_period_s)}
        self._backend = backend
        config = (safety or SafetyConfig()).tightened(task.workspace_low, task.workspace_high)
        self.safety = SafetyEnvelope(backend, config)
        self.observation_space = gymnasium.spaces.Box(
            -np.inf, np.inf, task.spec.observation_shape, np.float32, seed=seed)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (task.spec.action_dim,),
                                                 np.float32, seed=seed)
        self.target = target
        self.goal = None if target is None else target.position
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._render_size = render_size
        self._steps = -1  # -1: not reset yet
        self._closed = False
        if backend.realtime:
            self.safety.start_watchdog_thread()

    # --- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: the arm goes to the (jittered) start position, the block
        (simulation) to its start; the target stays the env's.

        Raises:
            EstopEngagedError: the e-stop is engaged (nothing moves).
            TaskArgumentError: any option (there are none).
        """
        check_reset_options(options)
        self.safety.check_estop('reset')
        super().reset(seed=seed)
        task = self.task
        start = (np.array(task.start_position)
                 + self.np_random.uniform(-task.start_noise_m, task.start_noise_m, 3))
        block = None
        if task.block_start is not None:
            xy = (np.array(task.block_start) + self.np_random.uniform(
                -task.block_start_noise_m, task.block_start_noise_m, 2))
            block = np.array([xy[0], xy[1], task.block_half_size_m])
        self._backend.reset_scene(None if self.goal is None
                                  else np.asarray(self.goal, np.float64), block)
        self.safety.gripper(task.gripper_width_m)
        self.safety.home(start)
        self._steps = 0
        observation, _, success, distance = self._observe()
        return observation, {'success': success, 'distance': distance}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move the end effector by ``action_scale_m * clip(action, -1, 1)`` over one control
        period (the envelope may clamp it, or hold the arm instead).

        Raises:
            EpisodeStateError: before ``reset`` or after the episode was truncated.
            EstopEngagedError: the e-stop is engaged (the arm holds; the step is not taken).
            RefusedCommandError: (an ``InvalidActionError``) a malformed action.
        """
        if not 0 <= self._steps < self.task.spec.episode_length:
            raise EpisodeStateError(f'{self.task.spec.name}: call reset() before step() '
                                    '(at the start and after each truncated episode)')
        period = self._backend.control_period_s
        report = self.safety.command(self._target_for(action), period)
        self._backend.advance(period)
        self._steps += 1
        observation, reward, success, distance = self._observe()
        truncated = self._steps >= self.task.spec.episode_length
        info = {'success': success, 'distance': distance, 'ik_failure': report.ik_failure,
                'tracking_error_m': report.tracking_error_m,
                'interventions': report.interventions}
        return observation, reward, False, truncated, info

    def render(self) -> np.ndarray:
        """``uint8 [S, S, 3]``: the backend's camera (or schematic) frame."""
        return self._backend.render(self._render_size)

    def close(self) -> None:
        """Stop the watchdog thread and release the backend (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.safety.stop_watchdog_thread()
        self._backend.close()

    # --- For the robot node ---------------------------------------------------------------

    def hold(self) -> None:
        """Hold the current end-effector position now."""
        self.safety.hold()

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` pass without a command (simulation: physics runs; robot: sleeps);
        the watchdog holds the arm once ``watchdog_s`` passed since the last command."""
        self.safety.idle(seconds)

    @property
    def backend(self) -> PandaBackend:
        """The backend, for sensing (its motion methods refuse calls from outside the
        envelope)."""
        return self._backend

    # --- Internals ---------------------------------------------------------------------------

    def _target_for(self, action: Any) -> Any:
        try:
            array = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            return action  # not numeric: the envelope refuses (and counts) it
        if array.shape != (self.task.spec.action_dim,):
            return array  # wrong shape: likewise
        ee = self._backend.ee_position()
        if not np.isfinite(array).all():
            return ee + array  # NaN/inf must reach the envelope as such, not clipped
        return ee + self.task.action_scale_m * np.clip(array, -1.0, 1.0)

    def _observe(self) -> tuple[np.ndarray, float, bool, float]:
        ee = self._backend.ee_position()
        block = self._backend.block_position() if self.task.needs_block else None
        goal = None if self.goal is None else np.asarray(self.goal, np.float64)
        reward, success, distance = self.task.evaluate(ee, block, goal)
        observation = self.task.observation(ee, self._backend.ee_velocity(), block)
        return observation, float(reward), bool(success), float(distance)

