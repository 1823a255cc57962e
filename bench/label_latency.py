"""Benchmark: label → updated reward model, in the running ROS 2 session, per arm.

The learner and the robot run as their own processes (installed executables); this process is
the labeller: it answers every query at once with the oracle (higher true return wins)
through ``submit_label``, one call at a time, and watches ``learner_status``. For every
feedback session, the latency is the time from the acknowledgement of the session's last
label (the learner trains once a session's queries are all answered) to the first
``learner_status`` with a higher ``reward_model_version``: reward training plus normaliser
fit, buffer relabel and the status round trip.

Arms (each a ``pref-rl train`` YAML run by the learner node):

- ``full_retraining`` (PEBBLE): the ensemble is trained on every stored label (Adam, up to
  ``reward_training.max_epochs`` epochs, stopping at 97% training accuracy);
- ``fewshot``: each session resets the ensemble to the MAML meta-initialisation and adapts
  with the learned per-parameter learning rates for a bounded number of steps (needs
  ``runs/pretrain_point_mass/best_model.pt``: ``pref-rl collect`` + ``pref-rl pretrain``;
  the arm is skipped, and says so, without it).

Figures per arm: p50 / p95 / max latency in ms over the sessions, the sessions measured and
the labels per session; ``fewshot_speedup_p50`` = full retraining p50 / few-shot p50.

Run: scripts/bench label_latency (or python bench/label_latency.py inside scripts/env.sh);
--quick for a smoke run (3 sessions).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rclpy
from common import percentile, write_result
from rclpy.executors import SingleThreadedExecutor

from pref_rl_learner.ros.conversions import label_to_ros, query_from_ros
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_learner.types import Choice, PreferenceLabel
from pref_rl_msgs.msg import LearnerStatus
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.srv import SubmitLabel

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / 'install'
LEARNER = INSTALL / 'pref_rl_learner' / 'lib' / 'pref_rl_learner' / 'learner'
ROBOT = INSTALL / 'pref_rl_robot' / 'lib' / 'pref_rl_robot' / 'robot'
ARMS = {
    'full_retraining': ROOT / 'config' / 'bench_latency_pebble.yaml',
    'fewshot': ROOT / 'config' / 'bench_latency_fewshot.yaml',
}
PRETRAINED = ROOT / 'runs' / 'pretrain_point_mass' / 'best_model.pt'


class Labeller:
    """Answers queries with the oracle and times session end → new reward model."""

    def __init__(self) -> None:
        self.node = rclpy.create_node('bench_labeller')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.client = self.node.create_client(SubmitLabel, 'submit_label')
        self.answers: dict[str, Choice] = {}
        self.acked: set[str] = set()
        self.in_flight: tuple[str, object] | None = None
        self.version = -1
        self.waiting_since: float | None = None  # last ack of a session, awaiting training
        self.latencies_s: list[float] = []
        self.session_sizes: list[int] = []
        self._session_labels = 0
        self.node.create_subscription(PreferenceQueryMsg, 'queries', self.on_query, STREAM)
        self.node.create_subscription(LearnerStatus, 'learner_status', self.on_status, LATCHED)

    def on_query(self, msg: PreferenceQueryMsg) -> None:
        query = query_from_ros(msg)
        if query.query_id not in self.answers:
            left, right = query.left.rewards.sum(), query.right.rewards.sum()
            self.answers[query.query_id] = Choice.LEFT if left >= right else Choice.RIGHT

    def on_status(self, msg: LearnerStatus) -> None:
        now = time.monotonic()
        if msg.reward_model_version > self.version >= 0 and self.waiting_since is not None:
            self.latencies_s.append(now - self.waiting_since)
            self.session_sizes.append(self._session_labels)
            self.waiting_since, self._session_labels = None, 0
        self.version = max(self.version, msg.reward_model_version)

    def tick(self) -> None:
        self.executor.spin_once(timeout_sec=0.002)
        if self.in_flight is not None:
            qid, future = self.in_flight
            if not future.done():
                return
            self.in_flight = None
            if future.result().success:
                self.acked.add(qid)
                self._session_labels += 1
                if not self._todo():
                    self.waiting_since = time.monotonic()
        todo = self._todo()
        if todo and self.client.service_is_ready():
            label = PreferenceLabel(todo[0], self.answers[todo[0]], 'bench')
            request = SubmitLabel.Request(label=label_to_ros(label))
            self.in_flight = (todo[0], self.client.call_async(request))

    def _todo(self) -> list[str]:
        return sorted(q for q in self.answers if q not in self.acked)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def measure(config: Path, sessions: int, timeout_s: float, work: Path) -> dict:
    """Run learner + robot on ``config`` until ``sessions`` latencies are measured."""
    run_dir = work / config.stem
    log = open(work / f'{config.stem}.log', 'w')  # noqa: SIM115 - closed below
    common = ['--ros-args', '-p', f'config:={config}', '-p', f'run_dir:={run_dir}',
              '-p', 'checkpoint_interval_s:=0.0', '-p', "frames_service:=''",
              '-p', 'republish_period_s:=5.0']
    procs = [subprocess.Popen([str(LEARNER), *common], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True),
             subprocess.Popen([str(ROBOT), '--ros-args', '-p', 'task:=point_mass',
                               '-p', 'frame_stride:=0', '-p', 'max_steps_ahead:=500',
                               '-p', 'min_subscribers:=1'],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)]
    labeller = Labeller()
    deadline = time.monotonic() + timeout_s
    try:
        while len(labeller.latencies_s) < sessions and time.monotonic() < deadline:
            labeller.tick()
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f'a node exited: see {log.name}')
    finally:
        labeller.close()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    ms = sorted(1000 * s for s in labeller.latencies_s)
    if not ms:
        return {'sessions': 0}
    return {'sessions': len(ms), 'p50_ms': round(percentile(ms, 50), 1),
            'p95_ms': round(percentile(ms, 95), 1), 'max_ms': round(ms[-1], 1),
            'labels_per_session': round(sum(labeller.session_sizes) / len(ms), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sessions', type=int, default=10)
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds per arm')
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args()
    if args.quick:
        args.sessions = 3
    work = Path(tempfile.mkdtemp(prefix='pref-rl-label-latency-'))
    rclpy.init()
    figures: dict = {'sessions_per_arm': args.sessions}
    try:
        for arm, config in ARMS.items():
            if arm == 'fewshot' and not PRETRAINED.exists():
                print(f'[label_latency] {arm}: skipped, {PRETRAINED} missing', flush=True)
                figures[f'{arm}_skipped'] = f'{PRETRAINED.relative_to(ROOT)} missing'
                continue
            result = measure(config, args.sessions, args.timeout, work)
            print(f'[label_latency] {arm}: {result}', flush=True)
            figures.update({f'{arm}_{key}': value for key, value in result.items()})
    finally:
        rclpy.shutdown()
    if figures.get('fewshot_p50_ms') and figures.get('full_retraining_p50_ms'):
        figures['fewshot_speedup_p50'] = round(figures['full_retraining_p50_ms']
                                               / figures['fewshot_p50_ms'], 2)
    print(write_result(
        'label_latency', figures,
        'Peer: full retraining (PEBBLE) against few-shot adaptation, same session, same '
        'labeller. Latency: ack of a session\'s last label -> learner_status with a newer '
        'reward_model_version, over DDS between processes.'))


if __name__ == '__main__':
    main()
