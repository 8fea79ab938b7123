"""Sparse vectors through HTTP: collection config, upsert (points and batch forms), retrieve,
query (nearest, prefetch + rrf), vector update and delete, and the errors with Qdrant's texts.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.api.conftest import Api

QUERY = "/collections/{collection_name}/points/query"
UPDATE = "/collections/{collection_name}/points/vectors"
DELETE = "/collections/{collection_name}/points/vectors/delete"
BATCH = "/collections/{collection_name}/points/batch"
INFO = "/collections/{collection_name}"


@pytest.fixture
async def hybrid(api: Api) -> Api:
    await api.create_collection(
        vectors={"dense": {"size": 2, "distance": "Dot"}},
        sparse_vectors={"text": {}, "bm": {"modifier": "idf"}},
    )
    points = [
        {"id": 1, "vector": {"dense": [1, 0], "text": {"indices": [3, 1], "values": [0.5, 2]}}},
        {"id": 2, "vector": {"dense": [0, 1], "text": {"indices": [1, 7], "values": [1, 1]}}},
        {"id": 3, "vector": {"text": {"indices": [9], "values": [4]}}},
        {"id": 4, "vector": {}},
    ]
    assert (await hybrid_upsert(api, points)).status == 200
    return api


async def hybrid_upsert(api: Api, points: list) -> object:
    return await api.upsert({"points": points})


async def test_info_echoes_sparse_vectors(hybrid: Api):
    params = (await hybrid.call("GET", INFO)).result["config"]["params"]
    assert params["sparse_vectors"] == {"text": {}, "bm": {"modifier": "idf"}}
    assert await hybrid.points_count() == 4


async def test_sparse_index_params_are_parsed_not_echoed_raw(api: Api):
    """Fuzz bug: `sparse_vectors.*.index` was stored as sent, so `"on_disk": {}` was accepted
    and collection info broke Qdrant's spec; now its fields are typed, unknown ones dropped."""
    body = {"sparse_vectors": {"s": {"index": {"on_disk": {"value": False}}}}}
    response = await api.call("PUT", INFO, json=body)
    assert response.status == 400
    assert response.error == "Format error in JSON body: invalid type: map, expected a boolean"
    assert (await api.call("GET", INFO)).status == 404
    index = {"on_disk": True, "full_scan_threshold": 10, "extra": 1, "datatype": None}
    await api.create_collection(sparse_vectors={"s": {"index": index}})
    params = (await api.call("GET", INFO)).result["config"]["params"]
    assert params["sparse_vectors"] == {
        "s": {"index": {"on_disk": True, "full_scan_threshold": 10}}
    }


async def test_retrieve_returns_sparse_sorted(hybrid: Api):
    points = await hybrid.retrieve([1, 3, 4], with_vector=True)
    vectors = {point["id"]: point["vector"] for point in points}
    assert vectors[1] == {"dense": [1.0, 0.0], "text": {"indices": [1, 3], "values": [2.0, 0.5]}}
    assert vectors[3] == {"text": {"indices": [9], "values": [4.0]}}
    assert vectors[4] == {}


async def test_sparse_query_scores_dot_product_of_overlapping_points(hybrid: Api):
    body = {"query": {"indices": [1, 9], "values": [1, 0.5]}, "using": "text"}
    points = (await hybrid.call("POST", QUERY, json=body)).result["points"]
    assert [(p["id"], p["score"]) for p in points] == [(1, 2.0), (3, 2.0), (2, 1.0)]


async def test_hybrid_prefetch_with_rrf(hybrid: Api):
    body = {
        "prefetch": [
            {"query": [1, 0.1], "using": "dense"},
            {"query": {"indices": [7], "values": [1]}, "using": "text"},
        ],
        "query": {"fusion": "rrf"},
    }
    points = (await hybrid.call("POST", QUERY, json=body)).result["points"]
    assert [p["id"] for p in points] == [2, 1]


async def test_filter_and_threshold(hybrid: Api):
    body = {
        "query": {"indices": [1, 9], "values": [1, 0.5]},
        "using": "text",
        "filter": {"must_not": [{"has_id": [1]}]},
        "score_threshold": 1.5,
    }
    points = (await hybrid.call("POST", QUERY, json=body)).result["points"]
    assert [p["id"] for p in points] == [3]


async def test_update_and_delete_sparse_vector(hybrid: Api):
    body = {"points": [{"id": 3, "vector": {"text": {"indices": [1], "values": [5]}}}]}
    assert (await hybrid.call("PUT", UPDATE, json=body)).status == 200
    query = {"query": {"indices": [9], "values": [1]}, "using": "text"}
    assert (await hybrid.call("POST", QUERY, json=query)).result["points"] == []
    query = {"query": {"indices": [1], "values": [1]}, "using": "text"}
    points = (await hybrid.call("POST", QUERY, json=query)).result["points"]
    assert [p["id"] for p in points] == [3, 1, 2]
    body = {"points": [3], "vector": ["text"]}
    assert (await hybrid.call("POST", DELETE, json=body)).status == 200
    points = (await hybrid.call("POST", QUERY, json=query)).result["points"]
    assert [p["id"] for p in points] == [1, 2]
    assert (await hybrid.retrieve([3], with_vector=True))[0]["vector"] == {}


async def test_errors(hybrid: Api):
    bad = {"points": [{"id": 5, "vector": {"text": {"indices": [1, 2], "values": [1]}}}]}
    response = await hybrid.upsert(bad)
    assert response.status == 422
    assert "must be the same length as indices" in response.error
    dup = {"points": [{"id": 5, "vector": {"text": {"indices": [1, 1], "values": [1, 2]}}}]}
    response = await hybrid.upsert(dup)
    assert response.status == 422
    assert "must be unique" in response.error
    unknown = {"points": [{"id": 5, "vector": {"nope": {"indices": [1], "values": [1]}}}]}
    response = await hybrid.upsert(unknown)
    assert (response.status, response.error) == (
        400,
        "Wrong input: Not existing vector name error: nope",
    )
    wrong = {"points": [{"id": 5, "vector": {"dense": {"indices": [1], "values": [1]}}}]}
    response = await hybrid.upsert(wrong)
    assert response.status == 400
    assert "Conversion between sparse and regular vectors failed" in response.error
    body = {"query": [1, 0], "using": "text"}
    assert (await hybrid.call("POST", QUERY, json=body)).status == 400
    assert await hybrid.points_count() == 4


async def test_invalid_sparse_vectors_answer_qdrants_validation_texts(hybrid: Api):
    """SparseVector::validate's code-only errors, at the paths Qdrant's validator gives them
    in every body form: a named batch included, in PUT /points and in a points batch."""
    dup = {"indices": [1, 1], "values": [1, 2]}
    body = {"batch": {"ids": [7], "vectors": {"text": [dup]}}}
    response = await hybrid.upsert(body)
    assert response.status == 422
    assert response.error == (
        "Validation error in JSON body: [batch.?.indices: Validation error: must be unique [{}]]"
    )
    short = {"indices": [1], "values": [1, 2]}
    vectors = {"dense": [[1, 0], []], "text": [short, {"indices": [2], "values": [1]}]}
    upsert = {"batch": {"ids": [7, 8], "vectors": vectors}}
    update = {"points": [{"id": 1, "vector": {"text": dup}}]}
    operations = [{"upsert": upsert}, {"update_vectors": update}]
    response = await hybrid.call("POST", BATCH, json={"operations": operations})
    assert response.status == 422
    assert response.error == (
        "Validation error in JSON body: ["
        "operations[0].upsert.batch.?[0].vector: dense vector must not be empty; "
        "operations[0].upsert.batch.?[1].values: Validation error: must be the same length as "
        "indices [{}]; "
        "operations[1].update_vectors.points[0].?.indices: Validation error: must be unique [{}]]"
    )
    response = await hybrid.upsert({"points": [{"id": 7, "vector": {"text": dup}}]})
    assert response.error == (
        "Validation error in JSON body: [points[0].vector.?.indices: Validation error: must be "
        "unique [{}]]"
    )
    assert await hybrid.points_count() == 4


async def test_batch_form_and_idf(hybrid: Api):
    batch = {
        "ids": [10, 11],
        "vectors": {"bm": [{"indices": [1], "values": [1]}, {"indices": [1, 2], "values": [1, 1]}]},
    }
    assert (await hybrid.upsert({"batch": batch})).status == 200
    body = {"query": {"indices": [2], "values": [1]}, "using": "bm"}
    points = (await hybrid.call("POST", QUERY, json=body)).result["points"]
    # n = 2 points with `bm`, df(2) = 1: ln((2 - 1 + 0.5) / (1 + 0.5) + 1) = ln 2
    assert [p["id"] for p in points] == [11]
    assert points[0]["score"] == pytest.approx(0.6931472, abs=1e-6)


async def test_search_with_a_named_sparse_vector(hybrid: Api):
    vector = {"name": "text", "vector": {"indices": [1, 9], "values": [1, 0.5]}}
    body = {"vector": vector, "limit": 2, "with_payload": False}
    search = "/collections/{collection_name}/points/search"
    points = (await hybrid.call("POST", search, json=body)).result
    assert [(p["id"], p["score"]) for p in points] == [(1, 2.0), (3, 2.0)]
    batch = {"searches": [body, {"vector": vector, "limit": 5, "offset": 2}]}
    answers = (await hybrid.call("POST", search + "/batch", json=batch)).result
    assert [[p["id"] for p in answer] for answer in answers] == [[1, 3], [2]]


async def test_vector_selector_and_has_vector_filter_know_sparse_names(hybrid: Api):
    points = await hybrid.retrieve([1, 2], with_vector=["text"])
    assert points[0]["vector"] == {"text": {"indices": [1, 3], "values": [2.0, 0.5]}}
    body = {"filter": {"must": [{"has_vector": "text"}]}, "limit": 10}
    scroll = "/collections/{collection_name}/points/scroll"
    points = (await hybrid.call("POST", scroll, json=body)).result["points"]
    assert [p["id"] for p in points] == [1, 2, 3]


# --- params.idf: the IDF corpus (Qdrant 1.19) -------------------------------------------------

CORPUS_POINTS = [("a", [0, 1]), ("a", [0]), ("b", [0, 1, 2]), ("b", [1])]  # Qdrant's own layout
CORPUS_QUERY = {"indices": [0, 1, 2], "values": [1.0, 1.0, 1.0]}


@pytest.fixture
async def corpus(api: Api) -> Api:
    sparse = {"text": {"modifier": "idf"}}
    await api.create_collection(
        "c", vectors={"dense": {"size": 2, "distance": "Dot"}}, sparse_vectors=sparse
    )
    points = [
        {
            "id": index,
            "vector": {"dense": [1.0, 0.0], "text": {"indices": dims, "values": [1.0] * len(dims)}},
            "payload": {"tenant": tenant, "idx": index},
        }
        for index, (tenant, dims) in enumerate(CORPUS_POINTS)
    ]
    assert (await api.upsert({"points": points})).status == 200
    return api


async def corpus_scores(api: Api, params: Any = None, filter_: Any = None) -> dict[int, float]:
    body: dict[str, Any] = {"query": CORPUS_QUERY, "using": "text", "limit": 10}
    if params is not None:
        body["params"] = params
    if filter_ is not None:
        body["filter"] = filter_
    response = await api.call("POST", QUERY, json=body)
    assert response.status == 200, response.body
    return {point["id"]: point["score"] for point in response.result["points"]}


def tenant(value: str) -> dict[str, Any]:
    return {"must": [{"key": "tenant", "match": {"value": value}}]}


def idf_of(n: int, df: int) -> float:
    return math.log((n - df + 0.5) / (df + 0.5) + 1.0)


async def test_idf_corpus_weighs_by_the_matching_points_only(corpus: Api):
    assert await corpus_scores(corpus, {"idf": "global"}) == await corpus_scores(corpus)
    scores = await corpus_scores(corpus, {"idf": {"corpus": tenant("a")}})
    idf = [idf_of(2, 2), idf_of(2, 1), idf_of(2, 0)]  # tenant a: n = 2, df = 2, 1, 0
    assert scores == pytest.approx({0: idf[0] + idf[1], 1: idf[0], 2: sum(idf), 3: idf[1]})
    # The retrieval filter narrows the answer, never the statistics.
    narrow = await corpus_scores(corpus, {"idf": {"corpus": tenant("a")}}, tenant("b"))
    assert narrow == {2: scores[2], 3: scores[3]}
    empty = await corpus_scores(corpus, {"idf": {"corpus": tenant("none")}})
    assert empty == pytest.approx(
        {0: 2 * idf_of(0, 0), 1: idf_of(0, 0), 2: 3 * idf_of(0, 0), 3: idf_of(0, 0)}
    )


async def test_idf_params_need_a_sparse_vector_with_the_idf_modifier(corpus: Api):
    body = {"query": [1.0, 0.0], "using": "dense", "params": {"idf": {"corpus": tenant("a")}}}
    response = await corpus.call("POST", QUERY, json=body)
    assert response.status == 400
    assert response.error == (
        "Wrong input: search param `idf` requires a sparse vector with the `idf` modifier, "
        'which vector "dense" is not'
    )
    body["params"] = {"idf": "local"}
    response = await corpus.call("POST", QUERY, json=body)
    assert response.status == 400
    assert "untagged enum IdfParams" in response.error
