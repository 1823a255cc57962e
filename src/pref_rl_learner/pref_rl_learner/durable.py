"""Crash-safe file writes: fsync a directory, write a file atomically (no torch import)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(path: str | Path) -> None:
    """fsync a directory so that files created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and rename:
    a crash leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete the temp files :func:`atomic_write_bytes` of another process left in
    ``directory`` (a save killed before its rename). Call it only while holding the
    directory (e.g. its preference store's lock). Returns what was removed."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for path in directory.glob('.*.tmp-*'):
        pid = path.name.rsplit('.tmp-', 1)[1]
        if path.is_file() and pid.isdigit() and int(pid) != os.getpid():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
