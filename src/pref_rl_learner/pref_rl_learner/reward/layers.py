"""Layers that evaluate ``M`` independent networks in one pass (ensemble members batched).

Layouts: member-batched activations are ``[M, K, features]``; an input shared by all members
may be given once as ``[K, features]`` (the first layer then runs as a single ``einsum``).
Convolutions keep members side by side in the channel dimension, ``[K, M·C, H, W]``, and use
grouped convolutions with ``M`` groups, so no member ever sees another member's channels.
Initialisation matches ``torch.nn.Linear`` / ``Conv2d`` per member (uniform ±1/√fan_in) but
draws from an explicit generator, so a seed gives the same weights on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    """Fill ``tensor`` (any device) with U(−bound, bound) drawn on the CPU from ``generator``."""
    with torch.no_grad():
        values = torch.empty(tensor.shape).uniform_(-bound, bound, generator=generator)
        tensor.copy_(values)


def _member_norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Batch norm of ``[M, K, F]`` with separate statistics per member and feature."""
    members, rows, features = x.shape
    flat = x.transpose(0, 1).reshape(rows, members * features)
    return norm(flat).reshape(rows, members, features).transpose(0, 1)


class BatchedLinear(nn.Module):
    """``M`` affine maps y_m = x_m W_m + b_m, weights stacked ``[M, in, out]``."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """U(±1/√in) for weight and bias, as ``torch.nn.Linear``."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        _uniform_(self.weight, bound, generator)
        _uniform_(self.bias, bound, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, K, in]`` or shared ``[K, in]`` -> ``[M, K, out]``."""
        if x.dim() == 2:
            return torch.einsum('ki,mio->mko', x, self.weight) + self.bias[:, None, :]
        return torch.baddbmm(self.bias[:, None, :], x, self.weight)


class StackedTape(NamedTuple):
    """What :meth:`BatchedMLP.stacked_backward` needs of a :meth:`BatchedMLP.stacked_forward`
    pass: per layer its input ``h_i``, per hidden layer its pre-activation ``z_i`` and dropout
    mask (none without dropout)."""

    inputs: list[torch.Tensor]
    pre_activations: list[torch.Tensor]
    masks: list[torch.Tensor]


class BatchedMLP(nn.Module):
    """``M`` MLPs: hidden layers linear → [batch norm] → leaky ReLU → [dropout]; tanh (or
    linear) output.

    Two kernels compute the same function from the same stacked weights: ``stacked`` runs
    each layer for all members as one ``baddbmm`` (one kernel launch per layer: the fast
    choice on GPUs); ``per_member`` runs member after member through ``addmm`` on slices of
    the stacked weights (CPU BLAS gemm beats CPU batched gemm by ~25% at training batch sizes,
    bench/reward_training.py). Either way there is one module, one graph and one optimiser.
    """

    def __init__(self, members: int, in_features: int, hidden_sizes: tuple[int, ...],
                 dropout: float, batch_norm: bool, negative_slope: float,
                 kernel: str = 'auto', output: str = 'tanh') -> None:
        super().__init__()
        sizes = (in_features, *hidden_sizes, 1)
        self.members = members
        self.linears = nn.ModuleList(BatchedLinear(members, a, b)
                                     for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.norms = nn.ModuleList(nn.BatchNorm1d(members * h) for h in hidden_sizes) \
            if batch_norm else None
        self.dropout, self.negative_slope = dropout, negative_slope
        self.kernel = kernel
        self.output = torch.tanh if output == 'tanh' else (lambda y: y)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Re-draw weights; reset batch-norm statistics and affine parameters."""
        for linear in self.linears:
            linear.reset_parameters(generator)
        for norm in self.norms or ():
            norm.reset_parameters()

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """The weight matrices."""
        return (linear.weight for linear in self.linears)

    def forward(self, x: torch.Tensor, kernel: str | None = None) -> torch.Tensor:
        """``[M, K, in]`` or shared ``[K, in]`` -> ``[M, K]`` (in (−1, 1) with tanh).

        ``kernel`` overrides the configured one for this call. ``stacked`` also evaluates
        weights stacked for more networks than ``M`` (e.g. tasks × members in MAML, through
        :func:`torch.func.functional_call`), given inputs ``[len(weights), K, in]``, as long
        as there is no batch norm.
        """
        kernel = kernel or self.kernel
        if kernel == 'auto':
            kernel = 'stacked' if x.device.type == 'cuda' else 'per_member'
        if kernel == 'per_member':
            if self.norms is not None and self.training:
                for norm in self.norms:  # F.batch_norm on slices does not count batches
                    norm.num_batches_tracked.add_(1)
            return torch.stack([self._member(m, x if x.dim() == 2 else x[m])
                                for m in range(self.members)])
        for i, linear in enumerate(self.linears[:-1]):
            x = linear(x)
            if self.norms is not None:
                x = _member_norm(self.norms[i], x)
            x = self._activate(x)
        return self.output(self.linears[-1](x)).squeeze(-1)

    def stacked_gradients(self, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                          loss: Callable[[torch.Tensor], torch.Tensor], create_graph: bool
                          ) -> dict[str, torch.Tensor]:
        """∇ of ``loss(f(x))`` in the stacked weights ``params`` (names as in
        :meth:`named_parameters`, each ``[G, ...]`` for ``G`` networks; inputs ``[G, K, in]``),
        by explicit backpropagation; no batch norm.

        For ``z_i = h_i W_i + b_i`` and ``h_{i+1} = φ(z_i)`` (leaky ReLU, times the dropout
        mask when training): ``δ_i = ∂loss/∂z_i``, ``∇W_i = h_iᵀ δ_i``, ``∇b_i = Σ_k δ_i``,
        ``δ_{i−1} = (δ_i W_iᵀ) ⊙ φ'(z_{i−1})``, where φ' is a constant of the forward pass
        (1 or the negative slope, 0 a.e. as a derivative), applied by the fused
        ``leaky_relu_backward`` kernel (one elementwise pass per layer each way: at these
        sizes the passes over ``[G, K, hidden]`` cost as much as the products). With
        ``create_graph`` the result is differentiable in ``params`` (exactly as autograd's
        double backward: MAML's second-order terms) at fewer elementwise passes; without it,
        it is constant.
        """
        y, tape = self.stacked_forward(params, x, create_graph)
        if not create_graph:
            y = y.detach().requires_grad_()
        with torch.enable_grad():
            (grad_y,) = torch.autograd.grad(loss(y), y, create_graph=create_graph)
        return self.stacked_backward(params, tape, y, grad_y, create_graph)

    def stacked_forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                        create_graph: bool) -> tuple[torch.Tensor, StackedTape]:
        """The forward half of :meth:`stacked_gradients`: outputs ``[G, K]`` and what the
        backward half needs (each layer's input, pre-activation and dropout mask)."""
        weights = [params[f'linears.{i}.weight'] for i in range(len(self.linears))]
        biases = [params[f'linears.{i}.bias'] for i in range(len(self.linears))]
        inputs, pre_activations, masks = [x], [], []
        with torch.set_grad_enabled(create_graph):
            h = x
            for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
                z = self._products(h, weight, bias)
                h = F.leaky_relu(z, self.negative_slope)
                if self.dropout and self.training:
                    keep = (torch.rand_like(z) >= self.dropout) / (1.0 - self.dropout)
                    h = h * keep
                    masks.append(keep)
                inputs.append(h)
                pre_activations.append(z.detach())
            z = self._products(h, weights[-1], biases[-1]).squeeze(-1)
            y = self.output(z)
        return y, StackedTape(inputs, pre_activations, masks)

    def stacked_backward(self, params: Mapping[str, torch.Tensor], tape: StackedTape,
                         y: torch.Tensor, grad_y: torch.Tensor, create_graph: bool
                         ) -> dict[str, torch.Tensor]:
        """The backward half of :meth:`stacked_gradients`: the gradients in ``params`` from
        ∂loss/∂y ``grad_y`` ``[G, K]`` at the outputs ``y`` of :meth:`stacked_forward`."""
        weights = [params[f'linears.{i}.weight'] for i in range(len(self.linears))]
        grads = {}
        with torch.set_grad_enabled(create_graph):
            delta = grad_y * (1.0 - y.square()) if self.output is torch.tanh else grad_y
            delta = delta.unsqueeze(-1)  # ∂loss/∂z of the output layer, [G, K, 1]
            for i in range(len(weights) - 1, -1, -1):
                grads[f'linears.{i}.weight'] = self._products(tape.inputs[i].transpose(1, 2),
                                                              delta)
                grads[f'linears.{i}.bias'] = delta.sum(dim=1)
                if i > 0:
                    delta = self._products(delta, weights[i].transpose(1, 2))  # ∂loss/∂h_i
                    if tape.masks:
                        delta = delta * tape.masks[i - 1]
                    delta = torch.ops.aten.leaky_relu_backward(
                        delta, tape.pre_activations[i - 1], self.negative_slope,
                        False)  # ⊙ φ'(z_{i−1})
        return grads

    def _products(self, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """``a @ b (+ bias)`` for each of ``G`` networks: ``[G, m, k] @ [G, k, n]`` (bias
        ``[G, n]``) -> ``[G, m, n]``. One batched kernel, except where the kernel is
        ``per_member`` (CPU) and no graph is being recorded: then one gemm per network,
        written in place into the result (CPU gemm beats CPU batched gemm at these sizes)."""
        kernel = self.kernel
        if kernel == 'auto':
            kernel = 'stacked' if a.device.type == 'cuda' else 'per_member'
        if kernel == 'stacked' or torch.is_grad_enabled():
            return torch.bmm(a, b) if bias is None else torch.baddbmm(bias[:, None, :], a, b)
        out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
        for g in range(a.shape[0]):
            if bias is None:
                torch.mm(a[g], b[g], out=out[g])
            else:
                torch.addmm(bias[g], a[g], b[g], out=out[g])
        return out

    def _member(self, m: int, h: torch.Tensor) -> torch.Tensor:
        """Member ``m`` alone: ``[K, in]`` -> ``[K]``."""
        for i, linear in enumerate(self.linears[:-1]):
            h = torch.addmm(linear.bias[m], h, linear.weight[m])
            if self.norms is not None:
                norm, part = self.norms[i], slice(m * h.shape[1], (m + 1) * h.shape[1])
                # Views into the stacked running statistics: updated in place, per member.
                h = F.batch_norm(h, norm.running_mean[part], norm.running_var[part],
                                 norm.weight[part], norm.bias[part], self.training,
                                 norm.momentum, norm.eps)
            h = self._activate(h)
        last = self.linears[-1]
        return self.output(torch.addmm(last.bias[m], h, last.weight[m])).squeeze(-1)

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.negative_slope)
        return F.dropout(x, self.dropout, self.training) if self.dropout else x


class BatchedConvEncoder(nn.Module):
    """``M`` conv encoders as grouped convolutions: pixels ``[C, H, W]`` -> features per member.

    The first layer's weight ``[M·c₁, C, k, k]`` serves both layouts: an input shared by all
    members ``[K, C, H, W]`` runs as one ordinary convolution producing every member's
    channels, per-member inputs ``[K, M·C, H, W]`` as a convolution with ``M`` groups.
    """

    def __init__(self, members: int, observation_shape: tuple[int, ...],
                 channels: tuple[int, ...], kernels: tuple[int, ...], strides: tuple[int, ...],
                 dropout: float, batch_norm: bool, negative_slope: float) -> None:
        super().__init__()
        in_channels, height, width = observation_shape
        self.members = members
        convs = []
        for i, (out, kernel, stride) in enumerate(zip(channels, kernels, strides, strict=True)):
            groups = 1 if i == 0 else members
            conv_in = in_channels if i == 0 else members * in_channels
            convs.append(nn.Conv2d(conv_in, members * out, kernel, stride, groups=groups))
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
            if height < 1 or width < 1:
                hint = ('; it looks like [H, W, C] (channels last, HWC): the cnn encoder '
                        'takes [C, H, W] (CHW)') if observation_shape[-1] in (1, 3, 4) \
                    and observation_shape[0] > 4 else ''
                raise ValueError(f'observation shape {observation_shape} is too small for conv '
                                 f'layer {i} (kernel {kernel}, stride {stride}){hint}')
            in_channels = out
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(nn.BatchNorm2d(members * c) for c in channels) \
            if batch_norm else None
        self.dropout, self.negative_slope = dropout, negative_slope
        self.output_dim = in_channels * height * width

    def reset_parameters(self, generator: torch.Generator) -> None:
        """U(±1/√fan_in) per member (fan_in of one group), as ``torch.nn.Conv2d``."""
        for conv in self.convs:
            fan_in = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
            _uniform_(conv.weight, 1.0 / math.sqrt(fan_in), generator)
            _uniform_(conv.bias, 1.0 / math.sqrt(fan_in), generator)
        for norm in self.norms or ():
            norm.reset_parameters()

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """The kernels."""
        return (conv.weight for conv in self.convs)

    def forward(self, obs: torch.Tensor, per_member: bool) -> torch.Tensor:
        """``[K, C, H, W]`` (shared) or ``[M, K, C, H, W]`` -> features ``[M, K, D]``."""
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        if per_member:
            members, rows = x.shape[:2]
            x = x.transpose(0, 1).reshape(rows, members * x.shape[2], *x.shape[3:])
        rows = x.shape[0]
        for i, conv in enumerate(self.convs):
            groups = self.members if (i > 0 or per_member) else 1
            x = F.conv2d(x, conv.weight, conv.bias, conv.stride, groups=groups)
            if self.norms is not None:
                x = self.norms[i](x)
            x = F.leaky_relu(x, self.negative_slope)
            if self.dropout:
                x = F.dropout(x, self.dropout, self.training)
        return x.reshape(rows, self.members, -1).transpose(0, 1)
