"""Payload indexes and the planner: entries follow every payload change in the payload's own
transaction, creation indexes existing points, replay is idempotent, and filtered reads
through the indexes answer exactly what a scan answers."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.filters.conditions import FILTER_TYPES
from engine.ops import (
    CreateFieldIndex,
    DeleteFieldIndex,
    DeletePoints,
    PayloadMode,
    PayloadSelector,
    SearchRequest,
    UpdatePayload,
    VectorSelector,
)
from engine.store import payload_index, planner
from engine.wal.op_codec import decode_op, encode_op
from server.wire.filters import parse_filter
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert
from tests.unit.test_filter_congruence import (
    Scope,
    random_datetime_range,
    random_filter,
    random_geo,
    random_match,
    random_payload,
    random_range,
)

NONE = PayloadSelector(False)
NO_VECTOR = VectorSelector(False)


def index_entries(collection: Any) -> dict[str, set[tuple[bytes, bytes]]]:
    """Every (encoded value, point key) of every index, read straight from LMDB."""
    store = collection._store
    result: dict[str, set[tuple[bytes, bytes]]] = {}
    with store._env.begin() as txn:
        for key, point in txn.cursor(store._pindex):
            key = bytes(key)
            length = int.from_bytes(key[:2], "big")
            name = key[2 : 2 + length].decode()
            result.setdefault(name, set()).add((key[2 + length :], bytes(point)))
    return result


def expected_entries(collection: Any) -> dict[str, set[tuple[bytes, bytes]]]:
    """The entries the indexes should hold, recomputed from every stored payload."""
    store = collection._store
    result: dict[str, set[tuple[bytes, bytes]]] = {}
    for point in store.iter_points(None):
        for name, spec in store.index_specs.items():
            path = payload_index.filters.PayloadPath.parse(name)
            for value in payload_index.index_values(spec.schema_type, path, point.payload or {}):
                result.setdefault(name, set()).add((value, point.key))
    return result


def check_consistent(collection: Any) -> None:
    assert index_entries(collection) == expected_entries(collection)
    for name, spec in collection._store.index_specs.items():
        path = payload_index.filters.PayloadPath.parse(name)
        counted = [
            point.key
            for point in collection._store.iter_points(None)
            if payload_index.is_counted(spec.schema_type, path, point.payload or {})
        ]
        assert spec.points_count == len(counted), (name, spec.points_count, len(counted))


async def test_indexes_follow_upserts_overwrites_deletes_and_payload_edits(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    vector = [[1, 0, 0, 0]]
    await collection.update(
        upsert([1], vector, [{"city": "Berlin", "n": 3}]), wait=True, timeout_s=None
    )
    await collection.update(CreateFieldIndex("city", "keyword"), wait=True, timeout_s=None)
    await collection.update(CreateFieldIndex("n", "integer"), wait=True, timeout_s=None)
    check_consistent(collection)
    assert collection._store.index_specs["city"].points_count == 1
    edits = [
        upsert([2, 3], vector * 2, [{"city": ["Paris", "Rome"]}, {"n": [1, 2.5, True]}]),
        upsert([1], vector, [{"city": "Madrid"}]),  # overwrite: Berlin and n=3 leave
        UpdatePayload([2], PayloadMode.SET, payload={"city": "Oslo", "n": 9}),
        UpdatePayload([3], PayloadMode.DELETE_KEYS, keys=["n"]),
        UpdatePayload([1], PayloadMode.OVERWRITE, payload={"n": -4}),
        UpdatePayload([2], PayloadMode.CLEAR),
        DeletePoints([1]),
        upsert([4], vector, [{"city": "Oslo"}]),
        UpdatePayload([4], PayloadMode.SET, payload={"n": 7}),
        UpdatePayload([4], PayloadMode.SET, payload={"n": 7.0}),  # same entry, not counted
    ]
    for op in edits:
        await collection.update(op, wait=True, timeout_s=None)
        check_consistent(collection)
    assert collection._store.index_specs["city"].points_count == 1
    await collection.update(DeleteFieldIndex("city"), wait=True, timeout_s=None)
    assert "city" not in index_entries(collection)
    assert list(collection._store.index_specs) == ["n"]
    await catalog.close()


async def test_an_index_created_on_existing_data_and_replayed_after_restart(tmp_path: Path) -> None:
    """Create an index over 300 points with wait=false, close without a checkpoint of the
    applied state mattering, reopen: replay from any point must leave the same entries."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    payloads = [{"color": ["red", "green", "blue"][i % 3], "price": i / 2} for i in range(300)]
    await collection.update(
        upsert(list(range(300)), [[1, 2, 3, 4]] * 300, payloads), wait=True, timeout_s=None
    )
    await collection.update(CreateFieldIndex("color", "keyword"), wait=False, timeout_s=None)
    await collection.update(
        CreateFieldIndex("price", "float", {"type": "float"}), wait=True, timeout_s=None
    )
    before = index_entries(collection)
    check_consistent(collection)
    assert collection._store.index_specs["color"].points_count == 300
    await catalog.close()
    # Replay the index ops over the same LMDB state again: applying twice changes nothing.
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    collection._store.applied_op_id -= 2
    for op_id, op in [
        (1, CreateFieldIndex("color", "keyword")),
        (2, CreateFieldIndex("price", "float", {"type": "float"})),
    ]:
        collection._store.write_batch([(op_id, op)])
    assert index_entries(collection) == before
    assert collection._store.index_specs["price"].params == {"type": "float"}
    assert (
        await collection.count(
            parse_filter({"must": [{"key": "color", "match": {"value": "red"}}]})
        )
        == 100
    )
    await catalog.close()


def test_index_ops_round_trip_through_cbor() -> None:
    for op in [
        CreateFieldIndex("a.b[]", "geo", {"type": "geo", "on_disk": True}),
        DeleteFieldIndex("x"),
    ]:
        assert decode_op(encode_op(op), FILTER_TYPES) == op


def test_float_encoding_sorts_as_the_numbers() -> None:
    numbers = [-math.inf, -1e300, -2.5, -1.0, -1e-300, 0.0, 1e-300, 1.0, 2**53 + 1.0, math.inf]
    encoded = [payload_index.encode_float(number) for number in numbers]
    assert encoded == sorted(encoded)
    assert payload_index.encode_float(-0.0) == payload_index.encode_float(0.0)


def test_the_planner_picks_indexes_and_leaves_the_rest_to_the_check() -> None:
    specs = {
        "k": payload_index.IndexSpec("k", "keyword", None),
        "n": payload_index.IndexSpec("n", "integer", None),
    }
    must = parse_filter(
        {
            "must": [
                {"key": "k", "match": {"value": "a"}},
                {"key": "n", "range": {"gt": 1}},
                {"key": "x", "match": {"value": 1}},
            ]
        }
    )
    lookup = planner.plan(must, specs)
    assert isinstance(lookup, payload_index.AllOf)
    assert len(lookup.parts) == 2
    assert (
        planner.plan(parse_filter({"must_not": [{"key": "k", "match": {"value": "a"}}]}), specs)
        is None
    )
    should = parse_filter(
        {"should": [{"key": "k", "match": {"value": "a"}}, {"key": "x", "match": {"value": 1}}]}
    )
    assert planner.plan(should, specs) is None  # one alternative unindexed: anything may match
    text = parse_filter({"must": [{"key": "k", "match": {"text": "a"}}]})
    assert planner.plan(text, specs) is None
    has_id = parse_filter({"must": [{"has_id": [1, 2]}]})
    assert isinstance(planner.plan(has_id, {}), payload_index.KeySet)


INDEXES = [
    ("k", "keyword"),
    ("n", "integer"),
    ("b", "bool"),
    ("d", "datetime"),
    ("g", "geo"),
    ("arr", "float"),
    ("obj.k", "keyword"),
    ("obj.n", "float"),
    ("objs[].n", "integer"),
    ("objs[].g", "geo"),
    ("obj.g", "geo"),
    ("arr[]", "keyword"),
]


@pytest.mark.parametrize("seed", [1, 2])
async def test_indexed_reads_equal_the_scan_on_random_data(tmp_path: Path, seed: int) -> None:
    """Random payloads and 400 random filters (the congruence test's generators): count,
    scroll and filtered search through the planner answer exactly what the scan answers."""
    rng = random.Random(seed)
    catalog = await open_catalog(tmp_path)
    for name in ("plain", "indexed"):
        await catalog.create(name, single_vector_config())
    plain, indexed = catalog.get("plain"), catalog.get("indexed")
    ids = list(range(200))
    payloads = [random_payload(rng) for _ in ids]
    matrix = [[rng.random() for _ in range(4)] for _ in ids]
    half = len(ids) // 2
    await indexed.update(
        upsert(ids[:half], matrix[:half], payloads[:half]), wait=True, timeout_s=None
    )
    for field_name, schema_type in INDEXES:  # half before the index exists, half after
        await indexed.update(CreateFieldIndex(field_name, schema_type), wait=True, timeout_s=None)
    await indexed.update(
        upsert(ids[half:], matrix[half:], payloads[half:]), wait=True, timeout_s=None
    )
    await plain.update(upsert(ids, matrix, payloads), wait=True, timeout_s=None)
    check_consistent(indexed)
    planned_count = 0
    scope = Scope(depth=0)
    simple_kinds = [
        random_match,
        random_range,
        random_datetime_range,
        random_geo,
    ]
    for number in range(400):
        if number % 2:
            filter_ = parse_filter(random_filter(rng, scope))
        else:  # one condition of the kinds the planner serves
            filter_ = parse_filter({"must": [rng.choice(simple_kinds)(rng, scope)]})
        planned_count += planner.plan(filter_, indexed._store.index_specs) is not None
        assert await indexed.count(filter_) == await plain.count(filter_), filter_
        page_plain, next_plain = await plain.scroll(filter_, 7, 20, NONE, NO_VECTOR)
        page_indexed, next_indexed = await indexed.scroll(filter_, 7, 20, NONE, NO_VECTOR)
        assert [r.id for r in page_indexed] == [r.id for r in page_plain], filter_
        assert next_indexed == next_plain
        request = SearchRequest("", _vector(rng), limit=5, filter=filter_, is_exact=True)
        hits_plain = await plain.search(request)
        hits_indexed = await indexed.search(request)
        assert [h.id for h in hits_indexed] == [h.id for h in hits_plain], filter_
    assert planned_count > 60, planned_count  # the indexes were used, not just present
    await catalog.close()


def _vector(rng: random.Random):
    import numpy as np

    return np.asarray([rng.random() for _ in range(4)], dtype=np.float32)


async def test_broad_filtered_graph_search_checks_the_filter_and_falls_back(tmp_path: Path) -> None:
    """A tiny full_scan_threshold sends indexed filters down the overfetch path: hits must
    all match, agree with exact search, and a filter whose residual rejects nearly every
    candidate (deepening gives up) must still answer exactly."""
    import numpy as np

    from engine.ops import CollectionConfig, HnswSettings

    config = single_vector_config()
    config = CollectionConfig(config.vectors, HnswSettings(full_scan_threshold=1))
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", config)
    collection = catalog.get("c")
    rng = np.random.default_rng(5)
    ids = list(range(2000))
    payloads = [{"half": i % 2, "rare": i == 1234} for i in ids]
    await collection.update(
        upsert(ids, rng.standard_normal((2000, 4)), payloads), wait=True, timeout_s=None
    )
    await collection.update(CreateFieldIndex("half", "integer"), wait=True, timeout_s=None)
    filters_ = [
        {"must": [{"key": "half", "match": {"value": 0}}]},
        {
            "must": [
                {"key": "half", "match": {"value": 0}},
                {"key": "rare", "match": {"value": True}},
            ]
        },
        {
            "must": [
                {"key": "half", "match": {"value": 1}},
                {"key": "rare", "match": {"value": True}},
            ]
        },
    ]
    # HNSW is approximate: recall is asserted over all queries, not per query (a per-query
    # bound failed once in CI with 8 of 9).
    found_count = wanted_count = top_hits = 0
    for data in filters_:
        filter_ = parse_filter(data)
        for _ in range(10):
            query = rng.standard_normal(4).astype(np.float32)
            graph = await collection.search(SearchRequest("", query, limit=10, filter=filter_))
            exact = await collection.search(
                SearchRequest("", query, limit=10, filter=filter_, is_exact=True)
            )
            assert {h.id for h in graph} <= {i for i in ids if _matches(data, payloads[i])}
            found_count += len({h.id for h in graph} & {h.id for h in exact})
            wanted_count += len(exact)
            top_hits += [h.id for h in graph][:1] == [h.id for h in exact][:1]
    assert found_count >= 0.95 * wanted_count, (found_count, wanted_count)
    assert top_hits >= 27, top_hits
    reader, query = collection._reader, np.ones(4, dtype=np.float32)
    for data, is_graph_used in [(filters_[0], True), (filters_[2], False)]:
        request = SearchRequest("", query, limit=10, filter=parse_filter(data))
        estimate = 1000  # what the `half` index says of both filters
        distance = reader.config.vectors[""].distance
        index = reader._indexes[""]
        result = reader._post_filtered(request, query, distance, index, estimate)
        assert (result is not None) == is_graph_used, data
    await catalog.close()


async def test_writes_by_filter_select_the_same_points_through_indexes(tmp_path: Path) -> None:
    """Delete and payload edits by filter, in one batch after the index ops, through the
    indexes and by scan: the same points remain with the same payloads."""
    catalog = await open_catalog(tmp_path)
    contents = []
    for name, has_indexes in [("plain", False), ("indexed", True)]:
        await catalog.create(name, single_vector_config())
        collection = catalog.get(name)
        payloads = [{"k": ["a", "b", "c"][i % 3], "n": i % 7} for i in range(60)]
        ops: list[Any] = [upsert(list(range(60)), [[1, 2, 3, 4]] * 60, payloads)]
        if has_indexes:
            ops += [CreateFieldIndex("k", "keyword"), CreateFieldIndex("n", "integer")]
        ops += [
            UpdatePayload(None, PayloadMode.SET, payload={"k": "z"}, filter=_f("n", 3)),
            DeletePoints(
                [], filter=parse_filter({"must": [{"key": "k", "match": {"any": ["a", "z"]}}]})
            ),
            UpdatePayload(None, PayloadMode.CLEAR, filter=_f("n", 5)),
        ]
        await collection.update_many(ops, wait=True, timeout_s=None)
        records, _ = await collection.scroll(None, 100, None, PayloadSelector(True), NO_VECTOR)
        contents.append([(r.id, r.payload) for r in records])
        if has_indexes:
            check_consistent(collection)
    assert contents[0] == contents[1]
    assert 0 < len(contents[0]) < 60
    await catalog.close()


def _f(key: str, value: Any) -> Any:
    return parse_filter({"must": [{"key": key, "match": {"value": value}}]})


async def test_a_lookup_planned_before_its_index_was_dropped_falls_back_to_a_scan(
    tmp_path: Path,
) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    await collection.update(upsert([1], [[1, 2, 3, 4]], [{"k": "a"}]), wait=True, timeout_s=None)
    await collection.update(CreateFieldIndex("k", "keyword"), wait=True, timeout_s=None)
    store = collection._store
    specs = store.index_specs
    lookup = planner.plan(_f("k", "a"), specs)
    assert [p.key for p in store.iter_candidate_points(lookup, specs, None, 10)] == [
        b"\0" + bytes(7) + b"\1"
    ]
    await collection.update(DeleteFieldIndex("k"), wait=True, timeout_s=None)
    assert store.iter_candidate_points(lookup, specs, None, 10) is None
    assert await collection.count(_f("k", "a")) == 1
    await catalog.close()


@given(numbers=st.lists(st.floats(allow_nan=False) | st.integers(-(2**63), 2**63 - 1), max_size=30))
def test_number_encoding_orders_as_filters_compare(numbers: list) -> None:
    """Sorting encoded values sorts the numbers as float() orders them, ties included."""
    encoded = sorted((payload_index.encode_float(float(n)), float(n)) for n in numbers)
    as_floats = [value for _, value in encoded]
    assert as_floats == sorted(as_floats)
    for (key_a, a), (key_b, b) in itertools.pairwise(encoded):
        assert (key_a == key_b) == (a == b), (a, b)


@given(keys=st.lists(st.integers(-(2**120), 2**120), max_size=30))
def test_instant_encoding_orders_as_the_keys(keys: list[int]) -> None:
    assert sorted(keys, key=payload_index.encode_instant) == sorted(keys)


def _matches(data: dict, payload: dict) -> bool:
    """The test's filters are conjunctions of match-value conditions."""
    return all(payload[c["key"]] == c["match"]["value"] for c in data["must"])
