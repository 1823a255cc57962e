"""The learner's worker thread: runs :meth:`LearnerCore.work_step` until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pref_rl_learner.learner.core import LearnerCore


class LearnerWorker:
    """Runs the core's work loop in a daemon thread; the caller's thread stays free.

    The loop does units of work back to back and, when there is nothing to do, waits for
    new data or labels (at most ``idle_wait_s``). An exception ends the loop; it is kept in
    :attr:`error` and passed to ``on_error`` (the node logs it and exits).
    """

    def __init__(self, core: LearnerCore, idle_wait_s: float = 0.05,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.core = core
        self.idle_wait_s = idle_wait_s
        self.on_error = on_error
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='learner-worker', daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop after its current unit of work and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the loop is running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.core.work_step():
                    self.core.wait_for_work(self.idle_wait_s)
        except BaseException as err:
            self.error = err
            if self.on_error is not None:
                self.on_error(err)
