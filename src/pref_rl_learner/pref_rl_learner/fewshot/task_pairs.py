"""Labelled support/query pairs drawn from the tasks of a multi-task dataset.

MAML needs, for one task at a time, two small sets of segment pairs with preference labels
(Hejna & Sadigh 2022: 24 + 24 pairs for point mass and reacher, 32 + 32 for MetaWorld). The
labels come from the scripted teacher (:class:`~pref_rl_learner.teacher.ScriptedTeacher`)
answering from the task's own true rewards, exactly as a simulated user would label that
task; SKIP answers are dropped and EQUAL ones become 0.5 targets.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.fewshot.dataset import MultiTaskDataset
from pref_rl_learner.reward.ensemble import RewardEnsemble
from pref_rl_learner.reward.training import PairTensors
from pref_rl_learner.teacher import ScriptedTeacher, TeacherConfig
from pref_rl_learner.types import Choice

_TARGETS = {int(Choice.LEFT): 0.0, int(Choice.RIGHT): 1.0, int(Choice.EQUAL): 0.5}


class PretrainError(PrefRLError, ValueError):
    """Pretraining cannot run on this dataset: tasks of different shapes, too few segments,
    segments shorter than asked, non-finite values."""


class TaskPairSampler:
    """Every task's segments as tensors, and labelled pair draws from them.

    Args:
        dataset: the tasks (all of one observation shape and action size).
        segment_length: steps per drawn segment (0: the dataset's); shorter than the
            recorded segments crops a random window of each.
        teacher: the scripted teacher's settings.
    """

    def __init__(self, dataset: MultiTaskDataset, segment_length: int,
                 teacher: TeacherConfig) -> None:
        if not dataset.tasks:
            raise PretrainError('the dataset holds no task')
        self.teacher = teacher
        self._obs: dict[str, torch.Tensor] = {}
        self._act: dict[str, torch.Tensor] = {}
        self._rewards: dict[str, np.ndarray] = {}
        first = next(iter(dataset.tasks.values()))
        obs_shape, act_shape = first.observations.shape[2:], first.actions.shape[2:]
        recorded = min(task.observations.shape[1] for task in dataset.tasks.values())
        for task_id, task in sorted(dataset.tasks.items()):
            obs, act, rew = task.observations, task.actions, task.rewards
            count = obs.shape[0]
            if obs.shape[2:] != obs_shape or act.shape[2:] != act_shape:
                raise PretrainError(
                    f'task {task_id}: observations {obs.shape[2:]} / actions {act.shape[2:]} '
                    f'differ from task {first.task_id}: {obs_shape} / {act_shape}')
            if act.shape[:2] != obs.shape[:2] or rew.shape != obs.shape[:2]:
                raise PretrainError(f'task {task_id}: observations {obs.shape}, actions '
                                    f'{act.shape} and rewards {rew.shape} disagree in [N, T]')
            if count < 2:
                raise PretrainError(f'task {task_id}: {count} segment(s), at least 2 needed')
            for name, array in (('observations', obs), ('actions', act), ('rewards', rew)):
                if not np.isfinite(array).all():
                    raise PretrainError(f'task {task_id}: {name} hold NaN or inf')
            self._obs[task_id] = torch.from_numpy(np.ascontiguousarray(obs, np.float32))
            self._act[task_id] = torch.from_numpy(np.ascontiguousarray(act, np.float32))
            self._rewards[task_id] = np.asarray(rew, np.float32)
        self.observation_shape = tuple(int(d) for d in obs_shape)
        self.action_dim = int(act_shape[0]) if act_shape else 0
        self.segment_length = segment_length or recorded
        if self.segment_length > recorded:
            raise PretrainError(f'segment_length {self.segment_length} is longer than the '
                                f'recorded segments ({recorded} steps)')

    @property
    def task_ids(self) -> list[str]:
        """Every task id, sorted."""
        return sorted(self._obs)

    def check_model(self, model: RewardEnsemble) -> None:
        """Move the data next to ``model`` (its device) after checking it fits its shapes.

        Raises:
            PretrainError: the model's observation shape or action size differs.
        """
        if model.observation_shape != self.observation_shape or (
                model.config.inputs == 'state_action' and model.action_dim != self.action_dim):
            raise PretrainError(f'the reward model expects observations {model.observation_shape}'
                                f' and {model.action_dim} actions, the dataset has '
                                f'{self.observation_shape} and {self.action_dim}')
        for store in (self._obs, self._act):
            for task_id, tensor in store.items():
                store[task_id] = tensor.to(model.device)

    def draw(self, task_id: str, rng: np.random.Generator, support: int, query: int
             ) -> tuple[PairTensors, PairTensors]:
        """``support`` and ``query`` labelled pairs of task ``task_id`` (disjoint segments
        when the task has enough of them; a pair never compares a segment with itself)."""
        pairs = support + query
        left, right = self._pair_indices(self._obs[task_id].shape[0], pairs, rng)
        obs, act, rew = self._segments(task_id, np.concatenate([left, right]), rng)
        teacher = ScriptedTeacher(self.teacher, rng)
        choices = teacher.label(SegmentPairs(
            obs[:pairs].cpu().numpy(), act[:pairs].cpu().numpy(),
            obs[pairs:].cpu().numpy(), act[pairs:].cpu().numpy(), rew[:pairs], rew[pairs:]))
        targets = torch.tensor([_TARGETS.get(int(c), math.nan) for c in choices],
                               dtype=torch.float32, device=obs.device)
        stacked_obs = torch.stack([obs[:pairs], obs[pairs:]], dim=1)  # [P, 2, T, *obs]
        stacked_act = torch.stack([act[:pairs], act[pairs:]], dim=1)
        out = []
        for part in (slice(0, support), slice(support, pairs)):
            keep = ~torch.isnan(targets[part])  # SKIP answers are not trained on
            out.append(PairTensors(stacked_obs[part][keep], stacked_act[part][keep],
                                   targets[part][keep]))
        return out[0], out[1]

    def transitions(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` random (observation, action) steps over all tasks (normaliser fitting)."""
        rng = np.random.default_rng([seed, 13])
        ids = self.task_ids
        which = rng.integers(len(ids), size=count)
        obs, act = [], []
        for i, task_id in enumerate(ids):
            n = int((which == i).sum())
            if n == 0:
                continue
            segments, steps = self._obs[task_id].shape[:2]
            seg = torch.from_numpy(rng.integers(segments, size=n))
            step = torch.from_numpy(rng.integers(steps, size=n))
            obs.append(self._obs[task_id][seg, step])
            act.append(self._act[task_id][seg, step])
        return torch.cat(obs), torch.cat(act)

    # ----------------------------------------------------------------------------- helpers

    @staticmethod
    def _pair_indices(count: int, pairs: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
        if count >= 2 * pairs:
            order = rng.permutation(count)[:2 * pairs]
            return order[:pairs], order[pairs:]
        left = rng.integers(count, size=pairs)
        return left, (left + rng.integers(1, count, size=pairs)) % count  # never left itself

    def _segments(self, task_id: str, index: np.ndarray, rng: np.random.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Segments ``index`` of a task, each cropped to a random window of the length."""
        obs_all, act_all = self._obs[task_id], self._act[task_id]
        length, recorded = self.segment_length, obs_all.shape[1]
        starts = rng.integers(0, recorded - length + 1, size=len(index))
        steps = starts[:, None] + np.arange(length)[None, :]  # [K, L]
        rows = index[:, None]
        rows_t, steps_t = torch.from_numpy(rows), torch.from_numpy(steps)
        rewards = self._rewards[task_id][rows, steps]
        return obs_all[rows_t, steps_t], act_all[rows_t, steps_t], rewards
