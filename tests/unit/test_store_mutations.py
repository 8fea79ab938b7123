"""Payload and vector edits, delete by filter, conditional upsert, scroll and count."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BadRequest, NotFound
from engine.ops import (
    CollectionConfig,
    DeletePoints,
    DeleteVectors,
    Distance,
    HnswSettings,
    NamedVectors,
    PayloadMode,
    PayloadSelector,
    SearchRequest,
    UpdatePayload,
    UpdateStatus,
    UpdateVectors,
    VectorConfig,
    VectorSelector,
)
from engine.store.mutations import ID_CHUNK_COUNT, edited_payload
from engine.store.store import Store
from server.wire.filters import parse_filter
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

ALL = PayloadSelector(True)
NONE = VectorSelector(False)
VECTORS = VectorSelector(True)


def named_config() -> CollectionConfig:
    return CollectionConfig(
        vectors={"text": VectorConfig(2, Distance.DOT), "image": VectorConfig(2, Distance.DOT)}
    )


def named(ids: list, name: str, matrix: list) -> dict[str, NamedVectors]:
    rows = np.arange(len(ids), dtype=np.int32)
    return {name: NamedVectors(rows, np.asarray(matrix, np.float32).reshape(len(ids), -1))}


async def payloads(collection, ids) -> dict:
    return {r.id: r.payload for r in await collection.retrieve(ids, ALL, NONE)}


@pytest.mark.parametrize(
    ("mode", "kwargs", "expected"),
    [
        (PayloadMode.SET, {"payload": {"b": 2, "c": {"d": 1}}}, {"a": 1, "b": 2, "c": {"d": 1}}),
        (
            PayloadMode.SET,
            {"payload": {"x": 1}, "key": "c.e"},
            {"a": 1, "b": 1, "c": {"e": {"x": 1}}},
        ),
        (PayloadMode.OVERWRITE, {"payload": {"z": 0}}, {"z": 0}),
        (PayloadMode.DELETE_KEYS, {"keys": ["a", "c.missing", "nope"]}, {"b": 1, "c": {}}),
        (PayloadMode.CLEAR, {}, None),
    ],
)
def test_payload_edits(mode, kwargs, expected) -> None:
    original = {"a": 1, "b": 1, "c": {}}
    op = UpdatePayload(ids=[1], mode=mode, **kwargs)
    assert edited_payload(original, op) == expected
    assert original == {"a": 1, "b": 1, "c": {}}  # never modified in place


async def test_payload_ops_by_id_keep_vectors_and_answer_a_missing_id(tmp_path: Path) -> None:
    """Qdrant edits the points that exist and answers 404 for the first missing id."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    upserted = await collection.update(
        upsert([1, 2], [[1, 0, 0, 0], [0, 1, 0, 0]], [{"a": 1}, {"a": 2}]),
        wait=True,
        timeout_s=None,
    )
    op = UpdatePayload(ids=[1, 99], mode=PayloadMode.SET, payload={"b": True})
    with pytest.raises(NotFound, match="^No point with id 99 found$"):
        await collection.update(op, wait=True, timeout_s=None)
    assert await payloads(collection, [1, 2, 99]) == {1: {"a": 1, "b": True}, 2: {"a": 2}}
    [record] = await collection.retrieve([1], ALL, VECTORS)
    np.testing.assert_array_equal(record.vectors[""], [1, 0, 0, 0])
    [hit] = await collection.search(SearchRequest("", np.array([1, 0, 0, 0], np.float32), limit=1))
    # The version moves with payload edits; the refused op was logged right after the upsert.
    assert (hit.id, hit.version) == (1, upserted.op_id + 1)
    await collection.update(
        UpdatePayload(ids=[2], mode=PayloadMode.CLEAR), wait=True, timeout_s=None
    )
    assert await payloads(collection, [2]) == {2: {}}
    await catalog.close()


async def test_vector_update_and_delete_keep_the_other_vectors(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", named_config())
    collection = catalog.get("c")
    both = {**named([1], "text", [[1, 0]]), **named([1], "image", [[0, 1]])}
    op = upsert([1], [[1, 0]], [{"p": 1}], name="text")
    await collection.update(type(op)(op.ids, both, op.payloads), wait=True, timeout_s=None)
    await collection.update(
        UpdateVectors([1], named([1], "image", [[5, 5]])), wait=True, timeout_s=None
    )
    [record] = await collection.retrieve([1], ALL, VECTORS)
    assert record.payload == {"p": 1}
    assert {k: v.tolist() for k, v in record.vectors.items()} == {"text": [1, 0], "image": [5, 5]}
    await collection.update(DeleteVectors([1], ["text"]), wait=True, timeout_s=None)
    [record] = await collection.retrieve([1], ALL, VECTORS)
    assert set(record.vectors) == {"image"}
    hits = await collection.search(SearchRequest("text", np.array([1, 0], np.float32)))
    assert hits == []
    hits = await collection.search(SearchRequest("image", np.array([1, 0], np.float32)))
    assert [(h.id, h.score) for h in hits] == [(1, 5.0)]
    # A missing id answers 404 once the op is applied: nothing is created.
    with pytest.raises(NotFound, match="^No point with id 7 found$"):
        await collection.update(
            UpdateVectors([7], named([7], "image", [[1, 1]])), wait=True, timeout_s=None
        )
    assert await collection.retrieve([7], ALL, VECTORS) == []
    with pytest.raises(NotFound, match="^No point with id 7 found$"):
        await collection.update(DeleteVectors([1, 7], ["image"]), wait=True, timeout_s=None)
    [record] = await collection.retrieve([1], ALL, VECTORS)
    assert record.vectors == {}
    with pytest.raises(BadRequest, match="Not existing vector name error: audio"):
        await collection.update(DeleteVectors([1], ["audio"]), wait=True, timeout_s=None)
    await catalog.close()


async def test_an_id_listed_edit_stops_after_the_chunk_with_a_missing_id(tmp_path: Path) -> None:
    """Qdrant edits 32 ids at a time and stops after the first chunk holding a missing id:
    the existing ids of that chunk are edited, later chunks are not. With wait=false the
    answer is `acknowledged` and the op does the same when applied."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=2))
    collection = catalog.get("c")
    ids = list(range(1, 2 * ID_CHUNK_COUNT))
    await collection.update(upsert(ids, [[1, 0]] * len(ids)), wait=True, timeout_s=None)
    listed = [1000, *ids[:3], 1001, *ids[3:]]  # both missing ids in the first chunk
    op = UpdatePayload(ids=listed, mode=PayloadMode.SET, payload={"x": 1})
    with pytest.raises(NotFound, match="^No point with id 1000 found$"):
        await collection.update(op, wait=True, timeout_s=None)
    edited = {i for i, p in (await payloads(collection, ids)).items() if p == {"x": 1}}
    assert edited == set(listed[:ID_CHUNK_COUNT]) - {1000, 1001}
    op = UpdatePayload(ids=[*ids, 1002], mode=PayloadMode.OVERWRITE, payload={"y": 2})
    result = await collection.update(op, wait=False, timeout_s=None)
    assert result.status is UpdateStatus.ACKNOWLEDGED
    assert await collection._applier.wait_applied(result.op_id, timeout_s=10)
    assert await payloads(collection, ids) == {i: {"y": 2} for i in ids}
    await catalog.close()


async def test_a_vector_update_chunks_the_ids_left_by_its_update_filter(tmp_path: Path) -> None:
    """Qdrant drops the points that miss `update_filter` before it takes 32 ids at a time:
    the missing id's chunk holds the 31 ids around it that match."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", named_config())
    collection = catalog.get("c")
    ids = list(range(70))
    matrix = [[1, 0]] * len(ids)
    await collection.update(
        upsert(ids, matrix, [{"m": i >= 10} for i in ids], name="text"), wait=True, timeout_s=None
    )
    listed = [*ids[:35], 999, *ids[35:]]
    update_filter = parse_filter({"must": [{"key": "m", "match": {"value": True}}]})
    op = UpdateVectors(listed, named(listed, "image", [[0, 1]] * len(listed)), update_filter)
    with pytest.raises(NotFound, match="^No point with id 999 found$"):
        await collection.update(op, wait=True, timeout_s=None)
    records = await collection.retrieve(ids, ALL, VECTORS)
    assert {r.id for r in records if "image" in r.vectors} == set(range(10, 41))
    await catalog.close()


def test_a_missing_id_is_met_the_same_in_any_batching(tmp_path: Path) -> None:
    """Replay applies the logged ops again, batched as it likes: the state they leave and
    the missing id each meets depend only on the ops before them."""
    ops = [
        upsert([1, 2], [[1, 0, 0, 0], [0, 1, 0, 0]]),
        UpdatePayload(ids=[2, 5, 1], mode=PayloadMode.SET, payload={"a": 1}),
        DeletePoints(ids=[2]),
        UpdateVectors([2, 1], named([2, 1], "", [[0, 0, 1, 0], [0, 0, 0, 1]])),
        DeleteVectors([1], [""]),
    ]
    records = list(enumerate(ops))  # op ids start at 0
    missing_by_batching = []
    states = []
    for index, batches in enumerate(([records], [[record] for record in records])):
        store = Store(tmp_path / str(index), [""], 64 * 1024 * 1024)
        missing: dict[int, object] = {}
        for batch in batches:
            missing.update(store.write_batch(batch).missing_point_ids)
        missing_by_batching.append(missing)
        states.append([(p.key, p.version, p.payload, p.names) for p in store.iter_points(None)])
        store.close()
    assert missing_by_batching == [{1: 5, 3: 2}, {1: 5, 3: 2}]
    assert states[0] == states[1]
    [(_, version, payload, names)] = states[0]
    assert (version, payload, names) == (4, {"a": 1}, [])  # point 1: edited by ops 1, 3, 4


async def seeded(tmp_path: Path, full_scan_threshold: int = 10_000):
    catalog = await open_catalog(tmp_path)
    config = single_vector_config(dim=2)
    hnsw = HnswSettings(full_scan_threshold=full_scan_threshold)
    await catalog.create("c", replace(config, hnsw=hnsw))
    collection = catalog.get("c")
    ids = list(range(10))
    matrix = [[float(i), 1.0] for i in ids]
    payload_list = [{"n": i, "kind": "even" if i % 2 == 0 else "odd"} for i in ids]
    await collection.update(upsert(ids, matrix, payload_list), wait=True, timeout_s=None)
    return catalog, collection


async def test_delete_and_payload_edits_by_filter_are_resolved_in_op_order(tmp_path) -> None:
    catalog, collection = await seeded(tmp_path)
    odd = parse_filter({"must": [{"key": "kind", "match": {"value": "odd"}}]})
    # Marks point 0 odd, then deletes every odd point: the second op must see the first.
    await asyncio.gather(
        collection.update(
            UpdatePayload([0], PayloadMode.SET, payload={"kind": "odd"}), wait=False, timeout_s=None
        ),
        collection.update(DeletePoints([], filter=odd), wait=True, timeout_s=None),
    )
    assert sorted((await payloads(collection, list(range(10)))).keys()) == [2, 4, 6, 8]
    big = parse_filter({"must": [{"key": "n", "range": {"gte": 6}}]})
    await collection.update(
        UpdatePayload(None, PayloadMode.SET, payload={"big": True}, filter=big),
        wait=True,
        timeout_s=None,
    )
    result = await payloads(collection, [2, 6, 8])
    assert result == {
        2: {"n": 2, "kind": "even"},
        6: {"n": 6, "kind": "even", "big": True},
        8: {"n": 8, "kind": "even", "big": True},
    }
    await catalog.close()
    catalog = await open_catalog(tmp_path)  # replay decodes the filters from the WAL
    assert await payloads(catalog.get("c"), [0, 1, 2, 6]) == {
        2: {"n": 2, "kind": "even"},
        6: {"n": 6, "kind": "even", "big": True},
    }
    await catalog.close()


async def test_conditional_upsert_replaces_only_matching_points(tmp_path: Path) -> None:
    catalog, collection = await seeded(tmp_path)
    even = parse_filter({"must": [{"key": "kind", "match": {"value": "even"}}]})
    op = upsert([1, 2, 50], [[0, 0]] * 3, [{"new": 1}] * 3)
    await collection.update(
        type(op)(op.ids, op.vectors, op.payloads, update_filter=even), wait=True, timeout_s=None
    )
    result = await payloads(collection, [1, 2, 50])
    assert result == {1: {"n": 1, "kind": "odd"}, 2: {"new": 1}, 50: {"new": 1}}
    await catalog.close()


async def test_scroll_pages_in_id_order_with_filter_and_count(tmp_path: Path) -> None:
    catalog, collection = await seeded(tmp_path)
    even = parse_filter({"must": [{"key": "kind", "match": {"value": "even"}}]})
    page, next_offset = await collection.scroll(even, 2, None, ALL, NONE)
    assert [r.id for r in page] == [0, 2] and next_offset == 4
    page, next_offset = await collection.scroll(even, 2, next_offset, ALL, NONE)
    assert [r.id for r in page] == [4, 6] and next_offset == 8
    page, next_offset = await collection.scroll(even, 2, next_offset, ALL, NONE)
    assert [r.id for r in page] == [8] and next_offset is None
    assert await collection.count(even) == 5
    assert await collection.count(None) == 10
    await catalog.close()


@pytest.mark.parametrize("is_exact", [True, False])
async def test_filtered_search_returns_only_matching_points(tmp_path: Path, is_exact) -> None:
    """full_scan_threshold=0 sends the non-exact case through the graph with a filter."""
    catalog, collection = await seeded(tmp_path, full_scan_threshold=0)
    odd = parse_filter({"must": [{"key": "kind", "match": {"value": "odd"}}]})
    request = SearchRequest(
        "", np.array([1.0, 0.0], np.float32), limit=3, filter=odd, is_exact=is_exact
    )
    hits = await collection.search(request)
    assert [h.id for h in hits] == [9, 7, 5]
    await catalog.close()
