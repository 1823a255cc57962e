"""Scripted teachers: B-Pref's simulated labellers, answering from the true rewards.

B-Pref (Lee et al. 2021, https://arxiv.org/abs/2111.03026, Sec. 3.2) models an imperfect
human with five knobs. For a pair of segments with per-step true rewards r¹, r² of length H
and undiscounted returns S¹, S², in this order:

1. skip: the pair is answered SKIP when neither segment is clearly good (rule below);
2. equal mask: |S¹ − S²| < δ_equal;
3. myopia: step k is weighted by γ^(H−1−k) (later steps weigh more): S^i_γ = Σ_k γ^(H−1−k) r^i_k;
4. rationality: P(right ≻ left) = sigmoid(β·(S²_γ − S¹_γ)), sampled; with β = ∞ the answer is
   deterministic and ties go to LEFT (the first segment, as in B-Pref);
5. mistake: the answer is flipped with probability ε;
6. pairs in the equal mask become EQUAL, then skipped pairs become SKIP.

Thresholds. B-Pref sets δ = ε · scale with scale = (mean return of the last 10 episodes) ·
H / episode length, the return a typical segment of H steps collects. Two fixes:

- **ε² flaw.** From the second session on, the reference code passes an already scaled
  margin (scale·ε) to a setter that multiplies by ε again, so thresholds silently become
  scale·ε². Here :meth:`ScriptedTeacher.thresholds` recomputes the scale from the raw
  episode returns at every call and multiplies by ε exactly once.
- **Negative returns** (e.g. point mass, reward = −distance): scale < 0 makes B-Pref's
  thresholds negative, so nothing is ever equal and its ``thres_skip > 0`` gate turns skipping
  off. Here both thresholds use |scale|, and skipping is measured from a floor F instead of
  from 0: a pair is skipped when ``max(S¹, S²) − F ≤ ε_skip·|scale|``, where
  ``F = min(0, worst recent episode return per H steps)``. With non-negative rewards F = 0
  and this is exactly B-Pref's rule (skip unless max(S¹, S²) > δ_skip); with negative
  rewards, F is the worst behaviour the teacher has seen, so "not clearly good" means "not
  clearly better than the worst". F and the scale come from the teacher's own episode
  history only, never from the pairs being labelled, so a pair gets the same answer
  whatever else is in its batch.

Before any episode return has been observed the teacher has no scale: both thresholds are 0
(nothing is skipped or equal).

``bpref_thresholds: true`` reproduces B-Pref's published thresholds instead, quirks included,
to compare with its curves: δ = scale·ε in the first labelled batch and scale·ε² in every later
one (the reference code labels one batch per feedback session), the signed scale, and skip
unless max(S¹, S²) > δ_skip, only while δ_skip > 0.

The scripted teacher answers LEFT, RIGHT, EQUAL or SKIP; it never answers INCOMPARABLE,
which only a person gives.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import Choice


class TeacherError(PrefRLError, ValueError):
    """A scripted teacher cannot label: missing or malformed true rewards, or bad state."""


@dataclass(frozen=True)
class TeacherConfig:
    """B-Pref's scripted-teacher knobs (the oracle by default)."""

    beta: float = math.inf
    """Rationality β: P(right) = sigmoid(β·ΔR_γ); ``.inf`` in YAML = deterministic oracle,
    0 = uniformly random answers."""
    gamma: float = 1.0
    """Myopia γ in (0, 1]: the weight of step k of H is γ^(H−1−k)."""
    eps_mistake: float = 0.0
    """Probability ε of flipping the answer."""
    eps_skip: float = 0.0
    """Skip threshold as a fraction of the typical segment return |scale|."""
    eps_equal: float = 0.0
    """Equal threshold as a fraction of |scale|: |S¹ − S²| below it is answered EQUAL."""
    margin_episodes: int = 10
    """Recent episodes whose returns set the threshold scale (B-Pref: 10)."""
    bpref_thresholds: bool = False
    """Reproduce B-Pref's published thresholds exactly (scale·ε in the first session,
    scale·ε² after, signed scale, skip floor 0) to compare with its curves; the default
    fixes those quirks (module doc)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if math.isnan(self.beta) or self.beta < 0:
            raise ConfigError(f'{name}.beta: {self.beta} must be >= 0 (inf: oracle)')
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f'{name}.gamma: {self.gamma} must be in (0, 1]')
        if not 0.0 <= self.eps_mistake <= 1.0:
            raise ConfigError(f'{name}.eps_mistake: {self.eps_mistake} must be in [0, 1]')
        for field in ('eps_skip', 'eps_equal'):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f'{name}.{field}: {value} must be finite and >= 0')
        if self.margin_episodes < 1:
            raise ConfigError(f'{name}.margin_episodes: {self.margin_episodes} must be >= 1')


TEACHER_PRESETS: dict[str, TeacherConfig] = {
    'oracle': TeacherConfig(),
    'mistake': TeacherConfig(eps_mistake=0.1),
    'noisy': TeacherConfig(beta=1.0),
    'skip': TeacherConfig(eps_skip=0.1),
    'myopic': TeacherConfig(gamma=0.9),
    'equal': TeacherConfig(eps_equal=0.1),
    'random': TeacherConfig(beta=0.0),
}
"""B-Pref's six teachers (Lee et al. 2021, Table 1), and ``random`` (β = 0: every answer a
coin flip), the control that shows whether a result comes from the labels."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow


class ScriptedTeacher:
    """Labels segment pairs from their true rewards with B-Pref's noise model (module doc)."""

    def __init__(self, config: TeacherConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self._episodes: deque[tuple[float, int]] = deque(maxlen=config.margin_episodes)
        self._batches = 0  # batches labelled (B-Pref's thresholds change after the first)

    def observe_episode_return(self, episode_return: float, episode_length: int) -> None:
        """Record a finished training episode's true return (the last ``margin_episodes``
        are kept)."""
        if not math.isfinite(episode_return):
            raise TeacherError(f'episode_return {episode_return} is not finite')
        if episode_length < 1:
            raise TeacherError(f'episode_length {episode_length} must be >= 1')
        self._episodes.append((float(episode_return), int(episode_length)))

    def _episode_rates(self, segment_length: int) -> np.ndarray:
        # Each episode's return per H steps: R_i · H / L_i (B-Pref divides the mean return by
        # the one fixed episode length; per episode it also handles early termination).
        return np.array([ret * segment_length / length for ret, length in self._episodes])

    def scale(self, segment_length: int) -> float | None:
        """Typical return of a segment of ``segment_length`` steps from recent episodes
        (``None`` before any episode has been observed)."""
        if not self._episodes:
            return None
        return float(self._episode_rates(segment_length).mean())

    def thresholds(self, segment_length: int) -> tuple[float, float]:
        """(skip, equal) thresholds: ε_skip·|scale| and ε_equal·|scale| (0 and 0 before any
        episode has been observed).

        Recomputed from the raw episode returns at every call, never from a previous
        threshold (the fix for B-Pref's scale·ε² from the second session on). With
        ``bpref_thresholds`` they are B-Pref's own: signed scale, ε² after the first batch.
        """
        scale = self.scale(segment_length)
        if scale is None:
            return 0.0, 0.0
        cfg = self.config
        if cfg.bpref_thresholds:
            skip, equal = cfg.eps_skip * scale, cfg.eps_equal * scale
            if self._batches > 0:  # B-Pref's setter multiplies the scaled margin by ε again
                skip, equal = skip * cfg.eps_skip, equal * cfg.eps_equal
            return skip, equal
        return cfg.eps_skip * abs(scale), cfg.eps_equal * abs(scale)

    def skip_floor(self, segment_length: int) -> float:
        """F of the skip rule: min(0, worst recent episode return per H steps); 0 with
        ``bpref_thresholds`` or before any episode."""
        if self.config.bpref_thresholds or not self._episodes:
            return 0.0
        return min(0.0, float(self._episode_rates(segment_length).min()))

    def _true_rewards(self, pairs: SegmentPairs) -> tuple[np.ndarray, np.ndarray]:
        if pairs.left_rewards is None or pairs.right_rewards is None:
            raise TeacherError('a scripted teacher needs the true rewards: '
                               'pairs.left_rewards/right_rewards is None')
        out = []
        for side, rewards in (('left', pairs.left_rewards), ('right', pairs.right_rewards)):
            r = np.asarray(rewards, np.float64)
            if r.ndim == 3 and r.shape[-1] == 1:
                r = r[..., 0]
            if r.ndim != 2 or r.shape[0] != pairs.num_pairs or r.shape[1] < 1:
                raise TeacherError(f'{side}_rewards has shape {np.shape(rewards)}, expected '
                                   f'[{pairs.num_pairs}, T]')
            if not np.isfinite(r).all():
                raise TeacherError(f'{side}_rewards holds NaN or inf')
            out.append(r)
        if out[0].shape != out[1].shape:
            raise TeacherError(f'left_rewards {out[0].shape} and right_rewards {out[1].shape} '
                               'differ in shape')
        return out[0], out[1]

    def label(self, pairs: SegmentPairs) -> np.ndarray:
        """int8 ``[P]`` ``Choice`` values (LEFT/RIGHT/EQUAL/SKIP), one per pair."""
        r1, r2 = self._true_rewards(pairs)
        num, horizon = r1.shape
        if num == 0:
            return np.zeros(0, np.int8)
        cfg = self.config
        # 1. Undiscounted segment returns.
        s1, s2 = r1.sum(axis=1), r2.sum(axis=1)
        thr_skip, thr_equal = self.thresholds(horizon)
        self._batches += 1
        # 2. Skip: the better segment does not clear the floor F by δ_skip (module doc).
        skip = np.zeros(num, bool)
        if thr_skip > 0:
            skip = np.maximum(s1, s2) - self.skip_floor(horizon) <= thr_skip
        # 3. Equal mask on the undiscounted returns.
        equal = np.abs(s1 - s2) < thr_equal
        # 4. Myopia: weight γ^(H−1−k) on step k, so the last step has weight 1.
        weights = cfg.gamma ** np.arange(horizon - 1, -1, -1, dtype=np.float64)
        delta = r2 @ weights - r1 @ weights  # S²_γ − S¹_γ
        # 5. Rationality: Bradley-Terry with inverse temperature β; β = ∞ is the argmax.
        if math.isinf(cfg.beta):
            right = delta > 0  # ties → LEFT
        else:
            right = self.rng.random(num) < _sigmoid(cfg.beta * delta)
        # 6. Mistakes: flip with probability ε.
        if cfg.eps_mistake > 0:
            right ^= self.rng.random(num) < cfg.eps_mistake
        labels = np.where(right, np.int8(Choice.RIGHT), np.int8(Choice.LEFT)).astype(np.int8)
        # 7. Equal-masked pairs, then skipped ones (a skipped pair is never trained on).
        labels[equal] = Choice.EQUAL
        labels[skip] = Choice.SKIP
        return labels

    def state_dict(self) -> dict[str, Any]:
        """Recent episode returns and the generator state, as plain data."""
        return {'episodes': [[ret, length] for ret, length in self._episodes],
                'batches': self._batches, 'rng': self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the generator must be of the same kind)."""
        try:
            episodes = [(float(ret), int(length)) for ret, length in state['episodes']]
            batches = int(state.get('batches', 0))
            rng_state = dict(state['rng'])
        except (KeyError, TypeError, ValueError) as err:
            raise TeacherError(f'malformed teacher state: {err!r}') from err
        kind = type(self.rng.bit_generator).__name__
        if rng_state.get('bit_generator') != kind:
            raise TeacherError(f"teacher state holds a {rng_state.get('bit_generator')!r} "
                               f'generator state, this teacher uses {kind}')
        self.rng.bit_generator.state = rng_state
        self._batches = batches
        self._episodes.clear()
        for ret, length in episodes:
            self.observe_episode_return(ret, length)
