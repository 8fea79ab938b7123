"""Sparse vectors in the engine: WAL encoding, the LMDB inverted index kept in step with the
points under overwrite, delete and vector delete, replay, and a restart of a collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.ops import (
    CollectionConfig,
    DeletePoints,
    DeleteVectors,
    Distance,
    PayloadSelector,
    SparseColumn,
    SparseModifier,
    SparseVector,
    SparseVectorConfig,
    UpdateVectors,
    UpsertPoints,
    VectorConfig,
    VectorSelector,
)
from engine.store.store import Store
from engine.wal.op_codec import decode_op, encode_op
from tests.unit.engine_helpers import open_catalog

MAP_BYTES = 16 * 1024 * 1024


def sparse(indices: list[int], values: list[float]) -> SparseVector:
    return SparseVector(np.array(indices, np.uint32), np.array(values, np.float32))


def sparse_upsert(vectors: dict[int, SparseVector | None]) -> UpsertPoints:
    ids = list(vectors)
    rows = [position for position, point_id in enumerate(ids) if vectors[point_id] is not None]
    column = SparseColumn.from_vectors(rows, [vectors[ids[row]] for row in rows])
    return UpsertPoints(ids, {}, [None] * len(ids), sparse={"s": column})


def postings(store: Store) -> set[tuple[int, int, float]]:
    """(index, label, value) of every inverted-index entry of sparse vector "s"."""
    with store._env.begin() as txn:
        entries = set()
        for key, value in txn.cursor(store._inverted["s"]):
            index, label = int.from_bytes(key[:4], "big"), int.from_bytes(key[4:], "big")
            entries.add((index, label, float(np.frombuffer(value, "<f4")[0])))
        assert txn.stat(store._sparse["s"])["entries"] == len({e[1] for e in entries})
    return entries


def test_sparse_ops_round_trip_through_the_wal_encoding():
    op = sparse_upsert({1: sparse([2, 9], [0.5, -1]), 2: None, 3: sparse([], [])})
    decoded = decode_op(encode_op(op))
    assert isinstance(decoded, UpsertPoints)
    column = decoded.sparse["s"]
    assert column.rows.tolist() == [0, 2]
    assert column.vector(0).indices.tolist() == [2, 9]
    assert column.vector(0).values.tolist() == [0.5, -1.0]
    assert column.vector(1).indices.tolist() == []
    update = UpdateVectors(
        [7], {}, sparse={"s": SparseColumn.from_vectors([0], [sparse([1], [2])])}
    )
    assert decode_op(encode_op(update)).sparse["s"].vector(0).values.tolist() == [2.0]
    assert decode_op(encode_op(UpsertPoints([1], {}, [None]))).sparse == {}


def test_inverted_index_follows_overwrite_vector_delete_and_delete(tmp_path: Path):
    store = Store(tmp_path / "lmdb", [], MAP_BYTES, ("s",))
    store.write_batch([(0, sparse_upsert({1: sparse([2, 9], [0.5, 1]), 2: sparse([2], [3])}))])
    assert postings(store) == {(2, 0, 0.5), (9, 0, 1.0), (2, 1, 3.0)}
    store.write_batch([(1, sparse_upsert({1: sparse([4], [2])}))])  # overwrite: new label 2
    assert postings(store) == {(4, 2, 2.0), (2, 1, 3.0)}
    store.write_batch([(2, DeleteVectors([2], ["s"]))])
    assert postings(store) == {(4, 2, 2.0)}
    store.write_batch([(3, DeletePoints([1]))])
    assert postings(store) == set()
    store.close()


def test_replaying_the_same_ops_builds_the_same_index(tmp_path: Path):
    ops = [
        sparse_upsert({1: sparse([1, 3], [1, 2]), 2: sparse([3], [5])}),
        UpdateVectors([2], {}, sparse={"s": SparseColumn.from_vectors([0], [sparse([8], [1])])}),
        DeletePoints([1]),
        sparse_upsert({5: sparse([3, 8], [1, 1])}),
    ]
    records = list(enumerate(ops))
    first = Store(tmp_path / "a", [], MAP_BYTES, ("s",))
    first.write_batch(records[:2])
    first.write_batch(records[1:])  # op 1 again: skipped, as in a replay
    replayed = Store(tmp_path / "b", [], MAP_BYTES, ("s",))
    replayed.write_batch([(op_id, decode_op(encode_op(op))) for op_id, op in records])
    assert postings(first) == postings(replayed) == {(8, 2, 1.0), (3, 3, 1.0), (8, 3, 1.0)}
    first.close()
    replayed.close()


async def test_sparse_vectors_survive_a_restart_and_are_searched(tmp_path: Path):
    config = CollectionConfig(
        vectors={"d": VectorConfig(2, Distance.DOT)},
        sparse_vectors={"s": SparseVectorConfig(SparseModifier.IDF)},
    )
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", config)
    op = sparse_upsert({1: sparse([1], [1]), 2: sparse([1, 2], [1, 1]), 3: None})
    await catalog.get("c").update(op, wait=False, timeout_s=None)
    await catalog.close()
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    assert collection.config.sparse_vectors == config.sparse_vectors
    records = await collection.retrieve([2, 3], PayloadSelector(False), VectorSelector(True))
    vectors = {record.id: record.vectors for record in records}
    assert vectors[2]["s"].indices.tolist() == [1, 2]
    assert vectors[3] == {}
    hits = collection._reader.sparse_search("s", sparse([2], [1]), None, None, 10)
    assert hits == [(2, float(np.float32(np.log(2.0))))]
    await catalog.close()
