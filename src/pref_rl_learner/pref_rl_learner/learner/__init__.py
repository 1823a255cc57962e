"""The asynchronous PEBBLE learner of the ROS session, without ROS (the ``learner`` node's
core): segments arrive in any rhythm, labels whenever a person answers."""

from pref_rl_learner.learner.config import LearnerConfig
from pref_rl_learner.learner.core import LearnerCore, SegmentRejectedError, query_id
from pref_rl_learner.learner.segment_store import SegmentStore, SegmentStoreError
from pref_rl_learner.learner.state import CHECKPOINT_NAME
from pref_rl_learner.learner.worker import LearnerWorker

__all__ = [
    'CHECKPOINT_NAME',
    'LearnerConfig',
    'LearnerCore',
    'LearnerWorker',
    'SegmentRejectedError',
    'SegmentStore',
    'SegmentStoreError',
    'query_id',
]
