"""Named-vector CRUD through HTTP: `PUT`/`DELETE /collections/{c}/vectors/{vector_name}`.

Expected answers are Qdrant 1.19's, read in its source (src/actix/api/vector_name_api.rs,
lib/collection/src/collection/vector_name_schema.rs): the same name again with the same space
is a write that changes nothing, another space or kind is 400, deleting an absent name is fine,
a deleted name leaves every point and collection info.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.api.conftest import Api, ApiResponse
from tests.api.openapi_check import check_response

VECTOR_NAME = "/collections/{collection_name}/vectors/{vector_name}"
COLLECTION = "/collections/{collection_name}"
NAMED = {"vectors": {"a": {"size": 2, "distance": "Dot"}}}


async def call_vector_name(
    api: Api, method: str, vector_name: str, body: Any = None, name: str = "c", query: str = ""
) -> ApiResponse:
    """Api.call for the vector-name route (its template has a second parameter)."""
    path = VECTOR_NAME.replace("{collection_name}", name).replace("{vector_name}", vector_name)
    data = None if body is None else orjson.dumps(body)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    response = await api.client.request(method, path + query, data=data, headers=headers)
    parsed = orjson.loads(await response.read())
    check_response(VECTOR_NAME, method.lower(), response.status, parsed)
    return ApiResponse(response.status, parsed, response.headers)


async def info_params(api: Api) -> dict[str, Any]:
    return (await api.call("GET", COLLECTION)).result["config"]["params"]


async def test_an_added_dense_name_is_shown_written_and_searched(api: Api):
    await api.create_collection(**NAMED)
    await api.upsert({"points": [{"id": 1, "vector": {"a": [1, 0]}}]})
    body = {"dense": {"size": 3, "distance": "Cosine", "datatype": "float16"}}
    result = (await call_vector_name(api, "PUT", "b", body)).result
    assert result["status"] == "completed"
    params = await info_params(api)
    assert params["vectors"] == {
        "a": {"size": 2, "distance": "Dot"},
        "b": {"size": 3, "distance": "Cosine", "datatype": "float16"},
    }
    [point] = await api.retrieve([1], with_vector=True)
    assert point["vector"] == {"a": [1.0, 0.0]}  # starts empty: no value of `b`
    update = {"points": [{"id": 1, "vector": {"b": [0, 3, 4]}}]}
    assert (
        await api.call("PUT", "/collections/{collection_name}/points/vectors", json=update)
    ).result
    [point] = await api.retrieve([1], with_vector=True)
    # Normalised (Cosine), then stored as float16 would keep it (the datatype given).
    assert point["vector"] == {"a": [1.0, 0.0], "b": [0.0, 0.60009766, 0.7998047]}
    query = {"query": [0, 0, 1], "using": "b", "limit": 3}
    hits = await api.call("POST", "/collections/{collection_name}/points/query", json=query)
    assert [(p["id"], round(p["score"], 4)) for p in hits.result["points"]] == [(1, 0.7998)]


async def test_adding_to_an_unnamed_collection_shows_the_vectors_as_a_map(api: Api):
    await api.create_collection(vectors={"size": 2, "distance": "Dot"})
    await api.upsert({"points": [{"id": 1, "vector": [1, 2]}]})
    await call_vector_name(api, "PUT", "extra", {"dense": {"size": 2, "distance": "Euclid"}})
    params = await info_params(api)
    assert params["vectors"] == {
        "": {"size": 2, "distance": "Dot"},
        "extra": {"size": 2, "distance": "Euclid"},
    }
    [point] = await api.retrieve([1], with_vector=True)
    assert point["vector"] == {"": [1.0, 2.0]}


async def test_the_same_name_again_is_a_write_and_another_space_is_400(api: Api):
    await api.create_collection(**NAMED, sparse_vectors={"s": {}})
    first = await call_vector_name(api, "PUT", "a", {"dense": {"size": 2, "distance": "Dot"}})
    again = await call_vector_name(api, "PUT", "a", {"dense": {"size": 2, "distance": "Dot"}})
    assert again.result["operation_id"] == first.result["operation_id"] + 1
    cases = [
        ("a", {"dense": {"size": 3, "distance": "Dot"}}, "with a different configuration"),
        ("a", {"dense": {"size": 2, "distance": "Cosine"}}, "with a different configuration"),
        ("a", {"sparse": {}}, "as a dense vector"),
        ("s", {"dense": {"size": 2, "distance": "Dot"}}, "as a sparse vector"),
    ]
    for vector_name, body, reason in cases:
        response = await call_vector_name(api, "PUT", vector_name, body)
        assert (response.status, response.error) == (
            400,
            f"Wrong input: Vector `{vector_name}` already exists {reason}",
        )
    response = await call_vector_name(api, "PUT", "s", {"sparse": {"modifier": "idf"}})
    assert (response.status, response.error) == (
        400,
        "Wrong input: Sparse vector `s` already exists with a different configuration",
    )
    assert await api.next_op_id() == again.result["operation_id"] + 1  # refusals wrote nothing
    assert list((await info_params(api))["vectors"]) == ["a"]


async def test_a_sparse_name_is_added_and_searched(api: Api):
    await api.create_collection(**NAMED)
    await api.upsert({"points": [{"id": 1, "vector": {"a": [1, 0]}}]})
    body = {"sparse": {"modifier": "idf", "datatype": "float16"}}
    await call_vector_name(api, "PUT", "text", body)
    params = await info_params(api)
    assert params["sparse_vectors"] == {
        "text": {"modifier": "idf", "index": {"datatype": "float16"}}
    }
    sparse = {"indices": [3, 7], "values": [1.0, 2.0]}
    await api.upsert({"points": [{"id": 2, "vector": {"a": [0, 1], "text": sparse}}]})
    query = {"query": {"indices": [7], "values": [1.0]}, "using": "text"}
    hits = await api.call("POST", "/collections/{collection_name}/points/query", json=query)
    assert [p["id"] for p in hits.result["points"]] == [2]


async def test_a_deleted_name_leaves_every_point_and_comes_back_empty(api: Api):
    await api.create_collection(
        vectors={"a": {"size": 2, "distance": "Dot"}, "b": {"size": 2, "distance": "Dot"}},
        sparse_vectors={"s": {}},
    )
    sparse = {"indices": [1], "values": [0.5]}
    points = [{"id": i, "vector": {"a": [i, 1], "b": [1, i], "s": sparse}} for i in range(1, 4)]
    await api.upsert({"points": points})
    assert (await call_vector_name(api, "DELETE", "b")).result["status"] == "completed"
    assert (await call_vector_name(api, "DELETE", "s")).result["status"] == "completed"
    for point in await api.scroll_all():
        assert point["vector"] == {"a": [float(point["id"]), 1.0]}
    params = await info_params(api)
    assert list(params["vectors"]) == ["a"]
    assert "sparse_vectors" not in params
    response = await api.upsert({"points": [{"id": 9, "vector": {"b": [1, 1]}}]})
    assert (response.status, response.error) == (
        400,
        "Wrong input: Not existing vector name error: b",
    )
    await call_vector_name(api, "PUT", "b", {"dense": {"size": 2, "distance": "Dot"}})
    assert [p["vector"] for p in await api.retrieve([1], with_vector=True)] == [{"a": [1.0, 1.0]}]
    query = {"query": [1, 1], "using": "b", "limit": 5}
    hits = await api.call("POST", "/collections/{collection_name}/points/query", json=query)
    assert hits.result["points"] == []  # the old values of `b` are gone, not resurrected


async def test_deleting_an_absent_name_or_the_last_one_is_allowed(api: Api):
    await api.create_collection(**NAMED)
    await api.upsert({"points": [{"id": 1, "vector": {"a": [1, 0]}, "payload": {"k": 1}}]})
    assert (await call_vector_name(api, "DELETE", "nothing")).result["status"] == "completed"
    assert (await call_vector_name(api, "DELETE", "a")).result["status"] == "completed"
    assert (await info_params(api))["vectors"] == {}
    [point] = await api.retrieve([1], with_vector=True, with_payload=True)
    assert point == {"id": 1, "payload": {"k": 1}, "vector": {}}


async def test_wait_false_acknowledges_and_the_name_follows(api: Api):
    await api.create_collection(**NAMED)
    body = {"dense": {"size": 2, "distance": "Dot"}}
    response = await call_vector_name(api, "PUT", "b", body, query="?wait=false")
    assert response.result["status"] == "acknowledged"
    # Validated against the new name at once: this upsert is logged after the op.
    await api.upsert({"points": [{"id": 1, "vector": {"b": [1, 2]}}]})
    [point] = await api.retrieve([1], with_vector=True)
    assert point["vector"] == {"b": [1.0, 2.0]}


async def test_bad_bodies_and_names_write_nothing(api: Api):
    await api.create_collection(**NAMED)
    op_id = await api.next_op_id()
    untagged = (
        "Format error in JSON body: data did not match any variant of untagged enum "
        "VectorNameConfig"
    )
    cases = [
        ({}, 400, untagged),
        ({"dense": {"size": 2}}, 400, untagged),
        ({"dense": {"size": 2, "distance": "Dott"}}, 400, untagged),
        ({"sparse": {"modifier": "bm25"}}, 400, untagged),
        (
            {"dense": {"size": 0, "distance": "Dot"}},
            422,
            "Validation error in JSON body: [dense.size: value 0 invalid, must be from 1 to 65536]",
        ),
        (
            {"sparse": {"datatype": "turbo4"}},
            422,
            (
                "Validation error in JSON body: [sparse.datatype: sparse vectors do not support "
                "the `turbo4` datatype]"
            ),
        ),
    ]
    for body, status, error in cases:
        response = await call_vector_name(api, "PUT", "b", body)
        assert (response.status, response.error) == (status, error), body
    response = await call_vector_name(api, "PUT", "b*", {"dense": {"size": 2, "distance": "Dot"}})
    assert (response.status, response.error) == (
        422,
        'Validation error in path parameters: [vector_name: vector name cannot contain "*" char]',
    )
    response = await call_vector_name(api, "DELETE", "a", name="missing")
    assert (response.status, response.error) == (
        404,
        "Not found: Collection `missing` doesn't exist!",
    )
    assert await api.next_op_id() == op_id + 1
    assert list((await info_params(api))["vectors"]) == ["a"]


async def test_an_added_multivector_name_takes_matrices_and_scores_by_maxsim(api: Api):
    await api.create_collection(**NAMED)
    body = {
        "dense": {"size": 2, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}}
    }
    await call_vector_name(api, "PUT", "colbert", body)
    params = await info_params(api)
    assert params["vectors"]["colbert"] == {
        "size": 2,
        "distance": "Dot",
        "multivector_config": {"comparator": "max_sim"},
    }
    points = [
        {"id": 1, "vector": {"colbert": [[1, 0], [0, 1]]}},
        {"id": 2, "vector": {"colbert": [[2, 2]]}},
    ]
    assert (await api.upsert({"points": points})).result["status"] == "completed"
    query = {"query": [[1, 0], [0, 1]], "using": "colbert"}
    hits = await api.call("POST", "/collections/{collection_name}/points/query", json=query)
    # MaxSim: per query row the best dot product, summed: 1 + 1 for point 1, 2 + 2 for 2.
    assert [(p["id"], p["score"]) for p in hits.result["points"]] == [(2, 4.0), (1, 2.0)]
    [point] = await api.retrieve([1], with_vector=True)
    assert point["vector"] == {"colbert": [[1.0, 0.0], [0.0, 1.0]]}
    await call_vector_name(api, "DELETE", "colbert")
    assert [p["vector"] for p in await api.retrieve([1, 2], with_vector=True)] == [{}, {}]


async def test_a_name_made_again_with_another_size_and_distance(api: Api):
    """Qdrant's own tests/openapi/test_named_vector_crud.py scenario: delete an indexed
    vector, make it again with other dimensions, scroll, write, search."""
    vectors = {"vec_a": {"size": 4, "distance": "Cosine"}, "vec_b": {"size": 3, "distance": "Dot"}}
    await api.create_collection(vectors=vectors)
    points = [{"id": i, "vector": {"vec_a": [1, i, 0, 1], "vec_b": [i, 1, 1]}} for i in range(30)]
    await api.upsert({"points": points})
    await call_vector_name(api, "DELETE", "vec_a")
    await call_vector_name(api, "PUT", "vec_a", {"dense": {"size": 6, "distance": "Dot"}})
    for point in await api.scroll_all():
        assert point["vector"] == {"vec_b": [float(point["id"]), 1.0, 1.0]}
    update = {"points": [{"id": i, "vector": {"vec_a": [i, 0, 0, 0, 0, 1]}} for i in range(5)]}
    assert (
        await api.call("PUT", "/collections/{collection_name}/points/vectors", json=update)
    ).result
    query = {"query": [1, 0, 0, 0, 0, 0], "using": "vec_a", "limit": 10}
    hits = await api.call("POST", "/collections/{collection_name}/points/query", json=query)
    assert [(p["id"], p["score"]) for p in hits.result["points"]] == [
        (4, 4.0),
        (3, 3.0),
        (2, 2.0),
        (1, 1.0),
        (0, 0.0),
    ]
    info = (await api.call("GET", COLLECTION)).result
    assert info["config"]["params"]["vectors"]["vec_a"] == {"size": 6, "distance": "Dot"}
