"""Repair a bag that :func:`~pref_rl_learner.bag.check.check_bag` faulted, like
``ros2 bag reindex`` plus salvage:

1. a torn or corrupt file (a recorder killed mid-file, a chunk failing its CRC) is rewritten
   as a new, closed MCAP file holding every intact message it had; the original is moved to
   ``<bag>/.torn/`` (never deleted);
2. ``metadata.yaml`` is rebuilt from the files on disk (counts, times, topics, QoS, type
   hashes), keeping what the old one said about topics where it is still true;
3. every loss is named: the file, the bytes that could not be read and, when knowable, the
   messages (a recorder's progress note gives a lower bound for its open file; a summary's
   statistics give the exact count for a corrupt closed file; the old metadata for a missing
   file).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import parse_qos

from pref_rl_learner.bag.check import (
    CORRUPT,
    MISMATCH,
    MISSING,
    OK,
    OPEN,
    TORN_DIR,
    TRUNCATED,
    UNLISTED,
    CheckReport,
    FileCheck,
    check_bag,
    file_order,
)
from pref_rl_learner.bag.errors import BagError, BagInUseError
from pref_rl_learner.bag.mcapfile import Channel, McapScanner, ScanReport, Schema, scan_mcap
from pref_rl_learner.bag.metadata import (
    STATE_KEY,
    BagMetadata,
    FileInfo,
    TopicInfo,
    write_metadata,
)
from pref_rl_learner.bag.typestore import typestore_from_schemas
from pref_rl_learner.bag.writer import LOCK_FILE, STAGING, StagedFile, TopicSpec, file_name
from pref_rl_learner.durable import fsync_directory


@dataclass(frozen=True)
class Loss:
    """Data a recovery could not bring back."""

    file: str
    """The damaged file, relative to the bag directory."""
    bytes: int | None
    """Bytes that could not be read (None: the file is gone)."""
    messages: int | None
    """Messages lost, when knowable (see ``detail`` for whether exact or a lower bound)."""
    detail: str


@dataclass
class RecoveryReport:
    """What :func:`recover_bag` did."""

    before: CheckReport
    after: CheckReport
    actions: list[str] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)

    def format(self) -> str:
        """A human-readable account: actions, losses, the verdict after recovery."""
        lines = [f'recovering bag {self.before.bag}:']
        lines += [f'  {a}' for a in self.actions] or ['  nothing to do']
        for loss in self.losses:
            lines.append(f'  LOST from {loss.file}: {loss.detail}')
        if not self.losses and self.actions:
            lines.append('  nothing was lost')
        lines.append('  verdict after recovery: ' + ('OK' if self.after.ok else 'STILL DAMAGED'))
        if not self.after.ok:
            lines.append(self.after.format())
        return '\n'.join(lines)


class _TopicSpecs:
    """TopicSpecs for the channels of salvaged files: QoS, definition and type hash."""

    def __init__(self, bag: Path, old: BagMetadata | None,
                 scans: Sequence[ScanReport] = ()) -> None:
        self.where = str(bag)
        self.old = {(t.name, t.msgtype): t for t in old.topics} if old else {}
        self.hashes: dict[str, str] = {}
        recorded = [s.ros_distro for s in scans if s.ros_distro]
        self.distro = (old.ros_distro if old and old.ros_distro else
                       recorded[0] if recorded else BagMetadata().ros_distro)
        """The bag's ROS distro: the old metadata's, else the one the files' own ``rosbag2``
        records name (torn files have none: it is written on close), else ``ROS_DISTRO``."""

    def type_hash(self, schema: Schema) -> str:
        if schema.name not in self.hashes:
            fmt = (MessageDefinitionFormat.IDL if schema.encoding == 'ros2idl'
                   else MessageDefinitionFormat.MSG)
            text = schema.data.decode('utf-8', errors='replace')
            store = typestore_from_schemas({schema.name: (fmt, text)}, self.where)
            self.hashes[schema.name] = store.hash_rihs01(schema.name)
        return self.hashes[schema.name]

    def spec(self, channel: Channel, schema: Schema | None, where: str) -> TopicSpec:
        if schema is None:
            raise BagError(f'{where}: channel {channel.topic} has no schema: cannot rewrite it')
        old = self.old.get((channel.topic, schema.name))
        try:
            qos = tuple(parse_qos(channel.metadata.get('offered_qos_profiles', '')))
        except (ReaderError, KeyError, TypeError, AttributeError):
            qos = ()
        type_hash = (channel.metadata.get('topic_type_hash') or (old.type_hash if old else '')
                     or self.type_hash(schema))
        return TopicSpec(channel.topic, schema.name, old.offered_qos if old else qos,
                         schema.data.decode('utf-8', errors='replace'), type_hash)


def _free_name(bag: Path, wanted: str) -> str:
    if not (bag / wanted).exists():
        return wanted
    top = max((file_order(p.name)[0] for p in bag.glob('*.mcap')), default=-1)
    return file_name(bag, top + 1)


def _salvage(bag: Path, source: Path, target: str, specs: _TopicSpecs
             ) -> tuple[ScanReport, ScanReport | None]:
    """Copy every intact message of ``source`` into a new closed file ``target``.

    Returns the scan of the source and the scan of the new file (None when nothing was
    intact). The caller has moved ``source`` out of the staging area first.
    """
    scanner = McapScanner(source)
    staged: StagedFile | None = None
    for message in scanner.messages():
        channel = scanner.report.channels[message.channel_id]
        if staged is None:
            staged = StagedFile(bag, target, [], ros_distro=specs.distro)
        if channel.topic not in staged.connections:
            staged.add_topic(specs.spec(channel, scanner.report.schemas.get(channel.schema_id),
                                        str(source)))
        staged.write(channel.topic, message.log_time, message.data)
    if staged is None:
        return scanner.report, None
    staged.close()
    return scanner.report, scan_mcap(bag / target)


def _loss(check: FileCheck, source: ScanReport, salvaged: int) -> Loss | None:
    """What salvaging ``check``'s file lost."""
    if source.closed:  # complete but corrupt: the bad records are the loss
        stated = sum((source.statistics or {}).values())
        lost = max(stated - salvaged, 0) if source.statistics is not None else None
        count = f'{lost} message(s) (per its statistics)' if lost is not None else \
            'an unknown number of messages'
        return Loss(check.name, source.skipped_bytes, lost,
                    f'{source.skipped_bytes} corrupt byte(s), {count}: {check.detail}')
    if source.data_complete:
        return None  # only the summary (an index) was damaged: every message is there
    lost_bytes = source.lost_bytes
    if lost_bytes:
        on_disk = f'{lost_bytes} byte(s) of a cut-off record after the last intact one'
    elif source.message_count:
        on_disk = 'the file ends cleanly after its last complete chunk'
    else:
        on_disk = f'none of its chunks reached the disk ({source.size} byte(s) on disk)'
    if source.skipped_bytes:
        on_disk += f', and {source.skipped_bytes} corrupt byte(s) before it were skipped'
        lost_bytes += source.skipped_bytes
    progress = check.progress_count
    if progress is not None and progress > salvaged:
        return Loss(check.name, lost_bytes, progress - salvaged,
                    f'{on_disk}; at least {progress - salvaged} message(s): the recorder had '
                    f'noted {progress} written, {salvaged} were intact')
    unknown = ('the messages in it and in any chunk not yet written are counted nowhere'
               if lost_bytes else 'the messages of the chunk being filled when the writer '
               'stopped never reached the disk, and their number was not noted')
    return Loss(check.name, lost_bytes, None, f'{on_disk}; {unknown}')


def _rebuild(bag: Path, kept: list[tuple[str, ScanReport]], old: BagMetadata | None,
             specs: _TopicSpecs) -> BagMetadata:
    """Metadata listing ``kept`` files, from what they hold."""
    kept = sorted(kept, key=lambda item: file_order(item[0]))
    files = tuple(FileInfo(name, s.start_ns, s.end_ns - s.start_ns, s.message_count)
                  for name, s in kept)
    topics: dict[str, TopicInfo] = {}
    for t in old.topics if old else ():
        topics[t.name] = TopicInfo(t.name, t.msgtype, 0, t.offered_qos, t.type_hash,
                                   t.serialization_format)
    for name, scan in kept:
        for cid, channel in scan.channels.items():
            count = scan.counts.get(cid, 0)
            have = topics.get(channel.topic)
            if have is None:
                spec = specs.spec(channel, scan.schemas.get(channel.schema_id), str(bag / name))
                have = TopicInfo(spec.name, spec.msgtype, 0, spec.offered_qos, spec.type_hash,
                                 channel.message_encoding)
            topics[channel.topic] = TopicInfo(have.name, have.msgtype,
                                              have.message_count + count, have.offered_qos,
                                              have.type_hash, have.serialization_format)
    custom = dict(old.custom_data) if old else {}
    if STATE_KEY in custom:
        custom[STATE_KEY] = 'recovered'
    base = BagMetadata(custom_data=custom, ros_distro=specs.distro) if old is None else old
    return base.replace(files=files, topics=tuple(topics.values()), custom_data=custom)


def describe_file(path: str | Path) -> BagMetadata:
    """The metadata of one ``.mcap`` file, as ``ros2 bag info FILE.mcap`` derives it: topics,
    counts and times from its records, ``ros_distro`` from its ``rosbag2`` record.

    Raises:
        BagFileError: the file cannot be read.
    """
    path = Path(path)
    scan = scan_mcap(path)
    return _rebuild(path.parent, [(path.name, scan)], None,
                    _TopicSpecs(path.parent, None, [scan]))


def _clean_staging(bag: Path) -> None:
    """Remove what a dead recorder left in ``.recording/`` (data files were moved out)."""
    staging = bag / STAGING
    if not staging.is_dir():
        return
    for sub in staging.iterdir():
        if sub.is_dir() and not list(sub.glob('*.mcap')):
            shutil.rmtree(sub)
    (staging / LOCK_FILE).unlink(missing_ok=True)
    if not any(staging.iterdir()):
        staging.rmdir()


def recover_bag(path: str | Path) -> RecoveryReport:
    """Salvage damaged files and rebuild ``metadata.yaml``; see the module docstring.

    Raises:
        BagInUseError: a live recorder is writing the bag.
        BagError: the path is not a bag directory, or a file cannot be rewritten.
    """
    bag = Path(path)
    if bag.is_file():
        raise BagError(f'{bag}: recovery works on a bag directory; put the file in a new '
                       'directory of its own and recover that (metadata.yaml is rebuilt)')
    before = check_bag(bag)
    if before.writer_pid is not None:
        raise BagInUseError(f'{bag} is being recorded by pid {before.writer_pid}: stop the '
                            'recorder before recovering')
    report = RecoveryReport(before, before)
    if before.ok:
        return report
    try:
        _recover(bag, before, report)
    except OSError as err:
        raise BagError(f'{bag}: recovery stopped: {err} (the originals of the files it had '
                       f'handled are in {TORN_DIR}/)') from None
    report.after = check_bag(bag)
    return report


def _recover(bag: Path, before: CheckReport, report: RecoveryReport) -> None:
    specs = _TopicSpecs(bag, before.metadata, [f.scan for f in before.files if f.scan])
    kept: list[tuple[str, ScanReport]] = []
    for check in before.files:
        if check.status in (OK, MISMATCH, UNLISTED):
            assert check.scan is not None
            kept.append((check.name, check.scan))
            if check.status != OK:
                report.actions.append(f'listed {check.name} with the {check.scan.message_count}'
                                      f' message(s) it holds ({check.status})')
        elif check.status == MISSING:
            report.losses.append(Loss(check.name, None, check.listed_count,
                                      f'the file is gone: {check.listed_count} message(s) per '
                                      'the old metadata'))
        elif check.status == OPEN and check.scan is not None and check.scan.ok:
            target = _free_name(bag, Path(check.name).name)
            os.replace(bag / check.name, bag / target)
            kept.append((target, check.scan))
            report.actions.append(f'moved the complete file {check.name} in as {target}')
        elif check.status in (TRUNCATED, CORRUPT, OPEN):
            _recover_file(bag, check, specs, report, kept)
    fsync_directory(bag)
    metadata = _rebuild(bag, kept, before.metadata, specs)
    write_metadata(bag, metadata)
    report.actions.append(f'wrote metadata.yaml: {len(metadata.files)} file(s), '
                          f'{metadata.message_count} message(s)')
    _clean_staging(bag)


def _recover_file(bag: Path, check: FileCheck, specs: _TopicSpecs, report: RecoveryReport,
                  kept: list[tuple[str, ScanReport]]) -> None:
    """Move a damaged file to ``.torn/`` and salvage its intact messages next to the rest."""
    source = bag / check.name
    torn_dir = bag / TORN_DIR
    torn_dir.mkdir(exist_ok=True)
    original = torn_dir / source.name
    while original.exists():
        original = original.with_name('_' + original.name)
    os.replace(source, original)
    if source.parent != bag:  # a staged file: its staging directory is free again
        shutil.rmtree(source.parent, ignore_errors=True)
    target = _free_name(bag, source.name)
    scan, new = _salvage(bag, original, target, specs)
    salvaged = new.message_count if new else 0
    kept_note = f'original kept as {original.relative_to(bag)}'
    if new is not None:
        kept.append((target, new))
        report.actions.append(f'salvaged {salvaged} message(s) from {check.name} into '
                              f'{target} ({kept_note})')
    else:
        report.actions.append(f'no intact message in {check.name} ({kept_note})')
    loss = _loss(check, scan, salvaged)
    if loss is not None:
        report.losses.append(loss)
