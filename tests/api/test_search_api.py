"""POST /points/search and /points/query: results, field presence, validation, 501s."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

SEARCH = "/collections/{collection_name}/points/search"
QUERY = "/collections/{collection_name}/points/query"


@pytest.fixture
async def cities(api: Api) -> Api:
    await api.create_collection(vectors={"size": 4, "distance": "Dot"})
    await api.upsert(
        {
            "points": [
                {"id": 1, "vector": [0.05, 0.61, 0.76, 0.74], "payload": {"city": "Berlin"}},
                {"id": 2, "vector": [0.19, 0.81, 0.75, 0.11], "payload": {"city": "London"}},
                {"id": 3, "vector": [0.36, 0.55, 0.47, 0.94], "payload": {"city": "Paris"}},
            ]
        }
    )
    return api


async def test_search_returns_scored_points_best_first_without_payload_by_default(cities: Api):
    response = await cities.call("POST", SEARCH, json={"vector": [0.2, 0.1, 0.9, 0.7], "limit": 3})
    result = response.result
    assert [point["id"] for point in result] == [1, 3, 2]
    assert result[0] == {"id": 1, "version": 0, "score": pytest.approx(1.273, abs=1e-3)}
    assert all(set(point) == {"id", "version", "score"} for point in result)


async def test_search_with_payload_vector_offset_and_threshold(cities: Api):
    body = {
        "vector": [0.2, 0.1, 0.9, 0.7],
        "limit": 1,
        "offset": 1,
        "with_payload": True,
        "with_vector": True,
        "params": {"hnsw_ef": 16, "exact": True},
        "filter": {"must": []},
    }
    [point] = (await cities.call("POST", SEARCH, json=body)).result
    assert point["id"] == 3
    assert point["payload"] == {"city": "Paris"}
    assert point["vector"] == [0.36, 0.55, 0.47, 0.94]
    body = {"vector": [0.2, 0.1, 0.9, 0.7], "limit": 10, "score_threshold": 1.0}
    assert [p["id"] for p in (await cities.call("POST", SEARCH, json=body)).result] == [1, 3]


async def test_query_nearest_in_both_forms(cities: Api):
    for query in ([0.2, 0.1, 0.9, 0.7], {"nearest": [0.2, 0.1, 0.9, 0.7]}):
        body = {"query": query, "limit": 2, "with_payload": ["city"]}
        result = (await cities.call("POST", QUERY, json=body)).result
        assert [(p["id"], p["payload"]) for p in result["points"]] == [
            (1, {"city": "Berlin"}),
            (3, {"city": "Paris"}),
        ]


async def test_query_uses_a_named_vector(api: Api):
    vectors = {"text": {"size": 2, "distance": "Euclid"}, "image": {"size": 3, "distance": "Dot"}}
    await api.create_collection(vectors=vectors)
    await api.upsert(
        {
            "points": [
                {"id": 1, "vector": {"text": [0, 0], "image": [1, 0, 0]}},
                {"id": 2, "vector": {"text": [3, 4]}},
            ]
        }
    )
    body = {"query": [3, 4], "using": "text", "with_vector": ["text"]}
    points = (await api.call("POST", QUERY, json=body)).result["points"]
    assert [(p["id"], p["score"]) for p in points] == [(2, 0.0), (1, 5.0)]
    assert points[0]["vector"] == {"text": [3.0, 4.0]}
    body = {"vector": {"name": "image", "vector": [1, 0, 0]}, "limit": 5}
    assert [p["id"] for p in (await api.call("POST", SEARCH, json=body)).result] == [1]


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (
            SEARCH,
            {"vector": [1, 2, 3, 4], "limit": 0},
            422,
            (
                "Validation error in JSON body: [search_request.limit: value 0 invalid, must be 1 or "
                "larger]"
            ),
        ),
        (
            QUERY,
            {"query": [1, 2, 3, 4], "limit": 0},
            422,
            "Validation error in JSON body: [internal.limit: value 0 invalid, must be 1 or larger]",
        ),
        (
            SEARCH,
            {"vector": [1, 2, 3, 4], "limit": 1, "params": {"hnsw_ef": 0}},
            422,
            (
                "Validation error in JSON body: [search_request.params.hnsw_ef: value 0 invalid, must "
                "be 1 or larger]"
            ),
        ),
        (SEARCH, {"vector": [1, 2, 3, 4]}, 400, "Format error in JSON body: missing field `limit`"),
        (
            SEARCH,
            {"vector": [1, 2, 3, 4], "limit": -1},
            400,
            "Format error in JSON body: invalid value: integer `-1`, expected usize",
        ),
        (
            SEARCH,
            {"vector": "x", "limit": 1},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "NamedVectorStruct"
            ),
        ),
        (
            SEARCH,
            {"vector": [1, 2, 3], "limit": 1},
            400,
            "Wrong input: Vector dimension error: expected dim: 4, got 3",
        ),
        (
            QUERY,
            {"query": [1, 2, 3, 4], "using": "image"},
            400,
            "Wrong input: Not existing vector name error: image",
        ),
        (
            SEARCH,
            {"vector": [1, 2, 3, 4], "limit": 0, "filter": {"must": [{"key": "city"}]}},
            422,
            (
                "Validation error in JSON body: [search_request.limit: value 0 invalid, must be "
                "1 or larger; search_request.filter.must[0].__all__: At least one field "
                "condition must be specified]"
            ),
        ),
        (
            QUERY,
            {"query": [1, 2, 3, 4], "filter": {"must": [{"key": "city"}]}},
            422,
            (
                "Validation error in JSON body: [internal.filter.must[0].__all__: At least one "
                "field condition must be specified]"
            ),
        ),
        (
            QUERY,
            {"query": [1, 2, 3, 4], "filter": {"must": "x"}},
            400,
            'Format error in JSON body: invalid type: string "x", expected null, array or map',
        ),
        (
            QUERY,
            {"query": {"nearest": [1, 2, 3, 4], "mmr": {"diversity": 1.5}}},
            422,
            (
                "Validation error in JSON body: [query.mmr.diversity: value 1.5 invalid, must be "
                "from 0.0 to 1.0]"
            ),
        ),
        (
            QUERY,
            {"query": {"formula": {"sum": [1]}}},
            400,
            "Wrong input: Validation failed: cannot apply Formula without prefetches",
        ),
        (
            QUERY,
            {"query": {"indices": [1], "values": [1.0]}},
            400,
            "Wrong input: Conversion between sparse and regular vectors failed",
        ),
    ],
)
async def test_search_and_query_errors(cities: Api, path, body, status, message):
    response = await cities.call("POST", path, json=body)
    assert (response.status, response.error) == (status, message)


async def test_search_in_a_missing_collection_is_404(api: Api):
    response = await api.call("POST", SEARCH, json={"vector": [1], "limit": 1}, name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")
