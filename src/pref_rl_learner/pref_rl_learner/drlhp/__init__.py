"""DRLHP: a gymnasium wrapper whose reward is learned from preferences, asynchronously.

The "human preferences env wrapper" design of Deep RL from Human Preferences (Christiano et
al. 2017, https://arxiv.org/abs/1706.03741) on this stack's core library:

- :mod:`.config`: :class:`DrlhpConfig` (workflow, segments, labels, worker) and errors.
- :mod:`.wrapper`: :class:`PreferenceRewardWrapper`, the env wrapper.
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
from pref_rl_learner.drlhp.segments import identity_transform, pixel_transform
from pref_rl_learner.drlhp.worker import load_splits, save_splits
from pref_rl_learner.drlhp.wrapper import PreferenceRewardWrapper

__all__ = ['DrlhpConfig', 'DrlhpError', 'ExternalGatherer', 'ObservationTransformError',
           'PreferenceGatherer', 'PreferenceRewardWrapper', 'ScriptedGatherer', 'WorkerError',
           'identity_transform', 'load_reward_checkpoint', 'load_splits', 'pixel_transform',
           'save_reward_checkpoint', 'save_splits']
