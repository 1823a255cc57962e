"""ReplayBuffer: storage, ring wrap, relabelling, segment sampling, state, input checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.sac.replay import ReplayBuffer, ReplayError

OBS, ACT = 3, 2



def transition(step: int, episode: int = 0) -> tuple:
    """A transition whose every field encodes its global step (and its episode)."""
    obs = np.array([step, episode, 0.5], np.float32)
    next_obs = np.array([step + 1, episode, 0.5], np.float32)
    action = np.array([step / 1000, -step / 1000], np.float32)
    return obs, action, float(step), next_obs


def fill(buffer: ReplayBuffer, episode_lengths: list[int]) -> None:
    """Add whole episodes (truncated at their end), numbering steps globally."""
    step = buffer.num_added
    for episode, length in enumerate(episode_lengths):
        for t in range(length):
            obs, action, reward, next_obs = transition(step, episode)
            buffer.add(obs, action, reward, next_obs, terminated=False,
                       truncated=t == length - 1)
            step += 1


def test_add_and_sample_shapes_and_consistency() -> None:
    buffer = ReplayBuffer((OBS,), ACT, capacity=100)
    fill(buffer, [30, 20])
    assert len(buffer) == 50 and buffer.num_added == 50 and buffer.num_episodes == 2
    batch = buffer.sample(64, torch.Generator().manual_seed(0))
    assert batch.observations.shape == (64, OBS) and batch.next_observations.shape == (64, OBS)
    assert batch.actions.shape == (64, ACT) and batch.rewards.shape == (64,)
    assert batch.terminated.shape == (64,)
    assert all(t.dtype == torch.float32 for t in batch)
    # Every row is one stored transition: its fields agree on the step they encode.
    step = batch.observations[:, 0]
    torch.testing.assert_close(batch.rewards, step)
    torch.testing.assert_close(batch.next_observations[:, 0], step + 1)
    torch.testing.assert_close(batch.actions[:, 0], step / 1000)
    assert step.min() >= 0 and step.max() <= 49
    assert len(set(step.tolist())) > 30  # drawn across the buffer, not one row repeated


def test_sample_is_reproducible_with_a_generator() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=100)
    fill(buffer, [50])
    a = buffer.sample(16, torch.Generator().manual_seed(3))
    b = buffer.sample(16, torch.Generator().manual_seed(3))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_terminated_is_stored_and_truncation_is_not_terminal() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=10)
    obs, action, reward, next_obs = transition(0)
    buffer.add(obs, action, reward, next_obs, terminated=True, truncated=False)
    buffer.add(obs, action, reward, next_obs, terminated=False, truncated=True)
    batch = buffer.sample(200, torch.Generator().manual_seed(0))
    assert set(batch.terminated.tolist()) == {0.0, 1.0}
    assert buffer.num_episodes == 2


def test_ring_wrap_keeps_the_newest_capacity_steps() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=10)
    fill(buffer, [25])
    assert len(buffer) == 10 and buffer.num_added == 25
    steps = buffer.sample(500, torch.Generator().manual_seed(0)).observations[:, 0]
    assert set(steps.int().tolist()) == set(range(15, 25))
    assert sorted(buffer.true_rewards.tolist()) == list(range(15, 25))
    np.testing.assert_array_equal(buffer.next_observation(24), [25, 0, 0.5])
    with pytest.raises(ReplayError, match='not stored'):
        buffer.next_observation(14)  # overwritten
    with pytest.raises(ReplayError, match='not stored'):
        buffer.next_observation(25)  # not added yet


def test_relabel_in_chunks_rewrites_training_rewards_only() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=17)
    fill(buffer, [12, 9, 20])  # 41 steps: wrapped twice, write head mid-ring
    calls = []

    def reward_fn(obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        calls.append((obs.shape[0], torch.is_grad_enabled()))
        return 2 * obs[:, 0] + 1000 * act[:, 0]  # = 3 * step

    buffer.relabel(reward_fn, chunk_size=5)
    assert all(n <= 5 for n, _ in calls) and sum(n for n, _ in calls) == 17
    assert not any(grad for _, grad in calls)
    steps = buffer.observations_view()[:, 0]
    torch.testing.assert_close(buffer.rewards, 3 * steps)
    torch.testing.assert_close(buffer.true_rewards, steps)  # untouched
    batch = buffer.sample(100, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.rewards, 3 * batch.observations[:, 0])


def test_relabel_from_start_touches_only_the_newest() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=8)
    fill(buffer, [11])  # newest step 10 sits in slot 2
    buffer.relabel(lambda obs, act: torch.full((obs.shape[0],), -1.0), start=len(buffer) - 1)
    relabelled = {int(s) for s, r in zip(buffer.observations_view()[:, 0], buffer.rewards,
                                         strict=True) if r == -1.0}
    assert relabelled == {10}
    buffer.relabel(lambda obs, act: torch.full((obs.shape[0],), -2.0), start=6)
    assert (buffer.rewards == -2.0).sum() == 2  # steps 9 and 10


def test_relabel_rejects_bad_reward_functions() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=8)
    fill(buffer, [5])
    before = buffer.rewards.clone()
    with pytest.raises(ReplayError, match='shape'):
        buffer.relabel(lambda obs, act: torch.zeros(obs.shape[0], 2))
    with pytest.raises(ReplayError, match='non-finite'):
        buffer.relabel(lambda obs, act: torch.full((obs.shape[0],), float('nan')))
    with pytest.raises(ReplayError, match='start'):
        buffer.relabel(lambda obs, act: obs[:, 0], start=6)
    assert torch.equal(buffer.rewards, before)


def brute_force_valid_starts(buffer: ReplayBuffer, length: int) -> set[int]:
    """Global steps g such that g..g+length-1 are stored, of one episode, in one ring pass."""
    stored = range(buffer.num_added - len(buffer), buffer.num_added)
    episode_of = {int(o[0]): int(o[1]) for o in buffer.observations_view()}
    valid = set()
    for g in stored:
        run = range(g, g + length)
        if (run[-1] in stored and len({episode_of[s] for s in run}) == 1
                and g % buffer.capacity + length <= buffer.capacity):
            valid.add(g)
    return valid


@pytest.mark.parametrize(('lengths', 'capacity'), [
    ([7, 5, 12, 3, 9], 100),  # not full
    ([7, 5, 12, 3, 9, 30, 6, 11, 8, 9], 37),  # wrapped, write head inside an episode
    ([25], 10),  # one episode longer than the ring: only the step count shows the head
])
def test_segments_stay_inside_episodes_and_never_wrap(lengths: list[int], capacity: int) -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=capacity)
    fill(buffer, lengths)
    length = 4
    draw = buffer.sample_segments(3000, length, np.random.default_rng(0))
    assert draw.observations.shape == (3000, length, OBS)
    assert draw.actions.shape == (3000, length, ACT) and draw.true_rewards.shape == (3000, length)
    assert draw.start_indices.dtype == np.int64
    steps = draw.observations[:, :, 0]
    # Consecutive global steps from the reported start, all of one episode.
    np.testing.assert_array_equal(steps, draw.start_indices[:, None] + np.arange(length))
    assert (draw.observations[:, :, 1] == draw.observations[:, :1, 1]).all()
    np.testing.assert_array_equal(draw.true_rewards, steps)
    # Never across the write head nor past the ring's end; and every valid start is reachable.
    assert set(draw.start_indices.tolist()) == brute_force_valid_starts(buffer, length)


def test_segments_are_distinct_when_enough_exist() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=200)
    fill(buffer, [100, 100])
    draw = buffer.sample_segments(50, 10, np.random.default_rng(1))
    assert len(set(draw.start_indices.tolist())) == 50


def test_segments_need_long_enough_episodes() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=50)
    fill(buffer, [3, 3, 3])
    with pytest.raises(ReplayError, match='consecutive steps'):
        buffer.sample_segments(2, 4, np.random.default_rng(0))


@pytest.mark.parametrize('lengths', [[6, 9], [6, 9, 20, 13]])  # partial, wrapped
def test_state_round_trip_with_weights_only_load(lengths: list[int]) -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=32)
    fill(buffer, lengths)
    buffer.relabel(lambda obs, act: -obs[:, 0])
    raw = io.BytesIO()
    torch.save(buffer.state_dict(), raw)
    raw.seek(0)
    restored = ReplayBuffer(OBS, ACT, capacity=32)
    restored.load_state_dict(torch.load(raw, weights_only=True))
    assert (len(restored), restored.num_added, restored.num_episodes) == (
        len(buffer), buffer.num_added, buffer.num_episodes)
    for a, b in zip(buffer.sample(64, torch.Generator().manual_seed(5)),
                    restored.sample(64, torch.Generator().manual_seed(5)), strict=True):
        assert torch.equal(a, b)
    a = buffer.sample_segments(20, 5, np.random.default_rng(2))
    b = restored.sample_segments(20, 5, np.random.default_rng(2))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # Both go on identically (the next step continues the same episode numbering).
    fill(buffer, [4])
    fill(restored, [4])
    assert buffer.num_episodes == restored.num_episodes
    assert torch.equal(buffer.observations_view(), restored.observations_view())


def test_state_of_another_layout_is_rejected() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=16)
    fill(buffer, [5])
    with pytest.raises(ReplayError, match='capacity'):
        ReplayBuffer(OBS, ACT, capacity=8).load_state_dict(buffer.state_dict())
    state = buffer.state_dict()
    del state['actions']
    with pytest.raises(ReplayError, match='actions'):
        ReplayBuffer(OBS, ACT, capacity=16).load_state_dict(state)


def test_bad_transitions_raise_typed_errors_and_store_nothing() -> None:
    buffer = ReplayBuffer(OBS, ACT, capacity=8)
    obs, action, reward, next_obs = transition(0)
    nan_obs = obs.copy()
    nan_obs[1] = np.nan
    cases = {
        'observation: shape': (obs[:2], action, reward, next_obs),
        'next_observation: non-finite': (obs, action, reward, next_obs + np.inf),
        'observation: non-finite': (nan_obs, action, reward, next_obs),
        'action: shape': (obs, np.zeros(3), reward, next_obs),
        'reward nan is not finite': (obs, action, float('nan'), next_obs),
    }
    for message, (o, a, r, n) in cases.items():
        with pytest.raises(ReplayError, match=message.split(' ')[0]) as info:
            buffer.add(o, a, r, n, False, False)
        assert isinstance(info.value, PrefRLError)
    assert len(buffer) == 0 and buffer.num_added == 0
    with pytest.raises(ReplayError, match='empty'):
        buffer.sample(4)
    with pytest.raises(ReplayError, match='positive'):
        ReplayBuffer(OBS, ACT, capacity=0)
