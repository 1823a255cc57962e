"""Atomic, checksummed, code-free checkpoints.

A checkpoint is a nested dict of tensors, numbers, strings, lists and dicts. It is written
with ``torch.save`` into memory, followed by an 8-byte magic and the SHA-256 of the payload,
to a temporary file in the target directory, fsynced, renamed over the target and the
directory fsynced: a crash leaves either the old or the new checkpoint, never a torn one.
Loading checks the trailer first (a truncated or altered file is reported as such, not as an
obscure unzip error) and then uses ``torch.load(weights_only=True)``, which never executes
pickled code.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pref_rl_learner.durable import atomic_write_bytes, fsync_directory
from pref_rl_learner.errors import PrefRLError

MAGIC = b'PRLCKPT1'
_TRAILER = len(MAGIC) + hashlib.sha256().digest_size


class CheckpointError(PrefRLError):
    """A checkpoint is missing, truncated, corrupt or not a pref-rl checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors and plain data only) to ``path``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, payload + MAGIC + hashlib.sha256(payload).digest())


def load_checkpoint(path: str | Path, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated, altered or holds anything but
            tensors and plain data.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f'{path}: cannot read checkpoint ({err.strerror})') from err
    if len(data) < _TRAILER or data[-_TRAILER:-_TRAILER + len(MAGIC)] != MAGIC:
        raise CheckpointError(
            f'{path}: not a complete pref-rl checkpoint ({len(data)} bytes, no trailer): '
            'truncated by a crash or a copy, or a different format')
    payload, digest = data[:-_TRAILER], data[-_TRAILER + len(MAGIC):]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f'{path}: checksum mismatch: the checkpoint is corrupt')
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for bad payloads
        raise CheckpointError(f'{path}: cannot be loaded as tensors and plain data: {err}') \
            from err
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: holds a {type(state).__name__}, not a dict')
    return state


def is_checkpoint_file(path: str | Path) -> bool:
    """Whether ``path`` is a file ending in a pref-rl checkpoint trailer (cheap: reads its
    last bytes only; the checksum is checked on loading)."""
    path = Path(path)
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            if f.tell() < _TRAILER:
                return False
            f.seek(-_TRAILER, 2)
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint_keeping_previous` keeps the checkpoint it replaced."""
    path = Path(path)
    return path.with_name(f'{path.stem}.previous{path.suffix}')


def save_checkpoint_keeping_previous(path: str | Path, state: dict[str, Any]) -> None:
    """:func:`save_checkpoint`, keeping the checkpoint it replaces as :func:`previous_path`
    (a hard link made before the atomic rename, so at every instant one of them is whole)."""
    path = Path(path)
    if is_checkpoint_file(path):
        previous = previous_path(path)
        previous.unlink(missing_ok=True)
        os.link(path, previous)
        fsync_directory(path.parent)
    save_checkpoint(path, state)


def load_newest_usable(path: str | Path, load: Callable[[Path], None]) -> str | None:
    """Restore from ``path`` with ``load(path)``, or from its :func:`previous_path` when
    ``path`` is unusable (``load`` raises :class:`CheckpointError`).

    Returns None when ``path`` was used, else a sentence saying which file was used and why.

    Raises:
        CheckpointError: neither is usable (naming both reasons).
    """
    path = Path(path)
    try:
        load(path)
        return None
    except CheckpointError as newest:
        previous = previous_path(path)
        if not previous.exists():
            raise
        try:
            load(previous)
        except CheckpointError as older:
            raise CheckpointError(f'{newest}; and the previous checkpoint: {older}') from older
        return (f'the newest checkpoint is unusable ({newest}); resumed from the previous one, '
                f'{previous}')
