"""A rosbag2 bag's ``metadata.yaml`` (format version 9): read, validate, write, describe.

The fields and their order are rosbag2's (``rosbag2_storage/yaml.hpp``): version,
storage_identifier, duration, starting_time, message_count, topics_with_message_count (name,
type, serialization_format, offered_qos_profiles as a list of v9 QoS mappings,
type_description_hash), compression_format, compression_mode, relative_file_paths, files
(path, starting_time, duration, message_count), custom_data, ros_distro.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rosbags.interfaces import Qos
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import dump_qos_v9, parse_qos

from pref_rl_learner.bag.errors import BagMetadataError
from pref_rl_learner.durable import atomic_write_bytes

METADATA_FILE = 'metadata.yaml'
VERSION = 9
"""The rosbag2 bag format version written (Jazzy and later)."""
STORAGE_ID = 'mcap'
DEFAULT_DISTRO = 'kilted'
"""``ros_distro`` written when ``ROS_DISTRO`` is unset: the distro of the PyPI wheels (the
same as :data:`pref_rl_learner.bag.typestore.BASE_STORE`)."""
STATE_KEY = 'pref_rl.recording'
"""custom_data key the recorder sets: ``in_progress`` while writing, ``complete`` once closed."""


@dataclass(frozen=True)
class TopicInfo:
    """One recorded topic, as listed in ``topics_with_message_count``."""

    name: str
    """Absolute topic name, e.g. ``/segments``."""
    msgtype: str
    """Message type, e.g. ``pref_rl_msgs/msg/Segment``."""
    message_count: int = 0
    """Messages of this topic in the listed files."""
    offered_qos: tuple[Qos, ...] = ()
    """QoS profiles offered by the topic's publishers (rosbags ``Qos``)."""
    type_hash: str = ''
    """RIHS01 type description hash ('' when unknown)."""
    serialization_format: str = 'cdr'
    """Message encoding (rosbag2 supports only ``cdr``)."""


@dataclass(frozen=True)
class FileInfo:
    """One data file, as listed in ``files``."""

    path: str
    """File name relative to the bag directory."""
    start_ns: int = 0
    """Timestamp of its first message (0 when it has none)."""
    duration_ns: int = 0
    """Last minus first message timestamp."""
    message_count: int | None = 0
    """Messages in the file (None: not listed, bags older than version 5)."""


@dataclass(frozen=True)
class BagMetadata:
    """The content of ``metadata.yaml``; totals are derived from ``files`` and ``topics``."""

    files: tuple[FileInfo, ...] = ()
    topics: tuple[TopicInfo, ...] = ()
    version: int = VERSION
    storage_identifier: str = STORAGE_ID
    compression_format: str = ''
    compression_mode: str = ''
    custom_data: Mapping[str, str] = field(default_factory=dict)
    ros_distro: str = field(default_factory=lambda: os.environ.get('ROS_DISTRO') or DEFAULT_DISTRO)

    @property
    def message_count(self) -> int:
        """Messages in all listed files."""
        return sum(t.message_count for t in self.topics)

    @property
    def start_ns(self) -> int:
        """First message timestamp over all files (0 when there are none)."""
        starts = [f.start_ns for f in self.files if f.message_count]
        return min(starts) if starts else 0

    @property
    def duration_ns(self) -> int:
        """Last minus first message timestamp over all files."""
        ends = [f.start_ns + f.duration_ns for f in self.files if f.message_count]
        return max(ends) - self.start_ns if ends else 0

    @property
    def state(self) -> str:
        """The recorder's state marker (``in_progress``/``complete``; '' for other bags)."""
        return self.custom_data.get(STATE_KEY, '')

    def replace(self, **changes: Any) -> BagMetadata:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The ``metadata.yaml`` mapping, in rosbag2's key order."""
        return {'rosbag2_bagfile_information': {
            'version': self.version,
            'storage_identifier': self.storage_identifier,
            'duration': {'nanoseconds': self.duration_ns},
            'starting_time': {'nanoseconds_since_epoch': self.start_ns},
            'message_count': self.message_count,
            'topics_with_message_count': [{
                'topic_metadata': {
                    'name': t.name,
                    'type': t.msgtype,
                    'serialization_format': t.serialization_format,
                    'offered_qos_profiles': dump_qos_v9(list(t.offered_qos)),
                    'type_description_hash': t.type_hash,
                },
                'message_count': t.message_count,
            } for t in self.topics],
            'compression_format': self.compression_format,
            'compression_mode': self.compression_mode,
            'relative_file_paths': [f.path for f in self.files],
            'files': [{
                'path': f.path,
                'starting_time': {'nanoseconds_since_epoch': f.start_ns},
                'duration': {'nanoseconds': f.duration_ns},
                'message_count': f.message_count or 0,
            } for f in self.files],
            'custom_data': dict(self.custom_data) or None,
            'ros_distro': self.ros_distro,
        }}

    def to_yaml(self) -> bytes:
        """The ``metadata.yaml`` text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False,
                              default_flow_style=False).encode('utf-8')


def _get(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise BagMetadataError(f'{where}: missing key {key!r}')
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise BagMetadataError(f'{where}: {key!r} is {value!r}, not of the expected type')
    return value


def parse_metadata(data: Any, where: str) -> BagMetadata:
    """Validate a loaded ``metadata.yaml`` mapping (any version 1-9) and build it."""
    info = _get(data, 'rosbag2_bagfile_information', Mapping, where)
    version = _get(info, 'version', int, where)
    if not 1 <= version <= VERSION:
        raise BagMetadataError(f'{where}: bag format version {version} is not supported')
    paths = _get(info, 'relative_file_paths', list, where)
    if not all(isinstance(p, str) for p in paths):
        raise BagMetadataError(f'{where}: relative_file_paths holds a non-string entry')
    topics = []
    for i, entry in enumerate(_get(info, 'topics_with_message_count', list, where)):
        at = f'{where}: topics_with_message_count[{i}]'
        meta = _get(entry, 'topic_metadata', Mapping, at)
        try:
            qos = tuple(parse_qos(meta.get('offered_qos_profiles') or []))
        except (ReaderError, KeyError, TypeError, AttributeError) as err:
            raise BagMetadataError(f'{at}: offered_qos_profiles: {err}') from None
        topics.append(TopicInfo(
            name=_get(meta, 'name', str, at), msgtype=_get(meta, 'type', str, at),
            message_count=_get(entry, 'message_count', int, at), offered_qos=qos,
            type_hash=meta.get('type_description_hash') or '',
            serialization_format=_get(meta, 'serialization_format', str, at)))
    files = []
    if 'files' in info:
        for i, entry in enumerate(_get(info, 'files', list, where)):
            at = f'{where}: files[{i}]'
            files.append(FileInfo(
                path=_get(entry, 'path', str, at),
                start_ns=_get(_get(entry, 'starting_time', Mapping, at),
                              'nanoseconds_since_epoch', int, at),
                duration_ns=_get(_get(entry, 'duration', Mapping, at), 'nanoseconds', int, at),
                message_count=_get(entry, 'message_count', int, at)))
        if [f.path for f in files] != paths:
            raise BagMetadataError(f'{where}: files {[f.path for f in files]} do not match '
                                   f'relative_file_paths {paths}')
    else:
        files = [FileInfo(path=p, message_count=None) for p in paths]
    custom = info.get('custom_data') or {}
    if not isinstance(custom, Mapping):
        raise BagMetadataError(f'{where}: custom_data is not a mapping')
    return BagMetadata(
        files=tuple(files), topics=tuple(topics), version=version,
        storage_identifier=_get(info, 'storage_identifier', str, where),
        compression_format=info.get('compression_format') or '',
        compression_mode=info.get('compression_mode') or '',
        custom_data={str(k): str(v) for k, v in custom.items()},
        ros_distro=str(info.get('ros_distro') or ''))


def read_metadata(bag: str | Path) -> BagMetadata:
    """Read and validate ``<bag>/metadata.yaml``.

    Raises:
        BagMetadataError: it is missing, not YAML, or lacks a field (the message names it).
    """
    path = Path(bag) / METADATA_FILE
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise BagMetadataError(f'{path}: no such file (not a bag, or its recorder crashed '
                               'before closing a file: try `pref-rl bag check --recover`)'
                               ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise BagMetadataError(f'{path}: cannot be read: {err}') from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BagMetadataError(f'{path}: not valid YAML: {err}') from None
    return parse_metadata(data, str(path))


def write_metadata(bag: str | Path, metadata: BagMetadata) -> None:
    """Write ``<bag>/metadata.yaml`` atomically (temp file, fsync, rename)."""
    atomic_write_bytes(Path(bag) / METADATA_FILE, metadata.to_yaml())


def exact_seconds(ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds (``1717000000.050000000``), no float."""
    sign, ns = ('-', -ns) if ns < 0 else ('', ns)
    return f'{sign}{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


def _stamp(ns: int) -> str:
    when = datetime.datetime.fromtimestamp(ns // 1_000_000_000, tz=datetime.UTC)
    return f'{when:%b %d %Y %H:%M:%S}.{ns % 1_000_000_000:09d} UTC ({exact_seconds(ns)})'


def format_info(bag: str | Path, metadata: BagMetadata) -> str:
    """A summary in the layout of ``ros2 bag info``."""
    bag = Path(bag)
    sizes = [(bag / f.path).stat().st_size for f in metadata.files if (bag / f.path).exists()]
    lines = [f'Files:             {metadata.files[0].path if metadata.files else "(none)"}']
    lines += [f'                   {f.path}' for f in metadata.files[1:]]
    lines += [
        f'Bag size:          {sum(sizes) / 2**20:.1f} MiB',
        f'Storage id:        {metadata.storage_identifier}',
        f'ROS Distro:        {metadata.ros_distro}',
        f'Duration:          {exact_seconds(metadata.duration_ns)}s',
        f'Start:             {_stamp(metadata.start_ns)}',
        f'End:               {_stamp(metadata.start_ns + metadata.duration_ns)}',
        f'Messages:          {metadata.message_count}',
    ]
    if metadata.state:
        lines.append(f'Recording:         {metadata.state}')
    width = max((len(t.name) for t in metadata.topics), default=0)
    for i, t in enumerate(metadata.topics):
        head = 'Topic information: ' if i == 0 else ' ' * 19
        lines.append(f'{head}Topic: {t.name:<{width}} | Type: {t.msgtype} | '
                     f'Count: {t.message_count} | Serialization Format: '
                     f'{t.serialization_format}')
    return '\n'.join(lines)
