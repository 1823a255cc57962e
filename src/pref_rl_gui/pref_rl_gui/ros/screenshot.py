"""Regenerate ``docs/img/gui_labeler.png``: the labeler window on a live simulation session.

Run under an X server (a desktop, or Xvfb), from the repository root::

    xvfb-run -a -s '-screen 0 1280x960x24' \\
        python -m pref_rl_gui.ros.screenshot --out docs/img/gui_labeler.png

It starts the simulation session's ``learner`` and ``robot`` nodes as
``launch/sim_session.launch.xml`` does (``config/sim_session.yaml``, the task's
``config/session_<task>.yaml``; the robot renders frames for queries), runs the real
``labeler`` window in this process, answers the first ``--labels`` queries by pressing the
arrow keys as a person would (choosing by the segments' true returns, as the oracle teacher
does), waits until the learner has trained its reward model and a query with frames is on
screen, then grabs the window from the X server and saves it as PNG.
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

import rclpy
from ament_index_python.packages import get_package_prefix
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtTest import QTest
from rclpy.parameter import Parameter

from pref_rl_gui.model import LabelingModel
from pref_rl_gui.outbox import Outbox
from pref_rl_gui.ros.labeler import assemble
from pref_rl_gui.ros.node import LabelerNode
from pref_rl_gui.widgets.app import qt_application
from pref_rl_gui.widgets.window import LabelerWindow


def _executable(package: str, name: str) -> str:
    return str(Path(get_package_prefix(package)) / 'lib' / package / name)


def start_session(run_dir: Path, task: str, root: Path) -> list[subprocess.Popen]:
    """The session's learner and robot nodes, as the launch file starts them."""
    config = root / 'config' / 'sim_session.yaml'
    common = ['--ros-args', '--params-file', str(config)]
    learner = [_executable('pref_rl_learner', 'learner'), *common,
               '-p', f'config:={root / "config" / f"session_{task}.yaml"}',
               '-p', f'run_dir:={run_dir / "run"}']
    robot = [_executable('pref_rl_robot', 'robot'), *common, '-p', f'task:={task}']
    procs = []
    for name, cmd in (('learner', learner), ('robot', robot)):
        log = open(run_dir / f'{name}.log', 'w', encoding='utf-8')  # noqa: SIM115 (kept open)
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    return procs


def stop_session(procs: list[subprocess.Popen]) -> None:
    """SIGINT each node, as the launcher does; kill what does not stop in 30 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


class Autopilot:
    """Answers like a person would, by key presses, until ``labels`` are given; then waits
    for the state worth a picture and grabs the window."""

    def __init__(self, model: LabelingModel, window: LabelerWindow, labels: int,
                 out: Path, deadline: float) -> None:
        self.model, self.window, self.labels, self.out = model, window, labels, out
        self.deadline = deadline
        self.given = 0
        self.ready_since: float | None = None
        self.result = 1
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(300)

    def tick(self) -> None:
        m, now = self.model, time.monotonic()
        query = m.current
        if self.given < self.labels and query is not None and now - m.shown_at > 0.25:
            left, right = (float(s.rewards.sum()) if s.rewards is not None else 0.0
                           for s in (query.left, query.right))
            QTest.keyClick(self.window, Qt.Key_Left if left >= right else Qt.Key_Right)
            self.given += 1
            return
        status = m.status
        ready = (self.given >= self.labels and query is not None and status is not None
                 and status.reward_model_version >= 1
                 and m.episode is not None
                 and all(m.displayed(s).frames is not None for s in (query.left, query.right)))
        if not ready:
            self.ready_since = None
            if now > self.deadline:
                print(f'screenshot: gave up waiting (labels given {self.given}, status '
                      f'{status}, query {query and query.query_id})', file=sys.stderr)
                qt_application().quit()
            return
        if self.ready_since is None:
            self.ready_since = now
        elif now - self.ready_since > 1.4:  # the clips are playing mid-way
            self.grab()

    def grab(self) -> None:
        app = qt_application()
        if app.platformName() == 'offscreen':
            pixmap = self.window.grab()
        else:  # the pixels the X server shows
            pixmap = app.primaryScreen().grabWindow(int(self.window.winId()))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if pixmap.save(str(self.out), 'PNG'):
            print(f'screenshot: {self.out} ({pixmap.width()}x{pixmap.height()}, platform '
                  f'{app.platformName()})')
            self.result = 0
        app.quit()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('docs/img/gui_labeler.png'))
    parser.add_argument('--task', default='point_mass')
    parser.add_argument('--labels', type=int, default=45,
                        help='queries to answer before the picture')
    parser.add_argument('--timeout', type=float, default=300.0, help='seconds')
    parser.add_argument('--root', type=Path, default=Path.cwd(),
                        help='repository root (config/ and launch/)')
    args = parser.parse_args(argv)
    if not os.environ.get('DISPLAY'):
        print('screenshot: no DISPLAY; run under xvfb-run (the picture must come from a real '
              'X window)', file=sys.stderr)
    elif os.environ.get('QT_QPA_PLATFORM') == 'offscreen':  # scripts/env.sh without a display
        os.environ['QT_QPA_PLATFORM'] = 'xcb'
    work = Path(tempfile.mkdtemp(prefix='pref-rl-screenshot-'))
    procs = start_session(work, args.task, args.root)
    rclpy.init()
    node = LabelerNode(parameter_overrides=[
        Parameter('labeler_id', value='alice'),
        Parameter('outbox_dir', value=str(work / 'outbox')),
        Parameter('undo_window_s', value=0.5)])
    outbox = Outbox.open(node.config.resolved_outbox_dir, background=True)
    app, bridge, model, window = assemble(node, outbox)
    bridge.start()
    window.show()
    pilot = Autopilot(model, window, args.labels, args.out,
                      time.monotonic() + args.timeout)
    try:
        app.exec_()
    finally:
        bridge.stop()
        node.destroy_node()
        outbox.close()
        rclpy.shutdown()
        stop_session(procs)
    print(f'screenshot: session logs in {work}')
    return pilot.result


if __name__ == '__main__':
    raise SystemExit(main())
