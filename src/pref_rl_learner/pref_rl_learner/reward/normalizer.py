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
    """Per-member affine maps ``r_m -> (r_m - mean_m) / max(std_m, STD_FLOOR)``.

    Each ensemble member's output is normalised on its own, and the ensemble's reward is the
    mean of the normalised members (as DRLHP's reward predictor does: members that learnt
    the same ranking on different scales then count alike). The statistics are buffers
    (``mean``, ``std`` of shape ``[M]``, ``count``) in the owning module's ``state_dict``, so
    a checkpoint restores the exact reward scale PEBBLE relabelled its replay buffer with.
    Before :meth:`fit` the maps are the identity (mean 0, std 1, count 0). A checkpoint from
    before per-member statistics (scalar ``mean``/``std``) loads with that one map for every
    member.
    """

    mean: torch.Tensor
    std: torch.Tensor
    count: torch.Tensor

    def __init__(self, members: int) -> None:
        super().__init__()
        self.register_buffer('mean', torch.zeros(members))
        self.register_buffer('std', torch.ones(members))
        self.register_buffer('count', torch.zeros((), dtype=torch.long))

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has set the statistics."""
        return bool(self.count.item() > 0)

    @torch.no_grad()
    def fit(self, rewards: torch.Tensor) -> None:
        """Set each member's mean and (population) standard deviation from raw rewards
        ``[M, N]`` (member-major).

        Raises:
            ValueError: the sample is empty, of another member count, or holds non-finite
                values.
        """
        rewards = rewards.detach().to(dtype=torch.float64)
        members = self.mean.shape[0]
        if rewards.dim() < 1 or rewards.shape[0] != members:
            raise ValueError(f'reward sample of shape {tuple(rewards.shape)}, expected '
                             f'[{members}, N]')
        rewards = rewards.reshape(members, -1)
        if rewards.shape[1] == 0:
            raise ValueError('cannot fit reward normalisation on an empty sample')
        if not bool(torch.isfinite(rewards).all()):
            raise ValueError('cannot fit reward normalisation: the sample has NaN or inf')
        self.mean.copy_(rewards.mean(dim=1))
        self.std.copy_(rewards.std(dim=1, correction=0))
        self.count.fill_(rewards.shape[1])

    def reset(self) -> None:
        """Back to the identity maps."""
        self.mean.zero_()
        self.std.fill_(1.0)
        self.count.zero_()

    def forward(self, rewards: torch.Tensor) -> torch.Tensor:
        """Normalised member rewards ``[M, *B]`` (same shape)."""
        shape = (-1,) + (1,) * (rewards.dim() - 1)
        return (rewards - self.mean.reshape(shape)) / self.std.clamp_min(STD_FLOOR).reshape(shape)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        for name in ('mean', 'std'):  # scalar statistics of the member mean (format before)
            key = prefix + name
            if key in state_dict and state_dict[key].dim() == 0:
                state_dict[key] = state_dict[key].expand(self.mean.shape[0]).clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
