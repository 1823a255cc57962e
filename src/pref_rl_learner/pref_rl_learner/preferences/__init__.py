"""Durable preference data: the append-only record log and the preference store on it."""

from pref_rl_learner.preferences.log import CorruptStoreError, StoreError
from pref_rl_learner.preferences.store import (
    ConflictingLabelError,
    DuplicatePairError,
    DuplicateQueryError,
    IncompatibleQueryError,
    PreferenceStore,
    PreferenceStoreConfig,
    UnknownQueryError,
)

__all__ = [
    'ConflictingLabelError',
    'CorruptStoreError',
    'DuplicatePairError',
    'DuplicateQueryError',
    'IncompatibleQueryError',
    'PreferenceStore',
    'PreferenceStoreConfig',
    'StoreError',
    'UnknownQueryError',
]
