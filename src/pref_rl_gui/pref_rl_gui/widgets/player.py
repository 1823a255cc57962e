"""Synchronised, looping playback of clip views from one timer."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from PyQt5.QtCore import QObject, Qt, QTimer, pyqtSignal

from pref_rl_gui.widgets.clip_view import ClipView


class ClipPlayer(QObject):
    """Steps every view through 0..T together (T: the longest clip), holds the last step for
    ``loop_pause_s``, then starts over; pause, resume and replay.

    :attr:`steps_shown` and :meth:`rate` measure the playback rate achieved (benchmarks).
    """

    step_changed = pyqtSignal(int, int)
    """(step, steps) after every move of the playhead."""

    def __init__(self, views: Sequence[ClipView], steps_per_s: float, loop_pause_s: float,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.views = list(views)
        self.step, self.steps = 0, 0
        self.playing = True
        self._hold_ticks = max(0, math.ceil(loop_pause_s * steps_per_s))
        self._held = 0
        self.steps_shown = 0
        self._started = time.perf_counter()
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(max(1, round(1000.0 / steps_per_s)))
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def restart(self) -> None:
        """New clips are on the views: play them from step 0."""
        self.steps = max((v.clip.steps for v in self.views if v.clip is not None), default=0)
        self._goto(0)

    def replay(self) -> None:
        """Play from the start (and resume if paused)."""
        self.playing = True
        self._goto(0)

    def seek(self, step: int) -> None:
        """Move the playhead to ``step`` (clamped to 0..T)."""
        self._goto(min(max(step, 0), self.steps))

    def toggle_pause(self) -> bool:
        """Pause or resume; returns whether it plays now."""
        self.playing = not self.playing
        self.step_changed.emit(self.step, self.steps)
        return self.playing

    def rate(self) -> float:
        """Steps shown per second since the last :meth:`reset_rate`."""
        return self.steps_shown / max(1e-9, time.perf_counter() - self._started)

    def reset_rate(self) -> None:
        """Start measuring :meth:`rate` afresh."""
        self.steps_shown, self._started = 0, time.perf_counter()

    def _goto(self, step: int) -> None:
        self.step, self._held = step, 0
        for view in self.views:
            view.set_step(step)
        self.step_changed.emit(self.step, self.steps)

    def _tick(self) -> None:
        if not self.playing or self.steps == 0:
            return
        if self.step < self.steps:
            self._goto(self.step + 1)
            self.steps_shown += 1
        elif self._held < self._hold_ticks:
            self._held += 1
        else:
            self._goto(0)
            self.steps_shown += 1
