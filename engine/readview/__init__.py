"""The read view: what the read path keeps in memory so that a search needs no LMDB read.

Owns: `ReadView`, the in-memory mirror of LMDB's live labels (engine/readview/labels.py) and
dense vectors (engine/readview/vectors.py) of one collection, loaded after recovery and
changed by the applier inside the commit of each batch.
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

from dataclasses import dataclass

from engine.ops import CollectionConfig
from engine.readview.labels import DAMAGED_VERSION, LabelTable
from engine.readview.vectors import VectorCache
from engine.store.store import IndexDelta, Store

LOAD_CHUNK_COUNT = 65_536  # vectors read from LMDB per chunk while loading


@dataclass
class ReadView:
    labels: LabelTable
    vectors: dict[str, VectorCache]  # by dense vector name

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
            cache = VectorCache(vector_config.size, store.count_vectors(name))
            for chunk_labels, matrix, damaged in store.iter_vectors_checked(
                name, vector_config.size, LOAD_CHUNK_COUNT
            ):
                cache.put(chunk_labels, matrix)
                cache.damaged.update(damaged)
            vectors[name] = cache
        return cls(labels, vectors)

    def apply(self, delta: IndexDelta) -> None:
        """Take in one committed batch; the caller holds the visibility lock exclusively."""
        for born in delta.born_points:
            self.labels.add(born.label, born.key, born.version_op_id)
        for label in delta.killed_labels:
            self.labels.kill(label)
        for name, cache in self.vectors.items():
            removed = delta.removed_labels.get(name)
            if removed:
                cache.remove(removed)
            added = delta.added_labels.get(name)
            if added:
                cache.put(added, delta.added_vectors[name])

    def memory_bytes(self) -> int:
        """What the view holds in memory, estimated from its arrays and objects."""
        return self.labels.memory_bytes() + sum(c.memory_bytes() for c in self.vectors.values())
