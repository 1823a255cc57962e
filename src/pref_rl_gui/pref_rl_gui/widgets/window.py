"""The labelling window: both clips of a query, answer keys, progress, the last episode.

Keys (also shown on the buttons):

=====================  =======================================
``←`` or ``A``         left is better
``→`` or ``D``         right is better
``↓`` or ``S``         equally good
``I``                  incomparable
``Space`` or ``K``     skip (no answer; counts against the budget)
``R``                  replay both clips from the start
``P``                  pause / resume
``U``, ``Ctrl+Z``,     undo the last label while it is unsent
``Backspace``
=====================  =======================================

The window only reads and drives the :class:`~pref_rl_gui.model.LabelingModel`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QCloseEvent, QKeyEvent
from PyQt5.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from pref_rl_gui.clips import Clip, clips_of
from pref_rl_gui.model import Change, LabelingModel
from pref_rl_gui.widgets.clip_view import ClipView
from pref_rl_gui.widgets.player import ClipPlayer
from pref_rl_gui.widgets.plot import HistoryPlot
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.types import Choice, Phase

KEYS: dict[tuple[int, bool], str] = {
    (Qt.Key_Left, False): 'left', (Qt.Key_A, False): 'left',
    (Qt.Key_Right, False): 'right', (Qt.Key_D, False): 'right',
    (Qt.Key_Down, False): 'equal', (Qt.Key_S, False): 'equal',
    (Qt.Key_I, False): 'incomparable',
    (Qt.Key_Space, False): 'skip', (Qt.Key_K, False): 'skip',
    (Qt.Key_R, False): 'replay', (Qt.Key_P, False): 'pause',
    (Qt.Key_U, False): 'undo', (Qt.Key_Backspace, False): 'undo', (Qt.Key_Z, True): 'undo',
}
"""(key, with Ctrl) -> action."""
CHOICES = {'left': Choice.LEFT, 'right': Choice.RIGHT, 'equal': Choice.EQUAL,
           'incomparable': Choice.INCOMPARABLE, 'skip': Choice.SKIP}
BUTTONS = (('left', '← / A\nLeft is better'), ('equal', '↓ / S\nEqually good'),
           ('incomparable', 'I\nIncomparable'), ('skip', 'Space / K\nSkip'),
           ('right', '→ / D\nRight is better'))
CONTROLS = (('replay', 'R  Replay'), ('pause', 'P  Pause'), ('undo', 'U / Ctrl+Z  Undo'))
_BANNER_STYLE = ('background: #b3261e; color: white; font-weight: bold; padding: 8px; '
                 'border-radius: 4px;')
_FRAMES_NOTE_STYLE = ('background: #5f4b00; color: #fdd663; padding: 6px; '
                      'border-radius: 4px;')
_LEVEL_COLORS = {'info': '#e8eaed', 'warning': '#fdd663', 'error': '#f28b82'}


def target_prompt(target: str) -> str:
    """The question the window asks, naming the target the clips are judged against."""
    target = target.strip()
    if target in ('', 'person'):
        return 'Which clip comes closer to the target you have in mind?'
    return (f'Which clip comes closer to target {target} (drawn in the clips where the '
            'simulator can show it)?')


class LabelerWindow(QMainWindow):
    """The main window; :attr:`on_key` (if set) is called with each key action after it is
    handled (benchmarks time it)."""

    closed = pyqtSignal()
    """Emitted when the window is closed."""

    def __init__(self, model: LabelingModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.on_key: Callable[[str], None] | None = None
        c = model.config
        self.setWindowTitle(f'pref-rl labeler: {model.labeler_id}')
        self.setStyleSheet('QMainWindow, QWidget#central { background: #131416; } '
                           'QLabel { color: #e8eaed; } '
                           'QPushButton { background: #2b2d31; color: #e8eaed; '
                           'border: 1px solid #4a4d52; border-radius: 4px; padding: 6px; } '
                           'QPushButton:disabled { color: #6f7378; } '
                           'QProgressBar { color: #e8eaed; border: 1px solid #4a4d52; '
                           'border-radius: 4px; text-align: center; background: #2b2d31; } '
                           'QProgressBar::chunk { background: #34a853; }')
        central = QWidget(objectName='central')
        self.setCentralWidget(central)
        outer = QVBoxLayout(central)

        self.banner = QLabel()
        self.banner.setStyleSheet(_BANNER_STYLE)
        self.banner.setWordWrap(True)
        outer.addWidget(self.banner)

        header = QHBoxLayout()
        self.query_label = QLabel()
        self.counts_label = QLabel()
        self.counts_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        header.addWidget(self.query_label, 1)
        header.addWidget(self.counts_label)
        outer.addLayout(header)

        clips = QHBoxLayout()
        self.left_view, self.right_view = ClipView('A: left'), ClipView('B: right')
        clips.addWidget(self.left_view)
        clips.addWidget(self.right_view)
        outer.addLayout(clips, 5)
        self.frames_note = QLabel()  # why the query shown has no camera frames
        self.frames_note.setStyleSheet(_FRAMES_NOTE_STYLE)
        self.frames_note.setWordWrap(True)
        self.frames_note.setVisible(False)
        outer.addWidget(self.frames_note)
        self.player = ClipPlayer([self.left_view, self.right_view], c.playback_steps_per_s,
                                 c.loop_pause_s, self)

        self.buttons: dict[str, QPushButton] = {}
        answers = QHBoxLayout()
        for action, text in BUTTONS:
            answers.addWidget(self._button(action, text, tall=True))
        outer.addLayout(answers)
        controls = QHBoxLayout()
        for action, text in CONTROLS:
            controls.addWidget(self._button(action, text))
        controls.addStretch(1)
        self.help_label = QLabel(target_prompt(c.target))
        controls.addWidget(self.help_label)
        outer.addLayout(controls)

        bottom = QGridLayout()
        self.episode_view = ClipView('last episode')
        self.episode_view.placeholder = 'no finished episode yet'
        self.episode_view.setMinimumSize(220, 180)
        self.episode_view.setMaximumWidth(300)
        self.episode_player = ClipPlayer([self.episode_view], c.playback_steps_per_s,
                                         c.loop_pause_s, self)
        self.plot = HistoryPlot()
        self.budget_bar = QProgressBar()
        self.budget_bar.setFormat('budget: %v / %m labels')
        self.learner_label = QLabel()
        bottom.addWidget(self.episode_view, 0, 0, 3, 1)
        bottom.addWidget(self.plot, 0, 1)
        bottom.addWidget(self.budget_bar, 1, 1)
        bottom.addWidget(self.learner_label, 2, 1)
        bottom.setColumnStretch(1, 1)
        outer.addLayout(bottom, 2)

        self.message_label = QLabel()
        self.statusBar().addWidget(self.message_label, 1)
        self.statusBar().setStyleSheet('background: #1e1f22;')

        self.setFocusPolicy(Qt.StrongFocus)
        model.subscribe(self.refresh)
        self.refresh(Change.QUERY | Change.QUEUE | Change.OUTBOX | Change.LEARNER
                     | Change.HISTORY | Change.EPISODE | Change.MESSAGE)
        self.resize(1200, 880)

    def _button(self, action: str, text: str, tall: bool = False) -> QPushButton:
        button = QPushButton(text)
        button.setFocusPolicy(Qt.NoFocus)  # keys go to the window, never to a button
        if tall:
            button.setMinimumHeight(52)
            button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        button.clicked.connect(lambda _=False, a=action: self.act(a))
        self.buttons[action] = button
        return button

    # ----------------------------------------------------------------------------- actions

    def act(self, action: str) -> bool:
        """Do ``action`` (``left``, ``right``, ``equal``, ``incomparable``, ``skip``,
        ``replay``, ``pause``, ``undo``); False when it does nothing now."""
        done: object
        if action in CHOICES:
            done = self.model.answer(CHOICES[action])
        elif action == 'replay':
            self.player.replay()
            done = True
        elif action == 'pause':
            playing = self.player.toggle_pause()
            self.buttons['pause'].setText('P  Pause' if playing else 'P  Resume')
            done = True
        elif action == 'undo':
            done = self.model.undo()
        else:
            raise ValueError(f'unknown action {action!r}')
        if self.on_key is not None:
            self.on_key(action)
        return done is not None and done is not False

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        """Tell whoever runs the window."""
        super().closeEvent(event)
        self.closed.emit()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        """Map a key to its action (auto-repeat ignored, so holding a key answers once)."""
        ctrl = bool(event.modifiers() & Qt.ControlModifier)
        action = KEYS.get((event.key(), ctrl))
        if action is None or event.isAutoRepeat():
            super().keyPressEvent(event)
            return
        event.accept()
        self.act(action)

    # ----------------------------------------------------------------------------- display

    def refresh(self, change: Change) -> None:
        """Update what ``change`` touched."""
        m = self.model
        if change & (Change.QUERY | Change.FRAMES):
            self._show_query(restart=bool(change & Change.QUERY))
        if change & (Change.EPISODE | Change.FRAMES):
            self._show_episode(restart=bool(change & Change.EPISODE))
        if change & (Change.QUERY | Change.QUEUE | Change.OUTBOX | Change.LEARNER):
            self._show_counts()
        if change & (Change.LEARNER | Change.OUTBOX):
            banner = m.banner()
            self.banner.setVisible(banner is not None)
            self.banner.setText(banner or '')
            self._show_learner()
        if change & Change.HISTORY:
            budget = m.budget()
            self.plot.set_history(m.history, budget[1] if budget else 0)
        if change & Change.MESSAGE and m.messages:
            last = m.messages[-1]
            self.message_label.setStyleSheet(f'color: {_LEVEL_COLORS.get(last.level, "")};')
            self.message_label.setText(f'{time.strftime("%H:%M:%S")}  {last.text}')

    def _clips(self, groups: list) -> list[Clip] | None:
        try:
            return clips_of(groups)
        except (PrefRLError, ValueError, IndexError) as err:
            self.model.report('error', f'cannot draw the clips: {err}')
            return None

    def _show_query(self, restart: bool) -> None:
        q = self.model.current
        clips = None
        if q is not None:
            left, right = self.model.displayed(q.left), self.model.displayed(q.right)
            if (left.frames is None) != (right.frames is None):  # both shown the same way
                left, right = (dataclasses.replace(s, frames=None, frame_stride=0)
                               for s in (left, right))
            clips = self._clips([[left], [right]])
        step = self.player.step
        placeholder = ('no query waiting: the learner asks for labels in feedback sessions'
                       if q is None else 'this query cannot be drawn (see the status line)')
        for view, clip in zip((self.left_view, self.right_view), clips or (None, None),
                              strict=True):
            view.set_clip(clip, placeholder)
        self.player.restart()
        if not restart:
            self.player.seek(step)
        enabled = q is not None
        for action in ('left', 'right', 'equal', 'incomparable', 'skip'):
            self.buttons[action].setEnabled(enabled)
        note = self.model.frames_note()
        self.frames_note.setVisible(note is not None)
        self.frames_note.setText(note or '')
        if q is None:
            self.query_label.setText('<b>No query waiting</b>')
        else:
            self.query_label.setText(
                f'<b>Query {q.query_id}</b> · {q.left.task} · feedback session '
                f'{q.feedback_session} · {q.sampler or "n/a"} sampling')

    def _show_episode(self, restart: bool) -> None:
        episode = self.model.episode
        if episode is None:
            return
        clips = self._clips([[self.model.displayed(s) for s in episode.segments]])
        self.episode_view.set_clip(clips[0] if clips else None)
        if restart:
            self.episode_player.restart()
        else:
            self.episode_player.steps = self.episode_view.clip.steps if clips else 0

    def _show_counts(self) -> None:
        m = self.model
        unsent = m.unsent_count()
        undo = ' · U to undo' if m.can_undo() else ''
        self.counts_label.setText(
            f'<b>{m.queue_count}</b> waiting · <b>{unsent}</b> unsent{undo} · '
            f'labeler <b>{m.labeler_id}</b>')
        self.buttons['undo'].setEnabled(m.can_undo())

    def _show_learner(self) -> None:
        m = self.model
        budget = m.budget()
        if budget is None:
            self.budget_bar.setRange(0, 1)
            self.budget_bar.setValue(0)
            self.budget_bar.setFormat('budget: unknown')
        else:
            self.budget_bar.setRange(0, max(1, budget[1]))
            self.budget_bar.setValue(min(budget))
            self.budget_bar.setFormat('budget: %v / %m labels')
        s = m.status
        if m.standalone:
            self.learner_label.setText('standalone: labels go to the local preference store')
        elif s is None:
            self.learner_label.setText('learner status: not received yet')
        else:
            self.learner_label.setText(
                f'learner: {Phase(s.phase).name.lower()} · feedback session '
                f'{s.feedback_session} · {s.env_steps} env steps · reward model '
                f'v{s.reward_model_version} · policy v{s.policy_version}')
