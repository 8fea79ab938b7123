"""POST /collections/{name}/facet: counts, Qdrant's hit order, filter, limit, errors."""

from __future__ import annotations

from tests.api.conftest import Api

FACET = "/collections/{collection_name}/facet"


async def seed(api: Api) -> None:
    await api.create_collection("c", vectors={"size": 2, "distance": "Dot"})
    payloads = [
        {"city": "Berlin", "n": 1, "ok": True},
        {"city": "Paris", "n": 2, "ok": False},
        {"city": ["Paris", "Paris", "Rome"], "n": [1, 3]},
        {"city": "Berlin", "n": 1, "ok": True},
        {"city": "Athens"},
        {"city": 7.5, "n": 1.5},  # floats are not facet values
        {"other": 1},
    ]
    points = [{"id": i, "vector": [1, 0], "payload": p} for i, p in enumerate(payloads, 1)]
    await api.upsert({"points": points})


async def test_facet_counts_values_once_per_point_in_qdrants_order(api: Api):
    await seed(api)
    hits = (await api.call("POST", FACET, json={"key": "city"})).result["hits"]
    # count descending, then value ascending
    assert hits == [
        {"value": "Berlin", "count": 2},
        {"value": "Paris", "count": 2},
        {"value": "Athens", "count": 1},
        {"value": "Rome", "count": 1},
    ]
    hits = (await api.call("POST", FACET, json={"key": "n", "limit": 2})).result["hits"]
    assert hits == [{"value": 1, "count": 3}, {"value": 2, "count": 1}]
    hits = (await api.call("POST", FACET, json={"key": "ok", "exact": True})).result["hits"]
    assert hits == [{"value": True, "count": 2}, {"value": False, "count": 1}]


async def test_facet_with_a_filter(api: Api):
    await seed(api)
    body = {"key": "city", "filter": {"must": [{"key": "n", "match": {"value": 1}}]}}
    hits = (await api.call("POST", FACET, json=body)).result["hits"]
    assert hits == [
        {"value": "Berlin", "count": 2},
        {"value": "Paris", "count": 1},
        {"value": "Rome", "count": 1},
    ]


async def test_facet_of_an_empty_collection_or_missing_key_is_empty(api: Api):
    await api.create_collection("c")
    assert (await api.call("POST", FACET, json={"key": "city"})).result == {"hits": []}


async def test_facet_errors(api: Api):
    response = await api.call("POST", FACET, json={"key": "k"}, name="missing")
    assert (response.status, response.error) == (
        404,
        "Not found: Collection `missing` doesn't exist!",
    )
    await api.create_collection("c")
    response = await api.call("POST", FACET, json={"key": "k", "limit": 0})
    message = (
        "Validation error in JSON body: [facet_request.limit: value 0 invalid, must be 1 or larger]"
    )
    assert (response.status, response.error) == (422, message)
    response = await api.call("POST", FACET, json={})
    assert (response.status, response.error) == (
        400,
        "Format error in JSON body: missing field `key`",
    )
    response = await api.call("POST", FACET, json={"key": "a..b"})
    assert (response.status, response.error) == (
        400,
        "Format error in JSON body: Invalid json path: 'a..b'",
    )
    response = await api.call("POST", FACET, json={"key": "k", "limit": "x"})
    assert response.status == 400


async def test_facet_over_an_indexed_key_counts_only_the_index_type(api: Api):
    """As Qdrant, which counts from the payload index: a keyword index holds only strings."""
    await seed(api)
    await api.upsert({"points": [{"id": 20, "vector": [1, 0], "payload": {"city": 5}}]})
    response = await api.call(
        "PUT",
        "/collections/{collection_name}/index",
        json={"field_name": "n", "field_schema": "integer"},
        query={"wait": "true"},
    )
    assert response.status == 200, response.body
    hits = (await api.call("POST", FACET, json={"key": "n"})).result["hits"]
    assert hits == [{"value": 1, "count": 3}, {"value": 2, "count": 1}, {"value": 3, "count": 1}]
    await api.call(
        "PUT",
        "/collections/{collection_name}/index",
        json={"field_name": "city", "field_schema": "keyword"},
        query={"wait": "true"},
    )
    hits = (await api.call("POST", FACET, json={"key": "city"})).result["hits"]
    assert {"value": 5, "count": 1} not in hits
    assert hits[0] == {"value": "Berlin", "count": 2}
