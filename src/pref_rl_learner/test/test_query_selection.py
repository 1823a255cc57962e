"""Query selection: every sampler picks distinct valid pairs, each by its own criterion."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import ConfigError, from_mapping
from pref_rl_learner.query_selection import (
    NEEDS_PREDICTOR,
    SAMPLERS,
    PreferencePredictor,
    QuerySelectionConfig,
    QuerySelectionError,
    QuerySelector,
    kcenter_greedy,
    pair_features,
    pool_size,
    sampler_for_session,
    select_queries,
)


class FakePredictor:
    """Returns fixed member probabilities ``[M, P]`` for the whole candidate pool."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = np.asarray(probs, np.float64)

    def preference_probs(self, pairs: SegmentPairs) -> np.ndarray:
        return self.probs


def random_pairs(num: int, length: int = 4, obs_dim: int = 3, act_dim: int = 2,
                 seed: int = 0) -> SegmentPairs:
    rng = np.random.default_rng(seed)

    def draw(dim: int) -> np.ndarray:
        return rng.normal(size=(num, length, dim)).astype(np.float32)

    return SegmentPairs(draw(obs_dim), draw(act_dim), draw(obs_dim), draw(act_dim))


def random_predictor(num: int, members: int = 3, seed: int = 0) -> FakePredictor:
    return FakePredictor(np.random.default_rng(seed).uniform(size=(members, num)))


@pytest.mark.parametrize('sampler', SAMPLERS)
@pytest.mark.parametrize('num_queries', [0, 1, 7, 40, 60])
def test_every_sampler_returns_distinct_valid_indices(sampler, num_queries):
    pairs = random_pairs(40)
    labelled = random_pairs(5, seed=9)
    idx = select_queries(pairs, num_queries, sampler, np.random.default_rng(1),
                         random_predictor(40), labelled)
    assert idx.dtype == np.int64
    assert len(idx) == min(num_queries, 40)
    assert len(np.unique(idx)) == len(idx)
    assert ((idx >= 0) & (idx < 40)).all()


def test_uniform_is_uniform():
    counts = np.zeros(20)
    rng = np.random.default_rng(2)
    for _ in range(2000):
        counts[select_queries(random_pairs(20), 5, 'uniform', rng)] += 1
    expected = 2000 * 5 / 20
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_disagreement_picks_the_pairs_where_members_disagree_most():
    num = 50
    rng = np.random.default_rng(3)
    probs = np.tile(rng.uniform(0.2, 0.8, size=num), (4, 1))  # members agree...
    loud = np.array([3, 17, 29, 41])
    probs[:, loud] = [[0.05], [0.95], [0.1], [0.9]]  # ...except on these pairs
    probs[:, 10] = [0.4, 0.6, 0.45, 0.55]  # mild disagreement: ranked fifth
    idx = select_queries(random_pairs(num), 5, 'disagreement', rng, FakePredictor(probs))
    assert set(idx[:4]) == set(loud)
    assert idx[4] == 10


def test_entropy_picks_the_pairs_nearest_one_half():
    num = 60
    rng = np.random.default_rng(4)
    mean = rng.choice([0.05, 0.1, 0.9, 0.97], size=num)
    mean[[5, 22, 48]] = [0.5, 0.48, 0.53]
    probs = np.stack([mean, mean])  # no disagreement at all
    idx = select_queries(random_pairs(num), 3, 'entropy', rng, FakePredictor(probs))
    assert set(idx) == {5, 22, 48}


def clustered_pairs(centres: np.ndarray, per_cluster: list[int], seed: int = 0) -> SegmentPairs:
    """Pairs whose flattened features sit in tight clusters around ``centres``."""
    rng = np.random.default_rng(seed)
    length, obs_dim, act_dim = 3, 2, 1
    dim = 2 * length * (obs_dim + act_dim)
    rows = [c + 0.01 * rng.normal(size=(n, dim)) for c, n in zip(centres, per_cluster,
                                                                 strict=True)]
    flat = np.concatenate(rows).astype(np.float32)
    num, split = flat.shape[0], length * obs_dim
    parts = np.split(flat, [split, split + length * act_dim, 2 * split + length * act_dim],
                     axis=1)
    shapes = [(num, length, obs_dim), (num, length, act_dim)] * 2
    return SegmentPairs(*(p.reshape(s) for p, s in zip(parts, shapes, strict=True)))


def cluster_of(pairs: SegmentPairs, centres: np.ndarray) -> np.ndarray:
    feats = pair_features(pairs)
    return np.argmin(((feats[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


def test_kcenter_covers_every_cluster():
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=10.0, size=(6, 18))
    sizes = [200, 3, 50, 2, 30, 5]  # uniform sampling would miss the small clusters
    pairs = clustered_pairs(centres, sizes)
    idx = select_queries(pairs, 6, 'kcenter', rng)
    assert sorted(cluster_of(pairs.take(idx), centres)) == list(range(6))
    uniform = select_queries(pairs, 6, 'uniform', np.random.default_rng(0))
    assert len(set(cluster_of(pairs.take(uniform), centres))) < 6


def test_kcenter_avoids_clusters_already_labelled():
    rng = np.random.default_rng(6)
    centres = rng.normal(scale=10.0, size=(5, 18))
    pairs = clustered_pairs(centres, [20] * 5)
    labelled = clustered_pairs(centres[:3], [2, 2, 2], seed=1)
    idx = select_queries(pairs, 2, 'kcenter', rng, labelled=labelled)
    assert sorted(cluster_of(pairs.take(idx), centres)) == [3, 4]


def test_kcenter_on_states_only_ignores_actions():
    pairs = random_pairs(30, seed=7)
    pairs = pairs._replace(left_actions=pairs.left_actions * 1000)
    assert pair_features(pairs, 'state').shape == (30, 2 * 4 * 3)
    a = select_queries(pairs, 5, 'kcenter', np.random.default_rng(0),
                       kcenter_features='state')
    b = select_queries(pairs._replace(left_actions=pairs.left_actions * 0), 5, 'kcenter',
                       np.random.default_rng(0), kcenter_features='state')
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('kind', ['disagreement', 'entropy'])
def test_kcenter_plus_uncertainty_keeps_only_uncertain_pairs_and_spreads_them(kind):
    rng = np.random.default_rng(8)
    centres = rng.normal(scale=10.0, size=(4, 18))
    pairs = clustered_pairs(centres, [25] * 4)  # pairs 0-24 cluster 0, 25-49 cluster 1, ...
    num = pairs.num_pairs
    certain = np.full(num, 0.02)
    certain[::2] = 0.5  # the even pairs are uncertain (and disagreed on)
    probs = np.stack([certain, certain]) if kind == 'entropy' else np.stack(
        [np.where(certain == 0.5, 0.1, 0.02), np.where(certain == 0.5, 0.9, 0.02)])
    idx = select_queries(pairs, 4, f'kcenter_{kind}', rng, FakePredictor(probs))
    assert (idx % 2 == 0).all()  # pre-selection: the uncertain half of the pool
    assert sorted(cluster_of(pairs.take(idx), centres)) == [0, 1, 2, 3]


@pytest.mark.parametrize('sampler', NEEDS_PREDICTOR)
def test_missing_predictor_is_a_typed_error(sampler):
    with pytest.raises(QuerySelectionError, match='no predictor'):
        select_queries(random_pairs(10), 3, sampler, np.random.default_rng(0))


def test_bad_predictor_output_and_bad_arguments_are_rejected():
    pairs = random_pairs(10)
    rng = np.random.default_rng(0)
    with pytest.raises(QuerySelectionError, match='shape'):
        select_queries(pairs, 3, 'entropy', rng, FakePredictor(np.full((2, 9), 0.5)))
    with pytest.raises(QuerySelectionError, match=r'outside \[0, 1\]'):
        select_queries(pairs, 3, 'entropy', rng, FakePredictor(np.full((2, 10), 1.5)))
    with pytest.raises(QuerySelectionError, match='at least 2 members'):
        select_queries(pairs, 3, 'disagreement', rng, FakePredictor(np.full((1, 10), 0.5)))
    with pytest.raises(ConfigError, match='sampler'):
        select_queries(pairs, 3, 'random', rng)
    with pytest.raises(ConfigError, match='num_queries'):
        select_queries(pairs, -1, 'uniform', rng)
    with pytest.raises(QuerySelectionError, match='features'):
        select_queries(pairs, 3, 'kcenter', rng, labelled=random_pairs(4, obs_dim=5))


def test_config_pool_and_uniform_sessions():
    config = QuerySelectionConfig(sampler='kcenter_entropy', pool_multiplier=10,
                                  uniform_sessions=2, kcenter_features='state')
    assert pool_size(config, 8) == 80
    assert [sampler_for_session(config, s) for s in range(4)] == [
        'uniform', 'uniform', 'kcenter_entropy', 'kcenter_entropy']
    assert from_mapping(QuerySelectionConfig, {'sampler': 'entropy'}).sampler == 'entropy'
    for bad in ({'sampler': 'bald'}, {'pool_multiplier': 0}, {'uniform_sessions': -1},
                {'kcenter_features': 'pixels'}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            QuerySelectionConfig(**bad)
    assert isinstance(random_predictor(3), PreferencePredictor)


def test_selector_uses_uniform_first_then_the_configured_sampler():
    selector = QuerySelector(QuerySelectionConfig(sampler='entropy', uniform_sessions=1))
    pairs = random_pairs(20)
    probs = np.full((2, 20), 0.99)
    probs[:, 7] = 0.5
    # Session 0 needs no predictor (uniform); session 1 uses entropy and finds pair 7.
    assert len(selector.select(pairs, 3, 0, np.random.default_rng(0))) == 3
    assert selector.select(pairs, 1, 1, np.random.default_rng(0), FakePredictor(probs))[0] == 7


def test_kcenter_on_a_full_size_pool_is_fast_and_memory_bounded():
    # B-Pref scale: a pool of 1000 pairs of 25 steps of 39-D state-action, 2000 labelled.
    rng = np.random.default_rng(9)
    feats = rng.normal(size=(1000, 2 * 25 * 39)).astype(np.float32)
    labelled = rng.normal(size=(2000, 2 * 25 * 39)).astype(np.float32)
    start = time.perf_counter()
    idx = kcenter_greedy(feats, 100, rng, labelled)
    elapsed = time.perf_counter() - start
    assert len(np.unique(idx)) == 100
    assert elapsed < 10.0, elapsed
