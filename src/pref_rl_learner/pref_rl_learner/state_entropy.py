"""k-NN state-entropy intrinsic reward for unsupervised pre-training (PEBBLE, Sec. 4.1).

PEBBLE (Lee, Smith, Abbeel 2021, https://arxiv.org/abs/2106.05091) explores before any
preference is asked by maximising a particle estimate of the state entropy: the intrinsic
reward of a state is its distance to its k-th nearest neighbour among the states visited so
far, ``r_int(s) = ||s - s^k-NN||``, divided by a running standard deviation so its scale stays
stable while the buffer grows. The states rewarded are a batch drawn from the buffer, so each
is among the visited states itself: its k-th neighbour is the (k+1)-th smallest distance, the
first being its distance 0 to itself (B-Pref and the few-shot code take ``kthvalue(k + 1)``).
"""

from __future__ import annotations

import torch


class RunningMeanStd:
    """Running mean and variance of a stream of scalars (parallel/Chan update, batched).

    For a batch with mean ``m_b``, variance ``v_b`` and size ``n_b`` merged into ``(m, v, n)``:
    ``delta = m_b - m``, ``m' = m + delta * n_b / n'`` and
    ``M2' = v n + v_b n_b + delta² n n_b / n'``, with ``n' = n + n_b``. (The few-shot reference
    code wrote ``m + delta + n_b / n'``; this is the correct form.)
    """

    def __init__(self, epsilon: float = 1e-4) -> None:
        self.mean = 0.0
        self.var = 1.0
        self.count = epsilon

    def update(self, values: torch.Tensor) -> None:
        """Merge a batch of values (any shape; flattened)."""
        values = values.detach().reshape(-1).double()
        batch_count = values.numel()
        if batch_count == 0:
            return
        batch_mean = float(values.mean())
        batch_var = float(values.var(unbiased=False))
        total = self.count + batch_count
        delta = batch_mean - self.mean
        m2 = (self.var * self.count + batch_var * batch_count
              + delta**2 * self.count * batch_count / total)
        self.mean = self.mean + delta * batch_count / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        """Standard deviation (floored at 1e-8 so dividing by it is safe)."""
        return max(self.var, 0.0) ** 0.5 + 1e-8

    def state_dict(self) -> dict[str, float]:
        """Plain floats, for checkpoints."""
        return {'mean': self.mean, 'var': self.var, 'count': self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore :meth:`state_dict` output."""
        self.mean, self.var, self.count = (float(state[k]) for k in ('mean', 'var', 'count'))


def knn_distance(queries: torch.Tensor, reference: torch.Tensor, k: int,
                 chunk_size: int = 4096) -> torch.Tensor:
    """Distance from each query row to its k-th nearest row of ``reference``.

    Args:
        queries: ``[B, D]``.
        reference: ``[N, D]`` with ``N >= k``; a query present in ``reference`` counts itself
            as its first neighbour (distance 0), as in PEBBLE.
        k: which neighbour (1-based).
        chunk_size: reference rows compared at once (bounds memory to ``B × chunk_size``).

    Returns:
        ``[B]`` distances.
    """
    if reference.shape[0] < k:
        raise ValueError(f'k={k} neighbours asked among {reference.shape[0]} states')
    best = None
    for start in range(0, reference.shape[0], chunk_size):
        dist = torch.cdist(queries, reference[start:start + chunk_size])
        if best is not None:
            dist = torch.cat([best, dist], dim=1)
        # Keep only the k smallest so far: the k-th of the union is among them.
        best = dist.topk(min(k, dist.shape[1]), dim=1, largest=False).values
    return best[:, k - 1]


class StateEntropyReward:
    """Normalised k-NN state-entropy reward ``r_int(s) / std(r_int)``."""

    def __init__(self, k: int = 5, chunk_size: int = 4096) -> None:
        if k < 1:
            raise ValueError(f'k must be >= 1, got {k}')
        self.k = k
        self.chunk_size = chunk_size
        self.stats = RunningMeanStd()

    @torch.no_grad()
    def __call__(self, observations: torch.Tensor, visited: torch.Tensor) -> torch.Tensor:
        """Intrinsic rewards ``[B]`` of a batch of states drawn from ``visited`` (each counts
        itself once among the visited states, and that match is skipped)."""
        flat = observations.reshape(observations.shape[0], -1)
        reference = visited.reshape(visited.shape[0], -1)
        entropy = knn_distance(flat, reference, self.k + 1, self.chunk_size)
        self.stats.update(entropy)
        return entropy / self.stats.std
