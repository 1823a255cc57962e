"""Ensemble of learned reward functions r̂(s, a), its members evaluated in one batched pass.

Each member is the reward predictor of Christiano et al. 2017 ("Deep reinforcement learning
from human preferences", https://arxiv.org/abs/1706.03741) as PEBBLE uses it (Lee et al. 2021,
https://arxiv.org/abs/2106.05091): an MLP over the state or the state-action pair (3×256,
leaky ReLU, tanh or linear output), or, for pixel observations, the paper's Atari network (four
convolutions 7×7/5×5/3×3/3×3 with strides 3/2/1/1 and 16 filters, leaky ReLU, then fully
connected layers with the action appended).

The members are not ``M`` separate modules looped over in Python: every linear layer stores
its weights stacked ``[M, in, out]`` and runs as one ``baddbmm`` (one ``einsum`` when all
members see the same input), and every convolution is a grouped convolution with ``M`` groups
(batch norm over ``M × channels`` keeps per-member statistics). Member ``m`` computes exactly
what an independent network holding slice ``m`` of the weights computes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pref_rl_learner.batches import SegmentPairs
from pref_rl_learner.config import ConfigError
from pref_rl_learner.device import resolve_device
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.reward.layers import BatchedConvEncoder, BatchedMLP
from pref_rl_learner.reward.normalizer import RewardNormalizer


class RewardModelError(PrefRLError, ValueError):
    """Input to a reward model has the wrong shape, dtype or non-finite values."""


@dataclass(frozen=True)
class RewardModelConfig:
    """Architecture of the reward ensemble (defaults: PEBBLE / few-shot preference RL)."""

    ensemble_size: int = 3
    """Number of members ``M``; their disagreement drives query selection."""
    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    """Widths of the hidden layers of each member's MLP (after the encoder for ``cnn``)."""
    inputs: str = 'state_action'
    """``state_action``: r̂(s, a); ``state``: r̂(s) (actions are ignored)."""
    encoder: str = 'mlp'
    """``mlp`` for state vectors; ``cnn`` for pixel observations ``[C, H, W]`` (uint8 in
    [0, 255] is scaled to [0, 1]; float pixels are used as given)."""
    dropout: float = 0.0
    """Dropout probability after every hidden layer (conv layers included); DRLHP used 0.5."""
    batch_norm: bool = False
    """Batch norm after every hidden linear/conv layer, statistics kept per member."""
    negative_slope: float = 0.01
    """Slope of the leaky ReLU for negative inputs."""
    output: str = 'tanh'
    """Output of each member: ``tanh`` (PEBBLE, B-Pref: r̂ in (−1, 1)) or ``linear``
    (unbounded: no flat top where a dense reward such as a distance keeps changing, which a
    saturated tanh cannot tell apart)."""
    cnn_channels: tuple[int, ...] = (16, 16, 16, 16)
    """Filters of each conv layer (``cnn`` only; DRLHP's Atari reward network)."""
    cnn_kernels: tuple[int, ...] = (7, 5, 3, 3)
    """Square kernel size of each conv layer (``cnn`` only)."""
    cnn_strides: tuple[int, ...] = (3, 2, 1, 1)
    """Stride of each conv layer (``cnn`` only); 64×64 frames end at 4×4, 84×84 at 7×7."""
    member_batching: str = 'auto'
    """How the members' MLP layers run (same function, same weights): ``stacked`` (one
    ``baddbmm`` per layer for all members), ``per_member`` (``addmm`` per member on slices of
    the stacked weights) or ``auto`` (stacked on CUDA, per_member on CPU, where CPU gemm
    beats batched gemm at training sizes)."""
    inference_chunk: int = 4096
    """Time steps per forward pass in :meth:`RewardEnsemble.reward`,
    :meth:`~RewardEnsemble.fit_normalizer` and :meth:`~RewardEnsemble.preference_probs`
    (bounds memory when relabelling a whole replay buffer)."""
    device: str = 'auto'
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.ensemble_size < 1:
            raise ConfigError(f'{name}.ensemble_size must be >= 1, got {self.ensemble_size}')
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError(f'{name}.hidden_sizes must be positive widths, '
                              f'got {self.hidden_sizes}')
        if self.inputs not in ('state', 'state_action'):
            raise ConfigError(f"{name}.inputs must be 'state' or 'state_action', "
                              f'got {self.inputs!r}')
        if self.encoder not in ('mlp', 'cnn'):
            raise ConfigError(f"{name}.encoder must be 'mlp' or 'cnn', got {self.encoder!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f'{name}.dropout must be in [0, 1), got {self.dropout}')
        if self.output not in ('tanh', 'linear'):
            raise ConfigError(f"{name}.output must be 'tanh' or 'linear', got {self.output!r}")
        if self.negative_slope < 0:
            raise ConfigError(f'{name}.negative_slope must be >= 0, got {self.negative_slope}')
        conv = (self.cnn_channels, self.cnn_kernels, self.cnn_strides)
        if len({len(c) for c in conv}) != 1 or not self.cnn_channels or min(map(min, conv)) < 1:
            raise ConfigError(f'{name}.cnn_channels/cnn_kernels/cnn_strides must be non-empty, '
                              f'positive and of equal length, got {conv}')
        if self.member_batching not in ('auto', 'stacked', 'per_member'):
            raise ConfigError(f"{name}.member_batching must be 'auto', 'stacked' or 'per_member', "
                              f'got {self.member_batching!r}')
        if self.inference_chunk < 1:
            raise ConfigError(f'{name}.inference_chunk must be >= 1, '
                              f'got {self.inference_chunk}')


class RewardEnsemble(nn.Module):
    """``M`` reward predictors r̂_m(s, a) ∈ (−1, 1), trained from preferences (Bradley-Terry).

    Preferences are modelled from segment returns: P(σ¹ ≻ σ⁰) = σ(Σ_t r̂(s¹_t, a¹_t) −
    Σ_t r̂(s⁰_t, a⁰_t)) (Christiano et al. 2017, eq. 1; :mod:`pref_rl_learner.reward.training`).

    RL never sees the raw outputs: :meth:`reward` returns the member mean, normalised to zero
    mean and unit standard deviation with statistics that :meth:`fit_normalizer` sets from
    replay data. PEBBLE calls ``fit_normalizer`` and then relabels its whole replay buffer
    with :meth:`reward` after every reward training.

    ``version`` counts trainings (the trainer increments it) and is saved in ``state_dict``.
    """

    def __init__(self, observation_shape: tuple[int, ...], action_dim: int,
                 config: RewardModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.observation_shape = tuple(int(d) for d in observation_shape)
        self.action_dim = int(action_dim)
        self.config = config
        self.version = 0
        members = config.ensemble_size
        if not self.observation_shape or min(self.observation_shape) < 1 or action_dim < 0:
            raise RewardModelError(f'observation_shape {observation_shape} must be non-empty '
                                   f'and positive and action_dim {action_dim} >= 0')
        if config.inputs == 'state_action' and action_dim < 1:
            raise RewardModelError("inputs='state_action' needs action_dim >= 1")
        self.encoder: BatchedConvEncoder | None = None
        if config.encoder == 'cnn':
            if len(self.observation_shape) != 3:
                raise RewardModelError(f"encoder='cnn' needs observations [C, H, W], got "
                                       f'observation_shape {self.observation_shape}')
            try:
                self.encoder = BatchedConvEncoder(
                    members, self.observation_shape, config.cnn_channels, config.cnn_kernels,
                    config.cnn_strides, config.dropout, config.batch_norm,
                    config.negative_slope)
            except ValueError as err:
                raise RewardModelError(str(err)) from err
            features = self.encoder.output_dim
        else:
            features = math.prod(self.observation_shape)
        if config.inputs == 'state_action':
            features += self.action_dim
        self.head = BatchedMLP(members, features, config.hidden_sizes, config.dropout,
                               config.batch_norm, config.negative_slope, config.member_batching,
                               output=config.output)
        self.normalizer = RewardNormalizer(members)
        self.reset_parameters(seed)
        self.to(resolve_device(config.device))

    @property
    def ensemble_size(self) -> int:
        """``M``."""
        return self.config.ensemble_size

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.normalizer.mean.device

    def reset_parameters(self, seed: int = 0) -> None:
        """Re-draw every member's weights (seeded, device-independent); reset normalisation."""
        generator = torch.Generator().manual_seed(seed)
        if self.encoder is not None:
            self.encoder.reset_parameters(generator)
        self.head.reset_parameters(generator)
        self.normalizer.reset()

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Weight matrices and kernels (no biases, no norm scales): what L2 regularises."""
        if self.encoder is not None:
            yield from self.encoder.weight_parameters()
        yield from self.head.weight_parameters()

    def get_extra_state(self) -> dict[str, int]:
        """Saved with ``state_dict`` (plain ints: loads with ``weights_only=True``)."""
        return {'version': self.version}

    def set_extra_state(self, state: dict[str, int]) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        self.version = int(state['version'])

    # ----------------------------------------------------------------------------- forward

    def forward(self, observations: torch.Tensor, actions: torch.Tensor | None = None,
                per_member: bool = False, validate: bool = True) -> torch.Tensor:
        """Per-member per-step rewards ``[M, *B]`` in (−1, 1).

        Args:
            observations: ``[*B, *observation_shape]``, or ``[M, *B, *observation_shape]``
                with ``per_member`` (member ``m`` sees slice ``m``).
            actions: ``[*B, action_dim]`` (``[M, *B, action_dim]`` with ``per_member``);
                ignored and may be None when ``inputs == 'state'``.
            per_member: each member gets its own inputs (the trainer's per-member batches).
            validate: check shapes and finiteness (the trainer checks once, up front).

        Raises:
            RewardModelError: a shape does not match, or a value is NaN or infinite.
        """
        lead = 1 if per_member else 0
        obs_dims = len(self.observation_shape)
        if validate:
            self._check(observations, actions, lead)
        batch = tuple(observations.shape[lead:observations.dim() - obs_dims])
        rows = math.prod(batch)
        members = (self.ensemble_size,) if per_member else ()
        obs = observations.to(self.device, non_blocking=True)
        obs = obs.reshape(*members, rows, *self.observation_shape)
        if self.encoder is None:
            features = self.vector_features(obs, actions)
        else:
            features = self.encoder(obs, per_member)
            if self.config.inputs == 'state_action':
                act = actions.to(self.device, dtype=torch.float32, non_blocking=True)
                act = act.reshape(*members, rows, self.action_dim)
                if act.dim() == 2:  # conv features are always per member
                    act = act.expand(self.ensemble_size, rows, self.action_dim)
                features = torch.cat([features, act], dim=-1)
        return self.head(features).reshape(self.ensemble_size, *batch)

    def vector_features(self, observations: torch.Tensor,
                        actions: torch.Tensor | None = None) -> torch.Tensor:
        """The MLP head's input for vector observations: ``[*B, *obs]`` (and actions
        ``[*B, action_dim]`` with ``inputs == 'state_action'``) -> ``[*B, features]`` on the
        model's device, in its floating dtype (float32 unless converted). Any leading
        dimensions (members, tasks, rows) pass through."""
        lead = observations.shape[:observations.dim() - len(self.observation_shape)]
        dtype = self.head.linears[0].weight.dtype
        features = observations.to(self.device, dtype, non_blocking=True).reshape(*lead, -1)
        if self.config.inputs == 'state_action':
            act = actions.to(self.device, dtype, non_blocking=True)
            features = torch.cat([features, act.reshape(*lead, self.action_dim)], dim=-1)
        return features

    def segment_returns(self, observations: torch.Tensor, actions: torch.Tensor | None = None,
                        per_member: bool = False, validate: bool = True) -> torch.Tensor:
        """Σ_t r̂_m(s_t, a_t) per member: ``[N, T, *obs]`` (``[M, N, T, *obs]`` with
        ``per_member``) -> ``[M, N]``."""
        batch_dims = observations.dim() - len(self.observation_shape) - (1 if per_member else 0)
        if batch_dims != 2:
            raise RewardModelError(f'segment observations must be [N, T, *obs] (prefixed by M '
                                   f'with per_member), got shape {tuple(observations.shape)}')
        return self(observations, actions, per_member, validate).sum(dim=-1)

    # --------------------------------------------------------------------------- inference

    @torch.no_grad()
    def preference_probs(self, pairs: SegmentPairs) -> np.ndarray:
        """P(right ≻ left) = σ(R_right − R_left) per member, ``[M, P]`` float32.

        Evaluated in eval mode (no dropout, running batch-norm statistics), without gradients,
        in chunks of ``config.inference_chunk`` steps. Query selection reads disagreement as
        the standard deviation over members and entropy from the member mean.
        """
        count = pairs.num_pairs
        if count == 0:
            return np.zeros((self.ensemble_size, 0), np.float32)
        steps = pairs.left_observations.shape[1] + pairs.right_observations.shape[1]
        chunk = max(1, self.config.inference_chunk // max(1, steps))
        probs = []
        with self.evaluating():
            for start in range(0, count, chunk):
                part = slice(start, start + chunk)
                left = self.segment_returns(_tensor(pairs.left_observations[part]),
                                            _tensor(pairs.left_actions[part]))
                right = self.segment_returns(_tensor(pairs.right_observations[part]),
                                             _tensor(pairs.right_actions[part]))
                probs.append(torch.sigmoid(right - left).cpu())
        return torch.cat(probs, dim=1).numpy().astype(np.float32)

    @torch.no_grad()
    def reward(self, observations: torch.Tensor, actions: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Normalised member-mean reward ``[*B]`` for RL, on the device of ``observations``.

        ``mean_m (r̂_m(s, a) − μ_m) / σ_m`` with each member's μ_m, σ_m from
        :meth:`fit_normalizer` (identity before the first fit; DRLHP normalises each member,
        then averages). Eval mode, no gradients, chunked.
        """
        observations, actions = _tensor(observations), _maybe_tensor(actions)
        members = self._member_outputs(observations, actions)
        return self.normalized_mean(members).to(observations.device)

    @torch.no_grad()
    def member_rewards(self, observations: torch.Tensor, actions: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Raw (unnormalised) member outputs ``[M, *B]`` on the model's device, eval mode,
        chunked: what :meth:`fit_normalizer_to` and :meth:`normalized_mean` take, so one pass
        over a replay buffer serves both the normaliser fit and the relabelling.

        Raises:
            RewardModelError: the inputs are malformed.
        """
        return self._member_outputs(_tensor(observations), _maybe_tensor(actions))

    def normalized_mean(self, member_rewards: torch.Tensor) -> torch.Tensor:
        """``mean_m (r̂_m − μ_m) / σ_m`` of raw member outputs ``[M, *B]`` -> ``[*B]``: the
        reward RL sees (:meth:`reward`)."""
        return self.normalizer(member_rewards).mean(dim=0)

    @torch.no_grad()
    def fit_normalizer(self, observations: torch.Tensor,
                       actions: torch.Tensor | None = None) -> None:
        """Set the normalisation statistics from a sample of replay data ``[*B, *obs]``.

        Raises:
            RewardModelError: the sample is empty or the inputs are malformed.
        """
        self.fit_normalizer_to(self._member_outputs(_tensor(observations),
                                                    _maybe_tensor(actions)))

    @torch.no_grad()
    def fit_normalizer_to(self, member_rewards: torch.Tensor) -> None:
        """:meth:`fit_normalizer` from raw member outputs ``[M, N]`` already computed
        (:meth:`member_rewards` of the sample).

        Raises:
            RewardModelError: the sample is empty, misshapen or non-finite.
        """
        try:
            self.normalizer.fit(member_rewards)
        except ValueError as err:
            raise RewardModelError(str(err)) from err

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode inside the block; the previous mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ----------------------------------------------------------------------------- helpers

    def _member_outputs(self, observations: torch.Tensor,
                        actions: torch.Tensor | None) -> torch.Tensor:
        """Raw member outputs ``[M, *B]`` on the model's device, chunked over rows."""
        self._check(observations, actions, 0)
        obs_dims = len(self.observation_shape)
        batch = tuple(observations.shape[:observations.dim() - obs_dims])
        obs = observations.reshape(-1, *self.observation_shape)
        act = None
        if self.config.inputs == 'state_action':
            act = actions.reshape(obs.shape[0], self.action_dim)
        chunk = self.config.inference_chunk
        out = []
        with self.evaluating():
            for start in range(0, obs.shape[0], chunk):
                part = slice(start, start + chunk)
                out.append(self(obs[part], None if act is None else act[part],
                                validate=False))
        if not out:
            return torch.zeros((self.ensemble_size, *batch), device=self.device)
        return torch.cat(out, dim=1).reshape(self.ensemble_size, *batch)

    def _check(self, observations: torch.Tensor, actions: torch.Tensor | None,
               lead: int) -> None:
        obs_shape = self.observation_shape
        shape = tuple(observations.shape)
        if len(shape) < len(obs_shape) + lead or shape[len(shape) - len(obs_shape):] != obs_shape:
            raise RewardModelError(f'observations of shape {shape} do not end in the '
                                   f'observation shape {obs_shape}')
        if lead and shape[0] != self.ensemble_size:
            raise RewardModelError(f'per-member observations of shape {shape} must start with '
                                   f'the ensemble size {self.ensemble_size}')
        if observations.dtype == torch.uint8 and self.encoder is None:
            raise RewardModelError('uint8 observations need the cnn encoder')
        if observations.is_floating_point() and not bool(torch.isfinite(observations).all()):
            raise RewardModelError('observations hold NaN or inf')
        if self.config.inputs == 'state':
            return
        batch = shape[:len(shape) - len(obs_shape)]
        if actions is None:
            raise RewardModelError("inputs='state_action' needs actions")
        if tuple(actions.shape) != (*batch, self.action_dim):
            raise RewardModelError(f'actions of shape {tuple(actions.shape)} do not match '
                                   f'observations {shape}: expected {(*batch, self.action_dim)}')
        if not bool(torch.isfinite(actions).all()):
            raise RewardModelError('actions hold NaN or inf')


def _tensor(array: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A tensor view of ``array`` (float64 becomes float32; uint8 frames stay uint8)."""
    tensor = torch.as_tensor(array)
    return tensor.float() if tensor.dtype == torch.float64 else tensor


def _maybe_tensor(array: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else _tensor(array)

