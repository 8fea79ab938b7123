"""The offline check of one collection's LMDB store: every value and every cross-reference.

Owns: reading a stopped collection's LMDB environment read-only and finding what is wrong
with it — values failing their checksum (engine/store/checksum.py), the id map not agreeing both ways
(points <-> labels), vectors without a point or points without their vectors, dead labels
still alive, and derived data (payload index entries and counts, the sparse inverted index)
differing from what the sealed values say it must be.
Not here: the WAL and index checkpoints (engine/check/check.py), writing anything (engine/check/check.py's repair goes
through the Store).

It reads the databases engine/store/store.py's table lists, with the same encodings; a change there must
be mirrored here, and tests/unit/test_check.py breaks each database once to prove it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import cbor2
import lmdb
import numpy as np

from engine.filters.payload_path import PayloadPath
from engine.limits import VECTOR_NAMES_MAX
from engine.ops import (
    CollectionConfig,
    SparseVector,
    VectorConfig,
    point_id_from_key,
    reconcile_vector_names,
)
from engine.store import payload_index
from engine.store.checksum import is_intact, unseal
from engine.store.mutations import inverted_key, label_key

FINDINGS_PER_KIND_MAX = 20  # one damaged page can fail thousands of values: show a sample
PROGRESS_EVERY_POINTS = 100_000


@dataclass
class StoreFacts:
    """What the store says, for checking the index checkpoints against it."""

    applied_op_id: int = -1
    next_label: int = 0
    store_format: int = -1
    live_labels: dict[str, dict[int, bytes]] = field(default_factory=dict)  # name -> label -> key
    dead_labels: dict[int, tuple[int, list[str]]] = field(default_factory=dict)
    points_count: int = 0


@dataclass
class StoreCheck:
    facts: StoreFacts
    problems: list[str]  # each names the database and key; empty: the store is sound
    is_derived_only: bool  # every problem is in derived data, which a repair rebuilds


class StoreView:
    """A stopped collection's LMDB environment, read-only, in one read transaction.

    Use it as a context manager; nothing may write to the environment meanwhile (the
    caller holds the storage lock).
    """

    def __init__(self, path: Path, config: CollectionConfig) -> None:
        self._env = lmdb.open(
            str(path),
            readonly=True,
            lock=False,
            subdir=True,
            max_dbs=8 + 3 * max(VECTOR_NAMES_MAX, len(config.vectors), len(config.sparse_vectors)),
        )
        self._txn = self._env.begin(buffers=False)
        # The names are LMDB's `vector_schema` record's once a vector-name op was applied
        # (engine/store/store.py); config.json may lag it after a crash, until the next open.
        self.config = self._with_stored_names(config)

    def _with_stored_names(self, config: CollectionConfig) -> CollectionConfig:
        try:
            meta = self._env.open_db(b"meta", txn=self._txn, create=False)
        except lmdb.NotFoundError:
            return config  # an empty environment: the checker says so
        raw = self._txn.get(b"vector_schema", db=meta)
        if raw is None:
            return config
        record = cbor2.loads(unseal(raw, "meta", b"vector_schema"))
        return reconcile_vector_names(config, CollectionConfig.from_json_dict(record["config"]))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._txn.abort()
        self._env.close()

    def check(self, progress: Callable[[str], None]) -> StoreCheck:
        return _Checker(self._env, self._txn, self.config, progress).run()

    def vectors(self, name: str, labels: list[int]) -> np.ndarray:
        """The stored dense vectors of `labels` (live, checked sound by `check`)."""
        db = self._env.open_db(("v:" + name).encode(), txn=self._txn, create=False)
        rows = [self._txn.get(label_key(label), db=db)[:-4] for label in labels]
        dim = self.config.vectors[name].size
        return np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(labels), dim)


class _Checker:
    def __init__(
        self,
        env: lmdb.Environment,
        txn: lmdb.Transaction,
        config: CollectionConfig,
        progress: Callable[[str], None],
    ) -> None:
        self._txn = txn
        self._config = config
        self._progress = progress
        self._counts: dict[str, int] = {}
        self.problems: list[str] = []
        self.derived_problems: list[str] = []
        self.facts = StoreFacts()

        def db(name: str, dupsort: bool = False) -> Any:
            return env.open_db(name.encode(), txn=txn, create=False, dupsort=dupsort)

        self._meta, self._points, self._labels, self._dead = map(
            db, ("meta", "points", "labels", "dead")
        )
        self._vectors = {name: db("v:" + name) for name in config.vectors}
        self._sparse = {name: db("s:" + name) for name in config.sparse_vectors}
        self._inverted = {name: db("i:" + name) for name in config.sparse_vectors}
        self._schema = db("schema")
        self._pindex = db("pindex", dupsort=True)

    def run(self) -> StoreCheck:
        self._check_meta()
        points = self._check_points()
        self._check_labels(points)
        self._check_dead()
        for name in self._config.vectors:
            self._check_vector_db(name, self._vectors[name], points)
        for name in self._config.sparse_vectors:
            self._check_vector_db(name, self._sparse[name], points)
            self._check_inverted(name)
        self._check_payload_indexes(points)
        problems = self.problems + self.derived_problems
        return StoreCheck(self.facts, problems, is_derived_only=not self.problems)

    # ---- one database each -----------------------------------------------------------------

    def _check_meta(self) -> None:
        def u64(key: bytes, default: int) -> int:
            raw = self._txn.get(key, db=self._meta)
            return default if raw is None else int.from_bytes(raw, "big")

        self.facts.applied_op_id = u64(b"applied_op_id", -1)
        self.facts.next_label = u64(b"next_label", 0)
        self.facts.store_format = u64(b"format", -1)

    def _check_points(self) -> dict[bytes, list[Any]]:
        """Every point's decoded value, by key; each one's label and vectors checked."""
        points: dict[bytes, list[Any]] = {}
        for key, raw in self._txn.cursor(db=self._points):
            stored = self._decode("points", key, raw)
            if stored is None:
                continue
            if not (isinstance(stored, list) and len(stored) == 4):
                self._damage("points", key, "value is not [label, version, payload, names]")
                continue
            label, version, _payload, names = stored
            if version > self.facts.applied_op_id:
                self._damage("points", key, f"version op {version} is past the applied op")
            if label >= self.facts.next_label:
                self._damage("points", key, f"label {label} >= next_label")
            for name in names:
                if name not in self._config.vectors and name not in self._config.sparse_vectors:
                    self._damage("points", key, f"names an unknown vector {name!r}")
                self.facts.live_labels.setdefault(name, {})[label] = key
            points[key] = stored
            if len(points) % PROGRESS_EVERY_POINTS == 0:
                self._progress(f"points checked: {len(points)}")
        self.facts.points_count = len(points)
        return points

    def _check_labels(self, points: dict[bytes, list[Any]]) -> None:
        """labels -> points and points -> labels must be one bijection."""
        seen: set[int] = set()
        for encoded_label, raw in self._txn.cursor(db=self._labels):
            label = int.from_bytes(encoded_label, "big")
            if not is_intact(raw):
                self._damage("labels", encoded_label, "value fails its checksum")
                continue
            key = raw[:-4]
            stored = points.get(key)
            if stored is None or stored[0] != label:
                self._damage("labels", encoded_label, f"maps to {_describe(key)}, not back")
            seen.add(label)
        for key, stored in points.items():
            if stored[0] not in seen:
                self._damage("points", key, f"label {stored[0]} missing from labels")

    def _check_dead(self) -> None:
        for encoded_label, raw in self._txn.cursor(db=self._dead):
            value = self._decode("dead", encoded_label, raw)
            if value is None:
                continue
            death_op_id, names = value
            label = int.from_bytes(encoded_label, "big")
            if self._txn.get(encoded_label, db=self._labels) is not None:
                self._damage("dead", encoded_label, "label is dead and alive")
            if death_op_id > self.facts.applied_op_id:
                self._damage("dead", encoded_label, f"died at op {death_op_id}, past applied")
            self.facts.dead_labels[label] = (death_op_id, names)

    def _check_vector_db(self, name: str, db: Any, points: dict[bytes, list[Any]]) -> None:
        """Every label of a point naming `name` has a sound vector, and no other label has."""
        is_sparse = name in self._config.sparse_vectors
        db_name = ("s:" if is_sparse else "v:") + name
        expected = self.facts.live_labels.get(name, {})
        found: set[int] = set()
        for encoded_label, raw in self._txn.cursor(db=db):
            label = int.from_bytes(encoded_label, "big")
            found.add(label)
            if label not in expected:
                self._damage(db_name, encoded_label, "vector of no live point")
            if not is_intact(raw):
                self._damage(db_name, encoded_label, "value fails its checksum")
            elif is_sparse:
                if (len(raw) - 4) % 8:
                    self._damage(db_name, encoded_label, "sparse vector of a bad length")
            elif not _is_vector_length(len(raw) - 4, self._config.vectors[name]):
                self._damage(db_name, encoded_label, "vector of the wrong dimension")
        for label in expected.keys() - found:
            self._damage("points", expected[label], f"vector {name!r} missing")

    def _check_inverted(self, name: str) -> None:
        """The sparse inverted index equals the one the sparse vectors imply."""
        expected: dict[bytes, bytes] = {}
        for encoded_label, raw in self._txn.cursor(db=self._sparse[name]):
            if not is_intact(raw) or (len(raw) - 4) % 8:
                continue  # reported by _check_vector_db
            vector = SparseVector.from_bytes(raw[:-4])
            label = int.from_bytes(encoded_label, "big")
            values = vector.values.astype("<f4").tobytes()
            for position, index in enumerate(vector.indices.tolist()):
                expected[inverted_key(index, label)] = values[4 * position : 4 * position + 4]
        actual = dict(self._txn.cursor(db=self._inverted[name]))
        if actual != expected:
            wrong = len(actual.keys() ^ expected.keys()) + sum(
                actual[key] != expected[key] for key in actual.keys() & expected.keys()
            )
            self._derived(f"database=i:{name}: {wrong} entries differ from the sparse vectors")

    def _check_payload_indexes(self, points: dict[bytes, list[Any]]) -> None:
        """Each payload index's entries and points count, recomputed from the payloads."""
        expected: set[tuple[bytes, bytes]] = set()
        for field_bytes, raw in self._txn.cursor(db=self._schema):
            spec_value = self._decode("schema", field_bytes, raw)
            if spec_value is None:
                continue
            field_name = field_bytes.decode()
            schema_type, _params, points_count = spec_value
            path = PayloadPath.parse(field_name)
            prefix = payload_index.field_key(field_name)
            counted = 0
            for key, stored in points.items():
                payload = stored[2] or {}
                for value in payload_index.index_values(schema_type, path, payload):
                    expected.add((prefix + value, key))
                counted += payload_index.is_counted(schema_type, path, payload)
            if counted != points_count:
                self._derived(
                    f"database=schema key={field_name!r}: points count {points_count}, "
                    f"payloads say {counted}"
                )
        # A cursor's plain iteration (MDB_NEXT) visits every duplicate of a dupsort key.
        actual = {(bytes(key), bytes(value)) for key, value in self._txn.cursor(db=self._pindex)}
        if actual != expected:
            wrong = len(actual ^ expected)
            self._derived(f"database=pindex: {wrong} entries differ from the payloads")

    # ---- recording -------------------------------------------------------------------------

    def _decode(self, db_name: str, key: bytes, raw: bytes) -> Any:
        if not is_intact(raw):
            self._damage(db_name, key, "value fails its checksum")
            return None
        try:
            return cbor2.loads(raw[:-4])
        except (cbor2.CBORDecodeError, ValueError) as error:
            self._damage(db_name, key, f"value is not CBOR: {error}")
            return None

    def _damage(self, db_name: str, key: bytes, what: str) -> None:
        self._record(self.problems, db_name, f"database={db_name} key={_describe(key)}: {what}")

    def _derived(self, text: str) -> None:
        self._record(self.derived_problems, "derived", text)

    def _record(self, problems: list[str], kind: str, text: str) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self._counts[kind] <= FINDINGS_PER_KIND_MAX:
            problems.append(text)
        elif self._counts[kind] == FINDINGS_PER_KIND_MAX + 1:
            problems.append(f"database={kind}: more problems, not listed")


def _describe(key: bytes) -> str:
    """A point key as its id; any other key as hex."""
    key = bytes(key)
    is_point_key = (len(key), key[:1]) in ((9, b"\x00"), (17, b"\x01"))
    return f"{key.hex()} (point {point_id_from_key(key)})" if is_point_key else key.hex()


def _is_vector_length(value_bytes: int, config: VectorConfig) -> bool:
    """One vector of `size` float32s; for a multivector, one or more such rows."""
    row_bytes = 4 * config.size
    if config.is_multivector:
        return value_bytes > 0 and value_bytes % row_bytes == 0
    return value_bytes == row_bytes
