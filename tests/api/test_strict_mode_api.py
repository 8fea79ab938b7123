"""Strict mode over HTTP: `strict_mode_config` on create and PATCH, echoed, kept across a
restart, and enforced with Qdrant 1.19's status codes and error texts.

What each test checks is what Qdrant's own REST suite (tests/openapi/test_strictmode.py)
checks, rewritten against Keel's fixtures; a refused request must change nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

import engine.collection
from engine.catalog import Catalog
from engine.limits import EngineSettings
from engine.strict_mode import memory
from tests.api.conftest import Api
from tests.keel_process import KeelProcess

COLLECTION = "/collections/{collection_name}"
POINTS = COLLECTION + "/points"
QUERY = POINTS + "/query"
INDEX = COLLECTION + "/index"
CITIES = ["Berlin", "London", "Paris", "Rome", "Madrid"]


async def config_of(api: Api, name: str = "c") -> dict[str, Any]:
    return (await api.call("GET", COLLECTION, name=name)).result["config"]


async def set_strict_mode(api: Api, config: dict[str, Any], name: str = "c") -> None:
    body = {"strict_mode_config": config}
    assert (await api.call("PATCH", COLLECTION, json=body, name=name)).result is True


async def make_collection(api: Api, **body: Any) -> None:
    """`c`: 10 points of 4 dims (each named vector of `body`, else one unnamed) with a city,
    a count, a price and a nested `items` array."""
    body = body or {"vectors": {"size": 4, "distance": "Dot"}}
    await api.create_collection("c", **body)
    names = [] if "size" in body["vectors"] else list(body["vectors"])

    def vector(i: int) -> Any:
        values = [0.1 * (i + 1), 0.2, 0.3, 0.4]
        return {name: values for name in names} if names else values

    points = [
        {
            "id": i,
            "vector": vector(i),
            "payload": {
                "city": CITIES[i % 5],
                "count": i,
                "price": i * 1.5,
                "items": [{"key": i, "key2": i}],
            },
        }
        for i in range(10)
    ]
    assert (await api.upsert({"points": points})).result["status"] == "completed"


async def create_index(api: Api, field_name: str, schema: Any) -> None:
    body = {"field_name": field_name, "field_schema": schema}
    assert (await api.call("PUT", INDEX, json=body, query={"wait": "true"})).status == 200


async def query(api: Api, body: dict[str, Any], **params: str) -> Any:
    return await api.call("POST", QUERY, json=body, query=params or None)


def refused(response: Any, text: str, status: int = 400) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.error == text


# ---- the config --------------------------------------------------------------------------


async def test_a_collection_without_strict_mode_echoes_none(api: Api):
    await make_collection(api)
    assert "strict_mode_config" not in await config_of(api)


async def test_strict_mode_on_create_is_echoed_as_given(api: Api):
    config = {
        "enabled": True,
        "max_query_limit": 10,
        "search_max_oversampling": 1.5,
        "sparse_config": {"text": {"max_length": 4}},
        "multivector_config": {"colbert": {"max_vectors": 5}, "other": {}},
        "max_resident_memory_percent": 90,
    }
    body = {"vectors": {"size": 4, "distance": "Dot"}, "strict_mode_config": config}
    assert (await api.call("PUT", COLLECTION, json=body)).result is True
    assert (await config_of(api))["strict_mode_config"] == config


async def test_an_empty_strict_mode_config_on_create_is_echoed_empty(api: Api):
    body = {"vectors": {"size": 4, "distance": "Dot"}, "strict_mode_config": {}}
    assert (await api.call("PUT", COLLECTION, json=body)).result is True
    assert (await config_of(api))["strict_mode_config"] == {}


async def test_patch_merges_field_by_field_and_null_keeps_the_value(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "write_rate_limit": 1})
    assert (await config_of(api))["strict_mode_config"] == {"enabled": True, "write_rate_limit": 1}
    await set_strict_mode(api, {"read_rate_limit": 2})
    await set_strict_mode(api, {"write_rate_limit": None, "max_query_limit": 3})
    expected = {"enabled": True, "max_query_limit": 3, "read_rate_limit": 2, "write_rate_limit": 1}
    assert (await config_of(api))["strict_mode_config"] == expected


async def test_patch_refuses_out_of_range_and_mistyped_values(api: Api):
    await make_collection(api)
    body = {"strict_mode_config": {"enabled": True, "max_query_limit": 0}}
    response = await api.call("PATCH", COLLECTION, json=body)
    refused(
        response,
        "Validation error in JSON body: "
        "[strict_mode_config.max_query_limit: value 0 invalid, must be 1 or larger]",
        422,
    )
    response = await api.call("PATCH", COLLECTION, json={"strict_mode_config": {"enabled": 1}})
    refused(
        response,
        "Format error in JSON body: invalid type: integer `1`, expected a boolean",
    )
    assert "strict_mode_config" not in await config_of(api)


async def test_patched_strict_mode_survives_a_restart(api: Api, catalog: Catalog, tmp_path: Path):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_query_limit": 3})
    stored = json.loads((tmp_path / "storage/collections/c/config.json").read_bytes())
    assert stored["strict_mode"] == {"enabled": True, "max_query_limit": 3}
    await catalog.close()
    reopened = Catalog(tmp_path / "storage", EngineSettings())
    await reopened.open()
    try:
        strict = reopened.get("c").config.strict_mode
        assert strict is not None
        assert (strict.enabled, strict.max_query_limit) == (True, 3)
    finally:
        await reopened.close()
    await catalog.open()  # the fixture closes it again


async def test_disabled_strict_mode_enforces_nothing(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": False, "max_query_limit": 1, "read_rate_limit": 1})
    for _ in range(3):
        assert (await query(api, {"query": [0.1, 0.2, 0.3, 0.4], "limit": 5})).status == 200


# ---- limits, timeout, search params --------------------------------------------------------


async def test_max_query_limit(api: Api):
    await make_collection(api)
    body = {"query": [0.2, 0.1, 0.9, 0.7], "limit": 4}
    await set_strict_mode(api, {"enabled": True, "max_query_limit": 4})
    assert (await query(api, body)).status == 200
    await set_strict_mode(api, {"max_query_limit": 3})
    refused(
        await query(api, body),
        'Bad request: Limit exceeded 4 > 3 for "limit". '
        'Help: Reduce the "limit" parameter to or below 3.',
    )
    prefetch = {"prefetch": {"query": [0.2, 0.1, 0.9, 0.7], "limit": 5}, **body, "limit": 2}
    assert "Limit exceeded 5 > 3" in (await query(api, prefetch)).error
    scroll = await api.call("POST", POINTS + "/scroll", json={"limit": 4})
    assert "Limit exceeded 4 > 3" in scroll.error
    assert (await api.call("POST", POINTS + "/scroll", json={})).status == 200  # not given


async def test_group_and_matrix_limits_multiply(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_query_limit": 15})
    groups = {"query": [1.0, 0.0, 0.0, 0.0], "limit": 10, "group_by": "city", "group_size": 3}
    response = await api.call("POST", QUERY + "/groups", json=groups)
    assert 'Limit exceeded 30 > 15 for "limit"' in response.error
    matrix = {"sample": 10, "limit": 2}
    response = await api.call("POST", POINTS + "/search/matrix/pairs", json=matrix)
    assert 'Limit exceeded 20 > 15 for "limit"' in response.error


async def test_max_timeout(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_timeout": 2})
    body = {"query": [0.2, 0.1, 0.9, 0.7], "limit": 3}
    assert (await query(api, body, timeout="2")).status == 200
    refused(
        await query(api, body, timeout="3"),
        'Bad request: Limit exceeded 3 > 2 for "timeout". '
        'Help: Reduce the "timeout" parameter to or below 2.',
    )
    upsert = {"points": [{"id": 99, "vector": [1, 2, 3, 4]}]}
    response = await api.upsert(upsert, query={"timeout": "5"})
    assert 'for "timeout"' in response.error
    assert await api.points_count() == 10


async def test_search_params(api: Api):
    await make_collection(api)
    await set_strict_mode(
        api,
        {
            "enabled": True,
            "search_max_hnsw_ef": 4,
            "search_allow_exact": False,
            "search_max_oversampling": 1.9,
        },
    )
    vector = [0.2, 0.1, 0.9, 0.7]
    response = await query(api, {"query": vector, "params": {"hnsw_ef": 5}})
    assert 'Limit exceeded 5 > 4 for "hnsw_ef"' in response.error
    response = await query(api, {"query": vector, "params": {"exact": True}})
    refused(response, "Bad request: Exact search disabled!. Help: Set exact=false.")
    response = await query(api, {"query": vector, "params": {"quantization": {"oversampling": 2}}})
    assert 'Limit exceeded 2 > 1.9 for "oversampling"' in response.error
    search = {"vector": vector, "limit": 3, "params": {"exact": True}}
    assert (
        "Exact search disabled" in (await api.call("POST", POINTS + "/search", json=search)).error
    )
    # A count is exact unless it says otherwise.
    count = await api.call("POST", POINTS + "/count", json={})
    assert "Exact search disabled" in count.error
    count = await api.call("POST", POINTS + "/count", json={"exact": False})
    assert count.result == {"count": 10}


async def test_search_max_batchsize(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "search_max_batchsize": 2})
    searches = [{"query": [0.2, 0.1, 0.9, 0.7], "limit": 3}] * 3
    response = await api.call("POST", QUERY + "/batch", json={"searches": searches})
    assert 'Limit exceeded 3 > 2 for "search batch size"' in response.error
    response = await api.call("POST", QUERY + "/batch", json={"searches": searches[:2]})
    assert response.status == 200


# ---- filters --------------------------------------------------------------------------------


async def test_unindexed_filtering_retrieve(api: Api):
    await make_collection(api)
    body = {
        "query": [0.2, 0.1, 0.9, 0.7],
        "filter": {"must": [{"key": "city", "match": {"value": "Berlin"}}]},
    }
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": True})
    assert (await query(api, body)).status == 200
    await set_strict_mode(api, {"unindexed_filtering_retrieve": False})
    refused(
        await query(api, body),
        'Bad request: Index required but not found for "city" of one of the following types: '
        "[keyword]. Help: Create an index for this key or use a different filter.",
    )
    await create_index(api, "city", "keyword")
    assert (await query(api, body)).status == 200


async def test_unindexed_filter_needs_an_index_with_the_right_capability(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": False})
    body = {
        "query": [0.2, 0.1, 0.9, 0.7],
        "filter": {"must": [{"key": "count", "match": {"value": 1}}]},
    }
    assert "[integer]" in (await query(api, body)).error
    await create_index(api, "count", {"type": "integer", "lookup": True, "range": True})
    assert (await query(api, body)).status == 200
    await create_index(api, "count", {"type": "integer", "lookup": False, "range": True})
    assert '"count"' in (await query(api, body)).error
    # A range is served by the range half of the index.
    ranged = {
        "query": [0.2, 0.1, 0.9, 0.7],
        "filter": {"must": [{"key": "count", "range": {"gte": 1}}]},
    }
    assert (await query(api, ranged)).status == 200


async def test_phrase_match_needs_phrase_matching(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": False})
    await create_index(api, "city", {"type": "text"})

    async def scroll(kind: str) -> Any:
        body = {"filter": {"must": [{"key": "city", "match": {kind: "Berlin"}}]}}
        return await api.call("POST", POINTS + "/scroll", json=body)

    assert (await scroll("text")).status == 200
    assert "[text (with phrase_matching: true)]" in (await scroll("phrase")).error
    await create_index(api, "city", {"type": "text", "phrase_matching": True})
    assert (await scroll("phrase")).status == 200


async def test_must_not_nested_and_prefetch_filters_are_checked(api: Api):
    await make_collection(api)
    await create_index(api, "city", "keyword")
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": False})
    vector = [0.2, 0.1, 0.9, 0.7]
    must_not = {"query": vector, "filter": {"must_not": [{"key": "count", "range": {"gt": 3}}]}}
    assert (
        '"count" of one of the following types: [float, integer]'
        in (await query(api, must_not)).error
    )
    nested = {
        "nested": {"key": "items", "filter": {"must": [{"key": "key", "match": {"value": 1}}]}}
    }
    response = await query(api, {"query": vector, "filter": {"must": [nested]}})
    assert 'not found for "items[].key" of one of the following types: [integer]' in response.error
    prefetch = {
        "prefetch": {"query": vector, "filter": {"must": [{"key": "price", "range": {"lt": 2}}]}},
        "query": {"fusion": "rrf"},
    }
    assert '"price"' in (await query(api, prefetch)).error
    is_empty = {"query": vector, "filter": {"must": [{"is_empty": {"key": "price"}}]}}
    assert (
        '"price" of one of the following types: [bool, datetime, float, geo, integer, keyword, '
        "keyword (with prefix: true), text, text (with phrase_matching: true), uuid]"
    ) in (await query(api, is_empty)).error
    fine = {
        "query": vector,
        "filter": {"must": [{"has_id": [1]}, {"key": "city", "match": {"any": []}}]},
    }
    assert (await query(api, fine)).status == 200


async def test_unindexed_filtering_update_refuses_and_changes_nothing(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_update": False})
    delete = {"filter": {"must": [{"key": "city", "match": {"value": "Berlin"}}]}}
    response = await api.call("POST", POINTS + "/delete", json=delete)
    assert 'Index required but not found for "city"' in response.error
    assert await api.points_count() == 10
    set_payload = {"payload": {"x": 1}, **delete}
    response = await api.call("POST", POINTS + "/payload", json=set_payload)
    assert response.status == 400
    assert all("x" not in point["payload"] for point in await api.scroll_all())
    # Reads are not affected by the update setting.
    assert (await api.call("POST", POINTS + "/scroll", json=delete)).status == 200
    await create_index(api, "city", "keyword")
    assert (await api.call("POST", POINTS + "/delete", json=delete)).status == 200
    assert await api.points_count() == 8


async def test_filter_max_conditions_and_condition_max_size(api: Api):
    await make_collection(api)
    vector = [0.2, 0.1, 0.9, 0.7]
    conditions = [{"key": "price", "match": {"value": i}} for i in range(6)]
    await set_strict_mode(api, {"enabled": True, "filter_max_conditions": 5})
    assert (await query(api, {"query": vector, "filter": {"must": conditions[:5]}})).status == 200
    refused(
        await query(api, {"query": vector, "filter": {"must": conditions}}),
        "Bad request: Filter condition limit reached (6 > 5). "
        "Help: Reduce the amount of conditions of your filter.",
    )
    await set_strict_mode(api, {"condition_max_size": 2, "filter_max_conditions": 1})
    inner = [{"key": "key", "match": {"any": [1, 2]}}, {"key": "key2", "match": {"any": [1, 2]}}]
    nested = {"nested": {"key": "items", "filter": {"must": inner}}}
    response = await query(api, {"query": vector, "filter": {"must": [nested]}})
    assert "Filter condition limit reached (2 > 1)" in response.error
    await set_strict_mode(api, {"filter_max_conditions": 3})
    assert (await query(api, {"query": vector, "filter": {"must": [nested]}})).status == 200
    big = {"key": "price", "match": {"any": [1, 2, 3]}}
    refused(
        await query(api, {"query": vector, "filter": {"must": [big]}}),
        "Bad request: Condition size limit reached (3 > 2). Help: Reduce the size of your condition.",
    )


async def test_group_by_needs_a_match_index(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": False})
    groups = {"query": [1.0, 0.0, 0.0, 0.0], "limit": 2, "group_by": "city", "group_size": 1}
    refused(
        await api.call("POST", QUERY + "/groups", json=groups),
        'Bad request: Index required but not found for "city". '
        "Help: Create an index supporting `match` for this key.",
    )
    await create_index(api, "city", "text")
    response = await api.call("POST", QUERY + "/groups", json=groups)
    assert 'Index of type "Text" found for "city"' in response.error
    await create_index(api, "city", "keyword")
    assert (await api.call("POST", QUERY + "/groups", json=groups)).status == 200


async def test_full_scan_of_a_vector_without_graph(api: Api):
    body = {
        "vectors": {"dense": {"size": 4, "distance": "Dot", "hnsw_config": {"m": 0}}},
        "sparse_vectors": {"text": {}},
    }
    await api.create_collection("c", **body)
    points = [
        {"id": 1, "vector": {"dense": [1, 2, 3, 4], "text": {"indices": [1], "values": [1.0]}}}
    ]
    assert (await api.upsert({"points": points})).status == 200
    await set_strict_mode(api, {"enabled": True, "search_allow_exact": False})
    refused(
        await query(api, {"query": [1, 0, 0, 0], "using": "dense"}),
        "Bad request: Request is forbidden on 'dense' because global vector indexing is "
        "disabled (hnsw_config.m = 0). Help: Use tenant-specific filter, enable global vector "
        "indexing or enable strict mode `search_allow_exact` option",
    )
    sparse = {"indices": [1], "values": [1.0]}
    assert (await query(api, {"query": sparse, "using": "text"})).status == 200
    rescoring = {
        "prefetch": {"query": sparse, "using": "text", "limit": 5},
        "query": [1, 0, 0, 0],
        "using": "dense",
    }
    assert (await query(api, rescoring)).status == 200
    prefetching = {
        "prefetch": {"query": [1, 0, 0, 0], "using": "dense", "limit": 5},
        "query": sparse,
        "using": "text",
    }
    assert "Request is forbidden on 'dense'" in (await query(api, prefetching)).error


# ---- writes --------------------------------------------------------------------------------


async def test_upsert_and_update_batch_sizes(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "upsert_max_batchsize": 2})
    batch = {"batch": {"ids": [11, 12, 13], "vectors": [[1, 2, 3, 4]] * 3}}
    refused(
        await api.upsert(batch),
        'Bad request: Limit exceeded 3 > 2 for "upsert limit". '
        'Help: Reduce the "upsert limit" parameter to or below 2.',
    )
    operations = {"operations": [{"upsert": batch}]}
    response = await api.call("POST", POINTS + "/batch", json=operations)
    assert 'for "upsert limit"' in response.error
    vectors = {"points": [{"id": i, "vector": [1, 2, 3, 4]} for i in range(3)]}
    response = await api.call("PUT", POINTS + "/vectors", json=vectors)
    assert 'Limit exceeded 3 > 2 for "update limit"' in response.error
    assert await api.points_count() == 10
    assert (
        await api.upsert({"batch": {"ids": [11, 12], "vectors": [[1, 2, 3, 4]] * 2}})
    ).status == 200


async def test_max_points_count_and_vector_storage_size(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_points_count": 10})
    refused(
        await api.upsert({"points": [{"id": 50, "vector": [1, 2, 3, 4]}]}),
        "Bad request: Max points count limit of 10 reached!",
    )
    assert await api.points_count() == 10
    # 10 points x 4 dims x 4 bytes = 160 bytes of vectors.
    await set_strict_mode(api, {"max_points_count": 1000, "max_collection_vector_size_bytes": 160})
    refused(
        await api.upsert({"points": [{"id": 50, "vector": [1, 2, 3, 4]}]}),
        "Bad request: Max vector storage size limit of 0.00015258789MB reached!",
    )
    await set_strict_mode(api, {"max_collection_vector_size_bytes": 161})
    assert (await api.upsert({"points": [{"id": 50, "vector": [1, 2, 3, 4]}]})).status == 200


async def test_max_collection_payload_size(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_collection_payload_size_bytes": 100})
    response = await api.call(
        "POST", POINTS + "/payload", json={"payload": {"a": 1}, "points": [1]}
    )
    refused(response, "Bad request: Max payload storage size limit of 0.00009536743MB reached!")
    assert "a" not in (await api.retrieve([1], with_payload=True))[0]["payload"]
    # Deletes still run: they free space.
    assert (await api.call("POST", POINTS + "/payload/clear", json={"points": [1]})).status == 200


async def test_payload_size_is_the_json_size_of_the_stored_payloads(
    api: Api, monkeypatch: pytest.MonkeyPatch
):
    """Scanned in chunks (3 points here) and, for the test, afresh at every check."""
    monkeypatch.setattr(engine.collection, "PAYLOAD_SCAN_CHUNK", 3)
    monkeypatch.setattr(engine.collection, "PAYLOAD_BYTES_REFRESH_S", 0.0)
    monkeypatch.setattr(engine.collection, "PAYLOAD_RESCAN_FACTOR", 0)
    await make_collection(api)
    payloads = [point["payload"] for point in await api.scroll_all()]
    total_bytes = sum(len(json.dumps(p, separators=(",", ":")).encode()) for p in payloads)
    await set_strict_mode(
        api, {"enabled": True, "max_collection_payload_size_bytes": total_bytes + 1}
    )
    set_payload = {"payload": {"a": 1}, "points": [1]}
    # wait=true: the next check must see this write applied (the default, wait=false,
    # answers before the applier has written it, and the scan reads applied payloads).
    first = await api.call("POST", POINTS + "/payload", json=set_payload, query={"wait": "true"})
    assert first.status == 200
    response = await api.call("POST", POINTS + "/payload", json=set_payload)
    assert "Max payload storage size limit of" in response.error


async def test_sparse_max_length(api: Api):
    await api.create_collection("c", sparse_vectors={"sparse-vector": {}})
    await set_strict_mode(
        api, {"enabled": True, "sparse_config": {"sparse-vector": {"max_length": 4}}}
    )
    ok = {"indices": [1, 2, 3, 4], "values": [0.0, 0.1, 0.2, 0.3]}
    assert (
        await api.upsert({"points": [{"id": 1, "vector": {"sparse-vector": ok}}]})
    ).status == 200
    long = {"indices": [1, 2, 3, 4, 5, 6], "values": [0.1] * 6}
    refused(
        await api.upsert({"points": [{"id": 2, "vector": {"sparse-vector": long}}]}),
        "Bad request: Sparse vector 'sparse-vector' has a limit of 4 indices, but 6 were provided!",
    )
    assert await api.points_count() == 1


async def test_max_payload_index_count(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_payload_index_count": 0})
    body = {"field_name": "price", "field_schema": "float"}
    refused(
        await api.call("PUT", INDEX, json=body),
        "Bad request: Collection already has the maximum number of payload indices (0). "
        "Help: Please delete an existing index before creating a new one.",
    )
    assert (await api.call("GET", COLLECTION)).result["payload_schema"] == {}
    await set_strict_mode(api, {"max_payload_index_count": 1})
    await create_index(api, "city", "keyword")
    assert (
        "maximum number of payload indices (1)" in (await api.call("PUT", INDEX, json=body)).error
    )
    await set_strict_mode(api, {"enabled": False})
    await create_index(api, "price", "float")


async def test_resident_memory_limit(api: Api, monkeypatch: pytest.MonkeyPatch):
    """The process's memory is what it is: the reading is replaced to be at the limit."""
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_resident_memory_percent": 90})
    monkeypatch.setattr(memory, "resident_memory_percent", lambda: 90)
    response = await api.upsert({"points": [{"id": 50, "vector": [1, 2, 3, 4]}]})
    assert response.status == 400
    assert response.error.startswith(
        "Bad request: Resident memory usage is at 90% of total memory, exceeding the "
        "configured limit of 90%. Help: "
    )
    assert await api.points_count() == 10
    delete = await api.call("POST", POINTS + "/delete", json={"points": [1]})
    assert delete.status == 200  # deletes free memory: never held back
    monkeypatch.setattr(memory, "resident_memory_percent", lambda: 89)
    assert (await api.upsert({"points": [{"id": 50, "vector": [1, 2, 3, 4]}]})).status == 200


# ---- rate limits ----------------------------------------------------------------------------


async def test_read_rate_limit(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "read_rate_limit": 1})
    body = {"query": [0.2, 0.1, 0.9, 0.7], "limit": 4}
    assert (await query(api, body)).status == 200
    response = await query(api, body)
    assert response.status == 429
    assert response.error.startswith(
        "Rate limiting exceeded: Read rate limit exceeded: Operation requires 1 tokens but only "
    )
    assert 55 < int(response.headers["Retry-After"]) <= 60
    await set_strict_mode(api, {"enabled": False})
    assert (await query(api, body)).status == 200


async def test_read_costs_ids_and_filter_conditions(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "read_rate_limit": 4})
    response = await api.call("POST", POINTS, json={"ids": [1, 2, 3, 4, 5]})
    refused(
        response,
        "Rate limiting exceeded: Read rate limit exceeded, request larger than rate limiter "
        "capacity, please try to split your request",
        429,
    )
    assert "Retry-After" not in response.headers
    recommend = {"query": {"recommend": {"positive": [1, 2, 3, 4, 5]}}}
    assert "request larger than rate limiter capacity" in (await query(api, recommend)).error
    assert (await api.call("POST", POINTS, json={"ids": [1, 2, 3, 4]})).status == 200
    response = await api.call("POST", POINTS, json={"ids": [1, 2, 3, 4]})
    assert "Operation requires 4 tokens but only 0.0 were available" in response.error
    await set_strict_mode(api, {"read_rate_limit": 10})
    conditions = [{"key": "price", "match": {"value": i}} for i in range(6)]
    assert (
        await api.call("POST", POINTS + "/scroll", json={"filter": {"must": conditions}})
    ).status == 200
    response = await api.call("POST", POINTS + "/scroll", json={"filter": {"must": conditions}})
    assert "Read rate limit exceeded: Operation requires 7 tokens" in response.error


async def test_write_rate_limit(api: Api):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "write_rate_limit": 10})
    batch = {"batch": {"ids": list(range(11)), "vectors": [[1, 2, 3, 5]] * 11}}
    response = await api.call("POST", POINTS + "/batch", json={"operations": [{"upsert": batch}]})
    refused(
        response,
        "Rate limiting exceeded: Write rate limit exceeded, request larger than rate limiter "
        "capacity, please try to split your request",
        429,
    )
    assert await api.points_count() == 10  # id 10 was not written
    ten = {"batch": {"ids": list(range(10)), "vectors": [[1, 2, 3, 5]] * 10}}
    assert (await api.upsert(ten)).status == 200
    response = await api.upsert(ten)
    refused(
        response,
        "Rate limiting exceeded: Write rate limit exceeded: Operation requires 10 tokens but "
        "only 0.0 were available. Retry after 60s",
        429,
    )
    assert response.headers["Retry-After"] == "60"


async def test_filtered_write_costs_its_expected_points(api: Api):
    """Qdrant's estimate of an unindexed condition is half the points: 5 of 10."""
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "write_rate_limit": 7})
    body = {
        "payload": {"x": 1},
        "filter": {"must": [{"key": "City", "match": {"value": "Berlin"}}]},
    }
    assert (await api.call("POST", POINTS + "/payload", json=body)).status == 200
    response = await api.call("POST", POINTS + "/payload", json=body)
    assert response.status == 429
    assert "Operation requires 5 tokens but only 2.0 were available" in response.error


async def test_formula_payload_keys_need_an_index(api: Api):
    await make_collection(api)
    body = {
        "prefetch": {"query": [0.1, 0.2, 0.3, 0.4]},
        "query": {
            "formula": {"sum": ["price", "$score"]},
            "defaults": {"price": 0},  # a default does not lift the restriction
        },
    }
    assert (await query(api, body)).status == 200
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": False})
    refused(
        await query(api, body),
        'Bad request: Index required but not found for "price" of one of the following types: '
        "[float, integer]. Help: Create an index for this key or use a different formula "
        "expression.",
    )
    await create_index(api, "price", {"type": "integer", "lookup": True, "range": False})
    assert (await query(api, body)).status == 200


# ---- qdrant-client against a real server ------------------------------------------------------


def test_qdrant_client_sets_updates_and_keeps_strict_mode(tmp_path: Path):
    """What users write: create_collection(strict_mode_config=...), update_collection(...),
    the refusal as qdrant-client raises it, and the config after a restart."""
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    try:
        client = QdrantClient(url=server.url, timeout=30)
        client.create_collection(
            "c",
            vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
            strict_mode_config=models.StrictModeConfig(enabled=True, max_query_limit=5),
        )
        client.upsert("c", [models.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4])])
        strict = client.get_collection("c").config.strict_mode_config
        assert strict == models.StrictModeConfigOutput(enabled=True, max_query_limit=5)
        client.query_points("c", query=[0.1, 0.2, 0.3, 0.4], limit=5)
        assert client.update_collection(
            "c", strict_mode_config=models.StrictModeConfig(max_query_limit=3, read_rate_limit=100)
        )
        with pytest.raises(UnexpectedResponse) as raised:
            client.query_points("c", query=[0.1, 0.2, 0.3, 0.4], limit=5)
        assert raised.value.status_code == 400
        assert 'Limit exceeded 5 > 3 for \\"limit\\"' in raised.value.content.decode()
        client.close()
        assert server.terminate() == 0
        server = KeelProcess.start(storage)
        client = QdrantClient(url=server.url, timeout=30)
        strict = client.get_collection("c").config.strict_mode_config
        expected = models.StrictModeConfigOutput(
            enabled=True, max_query_limit=3, read_rate_limit=100
        )
        assert strict == expected
        assert len(client.query_points("c", query=[0.1, 0.2, 0.3, 0.4], limit=3).points) == 1
        client.close()
    finally:
        assert server.terminate() == 0


async def test_full_scan_with_a_tenant_filter_needs_payload_m(api: Api):
    await make_collection(api, vectors={"dense": {"size": 4, "distance": "Dot"}})
    patch = {"vectors": {"dense": {"hnsw_config": {"m": 0, "payload_m": 0}}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    body = {
        "query": [1, 0, 0, 0],
        "using": "dense",
        "filter": {"must": [{"key": "city", "match": {"value": "Berlin"}}]},
    }
    assert (await query(api, body)).status == 200
    await set_strict_mode(api, {"enabled": True, "search_allow_exact": False})
    assert "global vector indexing is disabled" in (await query(api, body)).error
    await create_index(api, "city", "keyword")
    assert "global vector indexing is disabled" in (await query(api, body)).error
    await create_index(api, "city", {"type": "keyword", "is_tenant": True})
    refused(
        await query(api, body),
        "Bad request: Request is forbidden on 'dense' because vector indexing is disabled "
        "(hnsw_config.m = 0 and hnsw_config.payload_m = 0). Help: Enable vector indexing, use a "
        "prefetch query with indexed vectors or enable strict mode `search_allow_exact` option",
    )
    patch = {"vectors": {"dense": {"hnsw_config": {"m": 0, "payload_m": 1}}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    assert (await query(api, body)).status == 200


async def test_a_snapshot_carries_strict_mode(api: Api, tmp_path: Path):
    await make_collection(api)
    await set_strict_mode(api, {"enabled": True, "max_query_limit": 3})
    snapshot = (await api.call("POST", COLLECTION + "/snapshots")).result
    await set_strict_mode(api, {"enabled": False})
    location = (tmp_path / "snapshots" / "c" / snapshot["name"]).as_uri()
    recover = await api.call("PUT", COLLECTION + "/snapshots/recover", json={"location": location})
    assert recover.result is True
    assert (await config_of(api))["strict_mode_config"] == {"enabled": True, "max_query_limit": 3}
    assert "Limit exceeded 4 > 3" in (await query(api, {"query": [1, 0, 0, 0], "limit": 4})).error


async def test_multivector_max_vectors(api: Api):
    """Qdrant's StrictModeMultivector.max_vectors: rows per matrix, checked on upserts (list
    and batch forms) and vector updates; a plain vector for the name is one row."""
    multi = {"size": 2, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}}
    await api.create_collection("c", vectors={"colbert": multi})
    await set_strict_mode(
        api, {"enabled": True, "multivector_config": {"colbert": {"max_vectors": 2}}}
    )
    two_rows = [[1.0, 0.0], [0.0, 1.0]]
    three_rows = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert (
        await api.upsert({"points": [{"id": 1, "vector": {"colbert": two_rows}}]})
    ).status == 200
    message = "Bad request: Multivector 'colbert' has a limit of 2 vectors, but 3 were provided!"
    refused(await api.upsert({"points": [{"id": 2, "vector": {"colbert": three_rows}}]}), message)
    batch = {"batch": {"ids": [3, 4], "vectors": {"colbert": [two_rows, three_rows]}}}
    refused(await api.upsert(batch), message)
    update = {"points": [{"id": 1, "vector": {"colbert": three_rows}}]}
    refused(await api.call("PUT", POINTS + "/vectors", json=update), message)
    assert await api.points_count() == 1


async def test_multivector_storage_counts_every_row(api: Api):
    """A matrix of many rows fills the vector storage limit as its rows do, not as one."""
    multi = {"size": 64, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}}
    await api.create_collection("c", vectors={"colbert": multi})
    rows = [[0.5] * 64 for _ in range(100)]  # 25.6 KB of floats per point
    body = {"points": [{"id": i, "vector": {"colbert": rows}} for i in range(4)]}
    assert (await api.upsert(body, query={"wait": "true"})).status == 200
    # One row per point would be 4 x 64 x 4 = 1 KiB: under a 64 KiB limit; the rows are not.
    await set_strict_mode(api, {"enabled": True, "max_collection_vector_size_bytes": 65_536})
    refused(
        await api.upsert({"points": [{"id": 9, "vector": {"colbert": rows}}]}),
        "Bad request: Max vector storage size limit of 0.0625MB reached!",
    )


async def test_a_multivector_costs_its_rows_given_or_fetched_by_id(api: Api):
    """Qdrant's test_read_rate_limiter_many_vectors: a query matrix of 3 rows costs 3 tokens,
    and so does an id whose stored multivector has 3 rows (+1 to fetch it, +1 for the
    has_id exclusion of the example)."""
    multi = {"size": 4, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}}
    await api.create_collection("c", vectors={"m": multi})
    rows = [[0.1, 0.2, 0.3, 0.4]] * 3
    upsert = {"points": [{"id": 2, "vector": {"m": rows}}, {"id": 3, "vector": {"m": rows[:1]}}]}
    assert (await api.upsert(upsert)).result["status"] == "completed"
    by_matrix = {"query": rows, "using": "m", "limit": 5}
    by_id = {"query": 2, "using": "m", "limit": 5}
    too_large = "request larger than rate limiter capacity"
    for body, fitting_limit in ((by_matrix, 3), (by_id, 5)):
        await set_strict_mode(api, {"enabled": True, "read_rate_limit": 2})
        response = await query(api, body)
        assert response.status == 429 and too_large in response.error, response.body
        await set_strict_mode(api, {"enabled": True, "read_rate_limit": fitting_limit - 1})
        assert (await query(api, body)).status == 429  # one token short
        await set_strict_mode(api, {"enabled": True, "read_rate_limit": fitting_limit})
        assert (await query(api, body)).status == 200
    # A one-row multivector fetched by id costs 1 (+2): 3 tokens are enough.
    await set_strict_mode(api, {"enabled": True, "read_rate_limit": 3})
    assert (await query(api, {"query": 3, "using": "m"})).status == 200


async def test_an_idf_corpus_filter_is_checked_as_a_read_filter(api: Api):
    """Qdrant's SearchParams `indexed_filter_read`: the corpus filter of `params.idf` needs
    indexed fields under unindexed_filtering_retrieve=false, and counts against the filter
    limits, after hnsw_ef and before exact."""
    await api.create_collection("c", sparse_vectors={"s": {"modifier": "idf"}})
    point = {"id": 1, "vector": {"s": {"indices": [1], "values": [1.0]}}, "payload": {"t": "a"}}
    assert (await api.upsert({"points": [point]})).status == 200
    corpus = {"must": [{"key": "t", "match": {"value": "a"}}]}
    body = {
        "query": {"indices": [1], "values": [1.0]},
        "using": "s",
        "params": {"idf": {"corpus": corpus}},
    }
    await set_strict_mode(api, {"enabled": True, "unindexed_filtering_retrieve": False})
    refused(
        await query(api, body),
        'Bad request: Index required but not found for "t" of one of the following types: '
        "[keyword]. Help: Create an index for this key or use a different filter.",
    )
    await create_index(api, "t", "keyword")
    assert (await query(api, body)).status == 200
    await set_strict_mode(api, {"filter_max_conditions": 0})
    response = await query(api, body)
    assert response.status == 400 and "Filter condition limit reached (1 > 0)" in response.error
    # hnsw_ef is checked before the corpus, exact after it.
    await set_strict_mode(api, {"search_max_hnsw_ef": 1, "search_allow_exact": False})
    response = await query(api, {**body, "params": {**body["params"], "hnsw_ef": 5, "exact": True}})
    assert "hnsw_ef" in response.error
    response = await query(api, {**body, "params": {**body["params"], "exact": True}})
    assert "Filter condition limit reached" in response.error
