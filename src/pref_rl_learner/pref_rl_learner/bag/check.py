"""Validate a bag: ``metadata.yaml`` against the files, and every file record by record.

Each data file gets one status:

- ``ok``: complete (footer and summary), CRCs (where written) and statistics agree, and the
  metadata lists it with the message count it holds;
- ``missing``: listed but absent;
- ``truncated``: torn, its writer never closed it (complete records before the tear are
  salvageable);
- ``corrupt``: complete but a chunk or section fails its CRC, or a record is malformed;
- ``count mismatch``: intact, but the metadata lists a different message count;
- ``unlisted``: an ``.mcap`` file in the bag directory the metadata does not list;
- ``open``: the file a recorder is writing (``.recording/``): being written while the
  recorder holds the bag's lock, torn (its recorder died) otherwise.

:func:`pref_rl_learner.bag.recover.recover_bag` repairs what this reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pref_rl_learner.bag.errors import BagError, BagMetadataError
from pref_rl_learner.bag.mcapfile import ScanReport, scan_mcap
from pref_rl_learner.bag.metadata import BagMetadata, read_metadata
from pref_rl_learner.bag.reader import channel_type, delivered_counts
from pref_rl_learner.bag.writer import PROGRESS_FILE, STAGING, lock_holder

TORN_DIR = '.torn'
"""Where recovery keeps the originals of files it salvaged (never deleted)."""

OK, MISSING, TRUNCATED, CORRUPT = 'ok', 'missing', 'truncated', 'corrupt'
MISMATCH, UNLISTED, OPEN = 'count mismatch', 'unlisted', 'open'


@dataclass
class FileCheck:
    """The verdict on one data file."""

    name: str
    """Path relative to the bag directory."""
    status: str
    """One of ``ok``, ``missing``, ``truncated``, ``corrupt``, ``count mismatch``,
    ``unlisted``, ``open``."""
    detail: str = ''
    """What is wrong, in words."""
    scan: ScanReport | None = None
    """The record-by-record scan (None for a missing file or one being written)."""
    listed_count: int | None = None
    """Message count the metadata lists for it (None: not listed)."""
    progress_count: int | None = None
    """For an open file: messages its recorder had written at its last progress note."""


@dataclass
class CheckReport:
    """What :func:`check_bag` found."""

    bag: Path
    metadata: BagMetadata | None = None
    metadata_problem: str = ''
    """Why ``metadata.yaml`` is unusable ('' when it is fine)."""
    files: list[FileCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Bag-level disagreements (topic totals, storage type)."""
    writer_pid: int | None = None
    """pid of the recorder writing the bag right now, if any."""

    @property
    def ok(self) -> bool:
        """Nothing needs recovering (a live recorder's open file does not count)."""
        live = self.writer_pid is not None
        return (not self.metadata_problem and not self.problems
                and all(f.status == OK or (f.status == OPEN and live) for f in self.files))

    def format(self) -> str:
        """A human-readable report, one line per file."""
        lines = [f'bag {self.bag}:']
        if self.writer_pid is not None:
            lines.append(f'  being recorded by pid {self.writer_pid}: its open file is not '
                         'checked')
        if self.metadata_problem:
            lines.append(f'  metadata.yaml: {self.metadata_problem}')
        elif self.metadata is not None:
            state = f', recording {self.metadata.state}' if self.metadata.state else ''
            lines.append(f'  metadata.yaml: version {self.metadata.version}, '
                         f'{len(self.metadata.files)} file(s), '
                         f'{self.metadata.message_count} message(s){state}')
        for f in self.files:
            count = f' {f.scan.message_count} message(s)' if f.scan else ''
            lines.append(f'  {f.status.upper():<15} {f.name}{":" + count if count else ""}'
                         f'{" - " + f.detail if f.detail else ""}')
        lines += [f'  PROBLEM: {p}' for p in self.problems]
        lines.append('  verdict: ' + ('OK' if self.ok else 'NEEDS RECOVERY '
                                      '(`pref-rl bag check --recover`)'))
        return '\n'.join(lines)


_INDEX = re.compile(r'_(\d+)\.mcap$')


def file_order(name: str) -> tuple[int, str]:
    """Sort key of data files: rosbag2's split index, then the name."""
    match = _INDEX.search(name)
    return (int(match.group(1)) if match else -1, name)


def _describe_tear(scan: ScanReport) -> str:
    text = (f'{scan.tear}; {scan.message_count} intact message(s), {scan.lost_bytes} byte(s) '
            'after the last intact record')
    if scan.salvaged_from_torn_chunk:
        text += f' ({scan.salvaged_from_torn_chunk} read from the cut-off chunk)'
    return text


def _judge(name: str, scan: ScanReport, listed_count: int | None) -> FileCheck:
    if scan.problems:
        return FileCheck(name, CORRUPT, '; '.join(scan.problems), scan, listed_count)
    if not scan.closed:
        return FileCheck(name, TRUNCATED, _describe_tear(scan), scan, listed_count)
    if listed_count is not None and listed_count != scan.message_count:
        return FileCheck(name, MISMATCH, f'metadata lists {listed_count} message(s)', scan,
                         listed_count)
    return FileCheck(name, OK, '', scan, listed_count)


def read_progress(staging_dir: Path) -> int | None:
    """Messages a recorder had written into its open file, per its last progress note."""
    try:
        return int((staging_dir / PROGRESS_FILE).read_text(encoding='ascii').split()[0])
    except (OSError, ValueError, IndexError):
        return None


def check_bag(path: str | Path) -> CheckReport:
    """Check a bag directory, or one ``.mcap`` file; see the module docstring for the statuses.

    Raises:
        BagError: ``path`` is neither a directory nor a file.
    """
    bag = Path(path)
    if bag.is_file():  # one file, as `ros2 bag info FILE.mcap` takes: no metadata to compare
        report = CheckReport(bag)
        report.files.append(_judge(bag.name, scan_mcap(bag), None))
        _check_channels(report, report.files[0])
        return report
    if not bag.is_dir():
        raise BagError(f'{bag}: no such bag directory or .mcap file')
    report = CheckReport(bag, writer_pid=lock_holder(bag))
    try:
        report.metadata = read_metadata(bag)
    except BagMetadataError as err:
        report.metadata_problem = str(err)
    listed: dict[str, int | None] = {}
    if report.metadata is not None:
        if report.metadata.storage_identifier != 'mcap':
            report.problems.append(f'storage {report.metadata.storage_identifier!r}: only MCAP '
                                   'bags are checked')
            return report
        if report.metadata.compression_mode:
            report.problems.append(f'compression mode {report.metadata.compression_mode!r}: '
                                   'compressed bags are not checked')
            return report
        listed = {f.path: f.message_count for f in report.metadata.files}
    for name, count in listed.items():
        if not (bag / name).is_file():
            report.files.append(FileCheck(name, MISSING, 'listed in metadata.yaml, not on disk',
                                          listed_count=count))
        else:
            report.files.append(_judge(name, scan_mcap(bag / name), count))
    for path in sorted(bag.glob('*.mcap'), key=lambda p: file_order(p.name)):
        if path.name not in listed:
            check = _judge(path.name, scan_mcap(path), None)
            if check.status == OK:
                check.status, check.detail = UNLISTED, 'complete, but metadata.yaml omits it'
            report.files.append(check)
    for path in sorted((bag / STAGING).glob('*/*.mcap')):
        name = str(path.relative_to(bag))
        progress = read_progress(path.parent)
        if report.writer_pid is not None:
            report.files.append(FileCheck(name, OPEN, 'being written', progress_count=progress))
            continue
        scan = scan_mcap(path)
        detail = ('its recorder stopped without closing it: '
                  + (_describe_tear(scan) if not scan.closed else 'complete, not moved in'))
        if progress is not None:
            detail += f'; the recorder had written {progress} message(s) into it'
        report.files.append(FileCheck(name, OPEN, detail, scan, progress_count=progress))
    _check_topic_totals(report)
    return report


def _check_channels(report: CheckReport, f: FileCheck) -> None:
    """A channel holding messages that are not ROS 2 (CDR, ros2msg/ros2idl) is a problem."""
    assert f.scan is not None
    for channel in f.scan.channels.values():
        problem = channel_type(channel, f.scan.schemas)[1]
        if problem and f.scan.counts.get(channel.id):
            report.problems.append(
                f'{f.name}: topic {channel.topic} is not a ROS 2 channel ({problem}): the '
                f'reader refuses the file, {f.scan.counts[channel.id]} message(s)')


def _check_topic_totals(report: CheckReport) -> None:
    """Per topic and type: the messages the reader delivers from the listed files against
    what ``metadata.yaml`` lists (the reader matches topics by name and type, never by QoS)."""
    if report.metadata is None:
        return
    found: dict[tuple[str, str], int] = {}
    for f in report.files:
        if f.listed_count is None or f.scan is None or f.status not in (OK, MISMATCH):
            continue
        _check_channels(report, f)
        for key, n in delivered_counts(f.scan).items():
            found[key] = found.get(key, 0) + n
    if any(f.listed_count is not None and f.status not in (OK, MISMATCH)
           for f in report.files):
        return  # a listed file is damaged: its verdict already says so
    listed = {(t.name, t.msgtype): t.message_count for t in report.metadata.topics}
    for (name, msgtype), count in listed.items():
        got = found.get((name, msgtype), 0)
        if got != count:
            report.problems.append(
                f'topic {name} ({msgtype}): metadata.yaml lists {count} message(s), the '
                f'reader delivers {got} from the listed files')
    for (name, msgtype), got in sorted(found.items()):
        if (name, msgtype) not in listed:
            report.problems.append(
                f'topic {name} ({msgtype}): the reader delivers {got} message(s) from the '
                'listed files, metadata.yaml does not list it with that type')
