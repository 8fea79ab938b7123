"""`/points/search/matrix/pairs` and `/offsets`: shapes (checked against the spec by `Api`),
defaults and errors. Results are compared with qdrant-client's local mode in
tests/client/test_qdrant_client_query.py."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

PAIRS = "/collections/{collection_name}/points/search/matrix/pairs"
OFFSETS = "/collections/{collection_name}/points/search/matrix/offsets"
QUERY = "/collections/{collection_name}/points/query"


@pytest.fixture
async def points(api: Api) -> Api:
    await api.create_collection("c", vectors={"size": 2, "distance": "Euclid"})
    body = {
        "points": [{"id": i, "vector": [i, 0], "payload": {"even": i % 2 == 0}} for i in range(6)]
    }
    await api.upsert(body, query={"wait": "true"})
    return api


async def test_pairs_with_defaults_and_offsets_with_a_filter(points: Api) -> None:
    pairs = (await points.call("POST", PAIRS, json={})).result["pairs"]
    assert len(pairs) == 6 * 3  # sample 10 (all 6 points), limit 3
    nearest = {(pair["a"], pair["b"]): pair["score"] for pair in pairs}
    assert nearest[(2, 1)] == nearest[(2, 3)] == 1.0
    body = {"filter": {"must": [{"key": "even", "match": {"value": True}}]}, "limit": 1}
    result = (await points.call("POST", OFFSETS, json=body)).result
    assert result["ids"] == [0, 2, 4]
    assert result["offsets_row"] == [0, 1, 2] and result["scores"] == [2.0, 2.0, 2.0]
    assert result["offsets_col"][0] == 1


async def test_fewer_than_two_points_answer_empty(api: Api) -> None:
    await api.create_collection("c", vectors={"size": 2, "distance": "Dot"})
    assert (await api.call("POST", PAIRS, json={})).result == {"pairs": []}


async def test_errors(points: Api) -> None:
    response = await points.call("POST", PAIRS, json={"sample": 1})
    assert response.status == 422
    assert response.error == (
        "Validation error in JSON body: [search_request.sample: value 1 invalid, must be 2 or "
        "larger]"
    )
    response = await points.call("POST", OFFSETS, json={"using": "nope"})
    assert (response.status, response.error) == (
        400,
        "Wrong input: Not existing vector name error: nope",
    )
    assert (await points.call("POST", PAIRS, json={}, name="missing")).status == 404


async def test_sample_query(points: Api) -> None:
    body = {"query": {"sample": "random"}, "limit": 4, "with_payload": True}
    result = (await points.call("POST", QUERY, json=body)).result["points"]
    assert len({point["id"] for point in result}) == 4
    assert all(point["score"] == 1.0 and point["version"] == 0 for point in result)
    body = {
        "query": {"sample": "random"},
        "filter": {"must": [{"key": "even", "match": {"value": False}}]},
    }
    result = (await points.call("POST", QUERY, json=body)).result["points"]
    assert sorted(point["id"] for point in result) == [1, 3, 5]
    response = await points.call("POST", QUERY, json={"query": {"sample": "nope"}})
    assert response.status == 400


async def test_scores_are_written_as_float32(api: Api) -> None:
    """Qdrant's scores are f32: serde writes the shortest f32 text (0.22360681), not the
    float64 widening of it (0.22360680997371674). Both answers, parsed, give that number."""
    await api.create_collection("c", vectors={"size": 2, "distance": "Euclid"})
    body = {"points": [{"id": 1, "vector": [0.0, 0.0]}, {"id": 2, "vector": [0.1, 0.2]}]}
    await api.upsert(body, query={"wait": "true"})
    pairs = (await api.call("POST", PAIRS, json={})).result["pairs"]
    assert [pair["score"] for pair in pairs] == [0.22360681, 0.22360681]
    offsets = (await api.call("POST", OFFSETS, json={})).result
    assert offsets["scores"] == [0.22360681, 0.22360681]
