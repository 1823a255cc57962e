"""Recorded sessions as rosbag2 bags (MCAP storage, format version 9), without ROS.

- :mod:`~pref_rl_learner.bag.writer`: :class:`BagWriter` writes serialized messages into a
  bag split into closed files, rewriting ``metadata.yaml`` after each one, so a crash loses
  at most the open file (and only its unwritten chunk, with recovery);
  :class:`~pref_rl_learner.bag.background.BackgroundWriter` runs it on a thread.
- :mod:`~pref_rl_learner.bag.reader`: :func:`read_bag`, :func:`read_segments`,
  :func:`read_labels`, ... yield pref-rl domain objects from a bag.
- :mod:`~pref_rl_learner.bag.check` / :mod:`~pref_rl_learner.bag.recover`: validate a bag
  and salvage what a crash left (``pref-rl bag check [--recover]``).
- :mod:`~pref_rl_learner.bag.typestore`: the stack's ``.msg`` types registered with rosbags
  and rosbag2's complete message definitions.
"""

from pref_rl_learner.bag.background import BackgroundWriter
from pref_rl_learner.bag.check import CheckReport, check_bag
from pref_rl_learner.bag.errors import (
    BagError,
    BagFileError,
    BagInUseError,
    BagMessageError,
    BagMetadataError,
    BagWriteError,
    MessageDefinitionError,
)
from pref_rl_learner.bag.metadata import BagMetadata, read_metadata
from pref_rl_learner.bag.reader import (
    BagMessage,
    BagReader,
    read_bag,
    read_labels,
    read_learner_status,
    read_queries,
    read_segments,
)
from pref_rl_learner.bag.recover import RecoveryReport, recover_bag
from pref_rl_learner.bag.typestore import MessageDefinitions, stack_definitions
from pref_rl_learner.bag.writer import BagWriter, TopicSpec

__all__ = [
    'BackgroundWriter', 'BagError', 'BagFileError', 'BagInUseError', 'BagMessage',
    'BagMessageError', 'BagMetadata', 'BagMetadataError', 'BagReader', 'BagWriteError',
    'BagWriter', 'CheckReport', 'MessageDefinitionError', 'MessageDefinitions',
    'RecoveryReport', 'TopicSpec', 'check_bag', 'read_bag', 'read_labels',
    'read_learner_status', 'read_metadata', 'read_queries', 'read_segments', 'recover_bag',
    'stack_definitions',
]
