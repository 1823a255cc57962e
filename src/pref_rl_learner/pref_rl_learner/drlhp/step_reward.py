"""Per-step evaluation of the reward ensemble inside ``env.step``, cheap enough for any agent.

A gymnasium step must return its reward at once, so the wrapper evaluates the ensemble on one
transition at a time. Through torch that is a dozen small operator calls at ~10-30 µs each
(about 0.3-0.7 ms per step for 3×256 MLP members on a CPU), far more than the arithmetic.
For MLP members without batch norm :class:`StepReward` runs the same function in numpy on a
snapshot of the weights: one batched ``matmul`` per layer for all members (see
``bench/drlhp_overhead.py`` for both costs). CNN members and batch norm use the torch model.
"""

from __future__ import annotations

import numpy as np
import torch

from pref_rl_learner.reward import RewardEnsemble
from pref_rl_learner.reward.normalizer import STD_FLOOR


class StepReward:
    """r̂(o, a) of one transition: mean of the normalised members, as
    :meth:`RewardEnsemble.reward`.

    Holds a snapshot: build a new one when the model's weights change.
    """

    def __init__(self, model: RewardEnsemble) -> None:
        self.model = model
        config = model.config
        self.uses_actions = config.inputs == 'state_action'
        self.numpy_path = model.encoder is None and not config.batch_norm
        # Per-member statistics [M, 1, 1], broadcast over the members' outputs [M, 1, 1].
        self.mean = model.normalizer.mean.detach().cpu().numpy().reshape(-1, 1, 1)
        self.std = np.maximum(model.normalizer.std.detach().cpu().numpy(),
                              STD_FLOOR).reshape(-1, 1, 1)
        self.slope = np.float32(config.negative_slope)
        self.tanh = config.output == 'tanh'
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        if self.numpy_path:
            for linear in model.head.linears:
                self.layers.append((linear.weight.detach().cpu().numpy().copy(),
                                    linear.bias.detach().cpu().numpy()[:, None, :].copy()))

    def __call__(self, observation: np.ndarray, action: np.ndarray) -> float:
        """The normalised reward of one (transformed) observation and encoded action."""
        if not self.numpy_path:
            return self._torch(observation, action)
        x = observation.reshape(-1)
        if self.uses_actions:
            x = np.concatenate([x, action])
        h = x[None, None, :]  # [1, 1, in], broadcast over the M members
        last = len(self.layers) - 1
        for i, (weight, bias) in enumerate(self.layers):
            h = np.matmul(h, weight) + bias  # [M, 1, out]
            if i < last:
                h = np.maximum(h, self.slope * h) if self.slope <= 1 else \
                    np.where(h > 0, h, self.slope * h)  # leaky ReLU
        raw = np.tanh(h) if self.tanh else h  # [M, 1, 1]
        return float(((raw - self.mean) / self.std).mean())  # normalise each, then average

    @torch.inference_mode()
    def _torch(self, observation: np.ndarray, action: np.ndarray) -> float:
        model = self.model
        raw = model(torch.from_numpy(observation)[None], torch.from_numpy(action)[None],
                    validate=False)  # [M, 1]
        return float(model.normalizer(raw).mean())
