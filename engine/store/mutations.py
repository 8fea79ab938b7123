"""What each operation does to points, inside one LMDB write transaction.

Owns: the semantics of every write op on stored points — upsert with update_mode and
update_filter, delete (ids or filter), payload set/overwrite/delete-keys/clear, vector update
and delete, payload index create/delete — the vector index delta they produce, and the
payload index entries they change (engine/store/payload_index.py), in the same transaction as the payload.
Not here: the database layout and reads (engine/store/store.py), evaluating a filter (engine/filters/conditions.py: the
caller passes `compile_filter`), when ops are applied (applier.py).

Sparse vectors live beside dense ones under their own names (engine/store/store.py's `s:` and `i:` dbs):
writing a label's sparse vector puts one inverted-index entry per index, killing the label
removes them, in the same transaction; they never enter the graphs' delta.

Every change to a point's vectors gives the point a fresh label (engine/store/store.py explains why);
payload-only changes keep the label. Every change sets the point's version to the op id.
Whenever a payload changes, the entries of the old payload leave every payload index and those
of the new one enter it. Creating an index builds it over every point inside the batch's one
transaction, so a crash leaves either no index or the whole one, and replaying the op rebuilds
it from scratch (idempotent).
Reads inside the transaction see the batch's earlier writes, so a filter in op N selects
points as ops before N left them.

Payload edits, vector updates and vector deletes that list ids go through them as Qdrant
does (`lib/shard/src/update/payload.rs`, `vectors.rs`): 32 ids at a time, each existing one
changed; after the first chunk holding an id that does not exist the op stops, and that id
(the first missing one of its chunk) is the op's outcome, recorded in the delta for the
applier to answer with (404 "No point with id N found"). What an op changes depends only on
the state the ops before it left, so a replay does the same.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import cbor2
import lmdb
import numpy as np

from engine import limits
from engine.filters.conditions import Filter
from engine.filters.payload_path import PayloadPath
from engine.ops import (
    CreateFieldIndex,
    DeleteFieldIndex,
    DeletePoints,
    DeleteVectors,
    MultiColumn,
    NamedVectors,
    Operation,
    PayloadMode,
    PointId,
    SparseColumn,
    SparseVector,
    UpdateMode,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
    point_id_from_key,
    point_key,
)
from engine.store import payload_index, planner
from engine.store.checksum import seal, unseal

Predicate = Callable[[PointId, dict[str, Any], list[str]], bool]
# Qdrant's PAYLOAD_OP_BATCH_SIZE and VECTOR_OP_BATCH_SIZE: ids are edited this many at a time.
ID_CHUNK_COUNT = 32
# (filter, the payload indexes as the batch left them) -> predicate; see
# engine/query/reads.py `compile_filter_with_indexes`.
CompileFilter = Callable[[Filter, dict[str, payload_index.IndexSpec]], Predicate]


def label_key(label: int) -> bytes:
    return label.to_bytes(8, "big")


@dataclass
class Databases:
    """The LMDB databases of one store (see engine/store/store.py's table)."""

    points: Any
    labels: Any
    dead: Any
    vectors: dict[str, Any]
    schema: Any = None  # payload index definitions (engine/store/payload_index.py)
    pindex: Any = None  # payload index entries
    sparse: dict[str, Any] = field(default_factory=dict)  # label -> SparseVector bytes
    inverted: dict[str, Any] = field(default_factory=dict)  # index u32 + label u64 -> f32
    # The names of `vectors` holding matrices (rows of this dim): no graph, not in the delta.
    multivector_dims: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PointRow:
    """A point as its `points` value holds it (stored as the CBOR array of these four).

    Not frozen: a frozen dataclass is built through object.__setattr__, three times slower,
    and replay builds one per point it reads (timeit: 0.5 vs 0.15 us a row).
    Treat it as read-only all the same: a changed point is a new row.
    """

    label: int  # the key of its vectors in the vector databases
    version_op_id: int  # the op that wrote this version of the point
    payload: dict[str, Any] | None
    names: list[str]  # the vector names it has, dense and sparse


@dataclass(frozen=True, slots=True)
class WrittenPoint:
    """A point row written by a batch: a new label (`is_born`), or a payload edit that keeps
    the label and writes a new version."""

    label: int
    key: bytes
    version_op_id: int
    payload: dict[str, Any] | None  # not a copy: read it, never change it
    is_born: bool


def load_point(key: bytes, raw: bytes | memoryview) -> PointRow:
    """The PointRow of a `points` value, its checksum verified."""
    label, version_op_id, payload, names = cbor2.loads(unseal(raw, "points", key))
    return PointRow(label, version_op_id, payload, names)


def load_label_and_version(key: bytes, raw: bytes | memoryview) -> tuple[int, int]:
    """(label, version op id) of a `points` value, its checksum verified, without decoding
    its payload: they are the first two items of the CBOR array dump_point writes (the
    golden files pin that). Other encodings fall back to a full decode."""
    value = unseal(raw, "points", key)
    if value[0] == 0x84:  # a CBOR array of four items
        label, position = _cbor_uint(value, 1)
        if label is not None:
            version_op_id, _ = _cbor_uint(value, position)
            if version_op_id is not None:
                return label, version_op_id
    row = cbor2.loads(value)
    return row[0], row[1]


def _cbor_uint(value: bytes, position: int) -> tuple[int | None, int]:
    """A CBOR unsigned integer at `position` and the position after it; None if another
    type is there."""
    head = value[position]
    if head >> 5 != 0:
        return None, position
    info = head & 0x1F
    if info < 24:
        return info, position + 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if width is None:
        return None, position
    end = position + 1 + width
    return int.from_bytes(value[position + 1 : end], "big"), end


def dump_point(row: PointRow) -> bytes:
    """The `points` value of a PointRow, sealed (load_point's inverse)."""
    return seal(cbor2.dumps([row.label, row.version_op_id, row.payload, row.names]))


def inverted_key(index: int, label: int) -> bytes:
    """Inverted-index key: dimension index u32 BE + label u64 BE (a posting list per index)."""
    return index.to_bytes(4, "big") + label.to_bytes(8, "big")


class BatchWriter:
    """Applies ops to one open write transaction and collects the graphs' delta."""

    def __init__(
        self,
        txn: lmdb.Transaction,
        dbs: Databases,
        next_label: int,
        compile_filter: CompileFilter,
        delta: Any,
        index_specs: dict[str, payload_index.IndexSpec] | None = None,
    ) -> None:
        self._txn = txn
        self._dbs = dbs
        self.next_label = next_label
        self._compile_filter = compile_filter
        self.delta = delta  # store.IndexDelta
        self.born_labels: set[int] = set()
        # The payload indexes as this batch changes them; the store adopts them on commit.
        self.index_specs = dict(index_specs or {})
        self._index_paths = {name: PayloadPath.parse(name) for name in self.index_specs}
        self._counted_fields: set[str] = set()

    def apply(self, op_id: int, op: Operation) -> None:
        """Apply one op; an id-listed edit that met a missing id records it in the delta."""
        missing_point_id = None
        if isinstance(op, UpsertPoints):
            self._upsert(op_id, op)
        elif isinstance(op, DeletePoints):
            for key in self._selected_keys(op.ids, op.filter):
                self._delete_point(op_id, key)
        elif isinstance(op, UpdatePayload):
            missing_point_id = self._update_payload(op_id, op)
        elif isinstance(op, UpdateVectors):
            missing_point_id = self._update_vectors(op_id, op)
        elif isinstance(op, CreateFieldIndex):
            self._create_index(op)
        elif isinstance(op, DeleteFieldIndex):
            self._drop_index(op.field_name)
        else:
            assert isinstance(op, DeleteVectors), type(op)
            drop = partial(self._replace_vectors, op_id, drop_names=set(op.names), new={})
            if op.filter is None:
                assert op.ids is not None, "a vector delete selects points by ids or by filter"
                missing_point_id = self._edit_listed(op.ids, lambda key, old: drop(key))
            else:
                for key in self._selected_keys(None, op.filter):
                    drop(key)
        if missing_point_id is not None:
            assert op_id not in self.delta.missing_point_ids, op_id
            self.delta.missing_point_ids[op_id] = missing_point_id

    # ---- one op kind each ------------------------------------------------------------------

    def _upsert(self, op_id: int, op: UpsertPoints) -> None:
        row_of, sparse_row_of = _row_lookups(op.vectors, op.sparse, len(op.ids))
        multi_row_of = {name: _row_lookup(c.rows, len(op.ids)) for name, c in op.multi.items()}
        predicate = self._update_predicate(op.update_filter)
        for position, point_id in enumerate(op.ids):
            key = point_key(point_id)
            old = self._read(key)
            if op.update_mode is UpdateMode.INSERT_ONLY and old is not None:
                continue
            if op.update_mode is UpdateMode.UPDATE_ONLY and old is None:
                continue
            if old is not None and predicate is not None and not _matches(predicate, key, old):
                continue  # conditional upsert: an existing point must match to be replaced
            vectors = _point_vectors(op.vectors, row_of, op.sparse, sparse_row_of, position)
            vectors.update(_point_matrices(op.multi, multi_row_of, position))
            if old is not None:
                self._kill(op_id, key, old)
            self._write_new_version(op_id, key, op.payloads[position], vectors)
            self._reindex(key, None if old is None else old.payload, op.payloads[position])

    def _delete_point(self, op_id: int, key: bytes) -> None:
        old = self._read(key)
        if old is None:
            return
        self._kill(op_id, key, old)
        self._txn.delete(key, db=self._dbs.points)
        self._reindex(key, old.payload, None)
        self.delta.points_written += 1

    def _update_payload(self, op_id: int, op: UpdatePayload) -> PointId | None:
        """The payload edit; the first missing id if the op lists ids and one is missing."""

        def edit(key: bytes, old: PointRow) -> None:
            new_payload = edited_payload(old.payload or {}, op)
            value = dump_point(PointRow(old.label, op_id, new_payload, old.names))
            self._txn.put(key, value, db=self._dbs.points)
            self._reindex(key, old.payload, new_payload)
            self.delta.points_written += 1
            self.delta.written_points.append(
                WrittenPoint(old.label, key, op_id, new_payload, False)
            )

        if op.filter is None:
            assert op.ids is not None, "a payload edit selects points by ids or by filter"
            return self._edit_listed(op.ids, edit)
        for key in self._selected_keys(None, op.filter):
            old = self._read(key)
            assert old is not None, "a filter selected a point that does not exist"
            edit(key, old)
        return None

    def _update_vectors(self, op_id: int, op: UpdateVectors) -> PointId | None:
        """New vectors for listed points (each id's rows in op order, so a later row of a
        repeated id wins, as Qdrant merges them); the first missing id, if any. A point
        that exists but misses `update_filter` is left alone and is not missing."""
        row_of, sparse_row_of = _row_lookups(op.vectors, op.sparse, len(op.ids))
        multi_row_of = {name: _row_lookup(c.rows, len(op.ids)) for name, c in op.multi.items()}
        predicate = self._update_predicate(op.update_filter)
        positions_of: dict[bytes, list[int]] = {}
        distinct_ids = []
        for position, point_id in enumerate(op.ids):
            positions = positions_of.setdefault(point_key(point_id), [])
            if not positions:
                distinct_ids.append(point_id)
            positions.append(position)

        if predicate is not None:
            # Qdrant leaves out the points that miss the filter before it chunks the ids.
            distinct_ids = [
                point_id
                for point_id in distinct_ids
                if (old := self._read(point_key(point_id))) is None
                or _matches(predicate, point_key(point_id), old)
            ]

        def edit(key: bytes, old: PointRow) -> None:
            for position in positions_of[key]:
                new = _point_vectors(op.vectors, row_of, op.sparse, sparse_row_of, position)
                new.update(_point_matrices(op.multi, multi_row_of, position))
                self._replace_vectors(op_id, key, drop_names=set(), new=new)

        return self._edit_listed(distinct_ids, edit)

    def _edit_listed(
        self, ids: list[PointId], edit: Callable[[bytes, PointRow], None]
    ) -> PointId | None:
        """`edit(key, stored point)` each listed point that exists, ID_CHUNK_COUNT ids at a
        time; after a chunk with a missing id, stop and return the first such id. A repeated
        id is edited once (Qdrant skips a point whose version is already this op's)."""
        edited_keys: set[bytes] = set()
        for start in range(0, len(ids), ID_CHUNK_COUNT):
            missing_point_id = None
            for point_id in ids[start : start + ID_CHUNK_COUNT]:
                key = point_key(point_id)
                if key in edited_keys:
                    continue
                old = self._read(key)
                if old is None:
                    if missing_point_id is None:
                        missing_point_id = point_id
                    continue
                edit(key, old)
                edited_keys.add(key)
            if missing_point_id is not None:
                return missing_point_id
        return None

    def _replace_vectors(
        self, op_id: int, key: bytes, drop_names: set[str], new: dict[str, Any]
    ) -> None:
        """New version of a point: old vectors kept unless dropped or replaced."""
        old = self._read(key)
        if old is None:
            return
        old_label, payload, old_names = old.label, old.payload, old.names
        vectors = {}
        for name in old_names:
            if name not in drop_names and name not in new:
                is_sparse = name in self._dbs.sparse
                db = self._dbs.sparse[name] if is_sparse else self._dbs.vectors[name]
                raw = self._txn.get(label_key(old_label), db=db)
                assert raw is not None, (old_label, name)
                value = unseal(raw, ("s:" if is_sparse else "v:") + name, label_key(old_label))
                if is_sparse:
                    vectors[name] = SparseVector.from_bytes(value)
                elif name in self._dbs.multivector_dims:
                    dim = self._dbs.multivector_dims[name]
                    vectors[name] = np.frombuffer(value, dtype="<f4").reshape(-1, dim)
                else:
                    vectors[name] = np.frombuffer(value, dtype="<f4")
        vectors.update(new)
        self._kill(op_id, key, old)
        self._write_new_version(op_id, key, payload, vectors)

    def rebuild_derived(self) -> None:
        """Rebuild every payload index and sparse inverted index from the points and sparse
        vectors, dropping whatever entries were there (`keel check --repair`)."""
        self._txn.drop(self._dbs.pindex, delete=False)
        for spec in list(self.index_specs.values()):
            self._create_index(CreateFieldIndex(spec.field_name, spec.schema_type, spec.params))
        for name, inverted in self._dbs.inverted.items():
            self._txn.drop(inverted, delete=False)
            for encoded_label, raw in self._txn.cursor(db=self._dbs.sparse[name]):
                vector = SparseVector.from_bytes(unseal(raw, "s:" + name, encoded_label))
                self._put_postings(name, int.from_bytes(encoded_label, "big"), vector)

    # ---- payload indexes -------------------------------------------------------------------

    def _create_index(self, op: CreateFieldIndex) -> None:
        """(Re)build the index of a field over every point, in this transaction."""
        assert op.schema_type in payload_index.SCHEMA_TYPES, op.schema_type
        self._drop_index(op.field_name)
        path = PayloadPath.parse(op.field_name)
        points_count = 0
        for key, value in self._txn.cursor(db=self._dbs.points):
            payload = load_point(key, value).payload
            values = payload_index.index_values(op.schema_type, path, payload or {})
            if values:
                payload_index.put_entries(
                    self._txn, self._dbs.pindex, op.field_name, values, bytes(key)
                )
            points_count += payload_index.is_counted(op.schema_type, path, payload or {})
        spec = payload_index.IndexSpec(op.field_name, op.schema_type, op.params, points_count)
        self.index_specs[op.field_name] = spec
        self._index_paths[op.field_name] = path
        self._put_spec(spec)

    def _drop_index(self, field_name: str) -> None:
        if field_name not in self.index_specs:
            return
        payload_index.drop_field(self._txn, self._dbs.pindex, field_name)
        is_deleted = self._txn.delete(field_name.encode(), db=self._dbs.schema)
        assert is_deleted, f"index {field_name!r} known but not in the schema db"
        del self.index_specs[field_name]
        del self._index_paths[field_name]

    def _reindex(self, key: bytes, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Move a point's entries in every payload index from payload `old` to `new`."""
        for field_name, spec in self.index_specs.items():
            path = self._index_paths[field_name]
            old_values = payload_index.index_values(spec.schema_type, path, old or {})
            new_values = payload_index.index_values(spec.schema_type, path, new or {})
            if old_values != new_values:
                db = self._dbs.pindex
                removed, added = old_values - new_values, new_values - old_values
                payload_index.delete_entries(self._txn, db, field_name, removed, key)
                payload_index.put_entries(self._txn, db, field_name, added, key)
            # Counted apart from the entries: 2 and 2.0 share an entry, not a count.
            is_counted = partial(payload_index.is_counted, spec.schema_type, path)
            change = is_counted(new or {}) - is_counted(old or {})
            if change:
                spec = replace(spec, points_count=spec.points_count + change)
                assert spec.points_count >= 0, (field_name, spec.points_count)
                self.index_specs[field_name] = spec
                self._counted_fields.add(field_name)

    def write_index_counts(self) -> None:
        """Store the points counts changed by this batch (once per field, not per point)."""
        for field_name in self._counted_fields:
            if field_name in self.index_specs:
                self._put_spec(self.index_specs[field_name])
        self._counted_fields.clear()

    def _put_spec(self, spec: payload_index.IndexSpec) -> None:
        value = seal(cbor2.dumps([spec.schema_type, spec.params, spec.points_count]))
        self._txn.put(spec.field_name.encode(), value, db=self._dbs.schema)

    # ---- shared steps ----------------------------------------------------------------------

    def _selected_keys(self, ids: list[PointId] | None, filter_: Filter | None) -> list[bytes]:
        if filter_ is None:
            assert ids is not None, "an op selects points by ids or by filter"
            return list(dict.fromkeys(point_key(point_id) for point_id in ids))
        predicate = self._compile_filter(filter_, self.index_specs)
        candidates = self._index_candidates(filter_)
        if candidates is not None:
            stored = ((key, self._read(key)) for key in candidates)
            return [key for key, old in stored if old is not None and _matches(predicate, key, old)]
        keys = []
        for key, value in self._txn.cursor(db=self._dbs.points):
            if _matches(predicate, bytes(key), load_point(key, value)):
                keys.append(bytes(key))
        return keys

    def _index_candidates(self, filter_: Filter) -> list[bytes] | None:
        """Keys the payload indexes say may match (engine/store/planner.py), in key order; None: scan.
        Read in this transaction, so they reflect the batch's earlier ops."""
        lookup = planner.plan(filter_, self.index_specs)
        if lookup is None:
            return None
        keys = payload_index.resolve(
            self._txn, self._dbs.pindex, lookup, limits.PLAN_CANDIDATES_MAX
        )
        return None if keys is None else sorted(keys)

    def _update_predicate(self, update_filter: Filter | None) -> Predicate | None:
        """A conditional write's filter, compiled; None for an unconditional one."""
        if update_filter is None:
            return None
        return self._compile_filter(update_filter, self.index_specs)

    def _read(self, key: bytes) -> PointRow | None:
        value = self._txn.get(key, db=self._dbs.points)
        return None if value is None else load_point(key, value)

    def _write_new_version(
        self, op_id: int, key: bytes, payload: dict[str, Any] | None, vectors: dict[str, Any]
    ) -> None:
        label = self.next_label
        self.next_label += 1
        self.born_labels.add(label)
        encoded_label = label_key(label)
        put = self._txn.put
        delta = self.delta
        for name, vector in vectors.items():
            if isinstance(vector, SparseVector):
                self._put_sparse(name, label, vector)
                continue
            if vector.ndim == 2:
                # A multivector's matrix: rows of float32, the row count is len / (4 * dim).
                # No graph and no read-view cache holds it, so it stays out of the delta.
                assert name in self._dbs.multivector_dims, name
                assert vector.shape[0] > 0, (name, label)
                put(encoded_label, seal(vector.astype("<f4").tobytes()), db=self._dbs.vectors[name])
                continue
            assert name not in self._dbs.multivector_dims, name
            put(
                encoded_label,
                seal(vector.astype("<f4", copy=False).tobytes()),
                db=self._dbs.vectors[name],
            )
            if name in delta.added_labels:
                delta.added_labels[name].append(label)
                delta.added_vectors[name].append(vector)
            else:
                delta.added_labels[name] = [label]
                delta.added_vectors[name] = [vector]
        put(key, dump_point(PointRow(label, op_id, payload, list(vectors))), db=self._dbs.points)
        put(encoded_label, seal(key), db=self._dbs.labels)
        delta.points_written += 1
        delta.written_points.append(WrittenPoint(label, key, op_id, payload, True))

    def _kill(self, op_id: int, key: bytes, old: PointRow) -> None:
        old_label, old_names = old.label, old.names
        encoded_label = label_key(old_label)
        is_deleted = self._txn.delete(encoded_label, db=self._dbs.labels)
        assert is_deleted, f"label {old_label} of point {point_id_from_key(key)} not in labels db"
        for name in old_names:
            if name in self._dbs.sparse:
                self._delete_sparse(name, old_label)
                continue
            is_deleted = self._txn.delete(encoded_label, db=self._dbs.vectors[name])
            assert is_deleted, (old_label, name)
            if name in self._dbs.multivector_dims:
                continue  # never in a graph or the read view's cache (see _write_new_version)
            self.delta.removed_labels.setdefault(name, []).append(old_label)
        self._txn.put(encoded_label, seal(cbor2.dumps([op_id, old_names])), db=self._dbs.dead)
        self.delta.killed_labels.append(old_label)

    def _put_sparse(self, name: str, label: int, vector: SparseVector) -> None:
        """The label's sparse vector and its inverted-index entries, in this transaction."""
        assert vector.indices.shape == vector.values.shape, (name, label)
        self._txn.put(label_key(label), seal(vector.to_bytes()), db=self._dbs.sparse[name])
        self._put_postings(name, label, vector)

    def _put_postings(self, name: str, label: int, vector: SparseVector) -> None:
        inverted = self._dbs.inverted[name]
        raw_values = vector.values.astype("<f4").tobytes()
        for position, index in enumerate(vector.indices.tolist()):
            value = raw_values[4 * position : 4 * position + 4]
            is_new = self._txn.put(inverted_key(index, label), value, db=inverted, overwrite=False)
            assert is_new, (name, label, index)

    def _delete_sparse(self, name: str, label: int) -> None:
        raw = self._txn.get(label_key(label), db=self._dbs.sparse[name])
        assert raw is not None, (label, name)
        vector = SparseVector.from_bytes(unseal(raw, "s:" + name, label_key(label)))
        inverted = self._dbs.inverted[name]
        for index in vector.indices.tolist():
            is_deleted = self._txn.delete(inverted_key(index, label), db=inverted)
            assert is_deleted, (name, label, index)
        is_deleted = self._txn.delete(label_key(label), db=self._dbs.sparse[name])
        assert is_deleted, (name, label)


def _point_vectors(
    dense: dict[str, Any],
    row_of: dict[str, list[int]],
    sparse: dict[str, SparseColumn],
    sparse_row_of: dict[str, list[int]],
    position: int,
) -> dict[str, Any]:
    """The vectors an op gives the point at `position`: dense rows and SparseVectors."""
    vectors: dict[str, Any] = {
        name: nv.matrix[row_of[name][position]]
        for name, nv in dense.items()
        if row_of[name][position] >= 0
    }
    for name, column in sparse.items():
        row = int(sparse_row_of[name][position])
        if row >= 0:
            vectors[name] = column.vector(row)
    return vectors


def _point_matrices(
    multi: dict[str, MultiColumn], multi_row_of: dict[str, list[int]], position: int
) -> dict[str, np.ndarray]:
    """The multivector matrices an op gives the point at `position`, by name."""
    return {
        name: column.matrix_of(multi_row_of[name][position])
        for name, column in multi.items()
        if multi_row_of[name][position] >= 0
    }


def edited_payload(payload: dict[str, Any], op: UpdatePayload) -> dict[str, Any] | None:
    """The payload after a payload op (a new object; `payload` is not modified).

    Paths follow Qdrant's JsonPath (`lib/segment/src/json_path/mod.rs`): `set` with a `key`
    walks it, replacing what is not an object (for a key) or an array (for `[i]` / `[]`)
    with an empty one, sets nothing under an index past the end, and merges the payload
    into the object it reaches; `delete` removes keys, or every element for `a[]`, and
    never an array element by index (not idempotent, Qdrant says).
    """
    if op.mode is PayloadMode.CLEAR:
        return None
    if op.mode is PayloadMode.OVERWRITE:
        return copy.deepcopy(op.payload)
    result = copy.deepcopy(payload)
    if op.mode is PayloadMode.DELETE_KEYS:
        for path in op.keys or []:
            steps = PayloadPath.parse(path).steps
            _remove_at(result, steps[0], steps[1:])
        return result
    assert op.mode is PayloadMode.SET and op.payload is not None, op.mode
    if not op.key:
        result.update(copy.deepcopy(op.payload))
        return result
    steps = PayloadPath.parse(op.key).steps
    holder = [result]  # value_set may replace the top value; it stays an object here
    _set_at(holder, 0, (steps[0], *steps[1:]), op.payload)
    return holder[0]


def _set_at(holder: list[Any], position: int, steps: tuple[Any, ...], src: dict) -> None:
    """Qdrant's `value_set`: holder[position] is the value the path starts from."""
    if not steps:
        if not isinstance(holder[position], dict):
            holder[position] = {}
        holder[position].update(copy.deepcopy(src))
        return
    head, rest = steps[0], steps[1:]
    if isinstance(head, str):
        if not isinstance(holder[position], dict):
            holder[position] = {}
        target = holder[position]
        box = [target.get(head)]
        _set_at(box, 0, rest, src)
        target[head] = box[0]
    elif isinstance(head, int):
        if not isinstance(holder[position], list):
            holder[position] = []
        array = holder[position]
        if head < len(array):
            _set_at(array, head, rest, src)
    elif isinstance(holder[position], list):
        array = holder[position]
        for index in range(len(array)):
            _set_at(array, index, rest, src)
    else:
        holder[position] = []


def _remove_at(value: Any, head: Any, rest: tuple[Any, ...]) -> None:
    """Qdrant's `value_remove` from `value` (a payload or a value inside it)."""
    if rest:
        if head is None:
            children = value if isinstance(value, list) else []
        elif isinstance(head, str):
            children = [value[head]] if isinstance(value, dict) and head in value else []
        else:
            children = [value[head]] if isinstance(value, list) and head < len(value) else []
        for child in children:
            _remove_at(child, rest[0], rest[1:])
    elif isinstance(head, str) and isinstance(value, dict):
        value.pop(head, None)
    elif head is None and isinstance(value, list):
        value.clear()


def _matches(predicate: Predicate, key: bytes, stored: PointRow) -> bool:
    return predicate(point_id_from_key(key), stored.payload or {}, stored.names)


def _row_lookups(
    dense: dict[str, NamedVectors], sparse: dict[str, SparseColumn], point_count: int
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Per vector name, the op's row for each point position (-1: none), dense and sparse."""
    row_of = {name: _row_lookup(nv.rows, point_count) for name, nv in dense.items()}
    if not sparse:
        return row_of, {}
    return row_of, {name: _row_lookup(c.rows, point_count) for name, c in sparse.items()}


def _row_lookup(rows: np.ndarray, point_count: int) -> list[int]:
    if point_count == 1:  # the common 1-point upsert, without three numpy calls
        return [0] if len(rows) else [-1]
    lookup = np.full(point_count, -1, dtype=np.int64)
    lookup[rows] = np.arange(len(rows))
    return lookup.tolist()
