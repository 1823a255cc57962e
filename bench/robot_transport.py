"""Benchmark: segments from the ``robot`` node to a subscriber in another process vs in-process.

The robot node runs as its own process (the installed executable: point mass, a SAC actor of
2x256 units acting, flow control off, ``max_segments`` N) and publishes ``Segment`` messages;
this process subscribes, converts each message back (``segment_from_ros``) and records when it
arrived. Payloads: ``state`` (10-step segments, 6-float observations) and ``frames`` (the same
with a 64x64 RGB frame attached for every step, ``frame_stride`` 1, ``attach_frames`` true:
123 KiB per segment).

Figures per payload:

- ``ros_segments_per_s``: burst throughput, the robot stepping as fast as it can (first to
  last arrival); ``ros_received_fraction``: what arrived of N (the stream keeps the last 256
  messages, so a reader that falls that far behind loses segments: flow control is off here);
- ``ros_burst_latency_p50/p99_ms``: segment closed (its header stamp) -> received and
  converted, during the burst (includes queueing behind earlier segments);
- ``ros_paced_latency_p50/p99_ms``: the same at a control rate (``rate_hz`` 1000 steps/s,
  100 segments/s), i.e. the transport's own delay;
- the peer, ``in_process_*``: the same Actor core (same config, same weights) producing the
  same segments, handed to a consumer by a function call in one process;
- ``ros_vs_in_process_throughput_ratio`` and ``ros_added_latency_p50_ms`` (burst p50 minus
  in-process p50).

Run: scripts/bench robot_transport (or python bench/robot_transport.py inside scripts/env.sh);
--quick for a smoke run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, write_result

ROOT = Path(__file__).resolve().parent.parent
ROBOT = ROOT / 'install' / 'pref_rl_robot' / 'lib' / 'pref_rl_robot' / 'robot'
HIDDEN = (256, 256)
PAYLOADS = {
    'state': {'frame_stride': 0},
    'frames': {'frame_stride': 1, 'frame_size': 64, 'attach_frames': True},
}


def policy_weights():
    """Weights of a fresh SAC actor for the point mass (what the learner would publish)."""
    from pref_rl_learner.sac import SAC, SACConfig
    from pref_rl_learner.types import PolicyWeights
    agent = SAC(6, 2, SACConfig(hidden_sizes=HIDDEN, device='cpu'), seed=0)
    architecture, tensors = agent.actor_state()
    return PolicyWeights(version=1, tensors=tensors, architecture=architecture)


def summarize(arrivals_ns: list[int], latencies_ms: list[float], expected: int) -> dict:
    span_s = (arrivals_ns[-1] - arrivals_ns[0]) / 1e9 if len(arrivals_ns) > 1 else 0.0
    return {'segments_per_s': (len(arrivals_ns) - 1) / span_s if span_s > 0 else float('nan'),
            'received_fraction': len(arrivals_ns) / expected,
            'p50_ms': percentile(latencies_ms, 50), 'p99_ms': percentile(latencies_ms, 99)}


def over_ros(params: dict, count: int, rate_hz: float = 0.0) -> dict:
    """Start the robot executable, receive ``count`` segments in this process."""
    import rclpy

    from pref_rl_learner.ros.conversions import segment_from_ros, weights_to_ros
    from pref_rl_learner.ros.qos import LATCHED, STREAM
    from pref_rl_msgs.msg import PolicyWeights, RobotStatus, Segment

    node = rclpy.create_node('bench_learner')
    weights_pub = node.create_publisher(PolicyWeights, 'policy_weights', LATCHED)
    weights_pub.publish(weights_to_ros(policy_weights()))
    versions = []
    node.create_subscription(RobotStatus, 'robot_status',
                             lambda m: versions.append(m.policy_version), LATCHED)
    args = {**params, 'max_segments': count, 'rate_hz': rate_hz, 'max_steps_ahead': 0,
            'min_subscribers': 1}
    command = [str(ROBOT), '--ros-args']
    for key, value in args.items():
        command += ['-p', f'{key}:={str(value).lower() if isinstance(value, bool) else value}']
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    arrivals, latencies = [], []
    try:
        # The robot waits for a subscriber before stepping: subscribe once it acts with the
        # weights, so every measured segment comes from the same policy.
        deadline = time.monotonic() + 60
        while not (versions and versions[-1] == 1) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        assert versions and versions[-1] == 1, 'robot never applied the weights'

        def on_segment(m):
            segment = segment_from_ros(m)
            now = time.time_ns()
            arrivals.append(now)
            latencies.append((now - segment.stamp_ns) / 1e6)

        node.create_subscription(Segment, 'segments', on_segment, STREAM)
        last = time.monotonic()
        while len(arrivals) < count and time.monotonic() - last < 5.0:
            before = len(arrivals)
            rclpy.spin_once(node, timeout_sec=0.05)
            if len(arrivals) != before:
                last = time.monotonic()
        output = proc.communicate(timeout=60)[0]
        if proc.returncode != 0:
            raise RuntimeError(f'robot exited with {proc.returncode}:\n{output}')
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        node.destroy_node()
    return summarize(arrivals, latencies, count)


def in_process(params: dict, count: int) -> dict:
    """The peer: the same Actor core, segments handed over by a function call."""
    from pref_rl_robot.actor import Actor, ActorConfig

    actor = Actor.from_config(ActorConfig(**params), source_id='/robot')
    actor.apply_weights(policy_weights())
    arrivals, latencies = [], []

    def consume(segment):
        now = time.time_ns()
        arrivals.append(now)
        latencies.append((now - segment.stamp_ns) / 1e6)

    while len(arrivals) < count:
        for segment in actor.run(max_segments=1):
            consume(segment)
    return summarize(arrivals, latencies, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer segments (smoke run)')
    args = parser.parse_args()
    import rclpy
    import torch
    torch.set_num_threads(1)  # as in the robot node
    rclpy.init()
    counts = {'state': 3000, 'frames': 1000}
    paced = 150
    if args.quick:
        counts, paced = {'state': 300, 'frames': 100}, 30
    figures = {}
    for payload, params in PAYLOADS.items():
        params = {'task': 'point_mass', 'seed': 0, **params}
        n = counts[payload]
        peer = in_process(params, n)
        ros = over_ros(params, n)
        slow = over_ros(params, paced, rate_hz=1000.0)
        p = payload
        figures[f'{p}_segments'] = n
        figures[f'{p}_ros_segments_per_s'] = round(ros['segments_per_s'], 1)
        figures[f'{p}_ros_received_fraction'] = round(ros['received_fraction'], 4)
        figures[f'{p}_ros_burst_latency_p50_ms'] = round(ros['p50_ms'], 3)
        figures[f'{p}_ros_burst_latency_p99_ms'] = round(ros['p99_ms'], 3)
        figures[f'{p}_ros_paced_latency_p50_ms'] = round(slow['p50_ms'], 3)
        figures[f'{p}_ros_paced_latency_p99_ms'] = round(slow['p99_ms'], 3)
        figures[f'{p}_in_process_segments_per_s'] = round(peer['segments_per_s'], 1)
        figures[f'{p}_in_process_latency_p50_ms'] = round(peer['p50_ms'], 4)
        figures[f'{p}_in_process_latency_p99_ms'] = round(peer['p99_ms'], 4)
        figures[f'{p}_ros_vs_in_process_throughput_ratio'] = round(
            ros['segments_per_s'] / peer['segments_per_s'], 3)
        figures[f'{p}_ros_added_latency_p50_ms'] = round(ros['p50_ms'] - peer['p50_ms'], 3)
        print(f"{p:6s} ROS {ros['segments_per_s']:7.1f} seg/s "
              f"(received {ros['received_fraction']:.3f}), burst latency p50 "
              f"{ros['p50_ms']:.2f} ms p99 {ros['p99_ms']:.2f} ms, paced p50 "
              f"{slow['p50_ms']:.2f} ms p99 {slow['p99_ms']:.2f} ms | in-process "
              f"{peer['segments_per_s']:7.1f} seg/s, p50 {peer['p50_ms']:.3f} ms", flush=True)
    rclpy.shutdown()
    figures['peer'] = ('the same Actor core producing the same segments in one process, '
                       'handed to the consumer by a function call')
    path = write_result('robot_transport', figures, notes=__doc__)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
