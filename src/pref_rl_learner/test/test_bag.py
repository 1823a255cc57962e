"""The bag library without ROS: definitions, writer, reader, check and recovery."""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from pref_rl_learner import cli
from pref_rl_learner.bag import (
    BackgroundWriter,
    BagInUseError,
    BagMessageError,
    BagMetadataError,
    BagReader,
    BagWriteError,
    BagWriter,
    TopicSpec,
    check_bag,
    read_bag,
    read_labels,
    read_learner_status,
    read_metadata,
    read_queries,
    read_segments,
    recover_bag,
    stack_definitions,
)
from pref_rl_learner.bag.convert import serialize
from pref_rl_learner.bag.mcapfile import MAGIC, scan_mcap
from pref_rl_learner.bag.metadata import METADATA_FILE
from pref_rl_learner.bag.writer import STAGING
from pref_rl_learner.testing import make_segment
from pref_rl_learner.types import (
    Choice,
    LearnerStatus,
    Phase,
    PreferenceLabel,
    PreferenceQuery,
)

SEGMENT, LABEL = 'pref_rl_msgs/msg/Segment', 'pref_rl_msgs/msg/PreferenceLabel'
TOPICS = [TopicSpec('/segments', SEGMENT),
          TopicSpec('/queries', 'pref_rl_msgs/msg/PreferenceQuery'),
          TopicSpec('/labels', LABEL),
          TopicSpec('/learner_status', 'pref_rl_msgs/msg/LearnerStatus')]
SEGMENT_FIELDS = ('observations', 'actions', 'next_observations', 'terminated', 'truncated',
                  'rewards', 'success', 'frames')


@pytest.fixture(scope='module')
def defs():
    return stack_definitions()


def assert_same_segment(got, want):
    for name in ('segment_id', 'task', 'source_id', 'episode', 'start_step', 'policy_version',
                 'stamp_ns', 'frame_stride'):
        assert getattr(got, name) == getattr(want, name), name
    for name in SEGMENT_FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), name


def session(n):
    """A recorded session's messages: (topic, timestamp, domain object), in order."""
    out, prev = [], None
    for i in range(n):
        seg = make_segment(seed=i, with_frames=i % 3 == 0, segment_id=f'seg-{i}')
        out.append(('/segments', 1_000 + 10 * i, seg))
        if i % 2:
            query = PreferenceQuery(f'q{i}', prev, seg, sampler='uniform', feedback_session=i,
                                    stamp_ns=7)
            out.append(('/queries', 1_001 + 10 * i, query))
            out.append(('/labels', 1_002 + 10 * i,
                        PreferenceLabel(f'q{i}', Choice(1 + i % 5), 'alice', 0.5 * i, 9)))
        if i % 4 == 0:
            out.append(('/learner_status', 1_003 + 10 * i,
                        LearnerStatus(Phase.LEARNING, env_steps=25 * i, labels_stored=i,
                                      reward_model_accuracy=0.75, stamp_ns=11)))
        prev = seg
    return out


def write_session(path, messages, defs, **kwargs):
    with BagWriter(path, TOPICS, definitions=defs, **kwargs) as writer:
        for topic, stamp, obj in messages:
            writer.write(topic, stamp, serialize(defs.typestore, obj)[1])
    return writer.metadata


def assert_same(got, want):
    assert got.topic == want[0] and got.timestamp_ns == want[1]
    if got.topic == '/segments':
        assert_same_segment(got.value, want[2])
    elif got.topic == '/queries':
        assert got.value.query_id == want[2].query_id
        assert_same_segment(got.value.left, want[2].left)
        assert_same_segment(got.value.right, want[2].right)
    elif got.topic == '/learner_status':
        assert got.value.phase == want[2].phase and got.value.env_steps == want[2].env_steps
        assert got.value.reward_model_accuracy == pytest.approx(0.75)
    else:
        assert got.value == want[2]


def test_definitions_are_rosbag2s_complete_text_with_rosidl_hashes(defs):
    for typename in defs.message_types:
        full = defs.full_definition(typename)
        assert full.startswith(defs.texts[typename])  # the .msg text verbatim, comments kept
        sections = full.split('\n' + '=' * 80 + '\n')
        names = [s.split('\n', 1)[0] for s in sections[1:]]
        assert all(n.startswith('MSG: ') for n in names) and len(set(names)) == len(names)
        assert 'MSG: std_msgs/Header' in names and 'MSG: builtin_interfaces/Time' in names
        # It parses back (rosbags reads schemas this way) into the registered fields.
        parsed = get_types_from_msg(full, typename)
        assert parsed[typename][1] == defs.typestore.fielddefs[typename][1]
        # The RIHS01 hash equals the one rosidl generated at build time.
        generated = defs.msg_dir / f'{typename.rsplit("/", 1)[1]}.json'
        if generated.exists():
            hashes = json.loads(generated.read_text())['type_hashes']
            assert defs.type_hash(typename) == hashes[0]['hash_string']
    query = defs.full_definition('pref_rl_msgs/msg/PreferenceQuery')
    assert query.count('MSG: pref_rl_msgs/Segment\n') == 1  # nested types written once


def test_round_trip_over_split_files(tmp_path, defs):
    messages = session(24)
    metadata = write_session(tmp_path / 'bag', messages, defs, max_file_bytes=400_000)
    assert len(metadata.files) >= 3
    assert [f.path for f in metadata.files] == [f'bag_{i}.mcap'
                                                for i in range(len(metadata.files))]
    on_disk = read_metadata(tmp_path / 'bag')
    assert on_disk.message_count == len(messages) == sum(f.message_count for f in on_disk.files)
    for info in on_disk.files:
        scan = scan_mcap(tmp_path / 'bag' / info.path)
        assert scan.ok and scan.message_count == info.message_count
        assert scan.profile == 'ros2'
        assert {s.encoding for s in scan.schemas.values()} == {'ros2msg'}
        assert {c.message_encoding for c in scan.channels.values()} == {'cdr'}
    got = list(read_bag(tmp_path / 'bag'))
    assert len(got) == len(messages)
    for g, want in zip(got, messages, strict=True):
        assert_same(g, want)
    assert [s.segment_id for s in read_segments(tmp_path / 'bag')] == [f'seg-{i}'
                                                                      for i in range(24)]
    assert len(list(read_queries(tmp_path / 'bag'))) == 12
    assert [label.query_id for label in read_labels(tmp_path / 'bag')] == [
        f'q{i}' for i in range(1, 24, 2)]
    assert [s.env_steps for s in read_learner_status(tmp_path / 'bag')] == [0, 100, 200, 300,
                                                                           400, 500]
    # One file on its own reads as well.
    with BagReader(tmp_path / 'bag' / 'bag_1.mcap') as reader:
        assert sum(1 for _ in reader.messages()) == on_disk.files[1].message_count


def test_metadata_matches_what_rosbags_writer_writes(tmp_path, defs):
    """Same layout as rosbags' own (single-file) Writer: keys, topic entries, schema format."""
    segment = serialize(defs.typestore, make_segment())[1]
    ours = tmp_path / 'ours'
    with BagWriter(ours, TOPICS[:1], definitions=defs) as writer:
        writer.write('/segments', 5, segment)
    theirs = tmp_path / 'theirs'
    with Writer(theirs, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/segments', SEGMENT, typestore=defs.typestore)
        writer.write(conn, 5, segment)

    def keys(node):
        if isinstance(node, dict):
            return {k: keys(v) for k, v in node.items() if k != 'custom_data'}
        return keys(node[0]) if isinstance(node, list) and node else type(node).__name__

    a = yaml.safe_load((ours / METADATA_FILE).read_text())['rosbag2_bagfile_information']
    b = yaml.safe_load((theirs / METADATA_FILE).read_text())['rosbag2_bagfile_information']
    assert keys(a) == keys(b)
    assert a['topics_with_message_count'] == b['topics_with_message_count']
    assert a['version'] == 9 and a['storage_identifier'] == 'mcap'
    ours_scan, theirs_scan = scan_mcap(ours / 'ours_0.mcap'), scan_mcap(theirs / 'theirs.mcap')
    assert [s.encoding for s in ours_scan.schemas.values()] == ['ros2msg'] == [
        s.encoding for s in theirs_scan.schemas.values()]
    # Both readers of rosbags open the bag and decode the message from the stored schema.
    with Reader(ours) as reader:
        (conn,) = reader.connections
        assert conn.digest == defs.type_hash(SEGMENT) and conn.msgcount == 1
        assert conn.msgdef.data == defs.full_definition(SEGMENT)


def test_duration_split_closes_an_idle_file(tmp_path, defs):
    now = [0.0]
    data = serialize(defs.typestore, make_segment())[1]
    writer = BagWriter(tmp_path / 'bag', TOPICS[:1], definitions=defs, max_file_duration_s=5,
                       clock=lambda: now[0])
    writer.write('/segments', 1, data)
    now[0] = 4.9
    assert not writer.poll()
    now[0] = 5.0
    assert writer.poll()  # no new message needed: the age alone closes it
    assert [f.path for f in read_metadata(tmp_path / 'bag').files] == ['bag_0.mcap']
    assert read_metadata(tmp_path / 'bag').state == 'in_progress'
    writer.write('/segments', 2, data)
    metadata = writer.close()
    assert [f.message_count for f in metadata.files] == [1, 1]
    assert read_metadata(tmp_path / 'bag').state == 'complete'
    assert not (tmp_path / 'bag' / STAGING).exists()


CRASH_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    from pref_rl_learner.bag import BagWriter, TopicSpec, stack_definitions
    from pref_rl_learner.bag.convert import serialize
    from pref_rl_learner.testing import make_segment
    ts = stack_definitions().typestore
    writer = BagWriter(sys.argv[1], [TopicSpec('/segments', 'pref_rl_msgs/msg/Segment')],
                       max_file_bytes=3_000_000)
    for i in range(int(sys.argv[2])):
        segment = make_segment(seed=i, with_frames=True, segment_id=f'seg-{i}')
        writer.write('/segments', 1000 + i, serialize(ts, segment)[1])
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_killed_writer_keeps_closed_files_and_recovery_salvages_chunks(tmp_path):
    """A writer SIGKILLed mid-file: the bag opens with every closed file complete; recovery
    salvages the torn file's flushed chunks and names the loss."""
    bag, n = tmp_path / 'bag', 17  # ~310 kB each: 10 per closed file, then 7 in the open one
    result = subprocess.run([sys.executable, '-c', CRASH_SCRIPT, str(bag), str(n)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    sent = [make_segment(seed=i, with_frames=True, segment_id=f'seg-{i}') for i in range(n)]
    metadata = read_metadata(bag)
    assert [f.path for f in metadata.files] == ['bag_0.mcap'] and metadata.state == 'in_progress'
    closed = list(read_segments(bag))
    assert len(closed) == metadata.files[0].message_count == 10
    for got, want in zip(closed, sent, strict=False):
        assert_same_segment(got, want)

    report = check_bag(bag)
    assert not report.ok and report.writer_pid is None
    assert [(f.name, f.status) for f in report.files] == [
        ('bag_0.mcap', 'ok'), ('.recording/bag_1/bag_1.mcap', 'open')]
    assert 'without a footer' in report.files[1].detail

    recovery = recover_bag(bag)
    assert recovery.after.ok, recovery.format()
    (loss,) = recovery.losses
    assert loss.file == '.recording/bag_1/bag_1.mcap'
    assert 'never reached the disk' in loss.detail
    assert (bag / '.torn' / 'bag_1.mcap').exists() and not (bag / STAGING).exists()
    recovered = list(read_segments(bag))
    assert 10 < len(recovered) < n  # the flushed 1 MiB chunk came back, the open one did not
    for got, want in zip(recovered, sent, strict=False):
        assert_same_segment(got, want)
    assert read_metadata(bag).state == 'recovered'
    assert check_bag(bag).ok and recover_bag(bag).actions == []


def test_truncated_file_salvages_complete_messages_of_the_cut_chunk(tmp_path, defs):
    messages = [m for m in session(12) if m[0] == '/segments']
    write_session(tmp_path / 'bag', messages, defs)
    path = tmp_path / 'bag' / 'bag_0.mcap'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # cuts the (uncompressed) chunk in the middle
    report = check_bag(tmp_path / 'bag')
    (f,) = report.files
    assert f.status == 'truncated' and 'runs' in f.detail and 'past the end' in f.detail
    assert f.scan.salvaged_from_torn_chunk == f.scan.message_count > 0
    recovery = recover_bag(tmp_path / 'bag')
    assert recovery.after.ok
    (loss,) = recovery.losses
    assert loss.file == 'bag_0.mcap' and 0 < loss.bytes < len(data) // 2
    got = list(read_bag(tmp_path / 'bag'))
    assert 0 < len(got) < len(messages)
    for g, want in zip(got, messages, strict=False):
        assert_same(g, want)


def _chunk_crc_offset(data: bytes) -> int:
    """Offset of the first chunk's uncompressed_crc field (walking the records)."""
    pos = len(MAGIC)
    while data[pos] != 0x06:
        pos += 9 + struct.unpack_from('<Q', data, pos + 1)[0]
    return pos + 9 + 24  # opcode, length, then start, end and size (8 bytes each)


def test_chunk_crc_is_verified(tmp_path, defs):
    """rosbags writes CRC 0 (not computed); a real CRC is checked, a wrong one is caught."""
    write_session(tmp_path / 'bag', session(3), defs)
    path = tmp_path / 'bag' / 'bag_0.mcap'
    data = bytearray(path.read_bytes())
    crc_at = _chunk_crc_offset(data)
    assert struct.unpack_from('<I', data, crc_at)[0] == 0
    length = struct.unpack_from('<Q', data, crc_at + 4 + 4)[0]  # compression '' then size
    records = bytes(data[crc_at + 16:crc_at + 16 + length])
    struct.pack_into('<I', data, crc_at, zlib.crc32(records))
    path.write_bytes(bytes(data))
    assert check_bag(tmp_path / 'bag').ok
    struct.pack_into('<I', data, crc_at, zlib.crc32(records) ^ 1)
    path.write_bytes(bytes(data))
    report = check_bag(tmp_path / 'bag')
    assert report.files[0].status == 'corrupt' and 'CRC mismatch' in report.files[0].detail
    recovery = recover_bag(tmp_path / 'bag')
    (loss,) = recovery.losses
    assert loss.messages == len(session(3))  # all were in the bad chunk, per the statistics
    assert recovery.after.ok and list(read_bag(tmp_path / 'bag')) == []


def test_bad_metadata_and_missing_files_are_named(tmp_path, defs):
    bag = tmp_path / 'bag'
    metadata = write_session(bag, session(10), defs, max_file_bytes=400_000)
    (bag / METADATA_FILE).write_text('rosbag2_bagfile_information: {version: 9}\n')
    with pytest.raises(BagMetadataError, match=r'metadata\.yaml: missing key'):
        read_metadata(bag)
    with pytest.raises(BagMetadataError, match='metadata.yaml'):
        BagReader(bag)
    report = check_bag(bag)
    assert 'missing key' in report.metadata_problem
    assert {f.status for f in report.files} == {'unlisted'}
    assert recover_bag(bag).after.ok
    assert read_metadata(bag).message_count == metadata.message_count

    (bag / 'bag_1.mcap').unlink()
    report = check_bag(bag)
    assert [f.status for f in report.files].count('missing') == 1
    recovery = recover_bag(bag)
    (loss,) = recovery.losses
    assert loss.file == 'bag_1.mcap' and loss.messages == metadata.files[1].message_count
    assert recovery.after.ok
    assert read_metadata(bag).message_count == metadata.message_count - loss.messages

    (bag / METADATA_FILE).write_text('{not yaml')
    with pytest.raises(BagMetadataError, match='not valid YAML'):
        read_metadata(bag)


def test_malformed_message_names_topic_and_time(tmp_path, defs):
    msg = serialize(defs.typestore, make_segment())[1]
    bad = defs.typestore.deserialize_cdr(msg, SEGMENT)
    bad.length = 7  # disagrees with the arrays
    with BagWriter(tmp_path / 'bag', TOPICS[:1], definitions=defs) as writer:
        writer.write('/segments', 42, bytes(defs.typestore.serialize_cdr(bad, SEGMENT)))
    with pytest.raises(BagMessageError, match=r'/segments at 42: observations'):
        list(read_segments(tmp_path / 'bag'))


def test_live_writer_blocks_recovery(tmp_path, defs):
    writer = BagWriter(tmp_path / 'bag', TOPICS[:1], definitions=defs)
    writer.write('/segments', 1, serialize(defs.typestore, make_segment())[1])
    report = check_bag(tmp_path / 'bag')
    assert report.writer_pid == os.getpid() and report.ok
    assert [f.status for f in report.files] == ['open']
    with pytest.raises(BagInUseError):
        recover_bag(tmp_path / 'bag')
    with pytest.raises(BagWriteError, match='exists already'):
        BagWriter(tmp_path / 'bag', TOPICS[:1], definitions=defs)
    writer.close()
    assert check_bag(tmp_path / 'bag').writer_pid is None


class _SlowWriter:
    """Stands in for a BagWriter whose disk stalls until released."""

    def __init__(self):
        self.path, self.release, self.got = Path('slow'), threading.Event(), []

    def write(self, topic, stamp, data):
        self.release.wait(10)
        self.got.append(stamp)

    def poll(self):
        return False

    def close(self):
        return None


def test_background_writer_is_bounded_and_never_blocks():
    slow = _SlowWriter()
    background = BackgroundWriter(slow, max_queue_bytes=1000, poll_s=0.01)
    accepted = [background.put('/t', i, b'x' * 100) for i in range(30)]
    assert accepted.count(False) >= 19  # ~10 fit in 1000 bytes (one may be in the writer)
    assert background.dropped == accepted.count(False)
    slow.release.set()
    background.close(timeout_s=10)
    assert slow.got == [i for i, ok in enumerate(accepted) if ok]
    assert background.written == len(slow.got) and background.received == 30


def test_cli_check_recover_info(tmp_path, defs, capsys):
    bag = tmp_path / 'bag'
    write_session(bag, session(4), defs)
    assert cli.main(['bag', 'check', str(bag)]) == 0
    assert 'verdict: OK' in capsys.readouterr().out
    assert cli.main(['bag', 'info', str(bag)]) == 0
    out = capsys.readouterr().out
    assert 'Storage id:        mcap' in out and 'Topic: /segments' in out and 'Count: 4' in out
    data = (bag / 'bag_0.mcap').read_bytes()
    (bag / 'bag_0.mcap').write_bytes(data[:-100])
    assert cli.main(['bag', 'check', str(bag)]) == 1
    assert 'TRUNCATED' in capsys.readouterr().out
    assert cli.main(['bag', 'check', '--recover', str(bag)]) == 0
    out = capsys.readouterr().out
    assert 'LOST from bag_0.mcap' not in out and 'verdict after recovery: OK' in out
    assert cli.main(['bag', 'check', str(tmp_path / 'nothing')]) == 2
    assert 'no such bag directory or .mcap file' in capsys.readouterr().err
    (bag / METADATA_FILE).unlink()
    assert cli.main(['bag', 'info', str(bag)]) == 2
    assert 'metadata.yaml: no such file' in capsys.readouterr().err


def test_background_writer_closes_an_idle_file_by_age(tmp_path, defs):
    now = [0.0]
    writer = BagWriter(tmp_path / 'bag', TOPICS[:1], definitions=defs, max_file_duration_s=5,
                       clock=lambda: now[0])
    background = BackgroundWriter(writer, poll_s=0.01)
    assert background.put('/segments', 1, serialize(defs.typestore, make_segment())[1])
    while background.written < 1:
        threading.Event().wait(0.01)
    now[0] = 6.0  # no further message: the writer thread's own poll closes the file
    for _ in range(500):
        if read_metadata(tmp_path / 'bag').files:
            break
        threading.Event().wait(0.01)
    assert [f.message_count for f in read_metadata(tmp_path / 'bag').files] == [1]
    assert [f.message_count for f in background.close().files] == [1]
