"""Normalisation of learned rewards before RL sees them (zero mean, unit standard deviation).

Christiano et al. 2017 (https://arxiv.org/abs/1706.03741, section 2.2.1) normalise the
predictor's output "to have zero mean and constant standard deviation": the preference loss
only constrains reward *differences*, so the offset and scale the model happens to settle on
are arbitrary and change from one training to the next. Fitting the statistics on replay data
after each training keeps the reward SAC sees on a stable scale.
"""

from __future__ import annotations

import torch
from torch import nn

STD_FLOOR = 1e-6
"""Smallest standard deviation divided by, so a (near-)constant reward does not blow up."""


class RewardNormalizer(nn.Module):
    """Affine map ``r -> (r - mean) / max(std, STD_FLOOR)`` with stats stored as buffers.

    The buffers (``mean``, ``std``, ``count``) live in the owning module's ``state_dict``, so a
    checkpoint restores the exact reward scale PEBBLE relabelled its replay buffer with. Before
    :meth:`fit` is called the map is the identity (mean 0, std 1, count 0).
    """

    mean: torch.Tensor
    std: torch.Tensor
    count: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('mean', torch.zeros(()))
        self.register_buffer('std', torch.ones(()))
        self.register_buffer('count', torch.zeros((), dtype=torch.long))

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has set the statistics."""
        return bool(self.count.item() > 0)

    @torch.no_grad()
    def fit(self, rewards: torch.Tensor) -> None:
        """Set mean and (population) standard deviation from a sample of raw rewards.

        Raises:
            ValueError: the sample is empty or holds non-finite values.
        """
        rewards = rewards.detach().reshape(-1).to(dtype=torch.float64)
        if rewards.numel() == 0:
            raise ValueError('cannot fit reward normalisation on an empty sample')
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError('cannot fit reward normalisation: the sample has NaN or inf')
        self.mean.copy_(rewards.mean())
        self.std.copy_(rewards.std(correction=0))
        self.count.fill_(rewards.numel())

    def reset(self) -> None:
        """Back to the identity map."""
        self.mean.zero_()
        self.std.fill_(1.0)
        self.count.zero_()

    def forward(self, rewards: torch.Tensor) -> torch.Tensor:
        """Normalised ``rewards`` (same shape)."""
        return (rewards - self.mean) / self.std.clamp_min(STD_FLOOR)
