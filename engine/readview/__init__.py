"""The read view: what the read path keeps in memory so that a search needs no LMDB read.

Owns: `ReadView`, the in-memory mirror of LMDB's live labels (engine/readview/labels.py),
dense vectors (engine/readview/vectors.py) and payload index entries
(engine/readview/postings.py) of one collection, loaded after recovery and changed by the
applier with each batch: `prepare` before the commit (outside any lock), `apply` inside it.
Not here: LMDB itself (engine/store/), the graphs (engine/vectors/hnsw.py), what a read does
with the view (engine/query/reads.py).

Why: a search used to read LMDB per hit (the rescoring vectors, label -> point key, the
point for its version) and, for a filtered search, one vector per candidate. Those reads
were most of a search's time in Python (tools/bench_filtered.py and the note on issue 15
have the measurements); the view answers them from arrays.

Consistency: the view changes only while the applier holds the visibility lock exclusively
(the same section that commits the batch to LMDB and takes dead labels out of the graphs),
and readers hold that lock shared across a graph search, their view lookups and any LMDB
read that follows. So the view, the graphs' live labels and LMDB always agree for a reader:
a label the graph returns that the view does not know was added for a batch not committed
yet, and is not visible.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from engine.filters.conditions import Filter
from engine.ops import CollectionConfig
from engine.readview.labels import DAMAGED_VERSION, LabelTable
from engine.readview.postings import COMPACT_SLACK_ENTRIES, FieldPostings, Postings
from engine.readview.vectors import VectorCache
from engine.store import payload_index, planner
from engine.store.payload_index import IndexSpec
from engine.store.store import IndexDelta, Store

IMPLICIT_FIELDS_MAX = 16  # unindexed fields a collection's view builds postings for
# An unindexed field with more distinct values than this (ids, timestamps) is not mirrored:
# its postings would cost about 200 bytes per point for lookups a payload index should serve.
IMPLICIT_VALUES_MAX = 65_536
# The scan that builds implicit postings holds the read lock shared, so writes wait for it
# (about 3 s per million points here): past this many points it is not done, and a payload
# index is the way to a fast filter.
IMPLICIT_POINTS_MAX = 250_000


@dataclass
class PreparedBatch:
    """What `ReadView.prepare` computed for one batch, for `apply` to take in."""

    # (label, version op id, field, encoded value): payload index entries of the point
    # versions the batch wrote.
    entries: list[tuple[int, int, FieldPostings, bytes]] = field(default_factory=list)
    # The postings `entries` covers; one a search built meanwhile (an implicit field, from
    # a scan that did not see this batch) gets the batch's entries in `apply`.
    fields: tuple[FieldPostings, ...] = ()


@dataclass
class ReadView:
    labels: LabelTable
    vectors: dict[str, VectorCache]  # by dense vector name
    postings: Postings
    _implicit_lock: threading.Lock = field(default_factory=threading.Lock)
    # (field, type) found to have too many distinct values: not scanned again until a
    # restart (a real payload index is the answer for those).
    _implicit_declined: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def load(cls, store: Store, config: CollectionConfig) -> ReadView:
        """The view of `store` as it is now (call it before any writer runs)."""
        labels = LabelTable()
        damaged_keys = set()
        for key, label, version_op_id in store.iter_point_labels():
            if label < 0:
                damaged_keys.add(key)
            else:
                labels.add(label, key, version_op_id)
        # A damaged point stays visible to searches, and reading it raises as it did before
        # the view existed (a collection with one bad value still opens; `keel check` says
        # what is damaged).
        for key, label in store.labels_of_damaged(damaged_keys).items():
            labels.add(label, key, DAMAGED_VERSION)
        vectors = {}
        for name, vector_config in config.vectors.items():
            if vector_config.is_multivector:
                continue  # matrices of varying length: MaxSim reads them from LMDB
            cache = VectorCache(vector_config.size, store.count_vectors(name))
            cache.load(store.iter_vector_values(name))
            vectors[name] = cache
        view = cls(labels, vectors, Postings())
        view.sync_postings(store)
        return view

    def prepare(self, delta: IndexDelta) -> PreparedBatch:
        """The work of `apply` that needs no lock (index values of the born points' payloads),
        done before the commit. Applier thread only."""
        fields = tuple(self.postings.fields.values())  # searches may add fields meanwhile
        prepared = PreparedBatch(fields=fields)
        entries_of = self.postings.entries_of
        for written in delta.written_points:
            for field_postings, value in entries_of(written.payload, fields):
                prepared.entries.append(
                    (written.label, written.version_op_id, field_postings, value)
                )
        return prepared

    def apply(self, delta: IndexDelta, prepared: PreparedBatch, store: Store) -> None:
        """Take in one committed batch; the caller holds the visibility lock exclusively.
        `store` has committed it: payload indexes created by the batch are read from it."""
        self.labels.generation += 1
        for written in delta.written_points:
            if written.is_born:
                self.labels.add(written.label, written.key, written.version_op_id)
            else:
                self.labels.set_version(written.label, written.version_op_id)
        for label in delta.killed_labels:
            self.labels.kill(label)
        self.postings.add_entries(prepared.entries)
        built_meanwhile = tuple(
            field for field in self.postings.fields.values() if field not in prepared.fields
        )
        if built_meanwhile:
            self.postings.add_entries(
                (written.label, written.version_op_id, field_postings, value)
                for written in delta.written_points
                for field_postings, value in self.postings.entries_of(
                    written.payload, built_meanwhile
                )
            )
        self.sync_postings(store)
        for name, cache in self.vectors.items():
            removed = delta.removed_labels.get(name)
            if removed:
                cache.remove(removed)
            added = delta.added_labels.get(name)
            if added:
                cache.put(added, delta.added_vectors[name])

    def sync_postings(self, store: Store) -> None:
        """Mirror the store's payload indexes as they are now: build the ones created (or
        retyped) since the last call from LMDB, forget dropped ones, compact the ones whose
        dead entries outgrew their live ones."""
        specs = {
            name: spec for name, spec in store.index_specs.items() if Postings.is_mirrored(spec)
        }
        fields = self.postings.fields
        for name in [name for name in fields if name not in specs and not fields[name].is_implicit]:
            del fields[name]
        for name, spec in store.index_specs.items():
            if name not in specs and name in fields:
                del fields[name]  # a real index of another kind (text, geo) replaces it
        for name, spec in specs.items():
            current = fields.get(name)
            if current is not None and current.is_implicit:
                current = None  # a real index now: built from LMDB, as the planner sees it
            if current is None or _definition(current.spec) != _definition(spec):
                fields[name] = self._built(store, spec)
            elif current.entry_count > 2 * current.entries_at_build + COMPACT_SLACK_ENTRIES:
                fields[name] = current.compacted(self.labels)

    def planning_specs(self, specs: dict[str, IndexSpec]) -> dict[str, IndexSpec]:
        """The payload indexes and the view's implicit postings, for planning a search."""
        implicit = {
            name: field.spec
            for name, field in self.postings.fields.items()
            if field.is_implicit and name not in specs
        }
        return {**specs, **implicit} if implicit else specs

    def ensure_implicit(self, filter_: Filter, specs: dict[str, IndexSpec], store: Store) -> None:
        """Build in-memory postings for the fields `filter_` matches or ranges on that have
        no payload index (planner.unindexed_fields), so that its searches plan as if they
        had one. The caller holds the visibility lock shared: no batch commits during the
        build (one scan of the payloads), and the applier keeps the postings afterwards."""
        if self.labels.live_count > IMPLICIT_POINTS_MAX:
            return
        wanted = planner.unindexed_fields(filter_, specs)
        fields = self.postings.fields
        missing = {
            name: kind
            for name, kind in wanted.items()
            if name not in fields and (name, kind) not in self._implicit_declined
        }
        if not missing:
            return
        with self._implicit_lock:
            missing = {name: kind for name, kind in missing.items() if name not in fields}
            implicit_count = sum(field.is_implicit for field in fields.values())
            room = IMPLICIT_FIELDS_MAX - implicit_count
            for name, kind in list(missing.items())[: max(room, 0)]:
                built = self._scanned(store, IndexSpec(name, kind, None), IMPLICIT_VALUES_MAX)
                if built is None:
                    self._implicit_declined.add((name, kind))
                else:
                    fields[name] = built

    def _scanned(
        self, store: Store, spec: IndexSpec, values_max: int | None = None
    ) -> FieldPostings | None:
        """Implicit postings of one field, from a scan of every payload; None once it
        meets more than `values_max` distinct values."""
        built = FieldPostings(spec, is_implicit=True)
        path = built.path
        version_of = self.labels.version_of
        for point in store.iter_points(None):
            for value in payload_index.index_values(spec.schema_type, path, point.payload or {}):
                built.add(value, point.label, version_of(point.label))
            if values_max is not None and len(built.by_value) > values_max:
                return None
        built.entries_at_build = built.entry_count
        return built

    def _built(self, store: Store, spec: IndexSpec) -> FieldPostings:
        """One field's postings from its LMDB entries (a scan of that index), each value's
        labels sorted and written as one array (not entry by entry: a third of the time)."""
        built = FieldPostings(spec)
        get_label = self.labels.label_of
        by_value: dict[bytes, list[int]] = {}
        for value, key in store.iter_index_entries(spec.field_name):
            label = get_label(key)
            if label is not None:
                by_value.setdefault(value, []).append(label)
        for value in sorted(by_value):
            labels = np.sort(np.asarray(by_value[value], dtype=np.int64))
            built.add_many(value, labels, self.labels.versions_of(labels))
        built.entries_at_build = built.entry_count
        return built

    def memory_bytes(self) -> int:
        """What the view holds in memory, estimated from its arrays and objects."""
        return (
            self.labels.memory_bytes()
            + sum(c.memory_bytes() for c in self.vectors.values())
            + self.postings.memory_bytes()
        )


def _definition(spec: IndexSpec) -> tuple:
    """What makes two specs the same index (points_count changes with every write)."""
    return (spec.schema_type, repr(spec.params))
