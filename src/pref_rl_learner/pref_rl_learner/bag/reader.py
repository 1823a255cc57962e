"""Read a recorded bag (all its files, or one ``.mcap`` file) as pref-rl domain objects.

Messages are deserialized by rosbags with the types the bag itself stores (each MCAP schema
holds the complete definition), so a bag reads back without ROS and without this checkout's
``.msg`` files. Segments, queries, labels, learner status and policy weights become
:mod:`pref_rl_learner.types` objects; other types stay rosbags message objects.

Example (offline reward training from a recorded session)::

    from pref_rl_learner.bag import read_segments, read_labels
    segments = {s.segment_id: s for s in read_segments('runs/x/bag')}
    labels = list(read_labels('runs/x/bag'))
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from rosbags.rosbag2 import Reader, ReaderError

from pref_rl_learner.bag.convert import FROM_MSG, LABEL, LEARNER_STATUS, QUERY, SEGMENT
from pref_rl_learner.bag.errors import BagFileError, BagMessageError, BagMetadataError
from pref_rl_learner.bag.metadata import BagMetadata, read_metadata
from pref_rl_learner.bag.typestore import typestore_from_schemas
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import LearnerStatus, PreferenceLabel, PreferenceQuery, Segment


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


class BagReader:
    """An open bag. Use as a context manager, or call :meth:`close`.

    Args:
        path: a bag directory (reads every file its ``metadata.yaml`` lists) or one
            ``.mcap`` file.

    Raises:
        BagMetadataError: the directory's ``metadata.yaml`` is missing or invalid.
        BagFileError: a listed file is missing or unreadable.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.metadata: BagMetadata | None = None
        if self.path.is_dir():
            self.metadata = read_metadata(self.path)
            if self.metadata.storage_identifier != 'mcap':
                raise BagMetadataError(f'{self.path}: storage {self.metadata.storage_identifier!r}'
                                       ' (pref-rl bags are MCAP)')
        elif not self.path.is_file():
            raise BagFileError(f'{self.path}: no such bag directory or file')
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except (ReaderError, OSError, KeyError, ValueError) as err:
            raise BagFileError(f'{self.path}: cannot be opened: {err} '
                               '(`pref-rl bag check` tells what is wrong)') from None
        self.connections = list(self._reader.connections)
        schemas = {c.msgtype: (c.msgdef.format, c.msgdef.data) for c in self.connections}
        self.typestore = typestore_from_schemas(schemas, str(self.path))

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """Topic -> (message type, message count)."""
        return {c.topic: (c.msgtype, c.msgcount) for c in self.connections}

    def raw_messages(self, topics: Collection[str] | None = None,
                     msgtypes: Collection[str] | None = None
                     ) -> Iterator[tuple[str, int, str, memoryview | bytes]]:
        """(topic, timestamp, type, CDR bytes) of the selected messages, file by file."""
        selected = [c for c in self.connections
                    if (topics is None or c.topic in topics)
                    and (msgtypes is None or c.msgtype in msgtypes)]
        if not selected:
            return
        try:
            for connection, timestamp, data in self._reader.messages(selected):
                yield connection.topic, timestamp, connection.msgtype, data
        except (ReaderError, OSError) as err:
            raise BagFileError(f'{self.path}: {err}') from None

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
        """Close the files."""
        if self._reader.is_open:
            self._reader.close()

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
