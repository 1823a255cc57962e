"""One clip on screen: its frame at the current step, or its schematic when it has no frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PyQt5.QtCore import QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap, QPolygonF
from PyQt5.QtWidgets import QSizePolicy, QWidget

from pref_rl_gui.clips import Clip
from pref_rl_gui.schematic import Schematic

BACKGROUND = QColor('#1e1f22')
ARENA = QColor('#2b2d31')
GRID = QColor('#4a4d52')
TEXT = QColor('#e8eaed')
GOAL = QColor('#34a853')
PATH_COLORS = (QColor('#4f8ff7'), QColor('#f5a623'), QColor('#c58af9'))
TRACE_COLORS = tuple(QColor(c) for c in ('#4f8ff7', '#f5a623', '#34a853', '#ea4335',
                                         '#c58af9', '#24c1e0', '#fdd663', '#ff8bcb'))
_IMAGE_FORMATS = {1: QImage.Format_Grayscale8, 3: QImage.Format_RGB888,
                  4: QImage.Format_RGBA8888}


def frame_image(frame: np.ndarray) -> tuple[QImage, np.ndarray]:
    """A QImage viewing ``frame`` ([H, W, C] uint8, C in 1, 3, 4) and the contiguous array it
    views (keep it alive while the image is used)."""
    data = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w, c = data.shape
    return QImage(data.data, w, h, w * c, _IMAGE_FORMATS[c]), data


class ClipView(QWidget):
    """Paints a :class:`Clip` at one step; :attr:`paints` counts paint events (benchmarks)."""

    def __init__(self, title: str = '', parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.clip: Clip | None = None
        self.step = 0
        self.placeholder = 'waiting for a query'
        self.paints = 0
        self._cache: dict[tuple, QPixmap] = {}  # scaled frames and schematic backgrounds
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setFocusPolicy(Qt.NoFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent)

    def set_clip(self, clip: Clip | None, placeholder: str = '') -> None:
        """Show ``clip`` from step 0 (None: the placeholder text)."""
        self.clip, self.step = clip, 0
        self._cache.clear()
        if placeholder:
            self.placeholder = placeholder
        self.update()

    def set_step(self, step: int) -> None:
        """Show step ``step`` (clamped to the clip)."""
        if self.clip is not None:
            step = min(max(step, 0), self.clip.steps)
        if step != self.step:
            self.step = step
            self.update()

    def resizeEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        """Cached drawings are for the old size."""
        self._cache.clear()
        super().resizeEvent(event)

    # ---------------------------------------------------------------------------- painting

    def paintEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        """Frame or schematic, then the title and the step caption."""
        self.paints += 1
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        area = QRectF(self.rect()).adjusted(6, 24, -6, -22)
        clip = self.clip
        if clip is None:
            p.setPen(TEXT)
            p.drawText(area, Qt.AlignCenter | Qt.TextWordWrap, self.placeholder)
        else:
            at = clip.frame_index(self.step)
            if at is not None:
                self._paint_frame(p, area, at)
            elif clip.schematic.bounds is not None:
                self._paint_plane(p, area, clip.schematic)
            else:
                self._paint_traces(p, area, clip.schematic)
        self._paint_text(p)
        p.end()

    def _paint_text(self, p: QPainter) -> None:
        p.setPen(TEXT)
        bold = QFont(self.font())
        bold.setBold(True)
        p.setFont(bold)
        p.drawText(QRectF(8, 2, self.width() - 16, 20), Qt.AlignLeft | Qt.AlignVCenter,
                   self.title)
        if self.clip is None:
            return
        p.setFont(self.font())
        step = f'step {self.step}/{self.clip.steps}'
        if self.width() < 360:  # a small pane: the step only
            p.drawText(QRectF(8, self.height() - 20, self.width() - 16, 18),
                       Qt.AlignLeft | Qt.AlignVCenter, f'{step} · {self.clip.label}')
            return
        what = 'frames' if self.clip.has_frames else self.clip.schematic.title
        p.drawText(QRectF(8, 2, self.width() - 16, 20), Qt.AlignRight | Qt.AlignVCenter, step)
        p.drawText(QRectF(8, self.height() - 20, self.width() - 16, 18),
                   Qt.AlignLeft | Qt.AlignVCenter, f'{what} · {self.clip.label}')

    @staticmethod
    def _square(area: QRectF, aspect: float = 1.0) -> QRectF:
        w = min(area.width(), area.height() * aspect)
        h = w / aspect
        return QRectF(area.center().x() - w / 2, area.center().y() - h / 2, w, h)

    def _paint_frame(self, p: QPainter, area: QRectF, at: tuple[int, int]) -> None:
        assert self.clip is not None
        frame = self.clip.frames[at[0]][at[1]]
        target = self._square(area, frame.shape[1] / max(1, frame.shape[0])).toRect()
        key = ('frame', *at, target.width(), target.height())
        pixmap = self._cache.get(key)
        if pixmap is None:  # scaled once per frame and size, then only blitted
            image, _keep = frame_image(frame)
            pixmap = QPixmap.fromImage(image.scaled(target.size(), Qt.IgnoreAspectRatio,
                                                    Qt.SmoothTransformation))
            self._cache[key] = pixmap
        p.drawPixmap(target.topLeft(), pixmap)

    def _paint_plane(self, p: QPainter, area: QRectF, s: Schematic) -> None:
        assert s.bounds is not None
        box = self._square(area)
        x0, x1, y0, y1 = s.bounds

        def at(xy: np.ndarray) -> QPointF:  # world (x right, y up) -> widget
            return QPointF(box.left() + (float(xy[0]) - x0) / (x1 - x0) * box.width(),
                           box.bottom() - (float(xy[1]) - y0) / (y1 - y0) * box.height())

        mapped = [[at(x) for x in points] for _, points in s.paths]
        key = ('plane', round(box.left()), round(box.top()), round(box.width()))
        background = self._cache.get(key)
        if background is None:  # what does not move, drawn once per clip and size
            background = QPixmap(max(1, round(box.width())), max(1, round(box.height())))
            q = QPainter(background)
            q.translate(-box.left(), -box.top())
            self._paint_plane_background(q, box, s, at, mapped)
            q.end()
            self._cache[key] = background
        p.drawPixmap(box.topLeft(), background)
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setClipRect(box)
        t = min(self.step, s.steps)
        if s.arm is not None:
            p.setPen(QPen(QColor('#9aa0a6'), 4, cap=Qt.RoundCap))
            joints = [at(j) for j in s.arm[t]]
            for a, b in zip(joints, joints[1:], strict=False):
                p.drawLine(a, b)
        for k, points in enumerate(mapped):
            color = PATH_COLORS[k % len(PATH_COLORS)]
            p.setPen(QPen(color, 2))
            p.drawPolyline(QPolygonF(points[:t + 1]))
            p.setBrush(color)
            p.drawEllipse(points[t], 6, 6)
            p.setBrush(Qt.NoBrush)
        p.setClipping(False)
        p.setPen(QPen(GRID, 1))
        p.drawRect(box)
        p.setPen(TEXT)
        names = ', '.join(n for n, _ in s.paths) + (', goal' if s.goal is not None else '')
        p.drawText(box.adjusted(6, 4, -6, -4), Qt.AlignLeft | Qt.AlignTop, names)

    @staticmethod
    def _paint_plane_background(p: QPainter, box: QRectF, s: Schematic,
                                at: Callable[[Any], QPointF],
                                mapped: list[list[QPointF]]) -> None:
        """Workspace, goal and each whole path (faint) of a schematic."""
        assert s.arena is not None
        p.setRenderHint(QPainter.Antialiasing, True)
        p.fillRect(box, BACKGROUND.darker(115))
        corner0, corner1 = at((s.arena[0], s.arena[3])), at((s.arena[1], s.arena[2]))
        p.fillRect(QRectF(corner0, corner1).intersected(box), ARENA)
        p.setPen(QPen(GRID, 2))
        p.drawRect(QRectF(corner0, corner1))
        if s.goal is not None:
            radius = max(5.0, box.width() * 0.025)
            p.setPen(QPen(GOAL, 2))
            p.setBrush(QColor(GOAL.red(), GOAL.green(), GOAL.blue(), 90))
            p.drawEllipse(at(s.goal), radius, radius)
            p.setBrush(Qt.NoBrush)
        for k, points in enumerate(mapped):
            faint = QColor(PATH_COLORS[k % len(PATH_COLORS)])
            faint.setAlpha(70)
            p.setPen(QPen(faint, 2))
            p.drawPolyline(QPolygonF(points))

    def _paint_traces(self, p: QPainter, area: QRectF, s: Schematic) -> None:
        assert s.traces is not None
        p.setRenderHint(QPainter.Antialiasing, True)
        p.fillRect(area, ARENA)
        steps = max(1, s.steps)
        rows = s.traces.shape[1]
        band = area.height() / max(1, rows)
        for d in range(rows):
            top = area.top() + d * band
            p.setPen(QPen(TRACE_COLORS[d % len(TRACE_COLORS)], 2))
            points = [QPointF(area.left() + i / steps * area.width(),
                              top + (1 - float(v)) * (band - 4) + 2)
                      for i, v in enumerate(s.traces[:, d])]
            p.drawPolyline(QPolygonF(points))
            p.setPen(TEXT)
            p.drawText(QRectF(area.left() + 4, top, 80, 14), Qt.AlignLeft, s.trace_names[d])
        x = area.left() + min(self.step, s.steps) / steps * area.width()
        p.setPen(QPen(TEXT, 1, Qt.DashLine))
        p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
