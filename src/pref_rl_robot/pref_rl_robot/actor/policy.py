"""The robot's copy of the policy: random until weights arrive, then the learner's SAC actor.

Weights come from the learner as :class:`~pref_rl_learner.types.PolicyWeights` (over ROS: a
latched ``PolicyWeights`` message). Anything the robot executes must be checked first, so
:meth:`LocalPolicy.check` rebuilds the actor from the weights and refuses, with a
:class:`WeightsRejectedError` naming the reason, weights that

- are not newer than the policy acting now (a stale or repeated version),
- describe an unknown architecture or have missing, unexpected, misshapen or non-finite
  tensors (:meth:`pref_rl_learner.sac.SAC.actor_from_state` checks these),
- were built for other observation or action sizes than this robot's env.

A refused update leaves the acting policy untouched: the robot keeps running the last good
weights (or random actions, if none were ever accepted).
"""

from __future__ import annotations

import numpy as np

from pref_rl_learner.errors import InvalidWeightsError, PrefRLError
from pref_rl_learner.sac import SAC, ActorPolicy
from pref_rl_learner.types import PolicyWeights


class WeightsRejectedError(PrefRLError, ValueError):
    """Policy weights were refused; the message says why. The acting policy is unchanged."""


class CheckedWeights:
    """Weights that passed :meth:`LocalPolicy.check`: the rebuilt actor and its version."""

    def __init__(self, version: int, actor: ActorPolicy) -> None:
        self.version = version
        """Version of the weights (> the version acting when they were checked)."""
        self.actor = actor
        """The rebuilt CPU actor."""


class LocalPolicy:
    """Chooses actions for one env: uniform random at version 0, the SAC actor afterwards.

    Args:
        observation_dim: size of the env's flat observation.
        action_dim: size of the env's action; actions are float32 in ``[-1, 1]``.
        deterministic: act with ``tanh(mean)`` instead of sampling (sampling explores).
        seed: seeds the random actions and the actor's sampling noise.
    """

    def __init__(self, observation_dim: int, action_dim: int, deterministic: bool = False,
                 seed: int = 0) -> None:
        self.observation_dim, self.action_dim = int(observation_dim), int(action_dim)
        self.deterministic = deterministic
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._actor: ActorPolicy | None = None
        self.version = 0
        """Version of the weights acting now (0: none yet, actions are uniform random)."""

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The action for one observation ``[obs_dim]``: float32 ``[act_dim]`` in [-1, 1]."""
        if self._actor is None:
            return self._rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
        return self._actor.act(observation, self.deterministic)

    def check(self, weights: PolicyWeights) -> CheckedWeights:
        """Rebuild and validate ``weights`` without applying them.

        Raises:
            WeightsRejectedError: stale version, bad architecture or tensors, or sizes that
                do not fit this env.
        """
        if weights.version <= self.version:
            raise WeightsRejectedError(
                f'version {weights.version} is not newer than the acting version {self.version}')
        try:
            actor = SAC.actor_from_state(weights.architecture, dict(weights.tensors),
                                         seed=self.seed + weights.version)
        except InvalidWeightsError as err:
            raise WeightsRejectedError(f'version {weights.version}: {err}') from err
        sizes = (actor.actor.observation_dim, actor.actor.action_dim)
        if sizes != (self.observation_dim, self.action_dim):
            raise WeightsRejectedError(
                f'version {weights.version}: actor for (observation, action) dims {sizes}, '
                f'this env has {(self.observation_dim, self.action_dim)}')
        return CheckedWeights(weights.version, actor)

    def apply(self, checked: CheckedWeights) -> None:
        """Act with weights that passed :meth:`check` from now on.

        Raises:
            WeightsRejectedError: newer weights were applied since ``checked`` was made.
        """
        if checked.version <= self.version:
            raise WeightsRejectedError(f'version {checked.version} is not newer than the '
                                       f'acting version {self.version}')
        self._actor, self.version = checked.actor, checked.version
