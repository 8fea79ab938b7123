"""Filters where writes and searches take them: delete by filter, upsert's `update_filter`
(both body forms), and the `filter` of /points/search and /points/query."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

DELETE = "/collections/{collection_name}/points/delete"
SEARCH = "/collections/{collection_name}/points/search"
QUERY = "/collections/{collection_name}/points/query"
LONDON_OR_PARIS = {"must": [{"key": "city", "match": {"any": ["London", "Paris"]}}]}


@pytest.fixture
async def cities(api: Api) -> Api:
    await api.create_collection(vectors={"size": 4, "distance": "Dot"})
    await api.upsert(
        {
            "points": [
                {"id": 1, "vector": [0.05, 0.61, 0.76, 0.74], "payload": {"city": "Berlin"}},
                {"id": 2, "vector": [0.19, 0.81, 0.75, 0.11], "payload": {"city": "London"}},
                {"id": 3, "vector": [0.36, 0.55, 0.47, 0.94], "payload": {"city": "Paris"}},
                {"id": 4, "vector": [0.18, 0.01, 0.85, 0.80], "payload": {"city": "Rome"}},
            ]
        }
    )
    return api


async def test_delete_by_filter(cities: Api):
    response = await cities.call("POST", DELETE, json={"filter": LONDON_OR_PARIS})
    assert response.result == {"operation_id": 1, "status": "completed"}
    assert [point["id"] for point in await cities.scroll_all()] == [1, 4]
    response = await cities.call(
        "POST", DELETE, json={"filter": LONDON_OR_PARIS}, query={"wait": "false"}
    )
    assert response.result == {"operation_id": 2, "status": "acknowledged"}  # matched nothing


async def test_delete_with_ids_and_filter_uses_the_ids(cities: Api):
    """PointsSelector is untagged: the ids form is tried first and wins."""
    response = await cities.call("POST", DELETE, json={"points": [4], "filter": LONDON_OR_PARIS})
    assert response.status == 200
    assert [point["id"] for point in await cities.scroll_all()] == [1, 2, 3]


async def test_delete_errors_write_nothing(cities: Api):
    response = await cities.call("POST", DELETE, json={"points": []})
    assert (response.status, response.error) == (400, "Bad request: Empty update request")
    response = await cities.call("POST", DELETE, json={"filter": None})
    assert response.status == 400
    response = await cities.call("POST", DELETE, json={"filter": {"must": [{"key": "a"}]}})
    assert (response.status, response.error) == (
        422,
        (
            "Validation error in JSON body: [filter.must[0].__all__: At least one field condition "
            "must be specified]"
        ),
    )
    assert await cities.points_count() == 4
    assert await cities.next_op_id() == 1


@pytest.mark.parametrize("form", ["points", "batch"])
async def test_update_filter_replaces_only_matching_existing_points(cities: Api, form):
    """Existing points that do not match keep their state; new ids are inserted anyway."""
    ids, vectors = [1, 2, 3, 9], [[1, 1, 1, 1]] * 4
    payloads = [{"city": "New"}] * 4
    if form == "points":
        points = [{"id": i, "vector": v, "payload": p} for i, v, p in zip(ids, vectors, payloads)]
        body = {"points": points}
    else:
        body = {"batch": {"ids": ids, "vectors": vectors, "payloads": payloads}}
    response = await cities.upsert({**body, "update_filter": LONDON_OR_PARIS})
    assert response.result == {"operation_id": 1, "status": "completed"}
    cities_by_id = {p["id"]: p["payload"]["city"] for p in await cities.scroll_all()}
    assert cities_by_id == {1: "Berlin", 2: "New", 3: "New", 4: "Rome", 9: "New"}


async def test_update_filter_with_update_only_skips_new_ids(cities: Api):
    body = {
        "points": [
            {"id": i, "vector": [1, 1, 1, 1], "payload": {"city": "New"}} for i in (1, 2, 9)
        ],
        "update_filter": LONDON_OR_PARIS,
        "update_mode": "update_only",
    }
    assert (await cities.upsert(body)).status == 200
    cities_by_id = {p["id"]: p["payload"]["city"] for p in await cities.scroll_all()}
    assert cities_by_id == {1: "Berlin", 2: "New", 3: "Paris", 4: "Rome"}


async def test_update_filter_validation_error_writes_nothing(cities: Api):
    body = {
        "points": [{"id": 9, "vector": [1, 1, 1, 1]}],
        "update_filter": {"must": [{"key": "a"}]},
    }
    response = await cities.upsert(body)
    assert (response.status, response.error) == (
        422,
        (
            "Validation error in JSON body: [update_filter.must[0].__all__: At least one field "
            "condition must be specified]"
        ),
    )
    assert await cities.next_op_id() == 1


async def test_filtered_search_and_query_only_return_matching_points(cities: Api):
    vector = [0.2, 0.1, 0.9, 0.7]
    body = {"vector": vector, "limit": 10, "filter": LONDON_OR_PARIS, "with_payload": True}
    result = (await cities.call("POST", SEARCH, json=body)).result
    assert [(p["id"], p["payload"]["city"]) for p in result] == [(3, "Paris"), (2, "London")]
    body = {"query": vector, "limit": 1, "filter": {"must_not": LONDON_OR_PARIS["must"]}}
    result = (await cities.call("POST", QUERY, json=body)).result
    assert [p["id"] for p in result["points"]] == [4]
    body = {"query": vector, "filter": {"must": [{"has_id": [1]}]}, "params": {"exact": True}}
    result = (await cities.call("POST", QUERY, json=body)).result
    assert [p["id"] for p in result["points"]] == [1]
