"""The window offscreen (pytest-qt): keys and buttons answer, undo, pause and replay;
clips play in step and loop; frames are painted, state-only clips drawn; the banner,
budget, plot and status line follow the model."""

import numpy as np
import pytest
from PyQt5.QtCore import QEvent, Qt
from PyQt5.QtGui import QColor, QKeyEvent
from PyQt5.QtWidgets import QApplication

from pref_rl_gui.widgets.app import LabelerApp
from pref_rl_gui.widgets.window import LabelerWindow
from pref_rl_learner.types import Choice, LearnerStatus, Phase


@pytest.fixture
def window(qtbot, model_factory, query_factory):
    def make(queries=4, **config):
        config.setdefault('playback_steps_per_s', 50.0)
        config.setdefault('loop_pause_s', 0.1)
        model, sink = model_factory(**config)
        w = LabelerWindow(model)
        qtbot.addWidget(w)
        for k in range(queries):
            model.add_query(query_factory(f'q{k}'))
        w.show()
        return w, model, sink
    return make


def choices(model):
    return [(e.query_id, e.label.choice) for e in model.outbox if e.state.value == 'unsent']


def test_answer_keys_and_buttons(qtbot, window):
    w, model, _ = window(queries=8)
    for action, key in (('left', '← / A'), ('right', '→ / D'), ('equal', '↓ / S'),
                        ('incomparable', 'I'), ('skip', 'Space / K')):
        assert w.buttons[action].text().startswith(key)
    for key in (Qt.Key_Left, Qt.Key_D, Qt.Key_Down, Qt.Key_I, Qt.Key_Space, Qt.Key_A):
        qtbot.keyClick(w, key)
    # Holding a key down answers once: auto-repeated presses are ignored.
    QApplication.sendEvent(w, QKeyEvent(QEvent.KeyPress, Qt.Key_Right, Qt.NoModifier, '',
                                        True))
    qtbot.mouseClick(w.buttons['skip'], Qt.LeftButton)
    assert choices(model) == [('q0', Choice.LEFT), ('q1', Choice.RIGHT), ('q2', Choice.EQUAL),
                              ('q3', Choice.INCOMPARABLE), ('q4', Choice.SKIP),
                              ('q5', Choice.LEFT), ('q6', Choice.SKIP)]
    assert model.current.query_id == 'q7'
    assert '1</b> waiting' not in w.counts_label.text() and '7</b> unsent' in w.counts_label.text()
    qtbot.keyClick(w, Qt.Key_K)
    assert model.current is None and not w.buttons['left'].isEnabled()
    assert w.query_label.text() == '<b>No query waiting</b>'
    qtbot.keyClick(w, Qt.Key_Left)  # nothing shown: no label
    assert len(choices(model)) == 8


def test_undo_pause_and_replay(qtbot, window):
    w, model, _ = window(queries=2)
    qtbot.keyClick(w, Qt.Key_Left)
    assert w.buttons['undo'].isEnabled() and 'U to undo' in w.counts_label.text()
    qtbot.keyClick(w, Qt.Key_Z, Qt.ControlModifier)
    assert model.current.query_id == 'q0' and choices(model) == []
    qtbot.keyClick(w, Qt.Key_Right)
    qtbot.keyClick(w, Qt.Key_U)
    assert model.current.query_id == 'q0' and not w.buttons['undo'].isEnabled()

    player = w.player
    qtbot.waitUntil(lambda: player.step > 2, timeout=3000)
    qtbot.keyClick(w, Qt.Key_P)
    assert not player.playing and w.buttons['pause'].text() == 'P  Resume'
    paused_at = player.step
    qtbot.wait(150)
    assert player.step == paused_at
    qtbot.keyClick(w, Qt.Key_R)  # replay: from the start, playing again
    assert player.playing and player.step == 0
    qtbot.waitUntil(lambda: player.step > 0, timeout=3000)


def test_clips_play_in_step_and_loop(qtbot, window):
    w, _, _ = window(queries=1)
    seen = []
    w.player.step_changed.connect(
        lambda step, steps: seen.append((step, w.left_view.step, w.right_view.step)))
    qtbot.waitUntil(lambda: any(s == 10 for s, _, _ in seen) and seen[-1][0] < 10,
                    timeout=5000)  # reached the end, then started over
    assert all(a == b == c for a, b, c in seen)
    assert w.player.steps == 10 and w.player.rate() > 0


def test_frames_are_painted_and_state_only_clips_drawn(qtbot, window, query_factory,
                                                       segment_factory):
    w, model, _ = window(queries=0)
    red = query_factory('red', frames=True)
    red.left.frames[...] = (255, 0, 0)  # writable: built by the test
    model.add_query(red)
    left = w.left_view.grab().toImage()
    center = QColor(left.pixel(left.width() // 2, left.height() // 2))
    assert (center.red(), center.green(), center.blue()) == (255, 0, 0)
    assert w.left_view.clip.has_frames
    model.answer(Choice.LEFT)
    model.add_query(query_factory('plain'))  # no frames: the top view of the point mass
    assert not w.left_view.clip.has_frames
    image = w.left_view.grab().toImage()
    colors = {QColor(image.pixel(x, y)).name() for x in range(0, image.width(), 4)
              for y in range(0, image.height(), 4)}
    assert '#ff0000' not in colors and '#2b2d31' in colors  # the arena is drawn
    # Frames that do not fit the segment are refused with a message; the drawing stays.
    assert not model.on_frames('plain-l', np.zeros((7, 8, 8, 3), np.uint8), 5)
    assert 'unusable' in w.message_label.text()
    assert model.on_frames('plain-l', np.full((2, 8, 8, 3), 200, np.uint8), 5)
    assert not w.left_view.clip.has_frames  # until both sides have frames, both are drawn
    assert model.on_frames('plain-r', np.full((2, 8, 8, 3), 100, np.uint8), 5)
    assert w.left_view.clip.has_frames and w.right_view.clip.has_frames
    assert not w.frames_note.isVisibleTo(w)
    # Frames that cannot be had: both clips drawn, and a note on the query says why.
    model.answer(Choice.LEFT)
    model.add_query(query_factory('evicted'))
    assert not w.frames_note.isVisibleTo(w)
    model.on_frames('evicted-l', np.full((2, 8, 8, 3), 200, np.uint8), 5)
    model.on_frames_failed('evicted-r', "segment 'evicted-r' is not in the cache")
    assert w.frames_note.isVisibleTo(w) and not w.right_view.clip.has_frames
    assert "clip B (right): segment 'evicted-r' is not in the cache" in w.frames_note.text()
    # The last full episode appears in its pane.
    for k in range(2):
        model.on_segment(segment_factory(f'e{k}', start_step=10 * k, end=(k == 1)))
    assert w.episode_view.clip.steps == 20 and w.episode_player.steps == 20


def test_banner_budget_plot_and_messages_follow_the_model(qtbot, window, clock):
    w, model, _ = window(queries=1)
    assert w.banner.isVisibleTo(w) and 'Waiting for the learner' in w.banner.text()
    model.set_learner_available(True)
    assert not w.banner.isVisibleTo(w)
    qtbot.keyClick(w, Qt.Key_Left)
    model.set_learner_available(False)
    assert w.banner.isVisibleTo(w) and '1 label saved locally' in w.banner.text()
    assert w.budget_bar.format() == 'budget: unknown'
    for stored, acc in ((10, float('nan')), (40, 0.7), (80, 0.85)):
        clock.advance(30)
        model.on_status(LearnerStatus(phase=Phase.LEARNING, labels_stored=stored,
                                      feedback_budget=300, reward_model_accuracy=acc,
                                      reward_model_version=stored // 40, env_steps=5000))
    assert (w.budget_bar.value(), w.budget_bar.maximum()) == (80, 300)
    assert [p.labels_stored for p in w.plot.points] == [10, 40, 80] and w.plot.budget == 300
    assert 'learning' in w.learner_label.text() and '5000 env steps' in w.learner_label.text()
    model.reject_query('bad', 'MalformedMessageError: frames: 3 values')
    assert 'bad' in w.message_label.text() and 'f28b82' in w.message_label.styleSheet()
    plot = w.plot.grab().toImage()  # paints the series without errors
    assert plot.width() > 0


def test_app_sends_due_labels_and_asks_for_frames(qtbot, window, clock):
    requested = []
    w, model, sink = window(queries=3, undo_window_s=2.0)
    LabelerApp(model, w, requested.extend)
    assert requested[:2] == ['q0-l', 'q0-r']  # the query shown lacks frames
    qtbot.keyClick(w, Qt.Key_Left)
    qtbot.wait(250)
    assert sink.sent == []  # still in its undo window
    clock.advance(2.0)  # the app's timer sends it once the window is over
    qtbot.waitUntil(lambda: len(sink.sent) == 1, timeout=3000)
    assert sink.sent[0].query_id == 'q0'


def test_the_window_names_the_target_the_clips_are_judged_against(qtbot, window, tmp_path):
    # A simulated session names its target (the frames draw it); a real arm's session asks
    # for the target the person has in mind, which nobody else knows.
    w, _, _ = window(queries=1, target='eval:3', outbox_dir=str(tmp_path / 'a'))
    assert 'target eval:3' in w.help_label.text()
    for target in ('person', ''):
        w, _, _ = window(queries=1, target=target, outbox_dir=str(tmp_path / target / 'b'))
        assert w.help_label.text() == 'Which clip comes closer to the target you have in mind?'
