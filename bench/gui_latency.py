"""Benchmark: the labelling window's responsiveness while the learner trains.

The labeler as its node runs it (pref_rl_gui: the real LabelerNode spinning in its worker
thread, RosBridge, LabelingModel with a durable fsynced outbox, LabelerWindow, LabelerApp),
talking over DDS to a learner-like peer process that publishes queries with 64x64 frames
(one more for every label stored), a segment stream of 100 segments/s (the last-episode
pane), learner status at 10 Hz, and serves ``submit_label``.

Measured in the GUI process for each peer mode:

- **key latency**: key events posted to the window every 70 ms (about 14/s, faster than a
  person), cycling through left/right answers (each: an fsynced outbox record, the next
  query's clips built), pause/resume, undo and replay; latency = from posting the event to
  the end of its handling, and to the end of the next paint of the left clip;
- **playback**: clip steps shown per second at a target of 30 steps/s (two clips of
  frames scaled to the window), and the p99 interval between steps.

Modes (the same run), all with the same message traffic:

- ``train`` (the measurement): the peer trains a reward ensemble (3 x 256x256x256 MLPs,
  epochs over 512 pairs of 25-step segments) without pause, on one torch thread in a
  process of its own: the session's learner (``torch_threads: 1`` in
  config/sim_session.yaml) keeps one core busy the same way;
- ``saturated``: one such training process per core, so the GUI competes for every core
  (more than a session's learner asks for; reported, not the goal's condition);
- ``idle`` (the peer): no training.

Goal: key latency p99 <= 30 ms in ``train``.

Run: scripts/bench gui_latency (or python bench/gui_latency.py [--quick] inside
scripts/env.sh, with a ROS_DOMAIN_ID of its own). Under xvfb-run the window is a real X
window; otherwise Qt's offscreen platform paints the same widgets into memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, write_result

os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')
KEY_PERIOD_MS = 70
PLAYBACK_STEPS_PER_S = 30.0
GOAL_P99_MS = 30.0
T, FRAME = 10, (64, 64, 3)
QUEUE_DEPTH = 12
MODES = ('train', 'saturated', 'idle')


# ------------------------------------------------------------------------ the peer process

def _segment(rng: np.random.Generator, sid: str, episode: int, start: int, frames: bool):
    from pref_rl_learner.types import Segment

    obs = rng.uniform(-1, 1, (T, 6)).astype(np.float32)
    done = np.zeros(T, bool)
    done[-1] = start == 40
    pixels = rng.integers(0, 255, (2, *FRAME), dtype=np.uint8) if frames else None
    return Segment(segment_id=sid, task='point_mass', observations=obs,
                   actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                   next_observations=obs, terminated=np.zeros(T, bool), truncated=done,
                   frames=pixels, frame_stride=5 if frames else 0, source_id='robot',
                   episode=episode, start_step=start)


def _train_forever(stop, ready, counter) -> None:
    """Reward-ensemble training without pause (one process per core, one torch thread each,
    as the session's learner runs its worker), until ``stop`` is set."""
    import torch

    from pref_rl_learner.batches import PreferenceBatch
    from pref_rl_learner.reward import (
        RewardEnsemble,
        RewardModelConfig,
        RewardTrainer,
        RewardTrainingConfig,
    )

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, steps = 512, 25
    batch = PreferenceBatch(*(rng.normal(size=(n, steps, d)).astype(np.float32)
                              for d in (6, 2, 6, 2)),
                            right_preferred=rng.integers(0, 2, n).astype(np.float32))
    model = RewardEnsemble((6,), 2, RewardModelConfig(inputs='state_action', device='cpu'))
    trainer = RewardTrainer(model, RewardTrainingConfig(max_epochs=1, target_accuracy=None))
    ready.release()
    while not stop.is_set():
        trainer.train(batch)
        with counter.get_lock():
            counter.value += 1


def run_peer(mode: str) -> int:
    """The learner-like peer (``--peer train|idle``): runs until SIGINT/SIGTERM."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from pref_rl_learner.ros.conversions import query_to_ros, segment_to_ros, status_to_ros
    from pref_rl_learner.ros.qos import LATCHED, STREAM
    from pref_rl_learner.types import LearnerStatus, Phase, PreferenceQuery
    from pref_rl_msgs.msg import LearnerStatus as LearnerStatusMsg
    from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
    from pref_rl_msgs.msg import Segment as SegmentMsg
    from pref_rl_msgs.srv import SubmitLabel

    started = time.monotonic()
    context = multiprocessing.get_context('spawn')
    stop, ready, trained = context.Event(), context.Semaphore(0), context.Value('i', 0)
    workers = []
    trainers = {'idle': 0, 'train': 1, 'saturated': os.cpu_count() or 1}[mode]
    if trainers:  # training runs before the learner is seen, so all is measured loaded
        workers = [context.Process(target=_train_forever, args=(stop, ready, trained))
                   for _ in range(trainers)]
        for w in workers:
            w.start()
        for _ in workers:
            ready.acquire()
    rclpy.init()
    node = rclpy.create_node('learner')
    rng = np.random.default_rng(1)
    queries = node.create_publisher(PreferenceQueryMsg, 'queries', STREAM)
    status = node.create_publisher(LearnerStatusMsg, 'learner_status', LATCHED)
    segments = node.create_publisher(SegmentMsg, 'segments', STREAM)
    state = {'asked': 0, 'stored': 0, 'segment': 0}

    def ask() -> None:
        k = state['asked']
        state['asked'] += 1
        left, right = (_segment(rng, f'q{k}-{s}', 0, 0, True) for s in 'lr')
        queries.publish(query_to_ros(PreferenceQuery(f'q{k:05d}', left, right,
                                                     sampler='disagreement')))

    def on_submit(request, response):
        state['stored'] += 1
        response.success, response.message = True, 'stored'
        ask()
        return response

    def tick_segments() -> None:
        k = state['segment']
        state['segment'] += 1
        segments.publish(segment_to_ros(_segment(rng, f's{k}', k // 5, 10 * (k % 5), False)))

    def tick_status() -> None:
        status.publish(status_to_ros(LearnerStatus(
            phase=Phase.FEEDBACK, labels_stored=state['stored'], feedback_budget=100_000,
            reward_model_version=1 + trained.value, reward_model_accuracy=0.8)))

    node.create_service(SubmitLabel, 'submit_label', on_submit)
    node.create_timer(0.01, tick_segments)
    node.create_timer(0.1, tick_status)
    running = [True]
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while queries.get_subscription_count() == 0 and running[0] and os.getppid() != 1:
        executor.spin_once(timeout_sec=0.05)
    time.sleep(0.5)  # let the reliable reader match fully
    for _ in range(QUEUE_DEPTH):
        ask()
    parent = os.getppid()
    while running[0] and os.getppid() == parent:  # ends with the benchmark, even a crashed one
        executor.spin_once(timeout_sec=0.05)
    stop.set()
    for w in workers:
        w.join()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() + children.ru_utime + children.ru_stime
    cores = cpu / (time.monotonic() - started)
    print(f'peer {mode}: {state["stored"]} labels stored, {state["segment"]} segments, '
          f'{trained.value} training epochs, {cores:.2f} cores busy', flush=True)
    print(f'PEER_CPU_CORES {cores:.3f}', flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


# -------------------------------------------------------------------------- the GUI side

class KeyProbe:
    """Posts key events on a timer and times their handling and the next paint."""

    SEQUENCE = ('left', 'pause', 'pause', 'right', 'undo', 'right', 'replay', 'left')
    KEYS = {'left': 'Key_Left', 'right': 'Key_Right', 'pause': 'Key_P', 'undo': 'Key_U',
            'replay': 'Key_R'}

    def __init__(self, window) -> None:
        from PyQt5.QtCore import QEvent, QObject, Qt, QTimer

        self.window = window
        self.handled_ms: list[float] = []
        self.answer_ms: list[float] = []
        """Latencies of the answer keys alone (an fsynced outbox record each)."""
        self.paint_ms: list[float] = []
        self._posted: float | None = None
        self._await_paint: float | None = None
        self._k = 0
        self.measuring = False
        window.on_key = self._handled
        probe = self

        class PaintWatch(QObject):
            def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
                if event.type() == QEvent.Paint and probe._await_paint is not None:
                    # A queued paint event: its end is when the frame is drawn.
                    posted, probe._await_paint = probe._await_paint, None
                    QTimer.singleShot(0, lambda: probe._painted(posted))
                return False

        self._watch = PaintWatch()
        window.left_view.installEventFilter(self._watch)
        self._qt = Qt
        self.timer = QTimer()
        self.timer.timeout.connect(self.post)
        self.timer.start(KEY_PERIOD_MS)

    def post(self) -> None:
        from PyQt5.QtCore import QEvent
        from PyQt5.QtGui import QKeyEvent
        from PyQt5.QtWidgets import QApplication

        if self._posted is not None:
            return  # the previous one is still queued
        action = self.SEQUENCE[self._k % len(self.SEQUENCE)]
        self._k += 1
        key = getattr(self._qt, self.KEYS[action])
        self._posted = time.perf_counter()
        QApplication.postEvent(self.window,
                               QKeyEvent(QEvent.KeyPress, key, self._qt.NoModifier))

    def _handled(self, action: str) -> None:
        if self._posted is None:
            return
        posted, self._posted = self._posted, None
        if self.measuring:
            self.handled_ms.append(1000 * (time.perf_counter() - posted))
            if action in ('left', 'right'):
                self.answer_ms.append(self.handled_ms[-1])
            self.window.left_view.update()
            self._await_paint = posted

    def _painted(self, posted: float) -> None:
        if self.measuring:
            self.paint_ms.append(1000 * (time.perf_counter() - posted))


def measure(mode: str, seconds: float) -> dict:
    """Run the GUI against a ``mode`` peer for ``seconds``; figures of this phase."""
    import rclpy
    from PyQt5 import sip
    from PyQt5.QtCore import QTimer
    from rclpy.parameter import Parameter

    from pref_rl_gui.outbox import Outbox
    from pref_rl_gui.ros.labeler import assemble
    from pref_rl_gui.ros.node import LabelerNode

    peer = subprocess.Popen([sys.executable, __file__, '--peer', mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outdir = tempfile.mkdtemp(prefix='gui-latency-')
    rclpy.init()
    node = LabelerNode(parameter_overrides=[
        Parameter('labeler_id', value='bench'), Parameter('outbox_dir', value=outdir),
        Parameter('undo_window_s', value=0.3), Parameter('frames_service', value=''),
        Parameter('playback_steps_per_s', value=PLAYBACK_STEPS_PER_S),
        Parameter('loop_pause_s', value=0.0), Parameter('episode_refresh_s', value=1.0)])
    outbox = Outbox.open(outdir, background=True)
    app, bridge, model, window = assemble(node, outbox)
    bridge.start()
    window.show()
    segments = [0]
    bridge.segment_received.connect(lambda _s: segments.__setitem__(0, segments[0] + 1))
    deadline = time.monotonic() + 60
    while not (model.learner_available and model.queue_count >= QUEUE_DEPTH // 2):
        app.processEvents()
        time.sleep(0.005)
        if time.monotonic() > deadline:
            raise SystemExit(f'{mode}: the peer did not come up')
    probe = KeyProbe(window)
    intervals: list[float] = []
    last = [time.perf_counter()]

    def on_step(step: int, steps: int) -> None:
        now = time.perf_counter()
        if probe.measuring:
            intervals.append(1000 * (now - last[0]))
        last[0] = now

    window.player.step_changed.connect(on_step)
    acked_before = [0]
    segments_before = [0]

    cpu = [0.0, 0.0]

    def start() -> None:
        probe.measuring = True
        cpu[:] = [time.process_time(), time.perf_counter()]
        window.player.reset_rate()
        acked_before[0] = outbox.counts()['acknowledged']
        segments_before[0] = segments[0]
        last[0] = time.perf_counter()

    QTimer.singleShot(3000, start)  # warm-up: caches, the peer's training ramping up
    QTimer.singleShot(int(3000 + 1000 * seconds), app.quit)
    app.exec_()
    probe.timer.stop()
    gui_cores = (time.process_time() - cpu[0]) / (time.perf_counter() - cpu[1])
    rate = window.player.rate()
    acked = outbox.counts()['acknowledged'] - acked_before[0]
    bridge.stop()
    app.processEvents()  # signals the worker queued before it stopped
    window.close()
    sip.delete(window)  # its timers (playback, delivery) must not outlive this phase
    sip.delete(bridge)
    node.destroy_node()
    outbox.close()
    shutil.rmtree(outdir, ignore_errors=True)
    rclpy.shutdown()
    peer.send_signal(signal.SIGINT)
    peer_out = peer.communicate(timeout=120)[0].strip().splitlines()
    print('\n'.join(f'  {line}' for line in peer_out[-2:]))
    cores = next((float(line.split()[1]) for line in peer_out
                  if line.startswith('PEER_CPU_CORES')), float('nan'))
    return {'handled_ms': probe.handled_ms, 'answer_ms': probe.answer_ms,
            'paint_ms': probe.paint_ms, 'interval_ms': intervals, 'seconds': seconds,
            'steps_shown': rate * seconds, 'labels_acknowledged': acked,
            'segments': segments[0] - segments_before[0], 'gui_cpu_s': gui_cores * seconds,
            'peer_cpu_cores': cores, 'load_average_1min': os.getloadavg()[0]}


def summarize(phases: list[dict]) -> dict:
    """Figures of one mode from its phases (samples pooled across rounds)."""
    def pool(key: str) -> list[float]:
        return [x for p in phases for x in p[key]]

    def total(key: str) -> float:
        return sum(p[key] for p in phases)

    seconds = total('seconds')
    handled = pool('handled_ms')
    return {
        'key_events': len(handled),
        'key_latency_p50_ms': round(percentile(handled, 50), 2),
        'key_latency_p99_ms': round(percentile(handled, 99), 2),
        'key_latency_max_ms': round(max(handled, default=float('nan')), 2),
        'answer_key_latency_p99_ms': round(percentile(pool('answer_ms'), 99), 2),
        'key_to_paint_p50_ms': round(percentile(pool('paint_ms'), 50), 2),
        'key_to_paint_p99_ms': round(percentile(pool('paint_ms'), 99), 2),
        'playback_steps_per_s': round(total('steps_shown') / seconds, 2),
        'playback_interval_p99_ms': round(percentile(pool('interval_ms'), 99), 2),
        'labels_acknowledged': int(total('labels_acknowledged')),
        'segments_received_per_s': round(total('segments') / seconds, 1),
        'gui_cpu_cores': round(total('gui_cpu_s') / seconds, 3),
        'peer_cpu_cores': round(total('peer_cpu_cores') / len(phases), 2),
        'load_average_1min': round(total('load_average_1min') / len(phases), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='one round of 8 s per mode instead of three of 12 s')
    parser.add_argument('--peer', choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return run_peer(args.peer)
    rounds, seconds = (1, 8.0) if args.quick else (3, 12.0)
    figures: dict = {'rounds': rounds, 'seconds_per_phase': seconds,
                     'key_period_ms': KEY_PERIOD_MS,
                     'playback_target_steps_per_s': PLAYBACK_STEPS_PER_S,
                     'goal_key_latency_p99_ms': GOAL_P99_MS, 'cpu_cores': os.cpu_count()}
    from PyQt5.QtWidgets import QApplication

    phases: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for r in range(rounds):  # modes interleaved: other load on the machine hits them alike
        for mode in MODES:
            print(f'[gui_latency] round {r + 1}/{rounds}, {mode}: {seconds:g} s')
            phases[mode].append(measure(mode, seconds))
    for mode in MODES:
        for key, value in summarize(phases[mode]).items():
            figures[f'{mode}_{key}'] = value
    figures['qt_platform'] = QApplication.instance().platformName()
    figures['ratio_key_latency_p99_train_vs_idle'] = round(
        figures['train_key_latency_p99_ms'] / figures['idle_key_latency_p99_ms'], 2)
    figures['ratio_playback_train_vs_idle'] = round(
        figures['train_playback_steps_per_s'] / figures['idle_playback_steps_per_s'], 3)
    figures['ratio_key_latency_p99_saturated_vs_idle'] = round(
        figures['saturated_key_latency_p99_ms'] / figures['idle_key_latency_p99_ms'], 2)
    figures['meets_goal'] = figures['train_key_latency_p99_ms'] <= GOAL_P99_MS
    figures['peer'] = ('idle: the same GUI and message traffic with the learner-like process '
                       'not training')
    path = write_result('gui_latency', figures, __doc__)
    for key, value in figures.items():
        print(f'  {key}: {value}')
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
