"""Feedback schedules (when to ask, how many queries) and the feedback budget counter.

Sessions happen every ``session_interval_steps`` env steps from ``first_session_step`` on,
as in PEBBLE (Lee et al. 2021, https://arxiv.org/abs/2106.05091: every 5000 steps after the
seed and unsupervised phases). The number of queries per session follows one of:

- ``constant``: ``q`` every session.
- ``linear`` (B-Pref's ``reward_schedule=1``): ``floor(q * (1 - t / total_steps))``, at least
  1, where ``t`` is the env step of the session counted from the start of the run.
- ``decay``: ``floor(q * H / (H + t))``, at least 1, with ``H = decay_horizon_steps``. This
  is the form of DRLHP (Christiano et al. 2017, https://arxiv.org/abs/1706.03741, Sec. 2.2.4:
  labels requested at a rate proportional to ``5e6 / (T + 5e6)`` for T frames), expressed per
  session; ``t`` is again counted from the start of the run, as T is there.

Every count is capped at the remaining budget, so a session never overdraws it. The budget
counts every query asked, skipped ones included (as B-Pref's ``total_feedback`` does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import InvalidLabelError, PrefRLError
from pref_rl_learner.types import Choice

SCHEDULES = ('constant', 'linear', 'decay')
"""Names of the per-session query-count rules."""


class FeedbackBudgetError(PrefRLError, ValueError):
    """Feedback budget counts are inconsistent (e.g. a bad checkpoint) or overdrawn."""


class BudgetExceededError(FeedbackBudgetError):
    """More answers were recorded than the feedback budget allows."""


@dataclass(frozen=True)
class FeedbackScheduleConfig:
    """When feedback sessions happen and how many queries each asks."""

    kind: str = 'constant'
    """``constant``, ``linear`` (B-Pref) or ``decay`` (DRLHP's q·H/(H+t))."""
    queries_per_session: int = 10
    """Queries in a session at full rate (``q``)."""
    session_interval_steps: int = 5000
    """Env steps between feedback sessions (PEBBLE: 5000)."""
    first_session_step: int = 0
    """Env step of the first session (after the seed and unsupervised phases)."""
    total_budget: int = 100
    """Most queries asked in total; skipped ones count."""
    total_steps: int = 1_000_000
    """Run length in env steps (the ``linear`` schedule reaches 0 there)."""
    decay_horizon_steps: int = 100_000
    """``H`` of the ``decay`` schedule: the rate has halved at step ``H`` (and is q/11 at
    10·H); DRLHP's Atari value is 5e6 frames."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.kind not in SCHEDULES:
            raise ConfigError(f"{name}.kind: {self.kind!r} is not one of {', '.join(SCHEDULES)}")
        for field, low in (('queries_per_session', 1), ('session_interval_steps', 1),
                           ('first_session_step', 0), ('total_budget', 0), ('total_steps', 1),
                           ('decay_horizon_steps', 1)):
            if getattr(self, field) < low:
                raise ConfigError(f'{name}.{field}: {getattr(self, field)} must be >= {low}')


class FeedbackSchedule:
    """Decides when a session is due and how many queries it asks."""

    def __init__(self, config: FeedbackScheduleConfig) -> None:
        self.config = config

    def is_session_due(self, step: int) -> bool:
        """True at ``first_session_step`` and every ``session_interval_steps`` after it.

        For a caller that calls this once per env step. A caller that advances in jumps (the
        ROS learner, which receives whole segments) should compare :meth:`sessions_due`
        with the number of sessions it has held instead.
        """
        offset = step - self.config.first_session_step
        return offset >= 0 and offset % self.config.session_interval_steps == 0

    def sessions_due(self, step: int) -> int:
        """How many sessions should have started by env step ``step`` (inclusive)."""
        offset = step - self.config.first_session_step
        return 0 if offset < 0 else offset // self.config.session_interval_steps + 1

    def session_step(self, session: int) -> int:
        """Env step of session ``session`` (0-based)."""
        return self.config.first_session_step + session * self.config.session_interval_steps

    def rate(self, step: int) -> float:
        """Fraction of ``queries_per_session`` asked at ``step`` (before flooring)."""
        cfg = self.config
        if cfg.kind == 'linear':
            return max(0.0, 1.0 - step / cfg.total_steps)
        if cfg.kind == 'decay':
            return cfg.decay_horizon_steps / (cfg.decay_horizon_steps + max(step, 0))
        return 1.0

    def queries_for_session(self, step: int, remaining_budget: int) -> int:
        """Queries to ask in the session at env step ``step``, never above the budget left.

        ``constant``: q; ``linear``: floor(q·(1 − step/total_steps)) floored at 1; ``decay``:
        floor(q·H/(H + step)) floored at 1. Returns 0 once the budget is spent.
        """
        wanted = self.config.queries_per_session
        if self.config.kind != 'constant':
            # The small epsilon keeps e.g. 10 * 0.3 = 2.9999999999999996 from flooring to 2.
            wanted = max(1, math.floor(wanted * self.rate(step) + 1e-9))
        return max(0, min(wanted, remaining_budget))


@dataclass
class FeedbackBudget:
    """Counts of queries asked and answers given (a mutable counter, not config).

    ``asked = labelled + skipped + incomparable`` and ``labelled = left + right + equal``:
    every answered query counts against ``total`` whatever the answer.
    """

    total: int
    """Most queries that may be asked."""
    asked: int = 0
    """Queries answered so far, whatever the answer."""
    labelled: int = 0
    """Answers usable for training: left, right or equal."""
    left: int = 0
    """LEFT answers."""
    right: int = 0
    """RIGHT answers."""
    equal: int = 0
    """EQUAL answers."""
    incomparable: int = 0
    """INCOMPARABLE answers (stored, not trained on)."""
    skipped: int = 0
    """SKIP answers (count against the budget)."""

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        counts = self.as_dict()
        if any(v < 0 for v in counts.values()):
            raise FeedbackBudgetError(f'feedback budget counts must be >= 0: {counts}')
        if self.labelled != self.left + self.right + self.equal:
            raise FeedbackBudgetError(f'labelled != left + right + equal: {counts}')
        if self.asked != self.labelled + self.skipped + self.incomparable:
            raise FeedbackBudgetError(f'asked != labelled + skipped + incomparable: {counts}')
        if self.asked > self.total:
            raise BudgetExceededError(f'{self.asked} queries asked, budget is {self.total}')

    def remaining(self) -> int:
        """Queries that may still be asked."""
        return max(0, self.total - self.asked)

    def record(self, choices: np.ndarray | Sequence[Choice | int]) -> None:
        """Count a batch of answers (``Choice`` values, e.g. a teacher's int8 array).

        Raises:
            InvalidLabelError: a value is not a ``Choice``.
            BudgetExceededError: the batch would take ``asked`` past ``total`` (nothing is
                counted then).
        """
        values = np.asarray(choices, dtype=np.int64).reshape(-1)
        valid = np.isin(values, [int(c) for c in Choice])
        if not valid.all():
            raise InvalidLabelError(
                f'choice {int(values[~valid][0])} is not one of '
                f"{', '.join(f'{c.name}={c.value}' for c in Choice)}")
        if self.asked + values.size > self.total:
            raise BudgetExceededError(
                f'recording {values.size} answers would make {self.asked + values.size} '
                f'queries, over the budget of {self.total}')
        counts = {c: int(np.count_nonzero(values == c)) for c in Choice}
        self.left += counts[Choice.LEFT]
        self.right += counts[Choice.RIGHT]
        self.equal += counts[Choice.EQUAL]
        self.incomparable += counts[Choice.INCOMPARABLE]
        self.skipped += counts[Choice.SKIP]
        self.labelled += counts[Choice.LEFT] + counts[Choice.RIGHT] + counts[Choice.EQUAL]
        self.asked += int(values.size)

    def as_dict(self) -> dict[str, int]:
        """All counts and ``remaining``, for the CSV/TensorBoard logger."""
        return {'total': self.total, 'asked': self.asked, 'labelled': self.labelled,
                'left': self.left, 'right': self.right, 'equal': self.equal,
                'incomparable': self.incomparable, 'skipped': self.skipped,
                'remaining': max(0, self.total - self.asked)}

    def state_dict(self) -> dict[str, int]:
        """Plain ints for a checkpoint."""
        counts = self.as_dict()
        del counts['remaining']
        return counts

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore the counts of :meth:`state_dict` (checked for consistency)."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise FeedbackBudgetError(
                f'budget state has keys {sorted(state)}, expected {sorted(expected)}')
        before = self.state_dict()
        for key in expected:
            setattr(self, key, int(state[key]))
        try:
            self._check()
        except FeedbackBudgetError:
            for key, value in before.items():
                setattr(self, key, value)
            raise
