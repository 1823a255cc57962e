"""Feedback schedules and the feedback budget."""

from __future__ import annotations

import numpy as np
import pytest

from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.errors import InvalidLabelError
from pref_rl_learner.schedule import (
    BudgetExceededError,
    FeedbackBudget,
    FeedbackBudgetError,
    FeedbackSchedule,
    FeedbackScheduleConfig,
)
from pref_rl_learner.types import Choice


def schedule(**kwargs) -> FeedbackSchedule:
    return FeedbackSchedule(FeedbackScheduleConfig(**kwargs))


def test_sessions_are_due_every_interval_from_the_first_session_step():
    s = schedule(first_session_step=10_000, session_interval_steps=5000)
    due = [step for step in range(0, 30_001) if s.is_session_due(step)]
    assert due == [10_000, 15_000, 20_000, 25_000, 30_000]
    assert [s.sessions_due(step) for step in (9_999, 10_000, 14_999, 15_000, 31_000)] == [
        0, 1, 1, 2, 5]
    assert s.session_step(3) == 25_000


def test_constant_schedule_asks_q_until_the_budget_runs_out():
    s = schedule(kind='constant', queries_per_session=8, total_budget=30)
    budget = FeedbackBudget(total=30)
    asked = []
    for session in range(6):
        n = s.queries_for_session(s.session_step(session), budget.remaining())
        asked.append(n)
        budget.record([Choice.LEFT] * n)
    assert asked == [8, 8, 8, 6, 0, 0]
    assert budget.asked == 30 and budget.remaining() == 0


def test_linear_schedule_is_b_pref_linear_floored_at_one():
    s = schedule(kind='linear', queries_per_session=10, total_steps=100_000)
    steps = [0, 10_000, 25_000, 50_000, 70_000, 95_000, 99_999, 100_000]
    assert [s.queries_for_session(t, 1000) for t in steps] == [10, 9, 7, 5, 3, 1, 1, 1]
    # floor(q · (1 − t/T)), as B-Pref's int(mb_size · frac).
    for t in range(0, 100_000, 1_000):
        assert s.queries_for_session(t, 1000) == max(1, int(10 * (100_000 - t) / 100_000))


def test_decay_schedule_is_q_h_over_h_plus_t():
    s = schedule(kind='decay', queries_per_session=20, decay_horizon_steps=100_000)
    assert s.queries_for_session(0, 1000) == 20
    assert s.queries_for_session(100_000, 1000) == 10  # halved at t = H
    assert s.queries_for_session(300_000, 1000) == 5
    assert s.queries_for_session(10_000_000, 1000) == 1  # never below 1
    counts = [s.queries_for_session(t, 1000) for t in range(0, 1_000_000, 5000)]
    assert counts == sorted(counts, reverse=True)  # non-increasing
    assert s.rate(50_000) == pytest.approx(2 / 3)


@pytest.mark.parametrize('kind', ['constant', 'linear', 'decay'])
def test_no_schedule_ever_exceeds_the_budget(kind):
    s = schedule(kind=kind, queries_per_session=7, total_budget=50, total_steps=200_000,
                 decay_horizon_steps=20_000, session_interval_steps=5000)
    budget = FeedbackBudget(total=50)
    rng = np.random.default_rng(0)
    for session in range(100):
        n = s.queries_for_session(s.session_step(session), budget.remaining())
        assert 0 <= n <= budget.remaining()
        budget.record(rng.choice([int(c) for c in Choice], size=n))
    assert budget.asked <= 50
    assert s.queries_for_session(0, 0) == 0
    assert s.queries_for_session(0, 3) == 3


def test_budget_counts_skipped_and_every_other_answer():
    budget = FeedbackBudget(total=10)
    budget.record(np.array([1, 2, 2, 3, 5, 5, 4], np.int8))
    assert budget.as_dict() == {'total': 10, 'asked': 7, 'labelled': 4, 'left': 1, 'right': 2,
                                'equal': 1, 'incomparable': 1, 'skipped': 2, 'remaining': 3}
    budget.record([Choice.SKIP])
    assert budget.skipped == 3 and budget.remaining() == 2
    with pytest.raises(BudgetExceededError, match='over the budget'):
        budget.record([Choice.LEFT] * 3)
    assert budget.asked == 8  # nothing was counted
    with pytest.raises(InvalidLabelError, match='choice 7'):
        budget.record([1, 7])
    assert budget.asked == 8


def test_budget_state_dict_round_trips_and_is_checked():
    budget = FeedbackBudget(total=20)
    budget.record([1, 1, 2, 3, 4, 5])
    state = budget.state_dict()
    assert all(type(v) is int for v in state.values())
    restored = FeedbackBudget(total=0)
    restored.load_state_dict(state)
    assert restored == budget
    with pytest.raises(FeedbackBudgetError, match='keys'):
        restored.load_state_dict({'total': 3})
    with pytest.raises(FeedbackBudgetError, match='labelled'):
        restored.load_state_dict({**state, 'labelled': 99})
    assert restored == budget  # a rejected state changes nothing


def test_config_validation():
    assert from_mapping(FeedbackScheduleConfig, {'kind': 'decay'}).kind == 'decay'
    for bad in ({'kind': 'exponential'}, {'queries_per_session': 0},
                {'session_interval_steps': 0}, {'first_session_step': -1},
                {'total_budget': -5}, {'total_steps': 0}, {'decay_horizon_steps': 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            FeedbackScheduleConfig(**bad)
