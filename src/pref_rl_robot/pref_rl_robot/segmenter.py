"""Cut a stream of transitions into fixed-length :class:`Segment` s at episode boundaries."""

from __future__ import annotations

import time
import uuid

import numpy as np

from pref_rl_learner.types import Segment


class Segmenter:
    """Accumulates transitions; :meth:`add` returns a Segment when one is complete.

    A segment closes after ``length`` transitions or at the end of an episode (so segments
    never span episodes; the last one of an episode may be shorter). Frames, when given, are
    kept every ``frame_stride`` steps, starting with the segment's first step. With
    ``knows_reward=False`` (a real arm whose target is in the person's head) the segments carry
    no true rewards and no success flags, whatever the env returned.
    """

    def __init__(self, task: str, source_id: str, length: int, frame_stride: int = 0,
                 knows_reward: bool = True) -> None:
        if length < 1:
            raise ValueError(f'segment length must be >= 1, got {length}')
        self.task, self.source_id = task, source_id
        self.length, self.frame_stride = length, frame_stride
        self.knows_reward = knows_reward
        self.episode = 0
        self._step_in_episode = 0
        self._clear()

    def _clear(self) -> None:
        self._start = self._step_in_episode
        self._rows: dict[str, list] = {k: [] for k in (
            'observations', 'actions', 'next_observations', 'rewards', 'terminated',
            'truncated', 'success', 'frames')}

    def add(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: float,
            terminated: bool, truncated: bool, success: bool, policy_version: int = 0,
            frame: np.ndarray | None = None) -> Segment | None:
        """Append one transition; returns the closed segment, if this one closed it."""
        rows = self._rows
        if self.frame_stride and len(rows['observations']) % self.frame_stride == 0:
            if frame is None:
                raise ValueError('frame_stride is set but no frame was given for this step')
            rows['frames'].append(frame)
        for key, value in (('observations', obs), ('actions', action),
                           ('next_observations', next_obs), ('rewards', reward),
                           ('terminated', terminated), ('truncated', truncated),
                           ('success', success)):
            rows[key].append(value)
        self._step_in_episode += 1
        done = terminated or truncated
        if len(rows['observations']) < self.length and not done:
            return None
        segment = Segment(
            segment_id=uuid.uuid4().hex, task=self.task, source_id=self.source_id,
            episode=self.episode, start_step=self._start, policy_version=policy_version,
            observations=np.stack(rows['observations']), actions=np.stack(rows['actions']),
            next_observations=np.stack(rows['next_observations']),
            rewards=np.asarray(rows['rewards'], np.float32) if self.knows_reward else None,
            terminated=np.asarray(rows['terminated']), truncated=np.asarray(rows['truncated']),
            success=np.asarray(rows['success']) if self.knows_reward else None,
            frames=np.stack(rows['frames']) if rows['frames'] else None,
            frame_stride=self.frame_stride if rows['frames'] else 0,
            stamp_ns=time.time_ns())
        if done:
            self.episode += 1
            self._step_in_episode = 0
        self._clear()
        return segment
