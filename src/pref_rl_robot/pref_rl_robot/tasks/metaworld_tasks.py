"""MetaWorld v3 tasks: one training or held-out variation of one environment.

MetaWorld (https://arxiv.org/abs/1910.10897, package ``metaworld`` 3.x) varies each environment
by a vector ``rand_vec`` of object and goal positions. Its ML1 benchmark draws 50 training and
50 test variations of one environment; ``goal='train:i'`` runs training variation ``i`` and
``goal='eval:i'`` test variation ``i`` (the few-shot preference-learning protocol pretrains on
training variations of the ML10 training envs and learns an unseen env or variation from
preferences). Choices:

* The variations come from ``metaworld.ML1(name, seed=BENCHMARK_SEED)``, so every run sees the
  same 50 + 50 (computed once per process and environment, about 1.5 s).
* ``env.unwrapped.goal`` is the variation's ``rand_vec`` (as float32); every reset returns to
  it (object and goal positions fixed for the run, as one task of the few-shot code).
* The goal is hidden: the benchmark's partial observability (``partially_observable=True``,
  as ML1 and the few-shot code), so the last three entries of the 39-D observation are zero.
* Episodes of ``max_path_length`` = 500 steps, never terminated early (as in the few-shot code
  and ML1 training); reward = MetaWorld's v2 reward in [0, 10]; ``info['success']`` is
  MetaWorld's success flag as a bool.
* Frames come from the ``corner2`` camera, rotated by 180 degrees (that camera is mounted
  upside down), rendered offscreen (OSMesa under ``MUJOCO_GL=osmesa``) without shadows or
  multisampling: shadow maps cost about 100 ms a frame in software, the plain frame about
  15 ms, and at 64 pixels they look the same.

``metaworld`` is imported only when a MetaWorld env is made, never at module import.
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import seeding

from pref_rl_robot.tasks.registry import (
    EpisodeStateError,
    Target,
    TaskSpec,
    check_reset_options,
    checked_action,
    default_to_offscreen_gl,
    frozen,
)

ML10_TRAIN = ('reach-v3', 'push-v3', 'pick-place-v3', 'door-open-v3', 'drawer-close-v3',
              'button-press-topdown-v3', 'peg-insert-side-v3', 'window-open-v3', 'sweep-v3',
              'basketball-v3')
"""Training environments of ML10 (the few-shot pretraining set)."""
ML10_TEST = ('drawer-open-v3', 'door-close-v3', 'shelf-place-v3', 'sweep-into-v3',
             'lever-pull-v3')
"""Test environments of ML10."""
FEW_SHOT_EVAL = ('button-press-v3', 'door-unlock-v3', 'window-close-v3', 'drawer-open-v3',
                 'sweep-into-v3', 'door-close-v3')
"""Environments the few-shot paper adapts to."""
METAWORLD_TASKS = tuple(dict.fromkeys(FEW_SHOT_EVAL + ML10_TRAIN + ML10_TEST))
"""MetaWorld v3 environments ``make_task`` accepts (any v3 env would work; these are tested)."""

EPISODE_LENGTH = 500
"""MetaWorld's ``max_path_length``."""
OBSERVATION_DIM = 39
"""Hand (4), two objects (14), the same one step earlier (18), goal position (3)."""
ACTION_DIM = 4
"""End-effector displacement (3) and gripper effort (1)."""
NUM_VARIATIONS = 50
"""Variations per goal set (ML1 draws 50 training and 50 test variations)."""
BENCHMARK_SEED = 0
"""Seed of ``metaworld.ML1`` (its test set uses ``BENCHMARK_SEED + 1``)."""
CAMERA = 'corner2'
"""MetaWorld camera the frames come from."""


def spec(name: str) -> TaskSpec:
    """The spec of MetaWorld environment ``name`` (registry hook; imports no MetaWorld)."""
    return TaskSpec(name=name, episode_length=EPISODE_LENGTH, segment_length=25,
                    observation_shape=(OBSERVATION_DIM,), action_dim=ACTION_DIM,
                    num_train_goals=NUM_VARIATIONS, num_eval_goals=NUM_VARIATIONS)


def goal_set(name: str, split: str) -> np.ndarray:
    """The training or test variations' ``rand_vec``, ``float32 [50, d]`` (registry hook)."""
    train, test = variations(name)
    return frozen(train if split == 'train' else test)


def make(name: str, *, target: Target, seed: int | None,
         render_size: int) -> MetaWorldTaskEnv:
    """Make MetaWorld environment ``name`` (registry hook; arguments already checked)."""
    return MetaWorldTaskEnv(name, target, seed=seed, render_size=render_size)


@functools.cache
def variations(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The ML1 training and test ``rand_vec`` of environment ``name``, each ``[50, d]``."""
    import metaworld

    benchmark = metaworld.ML1(name, seed=BENCHMARK_SEED)
    # Task.data is a pickle metaworld made in this process (its set_task API reads it).
    train, test = ([pickle.loads(task.data)['rand_vec'] for task in tasks]
                   for tasks in (benchmark.train_tasks, benchmark.test_tasks))
    return frozen(train, np.float64), frozen(test, np.float64)


class MetaWorldTaskEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """One MetaWorld v3 environment in one training or held-out variation, goal hidden."""

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 80}

    def __init__(self, name: str, target: Target, seed: int | None = None,
                 render_size: int = 64) -> None:
        default_to_offscreen_gl()
        import metaworld
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS

        self.name = name
        self.render_mode = 'rgb_array'
        env_cls = ALL_V3_ENVIRONMENTS[name]
        self._env = env_cls(render_mode='rgb_array', camera_name=CAMERA, width=render_size,
                            height=render_size, reward_function_version='v2')
        # Software rendering: shadow maps and multisampling cost far more than the frame.
        self._env.model.vis.quality.shadowsize = 0
        self._env.model.vis.quality.offsamples = 0
        train, test = variations(name)
        rand_vec = (train if target.split == 'train' else test)[target.index]
        extra = {k: v for k, v in ML1_ARGS_KWARGS[name]['kwargs'].items() if k != 'task_id'}
        self._env.set_task(metaworld.Task(env_name=name, data=pickle.dumps(
            {**extra, 'env_cls': env_cls, 'rand_vec': rand_vec, 'partially_observable': True})))
        self.target = target
        """The run's variation (never observed)."""
        self.goal = target.position
        """The variation's ``rand_vec``, float32."""
        space = self._env.sawyer_observation_space  # recomputed by set_task (goal zeroed)
        self.observation_space = gymnasium.spaces.Box(
            space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32,
            seed=seed)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32,
                                                 seed=seed)
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._steps = -1  # -1: not reset yet

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode in the env's variation."""
        check_reset_options(options)
        super().reset(seed=seed)
        obs, _ = self._env.reset()
        self._steps = 0
        return obs.astype(np.float32), {'success': False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One MetaWorld step of ``action`` (clipped to [-1, 1])."""
        if not 0 <= self._steps < EPISODE_LENGTH:
            raise EpisodeStateError(f'{self.name}: call reset() before step() '
                                    '(at the start and after each truncated episode)')
        obs, reward, _, _, info = self._env.step(checked_action(action, ACTION_DIM))
        self._steps += 1
        info = {k: float(v) for k, v in info.items()}
        info['success'] = bool(info['success'])
        return (obs.astype(np.float32), float(reward), False, self._steps >= EPISODE_LENGTH,
                info)

    def expert_observation(self, observation: np.ndarray) -> np.ndarray:
        """``observation`` with the hidden goal filled in, for MetaWorld's scripted experts
        (data collection only: they read the goal; the learner never sees this)."""
        full = np.array(observation, np.float32)
        full[-3:] = self._env._get_pos_goal()
        return full

    def render(self) -> np.ndarray:
        """``uint8 [S, S, 3]`` frame from the ``corner2`` camera, upright."""
        frame = self._env.render()
        return np.ascontiguousarray(frame[::-1, ::-1])

    def close(self) -> None:
        """Release the MuJoCo renderer."""
        self._env.close()
