"""Vector writes through HTTP: PUT /points/vectors and POST /points/vectors/delete.

Covers named and unnamed vectors, `update_filter`, delete by ids, by filter and by both (two
operations, as Qdrant), every error with Qdrant's status and text (the vector checks are
upsert's, so dimension and name errors read the same), and that a rejected request writes
nothing.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

UPDATE = "/collections/{collection_name}/points/vectors"
DELETE = "/collections/{collection_name}/points/vectors/delete"
TEXT = [1.0, 0.0, 0.0, 0.0]
IMAGE = [0.0, 2.0, 0.0, 0.0]


@pytest.fixture
async def named(api: Api) -> Api:
    vectors = {"text": {"size": 4, "distance": "Dot"}, "image": {"size": 4, "distance": "Dot"}}
    await api.create_collection(vectors=vectors)
    points = [
        {"id": i, "vector": {"text": TEXT, "image": IMAGE}, "payload": {"group": i % 2}}
        for i in (1, 2, 3)
    ]
    assert (await api.upsert({"points": points})).status == 200
    return api


async def vectors_by_id(api: Api) -> dict[int, dict]:
    return {point["id"]: point["vector"] for point in await api.scroll_all()}


async def test_update_replaces_the_given_vector_and_keeps_the_other(named: Api):
    body = {"points": [{"id": 1, "vector": {"image": [0, 0, 3, 0]}}]}
    response = await named.call("PUT", UPDATE, json=body)
    assert response.result == {"operation_id": 1, "status": "completed"}
    result = await vectors_by_id(named)
    assert result[1] == {"text": TEXT, "image": [0.0, 0.0, 3.0, 0.0]}
    assert result[2] == {"text": TEXT, "image": IMAGE}
    [record] = await named.retrieve([1])
    assert record["payload"] == {"group": 1}  # payload untouched


async def test_update_can_add_a_vector_a_point_lacked(api: Api):
    vectors = {"text": {"size": 2, "distance": "Dot"}, "image": {"size": 2, "distance": "Dot"}}
    await api.create_collection(vectors=vectors)
    await api.upsert({"points": [{"id": 1, "vector": {"text": [1, 2]}}]})
    body = {"points": [{"id": 1, "vectors": {"image": [3, 4]}}]}  # the `vectors` alias
    assert (await api.call("PUT", UPDATE, json=body)).status == 200
    assert await vectors_by_id(api) == {1: {"text": [1.0, 2.0], "image": [3.0, 4.0]}}


async def test_update_of_the_unnamed_vector(api: Api):
    await api.create_collection(vectors={"size": 2, "distance": "Cosine"})
    await api.upsert({"points": [{"id": 1, "vector": [1, 0]}]})
    body = {"points": [{"id": 1, "vector": [3, 4]}]}
    response = await api.call("PUT", UPDATE, json=body, query={"wait": "true", "timeout": "5"})
    assert response.result == {"operation_id": 1, "status": "completed"}
    assert await vectors_by_id(api) == {1: [0.6, 0.8]}  # Cosine: stored normalised


async def test_update_filter_changes_only_matching_points(named: Api):
    body = {
        "points": [{"id": i, "vector": {"text": [0, 0, 0, 5]}} for i in (1, 2, 3)],
        "update_filter": {"must": [{"key": "group", "match": {"value": 1}}]},
    }
    response = await named.call("PUT", UPDATE, json=body)
    assert response.result == {"operation_id": 1, "status": "completed"}
    result = await vectors_by_id(named)
    assert [i for i in (1, 2, 3) if result[i]["text"] == [0, 0, 0, 5]] == [1, 3]


async def test_update_wait_false_and_ordering(named: Api):
    body = {"points": [{"id": 2, "vector": {"text": [0, 1, 0, 0]}}]}
    query = {"wait": "false", "ordering": "strong"}
    response = await named.call("PUT", UPDATE, json=body, query=query)
    assert response.result == {"operation_id": 1, "status": "acknowledged"}
    assert await named.next_op_id() == 2


async def test_delete_vectors_by_ids_and_by_filter(named: Api):
    response = await named.call("POST", DELETE, json={"points": [1], "vector": ["image"]})
    assert response.result == {"operation_id": 1, "status": "completed"}
    body = {"filter": {"must": [{"key": "group", "match": {"value": 0}}]}, "vectors": ["text"]}
    response = await named.call("POST", DELETE, json=body)
    assert response.result == {"operation_id": 2, "status": "completed"}
    result = await vectors_by_id(named)
    assert result == {1: {"text": TEXT}, 2: {"image": IMAGE}, 3: {"text": TEXT, "image": IMAGE}}


async def test_delete_vectors_with_ids_and_filter_is_two_operations(named: Api):
    """Qdrant's do_delete_vectors runs the filter op, then the ids op, and answers the
    second: two operation ids are used."""
    body = {
        "points": [3],
        "filter": {"must": [{"has_id": [2]}]},
        "vector": ["image", "image"],
    }
    response = await named.call("POST", DELETE, json=body)
    assert response.result == {"operation_id": 2, "status": "completed"}
    result = await vectors_by_id(named)
    assert result == {1: {"text": TEXT, "image": IMAGE}, 2: {"text": TEXT}, 3: {"text": TEXT}}
    assert await named.next_op_id() == 3


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {"text": [1, 2, 3]}}]},
            400,
            "Wrong input: Vector dimension error: expected dim: 4, got 3 for vector 'text'",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {"audio": TEXT}}]},
            400,
            "Wrong input: Not existing vector name error: audio",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": TEXT}]},
            400,
            "Wrong input: Not existing vector name error: ",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {"text": [1, 2, 3, 1e39]}}]},
            400,
            "Wrong input: vector of point 1 has a value that is not a finite float32",
        ),
        (
            "PUT",
            UPDATE,
            {"points": []},
            422,
            "Validation error in JSON body: [points: must specify points to update]",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {}}, {"id": 2, "vector": {"text": []}}]},
            422,
            (
                "Validation error in JSON body: [points[0].vector: must specify vectors to "
                "update for point; points[1].vector: must specify vectors to update for point]"
            ),
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {"text": [], "image": IMAGE}}]},
            422,
            "Validation error in JSON body: [points[0].?.vector: dense vector must not be empty]",
        ),
        ("PUT", UPDATE, {}, 400, "Format error in JSON body: missing field `points`"),
        (
            "PUT",
            UPDATE,
            {"points": [{"vector": {"text": TEXT}}]},
            400,
            "Format error in JSON body: missing field `id`",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1}]},
            400,
            "Format error in JSON body: missing field `vector`",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {"text": [1, "2", 3, 4]}}]},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "VectorStruct"
            ),
        ),
        (
            "PUT",
            UPDATE,
            {"points": [{"id": 1, "vector": {"text": {"indices": [1], "values": [1.0]}}}]},
            400,
            "Wrong input: Conversion between sparse and regular vectors failed",
        ),
        (
            "PUT",
            UPDATE,
            {"points": [1]},
            400,
            "Format error in JSON body: invalid type: integer `1`, expected struct PointVectors",
        ),
        (
            "POST",
            DELETE,
            {"vector": ["text"]},
            400,
            "Bad request: No filter or points provided",
        ),
        (
            "POST",
            DELETE,
            {"points": [1], "vector": []},
            422,
            "Validation error in JSON body: [vector: must specify vector names to delete]",
        ),
        (
            "POST",
            DELETE,
            {"points": [1], "vector": ["audio"]},
            400,
            "Wrong input: Not existing vector name error: audio",
        ),
        ("POST", DELETE, {"points": [1]}, 400, "Format error in JSON body: missing field `vector`"),
        (
            "POST",
            DELETE,
            {"points": [1], "vector": "text"},
            400,
            'Format error in JSON body: invalid type: string "text", expected a sequence',
        ),
        (
            "POST",
            DELETE,
            {"points": [], "vector": ["text"]},
            400,
            "Bad request: Empty update request",
        ),
        (
            "POST",
            DELETE,
            {"points": [1], "vector": ["text"], "vectors": ["image"]},
            400,
            "Format error in JSON body: duplicate field `vector`",
        ),
    ],
)
async def test_invalid_vector_writes_are_rejected_and_write_nothing(
    named: Api, method, path, body, status, message
):
    before = await vectors_by_id(named)
    response = await named.call(method, path, json=body)
    assert (response.status, response.error) == (status, message)
    assert await vectors_by_id(named) == before
    assert await named.next_op_id() == 1


async def test_unnamed_dimension_error_has_no_vector_name(api: Api):
    await api.create_collection()
    await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]})
    response = await api.call("PUT", UPDATE, json={"points": [{"id": 1, "vector": [1, 2]}]})
    assert (response.status, response.error) == (
        400,
        "Wrong input: Vector dimension error: expected dim: 4, got 2",
    )


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PUT", UPDATE, {"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}),
        ("POST", DELETE, {"points": [1], "vector": ["text"]}),
    ],
)
async def test_unknown_collection_is_404(api: Api, method, path, body):
    response = await api.call(method, path, json=body, name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")


async def test_vector_edits_naming_a_missing_point_are_404_after_the_others(named: Api):
    """Qdrant (wait=true): the existing points get the edit, then 404 for the first missing
    id; nothing is created. With wait=false: `acknowledged`."""
    op_id = await named.next_op_id()
    body = {"points": [{"id": 9, "vector": {"text": IMAGE}}, {"id": 1, "vector": {"text": IMAGE}}]}
    response = await named.call("PUT", UPDATE, json=body)
    assert (response.status, response.error) == (404, "Not found: No point with id 9 found")
    response = await named.call("POST", DELETE, json={"points": [2, 8], "vector": ["image"]})
    assert (response.status, response.error) == (404, "Not found: No point with id 8 found")
    vectors = await vectors_by_id(named)
    assert vectors == {
        1: {"text": IMAGE, "image": IMAGE},
        2: {"text": TEXT},
        3: {"text": TEXT, "image": IMAGE},
    }
    query = {"wait": "false"}
    body = {"points": [{"id": 7, "vector": {"text": TEXT}}]}
    response = await named.call("PUT", UPDATE, json=body, query=query)
    assert response.result == {"operation_id": op_id + 3, "status": "acknowledged"}
    assert sorted(await vectors_by_id(named)) == [1, 2, 3]
