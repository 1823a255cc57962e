"""Labels survive learner crashes: SIGKILL the learner while labelling, restart, check the store.

The learner and the robot run as separate processes; this test process is the labeller: an
rclpy node that answers every query it receives (from the segments' true rewards) through
``submit_label`` and records which answers were acknowledged, exactly as a person's GUI
would see them. The learner is SIGKILLed three times (right after an acknowledgement, with a
``submit_label`` call in flight, mid-session with queries outstanding) and restarted on the
same run directory each time. Afterwards every acknowledged label is in the store exactly
once with the answer given, nothing is stored twice, and training went on after the last
restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from pref_rl_learner.learner import query_id  # noqa: E402
from pref_rl_learner.preferences import PreferenceStore  # noqa: E402
from pref_rl_learner.ros.conversions import (  # noqa: E402
    label_to_ros,
    query_from_ros,
    status_from_ros,
)
from pref_rl_learner.ros.qos import LATCHED, STREAM  # noqa: E402
from pref_rl_learner.types import Choice, PreferenceLabel  # noqa: E402
from pref_rl_msgs.msg import LearnerStatus, RobotStatus  # noqa: E402
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg  # noqa: E402
from pref_rl_msgs.srv import SubmitLabel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / 'install'
LEARNER = INSTALL / 'pref_rl_learner' / 'lib' / 'pref_rl_learner' / 'learner'
ROBOT = INSTALL / 'pref_rl_robot' / 'lib' / 'pref_rl_robot' / 'robot'

TRAIN_CONFIG = {
    'task': 'point_mass', 'algorithm': 'pebble', 'seed': 0, 'total_steps': 1_000_000,
    'seed_steps': 200, 'unsupervised_steps': 200, 'reset_updates': 10,
    'replay_capacity': 20000, 'eval_interval_steps': 100_000, 'eval_episodes': 1,
    'tensorboard': False,
    'sac': {'hidden_sizes': [32, 32], 'batch_size': 64, 'device': 'cpu'},
    'reward_model': {'inputs': 'state', 'hidden_sizes': [32, 32]},
    'reward_training': {'max_epochs': 10},
    'schedule': {'queries_per_session': 8, 'session_interval_steps': 200,
                 'total_budget': 1000},
}
CALL_TIMEOUT_S = 2.0
"""A call without an answer after this long is given up and sent again (learner gone)."""


class Labeller:
    """The test's labeller node: answers queries, one ``submit_label`` call at a time."""

    def __init__(self) -> None:
        self.node = rclpy.create_node('labeler')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.answers: dict[str, Choice] = {}
        """Every answer decided, by query id (a retry sends the same one)."""
        self.acknowledged: dict[str, Choice] = {}
        """Answers the learner acknowledged (``success``), by query id."""
        self.refusals: list[str] = []
        self.status = None
        self.robot_status = None
        self.in_flight: tuple[str, object, float] | None = None
        self.client = self.node.create_client(SubmitLabel, 'submit_label')
        self.node.create_subscription(PreferenceQueryMsg, 'queries', self.on_query, STREAM)
        self.node.create_subscription(LearnerStatus, 'learner_status', self.on_status, LATCHED)
        self.node.create_subscription(RobotStatus, 'robot_status', self.on_robot_status,
                                      LATCHED)

    def on_query(self, msg: PreferenceQueryMsg) -> None:
        query = query_from_ros(msg)
        if query.query_id not in self.answers:  # the oracle: the higher true return wins
            left, right = query.left.rewards.sum(), query.right.rewards.sum()
            self.answers[query.query_id] = Choice.LEFT if left >= right else Choice.RIGHT

    def on_status(self, msg: LearnerStatus) -> None:
        self.status = status_from_ros(msg)

    def on_robot_status(self, msg: RobotStatus) -> None:
        self.robot_status = msg

    def progress(self) -> str:
        """Both sides' counters, for failure messages."""
        robot = self.robot_status
        return (f'learner {self.status}; robot mode {getattr(robot, "mode", None)} '
                f'env_steps {getattr(robot, "env_steps", None)}; '
                f'{len(self.acknowledged)} acknowledged, {len(self.unacknowledged())} not')

    def unacknowledged(self) -> list[str]:
        return sorted(q for q in self.answers if q not in self.acknowledged)

    def send_next(self) -> bool:
        """Submit the oldest unacknowledged answer; False if none or a call is in flight."""
        todo = self.unacknowledged()
        if self.in_flight is not None or not todo or not self.client.service_is_ready():
            return False
        label = PreferenceLabel(todo[0], self.answers[todo[0]], 'crash-test')
        future = self.client.call_async(SubmitLabel.Request(label=label_to_ros(label)))
        self.in_flight = (todo[0], future, time.monotonic())
        return True

    def collect(self) -> str | None:
        """Finish the call in flight if answered (or give it up); returns an acked id."""
        if self.in_flight is None:
            return None
        qid, future, started = self.in_flight
        if future.done():
            self.in_flight = None
            response = future.result()
            if response.success:
                self.acknowledged[qid] = self.answers[qid]
                return qid
            self.refusals.append(f'{qid}: {response.message}')
        elif time.monotonic() - started > CALL_TIMEOUT_S:
            self.in_flight = None  # the learner went away: send it again later
        return None

    def spin(self, until, timeout: float = 30.0, answer: bool = True) -> bool:
        """Spin (answering queries when ``answer``) until ``until()`` or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            self.executor.spin_once(timeout_sec=0.01)
            self.collect()
            if answer:
                self.send_next()
        return until()

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def start(command: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, 'a')  # noqa: SIM115 - the child keeps writing; closed with the file
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                            env=os.environ)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stored_labels(run_dir: Path) -> dict[str, Choice]:
    """Every label of the store by query id; opening replays the log, which refuses a query
    labelled twice (StoreError), so a duplicate fails here."""
    labels: dict[str, Choice] = {}
    with PreferenceStore.open(run_dir / 'preferences') as store:
        session = 0
        while store.has_query(query_id(session, 0)):
            index = 0
            while store.has_query(query_id(session, index)):
                label = store.label(query_id(session, index))
                if label is not None:
                    assert label.query_id not in labels
                    labels[label.query_id] = label.choice
                index += 1
            session += 1
        assert store.counts()['labelled'] == len(labels)
    return labels


@pytest.mark.slow
def test_acknowledged_labels_survive_learner_sigkills(tmp_path):
    config = tmp_path / 'train.yaml'
    config.write_text(yaml.safe_dump(TRAIN_CONFIG))
    run_dir = tmp_path / 'run'
    learner_cmd = [str(LEARNER), '--ros-args', '-p', f'config:={config}',
                   '-p', f'run_dir:={run_dir}', '-p', 'checkpoint_interval_s:=2.0',
                   '-p', 'republish_period_s:=1.0', '-p', 'policy_publish_interval:=100',
                   '-p', "frames_service:=''"]
    robot_cmd = [str(ROBOT), '--ros-args', '-p', 'task:=point_mass', '-p', 'frame_stride:=0',
                 '-p', 'max_steps_ahead:=200', '-p', 'min_subscribers:=1']
    log = tmp_path / 'nodes.log'
    rclpy.init()
    labeller = Labeller()
    learner = start(learner_cmd, log)
    robot = None
    kills: list[str] = []
    acked_at_kill: list[int] = []
    try:
        assert labeller.spin(lambda: labeller.status is not None, timeout=60), log.read_text()
        robot = start(robot_cmd, log)

        def restart(point: str) -> None:
            nonlocal learner
            kill(learner)
            kills.append(point)
            acked_at_kill.append(len(labeller.acknowledged))
            labeller.status = None
            learner = start(learner_cmd, log)
            assert labeller.spin(lambda: labeller.status is not None, timeout=60,
                                 answer=False), log.read_text()
            # The restarted learner read every label acknowledged before the kill back.
            assert labeller.status.labels_stored >= acked_at_kill[-1]

        # 1. Right after an acknowledgement.
        assert labeller.spin(lambda: len(labeller.acknowledged) >= 3, timeout=60), \
            labeller.progress() + '\n' + log.read_text()
        restart('right after an ack')

        # 2. With a call in flight: the request is sent, the learner dies before answering
        #    (or after storing, before the answer arrives): the labeller resends it.
        assert labeller.spin(lambda: len(labeller.unacknowledged()) > 0
                             and labeller.in_flight is None
                             and labeller.client.service_is_ready(), timeout=60,
                             answer=False), log.read_text()
        assert labeller.send_next()
        labeller.executor.spin_once(timeout_sec=0.005)
        restart('call in flight')

        # 3. Mid-session: some of a session's queries answered, others outstanding.
        acked = len(labeller.acknowledged)
        assert labeller.spin(lambda: len(labeller.acknowledged) >= acked + 4
                             and len(labeller.unacknowledged()) > 0, timeout=60), \
            labeller.progress() + '\n' + log.read_text()
        restart('mid-session')

        # Training goes on after the last restart: more env steps, a newer reward model.
        resumed = labeller.status
        assert labeller.spin(
            lambda: labeller.status.env_steps >= resumed.env_steps + 400
            and labeller.status.reward_model_version > resumed.reward_model_version,
            timeout=60), f'resumed at {resumed}\n{labeller.progress()}\n{log.read_text()[-3000:]}'
        assert labeller.spin(lambda: labeller.in_flight is None, timeout=10, answer=False)
        assert stop(learner) == 0, log.read_text()[-3000:]
    finally:
        labeller.close()
        rclpy.shutdown()
        for proc in (learner, robot):
            if proc is not None:
                stop(proc)

    assert kills == ['right after an ack', 'call in flight', 'mid-session']
    assert not labeller.refusals
    stored = stored_labels(run_dir)
    assert len(labeller.acknowledged) > acked_at_kill[-1]  # labelling went on, too
    for qid, choice in labeller.acknowledged.items():
        assert stored.get(qid) == choice, qid  # every acknowledged label, as given
    assert set(stored) <= set(labeller.answers)  # nothing stored that was never sent
