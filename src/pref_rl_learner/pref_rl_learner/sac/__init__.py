"""Soft Actor-Critic for PEBBLE: the agent, its networks and the replay buffer."""

from pref_rl_learner.sac.agent import SAC, SACConfig, SACStateError
from pref_rl_learner.sac.networks import Actor, ActorPolicy, EnsembleLinear, EnsembleMLP
from pref_rl_learner.sac.replay import ReplayBuffer, ReplayError, SegmentDraw

__all__ = ['SAC', 'Actor', 'ActorPolicy', 'EnsembleLinear', 'EnsembleMLP', 'ReplayBuffer',
           'ReplayError', 'SACConfig', 'SACStateError', 'SegmentDraw']
