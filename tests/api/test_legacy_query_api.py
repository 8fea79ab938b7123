"""The pre-1.10 recommend and discover endpoints: the same answers as the universal query.

Qdrant 1.19's OpenAPI spec no longer lists them, so their answers are checked against the
shapes of the endpoints they mirror (`/points/search`, `/points/search/groups`).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, ApiResponse
from tests.api.openapi_check import check_error_shape, check_response

POINTS = "/collections/{collection_name}/points"
VECTORS = {i: [float(i % 5), float(i % 3) - 1.0, 1.0, float(i % 2)] for i in range(1, 31)}


@pytest.fixture
async def points(api: Api) -> Api:
    await api.create_collection("c", vectors={"size": 4, "distance": "Cosine"})
    body = {"points": [{"id": i, "vector": v, "payload": {"g": i % 4}} for i, v in VECTORS.items()]}
    await api.upsert(body, query={"wait": "true"})
    return api


async def legacy(api: Api, path: str, body: Any, mirrors: str = "/search") -> ApiResponse:
    response = await api.call("POST", POINTS + path, json=body, validate=False)
    if response.status == 200:
        check_response(POINTS + mirrors, "post", 200, response.body)
    else:
        check_error_shape(response.body)
    return response


async def query(api: Api, body: Any) -> list[tuple[Any, float]]:
    result = (await api.call("POST", POINTS + "/query", json=body)).result
    return [(p["id"], round(p["score"], 5)) for p in result["points"]]


def hits(points: list[dict]) -> list[tuple[Any, float]]:
    return [(p["id"], round(p["score"], 5)) for p in points]


@pytest.mark.parametrize("strategy", ["average_vector", "best_score", "sum_scores"])
async def test_recommend_answers_as_the_recommend_query(points: Api, strategy: str) -> None:
    examples = {"positive": [1, [1, 0, 1, 0]], "negative": [2], "strategy": strategy}
    body = {**examples, "limit": 5, "filter": {"must_not": [{"key": "g", "match": {"value": 0}}]}}
    response = await legacy(points, "/recommend", body)
    expected = await query(
        points, {"query": {"recommend": examples}, "limit": 5, "filter": body["filter"]}
    )
    assert hits(response.result) == expected and len(expected) == 5


async def test_discover_and_context_answer_as_their_queries(points: Api) -> None:
    context = [{"positive": 3, "negative": 4}]
    response = await legacy(points, "/discover", {"target": 5, "context": context, "top": 4})
    expected = await query(points, {"query": {"discover": {"target": 5, "context": context}}})
    assert hits(response.result) == expected[:4]
    response = await legacy(points, "/discover", {"context": context, "limit": 30})
    expected = await query(points, {"query": {"context": context}, "limit": 30})
    assert sorted(hits(response.result)) == sorted(expected)


async def test_batches_and_groups(points: Api) -> None:
    search = {"positive": [1], "limit": 3}
    response = await legacy(
        points, "/recommend/batch", {"searches": [search, search]}, "/search/batch"
    )
    assert len(response.result) == 2 and response.result[0] == response.result[1]
    discover = {"target": 5, "context": [{"positive": 3, "negative": 4}], "limit": 2}
    response = await legacy(points, "/discover/batch", {"searches": [discover]}, "/search/batch")
    assert len(response.result) == 1 and len(response.result[0]) == 2
    body = {"positive": [1], "group_by": "g", "group_size": 2, "limit": 3}
    response = await legacy(points, "/recommend/groups", body, "/search/groups")
    groups = response.result["groups"]
    assert len(groups) == 3 and all(len(group["hits"]) <= 2 for group in groups)


async def test_missing_examples_answer_qdrants_errors(points: Api) -> None:
    response = await legacy(points, "/recommend", {"negative": [1], "limit": 3})
    assert response.status == 400
    assert response.error == (
        "Bad request: At least one positive vector ID required with this strategy"
    )
    body = {"strategy": "best_score", "limit": 3}
    response = await legacy(points, "/recommend", body)
    assert response.error.startswith("Bad request: At least one positive or negative")
    response = await legacy(points, "/discover", {"limit": 3})
    assert response.error == "Bad request: target and/or context_pairs must be specified"
    response = await legacy(points, "/recommend", {"positive": [1]})
    assert response.status == 400 and "missing field `limit`" in response.error
    response = await legacy(points, "/recommend", {"positive": [999], "limit": 3})
    assert response.status == 404
