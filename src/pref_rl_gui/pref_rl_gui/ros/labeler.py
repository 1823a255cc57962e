"""``labeler`` node: the Qt labelling window of a ROS 2 session (console entry point).

Qt owns the main thread; rclpy spins the :class:`~pref_rl_gui.ros.node.LabelerNode` in a
worker thread (:class:`~pref_rl_gui.ros.bridge.RosBridge`), and data crosses only through Qt
signals; the window talks to a ROS-free :class:`~pref_rl_gui.model.LabelingModel`.

Parameters: one per field of :class:`~pref_rl_gui.config.LabelerConfig` (``labeler_id``,
``outbox_dir``, ``submit_service``, ``frames_service``, ``undo_window_s``, retries,
playback), all with defaults; ``ros2 param describe labeler <name>`` shows each docstring.

Labels are written to the durable outbox before they are sent and are retried until the
learner acknowledges them; while the learner is away a banner says so and labelling goes
on. SIGINT/SIGTERM (what the launcher sends) or closing the window end the node with status
0; labels not yet acknowledged stay in the outbox and are sent when the app runs again and
the learner republishes their queries. Bad parameters or a locked outbox: status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import rclpy
from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.signals import SignalHandlerOptions

from pref_rl_gui.model import Change, LabelingModel
from pref_rl_gui.outbox import Outbox
from pref_rl_learner.errors import PrefRLError

if TYPE_CHECKING:
    from PyQt5.QtWidgets import QApplication

    from pref_rl_gui.ros.bridge import RosBridge
    from pref_rl_gui.ros.node import LabelerNode
    from pref_rl_gui.widgets.window import LabelerWindow


class LabelerParts(NamedTuple):
    """The wired pieces of a running labeller (see :func:`assemble`)."""

    app: QApplication
    bridge: RosBridge
    model: LabelingModel
    window: LabelerWindow


def assemble(node: LabelerNode, outbox: Outbox,
             argv: Sequence[str] | None = None) -> LabelerParts:
    """Wire a labeler node to a window: the ROS bridge, the model writing to ``outbox``, the
    window and its controller. Nothing is started or shown yet."""
    from pref_rl_gui.ros.bridge import RosBridge
    from pref_rl_gui.widgets.app import LabelerApp, qt_application
    from pref_rl_gui.widgets.window import LabelerWindow

    app = qt_application(argv)
    bridge = RosBridge(node)
    model = LabelingModel(node.config, outbox, sink=bridge)
    window = LabelerWindow(model)
    LabelerApp(model, window, bridge.request_frames)  # parented to the window
    bridge.attach(model)
    return LabelerParts(app, bridge, model, window)


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``labeler`` executable; returns the exit status."""
    from pref_rl_gui.ros.node import LabelerNode
    from pref_rl_gui.widgets.app import QuitOnSignals, survive_errors

    argv = list(sys.argv if args is None else args)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger('labeler')
    node = outbox = bridge = None
    try:
        node = LabelerNode()
        logger = node.get_logger()
        outbox = Outbox.open(node.config.resolved_outbox_dir, background=True)
        app, bridge, model, window = assemble(node, outbox, argv[:1])
        model.subscribe(lambda change: _log_message(model, change, logger))
        signals = QuitOnSignals(app.quit)
        survive_errors(model)
        bridge.start()
        window.show()
        app.exec_()
        signals.restore()
        unsent = model.unsent_count()
        if unsent:
            logger.info(f'{unsent} label(s) not acknowledged yet: kept in {outbox.directory}, '
                        'sent when the labeler runs again')
        if bridge.error is not None:
            logger.error(f'the ROS thread failed: {bridge.error!r}')
        return 0
    except PrefRLError as err:
        logger.error(f'{type(err).__name__}: {err}')
        return 2
    finally:
        if bridge is not None:
            bridge.stop()
        if node is not None:
            node.destroy_node()
        if outbox is not None:
            outbox.close()
        if rclpy.ok():
            rclpy.shutdown()


def _log_message(model: LabelingModel, change: Change, logger: RcutilsLogger) -> None:
    """Mirror the model's messages into the node's log (one call site per severity: rclpy
    refuses a second severity from the same line)."""
    if not (change & Change.MESSAGE and model.messages):
        return
    m = model.messages[-1]
    if m.level == 'error':
        logger.error(m.text)
    elif m.level == 'warning':
        logger.warning(m.text)
    else:
        logger.info(m.text)


if __name__ == '__main__':
    raise SystemExit(main())
