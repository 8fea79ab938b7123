"""What each operation does to points, inside one LMDB write transaction.

Owns: the semantics of every write op on stored points — upsert with update_mode and
update_filter, delete (ids or filter), payload set/overwrite/delete-keys/clear, vector update
and delete — and the index delta they produce.
Not here: the database layout and reads (store.py), evaluating a filter (filters.py: the
caller passes `compile_filter`), when ops are applied (applier.py).

Every change to a point's vectors gives the point a fresh label (store.py explains why);
payload-only changes keep the label. Every change sets the point's version to the op id.
Reads inside the transaction see the batch's earlier writes, so a filter in op N selects
points as ops before N left them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import lmdb
import numpy as np

from engine.ops import (
    DeletePoints,
    DeleteVectors,
    Operation,
    PayloadMode,
    PointId,
    UpdateMode,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
    point_id_from_key,
    point_key,
)

Predicate = Callable[[PointId, dict[str, Any], list[str]], bool]
CompileFilter = Callable[[Any], Predicate]


def label_key(label: int) -> bytes:
    return label.to_bytes(8, "big")


@dataclass
class Databases:
    """The LMDB databases of one store (see store.py's table)."""

    points: Any
    labels: Any
    dead: Any
    vectors: dict[str, Any]


class BatchWriter:
    """Applies ops to one open write transaction and collects the graphs' delta."""

    def __init__(
        self,
        txn: lmdb.Transaction,
        dbs: Databases,
        next_label: int,
        compile_filter: CompileFilter,
        delta: Any,
    ) -> None:
        self._txn = txn
        self._dbs = dbs
        self.next_label = next_label
        self._compile_filter = compile_filter
        self.delta = delta  # store.IndexDelta
        self.born_labels: set[int] = set()

    def apply(self, op_id: int, op: Operation) -> None:
        if isinstance(op, UpsertPoints):
            self._upsert(op_id, op)
        elif isinstance(op, DeletePoints):
            for key in self._selected_keys(op.ids, op.filter):
                self._delete_point(op_id, key)
        elif isinstance(op, UpdatePayload):
            self._update_payload(op_id, op)
        elif isinstance(op, UpdateVectors):
            self._update_vectors(op_id, op)
        else:
            assert isinstance(op, DeleteVectors), type(op)
            for key in self._selected_keys(op.ids, op.filter):
                self._replace_vectors(op_id, key, drop_names=set(op.names), new={})

    # ---- one op kind each ------------------------------------------------------------------

    def _upsert(self, op_id: int, op: UpsertPoints) -> None:
        row_of = {name: _row_lookup(nv.rows, len(op.ids)) for name, nv in op.vectors.items()}
        predicate = None if op.update_filter is None else self._compile_filter(op.update_filter)
        for position, point_id in enumerate(op.ids):
            key = point_key(point_id)
            old = self._read(key)
            if op.update_mode is UpdateMode.INSERT_ONLY and old is not None:
                continue
            if op.update_mode is UpdateMode.UPDATE_ONLY and old is None:
                continue
            if old is not None and predicate is not None and not _matches(predicate, key, old):
                continue  # conditional upsert: an existing point must match to be replaced
            vectors = {
                name: nv.matrix[row_of[name][position]]
                for name, nv in op.vectors.items()
                if row_of[name][position] >= 0
            }
            if old is not None:
                self._kill(op_id, key, old)
            self._write_new_version(op_id, key, op.payloads[position], vectors)

    def _delete_point(self, op_id: int, key: bytes) -> None:
        old = self._read(key)
        if old is None:
            return
        self._kill(op_id, key, old)
        self._txn.delete(key, db=self._dbs.points)
        self.delta.points_written += 1

    def _update_payload(self, op_id: int, op: UpdatePayload) -> None:
        for key in self._selected_keys(op.ids, op.filter):
            old = self._read(key)
            if old is None:
                continue
            label, _, payload, names = old
            new_payload = edited_payload(payload or {}, op)
            self._txn.put(key, cbor2.dumps([label, op_id, new_payload, names]), db=self._dbs.points)
            self.delta.points_written += 1

    def _update_vectors(self, op_id: int, op: UpdateVectors) -> None:
        row_of = {name: _row_lookup(nv.rows, len(op.ids)) for name, nv in op.vectors.items()}
        predicate = None if op.update_filter is None else self._compile_filter(op.update_filter)
        for position, point_id in enumerate(op.ids):
            key = point_key(point_id)
            old = self._read(key)
            if old is None or (predicate is not None and not _matches(predicate, key, old)):
                continue
            new = {
                name: nv.matrix[row_of[name][position]]
                for name, nv in op.vectors.items()
                if row_of[name][position] >= 0
            }
            self._replace_vectors(op_id, key, drop_names=set(), new=new)

    def _replace_vectors(
        self, op_id: int, key: bytes, drop_names: set[str], new: dict[str, np.ndarray]
    ) -> None:
        """New version of a point: old vectors kept unless dropped or replaced."""
        old = self._read(key)
        if old is None:
            return
        old_label, _, payload, old_names = old
        vectors = {}
        for name in old_names:
            if name not in drop_names and name not in new:
                raw = self._txn.get(label_key(old_label), db=self._dbs.vectors[name])
                assert raw is not None, (old_label, name)
                vectors[name] = np.frombuffer(raw, dtype="<f4")
        vectors.update(new)
        self._kill(op_id, key, old)
        self._write_new_version(op_id, key, payload, vectors)

    # ---- shared steps ----------------------------------------------------------------------

    def _selected_keys(self, ids: list[PointId] | None, filter_: Any) -> list[bytes]:
        if filter_ is None:
            assert ids is not None, "an op selects points by ids or by filter"
            return list(dict.fromkeys(point_key(point_id) for point_id in ids))
        predicate = self._compile_filter(filter_)
        keys = []
        for key, value in self._txn.cursor(db=self._dbs.points):
            if _matches(predicate, bytes(key), cbor2.loads(value)):
                keys.append(bytes(key))
        return keys

    def _read(self, key: bytes) -> list[Any] | None:
        value = self._txn.get(key, db=self._dbs.points)
        return None if value is None else cbor2.loads(value)

    def _write_new_version(
        self, op_id: int, key: bytes, payload: dict[str, Any] | None, vectors: dict[str, np.ndarray]
    ) -> None:
        label = self.next_label
        self.next_label += 1
        self.born_labels.add(label)
        encoded_label = label_key(label)
        for name, vector in vectors.items():
            self._txn.put(
                encoded_label,
                vector.astype("<f4", copy=False).tobytes(),
                db=self._dbs.vectors[name],
            )
            self.delta.added_labels.setdefault(name, []).append(label)
            self.delta.added_vectors.setdefault(name, []).append(vector)
        value = cbor2.dumps([label, op_id, payload, list(vectors)])
        self._txn.put(key, value, db=self._dbs.points)
        self._txn.put(encoded_label, key, db=self._dbs.labels)
        self.delta.points_written += 1

    def _kill(self, op_id: int, key: bytes, old: list[Any]) -> None:
        old_label, _, _, old_names = old
        encoded_label = label_key(old_label)
        is_deleted = self._txn.delete(encoded_label, db=self._dbs.labels)
        assert is_deleted, f"label {old_label} of point {point_id_from_key(key)} not in labels db"
        for name in old_names:
            is_deleted = self._txn.delete(encoded_label, db=self._dbs.vectors[name])
            assert is_deleted, (old_label, name)
            self.delta.removed_labels.setdefault(name, []).append(old_label)
        self._txn.put(encoded_label, cbor2.dumps([op_id, old_names]), db=self._dbs.dead)


def edited_payload(payload: dict[str, Any], op: UpdatePayload) -> dict[str, Any] | None:
    """The payload after a payload op (a new object; `payload` is not modified)."""
    if op.mode is PayloadMode.CLEAR:
        return None
    if op.mode is PayloadMode.OVERWRITE:
        return copy.deepcopy(op.payload)
    result = copy.deepcopy(payload)
    if op.mode is PayloadMode.DELETE_KEYS:
        for path in op.keys or []:
            _delete_path(result, path.split("."))
        return result
    assert op.mode is PayloadMode.SET and op.payload is not None, op.mode
    target = result
    if op.key:
        for part in op.key.split("."):
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
    target.update(copy.deepcopy(op.payload))
    return result


def _delete_path(payload: dict[str, Any], parts: list[str]) -> None:
    target: Any = payload
    for part in parts[:-1]:
        if not isinstance(target, dict) or part not in target:
            return
        target = target[part]
    if isinstance(target, dict):
        target.pop(parts[-1], None)


def _matches(predicate: Predicate, key: bytes, stored: list[Any]) -> bool:
    _, _, payload, names = stored
    return predicate(point_id_from_key(key), payload or {}, names)


def _row_lookup(rows: np.ndarray, point_count: int) -> list[int]:
    lookup = np.full(point_count, -1, dtype=np.int64)
    lookup[rows] = np.arange(len(rows))
    return lookup.tolist()
