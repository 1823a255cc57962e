"""DRLHP: a gymnasium wrapper whose reward is learned from preferences, asynchronously.

The "human preferences env wrapper" design of Deep RL from Human Preferences (Christiano et
al. 2017, https://arxiv.org/abs/1706.03741) on this stack's core library:

- :mod:`.config`: :class:`DrlhpConfig` (workflow, segments, labels, worker) and errors.
- :mod:`.wrapper`: :class:`PreferenceRewardWrapper`, the gymnasium env wrapper.
- :mod:`.vec_env`: :class:`PreferenceRewardVecEnv`, the same for a stable-baselines3
  ``VecEnv`` (one worker for every sub-env; imported on first use).
- :mod:`.client`, :mod:`.api`: the agent side both share (worker, local model, user API).
- :mod:`.worker`: the background process that asks for labels and trains the ensemble.
- :mod:`.gatherers`: label sources (scripted teacher, external/person).
- :mod:`.segments`: observation transforms (pixels included), action encoding, clips.
- :mod:`.model_io`: reward-model checkpoints and weight transport.
"""

from pref_rl_learner.drlhp.config import (
    DrlhpConfig,
    DrlhpError,
    ObservationTransformError,
    WorkerError,
)
from pref_rl_learner.drlhp.gatherers import (
    ExternalGatherer,
    PreferenceGatherer,
    ScriptedGatherer,
)
from pref_rl_learner.drlhp.model_io import load_reward_checkpoint, save_reward_checkpoint
from pref_rl_learner.drlhp.segments import PixelTransform, identity_transform, pixel_transform
from pref_rl_learner.drlhp.worker import load_splits, save_splits
from pref_rl_learner.drlhp.wrapper import PreferenceRewardWrapper

__all__ = ['DrlhpConfig', 'DrlhpError', 'ExternalGatherer', 'ObservationTransformError',
           'PixelTransform', 'PreferenceGatherer', 'PreferenceRewardVecEnv',
           'PreferenceRewardWrapper', 'ScriptedGatherer', 'WorkerError', 'identity_transform',
           'load_reward_checkpoint', 'load_splits', 'pixel_transform', 'save_reward_checkpoint',
           'save_splits']


def __getattr__(name: str):
    # The VecEnv form needs stable-baselines3: imported only when asked for.
    if name == 'PreferenceRewardVecEnv':
        from pref_rl_learner.drlhp.vec_env import PreferenceRewardVecEnv

        return PreferenceRewardVecEnv
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
