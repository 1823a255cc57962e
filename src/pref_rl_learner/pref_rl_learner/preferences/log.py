"""Append-only, checksummed, fsynced record log: the on-disk format of the preference store.

A log file is a sequence of records. Each is written with one ``write()`` and made durable
with ``fdatasync`` (``fsync`` where that is missing) before :meth:`RecordLog.append` returns,
so a caller may acknowledge what it appended as soon as ``append`` returns::

    record  = header payload
    header  = magic b'PRL1' | payload length (u64) | CRC32 of the payload (u32)
              | CRC32 of the 16 header bytes before it (u32)        20 bytes, little-endian
    payload = JSON length (u32) | JSON (UTF-8) | array bytes
    JSON    = {"m": {meta ...}, "a": [[name, dtype, shape], ...]}

The arrays' raw little-endian bytes follow the JSON back to back, in the order listed. Only
bool, uint8, int32/64 and float32/64 arrays are accepted, and reading is ``json.loads`` plus
``np.frombuffer`` on sizes checked against the payload: loading a log never executes code.

Recovery (:meth:`RecordLog.replay`, run once on open). The first record that cannot be read
(too few bytes for a header, no magic, a checksum mismatch, a length past the end of the
file) is either

- a *torn tail*: no valid record starts anywhere after it. A crash during an append leaves
  exactly this (a prefix of the record, or blocks the file system filled with zeros), and
  such a record was never acknowledged. Its bytes are copied to ``<log>.torn-<offset>``, the
  log is truncated to the last good record, and a warning is logged; or
- *corruption*: a valid record follows it. No crash can produce that, because the log is
  truncated before anything is appended after a torn tail, so dropping the bad record could
  lose acknowledged data. :class:`CorruptStoreError` names the file and byte offset and the
  file is left untouched.

One writer at a time: the log holds an exclusive ``flock`` while open, released by the OS
when the process dies (``kill -9`` included). An append that fails (disk full, I/O error)
is truncated away, raises :class:`StoreError` and leaves the log refusing further appends
until it is reopened, since after a failed ``fsync`` the kernel's page cache can no longer be
trusted to match the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pref_rl_learner.durable import fsync_directory
from pref_rl_learner.errors import PrefRLError

_LOG = logging.getLogger(__name__)

MAGIC = b'PRL1'
"""First four bytes of every record."""
_HEADER = struct.Struct('<4sQI')  # magic, payload length, payload CRC32
_CRC = struct.Struct('<I')
HEADER_SIZE = _HEADER.size + _CRC.size
"""Bytes in a record header (20)."""
ARRAY_DTYPES = frozenset({'|b1', '|u1', '<i4', '<i8', '<f4', '<f8'})
"""Array dtypes (numpy ``dtype.str``) a record may hold."""
_sync = getattr(os, 'fdatasync', os.fsync)


class StoreError(PrefRLError):
    """The preference store cannot do what was asked (locked, closed, a write failed, ...)."""


class CorruptStoreError(StoreError):
    """A log holds damaged data that a crash cannot explain; ``path`` and ``offset`` say where."""

    def __init__(self, path: str | Path, offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f'{path}: corrupt record at byte offset {offset}: {reason}')


@dataclass(frozen=True, eq=False)
class Record:
    """One record read back from a log."""

    offset: int
    """Byte offset of the record's header in the file."""
    meta: dict[str, Any]
    """The JSON meta object."""
    arrays: dict[str, np.ndarray]
    """Name -> read-only array viewing ``payload`` (copy what you keep)."""
    payload: bytes
    """The raw payload."""

    @property
    def size(self) -> int:
        """Bytes the record takes in the file, header included."""
        return HEADER_SIZE + len(self.payload)

    def frame(self) -> bytes:
        """The record's bytes exactly as in the file (header + payload)."""
        return _frame([self.payload])


def _frame(parts: list[bytes | np.ndarray]) -> bytes:
    crc, length = 0, 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        length += len(part)
    head = _HEADER.pack(MAGIC, length, crc)
    return b''.join([head, _CRC.pack(zlib.crc32(head)), *parts])


def encode_record(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
                  ) -> bytes:
    """The bytes of one record holding JSON-serialisable ``meta`` and numeric ``arrays``."""
    specs, blobs = [], []
    for name, value in (arrays or {}).items():
        arr = np.asarray(value)
        dtype = arr.dtype.newbyteorder('<')
        if dtype.str not in ARRAY_DTYPES:
            raise StoreError(f'array {name!r}: dtype {arr.dtype} cannot be stored '
                             f'(allowed: {sorted(ARRAY_DTYPES)})')
        specs.append([name, dtype.str, list(arr.shape)])
        blobs.append(np.ascontiguousarray(arr, dtype=dtype).reshape(-1).view(np.uint8))
    doc = json.dumps({'m': dict(meta), 'a': specs}, ensure_ascii=False, allow_nan=False,
                     separators=(',', ':')).encode('utf-8')
    return _frame([_CRC.pack(len(doc)), doc, *blobs])


def decode_payload(payload: bytes, path: str | Path, offset: int
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Meta and arrays of a payload whose checksum matched; anything odd is corruption."""
    try:
        (doc_len,) = _CRC.unpack_from(payload, 0)
        doc = json.loads(payload[_CRC.size:_CRC.size + doc_len].decode('utf-8'))
        meta, specs = doc['m'], doc['a']
        if not isinstance(meta, dict) or not isinstance(specs, list):
            raise ValueError('meta is not an object or array list is not a list')
        pos, arrays = _CRC.size + doc_len, {}
        for name, dtype_str, shape in specs:
            if not isinstance(name, str) or dtype_str not in ARRAY_DTYPES:
                raise ValueError(f'array {name!r} has dtype {dtype_str!r}')
            shape = tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise ValueError(f'array {name!r} has shape {shape}')
            dtype, count = np.dtype(dtype_str), math.prod(shape)
            if pos + count * dtype.itemsize > len(payload):
                raise ValueError(f'array {name!r} runs past the payload')
            arrays[name] = np.frombuffer(payload, dtype, count, pos).reshape(shape)
            pos += count * dtype.itemsize
        if pos != len(payload):
            raise ValueError(f'{len(payload) - pos} bytes after the last array')
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise CorruptStoreError(path, offset, f'undecodable payload ({exc})') from None
    return meta, arrays


def _read_record(read: Callable[[int, int], bytes], offset: int, size: int, path: Path
                 ) -> tuple[Record | None, str]:
    """The record at ``offset`` of a file of ``size`` bytes, or None and what is wrong."""
    if size - offset < HEADER_SIZE:
        return None, f'only {size - offset} bytes left, fewer than a record header'
    head = read(offset, HEADER_SIZE)
    magic, length, payload_crc = _HEADER.unpack_from(head)
    if magic != MAGIC:
        return None, f'no record magic (found {magic!r})'
    if zlib.crc32(head[:_HEADER.size]) != _CRC.unpack_from(head, _HEADER.size)[0]:
        return None, 'header checksum mismatch'
    if length > size - offset - HEADER_SIZE:
        return None, f'payload of {length} bytes runs past the end of the file ({size} bytes)'
    payload = read(offset + HEADER_SIZE, length)
    if zlib.crc32(payload) != payload_crc:
        return None, 'payload checksum mismatch'
    meta, arrays = decode_payload(payload, path, offset)
    return Record(offset, meta, arrays, payload), ''


def _file_reader(f: Any) -> Callable[[int, int], bytes]:
    def read(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)
    return read


def _find_valid_record(path: Path, start: int, size: int) -> int | None:
    """Offset of the first readable record starting in ``[start, size)``, None if there is none."""
    if start >= size:
        return None
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
        pos = mm.find(MAGIC, start)
        while pos != -1:
            try:
                record, _ = _read_record(lambda o, n: mm[o:o + n], pos, size, path)
            except CorruptStoreError:
                return pos  # checksums matched: it was written as a record
            if record is not None:
                return pos
            pos = mm.find(MAGIC, pos + 1)
    return None


def read_records(path: str | Path, end: int | None = None) -> Iterator[Record]:
    """Every record of a complete log file (e.g. an export) up to byte ``end``.

    Raises:
        CorruptStoreError: any record cannot be read (no torn-tail tolerance here).
    """
    path = Path(path)
    with open(path, 'rb', buffering=1 << 20) as f:
        size = os.fstat(f.fileno()).st_size if end is None else end
        read, offset = _file_reader(f), 0
        while offset < size:
            record, problem = _read_record(read, offset, size, path)
            if record is None:
                raise CorruptStoreError(path, offset, problem)
            yield record
            offset += record.size


def write_log_file(path: str | Path, frames: Iterable[bytes], fsync: bool = True) -> None:
    """Write records to ``path`` atomically: a temporary file, fsynced, then renamed."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            for frame in frames:
                f.write(frame)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if fsync:
        fsync_directory(path.parent)


class RecordLog:
    """An open, exclusively locked log file: :meth:`replay` once, then :meth:`append`."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        """Open (creating) ``path`` and lock it; fsync off is for tests and benchmarks only."""
        self.path = Path(path)
        self._fsync = fsync
        created = not self.path.exists()
        self._fd: int | None = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise StoreError(f'{self.path} is open in another store (this or another process)'
                             ) from None
        if created and fsync:
            try:
                fsync_directory(self.path.parent)
            except OSError:
                self.close()
                raise
        self._end: int | None = None
        self._failed = ''
        self.torn_bytes = 0
        """Bytes of a torn last record dropped by :meth:`replay` (0: none)."""

    @property
    def end(self) -> int:
        """Bytes of valid records in the file (after :meth:`replay`)."""
        if self._end is None:
            raise StoreError(f'{self.path}: replay() has not run')
        return self._end

    def replay(self) -> Iterator[Record]:
        """Yield every record in order, then drop a torn tail (see the module docstring).

        Raises:
            CorruptStoreError: a damaged record is followed by a valid one, or a record with
                matching checksums cannot be decoded.
        """
        fd = self._require_fd()
        if self._end is not None:
            raise StoreError(f'{self.path}: replay() may run only once')
        size, offset, problem = os.fstat(fd).st_size, 0, ''
        with open(self.path, 'rb', buffering=1 << 20) as f:
            read = _file_reader(f)
            while offset < size:
                record, problem = _read_record(read, offset, size, self.path)
                if record is None:
                    break
                yield record
                offset += record.size
        if offset < size:
            self._drop_torn_tail(offset, size, problem)
        self._end = offset

    def _drop_torn_tail(self, offset: int, size: int, problem: str) -> None:
        fd = self._require_fd()
        found = _find_valid_record(self.path, offset + 1, size)
        if found is not None:
            raise CorruptStoreError(
                self.path, offset, f'{problem}, yet a valid record follows at byte offset '
                f'{found}; the file was left untouched (restore it from a backup or an export)')
        # Keep the bytes (never acknowledged, but never destroyed either), then truncate.
        for n in itertools.count():
            keep = self.path.with_name(f'{self.path.name}.torn-{offset}' + (f'.{n}' if n else ''))
            try:
                out = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                continue
        try:
            os.write(out, os.pread(fd, size - offset, offset))
            if self._fsync:
                os.fsync(out)
        finally:
            os.close(out)
        os.ftruncate(fd, offset)
        if self._fsync:
            os.fsync(fd)
            fsync_directory(self.path.parent)
        self.torn_bytes = size - offset
        _LOG.warning('%s: dropped a torn record at byte offset %d (%s; %d bytes, never '
                     'acknowledged, kept in %s)', self.path, offset, problem, size - offset,
                     keep.name)

    def append(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
               ) -> int:
        """Append one record and make it durable; returns its byte offset.

        Raises:
            StoreError: the write or fsync failed (nothing was stored; reopen the log).
        """
        data = encode_record(meta, arrays)
        fd, offset = self._require_fd(), self.end
        if self._failed:
            raise StoreError(f'{self.path}: an earlier append failed ({self._failed}); '
                             'reopen the store')
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self._fsync:
                _sync(fd)
        except OSError as exc:
            self._failed = str(exc)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            raise StoreError(f'{self.path}: could not append a record ({exc}); it was not '
                             'stored; reopen the store') from exc
        self._end = offset + len(data)
        return offset

    def read(self, offset: int) -> Record:
        """The record at ``offset`` (as returned by :meth:`append` or :attr:`Record.offset`)."""
        fd = self._require_fd()
        record, problem = _read_record(lambda o, n: os.pread(fd, n, o), offset, self.end,
                                       self.path)
        if record is None:
            raise CorruptStoreError(self.path, offset, problem)
        return record

    def records(self) -> Iterator[Record]:
        """Every record up to :attr:`end`, read back from the file and checked."""
        return read_records(self.path, self.end)

    def close(self) -> None:
        """Close the file and release the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _require_fd(self) -> int:
        if self._fd is None:
            raise StoreError(f'{self.path}: the log is closed')
        return self._fd
