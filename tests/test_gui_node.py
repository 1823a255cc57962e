"""The ``labeler`` node with real rclpy/DDS and the real window (offscreen): a query arrives,
a key press gives an acknowledged label; the learner's service or process goes away and
comes back, and every label is stored exactly once; malformed queries and bad frames are
reported while the app keeps working."""

from __future__ import annotations

import array
import collections
import os
import signal
import subprocess
import threading
from pathlib import Path

os.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')

import numpy as np
import pytest
import rclpy
import yaml
from PyQt5.QtCore import Qt
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from pref_rl_gui.model import LabelingModel
from pref_rl_gui.outbox import EntryState, Outbox
from pref_rl_gui.ros.bridge import RosBridge
from pref_rl_gui.ros.node import LabelerNode
from pref_rl_gui.widgets.app import LabelerApp
from pref_rl_gui.widgets.window import LabelerWindow
from pref_rl_learner.preferences import PreferenceStore
from pref_rl_learner.ros.conversions import (
    label_from_ros,
    query_to_ros,
    segment_to_ros,
    status_to_ros,
)
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_learner.types import (
    Choice,
    LearnerStatus,
    Phase,
    PreferenceQuery,
    Segment,
)
from pref_rl_msgs.msg import LearnerStatus as LearnerStatusMsg
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import GetSegmentFrames, SubmitLabel

ROOT = Path(__file__).resolve().parent.parent
LEARNER = ROOT / 'install' / 'pref_rl_learner' / 'lib' / 'pref_rl_learner' / 'learner'
H = 10


def segment(segment_id: str) -> Segment:
    rng = np.random.default_rng(sum(segment_id.encode()))
    obs = rng.uniform(-1, 1, (H, 4)).astype(np.float32)
    return Segment(segment_id=segment_id, task='point_mass', observations=obs,
                   actions=rng.uniform(-1, 1, (H, 2)).astype(np.float32),
                   next_observations=obs, terminated=np.zeros(H, bool),
                   truncated=np.zeros(H, bool), source_id='robot')


def query(query_id: str) -> PreferenceQuery:
    return PreferenceQuery(query_id, segment(f'{query_id}-l'), segment(f'{query_id}-r'))


class Peer:
    """The learner's and robot's side in this process, spun by its own thread: publishes
    queries and status, serves submit_label (storing each label once) and frames."""

    def __init__(self) -> None:
        self.node = rclpy.create_node('fake_learner')
        self.stored: dict[str, object] = {}
        self.stores = collections.Counter()
        self.calls: list[str] = []
        self.frame_requests: list[str] = []
        self.queries = self.node.create_publisher(PreferenceQueryMsg, 'queries', STREAM)
        self.status = self.node.create_publisher(LearnerStatusMsg, 'learner_status', LATCHED)
        self.node.create_service(GetSegmentFrames, 'robot/get_segment_frames', self.on_frames)
        self.service = None
        self.online()
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=0.02)

    def online(self) -> None:
        self.service = self.node.create_service(SubmitLabel, 'submit_label', self.on_submit)

    def offline(self) -> None:
        self.node.destroy_service(self.service)
        self.service = None

    def on_submit(self, request, response):
        label = label_from_ros(request.label)
        self.calls.append(label.query_id)
        if label.query_id in self.stored:
            response.success, response.message = True, 'already stored'
        else:
            self.stored[label.query_id] = label
            self.stores[label.query_id] += 1
            response.success, response.message = True, 'stored'
        return response

    def on_frames(self, request, response):
        self.frame_requests.append(request.segment_id)
        if request.segment_id == 'q1-r':  # a frame count that does not fit the segment
            response.success, response.frame_stride = True, 5
            response.frame_shape = array.array('I', (4, 4, 3))
            response.frames = array.array('B', bytes(5 * 48))
        else:
            response.success, response.frame_stride = True, 5
            response.frame_shape = array.array('I', (4, 4, 3))
            response.frames = array.array('B', bytes(2 * 48))
        return response

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.executor.remove_node(self.node)
        self.node.destroy_node()


class Gui:
    """The labeler as its main() builds it, in this process."""

    def __init__(self, qtbot, tmp_path: Path, **params: object) -> None:
        params = {'labeler_id': 'alice', 'outbox_dir': str(tmp_path / 'outbox'),
                  'undo_window_s': 0.3, 'retry_initial_s': 0.1, 'retry_max_s': 0.5,
                  'call_timeout_s': 1.0, **params}
        self.node = LabelerNode(parameter_overrides=[Parameter(k, value=v)
                                                     for k, v in params.items()])
        self.outbox = Outbox.open(self.node.config.resolved_outbox_dir, background=True)
        self.bridge = RosBridge(self.node)
        self.model = LabelingModel(self.node.config, self.outbox, sink=self.bridge)
        self.window = LabelerWindow(self.model)
        qtbot.addWidget(self.window)
        LabelerApp(self.model, self.window, self.bridge.request_frames)
        self.bridge.attach(self.model)
        self.bridge.start()
        self.window.show()

    def acknowledged(self) -> dict[str, Choice]:
        return {e.query_id: e.label.choice for e in self.outbox
                if e.state is EntryState.ACKNOWLEDGED}

    def close(self) -> None:
        self.bridge.stop()
        self.node.destroy_node()
        self.outbox.close()


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def test_query_key_ack_outage_recovery_and_bad_inputs(qtbot, tmp_path, ros):
    peer = Peer()
    gui = Gui(qtbot, tmp_path)
    model, window = gui.model, gui.window
    try:
        qtbot.waitUntil(lambda: model.learner_available is True
                        and peer.queries.get_subscription_count() == 1, timeout=10000)
        assert not window.banner.isVisibleTo(window)
        broken = query_to_ros(query('broken'))
        broken.left.observations = broken.left.observations[:-3]
        nan = query_to_ros(query('nan'))
        nan.right.actions[0] = float('nan')
        for msg in (query_to_ros(query('q0')), broken, nan, query_to_ros(query('q1')),
                    query_to_ros(query('q0'))):  # the last: republished, shown once
            peer.queries.publish(msg)
        peer.status.publish(status_to_ros(LearnerStatus(
            phase=Phase.FEEDBACK, labels_stored=0, feedback_budget=8)))
        qtbot.waitUntil(lambda: model.queries_received == 5, timeout=10000)
        assert model.current.query_id == 'q0' and model.queue_count == 1
        assert model.queries_rejected == 2 and gui.node.queries_rejected == 2
        errors = [m.text for m in model.messages if m.level == 'error']
        assert any("'broken'" in t and 'MalformedMessageError' in t for t in errors)
        assert any("'nan'" in t and 'non-finite' in t for t in errors)
        # The shown query came without frames: they are fetched from the robot's service.
        # Each side's frames come on their own reply, and the window shows frames only
        # once both sides have them (both clips drawn alike): wait for both.
        qtbot.waitUntil(lambda: all(model.displayed(s).frames is not None
                                    for s in (model.current.left, model.current.right)),
                        timeout=10000)
        assert {'q0-l', 'q0-r'} <= set(peer.frame_requests)
        assert window.left_view.clip.has_frames and window.right_view.clip.has_frames
        qtbot.waitUntil(lambda: window.budget_bar.maximum() == 8, timeout=10000)

        qtbot.keyClick(window, Qt.Key_Left)  # a person's answer
        qtbot.waitUntil(lambda: gui.acknowledged() == {'q0': Choice.LEFT}, timeout=10000)
        assert peer.stored['q0'].labeler_id == 'alice'
        assert peer.stored['q0'].response_time_s > 0
        # q1's right frames do not fit its segment: refused and reported, drawn instead.
        # (They were asked for while q1 waited in the queue; wait for both replies.)
        qtbot.waitUntil(lambda: any("frames of segment 'q1-r' unusable" in m.text
                                    for m in model.messages)
                        and model.displayed(model.current.left).frames is not None,
                        timeout=10000)
        assert not window.left_view.clip.has_frames  # both sides drawn alike, from states
        assert not window.right_view.clip.has_frames

        # The learner's service goes away: a banner, and labelling goes on.
        peer.offline()
        qtbot.waitUntil(lambda: window.banner.isVisibleTo(window), timeout=10000)
        assert 'not reachable' in window.banner.text()
        qtbot.keyClick(window, Qt.Key_Right)
        for k in (2, 3):
            peer.queries.publish(query_to_ros(query(f'q{k}')))
        # Both new queries must have arrived: Key_I answers q3, which must be queued by then.
        qtbot.waitUntil(lambda: getattr(model.current, 'query_id', None) == 'q2'
                        and model.queue_count == 1, timeout=10000)
        qtbot.keyClick(window, Qt.Key_Down)
        qtbot.keyClick(window, Qt.Key_I)
        qtbot.wait(1500)  # retries back off meanwhile
        assert model.unsent_count() == 3 and set(peer.stored) == {'q0'}
        assert '3 labels saved locally' in window.banner.text()

        peer.online()  # back: every waiting label is delivered, in order
        qtbot.waitUntil(lambda: len(gui.acknowledged()) == 4, timeout=15000)
        # The retries can deliver before the availability poll sees the service again; the
        # banner goes once it does.
        qtbot.waitUntil(lambda: not window.banner.isVisibleTo(window), timeout=10000)
        assert gui.acknowledged() == {'q0': Choice.LEFT, 'q1': Choice.RIGHT,
                                      'q2': Choice.EQUAL, 'q3': Choice.INCOMPARABLE}
        assert {q: lb.choice for q, lb in peer.stored.items()} == gui.acknowledged()
        assert set(peer.stores.values()) == {1}
        qtbot.wait(600)
        assert peer.calls.count('q0') == 1  # acknowledged labels are never sent again
    finally:
        gui.close()
        peer.close()


CONFIG = {
    'task': 'point_mass', 'seed': 0, 'total_steps': 100_000, 'seed_steps': 100,
    'unsupervised_steps': 100, 'reset_updates': 10, 'replay_capacity': 5000,
    'eval_interval_steps': 100_000, 'eval_episodes': 1, 'tensorboard': False,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 32, 'device': 'cpu'},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [32, 32]},
    'reward_training': {'max_epochs': 5},
    'schedule': {'queries_per_session': 4, 'session_interval_steps': 200, 'total_budget': 8},
}


def start_learner(config: Path, run_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(LEARNER), '--ros-args', '-p', f'config:={config}', '-p', f'run_dir:={run_dir}',
         '-p', "frames_service:=''", '-p', 'republish_period_s:=1.0',
         '-p', 'checkpoint_interval_s:=0.0'],
        stdout=open(log, 'a'), stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_learner_process_killed_and_restarted_loses_no_label(qtbot, tmp_path, ros):
    """The real learner process: SIGKILLed with a label unsent, two answered while it is
    gone, restarted on its run directory: each of the four labels is stored exactly once."""
    from pref_rl_robot.actor import Actor, ActorConfig

    config = tmp_path / 'pebble.yaml'
    config.write_text(yaml.safe_dump(CONFIG))
    run_dir, log = tmp_path / 'run', tmp_path / 'learner.log'
    learner = start_learner(config, run_dir, log)
    robot = rclpy.create_node('robot_probe')
    segments = robot.create_publisher(SegmentMsg, 'segments', STREAM)
    gui = Gui(qtbot, tmp_path, frames_service='')
    model, window = gui.model, gui.window
    try:
        qtbot.waitUntil(lambda: model.learner_available is True
                        and segments.get_subscription_count() == 2, timeout=60000)
        for s in Actor.from_config(ActorConfig(task='point_mass', seed=0),
                                   source_id='sim').run(max_steps=300):
            segments.publish(segment_to_ros(s))
        qtbot.waitUntil(lambda: model.current is not None and model.queue_count == 3,
                        timeout=60000)
        asked = [model.current.query_id] + [q.query_id for q in model.queued()]
        qtbot.keyClick(window, Qt.Key_Left)
        qtbot.waitUntil(lambda: len(gui.acknowledged()) == 1, timeout=20000)
        qtbot.keyClick(window, Qt.Key_Right)  # still in its undo window when ...
        learner.send_signal(signal.SIGKILL)  # ... the learner dies
        learner.wait()
        qtbot.keyClick(window, Qt.Key_Down)
        qtbot.keyClick(window, Qt.Key_Left)
        qtbot.wait(2000)  # calls time out and back off
        assert len(gui.acknowledged()) == 1 and model.unsent_count() == 3
        learner = start_learner(config, run_dir, log)
        qtbot.waitUntil(lambda: len(gui.acknowledged()) == 4, timeout=60000)
        assert model.current is None  # the republished queries are not asked again
    finally:
        gui.close()
        robot.destroy_node()
        if learner.poll() is None:
            learner.send_signal(signal.SIGTERM)
            try:
                learner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                learner.kill()
    expected = dict(zip(asked, (Choice.LEFT, Choice.RIGHT, Choice.EQUAL, Choice.LEFT),
                        strict=True))
    assert gui.acknowledged() == expected
    # Opening the store replays its log, which refuses a query labelled twice.
    with PreferenceStore.open(run_dir / 'preferences') as store:
        assert store.counts()['labelled'] == 4
        for query_id, choice in expected.items():
            stored = store.label(query_id)
            assert (stored.choice, stored.labeler_id) == (choice, 'alice')


def test_the_labeler_executable_refuses_bad_parameters_and_a_used_outbox(tmp_path):
    labeler = ROOT / 'install' / 'pref_rl_gui' / 'lib' / 'pref_rl_gui' / 'labeler'
    env = {**os.environ, 'QT_QPA_PLATFORM': 'offscreen'}
    bad = subprocess.run([str(labeler), '--ros-args', '-p', 'undo_window_s:=-1.0',
                          '-p', f'outbox_dir:={tmp_path}'],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2, bad.stderr
    assert 'undo_window_s' in bad.stderr and 'Traceback' not in bad.stderr
    held = Outbox.open(tmp_path)  # another labeller has this outbox open
    try:
        used = subprocess.run([str(labeler), '--ros-args', '-p', f'outbox_dir:={tmp_path}'],
                              capture_output=True, text=True, timeout=60, env=env)
    finally:
        held.close()
    assert used.returncode == 2, used.stderr
    assert 'another labeller' in used.stderr and 'Traceback' not in used.stderr
