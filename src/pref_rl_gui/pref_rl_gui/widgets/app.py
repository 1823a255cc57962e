"""Running the window: the Qt application, the delivery timer, frame requests, signals.

Shared by the ``labeler`` node (:mod:`pref_rl_gui.ros.labeler`) and ``pref-rl label``
(:func:`run_standalone`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from PyQt5.QtCore import QEventLoop, QObject, QTimer, qInstallMessageHandler
from PyQt5.QtWidgets import QApplication

from pref_rl_gui.model import Change, LabelingModel
from pref_rl_gui.standalone import StandaloneSession
from pref_rl_gui.widgets.window import LabelerWindow

PUMP_PERIOD_MS = 100
"""How often due labels are handed to the sink (their undo windows end between key presses)."""


_NOISE = ('This plugin does not support propagateSizeHints()',)
"""Qt warnings without meaning here (the offscreen platform has no window manager)."""


def _qt_messages(mode: int, context: object, message: str | None) -> None:
    if message and not message.startswith(_NOISE):
        print(message, file=sys.stderr)


_APP: list[QApplication] = []  # keeps the application alive for the whole process


def qt_application(argv: Sequence[str] | None = None) -> QApplication:
    """The process's QApplication (created on first use, kept until the process ends)."""
    app = QApplication.instance()
    if app is None:
        qInstallMessageHandler(_qt_messages)
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
        app.setApplicationName('pref-rl labeler')
        _APP.append(app)
    assert isinstance(app, QApplication)
    return app


class LabelerApp(QObject):
    """Keeps a model moving while the window is open: sends labels when their undo window
    ends and asks ``fetch_frames`` for the frames of segments on display."""

    def __init__(self, model: LabelingModel, window: LabelerWindow,
                 fetch_frames: Callable[[list[str]], None] | None = None) -> None:
        super().__init__(window)
        self.model, self.window, self.fetch_frames = model, window, fetch_frames
        self.timer = QTimer(self)
        self.timer.setInterval(PUMP_PERIOD_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        model.subscribe(self._on_change)
        self._on_change(Change.QUERY)

    def _tick(self) -> None:
        before = self.model.unsent_count(), self.model.can_undo()
        self.model.pump()
        if (self.model.unsent_count(), self.model.can_undo()) != before:
            self.window.refresh(Change.OUTBOX)

    def _on_change(self, change: Change) -> None:
        if self.fetch_frames is not None and change & (Change.QUERY | Change.QUEUE
                                                       | Change.EPISODE):
            wanted = self.model.frames_wanted()
            if wanted:
                self.fetch_frames(wanted)


class QuitOnSignals:
    """Until :meth:`restore`, SIGINT and SIGTERM call ``stop`` (closing the app cleanly)
    instead of their previous handlers. Python runs signal handlers only between bytecodes,
    so a timer hands control to Python regularly while Qt's loop runs."""

    def __init__(self, stop: Callable[[], object]) -> None:
        self._previous = {sig: signal.signal(sig, lambda signum, frame: stop())
                          for sig in (signal.SIGINT, signal.SIGTERM)}
        self._timer = QTimer()
        self._timer.timeout.connect(lambda: None)
        self._timer.start(200)

    def restore(self) -> None:
        """Stop and put the previous handlers back."""
        self._timer.stop()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def survive_errors(model: LabelingModel) -> Callable[..., object]:
    """Report an exception escaping a Qt callback instead of aborting.

    PyQt5 aborts the process (``qFatal``) on an exception in a slot while Python's default
    ``sys.excepthook`` is installed; labels already given are safe in the outbox, but the
    person would lose the window. The traceback goes to stderr and the status line. Returns
    the previous hook.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: object) -> None:
        traceback.print_exception(kind, error, tb)  # type: ignore[arg-type]
        with contextlib.suppress(Exception):  # reporting must not raise inside the hook
            model.report('error', f'internal error: {kind.__name__}: {error}')

    sys.excepthook = hook
    return previous


def run_standalone(session: StandaloneSession) -> int:
    """Show the window for a ``pref-rl label`` session until it is closed (or SIGINT /
    SIGTERM close it); labels still in their undo window then go to the store."""
    qt_application()
    window = LabelerWindow(session.model)
    LabelerApp(session.model, window)
    loop = QEventLoop()
    window.closed.connect(loop.quit)
    signals = QuitOnSignals(window.close)
    previous = survive_errors(session.model)
    window.show()
    try:
        return loop.exec_()
    finally:
        sys.excepthook = previous
        signals.restore()
        session.model.pump(flush=True)  # labels in their undo window go to the store now
