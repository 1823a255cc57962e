"""Query selection: which candidate pairs of segments to ask a teacher about.

The samplers of B-Pref (Lee et al. 2021, https://arxiv.org/abs/2111.03026, Sec. 4 and
Appendix), all picking ``num_queries`` distinct pairs out of a candidate pool that the caller
draws at random from the replay buffer (``pool_size``: queries x ``pool_multiplier``):

- ``uniform``: a uniform random subset (identical in law to drawing only ``num_queries``).
- ``disagreement``: largest std over ensemble members of P(right > left).
- ``entropy``: largest entropy of the ensemble-mean Bernoulli P(right > left), i.e. the pairs
  whose mean prediction is nearest 0.5. (B-Pref's code averages the members' entropies
  instead; both rank a well-calibrated ensemble alike, the mean-Bernoulli form is the
  standard "predictive entropy" and also counts member disagreement as uncertainty.)
- ``kcenter``: greedy farthest-point (k-center) selection on flattened pair features, with
  the already-labelled pairs counted as centres, so new queries cover what is not yet covered.
- ``kcenter_disagreement`` / ``kcenter_entropy``: keep the most uncertain
  ``KCENTER_PRESELECT_FRACTION`` of the pool (never fewer than ``num_queries``), then run
  k-center among them. B-Pref keeps half of its pool (``int(0.5 * mb_size * large_batch)``),
  so with the default pool multiplier of 10 this keeps 5 x ``num_queries`` pairs.

Ties in a score are broken uniformly at random (a random permutation before a stable sort),
so e.g. an untrained ensemble that predicts 0.5 everywhere degrades to uniform sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError

SAMPLERS = ('uniform', 'disagreement', 'entropy', 'kcenter', 'kcenter_disagreement',
            'kcenter_entropy')
"""Names of the query-selection rules."""
NEEDS_PREDICTOR = ('disagreement', 'entropy', 'kcenter_disagreement', 'kcenter_entropy')
"""Samplers that score pairs with the reward ensemble."""
KCENTER_FEATURES = ('state_action', 'state')
"""What k-center distances are computed on."""
KCENTER_PRESELECT_FRACTION = 0.5
"""Share of the pool pre-selected by uncertainty before k-center (B-Pref: one half)."""

_DISTANCE_CHUNK = 256  # rows of the labelled set per distance block: [P, 256] floats at a time


class QuerySelectionError(PrefRLError, ValueError):
    """Query selection cannot run: no predictor for an uncertainty sampler, or bad inputs."""


@runtime_checkable
class PreferencePredictor(Protocol):
    """Anything that predicts preferences per ensemble member (the reward ensemble)."""

    def preference_probs(self, pairs: SegmentPairs) -> np.ndarray:
        """``[M, P]``: for each of ``M`` ensemble members, P(right ≻ left) of every pair."""
        ...


@dataclass(frozen=True)
class QuerySelectionConfig:
    """How feedback queries are chosen (B-Pref samplers)."""

    sampler: str = 'disagreement'
    """One of ``SAMPLERS``: uniform, disagreement, entropy, kcenter, kcenter_disagreement,
    kcenter_entropy."""
    pool_multiplier: int = 10
    """Candidate pool = queries x this (B-Pref: 10)."""
    uniform_sessions: int = 1
    """The first N feedback sessions use uniform sampling (the ensemble is untrained)."""
    kcenter_features: str = 'state_action'
    """What k-center distances are computed on: ``state_action`` or ``state`` (B-Pref)."""

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"QuerySelectionConfig.sampler: {self.sampler!r} is not one of "
                              f"{', '.join(SAMPLERS)}")
        if self.pool_multiplier < 1:
            raise ConfigError(
                f'QuerySelectionConfig.pool_multiplier: {self.pool_multiplier} must be >= 1')
        if self.uniform_sessions < 0:
            raise ConfigError(
                f'QuerySelectionConfig.uniform_sessions: {self.uniform_sessions} must be >= 0')
        if self.kcenter_features not in KCENTER_FEATURES:
            raise ConfigError(
                f'QuerySelectionConfig.kcenter_features: {self.kcenter_features!r} is not one '
                f"of {', '.join(KCENTER_FEATURES)}")


def pool_size(config: QuerySelectionConfig, num_queries: int) -> int:
    """Number of candidate pairs to draw for a session asking ``num_queries`` queries."""
    return max(0, num_queries) * config.pool_multiplier


def sampler_for_session(config: QuerySelectionConfig, session: int) -> str:
    """The sampler of feedback session ``session`` (0-based): uniform for the first ones."""
    return 'uniform' if session < config.uniform_sessions else config.sampler


def pair_features(pairs: SegmentPairs, kcenter_features: str = 'state_action') -> np.ndarray:
    """``[P, D]`` float32: each pair's left then right segment, flattened (k-center space)."""
    parts = [pairs.left_observations, pairs.right_observations]
    if kcenter_features == 'state_action':
        parts = [pairs.left_observations, pairs.left_actions,
                 pairs.right_observations, pairs.right_actions]
    elif kcenter_features != 'state':
        raise ConfigError(f'kcenter_features: {kcenter_features!r} is not one of '
                          f"{', '.join(KCENTER_FEATURES)}")
    num = pairs.num_pairs
    return np.concatenate([np.asarray(p, np.float32).reshape(num, -1) for p in parts], axis=1)


def _min_sq_distances(points64: np.ndarray, point_sq: np.ndarray,
                      centres: np.ndarray) -> np.ndarray:
    """``[P]``: squared distance from each point to its nearest centre, in chunks."""
    best = np.full(points64.shape[0], np.inf)
    for start in range(0, centres.shape[0], _DISTANCE_CHUNK):
        block = centres[start:start + _DISTANCE_CHUNK].astype(np.float64)
        # |x - c|^2 = |x|^2 + |c|^2 - 2 x.c, one [P, chunk] block at a time.
        sq = point_sq[:, None] + np.einsum('ij,ij->i', block, block)[None, :]
        sq -= 2.0 * points64 @ block.T
        np.minimum(best, sq.min(axis=1), out=best)
    return np.maximum(best, 0.0)


def kcenter_greedy(features: np.ndarray, num_queries: int, rng: np.random.Generator,
                   labelled_features: np.ndarray | None = None) -> np.ndarray:
    """Greedy k-center: repeatedly take the point farthest from every centre so far.

    Centres start as ``labelled_features`` (the pairs already asked, as in B-Pref); with none,
    the first point is drawn at random. Returns ``min(num_queries, P)`` distinct indices.
    Memory: the features in float64 plus one ``[P, 256]`` distance block (never a
    ``[P, L, D]`` difference tensor); each pick only updates the running nearest-centre
    distance with the new centre, so the cost is ``O((L + k) · P · D)``.
    """
    num = features.shape[0]
    count = min(num_queries, num)
    if count <= 0:
        return np.zeros(0, np.int64)
    features64 = features.astype(np.float64)
    feature_sq = np.einsum('ij,ij->i', features64, features64)
    if labelled_features is not None and labelled_features.shape[0] > 0:
        if labelled_features.shape[1] != features.shape[1]:
            raise QuerySelectionError(
                f'labelled pairs have {labelled_features.shape[1]} features per pair, the '
                f'candidates {features.shape[1]}: they must come from the same task')
        nearest = _min_sq_distances(features64, feature_sq, labelled_features)
        first = None
    else:
        nearest = np.full(num, np.inf)
        first = int(rng.integers(num))
    chosen: list[int] = []
    for _ in range(count):
        if first is not None:
            pick, first = first, None
        else:
            pick = int(np.argmax(nearest))
        chosen.append(pick)
        centre = features64[pick]
        # Squared distance to the new centre: |x|^2 + |c|^2 - 2 x.c (no [P, D] temporary).
        sq = feature_sq + feature_sq[pick] - 2.0 * (features64 @ centre)
        np.minimum(nearest, np.maximum(sq, 0.0), out=nearest)
        nearest[chosen] = -np.inf  # never pick a centre twice, even among duplicates
    return np.asarray(chosen, np.int64)


def _member_probs(pairs: SegmentPairs, sampler: str,
                  predictor: PreferencePredictor | None) -> np.ndarray:
    if predictor is None:
        raise QuerySelectionError(
            f"sampler {sampler!r} scores pairs with the reward ensemble, but no predictor was "
            "given (use 'uniform' or 'kcenter' before a reward model exists)")
    probs = np.asarray(predictor.preference_probs(pairs), np.float64)
    if probs.ndim != 2 or probs.shape[1] != pairs.num_pairs:
        raise QuerySelectionError(
            f'preference_probs returned shape {probs.shape}, expected [members, '
            f'{pairs.num_pairs}]')
    if not (np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()):
        raise QuerySelectionError('preference_probs returned values outside [0, 1] or NaN')
    if sampler.endswith('disagreement') and probs.shape[0] < 2:
        raise QuerySelectionError(
            f'sampler {sampler!r} needs an ensemble of at least 2 members, got '
            f"{probs.shape[0]} (use 'entropy' with a single model)")
    return probs


def uncertainty_scores(probs: np.ndarray, kind: str) -> np.ndarray:
    """``[P]`` scores from member probabilities ``[M, P]``: higher = ask first.

    ``disagreement``: std over members of P(right ≻ left). ``entropy``: entropy (nats) of
    the Bernoulli with the member-mean probability.
    """
    if kind == 'disagreement':
        return probs.std(axis=0)
    p = np.clip(probs.mean(axis=0), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def _top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    # Random permutation first, then a stable sort: equal scores are ordered at random.
    order = rng.permutation(scores.shape[0])
    return order[np.argsort(-scores[order], kind='stable')[:k]]


def select_queries(pairs: SegmentPairs, num_queries: int, sampler: str,
                   rng: np.random.Generator, predictor: PreferencePredictor | None = None,
                   labelled: SegmentPairs | None = None, *,
                   kcenter_features: str = 'state_action') -> np.ndarray:
    """Indices (distinct, int64) of the pairs to ask, ``min(num_queries, P)`` of them.

    Args:
        pairs: the candidate pool.
        num_queries: how many to pick.
        sampler: one of ``SAMPLERS``.
        rng: source of all randomness (uniform draws, tie-breaking, first k-center point).
        predictor: the reward ensemble; required by the uncertainty samplers.
        labelled: pairs asked before; k-center treats them as existing centres.
        kcenter_features: ``state_action`` or ``state``.

    Raises:
        ConfigError: unknown sampler or negative ``num_queries``.
        QuerySelectionError: an uncertainty sampler without a (valid) predictor.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    if num_queries < 0:
        raise ConfigError(f'num_queries: {num_queries} must be >= 0')
    num = pairs.num_pairs
    count = min(num_queries, num)
    if count == 0:
        return np.zeros(0, np.int64)
    if sampler == 'uniform':
        return rng.choice(num, size=count, replace=False).astype(np.int64)
    if sampler in ('disagreement', 'entropy'):
        probs = _member_probs(pairs, sampler, predictor)
        return _top_k(uncertainty_scores(probs, sampler), count, rng).astype(np.int64)
    candidates = np.arange(num)
    if sampler != 'kcenter':
        kind = sampler.removeprefix('kcenter_')
        probs = _member_probs(pairs, sampler, predictor)
        keep = max(count, int(KCENTER_PRESELECT_FRACTION * num))
        candidates = _top_k(uncertainty_scores(probs, kind), keep, rng)
    features = pair_features(pairs.take(candidates), kcenter_features)
    labelled_features = (None if labelled is None or labelled.num_pairs == 0
                         else pair_features(labelled, kcenter_features))
    picked = kcenter_greedy(features, count, rng, labelled_features)
    return candidates[picked].astype(np.int64)


class QuerySelector:
    """Applies a :class:`QuerySelectionConfig` session by session (uniform first)."""

    def __init__(self, config: QuerySelectionConfig) -> None:
        self.config = config

    def select(self, pairs: SegmentPairs, num_queries: int, session: int,
               rng: np.random.Generator, predictor: PreferencePredictor | None = None,
               labelled: SegmentPairs | None = None) -> np.ndarray:
        """Indices of the pairs to ask in feedback session ``session`` (0-based)."""
        return select_queries(pairs, num_queries, sampler_for_session(self.config, session),
                              rng, predictor, labelled,
                              kcenter_features=self.config.kcenter_features)
