"""SAC's networks: a batched ensemble MLP for the twin critics and the tanh-Gaussian actor.

The critics Q_1..Q_E are one :class:`EnsembleMLP`: each layer holds the weights of every member
stacked as ``[E, in, out]`` and computes all members in one ``torch.baddbmm``, so twin critics
cost one kernel per layer instead of one per layer and member.

The actor is the squashed Gaussian of Haarnoja et al., "Soft Actor-Critic Algorithms and
Applications" (https://arxiv.org/abs/1812.05905), appendix C: ``u ~ N(mu(s), sigma(s)^2)``,
``a = tanh(u)``, with the change-of-variables correction in ``log pi(a|s)``. As in PEBBLE's
SAC, ``log sigma`` is squashed by tanh into ``log_std_bounds`` (smooth, unlike a clamp).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from pref_rl_learner.errors import InvalidWeightsError

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _uniform_fan_in(tensor: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> None:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: torch.nn.Linear's default initialisation.

    Drawn on the generator's device and copied, so a CPU generator gives the same weights
    whatever device the tensor lives on.
    """
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        if generator is None or generator.device == tensor.device:
            tensor.uniform_(-bound, bound, generator=generator)
        else:
            tensor.copy_(torch.empty(tensor.shape, device=generator.device)
                         .uniform_(-bound, bound, generator=generator))


class EnsembleLinear(nn.Module):
    """``E`` independent affine layers evaluated together: ``y_e = x_e W_e + b_e``."""

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.num_members, self.in_features, self.out_features = (num_members, in_features,
                                                                 out_features)
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        """``[E, in, out]`` (already transposed for ``x @ W``)."""
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features))
        """``[E, 1, out]``."""
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Each member initialised like a fresh ``nn.Linear``."""
        _uniform_fan_in(self.weight, self.in_features, generator)
        _uniform_fan_in(self.bias, self.in_features, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[E, B, in]`` (or ``[B, in]``, shared by every member) -> ``[E, B, out]``."""
        if x.dim() == 2:
            x = x.expand(self.num_members, *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """``E`` ReLU MLPs of identical shape, every layer one batched matmul over the members."""

    def __init__(self, num_members: int, in_features: int, hidden_sizes: tuple[int, ...],
                 out_features: int) -> None:
        super().__init__()
        sizes = (in_features, *hidden_sizes, out_features)
        self.num_members = num_members
        self.layers = nn.ModuleList(EnsembleLinear(num_members, i, o)
                                    for i, o in zip(sizes[:-1], sizes[1:], strict=True))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every member's weights."""
        for layer in self.layers:
            layer.reset_parameters(generator)

    def forward(self, x: torch.Tensor, detach_parameters: bool = False) -> torch.Tensor:
        """``[B, in]`` (same input for every member) or ``[E, B, in]`` -> ``[E, B, out]``.

        ``detach_parameters`` evaluates with the weights detached: gradients still flow to
        ``x`` but none are computed for the weights (SAC's actor loss differentiates Q only
        with respect to the action).
        """
        if x.dim() == 2:
            x = x.expand(self.num_members, *x.shape)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            weight, bias = layer.weight, layer.bias
            if detach_parameters:
                weight, bias = weight.detach(), bias.detach()
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                # In place: baddbmm's backward needs its inputs, never its output.
                x = torch.relu_(x)
        return x

    def min_output(self, x: torch.Tensor) -> torch.Tensor:
        """``min_e f_e(x)`` ``[B]`` for a width-1 output, differentiable in ``x`` only.

        The weights are constants here (SAC's actor loss). The gradient of a minimum flows
        through the member that attains it, so on the CPU the backward pass runs each
        member only on the rows where it is the minimum: one member's worth of matmuls
        instead of all ``E``. Elsewhere it is the dense path (row splitting would need a
        device-to-host sync).
        """
        if x.device.type != 'cpu':
            return self(x, detach_parameters=True).amin(dim=0).squeeze(-1)
        params = [p.detach() for layer in self.layers for p in (layer.weight, layer.bias)]
        return _MinOverMembers.apply(x, *params)


class _MinOverMembers(torch.autograd.Function):
    """``min_e MLP_e(x)`` with the input gradient computed on the argmin rows only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        weights, biases = params[0::2], params[1::2]
        h = x.expand(weights[0].shape[0], *x.shape)
        hidden = []
        for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(bias, h, weight)
            if i < len(weights) - 1:
                h = torch.relu_(h)
                hidden.append(h)
        q_min, member = h.squeeze(-1).min(dim=0)
        ctx.save_for_backward(member, *hidden, *weights)
        return q_min

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        member, *saved = ctx.saved_tensors
        num_layers = (len(saved) + 1) // 2
        hidden, weights = saved[:num_layers - 1], saved[num_layers - 1:]
        grad_x = grad.new_empty(grad.shape[0], weights[0].shape[1])
        for e in range(weights[0].shape[0]):
            rows = (member == e).nonzero().squeeze(1)
            # Backpropagate d q_e / d x through member e for its rows only.
            g = grad.index_select(0, rows).unsqueeze(1)
            for i in range(num_layers - 1, -1, -1):
                g = g @ weights[i][e].T
                if i > 0:
                    g = torch.ops.aten.threshold_backward(
                        g, hidden[i - 1][e].index_select(0, rows), 0.0)
            grad_x.index_copy_(0, rows, g)
        return (grad_x, *([None] * (2 * num_layers)))


class Actor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy ``pi(a|s)`` over actions in ``[-1, 1]^A``."""

    def __init__(self, observation_dim: int, action_dim: int, hidden_sizes: tuple[int, ...],
                 log_std_bounds: tuple[float, float]) -> None:
        super().__init__()
        self.observation_dim, self.action_dim = observation_dim, action_dim
        self.hidden_sizes = tuple(hidden_sizes)
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        sizes = (observation_dim, *hidden_sizes, 2 * action_dim)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:],
                                                                   strict=True))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every weight (``nn.Linear``'s default distribution)."""
        for layer in self.layers:
            _uniform_fan_in(layer.weight, layer.in_features, generator)
            _uniform_fan_in(layer.bias, layer.in_features, generator)

    def architecture(self) -> str:
        """JSON with everything needed to rebuild this network (see :meth:`from_architecture`)."""
        return json.dumps({'type': 'tanh_gaussian_mlp', 'observation_dim': self.observation_dim,
                           'action_dim': self.action_dim, 'hidden_sizes': list(self.hidden_sizes),
                           'log_std_bounds': list(self.log_std_bounds), 'activation': 'relu'})

    @classmethod
    def from_architecture(cls, architecture: str) -> Actor:
        """An untrained actor of the architecture :meth:`architecture` described.

        Raises:
            InvalidWeightsError: the JSON is malformed or describes another network.
        """
        try:
            spec = json.loads(architecture)
            if spec.pop('type') != 'tanh_gaussian_mlp' or spec.pop('activation') != 'relu':
                raise ValueError('not a tanh_gaussian_mlp with relu activations')
            return cls(int(spec['observation_dim']), int(spec['action_dim']),
                       tuple(int(h) for h in spec['hidden_sizes']),
                       (float(spec['log_std_bounds'][0]), float(spec['log_std_bounds'][1])))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise InvalidWeightsError(f'actor architecture {architecture!r}: {err}') from err

    def distribution(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``mu`` and standard deviation ``sigma`` of ``u`` (pre-tanh), each ``[B, A]``."""
        x = observations
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = F.linear(x, layer.weight, layer.bias)
            if i < last:
                x = torch.relu_(x)
        mean, log_std = x.chunk(2, dim=-1)
        # log sigma = lo + (hi - lo) * (tanh(raw) + 1) / 2, inside [lo, hi].
        low, high = self.log_std_bounds
        log_std = low + 0.5 * (high - low) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def sample(self, observations: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``a = tanh(mu + sigma * eps)`` ``[B, A]`` and ``log pi(a|s)`` ``[B]``.

        ``log pi(a|s) = sum_i [log N(u_i; mu_i, sigma_i) - log(1 - tanh(u_i)^2)]`` where
        ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` is the stable form.
        """
        mean, log_std = self.distribution(observations)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        # log N(u; mu, sigma) with (u - mu) / sigma = eps.
        log_normal = -0.5 * eps.square() - log_std - _HALF_LOG_2PI
        log_det = 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))
        return torch.tanh(u), (log_normal - log_det).sum(dim=-1)

    @torch.no_grad()
    def act(self, observations: torch.Tensor, deterministic: bool,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """``tanh(mu)`` (deterministic) or a sample of ``pi(.|s)``; no gradients."""
        mean, log_std = self.distribution(observations)
        if deterministic:
            return torch.tanh(mean)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return torch.tanh(mean + log_std.exp() * eps)


def actor_tensors(actor: Actor) -> dict[str, np.ndarray]:
    """The actor's parameters as named float32 numpy arrays (copies, on the CPU)."""
    return {name: t.detach().to('cpu', torch.float32).numpy().copy()
            for name, t in actor.state_dict().items()}


class ActorPolicy:
    """A CPU copy of an actor for the robot side: numpy in, numpy out.

    Built by :meth:`from_state` from what :meth:`pref_rl_learner.sac.agent.SAC.actor_state`
    exports; holds its own random generator for stochastic actions.
    """

    def __init__(self, actor: Actor, seed: int = 0) -> None:
        self.actor = actor.to('cpu').eval()
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_state(cls, architecture: str, tensors: Mapping[str, object],
                   seed: int = 0) -> ActorPolicy:
        """Rebuild from an architecture JSON and named arrays (numpy or torch).

        Raises:
            InvalidWeightsError: the architecture is unknown, a tensor is missing, unexpected,
                of the wrong shape, or not finite.
        """
        actor = Actor.from_architecture(architecture)
        expected = actor.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise InvalidWeightsError(f'actor tensors: missing {missing}, unexpected {unexpected}')
        loaded = {}
        for name, value in tensors.items():
            arr = torch.as_tensor(np.asarray(value, dtype=np.float32))
            if tuple(arr.shape) != tuple(expected[name].shape):
                raise InvalidWeightsError(f'actor tensor {name!r}: shape {tuple(arr.shape)}, '
                                          f'expected {tuple(expected[name].shape)}')
            if not torch.isfinite(arr).all():
                raise InvalidWeightsError(f'actor tensor {name!r} has non-finite values')
            loaded[name] = arr
        actor.load_state_dict(loaded)
        return cls(actor, seed)

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """``[obs_dim] -> [act_dim]`` or ``[N, obs_dim] -> [N, act_dim]``, float32 in [-1, 1]."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32))
        single = obs.dim() == 1
        action = self.actor.act(obs.reshape(1, -1) if single else obs, deterministic,
                                self.generator)
        return action[0].numpy() if single else action.numpy()
