"""POST /points/query with `{"relevance_feedback": ...}` (Qdrant 1.18+).

Scores are checked against qdrant-edge-py in tests/unit/test_query_formula.py; here the HTTP
side, with the cases of Qdrant's own `tests/openapi/test_relevance_feedback.py` (v1.19) and
the error bodies of `rest/validate.rs`.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

QUERY = "/collections/{collection_name}/points/query"
EXPECTING = "Format error in JSON body: Expected some form of vector, id, or a type of query"
TARGET = [0.1, 0.2, 0.3, 0.4]
NAIVE = {"naive": {"a": 0.12, "b": 1.25, "c": 0.99}}


@pytest.fixture
async def points(api: Api) -> Api:
    await api.create_collection(
        vectors={"size": 4, "distance": "Dot"},
        sparse_vectors={"s": {}},
    )
    body = {
        "points": [
            {
                "id": point_id,
                "vector": {
                    "": dense(point_id),
                    "s": {
                        "indices": list(sparse(point_id)),
                        "values": list(sparse(point_id).values()),
                    },
                },
            }
            for point_id in range(1, 9)
        ]
    }
    await api.upsert(body)
    return api


def dense(point_id: int) -> list[float]:
    return [(point_id * k % 7) / 7 for k in range(1, 5)]


def sparse(point_id: int) -> dict[int, float]:
    return {point_id % 3: point_id / 10, 5: 0.5}


def feedback_query(feedback: list, strategy: dict = NAIVE, target: object = TARGET) -> dict:
    return {"relevance_feedback": {"target": target, "feedback": feedback, "strategy": strategy}}


async def test_one_example_scores_as_the_nearest_query(points: Api):
    # Qdrant's test_feedback_pair_requirement: no pair, a = 1: the nearest query's answer.
    strategy = {"naive": {"a": 1.0, "b": 100.0, "c": 100.0}}
    query = feedback_query([{"example": [0.42, 0.42, 0.42, 0.42], "score": 0.85}], strategy)
    feedback = (await points.call("POST", QUERY, json={"query": query, "limit": 3})).result
    nearest = (await points.call("POST", QUERY, json={"query": TARGET, "limit": 3})).result
    assert feedback == nearest


async def test_pairs_move_the_ranking_and_example_ids_are_left_out(points: Api):
    # 2 is much better than 5: pairs push points similar to 2 up.
    query = feedback_query([{"example": 2, "score": 0.9}, {"example": 5, "score": 0.1}])
    body = {"query": query, "limit": 10}
    result = (await points.call("POST", QUERY, json=body)).result["points"]
    assert {point["id"] for point in result} == {1, 3, 4, 6, 7, 8}
    two, five = dense(2), dense(5)

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b))

    for point in result:
        vector = dense(point["id"])
        expected = 0.12 * dot(TARGET, vector) + 0.8**1.25 * 0.99 * (
            dot(two, vector) - dot(five, vector)
        )
        assert point["score"] == pytest.approx(expected, rel=1e-5)
    scores = [point["score"] for point in result]
    assert scores == sorted(scores, reverse=True)


async def test_sparse_feedback(points: Api):
    # Sparse similarity is the dot product over shared indices (0 without overlap); every
    # point with the sparse vector is scored.
    target, negative = {1: 1.0, 5: 0.2}, {2: 1.0}
    query = feedback_query(
        [
            {"example": 4, "score": 1.0},
            {"example": {"indices": list(negative), "values": list(negative.values())}, "score": 0},
        ],
        target={"indices": list(target), "values": list(target.values())},
    )
    body = {"query": query, "using": "s", "limit": 10}
    result = (await points.call("POST", QUERY, json=body)).result["points"]
    assert {point["id"] for point in result} == {1, 2, 3, 5, 6, 7, 8}  # 4 is an example

    def dot(a: dict[int, float], b: dict[int, float]) -> float:
        return sum(value * b.get(index, 0.0) for index, value in a.items())

    four = sparse(4)
    for point in result:
        vector = sparse(point["id"])
        expected = 0.12 * dot(target, vector) + 0.99 * (dot(four, vector) - dot(negative, vector))
        assert point["score"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        (
            feedback_query([{"example": 10000, "score": 0.85}]),
            404,
            "Not found: No point with id 10000 found",
        ),
        (
            feedback_query([]),
            422,
            (
                "Validation error in JSON body: [internal.query.relevance_feedback.__all__: "
                "feedback elements must be non-empty]"
            ),
        ),
        (
            feedback_query(
                [{"example": 1, "score": 0.85}], {"naive": {"a": 0.12, "b": -1.0, "c": 0.99}}
            ),
            422,
            (
                "Validation error in JSON body: [internal.query.relevance_feedback.strategy.naive.b: "
                "value -1.0 invalid, must be 0.0 or larger]"
            ),
        ),
        (feedback_query([{"example": 1}]), 400, EXPECTING),
        (feedback_query([{"example": 1, "score": 1}], {"naive": {"a": 1, "b": 1}}), 400, EXPECTING),
        (feedback_query([{"example": 1, "score": 1}], {"other": {}}), 400, EXPECTING),
        ({"relevance_feedback": {"target": TARGET}}, 400, EXPECTING),
        (
            feedback_query([{"example": [1.0, 2.0], "score": 1}]),
            400,
            "Wrong input: Vector dimension error: expected dim: 4, got 2",
        ),
    ],
)
async def test_errors(points: Api, query, status, error):
    response = await points.call("POST", QUERY, json={"query": query})
    assert (response.status, response.error) == (status, error)
