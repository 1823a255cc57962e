"""A tolerant MCAP scanner: validates a file record by record and reads what is intact.

Unlike an indexed reader (rosbags' needs the footer and summary), this walks the data section
from the start, so it also reads a file whose writer was killed: every complete record before
the tear is used, and the report says where the tear is and how many bytes follow it. It
checks what the MCAP specification (https://mcap.dev/spec) lets a reader check: magic bytes,
record bounds, chunk sizes and CRCs, the data-section and summary CRCs (each when the writer
computed it; 0 means "not computed"), and the statistics record against the messages found.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

from pref_rl_learner.bag.errors import BagFileError

MAGIC = b'\x89MCAP0\r\n'

HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
STATISTICS, METADATA, DATA_END = 0x0B, 0x0C, 0x0F
_NAMES = {HEADER: 'header', FOOTER: 'footer', SCHEMA: 'schema', CHANNEL: 'channel',
          MESSAGE: 'message', CHUNK: 'chunk', 0x07: 'message index', 0x08: 'chunk index',
          0x09: 'attachment', 0x0A: 'attachment index', STATISTICS: 'statistics',
          METADATA: 'metadata', 0x0D: 'metadata index', 0x0E: 'summary offset',
          DATA_END: 'data end'}

_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')
_MESSAGE_HEAD = struct.Struct('<HIQQ')  # channel id, sequence, log time, publish time
_CHUNK_HEAD = struct.Struct('<QQQI')  # start time, end time, uncompressed size, crc


class _MalformedError(Exception):
    """A record's content does not parse (internal: becomes a report entry)."""


@dataclass(frozen=True)
class Schema:
    """An MCAP schema record: a message type and its definition."""

    id: int
    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class Channel:
    """An MCAP channel record: a topic, its schema and metadata (QoS for ros2)."""

    id: int
    schema_id: int
    topic: str
    message_encoding: str
    metadata: dict[str, str]


class Message(NamedTuple):
    """An MCAP message record."""

    channel_id: int
    sequence: int
    log_time: int
    publish_time: int
    data: bytes


@dataclass
class ScanReport:
    """What a scan of one file found."""

    path: Path
    size: int = 0
    profile: str = ''
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    """Intact messages read, per channel id."""
    start_ns: int = 0
    end_ns: int = 0
    closed: bool = False
    """Data end, summary, footer and closing magic are all present (a finished file)."""
    data_complete: bool = False
    """The data section ends with its data-end record (every message is there, even when
    the summary after it is damaged)."""
    tear: str = ''
    """Why the file is not closed (empty when it is)."""
    good_end: int = 0
    """Offset just past the last intact record (== size for a closed file)."""
    problems: list[str] = field(default_factory=list)
    """Corruption found (CRC mismatches, malformed records, statistics disagreeing)."""
    statistics: dict[int, int] | None = None
    """Per-channel message counts of the summary's statistics record, when present."""
    skipped_bytes: int = 0
    """Bytes of records skipped as corrupt (their messages are not read)."""
    salvaged_from_torn_chunk: int = 0
    """Complete messages read out of a chunk cut off by the tear."""
    rosbag2_record: dict[str, str] = field(default_factory=dict)
    """The file's ``rosbag2`` metadata record (rosbag2 and rosbags write one per file:
    ``serialized_metadata``, the file's bag metadata as YAML; rosbag2 adds ``ROS_DISTRO``)."""

    @property
    def message_count(self) -> int:
        """Intact messages read."""
        return sum(self.counts.values())

    @property
    def lost_bytes(self) -> int:
        """Bytes after the last intact record of a torn file (0 for a closed one)."""
        return 0 if self.closed or self.data_complete else self.size - self.good_end

    @property
    def ok(self) -> bool:
        """Closed and free of problems."""
        return self.closed and not self.problems

    @property
    def rosbag2_metadata(self) -> str:
        """The ``serialized_metadata`` of the file's ``rosbag2`` record ('' when none)."""
        return self.rosbag2_record.get('serialized_metadata', '')

    @property
    def ros_distro(self) -> str:
        """The ROS distro that wrote the file, per its ``rosbag2`` record ('' when unknown)."""
        if self.rosbag2_record.get('ROS_DISTRO'):
            return self.rosbag2_record['ROS_DISTRO']
        try:
            info = yaml.safe_load(self.rosbag2_metadata)
        except yaml.YAMLError:
            return ''
        if isinstance(info, dict) and 'rosbag2_bagfile_information' in info:
            info = info['rosbag2_bagfile_information']
        distro = info.get('ros_distro') if isinstance(info, dict) else None
        return distro if isinstance(distro, str) else ''

    def topic_counts(self) -> dict[str, int]:
        """Intact messages read, per topic."""
        out: dict[str, int] = {}
        for cid, n in self.counts.items():
            topic = self.channels[cid].topic if cid in self.channels else f'<channel {cid}>'
            out[topic] = out.get(topic, 0) + n
        return out


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise _MalformedError('string runs past its record')
    return bytes(buf[pos + 4:end]).decode('utf-8', errors='replace'), end


def _string_map(buf: memoryview, pos: int) -> tuple[dict[str, str], int]:
    (n,) = _U32.unpack_from(buf, pos)
    end, pos, out = pos + 4 + n, pos + 4, {}
    while pos < end:
        key, pos = _string(buf, pos)
        out[key], pos = _string(buf, pos)
    return out, end


def _decompress(data: memoryview, compression: str, size: int) -> bytes:
    if compression == '':
        return bytes(data)
    if compression == 'zstd':
        from backports import zstd
        return zstd.decompress(data)
    if compression == 'lz4':
        import lz4.frame
        return lz4.frame.decompress(data)
    raise _MalformedError(f'unknown chunk compression {compression!r}')


class McapScanner:
    """Walks one MCAP file; :meth:`messages` yields its intact messages in file order.

    ``report`` fills in while iterating (schemas and channels are known before their
    messages) and is complete once the iterator is exhausted.
    """

    def __init__(self, path: str | Path) -> None:
        self.report = ScanReport(Path(path))

    def messages(self) -> Iterator[Message]:
        """Intact messages of the file, in file order."""
        path = self.report.path
        try:
            with open(path, 'rb') as f:
                size = self.report.size = path.stat().st_size
                if size < len(MAGIC):
                    self._tear(0, f'only {size} bytes: the writer never flushed its header')
                    return
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    buf = memoryview(mm)
                    try:
                        yield from self._walk(buf)
                    finally:
                        buf.release()
        except OSError as err:
            raise BagFileError(f'{path}: cannot be read: {err.strerror or err}') from None

    def _tear(self, pos: int, reason: str) -> None:
        self.report.tear, self.report.good_end = reason, pos

    def _walk(self, buf: memoryview) -> Iterator[Message]:
        report, size = self.report, len(buf)
        if buf[:8] != MAGIC:
            self.report.problems.append('does not start with the MCAP magic bytes')
            self._tear(0, 'not an MCAP file')
            return
        pos = len(MAGIC)
        while True:
            if pos + 9 > size:
                self._tear(pos, f'ends at offset {size} without a footer' if pos == size else
                           f'record header at offset {pos} cut off')
                return
            op, (length,) = buf[pos], _U64.unpack_from(buf, pos + 1)
            end = pos + 9 + length
            name = _NAMES.get(op, f'opcode 0x{op:02x}')
            if op == 0:
                self._tear(pos, f'invalid record (opcode 0x00) at offset {pos}')
                return
            if end > size:
                if op == CHUNK:
                    yield from self._torn_chunk(buf[pos + 9:size], pos)
                self._tear(pos, f'{name} record at offset {pos} runs {end - size} bytes past '
                           'the end of the file')
                return
            if op in (DATA_END, FOOTER):
                try:
                    self._finish(buf, pos)
                except (struct.error, ValueError) as err:
                    report.problems.append(f'summary at offset {pos} is unreadable: {err}')
                report.good_end = size if report.closed else pos
                return
            try:
                yield from self._record(op, buf[pos + 9:end], pos)
            except (_MalformedError, struct.error, UnicodeDecodeError) as err:
                report.problems.append(f'{name} record at offset {pos}: {err}')
                report.skipped_bytes += end - pos
            pos = end
            report.good_end = pos

    def _record(self, op: int, body: memoryview, pos: int) -> Iterator[Message]:
        report = self.report
        if op == HEADER:
            report.profile = _string(body, 0)[0]
        elif op == SCHEMA:
            (sid,) = _U16.unpack_from(body, 0)
            name, p = _string(body, 2)
            encoding, p = _string(body, p)
            (n,) = _U32.unpack_from(body, p)
            report.schemas[sid] = Schema(sid, name, encoding, bytes(body[p + 4:p + 4 + n]))
        elif op == CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, p = _string(body, 4)
            encoding, p = _string(body, p)
            meta, _ = _string_map(body, p)
            report.channels[cid] = Channel(cid, sid, topic, encoding, meta)
        elif op == MESSAGE:
            yield self._message(body)
        elif op == CHUNK:
            start, end, usize, crc = _CHUNK_HEAD.unpack_from(body, 0)
            compression, p = _string(body, _CHUNK_HEAD.size)
            (n,) = _U64.unpack_from(body, p)
            if p + 8 + n > len(body):
                raise _MalformedError('records run past the chunk')
            data = _decompress(body[p + 8:p + 8 + n], compression, usize)
            if len(data) != usize:
                raise _MalformedError(f'decompresses to {len(data)} bytes, header says {usize}')
            if crc and zlib.crc32(data) != crc:
                raise _MalformedError('CRC mismatch: its messages are not trusted')
            yield from self._chunk_records(memoryview(data), pos, complete=True)
        elif op == METADATA:
            name, p = _string(body, 0)
            if name == 'rosbag2':
                report.rosbag2_record = _string_map(body, p)[0]

    def _message(self, body: memoryview) -> Message:
        cid, seq, log_time, pub_time = _MESSAGE_HEAD.unpack_from(body, 0)
        if cid not in self.report.channels:
            raise _MalformedError(f'message on unknown channel {cid}')
        report = self.report
        report.start_ns = min(report.start_ns, log_time) if report.counts else log_time
        report.end_ns = max(report.end_ns, log_time)
        report.counts[cid] = report.counts.get(cid, 0) + 1
        return Message(cid, seq, log_time, pub_time, bytes(body[_MESSAGE_HEAD.size:]))

    def _chunk_records(self, data: memoryview, chunk_pos: int,
                       complete: bool) -> Iterator[Message]:
        pos, size = 0, len(data)
        while pos < size:
            if pos + 9 > size:
                if complete:
                    raise _MalformedError(f'inner record at {pos} cut off')
                return
            op, (length,) = data[pos], _U64.unpack_from(data, pos + 1)
            end = pos + 9 + length
            if op not in (SCHEMA, CHANNEL, MESSAGE) or end > size:
                if complete:
                    raise _MalformedError(f'invalid inner record (opcode 0x{op:02x}) at {pos}')
                return
            for message in self._record(op, data[pos + 9:end], chunk_pos):
                if not complete:
                    self.report.salvaged_from_torn_chunk += 1
                yield message
            pos = end

    def _torn_chunk(self, body: memoryview, pos: int) -> Iterator[Message]:
        """Complete messages of an uncompressed chunk cut off by the end of the file."""
        try:
            compression, p = _string(body, _CHUNK_HEAD.size)
            if compression == '' and p + 8 <= len(body):
                yield from self._chunk_records(body[p + 8:], pos, complete=False)
        except (_MalformedError, struct.error, UnicodeDecodeError):
            return

    def _finish(self, buf: memoryview, pos: int) -> None:
        """Check data end, summary, footer and closing magic from ``pos`` on."""
        report, size = self.report, len(buf)
        report.good_end = pos
        if buf[pos] == DATA_END:
            report.data_complete = True
            (crc,) = _U32.unpack_from(buf, pos + 9)
            if crc and zlib.crc32(buf[:pos]) != crc:
                report.problems.append('data section CRC mismatch')
            pos += 9 + _U64.unpack_from(buf, pos + 1)[0]
        footer = size - 8 - 29
        if footer < pos or buf[footer] != FOOTER or buf[size - 8:] != MAGIC:
            report.tear = 'data end found, but no complete summary and footer after it'
            return
        summary_start, _, summary_crc = struct.unpack_from('<QQI', buf, footer + 9)
        if summary_start and summary_crc and zlib.crc32(buf[summary_start:footer + 25]) != \
                summary_crc:
            report.problems.append('summary CRC mismatch')
        p = summary_start or footer
        while p < footer:
            op, (length,) = buf[p], _U64.unpack_from(buf, p + 1)
            if op == STATISTICS:
                body = buf[p + 9:p + 9 + length]
                (n,) = _U32.unpack_from(body, 42)
                report.statistics = dict(struct.iter_unpack('<HQ', body[46:46 + n]))
            p += 9 + length
        report.closed = True
        found = {c: n for c, n in report.counts.items() if n}
        stated = {c: n for c, n in (report.statistics or {}).items() if n}
        if report.statistics is not None and found != stated and not report.problems:
            report.problems.append(f'statistics list {stated} messages per channel, the '
                                   f'file holds {found}')


def scan_mcap(path: str | Path) -> ScanReport:
    """Validate one MCAP file completely and report what is intact."""
    scanner = McapScanner(path)
    for _ in scanner.messages():
        pass
    return scanner.report
