"""POST /points/batch: every kind of operation in one request, answered with one UpdateResult
each, logged with consecutive operation ids; a batch with any bad operation writes nothing
(Keel checks the whole batch first; Qdrant would have applied the operations before it)."""

from __future__ import annotations

import pytest

from engine.limits import BATCH_OPERATIONS_MAX
from tests.api.conftest import Api

BATCH = "/collections/{collection_name}/points/batch"
UNTAGGED = (
    "Format error in JSON body: data did not match any variant of untagged enum UpdateOperation"
)


@pytest.fixture
async def named(api: Api) -> Api:
    vectors = {"text": {"size": 2, "distance": "Dot"}, "image": {"size": 2, "distance": "Dot"}}
    await api.create_collection(vectors=vectors)
    return api


async def test_every_kind_of_operation_in_one_batch(named: Api):
    points = [
        {"id": i, "vector": {"text": [i, 0], "image": [0, i]}, "payload": {"i": i}}
        for i in (1, 2, 3)
    ]
    assert (await named.upsert({"points": points})).status == 200
    operations = [
        {"upsert": {"points": [{"id": 4, "vector": {"text": [4, 0]}}]}},
        {"upsert": {"batch": {"ids": [5], "vectors": {"text": [[5, 5]]}}}},
        {"delete": {"points": [4]}},
        {"set_payload": {"payload": {"tag": "a"}, "filter": {"must": [{"has_id": [1, 2]}]}}},
        {"overwrite_payload": {"payload": {"only": 1}, "points": [3]}},
        {"delete_payload": {"keys": ["i"], "points": [1]}},
        {"clear_payload": {"points": [2]}},
        {"update_vectors": {"points": [{"id": 1, "vector": {"text": [9, 9]}}]}},
        {"delete_vectors": {"points": [2], "vector": ["image"]}},
        {"delete": {"filter": {"must": [{"has_id": [5]}]}}},
    ]
    response = await named.call("POST", BATCH, json={"operations": operations})
    assert response.result == [
        {"operation_id": op_id, "status": "completed"} for op_id in range(1, len(operations) + 1)
    ]
    points = {point["id"]: point for point in await named.scroll_all()}
    assert points == {
        1: {"id": 1, "payload": {"tag": "a"}, "vector": {"text": [9, 9], "image": [0, 1]}},
        2: {"id": 2, "payload": {}, "vector": {"text": [2, 0]}},
        3: {"id": 3, "payload": {"only": 1}, "vector": {"text": [3, 0], "image": [0, 3]}},
    }


async def test_update_vectors_sees_a_point_upserted_earlier_in_the_batch(named: Api):
    operations = [
        {"upsert": {"points": [{"id": 1, "vector": {"text": [1, 1]}}]}},
        {"update_vectors": {"points": [{"id": 1, "vector": {"image": [2, 2]}}]}},
    ]
    response = await named.call("POST", BATCH, json={"operations": operations})
    assert response.status == 200
    assert await named.scroll_all() == [
        {"id": 1, "payload": {}, "vector": {"text": [1, 1], "image": [2, 2]}}
    ]


async def test_later_operations_see_earlier_ones(named: Api):
    """A filter in op N selects points as ops before N left them (same request)."""
    operations = [
        {"upsert": {"points": [{"id": 1, "vector": {"text": [1, 1]}, "payload": {"a": 1}}]}},
        {
            "set_payload": {
                "payload": {"b": 2},
                "filter": {"must": [{"key": "a", "match": {"value": 1}}]},
            }
        },
        {"delete": {"filter": {"must": [{"key": "b", "match": {"value": 2}}]}}},
    ]
    response = await named.call("POST", BATCH, json={"operations": operations})
    assert [result["operation_id"] for result in response.result] == [0, 1, 2]
    assert await named.points_count() == 0


async def test_wait_false_acknowledges_every_operation(named: Api):
    operations = [
        {"upsert": {"points": [{"id": 1, "vector": {"text": [1, 1]}}]}},
        {"set_payload": {"payload": {"x": 1}, "points": [1]}},
    ]
    query = {"wait": "false", "ordering": "medium"}
    response = await named.call("POST", BATCH, json={"operations": operations}, query=query)
    assert response.result == [
        {"operation_id": 0, "status": "acknowledged"},
        {"operation_id": 1, "status": "acknowledged"},
    ]
    assert await named.next_op_id() == 2  # a wait=true write after them: all applied
    assert await named.retrieve([1]) == [{"id": 1, "payload": {"x": 1}}]


async def test_a_two_operation_delete_vectors_answers_once(named: Api):
    await named.upsert({"points": [{"id": 1, "vector": {"text": [1, 1], "image": [1, 1]}}]})
    operations = [
        {"delete_vectors": {"points": [1], "filter": {"must": []}, "vector": ["image"]}},
        {"clear_payload": {"points": [1]}},
    ]
    response = await named.call("POST", BATCH, json={"operations": operations})
    assert response.result == [
        {"operation_id": 2, "status": "completed"},
        {"operation_id": 3, "status": "completed"},
    ]


async def test_an_empty_batch_answers_an_empty_list(named: Api):
    response = await named.call("POST", BATCH, json={"operations": []})
    assert response.result == []
    assert await named.next_op_id() == 0


@pytest.mark.parametrize(
    "operations, status, message",
    [
        ([{"upsert": {"points": [{"id": -1, "vector": {"text": [1, 1]}}]}}], 400, UNTAGGED),
        ([{"unknown": {}}], 400, UNTAGGED),
        (["upsert"], 400, UNTAGGED),
        ([{"set_payload": {"payload": {"a": 1}}}], 400, UNTAGGED),
        ([{"delete": {"points": "x"}}], 400, UNTAGGED),
        (
            [
                {"delete": {"points": [1]}},
                {"upsert": {"points": [{"id": 1, "vector": {"text": []}}]}},
            ],
            422,
            (
                "Validation error in JSON body: [operations[1].upsert.points[0].vector.?.vector: "
                "dense vector must not be empty]"
            ),
        ),
        (
            [
                {"update_vectors": {"points": []}},
                {"delete_vectors": {"points": [1], "vector": []}},
                {"set_payload": {"payload": {}, "filter": {"must": [{"key": "a"}]}}},
            ],
            422,
            (
                "Validation error in JSON body: [operations[0].update_vectors.points: must "
                "specify points to update; operations[1].delete_vectors.vector: must specify "
                "vector names to delete; operations[2].set_payload.filter.must[0].__all__: At "
                "least one field condition must be specified]"
            ),
        ),
        (
            [
                {"upsert": {"points": [{"id": 1, "vector": {"text": [1, 1]}}]}},
                {"upsert": {"points": [{"id": 2, "vector": {"text": [1, 1, 1]}}]}},
            ],
            400,
            "Wrong input: Vector dimension error: expected dim: 2, got 3 for vector 'text'",
        ),
        (
            [
                {"upsert": {"points": [{"id": 1, "vector": {"text": [1, 1]}}]}},
                {"delete_vectors": {"points": [1], "vector": ["audio"]}},
            ],
            400,
            "Wrong input: Not existing vector name error: audio",
        ),
        (
            [
                {"upsert": {"points": [{"id": 1, "vector": {"text": [1, 1]}}]}},
                {"clear_payload": {"points": []}},
            ],
            400,
            "Bad request: Empty update request",
        ),
        (
            [{"delete_vectors": {"vector": ["text"]}}],
            400,
            "Bad request: No filter or points provided",
        ),
    ],
)
async def test_a_batch_with_a_bad_operation_writes_nothing(named: Api, operations, status, message):
    response = await named.call("POST", BATCH, json={"operations": operations})
    assert (response.status, response.error) == (status, message)
    assert await named.points_count() == 0
    assert await named.next_op_id() == 0


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "missing field `operations`"),
        ({"operations": {}}, "invalid type: map, expected a sequence"),
        ([], "invalid type: sequence, expected struct UpdateOperations"),
        (
            {"operations": [{"delete": {"points": [1]}}] * (BATCH_OPERATIONS_MAX + 1)},
            (
                f"too many operations in one request: {BATCH_OPERATIONS_MAX + 1}, "
                f"at most {BATCH_OPERATIONS_MAX}"
            ),
        ),
    ],
)
async def test_batch_body_format_errors(named: Api, body, message):
    response = await named.call("POST", BATCH, json=body)
    assert (response.status, response.error) == (400, f"Format error in JSON body: {message}")
    assert await named.next_op_id() == 0


async def test_the_first_variant_that_parses_wins(named: Api):
    """UpdateOperation is untagged: `{"upsert": bad, "delete": good}` is a delete."""
    await named.upsert({"points": [{"id": 1, "vector": {"text": [1, 1]}}]})
    operation = {"upsert": {"points": "x"}, "delete": {"points": [1]}}
    response = await named.call("POST", BATCH, json={"operations": [operation]})
    assert response.result == [{"operation_id": 1, "status": "completed"}]
    assert await named.points_count() == 0


async def test_batch_on_an_unknown_collection_is_404(api: Api):
    body = {"operations": [{"delete": {"points": [1]}}]}
    response = await api.call("POST", BATCH, json=body, name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")
    response = await api.call("POST", BATCH, json={"operations": []}, name="nope")
    assert response.status == 404


async def test_an_op_meeting_a_missing_id_answers_404_and_the_later_ops_still_apply(named: Api):
    """With wait=true the batch answers the first op's 404 (Qdrant's text), once all its ops
    are applied: Keel logged the whole batch first, so the ops after it are applied too
    (Qdrant stops at the failing one; the README says so)."""
    await named.upsert({"points": [{"id": 1, "vector": {"text": [1, 0]}}]})
    operations = [
        {"upsert": {"points": [{"id": 2, "vector": {"text": [2, 0]}}]}},
        {"set_payload": {"payload": {"a": 1}, "points": [2, 98]}},
        {"set_payload": {"payload": {"b": 2}, "points": [1, 99]}},
    ]
    response = await named.call("POST", BATCH, json={"operations": operations})
    assert (response.status, response.error) == (404, "Not found: No point with id 98 found")
    points = await named.scroll_all(with_vector=False)
    assert [(p["id"], p["payload"]) for p in points] == [(1, {"b": 2}), (2, {"a": 1})]
