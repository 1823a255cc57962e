"""rclpy in a worker thread, data to the Qt main thread through signals only (as rqt does).

:class:`RosBridge` lives in the Qt main thread. Its worker thread spins the
:class:`~pref_rl_gui.ros.node.LabelerNode`; the node's callbacks (in that thread) emit the
bridge's signals, which Qt queues to the main thread, where the bridge's slots call the
:class:`~pref_rl_gui.model.LabelingModel`. The model is therefore only ever touched by the
main thread. The other way, the bridge is the model's :class:`~pref_rl_gui.model.LabelSink`:
:meth:`RosBridge.submit` hands a label to the node's thread-safe queue.
"""

from __future__ import annotations

import threading

import numpy as np
from PyQt5.QtCore import QObject, pyqtSignal, pyqtSlot
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from pref_rl_gui.model import LabelingModel
from pref_rl_gui.ros.node import LabelerNode
from pref_rl_learner.types import PreferenceLabel

_SPIN_TIMEOUT_S = 0.1


class RosBridge(QObject):
    """Spins ``node`` in a worker thread; signals carry its data to the Qt thread."""

    query_received = pyqtSignal(object)
    query_rejected = pyqtSignal(str, str)
    status_received = pyqtSignal(object)
    segment_received = pyqtSignal(object)
    availability_changed = pyqtSignal(bool)
    submit_answered = pyqtSignal(str, bool, str)
    submit_failed = pyqtSignal(str, str)
    frames_received = pyqtSignal(str, object, int)
    frames_failed = pyqtSignal(str, str)

    def __init__(self, node: LabelerNode, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.node = node
        self.model: LabelingModel | None = None
        node.events = _Emitter(self)
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        """What ended the worker thread early, if anything."""

    def attach(self, model: LabelingModel) -> None:
        """Deliver the node's data to ``model`` (call in the Qt thread)."""
        self.model = model
        self.query_received.connect(self._on_query)
        self.query_rejected.connect(self._on_query_rejected)
        self.status_received.connect(self._on_status)
        self.segment_received.connect(self._on_segment)
        self.availability_changed.connect(self._on_availability)
        self.submit_answered.connect(self._on_answered)
        self.submit_failed.connect(self._on_failed)
        self.frames_received.connect(self._on_frames)
        self.frames_failed.connect(self._on_frames_failed)

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start spinning the node in the worker thread."""
        self._running.set()
        self._thread = threading.Thread(target=self._spin, name='rclpy-labeler', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self._running.is_set() and self.node.context.ok():
                self.executor.spin_once(timeout_sec=_SPIN_TIMEOUT_S)
        except ExternalShutdownException:
            pass
        except BaseException as err:  # reported by stop(); the window keeps the labels
            self.error = err

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker thread (idempotent)."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.executor.remove_node(self.node)
        self.executor.shutdown(timeout_sec=1.0)

    # ---------------------------------------------------------------- LabelSink, frames

    def submit(self, label: PreferenceLabel) -> None:
        """Send ``label`` to the learner (called by the model in the Qt thread)."""
        self.node.submit(label)

    def request_frames(self, segment_ids: list[str]) -> None:
        """Ask the robot for frames of ``segment_ids``."""
        self.node.request_frames(segment_ids)

    # ----------------------------------------------------------- slots (Qt main thread)

    @pyqtSlot(object)
    def _on_query(self, query: object) -> None:
        if self.model is not None:
            self.model.add_query(query)  # type: ignore[arg-type]

    @pyqtSlot(str, str)
    def _on_query_rejected(self, query_id: str, reason: str) -> None:
        if self.model is not None:
            self.model.reject_query(query_id, reason)

    @pyqtSlot(object)
    def _on_status(self, status: object) -> None:
        if self.model is not None:
            self.model.on_status(status)  # type: ignore[arg-type]

    @pyqtSlot(object)
    def _on_segment(self, segment: object) -> None:
        if self.model is not None:
            self.model.on_segment(segment)  # type: ignore[arg-type]

    @pyqtSlot(bool)
    def _on_availability(self, available: bool) -> None:
        if self.model is not None:
            self.model.set_learner_available(available)

    @pyqtSlot(str, bool, str)
    def _on_answered(self, query_id: str, success: bool, message: str) -> None:
        if self.model is not None:
            self.model.on_submit_result(query_id, success, message)

    @pyqtSlot(str, str)
    def _on_failed(self, query_id: str, reason: str) -> None:
        if self.model is not None:
            self.model.on_submit_failed(query_id, reason)

    @pyqtSlot(str, object, int)
    def _on_frames(self, segment_id: str, frames: object, stride: int) -> None:
        if self.model is not None:
            self.model.on_frames(segment_id, frames, stride)  # type: ignore[arg-type]

    @pyqtSlot(str, str)
    def _on_frames_failed(self, segment_id: str, reason: str) -> None:
        if self.model is not None:
            self.model.on_frames_failed(segment_id, reason)


class _Emitter:
    """The node's :class:`~pref_rl_gui.ros.node.NodeEvents`: each call emits a signal."""

    def __init__(self, bridge: RosBridge) -> None:
        self.b = bridge

    def query(self, query: object) -> None:
        self.b.query_received.emit(query)

    def query_rejected(self, query_id: str, reason: str) -> None:
        self.b.query_rejected.emit(query_id, reason)

    def status(self, status: object) -> None:
        self.b.status_received.emit(status)

    def segment(self, segment: object) -> None:
        self.b.segment_received.emit(segment)

    def learner_available(self, available: bool) -> None:
        self.b.availability_changed.emit(available)

    def submit_result(self, query_id: str, success: bool, message: str) -> None:
        self.b.submit_answered.emit(query_id, success, message)

    def submit_failed(self, query_id: str, reason: str) -> None:
        self.b.submit_failed.emit(query_id, reason)

    def frames(self, segment_id: str, frames: np.ndarray, frame_stride: int) -> None:
        self.b.frames_received.emit(segment_id, frames, frame_stride)

    def frames_failed(self, segment_id: str, reason: str) -> None:
        self.b.frames_failed.emit(segment_id, reason)
