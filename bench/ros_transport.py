"""Benchmark: Segment messages across two processes over DDS, fast conversions vs naive lists.

Payloads: ``state`` (25 steps x 39 float32, MetaWorld-sized) and ``frames`` (the same plus 25
frames of 64x64x3 uint8). For each, and for each conversion path:

- ``fast``: pref_rl_learner.ros.conversions (numpy <-> array.array buffer copies);
- ``naive`` (the peer): what typical rclpy code does, per-element Python lists
  (``msg.observations = arr.ravel().tolist()``, ``np.array(msg.observations)``).

Figures: conversion cost in one process (us per message, to_ros + from_ros), throughput of a
burst publish received and converted in a second process (messages/s), and one-way latency at
a paced rate (publish stamp -> converted in the receiver; p50/p99 ms). Ratios are fast/naive.
QoS: reliable, KEEP_ALL history, so every published message is delivered and counted.
Run: scripts/bench (or python bench/ros_transport.py inside scripts/env.sh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, write_result

T, OBS, ACT = 25, 39, 4


def naive_to_ros(segment):
    """The peer: list-based conversion, as rclpy code commonly writes it."""
    from pref_rl_msgs.msg import Segment as SegmentMsg
    m = SegmentMsg()
    m.segment_id, m.task, m.length = segment.segment_id, segment.task, segment.length
    m.observation_shape = list(segment.observation_shape)
    m.action_shape = list(segment.action_shape)
    m.observations = segment.observations.ravel().tolist()
    m.actions = segment.actions.ravel().tolist()
    m.next_observations = segment.next_observations.ravel().tolist()
    m.rewards = segment.rewards.tolist()
    m.terminated = [int(x) for x in segment.terminated]
    m.truncated = [int(x) for x in segment.truncated]
    if segment.frames is not None:
        m.frame_shape = list(segment.frames.shape[1:])
        m.frame_stride = segment.frame_stride
        m.frames = segment.frames.ravel().tolist()
    return m


def naive_from_ros(m):
    """The peer's receive side: element-wise array construction."""
    from pref_rl_learner.types import Segment
    t = m.length
    frames = None
    if len(m.frames):
        frames = np.array(list(m.frames), dtype=np.uint8).reshape(-1, *m.frame_shape)
    return Segment(
        segment_id=m.segment_id, task=m.task,
        observations=np.array(list(m.observations), np.float32).reshape(t, -1),
        actions=np.array(list(m.actions), np.float32).reshape(t, -1),
        next_observations=np.array(list(m.next_observations), np.float32).reshape(t, -1),
        rewards=np.array(list(m.rewards), np.float32),
        terminated=np.array(list(m.terminated), bool),
        truncated=np.array(list(m.truncated), bool), frames=frames,
        frame_stride=m.frame_stride)


def converters(path: str):
    from pref_rl_learner.ros import conversions
    if path == 'fast':
        return conversions.segment_to_ros, conversions.segment_from_ros
    return naive_to_ros, naive_from_ros


def bench_qos():
    """The stack's STREAM profile with KEEP_ALL history: the burst measures lossless
    sustained throughput (the publisher blocks instead of overwriting unacknowledged data)."""
    from rclpy.qos import HistoryPolicy, QoSProfile

    from pref_rl_learner.ros.qos import STREAM
    return QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=STREAM.reliability,
                      durability=STREAM.durability)


def receiver(path: str, expected: int, idle_s: float) -> None:
    """Second process: receive, convert, record arrival times and latencies; print JSON."""
    import rclpy

    from pref_rl_msgs.msg import Segment as SegmentMsg
    _, from_ros = converters(path)
    rclpy.init()
    node = rclpy.create_node('bench_receiver')
    arrivals, latencies = [], []

    def on_msg(m):
        from_ros(m)
        now = time.time_ns()
        arrivals.append(now)
        latencies.append((now - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6)

    node.create_subscription(SegmentMsg, 'bench_segments', on_msg, bench_qos())
    print('ready', flush=True)
    last = time.monotonic()
    while len(arrivals) < expected and time.monotonic() - last < idle_s:
        before = len(arrivals)
        rclpy.spin_once(node, timeout_sec=0.1)
        if len(arrivals) != before:
            last = time.monotonic()
    print(json.dumps({'arrivals': arrivals, 'latencies_ms': latencies}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def cross_process(path: str, segment, count: int, rate_hz: float | None) -> dict:
    """Publish ``count`` messages (burst, or paced at ``rate_hz``) to a receiver process."""
    import rclpy

    from pref_rl_learner.ros.conversions import stamp_to_ros
    from pref_rl_msgs.msg import Segment as SegmentMsg
    to_ros, _ = converters(path)
    proc = subprocess.Popen([sys.executable, __file__, '--receiver', path, str(count)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'ready'
    node = rclpy.create_node('bench_sender')
    pub = node.create_publisher(SegmentMsg, 'bench_segments', bench_qos())
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let discovery settle both ways
    start = time.monotonic()
    for i in range(count):
        if rate_hz:
            wait = start + i / rate_hz - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        m = to_ros(segment)
        m.header.stamp = stamp_to_ros(time.time_ns())
        pub.publish(m)
    out = json.loads(proc.communicate(timeout=120)[0].strip().splitlines()[-1])
    node.destroy_node()
    arrivals = out['arrivals']
    span_s = (arrivals[-1] - arrivals[0]) / 1e9 if len(arrivals) > 1 else float('nan')
    return {'received': len(arrivals), 'sent': count,
            'msgs_per_s': (len(arrivals) - 1) / span_s if span_s > 0 else float('nan'),
            'p50_ms': percentile(out['latencies_ms'], 50),
            'p99_ms': percentile(out['latencies_ms'], 99)}


def in_process_us(path: str, segment, repeats: int) -> float:
    to_ros, from_ros = converters(path)
    from_ros(to_ros(segment))  # warm-up: imports, first-call caches
    start = time.perf_counter()
    for _ in range(repeats):
        from_ros(to_ros(segment))
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--receiver', nargs=2, metavar=('PATH', 'COUNT'), help=argparse.SUPPRESS)
    parser.add_argument('--quick', action='store_true', help='fewer messages (smoke run)')
    args = parser.parse_args()
    if args.receiver:
        receiver(args.receiver[0], int(args.receiver[1]), idle_s=3.0)
        return
    import rclpy
    rclpy.init()
    scale = 0.1 if args.quick else 1.0
    from pref_rl_learner.testing import make_segment
    plan = {name: (make_segment(length=T, obs_dim=OBS, act_dim=ACT, with_frames=frames,
                                success=None), burst, reps)
            for name, frames, burst, reps in (('state', False, 2000, 2000),
                                              ('frames', True, 300, 100))}
    figures = {}
    for payload, (segment, burst, convert_reps) in plan.items():
        for path in ('fast', 'naive'):
            n_burst = max(20, int(burst * scale))
            n_convert = max(5, int(convert_reps * scale))
            us = in_process_us(path, segment, n_convert)
            thr = cross_process(path, segment, n_burst, rate_hz=None)
            lat = cross_process(path, segment, max(20, int(200 * scale)), rate_hz=50.0)
            key = f'{payload}_{path}'
            figures[f'{key}_convert_us_per_msg'] = round(us, 1)
            figures[f'{key}_burst_msgs_per_s'] = round(thr['msgs_per_s'], 1)
            figures[f'{key}_burst_received_fraction'] = round(thr['received'] / thr['sent'], 3)
            figures[f'{key}_latency_p50_ms'] = round(lat['p50_ms'], 3)
            figures[f'{key}_latency_p99_ms'] = round(lat['p99_ms'], 3)
            print(f"{key:13s} convert {us:9.1f} us/msg   burst {thr['msgs_per_s']:8.1f} msg/s "
                  f"({thr['received']}/{thr['sent']})   paced 50 Hz latency p50 "
                  f"{lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms", flush=True)
        for metric in ('burst_msgs_per_s', 'convert_us_per_msg', 'latency_p99_ms'):
            fast, naive = figures[f'{payload}_fast_{metric}'], figures[f'{payload}_naive_{metric}']
            better = fast / naive if metric == 'burst_msgs_per_s' else naive / fast
            figures[f'{payload}_speedup_{metric}_fast_vs_naive'] = round(better, 2)
    rclpy.shutdown()
    figures['peer'] = 'naive per-element Python-list conversion (the common rclpy idiom)'
    path = write_result('ros_transport', figures, notes=__doc__)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
