import numpy as np
import pytest
import torch

from pref_rl_learner.state_entropy import RunningMeanStd, StateEntropyReward, knn_distance


def test_knn_distance_matches_brute_force_across_chunks():
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(17, 3, generator=gen)
    reference = torch.randn(101, 3, generator=gen)
    for k in (1, 5):
        expected = torch.cdist(queries, reference).sort(dim=1).values[:, k - 1]
        assert torch.allclose(knn_distance(queries, reference, k, chunk_size=7), expected)


def test_knn_needs_k_states():
    with pytest.raises(ValueError, match='k=5'):
        knn_distance(torch.zeros(2, 3), torch.zeros(4, 3), 5)


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    stats, seen = RunningMeanStd(epsilon=0.0), []
    for size in (1, 7, 300, 2, 50):
        batch = rng.normal(3.0, 2.0, size)
        seen.append(batch)
        stats.update(torch.as_tensor(batch))
    everything = np.concatenate(seen)
    assert stats.mean == pytest.approx(everything.mean(), rel=1e-9)
    assert stats.var == pytest.approx(everything.var(), rel=1e-9)
    restored = RunningMeanStd()
    restored.load_state_dict(stats.state_dict())
    assert restored.std == stats.std


def test_isolated_states_get_more_reward():
    visited = torch.cat([torch.zeros(50, 2), torch.tensor([[10.0, 10.0]])])
    reward = StateEntropyReward(k=3)
    out = reward(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), visited)
    assert out[1] > out[0] and torch.isfinite(out).all()


def test_state_entropy_skips_the_state_itself():
    # Visited: the origin once, and states at distances 1, 2, 3, 4 from it. The k-th
    # neighbour of the origin among the others is at distance k (B-Pref: kthvalue(k + 1)).
    visited = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -4.0]])
    for k in (1, 2, 3):
        reward = StateEntropyReward(k=k)
        raw = reward(visited[:1], visited) * reward.stats.std
        assert float(raw[0]) == pytest.approx(k, rel=1e-5)
