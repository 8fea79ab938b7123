"""A collection end to end without HTTP: update modes, waits, recovery, checkpoints."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BadRequest, Conflict, NotFound, Overloaded
from engine.ops import (
    DeletePoints,
    Distance,
    HnswSettings,
    PayloadSelector,
    SearchRequest,
    UpdateMode,
    UpdateStatus,
    VectorSelector,
)
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

ALL = PayloadSelector(True)
NO_VECTOR = VectorSelector(False)
WITH_VECTOR = VectorSelector(True)


async def payloads_of(collection, ids) -> dict:
    records = await collection.retrieve(ids, ALL, NO_VECTOR)
    return {record.id: record.payload for record in records}


async def test_update_modes_are_decided_in_op_order(tmp_path: Path) -> None:
    """Fire many concurrent wait=false writes on few ids; the result must equal applying
    them one after another in op-id order (a model replays them that way)."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    rng = random.Random(3)
    modes = list(UpdateMode)

    async def write(sequence: int):
        point_id = rng.randrange(4)
        if rng.random() < 0.15:
            op = DeletePoints([point_id])
        else:
            op = upsert([point_id], [[1, 2, 3, 4]], [{"sequence": sequence}], rng.choice(modes))
        result = await collection.update(op, wait=False, timeout_s=None)
        return result.op_id, op

    results = await asyncio.gather(*(write(sequence) for sequence in range(300)))
    model: dict[int, dict] = {}
    for _, op in sorted(results, key=lambda pair: pair[0]):
        if isinstance(op, DeletePoints):
            model.pop(op.ids[0], None)
            continue
        point_id, exists = op.ids[0], op.ids[0] in model
        if op.update_mode is UpdateMode.INSERT_ONLY and exists:
            continue
        if op.update_mode is UpdateMode.UPDATE_ONLY and not exists:
            continue
        model[point_id] = op.payloads[0]
    await collection.update(DeletePoints([999]), wait=True, timeout_s=None)
    assert await payloads_of(collection, [0, 1, 2, 3]) == model
    assert sorted(op_id for op_id, _ in results) == list(range(300))
    await catalog.close()


async def test_insert_only_and_update_only_skip_silently(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    await collection.update(upsert([1], [[1, 1, 1, 1]], [{"v": 1}]), wait=True, timeout_s=None)
    result = await collection.update(
        upsert([1, 2], [[2, 2, 2, 2]] * 2, [{"v": 2}] * 2, UpdateMode.INSERT_ONLY),
        wait=True,
        timeout_s=None,
    )
    assert result.status is UpdateStatus.COMPLETED
    assert await payloads_of(collection, [1, 2]) == {1: {"v": 1}, 2: {"v": 2}}
    await collection.update(
        upsert([2, 3], [[3, 3, 3, 3]] * 2, [{"v": 3}] * 2, UpdateMode.UPDATE_ONLY),
        wait=True,
        timeout_s=None,
    )
    assert await payloads_of(collection, [1, 2, 3]) == {1: {"v": 1}, 2: {"v": 3}}
    await catalog.close()


async def test_validation_errors_consume_no_op_id(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=4))
    collection = catalog.get("c")
    with pytest.raises(BadRequest, match="expected dim: 4, got 3"):
        await collection.update(upsert([1], [[1, 2, 3]]), wait=True, timeout_s=None)
    with pytest.raises(BadRequest, match="Not existing vector name error: image"):
        await collection.update(
            upsert([1], [[1, 2, 3, 4]], name="image"), wait=True, timeout_s=None
        )
    with pytest.raises(BadRequest, match="non-finite"):
        await collection.update(upsert([1], [[1, np.nan, 3, 4]]), wait=True, timeout_s=None)
    result = await collection.update(upsert([1], [[1, 2, 3, 4]]), wait=True, timeout_s=None)
    assert result.op_id == 0
    await catalog.close()


async def test_cosine_vectors_are_stored_normalized(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=2, distance=Distance.COSINE))
    collection = catalog.get("c")
    await collection.update(upsert([1], [[3, 4]]), wait=True, timeout_s=None)
    [record] = await collection.retrieve([1], ALL, WITH_VECTOR)
    np.testing.assert_allclose(record.vectors[""], [0.6, 0.8], rtol=1e-6)
    [hit] = await collection.search(SearchRequest("", np.array([6, 8], np.float32), limit=1))
    assert hit.score == pytest.approx(1.0, abs=1e-6)
    await catalog.close()


@pytest.mark.parametrize("distance", list(Distance))
async def test_search_scores_match_an_exact_numpy_computation(tmp_path: Path, distance) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=8, distance=distance))
    collection = catalog.get("c")
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(300, 8)).astype(np.float32)
    await collection.update(upsert(list(range(300)), matrix), wait=True, timeout_s=None)
    query = rng.normal(size=8).astype(np.float32)
    hits = await collection.search(SearchRequest("", query, limit=10, hnsw_ef=300))
    exact = await collection.search(SearchRequest("", query, limit=10, is_exact=True))
    if distance is Distance.COSINE:
        matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        query = query / np.linalg.norm(query)
    expected = {
        Distance.COSINE: matrix @ query,
        Distance.DOT: matrix @ query,
        Distance.EUCLID: np.linalg.norm(matrix - query, axis=1),
        Distance.MANHATTAN: np.abs(matrix - query).sum(axis=1),
    }[distance]
    order = np.argsort(-expected if distance.is_higher_better else expected)[:10]
    assert [hit.id for hit in exact] == order.tolist()
    assert [hit.id for hit in hits] == order.tolist()
    np.testing.assert_allclose([hit.score for hit in hits], expected[order], rtol=1e-4)
    threshold = hits[4].score  # Keel's own (Qdrant's arithmetic, not numpy's, at 8 dims)
    limited = await collection.search(SearchRequest("", query, limit=10, score_threshold=threshold))
    assert [hit.id for hit in limited] == order[:4].tolist()  # strict comparison drops #5
    await catalog.close()


async def test_wait_timeout_answers_without_cancelling_the_operation(
    tmp_path: Path, monkeypatch
) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    applier = collection._applier
    original_apply = applier._apply
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_apply(batch):
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
        return original_apply(batch)

    monkeypatch.setattr(applier, "_apply", slow_apply)
    result = await collection.update(upsert([7], [[1, 2, 3, 4]]), wait=True, timeout_s=0.05)
    assert result.status is UpdateStatus.WAIT_TIMEOUT
    assert await payloads_of(collection, [7]) == {}
    gate.set()
    assert await applier.wait_applied(result.op_id, timeout_s=10)
    assert await payloads_of(collection, [7]) == {7: {}}
    await catalog.close()


async def test_an_outcome_survives_the_reuse_of_a_refused_op_id(tmp_path: Path) -> None:
    """The WAL hands a refused op's id out again: the refused caller's late cleanup must not
    take the outcome the next caller of that id waits on."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    applier = catalog.get("c")._applier
    op_id = applier.applied_op_id + 1
    refused = applier.want_outcome(op_id)
    applier.drop_refused(op_id)
    reused = applier.want_outcome(op_id)
    applier.forget_outcome(op_id, refused)
    assert applier._outcomes == {op_id: reused}
    applier.forget_outcome(op_id, reused)
    assert applier._outcomes == {}
    await catalog.close()


async def test_backpressure_answers_overloaded_past_the_deadline(
    tmp_path: Path, monkeypatch
) -> None:
    catalog = await open_catalog(
        tmp_path, unapplied_bytes_max=1024 * 1024, backpressure_deadline_s=0.1
    )
    await catalog.create("c", single_vector_config(dim=64))
    collection = catalog.get("c")
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    original_apply = collection._applier._apply

    def blocked_apply(batch):
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
        return original_apply(batch)

    monkeypatch.setattr(collection._applier, "_apply", blocked_apply)
    big = np.ones((1000, 64), np.float32)  # ~256 KiB per op
    accepted = []
    with pytest.raises(Overloaded):
        for round_index in range(10):
            ids = list(range(round_index * 1000, (round_index + 1) * 1000))
            accepted.append(await collection.update(upsert(ids, big), wait=False, timeout_s=None))
    assert 0 < len(accepted) <= 4  # the budget held; memory did not grow without bound
    gate.set()
    last = await collection.update(DeletePoints([10**9]), wait=True, timeout_s=None)
    assert last.status is UpdateStatus.COMPLETED
    assert collection.stats().points_count == 1000 * len(accepted)
    await catalog.close()


async def test_restart_keeps_everything_and_continues_op_ids(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    point_uuid = uuid.uuid4()
    await collection.update(
        upsert([1, point_uuid], [[1, 0, 0, 0], [0, 1, 0, 0]], [{"a": 1}, {"b": [1, 2]}]),
        wait=False,
        timeout_s=None,
    )
    await collection.update(DeletePoints([1]), wait=False, timeout_s=None)
    await catalog.close()
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    assert await payloads_of(collection, [1, point_uuid]) == {point_uuid: {"b": [1, 2]}}
    result = await collection.update(upsert([2], [[0, 0, 1, 0]]), wait=True, timeout_s=None)
    assert result.op_id == 2
    await catalog.close()


async def test_corrupt_index_checkpoint_is_rebuilt_from_lmdb(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    matrix = np.random.default_rng(0).normal(size=(200, 4))
    await collection.update(upsert(list(range(200)), matrix), wait=True, timeout_s=None)
    await catalog.close()
    index_dir = tmp_path / "collections" / "c" / "index"
    [data_file] = index_dir.glob("*.hnsw")
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data_file.write_bytes(bytes(data))
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    await collection.wait_indexed()
    assert collection.stats().indexed_vectors_count == 200
    hits = await collection.search(SearchRequest("", np.ones(4, np.float32), limit=200))
    assert len(hits) == 200
    await catalog.close()


async def test_index_checkpoint_ahead_of_lmdb_is_discarded(tmp_path: Path) -> None:
    """After a power loss LMDB may roll back behind a checkpoint; the graph is rebuilt."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    await catalog.get("c").update(
        upsert([1, 2], [[1, 0, 0, 0], [0, 1, 0, 0]]), wait=True, timeout_s=None
    )
    await catalog.close()
    [meta_path] = (tmp_path / "collections" / "c" / "index").glob("*.json")
    meta = json.loads(meta_path.read_text())
    meta["op_id"] = 50  # pretend the graph covers ops LMDB never saw
    meta_path.write_text(json.dumps(meta))
    catalog = await open_catalog(tmp_path)
    hits = await catalog.get("c").search(SearchRequest("", np.ones(4, np.float32), limit=5))
    assert sorted(hit.id for hit in hits) == [1, 2]
    await catalog.close()


async def test_catalog_create_delete_and_errors(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    with pytest.raises(Conflict):
        await catalog.create("c", single_vector_config())
    for bad_name in ["..", "a/b", "", "x" * 300]:
        with pytest.raises(BadRequest):
            await catalog.create(bad_name, single_vector_config())
    assert await catalog.delete("c") is True
    assert await catalog.delete("c") is False
    with pytest.raises(NotFound, match="Collection `c` doesn't exist!"):
        catalog.get("c")
    assert list((tmp_path / "tmp").iterdir()) == []
    await catalog.close()
    catalog = await open_catalog(tmp_path)
    assert catalog.names() == []
    await catalog.close()


async def test_hnsw_m_zero_means_no_graph_and_exact_search(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    config = single_vector_config(dim=3)
    await catalog.create("c", replace(config, hnsw=HnswSettings(m=0)))
    collection = catalog.get("c")
    await collection.update(upsert([1, 2], [[1, 0, 0], [0, 1, 0]]), wait=True, timeout_s=None)
    [hit, _] = await collection.search(SearchRequest("", np.array([0, 2, 0], np.float32)))
    assert (hit.id, hit.score) == (2, 2.0)
    assert collection.stats().indexed_vectors_count == 0
    await catalog.close()


@pytest.mark.parametrize(
    "hnsw", [HnswSettings(m=10**6), HnswSettings(ef_construct=2), HnswSettings(ef_construct=10**7)]
)
async def test_hnsw_settings_past_the_limits_are_refused(tmp_path: Path, hnsw) -> None:
    catalog = await open_catalog(tmp_path)
    with pytest.raises(BadRequest, match="hnsw"):
        await catalog.create("c", replace(single_vector_config(), hnsw=hnsw))
    assert catalog.names() == []
    await catalog.close()


async def test_a_full_lmdb_map_grows_and_the_write_is_applied(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path, lmdb_map_bytes_initial=1024 * 1024)
    await catalog.create("c", single_vector_config(dim=256))
    collection = catalog.get("c")
    matrix = np.ones((4000, 256), np.float32)  # 4 MiB of vectors into a 1 MiB map
    result = await collection.update(upsert(list(range(4000)), matrix), wait=True, timeout_s=None)
    assert result.status is UpdateStatus.COMPLETED
    assert collection.stats().points_count == 4000
    await catalog.close()
    catalog = await open_catalog(tmp_path, lmdb_map_bytes_initial=1024 * 1024)
    assert catalog.get("c").stats().points_count == 4000
    await catalog.close()


async def test_a_missing_index_checkpoint_is_rebuilt_from_lmdb(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    matrix = np.random.default_rng(2).normal(size=(50, 4))
    await catalog.get("c").update(upsert(list(range(50)), matrix), wait=True, timeout_s=None)
    await catalog.close()
    for path in (tmp_path / "collections" / "c" / "index").iterdir():
        path.unlink()
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    await collection.wait_indexed()
    assert collection.stats().indexed_vectors_count == 50
    hits = await collection.search(SearchRequest("", np.ones(4, np.float32), limit=50))
    assert sorted(hit.id for hit in hits) == list(range(50))
    await catalog.close()


async def test_overwritten_points_reuse_graph_slots(tmp_path: Path) -> None:
    """Every overwrite kills a label; hnswlib reuses the dead slot instead of growing."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    rng = np.random.default_rng(3)
    for _ in range(30):
        await collection.update(
            upsert(list(range(100)), rng.normal(size=(100, 4))), wait=True, timeout_s=None
        )
    graph = collection._indexes[""]._graph
    assert collection.stats().indexed_vectors_count == 100
    assert graph.get_current_count() <= 200, graph.get_current_count()
    await catalog.close()
