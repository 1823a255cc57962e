"""Bags from an independent rosbag2-compatible writer, read by `pref-rl bag info`, `bag check`
and `reward-train`.

The bags are written with the ``mcap`` and ``mcap-ros2-support`` packages (not rosbags, not
our writer) in rosbag2's layout: a directory with ``metadata.yaml`` (written here by hand,
as rosbag2 writes it, version 9 for Jazzy/Kilted and version 5 for Humble) and
``<name>_<n>.mcap`` files with ``ros2msg`` schemas and ``cdr`` channels. They vary in what
the issue found broken: channels without QoS (a plain MCAP writer), channel QoS that differs
from ``metadata.yaml``'s, zstd and lz4 chunk compression, Humble-era metadata, a torn last
file, a bare ``.mcap`` file. Each session holds 24 queries and 24 labels answering them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from mcap_ros2._dynamic import serialize_dynamic
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import Reader as RosbagsReader

from pref_rl_learner import cli
from pref_rl_learner.bag import (
    BagWriter,
    TopicSpec,
    check_bag,
    read_labels,
    read_metadata,
    read_queries,
)
from pref_rl_learner.bag.convert import serialize
from pref_rl_learner.bag.mcapfile import scan_mcap
from pref_rl_learner.bag.typestore import stack_definitions
from pref_rl_learner.types import Choice
from pref_rl_learner.types import PreferenceLabel as LabelValue

QUERY, LABEL = 'pref_rl_msgs/msg/PreferenceQuery', 'pref_rl_msgs/msg/PreferenceLabel'
NUM_QUERIES = 24
START_NS = 1_717_000_000_050_000_000
"""First log time: 1717000000.05 s, which a float prints as 1717000000.049999952."""
INFINITE = {'sec': 9223372036, 'nsec': 854775807}
SMALL = {'seed': 0,
         'reward_model': {'ensemble_size': 2, 'hidden_sizes': [16, 16], 'inputs': 'state',
                          'device': 'cpu'},
         'reward_training': {'lr': 3e-3, 'batch_size': 32, 'max_epochs': 5,
                             'target_accuracy': None}}


def qos_yaml(depth: int, reliability: str = 'reliable', humble: bool = False) -> str:
    """An ``offered_qos_profiles`` string as rosbag2 writes it (Humble: enum numbers)."""
    if humble:
        profile = {'history': 3, 'depth': 0, 'reliability': 1, 'durability': 2,
                   'deadline': INFINITE, 'lifespan': INFINITE, 'liveliness': 1,
                   'liveliness_lease_duration': INFINITE,
                   'avoid_ros_namespace_conventions': False}
    else:
        profile = {'history': 'keep_last', 'depth': depth, 'reliability': reliability,
                   'durability': 'volatile', 'deadline': INFINITE, 'lifespan': INFINITE,
                   'liveliness': 'automatic', 'liveliness_lease_duration': INFINITE,
                   'avoid_ros_namespace_conventions': False}
    return yaml.safe_dump([profile], sort_keys=False)


def segment(rng: np.random.Generator, name: str, stamp_ns: int) -> dict:
    """A pref_rl_msgs/Segment as the plain dict mcap_ros2 serializes (obs 3, act 2, T 10)."""
    length = 10
    obs = rng.normal(size=(length, 3)).astype(np.float32)
    return {
        'header': {'stamp': {'sec': stamp_ns // 10**9, 'nanosec': stamp_ns % 10**9},
                   'frame_id': ''},
        'segment_id': name, 'source_id': 'robot', 'task': 'point_mass', 'episode': 0,
        'start_step': 0, 'length': length, 'policy_version': 0,
        'observation_shape': [3], 'action_shape': [2],
        'observations': obs.ravel().tolist(),
        'actions': rng.uniform(-1, 1, size=2 * length).tolist(),
        'next_observations': (obs + 0.1).ravel().tolist(),
        'rewards': (-np.abs(obs).sum(axis=1)).tolist(),
        'terminated': [0] * length, 'truncated': [0] * (length - 1) + [1],
        'success': [], 'frame_shape': [], 'frame_stride': 0, 'frames': b'',
    }


def session(seed: int = 0) -> list[tuple[str, str, dict, int]]:
    """(topic, type, message, log time) of 24 queries, each followed by the label answering
    it (the oracle: the segment with the larger true return)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(NUM_QUERIES):
        stamp = START_NS + 2 * k * 10_000_000
        left, right = (segment(rng, f'seg-{2 * k + i}', stamp) for i in (0, 1))
        header = left['header']
        out.append(('/queries', QUERY, {
            'header': header, 'query_id': f'q{k}', 'feedback_session': 0, 'sampler': 'uniform',
            'reward_model_version': 0, 'left': left, 'right': right}, stamp))
        better = 1 if sum(left['rewards']) >= sum(right['rewards']) else 2
        out.append(('/labels', LABEL, {
            'header': header, 'query_id': f'q{k}', 'choice': better,
            'labeler_id': 'teacher/oracle', 'response_time': 0.5}, stamp + 10_000_000))
    return out


def write_mcap(path: Path, messages, *, channel_qos: str | None,
               compression: CompressionType = CompressionType.NONE,
               distro: str | None = None, torn: bool = False) -> None:
    """One MCAP file in rosbag2's profile; ``torn`` cuts it after its first chunks."""
    defs = stack_definitions()
    with open(path, 'wb') as stream:
        writer = McapWriter(stream, chunk_size=4096, compression=compression)
        writer.start(profile='ros2', library='mcap test writer')
        schemas, channels, encoders = {}, {}, {}
        for topic, msgtype, message, stamp in messages:
            if msgtype not in schemas:
                text = defs.full_definition(msgtype)
                schemas[msgtype] = writer.register_schema(msgtype, 'ros2msg', text.encode())
                encoders[msgtype] = serialize_dynamic(msgtype, text)[msgtype]
            if topic not in channels:
                metadata = {} if channel_qos is None else {'offered_qos_profiles': channel_qos}
                channels[topic] = writer.register_channel(topic, 'cdr', schemas[msgtype],
                                                          metadata)
            writer.add_message(channels[topic], log_time=stamp, publish_time=stamp,
                               data=encoders[msgtype](message))
        if distro is not None:  # rosbag2 writes this record when it closes a file
            writer.add_metadata('rosbag2', {'ROS_DISTRO': distro})
        writer.finish()
    if torn:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) * 2 // 3])


def write_metadata_yaml(bag: Path, files: list[tuple[str, list]], *, version: int = 9,
                        metadata_qos: str = '', counts: dict[str, int] | None = None) -> None:
    """``metadata.yaml`` as rosbag2 writes it (version 5: Humble, without type hashes,
    custom_data and ros_distro)."""
    everything = [m for _, messages in files for m in messages]
    topics = {}
    for topic, msgtype, _, _ in everything:
        topics.setdefault(topic, [msgtype, 0])[1] += 1
    for topic, count in (counts or {}).items():
        topics[topic][1] = count
    stamps = [m[3] for m in everything]
    entries = []
    for name, (msgtype, count) in topics.items():
        meta = {'name': name, 'type': msgtype, 'serialization_format': 'cdr',
                'offered_qos_profiles': metadata_qos}
        if version >= 8:
            meta['type_description_hash'] = ''
        entries.append({'topic_metadata': meta, 'message_count': count})
    info = {
        'version': version, 'storage_identifier': 'mcap',
        'duration': {'nanoseconds': max(stamps) - min(stamps)},
        'starting_time': {'nanoseconds_since_epoch': min(stamps)},
        'message_count': len(everything), 'topics_with_message_count': entries,
        'compression_format': '', 'compression_mode': '',
        'relative_file_paths': [name for name, _ in files],
        'files': [{'path': name,
                   'starting_time': {'nanoseconds_since_epoch': min(m[3] for m in messages)},
                   'duration': {'nanoseconds': max(m[3] for m in messages)
                                - min(m[3] for m in messages)},
                   'message_count': len(messages)} for name, messages in files],
    }
    if version >= 6:
        info['custom_data'] = None
    if version >= 8:
        info['ros_distro'] = 'jazzy'
    (bag / 'metadata.yaml').write_text(yaml.safe_dump({'rosbag2_bagfile_information': info},
                                                      sort_keys=False))


def write_bag(bag: Path, *, channel_qos: str | None, metadata_qos: str = '',
              compression: CompressionType = CompressionType.NONE, version: int = 9,
              torn_last: bool = False, counts: dict[str, int] | None = None) -> list:
    """A two-file bag of :func:`session`; returns the messages of each file."""
    bag.mkdir()
    messages = session()
    halves = [messages[:len(messages) // 2], messages[len(messages) // 2:]]
    files = []
    for i, part in enumerate(halves):
        name = f'{bag.name}_{i}.mcap'
        write_mcap(bag / name, part, channel_qos=channel_qos, compression=compression,
                   distro='humble' if version == 5 else 'jazzy', torn=torn_last and i == 1)
        files.append((name, part))
    write_metadata_yaml(bag, files, version=version, metadata_qos=metadata_qos, counts=counts)
    return halves


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def reward_train(bag: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    config = tmp_path / 'small.yaml'
    config.write_text(yaml.safe_dump(SMALL))
    return run(['reward-train', '--bag', str(bag), '--out', str(tmp_path / 'r.pt'),
                '--config', str(config), '--store', str(tmp_path / 'store')], capsys)


@pytest.mark.parametrize('case', [
    # A plain MCAP writer: no QoS in the channels; metadata.yaml says depth 10.
    {'channel_qos': None, 'metadata_qos': qos_yaml(10)},
    # Channel QoS depth 256, metadata.yaml edited to depth 10 and best effort.
    {'channel_qos': qos_yaml(256), 'metadata_qos': qos_yaml(10, 'best_effort')},
    # Chunk compression, as rosbag2's MCAP storage presets write it.
    {'channel_qos': qos_yaml(10), 'metadata_qos': qos_yaml(10),
     'compression': CompressionType.ZSTD},
    {'channel_qos': qos_yaml(10), 'metadata_qos': qos_yaml(10),
     'compression': CompressionType.LZ4},
    # Humble: metadata version 5, QoS with enum numbers, no ros_distro.
    {'channel_qos': qos_yaml(0, humble=True), 'metadata_qos': qos_yaml(0, humble=True),
     'version': 5},
], ids=['no-channel-qos', 'qos-differs', 'zstd', 'lz4', 'humble-v5'])
def test_foreign_bag_info_check_and_train(case, tmp_path, capsys):
    bag = tmp_path / 'bag'
    write_bag(bag, **case)
    assert [q.query_id for q in read_queries(bag)] == [f'q{k}' for k in range(NUM_QUERIES)]
    assert len(list(read_labels(bag))) == NUM_QUERIES
    code, out = reward_train(bag, tmp_path, capsys)
    assert code == 0, out
    assert 'queries: 24 read, 24 stored' in out and 'labels:  24 read, 24 stored' in out, out
    code, out = run(['bag', 'check', str(bag)], capsys)
    assert code == 0 and 'verdict: OK' in out, out
    code, out = run(['bag', 'info', str(bag)], capsys)
    assert code == 0, out
    assert 'Messages:          48' in out
    assert 'Topic: /queries | Type: pref_rl_msgs/msg/PreferenceQuery | Count: 24' in out
    assert 'Start:             May 29 2024 16:26:40.050000000 UTC (1717000000.050000000)' in out
    assert f"ROS Distro:        {'' if case.get('version') == 5 else 'jazzy'}\n" in out


def test_metadata_counts_that_the_reader_does_not_deliver_fail_the_check(tmp_path, capsys):
    bag = tmp_path / 'bag'
    write_bag(bag, channel_qos=None, counts={'/labels': 30})
    code, out = run(['bag', 'check', str(bag)], capsys)
    assert code == 1, out
    assert ('topic /labels (pref_rl_msgs/msg/PreferenceLabel): metadata.yaml lists 30 '
            'message(s), the reader delivers 24 from the listed files') in out
    # A topic listed with another type than the files' schema is found out too.
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())
    topics = info['rosbag2_bagfile_information']['topics_with_message_count']
    topics[1]['topic_metadata']['type'] = 'std_msgs/msg/String'
    topics[1]['message_count'] = 24
    (bag / 'metadata.yaml').write_text(yaml.safe_dump(info))
    problems = check_bag(bag).problems
    assert problems == [
        'topic /labels (std_msgs/msg/String): metadata.yaml lists 24 message(s), the reader '
        'delivers 0 from the listed files',
        'topic /labels (pref_rl_msgs/msg/PreferenceLabel): the reader delivers 24 message(s) '
        'from the listed files, metadata.yaml does not list it with that type']


def test_torn_last_file_is_named_then_recovered(tmp_path, capsys):
    bag = tmp_path / 'bag'
    halves = write_bag(bag, channel_qos=qos_yaml(10), metadata_qos=qos_yaml(10))
    data = (bag / 'bag_1.mcap').read_bytes()
    (bag / 'bag_1.mcap').write_bytes(data[:len(data) * 2 // 3])
    code, out = run(['bag', 'check', str(bag)], capsys)
    assert code == 1 and 'TRUNCATED       bag_1.mcap' in out, out
    code, out = reward_train(bag, tmp_path, capsys)
    assert code == 2 and 'bag_1.mcap: truncated' in out, out
    code, out = run(['bag', 'check', '--recover', str(bag)], capsys)
    assert code == 0 and 'verdict after recovery: OK' in out, out
    salvaged = read_metadata(bag).message_count
    assert len(halves[0]) < salvaged < 2 * len(halves[0])
    code, out = reward_train(bag, tmp_path, capsys)
    assert code == 0, out
    queries = sum(1 for m in halves[0] + halves[1] if m[0] == '/queries')
    assert f'queries: {len(list(read_queries(bag)))} read' in out
    assert len(list(read_queries(bag))) < queries


def test_recovery_without_metadata_keeps_the_files_ros_distro(tmp_path, capsys):
    bag = tmp_path / 'bag'
    write_bag(bag, channel_qos=qos_yaml(10), version=5)  # files say humble
    (bag / 'metadata.yaml').unlink()
    code, out = run(['bag', 'check', '--recover', str(bag)], capsys)
    assert code == 0, out
    metadata = read_metadata(bag)
    assert metadata.ros_distro == 'humble' and metadata.message_count == 2 * NUM_QUERIES
    code, out = run(['bag', 'info', str(bag)], capsys)
    assert 'ROS Distro:        humble' in out


def test_bare_mcap_file(tmp_path, capsys):
    file = tmp_path / 'session.mcap'
    write_mcap(file, session(), channel_qos=None, compression=CompressionType.ZSTD,
               distro='kilted')
    code, out = run(['bag', 'info', str(file)], capsys)
    assert code == 0, out
    assert 'Files:             session.mcap' in out and 'Messages:          48' in out
    assert 'ROS Distro:        kilted' in out
    assert 'Topic: /labels  | Type: pref_rl_msgs/msg/PreferenceLabel | Count: 24' in out
    code, out = run(['bag', 'check', str(file)], capsys)
    assert code == 0 and 'OK              session.mcap: 48 message(s)' in out, out
    code, out = reward_train(file, tmp_path, capsys)
    assert code == 0 and 'labels:  24 read, 24 stored' in out, out


def test_our_files_name_the_distro_metadata_yaml_names(tmp_path, monkeypatch):
    monkeypatch.setenv('ROS_DISTRO', 'jazzy')
    bag = tmp_path / 'bag'
    with BagWriter(bag, [TopicSpec('/labels', LABEL)]) as writer:
        writer.write('/labels', START_NS, serialize(stack_definitions().typestore, LabelValue(
            'q0', Choice.LEFT, 'teacher/oracle', 0.5))[1])
    (file,) = read_metadata(bag).files
    assert read_metadata(bag).ros_distro == 'jazzy' == scan_mcap(bag / file.path).ros_distro
    # The file still reads with the independent MCAP reader (CRCs validated) and rosbags'.
    with open(bag / file.path, 'rb') as stream:
        reader = make_reader(stream, validate_crcs=True, decoder_factories=[DecoderFactory()])
        (decoded,) = [m.decoded_message for m in reader.iter_decoded_messages()]
        record = next(r for r in reader.iter_metadata() if r.name == 'rosbag2')
    assert decoded.query_id == 'q0' and decoded.choice == Choice.LEFT
    assert yaml.safe_load(record.metadata['serialized_metadata'])['ros_distro'] == 'jazzy'
    with RosbagsReader(bag) as theirs:
        assert [c.topic for c in theirs.connections] == ['/labels']
        assert sum(1 for _ in theirs.messages()) == 1
