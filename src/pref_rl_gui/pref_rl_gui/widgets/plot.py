"""The reward model's accuracy and the number of stored labels over time, as they change."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PyQt5.QtCore import QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QPainter, QPen, QPolygonF
from PyQt5.QtWidgets import QSizePolicy, QWidget

from pref_rl_gui.model import HistoryPoint
from pref_rl_gui.widgets.clip_view import ARENA, BACKGROUND, GRID, TEXT

ACCURACY = QColor('#4f8ff7')
LABELS = QColor('#f5a623')


class HistoryPlot(QWidget):
    """Accuracy (left axis, 0-1) and labels stored (right axis) against minutes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[HistoryPoint] = []
        self.budget = 0
        self.setMinimumSize(240, 120)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setFocusPolicy(Qt.NoFocus)

    def set_history(self, points: Sequence[HistoryPoint], budget: int = 0) -> None:
        """Plot ``points``; the label axis reaches at least ``budget``."""
        self.points, self.budget = list(points), budget
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        """Axes, the two series and a legend."""
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, True)
        p.fillRect(self.rect(), BACKGROUND)
        box = QRectF(self.rect()).adjusted(34, 20, -40, -20)
        p.fillRect(box, ARENA)
        p.setPen(QPen(GRID, 1))
        p.drawRect(box)
        accuracy = [q for q in self.points if not math.isnan(q.accuracy)]
        latest = accuracy[-1].accuracy if accuracy else math.nan
        top_labels = max([self.budget, 1] + [q.labels_stored for q in self.points])
        span = max(1e-9, self.points[-1].elapsed_s if self.points else 1.0)

        def at(q: HistoryPoint, value: float, top: float) -> QPointF:
            return QPointF(box.left() + q.elapsed_s / span * box.width(),
                           box.bottom() - value / top * box.height())

        p.setPen(TEXT)
        for frac in (0.0, 0.5, 1.0):
            y = box.bottom() - frac * box.height()
            p.drawText(QRectF(0, y - 7, 30, 14), Qt.AlignRight | Qt.AlignVCenter, f'{frac:g}')
            p.drawText(QRectF(box.right() + 4, y - 7, 36, 14), Qt.AlignLeft | Qt.AlignVCenter,
                       f'{round(frac * top_labels)}')
        p.drawText(QRectF(box.left(), box.bottom() + 2, box.width(), 16), Qt.AlignLeft,
                   '0')
        p.drawText(QRectF(box.left(), box.bottom() + 2, box.width(), 16), Qt.AlignRight,
                   f'{span / 60:.1f} min')
        if self.points:
            steps = [at(self.points[0], self.points[0].labels_stored, top_labels)]
            for a, b in zip(self.points, self.points[1:], strict=False):  # a step line
                steps += [at(b, a.labels_stored, top_labels), at(b, b.labels_stored, top_labels)]
            p.setPen(QPen(LABELS, 2))
            p.drawPolyline(QPolygonF(steps))
        if accuracy:
            p.setPen(QPen(ACCURACY, 2))
            p.setBrush(ACCURACY)
            dots = [at(q, q.accuracy, 1.0) for q in accuracy]
            p.drawPolyline(QPolygonF(dots))
            for dot in dots[-50:]:
                p.drawEllipse(dot, 3, 3)
        p.setPen(TEXT)
        labels = self.points[-1].labels_stored if self.points else 0
        acc = 'n/a' if math.isnan(latest) else f'{latest:.2f}'
        p.drawText(QRectF(box.left(), 2, box.width(), 16), Qt.AlignLeft,
                   f'reward-model accuracy {acc}')
        p.setPen(LABELS)
        p.drawText(QRectF(box.left(), 2, box.width(), 16), Qt.AlignRight,
                   f'labels stored {labels}')
        p.end()
