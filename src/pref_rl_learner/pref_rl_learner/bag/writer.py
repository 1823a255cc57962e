"""A rosbag2 (MCAP, format version 9) bag writer that splits the bag into closed files.

rosbags' ``Writer`` writes one MCAP file and the metadata only when it closes, so a crash
would lose the whole recording. :class:`BagWriter` therefore runs one rosbags ``Writer`` per
file, in a staging directory (``<bag>/.recording/<stem>/``), and starts a new file every
``max_file_bytes`` or ``max_file_duration_s``. When a file closes it is complete (summary and
footer written by rosbags), fsynced, renamed into the bag directory as ``<bag>_<n>.mcap``
(rosbag2's naming), and ``metadata.yaml`` is rewritten atomically to list every closed file.
A crash therefore leaves a bag that rosbags and ``ros2 bag`` open, holding every closed file;
only the open file is at risk, and ``pref-rl bag check --recover`` salvages its complete
chunks (see :mod:`pref_rl_learner.bag.check`).

A lock (``flock`` on ``.recording/lock``, released by the kernel when the process dies) tells
``check`` whether a recorder is still writing the bag.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from rosbags.interfaces import Connection, Qos
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from pref_rl_learner.bag.errors import BagInUseError, BagWriteError
from pref_rl_learner.bag.metadata import (
    STATE_KEY,
    VERSION,
    BagMetadata,
    FileInfo,
    TopicInfo,
    write_metadata,
)
from pref_rl_learner.bag.typestore import MessageDefinitions, stack_definitions
from pref_rl_learner.durable import fsync_directory

STAGING = '.recording'
"""Sub-directory of a bag holding the file being written and the recorder's lock."""
LOCK_FILE = 'lock'
PROGRESS_FILE = 'progress'
"""In a staged file's directory: '<messages written> <last timestamp>', updated while writing."""
PROGRESS_PERIOD_S = 0.5
_RECORD_OVERHEAD = 31  # bytes an MCAP message record adds to its payload


@dataclass(frozen=True)
class TopicSpec:
    """A topic to record: its name, type and the QoS its publishers offer."""

    name: str
    """Absolute topic name, e.g. ``/segments``."""
    msgtype: str
    """Message type, e.g. ``pref_rl_msgs/msg/Segment``."""
    offered_qos: tuple[Qos, ...] = ()
    """Offered QoS profiles, recorded for ``ros2 bag play`` to re-offer."""
    definition: str = ''
    """Complete ``ros2msg`` definition ('' : built from the ``.msg`` files)."""
    type_hash: str = ''
    """RIHS01 hash ('': computed from the definition's types)."""


def file_name(bag: Path, index: int) -> str:
    """rosbag2's name of a bag's ``index``-th data file."""
    return f'{bag.name}_{index}.mcap'


def sync_file(path: Path) -> None:
    """fsync a file that another object wrote and closed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedFile:
    """One MCAP file written through rosbags in ``<bag>/.recording/<stem>/``; its
    ``rosbag2`` record names ``ros_distro`` (default: ``ROS_DISTRO``, as ``metadata.yaml``).

    :meth:`close` finishes it and moves it into the bag directory; until then the bag
    does not list it.
    """

    def __init__(self, bag: Path, name: str, topics: Sequence[TopicSpec],
                 ros_distro: str | None = None) -> None:
        self.bag, self.name = bag, name
        self.ros_distro = ros_distro
        self.staging = bag / STAGING / Path(name).stem
        self.writer = Writer(self.staging, version=VERSION, storage_plugin=StoragePlugin.MCAP)
        self.connections: dict[str, Connection] = {}
        self.specs: dict[str, TopicSpec] = {}
        self.counts: dict[str, int] = {}
        self.start_ns, self.end_ns, self.bytes = 0, 0, 0
        self.opened_at: float | None = None
        self.progress_at = 0.0
        try:
            self.writer.open()
        except (WriterError, OSError) as err:
            raise BagWriteError(f'{self.staging}: cannot start a bag file: {err}') from None
        for topic in topics:
            self.add_topic(topic)

    def add_topic(self, topic: TopicSpec) -> None:
        """Register a topic (its schema and channel) in this file."""
        try:
            self.connections[topic.name] = self.writer.add_connection(
                topic.name, topic.msgtype, msgdef=topic.definition, rihs01=topic.type_hash,
                offered_qos_profiles=list(topic.offered_qos))
        except (WriterError, OSError) as err:
            raise BagWriteError(f'{self.staging}: cannot add topic {topic.name}: {err}'
                                ) from None
        self.specs[topic.name] = topic
        self.counts[topic.name] = 0

    @property
    def message_count(self) -> int:
        """Messages written so far."""
        return sum(self.counts.values())

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Append one serialized (CDR) message."""
        try:
            self.writer.write(self.connections[topic], timestamp_ns, data)
        except (WriterError, OSError) as err:
            raise BagWriteError(f'{self.staging}: write failed: {err}') from None
        self.start_ns = min(self.start_ns, timestamp_ns) if self.message_count else timestamp_ns
        self.end_ns = max(self.end_ns, timestamp_ns)
        self.counts[topic] += 1
        self.bytes += len(data) + _RECORD_OVERHEAD

    def note_progress(self) -> None:
        """Leave a note of how many messages the file holds, for a loss report after a crash
        (not fsynced: it survives the process being killed, which is what it is for)."""
        note = self.staging / PROGRESS_FILE
        tmp = note.with_name(PROGRESS_FILE + '.tmp')
        try:
            tmp.write_text(f'{self.message_count} {self.end_ns}\n', encoding='ascii')
            os.replace(tmp, note)
        except OSError:
            pass  # only a hint for loss reports; the next write reports a failing disk

    def close(self) -> FileInfo:
        """Finish the file (summary, footer), fsync it and move it into the bag.

        The file's ``rosbag2`` metadata record is this file's bag metadata with the real
        ``ros_distro`` (what ``metadata.yaml`` says), not the ``rosbags`` placeholder that
        rosbags' ``Writer.close`` would write: so the storage is closed here, with that text.
        """
        staged = self.staging / f'{self.staging.name}.mcap'
        target = self.bag / self.name
        info = FileInfo(path=self.name, start_ns=self.start_ns,
                        duration_ns=self.end_ns - self.start_ns,
                        message_count=self.message_count)
        own = BagMetadata(files=(info,), topics=tuple(
            TopicInfo(s.name, s.msgtype, self.counts[s.name], s.offered_qos, s.type_hash)
            for s in self.specs.values()))
        if self.ros_distro is not None:
            own = own.replace(ros_distro=self.ros_distro)
        text = yaml.safe_dump(own.to_dict()['rosbag2_bagfile_information'], sort_keys=False,
                              default_flow_style=False).strip()
        try:
            storage, self.writer.storage = self.writer.storage, None
            storage.close(VERSION, text)
            sync_file(staged)
            os.replace(staged, target)
            fsync_directory(self.bag)
            shutil.rmtree(self.staging)
        except (WriterError, OSError) as err:
            raise BagWriteError(f'{staged}: cannot close the bag file: {err}') from None
        return info


def resolve_topics(topics: Sequence[TopicSpec],
                   definitions: MessageDefinitions | None) -> list[TopicSpec]:
    """Fill in each topic's definition and type hash from ``definitions`` where missing."""
    out = []
    for t in topics:
        if not (t.definition and t.type_hash):
            defs = definitions or stack_definitions()
            t = TopicSpec(t.name, t.msgtype, t.offered_qos,
                          t.definition or defs.full_definition(t.msgtype),
                          t.type_hash or defs.type_hash(t.msgtype))
        out.append(t)
    return out


class BagWriter:
    """Writes serialized messages into a new bag directory, split into closed MCAP files.

    Args:
        path: bag directory to create (must not exist; its parent is created).
        topics: the topics that will be written (every file registers all of them).
        definitions: message definitions (default: the stack's, from the ``.msg`` files).
        max_file_bytes: start a new file once the open one holds this many bytes.
        max_file_duration_s: start a new file once the open one is this old (wall clock,
            counted from its first message), also when no further message arrives.
        clock: monotonic clock in seconds (tests inject a fake one).

    Raises:
        BagWriteError: the directory exists or cannot be created.
    """

    def __init__(self, path: str | Path, topics: Sequence[TopicSpec], *,
                 definitions: MessageDefinitions | None = None,
                 max_file_bytes: int = 16 * 2**20, max_file_duration_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 custom_data: Mapping[str, str] | None = None) -> None:
        if max_file_bytes < 1 or max_file_duration_s <= 0:
            raise BagWriteError(f'max_file_bytes ({max_file_bytes}) must be >= 1 and '
                                f'max_file_duration_s ({max_file_duration_s}) > 0')
        self.path = Path(path)
        self.topics = resolve_topics(topics, definitions)
        self._topic_names = {t.name for t in self.topics}
        if len(self._topic_names) != len(self.topics):
            raise BagWriteError(f'topics listed twice: {[t.name for t in self.topics]}')
        self.max_file_bytes, self.max_file_duration_s = max_file_bytes, max_file_duration_s
        self.clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
            (self.path / STAGING).mkdir()
        except FileExistsError:
            raise BagWriteError(f'{self.path} exists already: a bag is never overwritten'
                                ) from None
        except OSError as err:
            raise BagWriteError(f'{self.path}: cannot create the bag: {err}') from None
        self._lock = acquire_lock(self.path)
        self.metadata = BagMetadata(
            topics=tuple(TopicInfo(t.name, t.msgtype, 0, t.offered_qos, t.type_hash)
                         for t in self.topics),
            custom_data={**(custom_data or {}), STATE_KEY: 'in_progress'})
        write_metadata(self.path, self.metadata)
        self.open_file: StagedFile | None = None
        self.closed = False

    @property
    def message_count(self) -> int:
        """Messages written, closed files and the open one together."""
        open_count = self.open_file.message_count if self.open_file else 0
        return self.metadata.message_count + open_count

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Write one serialized message; closes the file when it reaches its size or age."""
        if self.closed:
            raise BagWriteError(f'{self.path}: the bag is closed')
        if topic not in self._topic_names:
            raise BagWriteError(f'{self.path}: topic {topic!r} was not declared')
        if self.open_file is None:
            self.open_file = StagedFile(self.path, file_name(self.path, len(self.metadata.files)),
                                        self.topics)
            self.open_file.opened_at = self.clock()
        self.open_file.write(topic, timestamp_ns, data)
        if self.open_file.bytes >= self.max_file_bytes:
            self._close_file()
        else:
            self.poll()

    def poll(self) -> bool:
        """Close the open file if it has reached its age; True if one was closed."""
        f = self.open_file
        if f is None or f.opened_at is None or not f.message_count:
            return False
        now = self.clock()
        if now - f.opened_at < self.max_file_duration_s:
            if now - f.progress_at >= PROGRESS_PERIOD_S:
                f.progress_at = now
                f.note_progress()
            return False
        self._close_file()
        return True

    def _close_file(self, state: str = 'in_progress') -> None:
        assert self.open_file is not None
        f, self.open_file = self.open_file, None
        info = f.close()
        topics = tuple(TopicInfo(t.name, t.msgtype, t.message_count + f.counts[t.name],
                                 t.offered_qos, t.type_hash) for t in self.metadata.topics)
        self._update_metadata(files=(*self.metadata.files, info), topics=topics)

    def _update_metadata(self, **changes: object) -> None:
        self.metadata = self.metadata.replace(**changes)
        write_metadata(self.path, self.metadata)

    def close(self) -> BagMetadata:
        """Close the open file and write the final metadata; returns it (idempotent)."""
        if self.closed:
            return self.metadata
        self.closed = True
        if self.open_file is None and not self.metadata.files:  # an empty bag still has a file
            self.open_file = StagedFile(self.path, file_name(self.path, 0), self.topics)
        if self.open_file is not None:
            self._close_file()
        self._update_metadata(custom_data={**self.metadata.custom_data, STATE_KEY: 'complete'})
        release_lock(self.path, self._lock)
        return self.metadata

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def acquire_lock(bag: Path) -> IO[str]:
    """Take the bag's writer lock (held until :func:`release_lock` or process death)."""
    f = open(bag / STAGING / LOCK_FILE, 'a+', encoding='utf-8')  # noqa: SIM115 (held open)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise BagInUseError(f'{bag} is being written by another process') from None
    f.truncate(0)
    f.write(f'{os.getpid()}\n')
    f.flush()
    return f


def release_lock(bag: Path, lock: IO[str]) -> None:
    """Release the writer lock and remove the (then empty) staging directory."""
    try:
        (bag / STAGING / LOCK_FILE).unlink(missing_ok=True)
        (bag / STAGING).rmdir()
    except OSError:
        pass  # a leftover staged file (kept for recovery) keeps the directory
    finally:
        lock.close()


def lock_holder(bag: Path) -> int | None:
    """pid of the live process writing ``bag`` (None when no one holds its lock)."""
    path = bag / STAGING / LOCK_FILE
    try:
        f = open(path, encoding='utf-8')  # noqa: SIM115 (closed below)
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
        return None
