"""Typed errors of the bag library: each names the bag or file at fault."""

from __future__ import annotations

from pref_rl_learner.errors import PrefRLError


class BagError(PrefRLError):
    """Base class of every error the bag library raises on purpose."""


class BagMetadataError(BagError):
    """A bag's ``metadata.yaml`` is missing, unparsable or inconsistent with the format."""


class BagFileError(BagError):
    """A bag's data file is unreadable, truncated or corrupt (the message names the file)."""


class BagInUseError(BagError):
    """The bag is being written by a live recorder (its lock is held)."""


class BagWriteError(BagError):
    """A bag cannot be created or written (target exists, disk full, writer closed, ...)."""


class MessageDefinitionError(BagError):
    """A message type's ``.msg`` definition cannot be found or parsed."""


class BagMessageError(BagError):
    """A recorded message cannot be converted to pref-rl's domain types."""
