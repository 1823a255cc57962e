"""Fixtures of the labelling-app tests: segments and queries, a fake clock, a model factory."""

from __future__ import annotations

import os
import zlib

os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')  # before pytest-qt builds the app

import numpy as np
import pytest

from pref_rl_gui.config import LabelerConfig
from pref_rl_gui.model import LabelingModel
from pref_rl_gui.outbox import Outbox
from pref_rl_learner.types import PreferenceQuery, Segment

H = 10


def make_segment(segment_id: str, *, task: str = 'point_mass', obs_dim: int = 4,
                 episode: int = 0, start_step: int = 0, end: bool = False,
                 reward: float = 0.0, frames: bool = False, source_id: str = 'robot',
                 length: int = H) -> Segment:
    """A segment with deterministic random observations (positions in [-1, 1])."""
    rng = np.random.default_rng(zlib.crc32(segment_id.encode()))
    obs = rng.uniform(-1, 1, (length, obs_dim)).astype(np.float32)
    done = np.zeros(length, bool)
    done[-1] = end
    pixels = None
    if frames:
        pixels = rng.integers(0, 255, (-(-length // 5), 8, 8, 3), dtype=np.uint8)
    return Segment(segment_id=segment_id, task=task, observations=obs,
                   actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                   next_observations=np.roll(obs, -1, axis=0), terminated=np.zeros(length, bool),
                   truncated=done, rewards=np.full(length, reward, np.float32),
                   frames=pixels, frame_stride=5 if frames else 0, source_id=source_id,
                   episode=episode, start_step=start_step)


def make_query(query_id: str, left_reward: float = 0.0, right_reward: float = 1.0,
               segments: str = '', **kwargs: object) -> PreferenceQuery:
    """A query of two segments ``<segments or id>-l`` and ``-r``."""
    base = segments or query_id
    return PreferenceQuery(query_id=query_id,
                           left=make_segment(f'{base}-l', reward=left_reward, **kwargs),
                           right=make_segment(f'{base}-r', reward=right_reward, **kwargs))


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSink:
    """Collects the labels the model sends; the test answers for the learner."""

    def __init__(self) -> None:
        self.sent = []

    def submit(self, label) -> None:
        self.sent.append(label)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def segment_factory():
    return make_segment


@pytest.fixture
def query_factory():
    return make_query


@pytest.fixture
def model_factory(tmp_path, clock):
    """``make(**config)`` -> (model, sink) over an outbox in ``tmp_path/outbox``; every
    outbox it opened is closed at the end."""
    opened = []

    def make(sink=None, standalone=False, **config):
        config.setdefault('labeler_id', 'alice')
        config.setdefault('outbox_dir', str(tmp_path / 'outbox'))
        cfg = LabelerConfig(**config)
        outbox = Outbox.open(cfg.outbox_dir, fsync=False)
        opened.append(outbox)
        sink = sink if sink is not None else RecordingSink()
        return LabelingModel(cfg, outbox, sink=sink, clock=clock, standalone=standalone), sink

    yield make
    for outbox in opened:
        outbox.close()
