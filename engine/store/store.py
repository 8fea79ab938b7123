"""LMDB environment of one collection: id map, payloads, vectors, labels, applied_op_id.

Owns: the files in <collection>/lmdb/ and what each LMDB database holds.
Not here: the WAL (engine/wal/log.py), the in-memory HNSW graphs (engine/vectors/hnsw.py), when to apply (applier.py).

Every version of a point gets a fresh *label* (u64, never reused): the key of its vectors
here and of its node in hnswlib. Overwriting or deleting a point kills the old label. Labels
never change meaning, which lets an index checkpoint catch up with LMDB by looking only at
labels born after it (`labels` from its next_label) and labels that died after it (`dead`).

| database   | key                         | value (CBOR unless said)                       |
|------------|-----------------------------|------------------------------------------------|
| meta       | b"applied_op_id", b"next_label", b"format" | u64 big-endian                  |
| meta       | b"vector_schema"            | sealed CBOR {"op_id", "config", "created"}: the  |
|            |                             | config (CollectionConfig.to_json_dict) after the |
|            |                             | last vector-name op, and name -> op that made it |
| points     | ops.point_key(id)           | [label, version op_id, payload or null, names] |
| labels     | label u64 big-endian        | point key (raw bytes)                          |
| dead       | label u64 big-endian        | [death op_id, names]                           |
| v:<name>   | label u64 big-endian        | float32 little-endian bytes (raw); for a       |
|            |                             | multivector name, its rows one after the other |
|            |                             | (row count = bytes / (4 * dim), at least one)  |
| s:<name>   | label u64 big-endian        | sparse: u32 LE indices, then f32 LE values     |
| i:<name>   | index u32 BE + label u64 BE | f32 LE value: sparse inverted index (postings) |
| schema     | payload field name          | payload index definition (engine/store/payload_index.py)    |
| pindex     | field + encoded value       | point key, dupsort (engine/store/payload_index.py)          |

Values of points, labels, dead, v:, s: and schema are sealed with a CRC (engine/store/checksum.py); the
derived databases (i:, pindex) are not: `keel check` recomputes and compares them. `format`
is STORE_FORMAT; a store without it (written before checksums) is refused, not misread.

The vector names are the `vector_schema` record's once a vector-name op (ops.CreateVectorName,
DeleteVectorName) was applied: it is written in that op's transaction, so it always agrees
with the databases; before that, the names the caller passes (config.json's). A vector-name
op is applied alone in its batch (`write_batch`), and opens or drops its databases there.

`applied_op_id` is written in the same transaction as the data it covers, so replaying the
WAL from it is idempotent. The environment uses metasync=False: a power loss may roll back
the last transactions, so `sync()` is called before anything relies on LMDB being durable
(WAL truncation, index checkpoints).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cbor2
import lmdb
import numpy as np

from engine import files, limits
from engine.errors import CorruptionError, StorageError
from engine.filters.conditions import Filter
from engine.locks import ReadWriteLock
from engine.logfmt import log_event
from engine.ops import (
    CollectionConfig,
    CreateVectorName,
    Operation,
    SchemaOperation,
    SparseVector,
    config_after,
    is_schema_op,
)
from engine.store import payload_index
from engine.store.checksum import seal, unseal
from engine.store.mutations import (
    BatchWriter,
    CompileFilter,
    Databases,
    Predicate,
    WrittenPoint,
    dump_point,
    label_key,
    load_label_and_version,
    load_point,
)

log = logging.getLogger(__name__)

_APPLIED_KEY = b"applied_op_id"
_NEXT_LABEL_KEY = b"next_label"
_FORMAT_KEY = b"format"
_SCHEMA_KEY = b"vector_schema"
# Named databases: the fixed ones, plus one per dense and two per sparse name, each kind up to
# VECTOR_NAMES_MAX; vector-name ops open more after the environment is open.
_DBS_MAX = 8 + 3 * limits.VECTOR_NAMES_MAX
_NO_OP_ID = -1
STORE_FORMAT = 1  # 1: sealed values (engine/store/checksum.py)


@dataclass
class StoredPoint:
    key: bytes
    label: int
    version: int
    payload: dict[str, Any] | None
    names: list[str]


@dataclass
class IndexDelta:
    """What one applied batch changes in the vector indexes (per vector name) and in the
    read view (engine/readview/: the labels born and killed)."""

    added_labels: dict[str, list[int]] = field(default_factory=dict)
    added_vectors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    removed_labels: dict[str, list[int]] = field(default_factory=dict)
    points_written: int = 0
    written_points: list[WrittenPoint] = field(default_factory=list)
    killed_labels: list[int] = field(default_factory=list)
    # A vector-name op's batch (applied alone): the op and the config it leaves.
    schema_op: SchemaOperation | None = None
    schema_config: CollectionConfig | None = None
    # op_id -> the first missing id an id-listed edit met (engine/store/mutations.py); the applier answers
    # the op's waiter with it.
    missing_point_ids: dict[int, Any] = field(default_factory=dict)


def _ignore_delta(delta: IndexDelta) -> None:
    """Default hook: a store used without vector indexes."""


def _no_filters(filter_: Filter, index_specs: dict[str, payload_index.IndexSpec]) -> Predicate:
    raise AssertionError("an op with a filter reached a store applied without compile_filter")


class Store:
    """One LMDB environment; write transactions come only from the applier thread."""

    def __init__(
        self,
        path: Path,
        vector_names: list[str],
        map_bytes_initial: int,
        sparse_names: tuple[str, ...] = (),
        multivector_dims: dict[str, int] | None = None,
    ) -> None:
        self.path = path
        self._map_bytes = map_bytes_initial
        self._lock = ReadWriteLock()  # exclusive only around set_mapsize
        self._env = lmdb.open(
            str(path),
            map_size=map_bytes_initial,
            max_dbs=max(_DBS_MAX, 8 + len(vector_names) + 2 * len(sparse_names)),
            subdir=True,
            sync=True,
            metasync=False,
            writemap=False,
            readahead=False,
            lock=True,
            max_readers=256,
            create=True,
        )
        # LMDB creates data.mdb on first open; its directory entry must survive power loss
        # before the WAL below applied_op_id may ever be truncated.
        files.fsync_directory(path)
        self._meta = self._env.open_db(b"meta")
        # The config after the last vector-name op, or None: the caller's names are the truth.
        self.schema_config, self.created_op_ids = self._read_schema()
        # With no record, the config (config.json's) the store was opened for; set by recovery.
        self.base_config: CollectionConfig | None = None
        if self.schema_config is not None:
            vector_names = list(self.schema_config.vectors)
            sparse_names = tuple(self.schema_config.sparse_vectors)
            multivector_dims = self.schema_config.multivector_dims()
        # Names among vector_names whose values are matrices (CollectionConfig.multivector_dims).
        self.multivector_dims = dict(multivector_dims or {})
        assert set(self.multivector_dims) <= set(vector_names), (multivector_dims, vector_names)
        self.vector_names = list(vector_names)
        self.sparse_names = list(sparse_names)
        self._points = self._env.open_db(b"points")
        self._labels = self._env.open_db(b"labels")
        self._dead = self._env.open_db(b"dead")
        self._vectors = {name: self._env.open_db(b"v:" + name.encode()) for name in vector_names}
        self._schema = self._env.open_db(b"schema")
        self._pindex = self._env.open_db(b"pindex", dupsort=True)
        self._sparse = {name: self._env.open_db(b"s:" + name.encode()) for name in sparse_names}
        self._inverted = {name: self._env.open_db(b"i:" + name.encode()) for name in sparse_names}
        self._dbs = Databases(
            self._points,
            self._labels,
            self._dead,
            self._vectors,
            self._schema,
            self._pindex,
            self._sparse,
            self._inverted,
            self.multivector_dims,
        )
        self._check_format()
        with self._env.begin() as txn:
            self.applied_op_id = _read_u64(txn, self._meta, _APPLIED_KEY, _NO_OP_ID)
            self.next_label = _read_u64(txn, self._meta, _NEXT_LABEL_KEY, 0)
            # Replaced whole (never mutated) on commit, so readers may hold the old dict.
            self.index_specs: dict[str, payload_index.IndexSpec] = {
                bytes(name).decode(): payload_index.IndexSpec(
                    bytes(name).decode(), *cbor2.loads(unseal(value, "schema", name))
                )
                for name, value in txn.cursor(self._schema)
            }

    def close(self) -> None:
        self._env.close()

    def skip_op_ids_through(self, op_id: int) -> None:
        """Record ops up to `op_id` as applied without any data, durably: the collection's
        next op is op_id + 1. Only for a store no applier uses (a collection being created
        or restored in tmp/) whose WAL holds nothing past applied_op_id; op ids in between
        were handed out by an earlier collection of the same name and must never be reused.
        """
        assert op_id >= self.applied_op_id, (op_id, self.applied_op_id)
        with self._env.begin(write=True) as txn:
            txn.put(_APPLIED_KEY, op_id.to_bytes(8, "big"), db=self._meta)
        self.sync()  # durable before the WAL that starts above it is laid out
        self.applied_op_id = op_id

    def copy_snapshot(self, directory: Path) -> int:
        """Write a compact copy of the environment (`directory`/data.mdb; the directory must
        exist) as of ONE read transaction, and return the applied_op_id that transaction saw.
        Writers go on meanwhile; a map resize waits for the copy (set_mapsize needs no open
        transaction). Not durable: the caller fsyncs what it keeps."""
        return self.copy_snapshot_with_names(directory)[0]

    def copy_snapshot_with_names(self, directory: Path) -> tuple[int, CollectionConfig | None]:
        """`copy_snapshot`, and the config whose vector names the copy has: its
        `vector_schema` record's, or with none, `base_config`'s (None if not set)."""
        with self._lock.shared(), self._env.begin() as txn:
            op_id = _read_u64(txn, self._meta, _APPLIED_KEY, _NO_OP_ID)
            raw = txn.get(_SCHEMA_KEY, db=self._meta)
            self._env.copy(str(directory), compact=True, txn=txn)
        if raw is None:
            return op_id, self.base_config
        record = cbor2.loads(unseal(raw, "meta", _SCHEMA_KEY))
        return op_id, CollectionConfig.from_json_dict(record["config"])

    def sync(self) -> None:
        """Force everything committed (meta pages included) to disk."""
        self._env.sync(True)

    # ---- writing (applier thread only) -----------------------------------------------------

    def write_batch(
        self,
        records: list[tuple[int, Operation]],
        compile_filter: CompileFilter = _no_filters,
        on_prepared: Callable[[IndexDelta], None] = _ignore_delta,
        on_committed: Callable[[IndexDelta], None] = _ignore_delta,
        commit_lock: ReadWriteLock | None = None,
    ) -> IndexDelta:
        """Apply records in op order in ONE transaction, applied_op_id included.

        `on_prepared(delta)` runs before the commit (the new vectors go into the graphs
        there, invisible to reads until the commit); the commit and `on_committed(delta)`
        (old vectors leave the graphs) run together under `commit_lock` held exclusively,
        so a reader holding it shared sees either the whole batch or none of it.
        Records at or below applied_op_id are skipped, which makes replay idempotent.
        """
        records = [(op_id, op) for op_id, op in records if op_id > self.applied_op_id]
        if not records:
            return IndexDelta()
        assert records[0][0] == self.applied_op_id + 1, (records[0][0], self.applied_op_id)
        is_schema_batch = is_schema_op(records[0][1])
        assert not is_schema_batch or len(records) == 1, "a vector-name op is applied alone"
        assert is_schema_batch or not any(is_schema_op(op) for _, op in records), records
        commit_lock = commit_lock or ReadWriteLock()
        for _attempt in range(64):
            try:
                if is_schema_batch:
                    return self._write_schema_op(*records[0], on_committed, commit_lock)
                return self._write_in_txn(
                    records, compile_filter, on_prepared, on_committed, commit_lock
                )
            except lmdb.MapFullError:
                self._grow_map()
        raise StorageError(f"LMDB map could not grow enough path={self.path}")

    def purge_dead(self, up_to_op_id: int) -> int:
        """Forget dead labels every index checkpoint already covers (death op <= up_to)."""
        purged = 0
        with self._env.begin(write=True) as txn:
            cursor = txn.cursor(self._dead)
            keys = [key for key, value in cursor if _load_dead(key, value)[0] <= up_to_op_id]
            for key in keys:
                txn.delete(key, db=self._dead)
                purged += 1
        return purged

    def rebuild_derived(self) -> None:
        """Rebuild the payload and sparse inverted indexes from the sealed values (offline:
        `keel check --repair`; no applier may run)."""
        with self._env.begin(write=True) as txn:
            writer = BatchWriter(
                txn, self._dbs, self.next_label, _no_filters, IndexDelta(), self.index_specs
            )
            writer.rebuild_derived()
            writer.write_index_counts()
        self.index_specs = writer.index_specs

    # ---- reading (any thread) --------------------------------------------------------------

    def get_points(self, keys: list[bytes]) -> list[StoredPoint | None]:
        with self._lock.shared(), self._env.begin(buffers=False) as txn:
            return [_stored_point(key, txn.get(key, db=self._points)) for key in keys]

    def get_vectors(self, name: str, labels: list[int]) -> list[np.ndarray | None]:
        """Each label's vector `name` (None where it has none); a multivector name's values
        are matrices (rows x dim)."""
        with self._lock.shared(), self._env.begin() as txn:
            raw = [txn.get(label_key(label), db=self._vectors[name]) for label in labels]
        vectors = [
            None if value is None else np.frombuffer(unseal(value, "v:" + name, key), dtype="<f4")
            for value, key in zip(raw, map(label_key, labels))
        ]
        dim = self.multivector_dims.get(name)
        if dim is None:
            return vectors
        return [None if vector is None else vector.reshape(-1, dim) for vector in vectors]

    def get_sparse(self, name: str, labels: list[int]) -> list[SparseVector | None]:
        with self._lock.shared(), self._env.begin() as txn:
            raw = [txn.get(label_key(label), db=self._sparse[name]) for label in labels]
        return [
            None if value is None else SparseVector.from_bytes(unseal(value, "s:" + name, key))
            for value, key in zip(raw, map(label_key, labels))
        ]

    def sparse_scores(
        self,
        name: str,
        query: SparseVector,
        weigh: Callable[[np.ndarray, int], np.ndarray] | None = None,
        corpus_labels: np.ndarray | None = None,
    ) -> tuple[list[StoredPoint | None], np.ndarray]:
        """(points, scores): dot product of `query` with every stored sparse vector `name`
        sharing an index with it, from the inverted index. `weigh(frequencies, count)` may
        rescale the query's values from each index's document frequency and the count of
        points having a vector `name` (IDF); with `corpus_labels` (sorted labels of points
        having it), over those points only. One read transaction: postings and points are
        one snapshot."""
        with self._lock.shared(), self._env.begin() as txn:
            cursor = txn.cursor(self._inverted[name])
            postings = [_posting(cursor, index) for index in query.indices.tolist()]
            weights = query.values.astype(np.float32)
            if weigh is not None and corpus_labels is not None:
                frequencies = np.array(
                    [np.isin(labels, corpus_labels).sum() for labels, _ in postings],
                    dtype=np.int64,
                )
                weights = (weights * weigh(frequencies, len(corpus_labels))).astype(np.float32)
            elif weigh is not None:
                frequencies = np.array([len(labels) for labels, _ in postings], dtype=np.int64)
                documents_count = txn.stat(self._sparse[name])["entries"]
                weights = (weights * weigh(frequencies, documents_count)).astype(np.float32)
            empty_labels, empty_values = np.empty(0, np.uint64), np.empty(0, np.float32)
            all_labels = np.concatenate([labels for labels, _ in postings] or [empty_labels])
            products = [values * weight for (_, values), weight in zip(postings, weights)]
            unique_labels, inverse = np.unique(all_labels, return_inverse=True)
            scores = np.zeros(len(unique_labels), dtype=np.float32)
            np.add.at(scores, inverse, np.concatenate(products or [empty_values]))
            points = []
            for label in unique_labels.tolist():
                key = _point_key_of(txn, self._labels, label)
                assert key is not None, f"label {label} in the inverted index {name!r} is dead"
                points.append(_stored_point(key, txn.get(key, db=self._points)))
        return points, scores

    def iter_points(self, start_key: bytes | None) -> Iterator[StoredPoint]:
        """Every point from start_key on (all when None), in key order: integer ids
        ascending, then UUIDs. One read transaction: a consistent snapshot."""
        with self._lock.shared(), self._env.begin() as txn:
            cursor = txn.cursor(self._points)
            is_positioned = cursor.first() if start_key is None else cursor.set_range(start_key)
            if not is_positioned:
                return
            for key, value in cursor:
                yield _stored_point(bytes(key), value)

    def iter_point_labels(self) -> Iterator[tuple[bytes, int, int]]:
        """(key, label, version op id) of every point, in key order, in one transaction.
        A point whose value fails its checksum gives label -1 and version -1 (the caller
        finds its label with `labels_of_damaged`); reading that point still raises."""
        with self._lock.shared(), self._env.begin() as txn:
            for key, value in txn.cursor(self._points):
                key = bytes(key)
                try:
                    label, version_op_id = load_label_and_version(key, value)
                except CorruptionError:
                    yield key, -1, -1
                    continue
                yield key, label, version_op_id

    def labels_of_damaged(self, keys: set[bytes]) -> dict[bytes, int]:
        """The labels of points whose value is damaged, from the labels database (a scan;
        its own damaged entries are skipped: `keel check` reports them)."""
        found = {}
        with self._lock.shared(), self._env.begin() as txn:
            for encoded_label, value in txn.cursor(self._labels):
                try:
                    key = unseal(value, "labels", encoded_label)
                except CorruptionError:
                    continue
                if key in keys:
                    found[key] = int.from_bytes(encoded_label, "big")
        return found

    def iter_vector_values(self, name: str) -> Iterator[tuple[int, bytes | None, str]]:
        """(label, float32 bytes, "") of every vector `name`, by label, in one transaction;
        (label, None, the error) for one that fails its checksum, instead of raising."""
        with self._lock.shared(), self._env.begin() as txn:
            for key, value in txn.cursor(self._vectors[name]):
                label = int.from_bytes(key, "big")
                try:
                    yield label, unseal(value, "v:" + name, key), ""
                except CorruptionError as error:
                    yield label, None, str(error)

    def iter_candidate_points(
        self,
        lookup: payload_index.Lookup,
        specs: dict[str, payload_index.IndexSpec],
        start_key: bytes | None,
        keys_max: int,
    ) -> Iterator[StoredPoint] | None:
        """The points a planner's lookup (planned with `specs`) selects, from start_key on,
        in key order, read lazily. None, and the caller scans, if it selects more than
        keys_max points or an index it reads was dropped or retyped since `specs` (a commit
        in between). One read transaction: the lookup and the points are one snapshot."""
        points = self._candidate_points(lookup, specs, start_key, keys_max)
        if not next(points):
            points.close()
            return None
        return points

    def _candidate_points(
        self,
        lookup: payload_index.Lookup,
        specs: dict[str, payload_index.IndexSpec],
        start_key: bytes | None,
        keys_max: int,
    ) -> Iterator[Any]:
        """First yields whether the lookup applies, then (if it does) the points."""
        with self._lock.shared(), self._env.begin() as txn:
            keys = self._resolve_in(txn, lookup, specs, keys_max)
            yield keys is not None
            if keys is None:
                return
            for key in sorted(key for key in keys if start_key is None or key >= start_key):
                point = _stored_point(key, txn.get(key, db=self._points))
                if point is not None:
                    yield point

    def candidate_keys(
        self,
        lookup: payload_index.Lookup,
        specs: dict[str, payload_index.IndexSpec],
        keys_max: int,
        *,
        is_exact: bool = False,
    ) -> list[bytes] | None:
        """The keys a planner's lookup selects, sorted, without reading any point; None as
        in iter_candidate_points (and, with is_exact, rather than a superset)."""
        with self._lock.shared(), self._env.begin() as txn:
            keys = self._resolve_in(txn, lookup, specs, keys_max, is_exact=is_exact)
        return None if keys is None else sorted(keys)

    def iter_index_entries(self, field_name: str) -> Iterator[tuple[bytes, bytes]]:
        """(encoded value, point key) of every entry of a payload index, in one transaction."""
        prefix = payload_index.field_key(field_name)
        with self._lock.shared(), self._env.begin() as txn:
            cursor = txn.cursor(self._pindex)
            if not cursor.set_range(prefix):
                return
            for entry_key, point in cursor:
                entry_key = bytes(entry_key)
                if not entry_key.startswith(prefix):
                    return
                yield entry_key[len(prefix) :], bytes(point)

    def _resolve_in(
        self,
        txn: lmdb.Transaction,
        lookup: payload_index.Lookup,
        specs: dict[str, payload_index.IndexSpec],
        keys_max: int,
        *,
        is_exact: bool = False,
    ) -> set[bytes] | None:
        """payload_index.resolve, or None if an index it reads was dropped or retyped since
        `specs` were read (a commit in between)."""
        for field_name in payload_index.lookup_fields(lookup):
            raw = txn.get(field_name.encode(), db=self._schema)
            if raw is None:
                return None
            schema_type = cbor2.loads(unseal(raw, "schema", field_name.encode()))[0]
            if schema_type != specs[field_name].schema_type:
                return None
        return payload_index.resolve(txn, self._pindex, lookup, keys_max, is_exact=is_exact)

    def estimate_candidates(self, lookup: payload_index.Lookup, steps_max: int) -> int | None:
        """payload_index.estimate in a read transaction: entry counts, no point is read."""
        with self._lock.shared(), self._env.begin() as txn:
            return payload_index.estimate(txn, self._pindex, lookup, steps_max)

    def count_points(self) -> int:
        with self._lock.shared(), self._env.begin() as txn:
            return txn.stat(self._points)["entries"]

    def count_vectors(self, name: str) -> int:
        with self._lock.shared(), self._env.begin() as txn:
            return txn.stat(self._vectors[name])["entries"]

    def vector_pages_bytes(self, name: str) -> int:
        """Bytes of the LMDB pages holding vectors `name` (leaf and overflow pages): the
        storage size of a multivector name, whose values have any number of rows."""
        with self._lock.shared(), self._env.begin() as txn:
            stat = txn.stat(self._vectors[name])
        return stat["psize"] * (stat["leaf_pages"] + stat["overflow_pages"])

    def iter_vectors(
        self, name: str, dim: int, chunk_count: int, from_label: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(labels uint64, matrix float32) chunks of every live vector of `name`, by label."""
        with self._lock.shared(), self._env.begin() as txn:
            cursor = txn.cursor(self._vectors[name])
            if not cursor.set_range(label_key(from_label)):
                return
            labels: list[int] = []
            chunks: list[bytes] = []
            for key, value in cursor:
                labels.append(int.from_bytes(key, "big"))
                chunks.append(unseal(value, "v:" + name, key))
                if len(labels) >= chunk_count:
                    yield _as_matrix(labels, chunks, dim)
                    labels, chunks = [], []
            if labels:
                yield _as_matrix(labels, chunks, dim)

    def iter_matrices(
        self, name: str, chunk_count: int
    ) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        """(labels, matrices) chunks of every multivector `name`, by label, in one read
        transaction; no point is decoded (each value still checked against its checksum)."""
        dim = self.multivector_dims[name]
        with self._lock.shared(), self._env.begin() as txn:
            labels: list[int] = []
            matrices: list[np.ndarray] = []
            for key, value in txn.cursor(self._vectors[name]):
                labels.append(int.from_bytes(key, "big"))
                rows = np.frombuffer(unseal(value, "v:" + name, key), dtype="<f4")
                matrices.append(rows.reshape(-1, dim))
                if len(labels) >= chunk_count:
                    yield labels, matrices
                    labels, matrices = [], []
            if labels:
                yield labels, matrices

    def dead_labels(self) -> list[tuple[int, int, list[str]]]:
        """(label, death op_id, names it had) of every dead label not yet purged."""
        with self._lock.shared(), self._env.begin() as txn:
            return [
                (int.from_bytes(key, "big"), *_load_dead(key, value))
                for key, value in txn.cursor(self._dead)
            ]

    # ---- private ---------------------------------------------------------------------------

    def _write_in_txn(
        self,
        records: list[tuple[int, Operation]],
        compile_filter: CompileFilter,
        on_prepared: Callable[[IndexDelta], None],
        on_committed: Callable[[IndexDelta], None],
        commit_lock: ReadWriteLock,
    ) -> IndexDelta:
        txn = self._env.begin(write=True)
        try:
            writer = BatchWriter(
                txn, self._dbs, self.next_label, compile_filter, IndexDelta(), self.index_specs
            )
            for op_id, op in records:
                writer.apply(op_id, op)
            writer.write_index_counts()
            last_op_id = records[-1][0]
            txn.put(_APPLIED_KEY, last_op_id.to_bytes(8, "big"), db=self._meta)
            txn.put(_NEXT_LABEL_KEY, writer.next_label.to_bytes(8, "big"), db=self._meta)
            delta = writer.delta
            _drop_labels_born_and_killed(delta, writer.born_labels)
            on_prepared(delta)
        except BaseException:
            txn.abort()
            raise
        with commit_lock.exclusive():
            txn.commit()
            # Only after the commit returned: a failed commit must leave memory as it was.
            self.applied_op_id = last_op_id
            self.next_label = writer.next_label
            self.index_specs = writer.index_specs
            on_committed(delta)
        return delta

    def _write_schema_op(
        self,
        op_id: int,
        op: SchemaOperation,
        on_committed: Callable[[IndexDelta], None],
        commit_lock: ReadWriteLock,
    ) -> IndexDelta:
        """Apply one vector-name op in its own transaction: open or drop the name's databases,
        take a deleted name out of every point, write the new `vector_schema` record and
        applied_op_id. Idempotent as every op: an existing name is not made again, an absent
        one not deleted, and a replay skips what applied_op_id covers."""
        assert self.schema_config is not None, "vector-name op on a store with no base config"
        config = config_after(self.schema_config, op)
        created = dict(self.created_op_ids)
        vectors, sparse, inverted = dict(self._vectors), dict(self._sparse), dict(self._inverted)
        txn = self._env.begin(write=True)
        try:
            if config is not self.schema_config and isinstance(op, CreateVectorName):
                created[op.name] = op_id
                if op.dense is not None:
                    vectors[op.name] = self._env.open_db(b"v:" + op.name.encode(), txn=txn)
                else:
                    sparse[op.name] = self._env.open_db(b"s:" + op.name.encode(), txn=txn)
                    inverted[op.name] = self._env.open_db(b"i:" + op.name.encode(), txn=txn)
            elif config is not self.schema_config:
                created.pop(op.name, None)
                for dbs in (vectors, sparse, inverted):
                    if op.name in dbs:
                        txn.drop(dbs.pop(op.name), delete=True)
                _forget_vector_name(txn, self._points, op.name)
            record = {"op_id": op_id, "config": config.to_json_dict(), "created": created}
            txn.put(_SCHEMA_KEY, seal(cbor2.dumps(record)), db=self._meta)
            txn.put(_APPLIED_KEY, op_id.to_bytes(8, "big"), db=self._meta)
        except BaseException:
            txn.abort()
            raise
        delta = IndexDelta(schema_op=op, schema_config=config)
        with commit_lock.exclusive():
            txn.commit()
            self.applied_op_id = op_id
            self.schema_config, self.created_op_ids = config, created
            self._vectors, self._sparse, self._inverted = vectors, sparse, inverted
            self.vector_names = list(config.vectors)
            self.sparse_names = list(config.sparse_vectors)
            self.multivector_dims = config.multivector_dims()
            self._dbs = replace(
                self._dbs,
                vectors=vectors,
                sparse=sparse,
                inverted=inverted,
                multivector_dims=self.multivector_dims,
            )
            on_committed(delta)
        # Tests crash here: LMDB has the op, config.json may not (recovery reconciles them).
        files.failpoint("store.after_schema_commit")
        assert set(self._vectors) == set(config.vectors), (set(self._vectors), config.vectors)
        return delta

    def _read_schema(self) -> tuple[CollectionConfig | None, dict[str, int]]:
        with self._env.begin() as txn:
            raw = txn.get(_SCHEMA_KEY, db=self._meta)
            if raw is None:
                return None, {}
            record = cbor2.loads(unseal(raw, "meta", _SCHEMA_KEY))
        return CollectionConfig.from_json_dict(record["config"]), dict(record["created"])

    def _check_format(self) -> None:
        """Stamp a new store with STORE_FORMAT; refuse one written in another format."""
        with self._env.begin(write=True) as txn:
            store_format = _read_u64(txn, self._meta, _FORMAT_KEY, -1)
            if store_format == -1:
                is_new = txn.get(_APPLIED_KEY, db=self._meta) is None
                if not is_new:
                    store_format = 0
                else:
                    store_format = STORE_FORMAT
                    txn.put(_FORMAT_KEY, STORE_FORMAT.to_bytes(8, "big"), db=self._meta)
        if store_format != STORE_FORMAT:
            raise CorruptionError(
                f"LMDB store {self.path} has format {store_format}, this Keel reads format "
                f"{STORE_FORMAT} (values with checksums); it was written by another Keel "
                "version: export it with that version (snapshot or `keel migrate`) and "
                "import it here"
            )

    def _grow_map(self) -> None:
        new_map_bytes = min(self._map_bytes * 2, limits.LMDB_MAP_BYTES_MAX)
        if new_map_bytes == self._map_bytes:
            raise StorageError(f"LMDB map is at its maximum path={self.path}")
        # set_mapsize needs no transaction open in this process: hold readers off.
        with self._lock.exclusive():
            self._env.set_mapsize(new_map_bytes)
        log_event(
            log, logging.INFO, "lmdb map grown", path=Path(self.path), map_bytes=new_map_bytes
        )
        self._map_bytes = new_map_bytes


def _forget_vector_name(txn: lmdb.Transaction, points_db: Any, name: str) -> None:
    """Take `name` out of the vector names of every point that has it (label, version and
    payload kept: Qdrant does not version a point for a vector-name op)."""
    changed = []
    for key, value in txn.cursor(points_db):
        row = load_point(bytes(key), value)
        if name in row.names:
            changed.append((bytes(key), row))
    for key, row in changed:
        row.names = [other for other in row.names if other != name]
        txn.put(key, dump_point(row), db=points_db)


def _read_u64(txn: lmdb.Transaction, db: Any, key: bytes, default: int) -> int:
    value = txn.get(key, db=db)
    return default if value is None else int.from_bytes(value, "big")


def _posting(cursor: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, values) of one index's posting list, read from an inverted-index cursor."""
    prefix = index.to_bytes(4, "big")
    labels: list[int] = []
    values: list[bytes] = []
    if cursor.set_range(prefix):
        for key, value in cursor:
            if key[:4] != prefix:
                break
            labels.append(int.from_bytes(key[4:], "big"))
            values.append(value)
    matrix = np.frombuffer(b"".join(values), dtype="<f4").astype(np.float32)
    return np.asarray(labels, dtype=np.uint64), matrix


def _point_key_of(txn: lmdb.Transaction, labels_db: Any, label: int) -> bytes | None:
    """The key of the live point holding `label`, checksum verified; None if it died."""
    encoded_label = label_key(label)
    raw = txn.get(encoded_label, db=labels_db)
    return None if raw is None else unseal(raw, "labels", encoded_label)


def _load_dead(key: bytes, raw: bytes) -> list[Any]:
    """[death op_id, names] of a `dead` value, checksum verified."""
    return cbor2.loads(unseal(raw, "dead", key))


def _stored_point(key: bytes, value: bytes | None) -> StoredPoint | None:
    if value is None:
        return None
    row = load_point(key, value)
    return StoredPoint(key, row.label, row.version_op_id, row.payload, row.names)


def _as_matrix(labels: list[int], chunks: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(len(labels), dim)
    return np.asarray(labels, dtype=np.uint64), matrix


def _drop_labels_born_and_killed(delta: IndexDelta, born_in_batch: set[int]) -> None:
    """A label added and removed within one batch never reaches the index at all."""
    for name, removed in list(delta.removed_labels.items()):
        killed_here = {label for label in removed if label in born_in_batch}
        if not killed_here:
            continue
        delta.removed_labels[name] = [label for label in removed if label not in killed_here]
        kept = [
            (label, vector)
            for label, vector in zip(delta.added_labels[name], delta.added_vectors[name])
            if label not in killed_here
        ]
        delta.added_labels[name] = [label for label, _ in kept]
        delta.added_vectors[name] = [vector for _, vector in kept]
