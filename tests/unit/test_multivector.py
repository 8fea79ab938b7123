"""Multivectors in the engine: the WAL encoding, the store (matrices in `v:<name>`, kept out
of the graphs' delta and the read view), MaxSim against a brute force, and durability: a
restart, a replay of the same ops, a snapshot restore and `keel check` all keep the matrices."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import cbor2
import lmdb
import numpy as np
import pytest

from engine.check.check import Severity, check_storage
from engine.errors import BadRequest, CorruptionError
from engine.ops import (
    CollectionConfig,
    Distance,
    MultiColumn,
    NamedVectors,
    PayloadSelector,
    UpdateVectors,
    UpsertPoints,
    VectorConfig,
    VectorSelector,
)
from engine.query import multivector
from engine.query.plan import Nearest, QueryNode, QueryRequest
from engine.store.checksum import seal
from engine.store.store import Store
from engine.validation import validated
from engine.vectors.hnsw import has_graph
from engine.wal.op_codec import decode_op, encode_op
from server.wire.filters import parse_filter
from tests.unit.engine_helpers import open_catalog

DIM = 3
MAP_BYTES = 1 << 22
CONFIG = CollectionConfig(
    vectors={
        "mv": VectorConfig(DIM, Distance.DOT, is_multivector=True),
        "d": VectorConfig(DIM, Distance.DOT),
    }
)
FIRST = np.array([[1, 2, 3], [0.5, -1, 2]], dtype=np.float32)
SECOND = np.array([[0, 1, 0]], dtype=np.float32)


def multi_upsert(matrices: dict[int, np.ndarray]) -> UpsertPoints:
    ids = list(matrices)
    column = MultiColumn.from_matrices(list(range(len(ids))), list(matrices.values()), DIM)
    dense = NamedVectors(np.arange(len(ids), dtype=np.int32), np.eye(len(ids), DIM, dtype="f4"))
    return UpsertPoints(ids, {"d": dense}, [None] * len(ids), multi={"mv": column})


def test_multivector_ops_round_trip_through_the_wal_encoding():
    upsert = multi_upsert({1: FIRST, 2: SECOND})
    decoded = decode_op(encode_op(upsert))
    assert isinstance(decoded, UpsertPoints)
    column = decoded.multi["mv"]
    assert column.rows.tolist() == [0, 1]
    assert column.offsets.tolist() == [0, 2, 3]
    assert np.array_equal(column.matrix_of(0), FIRST)
    assert np.array_equal(column.matrix_of(1), SECOND)
    update = UpdateVectors([2], {}, multi={"mv": MultiColumn.from_matrices([0], [FIRST], DIM)})
    decoded_update = decode_op(encode_op(update))
    assert np.array_equal(decoded_update.multi["mv"].matrix, FIRST)


def test_an_op_without_multivectors_encodes_as_before():
    """No `mv` key unless there are multivectors: records written before them read the same."""
    op = multi_upsert({1: FIRST})
    plain = UpsertPoints(op.ids, op.vectors, op.payloads)
    assert "mv" not in cbor2.loads(encode_op(plain))
    assert decode_op(encode_op(plain)).multi == {}


def test_config_round_trip_and_old_configs_read_as_before():
    data = CONFIG.to_json_dict()
    assert data["vectors"]["mv"]["multivector"] == "max_sim"
    assert "multivector" not in data["vectors"]["d"]
    assert CollectionConfig.from_json_dict(data) == CONFIG
    assert CONFIG.multivector_dims() == {"mv": DIM}
    assert not has_graph(CONFIG.vectors["mv"], CONFIG.hnsw)
    assert has_graph(CONFIG.vectors["d"], CONFIG.hnsw)


def test_the_store_keeps_matrices_out_of_the_graph_delta(tmp_path: Path):
    store = Store(tmp_path / "lmdb", ["mv", "d"], MAP_BYTES, (), CONFIG.multivector_dims())
    delta = store.write_batch([(0, multi_upsert({1: FIRST, 2: SECOND}))])
    assert set(delta.added_labels) == {"d"}
    [first, second] = store.get_vectors("mv", [0, 1])
    assert np.array_equal(first, FIRST)
    assert np.array_equal(second, SECOND)
    # A dense-only update keeps the matrix; the point's new label carries it.
    update = UpdateVectors([1], {"d": NamedVectors(np.zeros(1, np.int32), np.ones((1, DIM), "f4"))})
    delta = store.write_batch([(1, update)])
    assert set(delta.removed_labels) == {"d"}
    [point] = store.get_points([b"\x00" + (1).to_bytes(8, "big")])
    assert point is not None
    assert np.array_equal(store.get_vectors("mv", [point.label])[0], FIRST)
    store.close()


def test_replaying_the_same_ops_builds_the_same_store(tmp_path: Path):
    records = [
        (0, multi_upsert({1: FIRST, 2: SECOND})),
        (1, UpdateVectors([2], {}, multi={"mv": MultiColumn.from_matrices([0], [FIRST], DIM)})),
    ]
    stores = []
    for name, ops in (("a", records), ("b", [(i, decode_op(encode_op(op))) for i, op in records])):
        store = Store(tmp_path / name, ["mv", "d"], MAP_BYTES, (), CONFIG.multivector_dims())
        store.write_batch(ops)
        store.write_batch(ops)  # applied twice: the state of once
        stores.append(store)
    for store in stores:
        labels = [point.label for point in store.iter_points(None)]
        matrices = store.get_vectors("mv", labels)
        assert [m.tolist() for m in matrices] == [FIRST.tolist(), FIRST.tolist()]
        store.close()


@pytest.mark.parametrize("distance", list(Distance))
def test_maxsim_matches_a_brute_force(distance: Distance):
    rng = np.random.default_rng(3)
    query = rng.normal(size=(3, DIM)).astype(np.float32)
    matrices = [rng.normal(size=(count, DIM)).astype(np.float32) for count in (1, 4, 2)]
    if distance is Distance.COSINE:
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
        matrices = [m / np.linalg.norm(m, axis=1, keepdims=True) for m in matrices]

    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        if distance in (Distance.COSINE, Distance.DOT):
            return float(a @ b)
        if distance is Distance.EUCLID:
            return -float(np.sum((a - b) ** 2))
        return -float(np.sum(np.abs(a - b)))

    expected = [sum(max(similarity(q, row) for row in m) for q in query) for m in matrices]
    scores = multivector.maxsim_scores(query, matrices, distance)
    assert scores.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    reported = multivector.reported(scores, distance).tolist()
    if distance is Distance.EUCLID:
        assert reported == pytest.approx([np.sqrt(-e) for e in expected], rel=1e-5)
    elif distance is Distance.MANHATTAN:
        assert reported == pytest.approx([-e for e in expected], rel=1e-5)


def test_validation_refuses_bad_matrices_and_normalises_cosine_rows():
    config = CollectionConfig(vectors={"": VectorConfig(2, Distance.COSINE, is_multivector=True)})
    good = UpsertPoints(
        [1], {}, [None], multi={"": MultiColumn.from_matrices([0], [np.array([[3, 4.0]])], 2)}
    )
    checked = validated(good, config, {})
    assert checked.multi[""].matrix.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)]]
    for matrix in (np.array([[1.0, 2, 3]]), np.array([[np.nan, 1.0]])):
        bad = UpsertPoints([1], {}, [None], multi={"": MultiColumn.from_matrices([0], [matrix], 2)})
        with pytest.raises(BadRequest):
            validated(bad, config, {})
    dense = UpsertPoints(
        [1], {"": NamedVectors(np.zeros(1, np.int32), np.ones((1, 2), "f4"))}, [None]
    )
    with pytest.raises(BadRequest, match="multi and regular"):
        validated(dense, config, {})


async def store_and_close(storage: Path, matrices: dict[int, np.ndarray]) -> None:
    """Collection `c` (CONFIG) in `storage` holding `matrices`, applied, then closed."""
    catalog = await open_catalog(storage)
    await catalog.create("c", CONFIG)
    await catalog.get("c").update(multi_upsert(matrices), wait=True, timeout_s=None)
    await catalog.close()


def rewrite_first_matrix(storage: Path, new_value: Callable[[bytes], bytes]) -> None:
    """Replace the stored value of collection `c`'s first matrix (by label) in LMDB."""
    env = lmdb.open(str(storage / "collections" / "c" / "lmdb"), max_dbs=16)
    with env.begin(write=True) as txn:
        db = env.open_db(b"v:mv", txn=txn)
        key, value = next(iter(txn.cursor(db)))
        txn.put(key, new_value(bytes(value)), db=db)
    env.close()


async def test_multivectors_survive_restart_snapshot_and_check(tmp_path: Path):
    storage = tmp_path / "storage"
    catalog = await open_catalog(storage)
    await catalog.create("c", CONFIG)
    await catalog.get("c").update(multi_upsert({1: FIRST, 2: SECOND}), wait=False, timeout_s=None)
    await catalog.close()

    catalog = await open_catalog(storage)
    collection = catalog.get("c")
    assert collection.config.vectors["mv"].is_multivector
    assert "mv" not in collection._reader._view.vectors  # no read-view cache for matrices
    records = await collection.retrieve([1, 2], PayloadSelector(False), VectorSelector(True))
    matrices = {record.id: record.vectors["mv"].tolist() for record in records}
    assert matrices == {1: FIRST.tolist(), 2: SECOND.tolist()}
    node = QueryNode(query=Nearest([[0.0, 1.0, 0.0]]), using="mv", limit=5)
    result = await collection.query(QueryRequest(root=node), {})
    assert [(hit.id, hit.score) for hit in result.points] == [(1, 2.0), (2, 1.0)]

    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await catalog.restore("copy", tmp_path / "snapshots" / "c" / info.name)
    restored = catalog.get("copy")
    records = await restored.retrieve([1, 2], PayloadSelector(False), VectorSelector(True))
    assert {record.id: record.vectors["mv"].tolist() for record in records} == matrices
    await catalog.close()

    report = check_storage(storage, lambda _text: None)
    assert [f for f in report.findings if f.severity is not Severity.NOTE] == []


@pytest.mark.parametrize(("rows", "is_damage"), [(2.0, False), (0.0, True), (1.5, True)])
async def test_check_accepts_whole_rows_only(tmp_path: Path, rows: float, is_damage: bool):
    """`keel check` on a multivector value of `rows` rows (sealed, so only its length is
    wrong): any whole number of rows but zero is sound."""
    storage = tmp_path / "storage"
    await store_and_close(storage, {1: FIRST})
    values = np.ones(int(rows * DIM), dtype="<f4").tobytes()
    rewrite_first_matrix(storage, lambda _old: seal(values))
    report = check_storage(storage, lambda _text: None)
    problems = [f.text for f in report.findings if f.severity is not Severity.NOTE]
    if is_damage:
        assert any("vector of the wrong dimension" in text for text in problems), problems
    else:
        assert problems == []


def nearest(vector: list[list[float]], limit: int = 10, filter_=None) -> QueryRequest:
    return QueryRequest(
        root=QueryNode(query=Nearest(vector), using="mv", limit=limit, filter=filter_)
    )


async def test_a_whole_collection_scan_orders_equal_scores_by_point_id(tmp_path: Path):
    """The scan reads matrices by label (write order); equal MaxSim scores still come in
    point id order, as the scan of the points in key order gave them, filtered or not,
    and with UUIDs among the ids (then the points are scanned in key order)."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", CONFIG)
    collection = catalog.get("c")
    ids = [9, 3, 12, 1, 7]  # written in this order: labels 0..4
    await collection.update(multi_upsert({i: SECOND for i in ids}), wait=True, timeout_s=None)
    await collection.update(multi_upsert({4: FIRST}), wait=True, timeout_s=None)
    result = await collection.query(nearest([[0.0, 1.0, 0.0]]), {})
    assert [(hit.id, hit.score) for hit in result.points] == [(4, 2.0)] + [
        (i, 1.0) for i in sorted(ids)
    ]
    odd = parse_filter({"must": [{"has_id": [9, 3, 1, 7]}]})
    result = await collection.query(nearest([[0.0, 1.0, 0.0]], 3, odd), {})
    assert [hit.id for hit in result.points] == [1, 3, 7]
    some_uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"
    column = MultiColumn.from_matrices([0], [SECOND], DIM)
    dense = NamedVectors(np.zeros(1, dtype=np.int32), np.ones((1, DIM), dtype="f4"))
    upsert = UpsertPoints([uuid.UUID(some_uuid)], {"d": dense}, [None], multi={"mv": column})
    await collection.update(upsert, wait=True, timeout_s=None)
    result = await collection.query(nearest([[0.0, 1.0, 0.0]]), {})
    assert [str(hit.id) for hit in result.points] == ["4", *map(str, sorted(ids)), some_uuid]
    await catalog.close()


async def test_a_whole_collection_scan_raises_on_a_damaged_matrix(tmp_path: Path):
    storage = tmp_path / "storage"
    await store_and_close(storage, {1: FIRST, 2: SECOND})
    rewrite_first_matrix(storage, lambda old: old[:-1] + bytes([old[-1] ^ 1]))  # a bit flipped
    catalog = await open_catalog(storage)
    with pytest.raises(CorruptionError):
        await catalog.get("c").query(nearest([[0.0, 1.0, 0.0]]), {})
    await catalog.close()
