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
        return float(self.batch(observation[None], action[None])[0])

    def batch(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Normalised rewards ``[B]`` of observations ``[B, *obs]`` and actions ``[B, A]``
        (the sub-envs of a VecEnv in one call)."""
        if not self.numpy_path:
            return self._torch(observations, actions)
        x = np.asarray(observations, np.float32).reshape(observations.shape[0], -1)
        if self.uses_actions:
            x = np.concatenate([x, np.asarray(actions, np.float32)], axis=1)
        h = x[None]  # [1, B, in], broadcast over the M members
        last = len(self.layers) - 1
        for i, (weight, bias) in enumerate(self.layers):
            h = np.matmul(h, weight) + bias  # [M, B, out]
            if i < last:
                h = np.maximum(h, self.slope * h) if self.slope <= 1 else \
                    np.where(h > 0, h, self.slope * h)  # leaky ReLU
        raw = np.tanh(h) if self.tanh else h  # [M, B, 1]
        return ((raw - self.mean) / self.std).mean(axis=0)[:, 0]  # normalise each, average

    @torch.inference_mode()
    def _torch(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        model = self.model
        raw = model(torch.from_numpy(np.ascontiguousarray(observations)),
                    torch.from_numpy(np.asarray(actions, np.float32)), validate=False)  # [M, B]
        return model.normalizer(raw).mean(dim=0).numpy()
