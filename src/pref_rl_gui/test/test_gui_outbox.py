"""The durable outbox and its delivery schedule: nothing unacknowledged is lost, nothing
acknowledged is sent twice, labels of another run are never delivered."""

import math
import os
import threading

import pytest

from pref_rl_gui.delivery import Delivery
from pref_rl_gui.outbox import LOG_NAME, EntryState, Outbox, OutboxError
from pref_rl_learner.types import Choice, PreferenceLabel


def label(query_id, choice=Choice.LEFT, stamp=1):
    return PreferenceLabel(query_id=query_id, choice=choice, labeler_id='alice',
                           response_time_s=1.5, stamp_ns=stamp)


def test_states_survive_reopening_and_replayed_labels_wait_for_their_query(tmp_path):
    with_log = tmp_path / 'box'
    box = Outbox.open(with_log)
    entries = [box.add(label(f'q{k}', stamp=k), f'q{k}-l', f'q{k}-r', now=10.0 + k)
               for k in range(5)]
    box.settle(entries[0], EntryState.ACKNOWLEDGED, 'stored')
    box.settle(entries[1], EntryState.REFUSED, 'UnknownQueryError: ...')
    box.settle(entries[2], EntryState.WITHDRAWN)
    with pytest.raises(OutboxError, match='already acknowledged'):
        box.settle(entries[0], EntryState.ACKNOWLEDGED, 'stored')
    box.close()

    box = Outbox.open(with_log)
    assert [e.state for e in box] == [EntryState.ACKNOWLEDGED, EntryState.REFUSED,
                                      EntryState.WITHDRAWN, EntryState.UNSENT,
                                      EntryState.UNSENT]
    again = list(box)
    assert again[3].label == entries[3].label  # stamps, response time, labeler: identical
    assert again[0].message == 'stored'
    assert [e.confirmed for e in box.unsent()] == [False, False]
    assert all(e.written_at == -math.inf for e in box)
    assert box.answer_for('q2') is None  # withdrawn: the query is unanswered
    assert box.answer_for('q0').state is EntryState.ACKNOWLEDGED

    # q3 comes back with the same segments: confirmed. q4 comes back naming other segments
    # (another learner run reusing the id): stale, never sent, the query is unanswered.
    assert box.confirm('q3', 'q3-l', 'q3-r').confirmed
    stale = box.confirm('q4', 'other-l', 'q4-r')
    assert stale.state is EntryState.STALE and 'other-l' in stale.message
    assert box.answer_for('q4') is None
    assert box.counts() == {'unsent': 1, 'acknowledged': 1, 'refused': 1, 'withdrawn': 1,
                            'stale': 1}
    box.close()
    assert Outbox.open(with_log).answer_for('q4') is None


def test_a_second_labeller_cannot_share_an_outbox_and_a_torn_record_is_dropped(tmp_path):
    box = Outbox.open(tmp_path)
    with pytest.raises(OutboxError, match='another labeller'):
        Outbox.open(tmp_path)
    box.add(label('q0'), 'a', 'b', now=0.0)
    box.add(label('q1'), 'c', 'd', now=0.0)
    box.close()
    # A crash in the middle of the second append: its tail never made it to disk.
    path = tmp_path / LOG_NAME
    os.truncate(path, path.stat().st_size - 7)
    box = Outbox.open(tmp_path)
    assert [e.query_id for e in box] == ['q0']
    box.add(label('q2'), 'e', 'f', now=0.0)  # appends after the last good record
    box.close()
    assert [e.query_id for e in Outbox.open(tmp_path)] == ['q0', 'q2']


def test_not_an_outbox_is_refused(tmp_path):
    from pref_rl_learner.preferences.log import RecordLog

    log = RecordLog(tmp_path / LOG_NAME)
    list(log.replay())
    log.append({'kind': 'header', 'format': 'something-else'})
    log.close()
    with pytest.raises(OutboxError, match='not a label outbox'):
        Outbox.open(tmp_path)


def test_delivery_order_undo_window_backoff_and_refusals(tmp_path):
    box = Outbox.open(tmp_path, fsync=False)
    d = Delivery(box, undo_window_s=2.0, retry_initial_s=0.5, retry_max_s=1.0)
    a = box.add(label('a'), 'a-l', 'a-r', now=0.0)
    b = box.add(label('b'), 'b-l', 'b-r', now=1.0)
    assert d.next_to_send(1.9) is None  # a is still in its undo window
    assert d.next_to_send(0.5, flush=True) is a  # the person is done: no waiting
    assert d.next_to_send(5.0) is None  # one call at a time
    assert d.failed(5.0) == 0.5 and d.attempts == 1
    assert d.next_to_send(5.4) is None  # backing off
    assert d.next_to_send(5.5) is a
    assert d.failed(5.5) == 1.0
    assert d.next_to_send(6.5) is a
    assert d.failed(6.5) == 1.0  # capped at retry_max_s
    d.learner_back()  # the service reappeared: no more waiting
    assert d.next_to_send(6.6) is a
    assert d.refused(6.6, 'learner busy, try again') == 0.5  # transient: retried
    assert d.next_to_send(7.1) is a
    d.acknowledged('already stored')  # a retry after a lost acknowledgement
    assert a.state is EntryState.ACKNOWLEDGED and a.message == 'already stored'
    assert d.next_to_send(7.1) is b  # the next one goes out at once
    assert d.refused(7.1, 'UnknownQueryError: no query') is None
    assert b.state is EntryState.REFUSED
    assert d.next_to_send(100.0) is None
    # An unconfirmed label (from an earlier run) is skipped, not blocking younger ones.
    c = box.add(label('c'), 'c-l', 'c-r', now=100.0)
    c.confirmed = False
    e = box.add(label('e'), 'e-l', 'e-r', now=100.0)
    assert d.next_to_send(102.0) is e
    box.close()


def test_background_writes_keep_order_and_nothing_is_sent_before_it_is_on_disk(tmp_path):
    box = Outbox.open(tmp_path, background=True)
    release = threading.Event()
    append = box._log.append

    def slow_append(meta, arrays=None):  # the disk is slow: records wait in the queue
        release.wait(5)
        return append(meta, arrays)

    box._log.append = slow_append
    d = Delivery(box, undo_window_s=0.0, retry_initial_s=0.1, retry_max_s=0.1)
    entries = [box.add(label(f'q{k}'), f'q{k}-l', f'q{k}-r', now=0.0) for k in range(20)]
    box.settle(entries[3], EntryState.WITHDRAWN)
    assert not entries[0].durable and d.next_to_send(10.0) is None
    release.set()
    assert box.sync(5)
    assert all(e.durable for e in entries) and d.next_to_send(10.0) is entries[0]
    box.close()
    again = Outbox.open(tmp_path)
    assert [e.query_id for e in again] == [f'q{k}' for k in range(20)]
    assert again.answer_for('q3') is None and again.counts()['withdrawn'] == 1
    again.close()


def test_a_failed_background_write_is_reported(tmp_path):
    from pref_rl_learner.preferences.log import StoreError

    box = Outbox.open(tmp_path, background=True)

    def broken(meta, arrays=None):
        raise StoreError('No space left on device')

    box._log.append = broken
    entry = box.add(label('q0'), 'a', 'b', now=0.0)
    assert box.sync(5) and not entry.durable
    (failed, error), = box.take_failures()
    assert failed is entry and 'No space left' in error
    assert box.take_failures() == []
    box.close()
