"""``pref-rl label``: recorded pairs in, a durable store and a bag that ``pref-rl reward-train``
trains on out; labelling resumes after a crash without losing or repeating a label."""

import yaml

from pref_rl_gui.config import LabelerConfig
from pref_rl_gui.standalone import (
    BAG_DIR,
    STORE_DIR,
    StandaloneSession,
    load_labelling_set,
    pair_id,
)
from pref_rl_learner import cli
from pref_rl_learner.bag import BagWriter, TopicSpec, read_labels, read_queries, stack_definitions
from pref_rl_learner.bag.convert import LABEL, QUERY, SEGMENT, serialize
from pref_rl_learner.preferences import PreferenceStore, PreferenceStoreConfig
from pref_rl_learner.types import Choice, PreferenceLabel

SMALL = {'seed': 0,
         'reward_model': {'ensemble_size': 2, 'hidden_sizes': [16, 16], 'inputs': 'state',
                          'device': 'cpu'},
         'reward_training': {'lr': 3e-3, 'batch_size': 16, 'max_epochs': 5,
                             'target_accuracy': None}}


def write_bag(path, objects):
    defs = stack_definitions()
    topics = [TopicSpec('/segments', SEGMENT), TopicSpec('/queries', QUERY),
              TopicSpec('/labels', LABEL)]
    topic = {'Segment': '/segments', 'PreferenceQuery': '/queries',
             'PreferenceLabel': '/labels'}
    with BagWriter(path, topics, definitions=defs) as writer:
        for stamp, obj in enumerate(objects, start=1):
            writer.write(topic[type(obj).__name__], stamp, serialize(defs.typestore, obj)[1])
    return path


def oracle(query):
    left, right = query.left.rewards.sum(), query.right.rewards.sum()
    return Choice.RIGHT if right > left else Choice.LEFT


def test_recorded_queries_or_pairs_of_segments(tmp_path, query_factory, segment_factory):
    queries = [query_factory(f'q{k}', left_reward=k % 3, right_reward=1) for k in range(6)]
    session = write_bag(tmp_path / 'session', [*queries, PreferenceLabel('q0', Choice.LEFT),
                                               PreferenceLabel('q4', Choice.RIGHT)])
    found = load_labelling_set([session])
    assert [q.query_id for q in found.queries] == ['q1', 'q2', 'q3', 'q5']
    assert (found.recorded, found.already_labelled, found.formed) == (6, 2, 0)
    assert len(load_labelling_set([session], relabel=True).queries) == 6

    segments = [segment_factory(f's{k}', episode=k) for k in range(8)]
    segments += [segment_factory('long', length=20), segment_factory('other', task='reacher',
                                                                     obs_dim=10)]
    recorded = write_bag(tmp_path / 'segments', segments)
    pairs = load_labelling_set([recorded], pairs=12, seed=3)
    assert pairs.formed == 12 and len({q.query_id for q in pairs.queries}) == 12
    for q in pairs.queries:  # only comparable segments are paired
        assert q.left.segment_id != q.right.segment_id
        assert q.left.segment_id.startswith('s') and q.right.segment_id.startswith('s')
        assert q.query_id == pair_id(q.left, q.right)
    again = load_labelling_set([recorded], pairs=12, seed=3)
    assert [q.query_id for q in again.queries] == [q.query_id for q in pairs.queries]
    # With no recorded queries at all, pairs are formed by default (all 28 possible here).
    assert load_labelling_set([recorded]).formed == 28


def test_labels_reach_a_bag_reward_train_uses_and_survive_a_crash(tmp_path, query_factory,
                                                                  monkeypatch, capsys):
    queries = [query_factory(f'q{k}', left_reward=k % 3, right_reward=1.2) for k in range(24)]
    bag = write_bag(tmp_path / 'session', queries)
    out = tmp_path / 'out'
    config = LabelerConfig(labeler_id='bob', undo_window_s=60.0)
    session = StandaloneSession(out, load_labelling_set([bag]), config, fsync=False)
    model = session.model
    for _ in range(10):
        model.answer(oracle(model.current))
    model.pump(flush=True)  # what closing the window does
    model.answer(oracle(model.current))  # q10: in the outbox, not yet in the store...
    session.store.close()  # ... when the app is killed
    session.outbox.close()

    session = StandaloneSession(out, load_labelling_set([bag]), config, fsync=False)
    model = session.model
    assert session.store.label('q10') is not None  # delivered on restart, once
    assert model.current.query_id == 'q11' and model.queue_count == 12
    assert model.status.labels_stored == 11 and model.budget() == (11, 24)
    session.store.close()
    session.outbox.close()

    # The CLI with the window replaced by a person answering the rest.
    def person(session):
        while session.model.current is not None:
            session.model.answer(oracle(session.model.current))
        session.model.pump(flush=True)
        return 0

    monkeypatch.setattr('pref_rl_gui.widgets.app.run_standalone', person)
    assert cli.main(['label', '--bag', str(bag), '--out', str(out), '--labeler-id', 'bob']) == 0
    printed = capsys.readouterr().out
    assert '24 of 24 pairs labelled' in printed and 'pref-rl reward-train --bag' in printed
    labels = {lb.query_id: lb for lb in read_labels(out / BAG_DIR)}
    assert sorted(labels) == sorted(q.query_id for q in queries)
    assert all(labels[q.query_id].choice == oracle(q) for q in queries)
    assert {lb.labeler_id for lb in labels.values()} == {'bob'}
    assert len(list(read_queries(out / BAG_DIR))) == 24
    with PreferenceStore.open(out / STORE_DIR, PreferenceStoreConfig(fsync=False)) as store:
        assert store.counts()['labelled'] == 24

    config_file = tmp_path / 'small.yaml'
    config_file.write_text(yaml.safe_dump(SMALL))
    assert cli.main(['reward-train', '--bag', str(out / BAG_DIR), '--out',
                     str(tmp_path / 'reward.pt'), '--config', str(config_file)]) == 0
    assert 'labels:  24 read, 24 stored' in capsys.readouterr().out
    assert (tmp_path / 'reward.pt').is_file()
    # --export-only rewrites the derived bag from the store.
    assert cli.main(['label', '--bag', str(bag), '--out', str(out), '--export-only']) == 0
    assert len(list(read_labels(out / BAG_DIR))) == 24


def test_the_standalone_window_answers_by_key_and_exports_on_close(qtbot, tmp_path,
                                                                   query_factory):
    from PyQt5.QtCore import Qt, QTimer
    from PyQt5.QtTest import QTest
    from PyQt5.QtWidgets import QApplication

    from pref_rl_gui.widgets.app import run_standalone
    from pref_rl_gui.widgets.window import LabelerWindow

    bag = write_bag(tmp_path / 'session', [query_factory(f'q{k}') for k in range(3)])
    session = StandaloneSession(tmp_path / 'out', load_labelling_set([bag]),
                                LabelerConfig(labeler_id='carol'), fsync=False)

    def person():
        window = next(w for w in QApplication.topLevelWidgets()
                      if isinstance(w, LabelerWindow) and w.isVisible())
        assert window.banner.isHidden() and 'standalone' in window.learner_label.text()
        for key in (Qt.Key_Left, Qt.Key_D):
            QTest.keyClick(window, key)
        window.close()

    QTimer.singleShot(200, person)
    assert run_standalone(session) == 0
    # Closing sends the labels still in their undo window to the store.
    assert session.store.label('q0').choice is Choice.LEFT
    assert session.store.label('q1').choice is Choice.RIGHT
    assert session.store.label('q2') is None
    bag_out = session.close()
    assert [(lb.query_id, lb.labeler_id) for lb in read_labels(bag_out)] == [
        ('q0', 'carol'), ('q1', 'carol')]
