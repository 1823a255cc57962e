"""``pref-rl label`` without Qt: recorded queries in, a preference store and a bag out.

A person labels recorded segment pairs with no robot or learner running. The pairs are the
queries recorded in the bags (those the bags already hold a label for are left out unless
``relabel``), or, when the bags hold no queries or ``pairs`` is given, random pairs of
recorded segments of the same task and length (seeded; ids derived from the two segment ids,
so the same pair always has the same id).

The output directory holds

- ``preferences/``: a :class:`PreferenceStore` (fsynced) with every query shown and every
  label given; labelling resumes where it stopped (labelled queries are not shown again);
- ``outbox/``: the app's durable outbox (labels are written there first, as in the ROS app,
  and "delivered" to the store by :class:`StoreSink`);
- ``bag/``: a rosbag2 (MCAP) bag of the labelled queries and their labels on ``/queries`` and
  ``/labels``, rewritten when the session closes, which ``pref-rl reward-train --bag OUT/bag``
  trains a reward model from (and ``ros2 bag`` reads).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pref_rl_gui.config import LabelerConfig
from pref_rl_gui.model import LabelingModel
from pref_rl_gui.outbox import Outbox
from pref_rl_learner.bag import BagWriter, TopicSpec, read_labels, read_queries, read_segments
from pref_rl_learner.bag.convert import LABEL, QUERY, serialize
from pref_rl_learner.bag.typestore import stack_definitions
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.preferences import PreferenceStore, PreferenceStoreConfig
from pref_rl_learner.preferences.log import read_records
from pref_rl_learner.preferences.store import LOG_NAME
from pref_rl_learner.types import LearnerStatus, Phase, PreferenceLabel, PreferenceQuery, Segment

DEFAULT_PAIRS = 100
"""Pairs formed from recorded segments when the bags hold no queries and none are asked."""
STORE_DIR, OUTBOX_DIR, BAG_DIR = 'preferences', 'outbox', 'bag'


class StandaloneError(PrefRLError):
    """Nothing to label in the bags, or an unusable output directory."""


@dataclass
class LabellingSet:
    """The queries ``pref-rl label`` shows, and where they came from."""

    queries: list[PreferenceQuery] = field(default_factory=list)
    recorded: int = 0
    """Queries read from the bags (repeats counted once)."""
    already_labelled: int = 0
    """Recorded queries left out because the bags hold their label."""
    formed: int = 0
    """Pairs formed from recorded segments."""


def pair_id(left: Segment, right: Segment) -> str:
    """A query id for a pair of recorded segments, the same for the same pair."""
    digest = hashlib.sha1(f'{left.segment_id}\0{right.segment_id}'.encode()).hexdigest()
    return f'pair-{digest[:16]}'


def form_pairs(segments: Sequence[Segment], count: int, seed: int) -> list[PreferenceQuery]:
    """Up to ``count`` random pairs of distinct segments of one task, length and shapes."""
    groups: dict[tuple, list[Segment]] = {}
    for s in segments:
        groups.setdefault((s.task, s.length, s.observation_shape, s.action_shape), []).append(s)
    usable = [g for g in groups.values() if len(g) >= 2]
    if not usable:
        return []
    rng = np.random.default_rng(seed)
    weights = np.array([len(g) for g in usable], dtype=np.float64)
    seen: set[frozenset[str]] = set()
    out: list[PreferenceQuery] = []
    for _ in range(20 * count):
        if len(out) == count:
            break
        group = usable[rng.choice(len(usable), p=weights / weights.sum())]
        i, j = rng.choice(len(group), size=2, replace=False)
        left, right = group[int(i)], group[int(j)]
        key = frozenset((left.segment_id, right.segment_id))
        if key in seen:
            continue
        seen.add(key)
        out.append(PreferenceQuery(query_id=pair_id(left, right), left=left, right=right,
                                   sampler='standalone-uniform'))
    return out


def load_labelling_set(bags: Sequence[str | Path], *, pairs: int = 0, seed: int = 0,
                       relabel: bool = False) -> LabellingSet:
    """The queries to label from ``bags`` (see the module docstring).

    Raises:
        BagError: a bag is missing or unreadable (names the file).
        StandaloneError: the bags hold neither queries nor two comparable segments.
    """
    found = LabellingSet()
    recorded: dict[str, PreferenceQuery] = {}
    labelled: set[str] = set()
    for bag in bags:
        for query in read_queries(bag):
            recorded.setdefault(query.query_id, query)
        labelled.update(label.query_id for label in read_labels(bag))
    found.recorded = len(recorded)
    if not pairs:
        for query in recorded.values():
            if query.query_id in labelled and not relabel:
                found.already_labelled += 1
            else:
                found.queries.append(query)
    if pairs or not recorded:
        segments = [s for bag in bags for s in read_segments(bag)]
        found.queries = form_pairs(segments, pairs or DEFAULT_PAIRS, seed)
        found.formed = len(found.queries)
        if not found.queries:
            raise StandaloneError(f'{", ".join(map(str, bags))}: no recorded queries and no two '
                                  'segments of the same task and length to pair')
    return found


class StoreSink:
    """Delivers labels to a :class:`PreferenceStore` at once (the standalone "learner")."""

    def __init__(self, store: PreferenceStore, total: int) -> None:
        self.store = store
        self.total = total
        self.model: LabelingModel | None = None

    def submit(self, label: PreferenceLabel) -> None:
        """Store ``label`` (fsynced) and report the outcome to the model."""
        assert self.model is not None, 'bind a model first'
        try:
            message = 'stored' if self.store.add_label(label) else 'already stored'
            ok = True
        except PrefRLError as err:
            ok, message = False, f'{type(err).__name__}: {err}'
        self.model.on_submit_result(label.query_id, ok, message)
        self.model.on_status(self.status())

    def status(self) -> LearnerStatus:
        """Progress as a learner status: labels stored out of the queries to label."""
        counts = self.store.counts()
        return LearnerStatus(phase=Phase.FEEDBACK, labels_stored=counts['labelled'],
                             labels_skipped=counts['skip'] + counts['incomparable'],
                             feedback_budget=self.total, queries_published=counts['queries'])


class StandaloneSession:
    """The store, outbox and model of one ``pref-rl label`` run in ``out_dir``.

    Raises:
        StoreError / OutboxError: the store or outbox is in use or damaged.
    """

    def __init__(self, out_dir: str | Path, labelling: LabellingSet,
                 config: LabelerConfig | None = None, *, fsync: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.labelling = labelling
        config = config or LabelerConfig()
        self.store = PreferenceStore.open(self.out_dir / STORE_DIR,
                                          PreferenceStoreConfig(fsync=fsync))
        self.problems: list[str] = []
        try:
            self.outbox = Outbox.open(config.outbox_dir or self.out_dir / OUTBOX_DIR,
                                      fsync=fsync, background=True)
        except BaseException:
            self.store.close()
            raise
        self.sink = StoreSink(self.store, len(labelling.queries))
        self.model = LabelingModel(config, self.outbox, sink=self.sink, standalone=True)
        self.sink.model = self.model
        for query in labelling.queries:
            self._offer(query)
        self.model.on_status(self.sink.status())
        self.model.pump()

    def _offer(self, query: PreferenceQuery) -> None:
        ids = (query.left.segment_id, query.right.segment_id)
        if not self.store.has_query(query.query_id):
            try:
                self.store.add_query(query)
            except PrefRLError as err:
                self.problems.append(f'{query.query_id}: {err}')
                self.model.reject_query(query.query_id, str(err))
                return
        if self.store.label(query.query_id) is not None:
            self.outbox.confirm(query.query_id, *ids)  # a label stored before a crash
        else:
            self.model.add_query(query)

    def close(self) -> Path:
        """Write ``bag/`` from the store, release store and outbox; returns the bag path."""
        try:
            return export_bag(self.store, self.out_dir / BAG_DIR)
        finally:
            self.store.close()
            self.outbox.close()


def labelled_query_ids(store: PreferenceStore) -> list[str]:
    """Ids of the store's labelled queries, in the order they were labelled."""
    ids = [r.meta['query_id'] for r in read_records(store.directory / LOG_NAME)
           if r.meta.get('kind') == 'label']
    return [i for i in ids if store.label(i) is not None]


def export_bag(store: PreferenceStore, path: str | Path) -> Path:
    """Write the store's labelled queries and their labels as a bag at ``path`` (a bag
    already there is replaced: it is derived from the store). Returns ``path``."""
    path = Path(path)
    staging = path.with_name(f'.{path.name}.new')
    if staging.exists():
        shutil.rmtree(staging)
    defs = stack_definitions()
    topics = [TopicSpec('/queries', QUERY), TopicSpec('/labels', LABEL)]
    stamp = 0
    with BagWriter(staging, topics, definitions=defs) as writer:
        for query_id in labelled_query_ids(store):
            label = store.label(query_id)
            assert label is not None
            stamp = max(stamp + 2, label.stamp_ns)  # recorded when answered, in order
            query = serialize(defs.typestore, store.query(query_id))[1]
            writer.write('/queries', stamp - 1, query)
            writer.write('/labels', stamp, serialize(defs.typestore, label)[1])
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)
    return path
