"""Read a recorded bag (all its files, or one ``.mcap`` file) as pref-rl domain objects.

Messages are deserialized by rosbags with the types the bag itself stores (each MCAP schema
holds the complete definition), so a bag reads back without ROS and without this checkout's
``.msg`` files. Segments, queries, labels, learner status and policy weights become
:mod:`pref_rl_learner.types` objects; other types stay rosbags message objects.

Topics are taken from the data files' own channels (name and schema), never matched against
``metadata.yaml``'s QoS lists: a bag from any rosbag2-compatible writer (with or without QoS
in its channel metadata, with a ``metadata.yaml`` edited by hand, from Humble to Kilted)
delivers every message its listed files hold. Every file is validated first with the scanner
``pref-rl bag check`` uses (:mod:`pref_rl_learner.bag.mcapfile`), so the reader delivers
exactly the messages the check counts; a damaged file is refused, never read in part.

Example (offline reward training from a recorded session)::

    from pref_rl_learner.bag import read_segments, read_labels
    segments = {s.segment_id: s for s in read_segments('runs/x/bag')}
    labels = list(read_labels('runs/x/bag'))
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from rosbags.interfaces import MessageDefinitionFormat

from pref_rl_learner.bag.convert import FROM_MSG, LABEL, LEARNER_STATUS, QUERY, SEGMENT
from pref_rl_learner.bag.errors import BagFileError, BagMessageError, BagMetadataError
from pref_rl_learner.bag.mcapfile import Channel, McapScanner, ScanReport, Schema, scan_mcap
from pref_rl_learner.bag.metadata import BagMetadata, read_metadata
from pref_rl_learner.bag.typestore import typestore_from_schemas
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import LearnerStatus, PreferenceLabel, PreferenceQuery, Segment

_SCHEMA_FORMATS = {'ros2msg': MessageDefinitionFormat.MSG, 'ros2idl': MessageDefinitionFormat.IDL}
"""MCAP schema encodings of ROS 2 messages (rosbag2 ``docs/message_definition_encoding.md``)."""


class BagMessage(NamedTuple):
    """One recorded message."""

    topic: str
    """Topic it was recorded from, e.g. ``/segments``."""
    timestamp_ns: int
    """Time the recorder received it (ns since the epoch)."""
    msgtype: str
    """Message type, e.g. ``pref_rl_msgs/msg/Segment``."""
    value: Any
    """The domain object (Segment, PreferenceLabel, ...) or, for other types, rosbags'."""


def channel_type(channel: Channel, schemas: Mapping[int, Schema]) -> tuple[str, str]:
    """(message type, why it cannot be read: '' when it can) of an MCAP channel.

    The one rule, shared by the reader and ``bag check``, of which channels a bag delivers:
    a ROS 2 channel has message encoding ``cdr`` and a ``ros2msg`` or ``ros2idl`` schema.
    """
    schema = schemas.get(channel.schema_id)
    msgtype = schema.name if schema is not None else ''
    if channel.message_encoding != 'cdr':
        return msgtype, f'message encoding {channel.message_encoding!r} (ROS 2 writes cdr)'
    if schema is None:
        return msgtype, f'no schema (schema id {channel.schema_id})'
    if schema.encoding not in _SCHEMA_FORMATS:
        return msgtype, (f'schema encoding {schema.encoding!r} (ROS 2 writes '
                         f"{' or '.join(_SCHEMA_FORMATS)})")
    return msgtype, ''


def delivered_counts(scan: ScanReport) -> dict[tuple[str, str], int]:
    """Messages per (topic, type) that the reader delivers from a scanned file."""
    out: dict[tuple[str, str], int] = {}
    for cid, n in scan.counts.items():
        channel = scan.channels[cid]
        msgtype, problem = channel_type(channel, scan.schemas)
        if not problem:
            out[channel.topic, msgtype] = out.get((channel.topic, msgtype), 0) + n
    return out


def _refusal(scan: ScanReport) -> str:
    """Why a scanned file is not read ('' when it is intact)."""
    if scan.problems:
        return 'corrupt: ' + '; '.join(scan.problems)
    if not scan.closed and not scan.data_complete:
        return (f'torn: {scan.tear}; {scan.message_count} intact message(s) before the tear '
                'are not read')
    for channel in scan.channels.values():
        problem = channel_type(channel, scan.schemas)[1]
        if problem and scan.counts.get(channel.id):
            return (f'topic {channel.topic} is not a ROS 2 channel: {problem}; its '
                    f'{scan.counts[channel.id]} message(s) cannot be read')
    return ''


class BagReader:
    """An open bag. Use as a context manager, or call :meth:`close`.

    Opening scans every file (record bounds, CRCs, statistics): nothing is read from a bag
    with a damaged file.

    Args:
        path: a bag directory (reads every file its ``metadata.yaml`` lists, in that order)
            or one ``.mcap`` file.

    Raises:
        BagMetadataError: the directory's ``metadata.yaml`` is missing or invalid, or it
            declares a storage or compression pref-rl does not read.
        BagFileError: a listed file is missing, torn, corrupt or holds a non-ROS 2 channel
            (the message names it and how many messages it holds).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.metadata: BagMetadata | None = None
        if self.path.is_dir():
            self.metadata = read_metadata(self.path)
            if self.metadata.storage_identifier != 'mcap':
                raise BagMetadataError(f'{self.path}: storage {self.metadata.storage_identifier!r}'
                                       ' (pref-rl reads MCAP bags)')
            if self.metadata.compression_mode:
                raise BagMetadataError(
                    f'{self.path}: compression mode {self.metadata.compression_mode!r} '
                    f'({self.metadata.compression_format}) is not read: pref-rl reads MCAP '
                    'chunk compression (zstd, lz4), not rosbag2 file or message compression')
            self.files = [self.path / f.path for f in self.metadata.files]
        elif self.path.is_file():
            self.files = [self.path]
        else:
            raise BagFileError(f'{self.path}: no such bag directory or file')
        self.scans: list[ScanReport] = []
        for file in self.files:
            if not file.is_file():
                raise BagFileError(f'{file}: listed in {self.path / "metadata.yaml"}, not on '
                                   'disk (`pref-rl bag check` tells what is wrong)')
            scan = scan_mcap(file)
            refusal = _refusal(scan)
            if refusal:
                raise BagFileError(f'{file}: {refusal} (`pref-rl bag check` tells what is '
                                   'wrong, `--recover` salvages the intact messages)')
            self.scans.append(scan)
        schemas = {}
        for scan in self.scans:
            for schema in scan.schemas.values():
                if schema.encoding in _SCHEMA_FORMATS:
                    schemas[schema.name] = (_SCHEMA_FORMATS[schema.encoding],
                                            schema.data.decode('utf-8', errors='replace'))
        self.typestore = typestore_from_schemas(schemas, str(self.path))

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """Topic -> (message type, message count), over all files read."""
        out: dict[str, tuple[str, int]] = {}
        for scan in self.scans:
            for (topic, msgtype), n in delivered_counts(scan).items():
                out[topic] = (msgtype, out.get(topic, (msgtype, 0))[1] + n)
        return out

    def raw_messages(self, topics: Collection[str] | None = None,
                     msgtypes: Collection[str] | None = None
                     ) -> Iterator[tuple[str, int, str, bytes]]:
        """(topic, timestamp, type, CDR bytes) of the selected messages, file by file, each
        file in its own (recording) order."""
        for file in self.files:
            scanner = McapScanner(file)
            selected: dict[int, tuple[str, str] | None] = {}
            for message in scanner.messages():
                if message.channel_id not in selected:
                    channel = scanner.report.channels[message.channel_id]
                    msgtype = channel_type(channel, scanner.report.schemas)[0]
                    wanted = ((topics is None or channel.topic in topics)
                              and (msgtypes is None or msgtype in msgtypes))
                    selected[message.channel_id] = (channel.topic, msgtype) if wanted else None
                chosen = selected[message.channel_id]
                if chosen is not None:
                    yield chosen[0], message.log_time, chosen[1], message.data
            refusal = _refusal(scanner.report)
            if refusal:
                raise BagFileError(f'{file}: changed while being read: {refusal}')

    def messages(self, topics: Collection[str] | None = None,
                 msgtypes: Collection[str] | None = None) -> Iterator[BagMessage]:
        """The selected messages, deserialized and converted to domain objects.

        Raises:
            BagMessageError: a message is malformed (names topic and timestamp).
        """
        for topic, stamp, msgtype, data in self.raw_messages(topics, msgtypes):
            try:
                value = self.typestore.deserialize_cdr(data, msgtype)
                convert = FROM_MSG.get(msgtype)
                if convert is not None:
                    value = convert(value)
            except PrefRLError as err:
                raise BagMessageError(
                    f'{self.path}: {msgtype} on {topic} at {stamp}: {err}') from None
            except Exception as err:  # rosbags' CDR decoder raises plain errors on bad bytes
                raise BagMessageError(f'{self.path}: {msgtype} on {topic} at {stamp} does '
                                      f'not deserialize: {type(err).__name__}: {err}') from None
            yield BagMessage(topic, stamp, msgtype, value)

    def close(self) -> None:
        """Nothing stays open between reads (kept for the context-manager protocol)."""

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_bag(path: str | Path, topics: Collection[str] | None = None,
             msgtypes: Collection[str] | None = None) -> Iterator[BagMessage]:
    """Every selected message of a bag (dir or ``.mcap`` file), converted; see
    :class:`BagReader`."""
    with BagReader(path) as reader:
        yield from reader.messages(topics, msgtypes)


def _values(path: str | Path, msgtype: str) -> Iterator[Any]:
    for message in read_bag(path, msgtypes=(msgtype,)):
        yield message.value


def read_segments(path: str | Path) -> Iterator[Segment]:
    """Every recorded :class:`Segment` (from any topic of type Segment), in bag order."""
    return _values(path, SEGMENT)


def read_queries(path: str | Path) -> Iterator[PreferenceQuery]:
    """Every recorded :class:`PreferenceQuery`, in bag order."""
    return _values(path, QUERY)


def read_labels(path: str | Path) -> Iterator[PreferenceLabel]:
    """Every recorded :class:`PreferenceLabel`, in bag order."""
    return _values(path, LABEL)


def read_learner_status(path: str | Path) -> Iterator[LearnerStatus]:
    """Every recorded :class:`LearnerStatus`, in bag order."""
    return _values(path, LEARNER_STATUS)
