"""Label sources of the DRLHP worker: the seam between selected queries and their answers.

A :class:`PreferenceGatherer` is told about queries once they are stored and returns the
answers it has at once. The scripted teacher answers everything immediately from the true
rewards; the external gatherer answers nothing itself: its queries stay pending in the
preference store until a person (the Qt labelling app, a script) answers them through
:meth:`pref_rl_learner.drlhp.wrapper.PreferenceRewardWrapper.submit_label`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.drlhp.config import DrlhpConfig
from pref_rl_learner.teacher import TEACHER_PRESETS, ScriptedTeacher
from pref_rl_learner.types import Choice, PreferenceLabel, PreferenceQuery


@runtime_checkable
class PreferenceGatherer(Protocol):
    """Where the worker's labels come from."""

    labeler_id: str
    """Recorded with every label this source gives."""
    answers_immediately: bool
    """True when :meth:`ask` returns a label for every query (no pending queries)."""

    def ask(self, queries: Sequence[PreferenceQuery], pairs: SegmentPairs
            ) -> list[PreferenceLabel]:
        """Labels available right now for ``queries`` (already stored); ``pairs`` holds
        their segments in the same order, true rewards included when known."""
        ...

    def observe_episode(self, true_return: float, length: int) -> None:
        """A training episode ended with this true return (scripted teachers scale by it)."""
        ...


class ScriptedGatherer:
    """Synthetic preferences from true rewards (B-Pref teachers, ``oracle`` by default)."""

    answers_immediately = True

    def __init__(self, preset: str, rng: np.random.Generator) -> None:
        self.teacher = ScriptedTeacher(TEACHER_PRESETS[preset], rng)
        self.labeler_id = f'teacher/{preset}'

    def ask(self, queries: Sequence[PreferenceQuery], pairs: SegmentPairs
            ) -> list[PreferenceLabel]:
        """Label every query at once."""
        if not queries:
            return []
        choices = self.teacher.label(pairs)
        now = time.time_ns()
        return [PreferenceLabel(query_id=q.query_id, choice=Choice(int(c)),
                                labeler_id=self.labeler_id, stamp_ns=now)
                for q, c in zip(queries, choices, strict=True)]

    def observe_episode(self, true_return: float, length: int) -> None:
        """Feed the teacher's skip/equal thresholds."""
        self.teacher.observe_episode_return(true_return, length)


class ExternalGatherer:
    """A person or another program answers later, through the wrapper's ``submit_label``."""

    answers_immediately = False
    labeler_id = 'external'

    def ask(self, queries: Sequence[PreferenceQuery], pairs: SegmentPairs
            ) -> list[PreferenceLabel]:
        """Nothing now: the queries stay pending in the store."""
        return []

    def observe_episode(self, true_return: float, length: int) -> None:
        """Unused: a person needs no return scale."""


def make_gatherer(config: DrlhpConfig, rng: np.random.Generator) -> PreferenceGatherer:
    """The gatherer ``config.label_source`` names."""
    if config.label_source == 'scripted':
        return ScriptedGatherer(config.teacher_preset, rng)
    return ExternalGatherer()
