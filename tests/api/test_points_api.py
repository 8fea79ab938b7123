"""PUT/POST/GET points through the HTTP layer against a real engine in tmp_path.

Covers the seed's curl examples verbatim, every error of the write path (status, exact text,
spec-valid body, and that nothing was written: the count is unchanged and the next write
gets the next operation_id), wait/ordering/timeout, retrieve, get and delete.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

import engine.applier
from tests.api.conftest import Api

POINTS = "/collections/{collection_name}/points"
POINT = "/collections/{collection_name}/points/{id}"
DELETE = "/collections/{collection_name}/points/delete"
UUID_TEXT = "550e8400-e29b-41d4-a716-446655440000"

from tests.api.seed_bodies import (
    SEED_BATCH,
    SEED_MULTIPLE,
    SEED_NAMED,
    SEED_SINGLE,
    SEED_UPDATE_MODE,
    SEED_WAIT,
)


@pytest.fixture
async def my_collection(api: Api) -> Api:
    await api.create_collection("my_collection", vectors={"size": 4, "distance": "Dot"})
    return api


@pytest.fixture
async def multi_vector_collection(api: Api) -> Api:
    vectors = {"text": {"size": 4, "distance": "Cosine"}, "image": {"size": 4, "distance": "Dot"}}
    await api.create_collection("multi_vector_collection", vectors=vectors)
    return api


async def test_seed_insert_a_single_point(my_collection: Api):
    response = await my_collection.call("PUT", POINTS, data=SEED_SINGLE, name="my_collection")
    assert response.result == {"operation_id": 0, "status": "completed"}
    records = await my_collection.retrieve([1], name="my_collection", with_vector=True)
    assert records == [
        {
            "id": 1,
            "payload": {
                "city": "Berlin",
                "country": "Germany",
                "population": 3645000,
                "year": 2023,
            },
            "vector": [0.05, 0.61, 0.76, 0.74],
        }
    ]


async def test_seed_insert_multiple_points(my_collection: Api):
    response = await my_collection.call("PUT", POINTS, data=SEED_MULTIPLE, name="my_collection")
    assert response.result == {"operation_id": 0, "status": "completed"}
    records = await my_collection.retrieve([3, 1, 2], name="my_collection")
    assert [record["payload"]["city"] for record in records] == ["Paris", "Berlin", "London"]
    assert await my_collection.points_count("my_collection") == 3


async def test_seed_insert_named_vectors(multi_vector_collection: Api):
    api = multi_vector_collection
    response = await api.call("PUT", POINTS, data=SEED_NAMED, name="multi_vector_collection")
    assert response.result == {"operation_id": 0, "status": "completed"}
    [record] = await api.retrieve([1], name="multi_vector_collection", with_vector=True)
    assert record["payload"] == {"title": "Product A", "description": "High quality item"}
    assert record["vector"]["image"] == [0.5, 0.6, 0.7, 0.8]
    # Cosine vectors are stored normalized, as Qdrant stores them.
    assert record["vector"]["text"] == pytest.approx([0.1826, 0.3651, 0.5477, 0.7303], abs=1e-4)


async def test_seed_insert_batch_format(my_collection: Api):
    response = await my_collection.call("PUT", POINTS, data=SEED_BATCH, name="my_collection")
    assert response.result == {"operation_id": 0, "status": "completed"}
    records = await my_collection.retrieve([1, 2, 3], name="my_collection", with_vector=True)
    assert [r["payload"] for r in records] == [
        {"city": "Berlin"},
        {"city": "London"},
        {"city": "Paris"},
    ]
    assert records[2]["vector"] == [0.36, 0.55, 0.47, 0.94]


async def test_seed_wait_parameter_and_elided_examples(my_collection: Api):
    for body in (SEED_WAIT, SEED_UPDATE_MODE):
        response = await my_collection.call(
            "PUT", POINTS, data=body, name="my_collection", query={"wait": "true"}
        )
        assert response.status == 400
        assert response.error.startswith("Format error in JSON body: ")
    response = await my_collection.call(
        "PUT", POINTS, data=SEED_SINGLE, name="my_collection", query={"wait": "true"}
    )
    assert response.result == {"operation_id": 0, "status": "completed"}


async def test_seed_update_modes(my_collection: Api):
    await my_collection.upsert(
        {"points": [{"id": 1, "vector": [1, 1, 1, 1], "payload": {"v": 1}}]}, name="my_collection"
    )
    insert_only = {
        "points": [
            {"id": 1, "vector": [2, 2, 2, 2], "payload": {"v": 2}},
            {"id": 2, "vector": [2, 2, 2, 2], "payload": {"v": 2}},
        ],
        "update_mode": "insert_only",
    }
    response = await my_collection.upsert(insert_only, name="my_collection")
    assert response.result == {"operation_id": 1, "status": "completed"}
    update_only = {
        "points": [
            {"id": 2, "vector": [3, 3, 3, 3], "payload": {"v": 3}},
            {"id": 3, "vector": [3, 3, 3, 3], "payload": {"v": 3}},
        ],
        "update_mode": "update_only",
    }
    response = await my_collection.upsert(update_only, name="my_collection")
    assert response.result == {"operation_id": 2, "status": "completed"}
    records = await my_collection.retrieve([1, 2, 3], name="my_collection")
    assert [(r["id"], r["payload"]["v"]) for r in records] == [(1, 1), (2, 3)]


async def test_operation_ids_count_up_per_collection_from_zero(api: Api):
    await api.create_collection("a")
    await api.create_collection("b")
    results = []
    for name in ("a", "a", "b", "a"):
        response = await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}, name=name)
        results.append((name, response.result["operation_id"]))
    response = await api.call("POST", DELETE, json={"points": [1]}, name="a")
    assert results == [("a", 0), ("a", 1), ("b", 0), ("a", 2)]
    assert response.result == {"operation_id": 3, "status": "completed"}


async def test_wait_false_is_acknowledged_and_becomes_visible(api: Api):
    await api.create_collection()
    response = await api.upsert(
        {"points": [{"id": 5, "vector": [1, 2, 3, 4]}]}, query={"wait": "false"}
    )
    assert response.result == {"operation_id": 0, "status": "acknowledged"}
    for _ in range(500):
        if await api.retrieve([5]):
            break
        await asyncio.sleep(0.01)
    assert await api.retrieve([5]) == [{"id": 5, "payload": {}}]


@pytest.mark.parametrize("ordering", ["weak", "medium", "strong"])
async def test_every_write_ordering_is_accepted(api: Api, ordering: str):
    await api.create_collection()
    response = await api.upsert(
        {"points": [{"id": 1, "vector": [1, 2, 3, 4]}]},
        query={"ordering": ordering, "timeout": "5"},
    )
    assert response.result == {"operation_id": 0, "status": "completed"}


async def test_wait_timeout_answers_200_and_the_write_still_completes(api: Api, monkeypatch):
    """Hold the applier inside apply_batch; wait=true&timeout=1 must answer wait_timeout,
    and once the applier is released the point is there (a timeout never cancels)."""
    await api.create_collection()
    release = threading.Event()
    original = engine.applier.apply_batch

    def slow_apply_batch(*args, **kwargs):
        release.wait(timeout=30)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.applier, "apply_batch", slow_apply_batch)
    response = await api.upsert(
        {"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}, query={"wait": "true", "timeout": "1"}
    )
    release.set()
    assert response.result == {"operation_id": 0, "status": "wait_timeout"}
    response = await api.upsert({"points": [{"id": 2, "vector": [1, 2, 3, 4]}]})
    assert response.result == {"operation_id": 1, "status": "completed"}
    assert [record["id"] for record in await api.retrieve([1, 2])] == [1, 2]


# ---- errors: nothing is written ------------------------------------------------------------


async def assert_nothing_written(api: Api, expected_count: int, next_op_id: int) -> None:
    assert await api.points_count() == expected_count
    response = await api.upsert({"points": [{"id": 999, "vector": [0, 0, 0, 1]}]})
    assert response.result == {"operation_id": next_op_id, "status": "completed"}


ID_ERROR = (
    "Format error in JSON body: value {} is not a valid point ID, valid values are "
    "either an unsigned integer or a UUID"
)


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"point": []}, 400, "Format error in JSON body: Invalid PointInsertOperations format"),
        ([1, 2], 400, "Format error in JSON body: Invalid PointInsertOperations format"),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4]}], "batch": {"ids": [], "vectors": []}},
            400,
            (
                "Format error in JSON body: Invalid PointInsertOperations format: send either "
                "`points` or `batch`, not both"
            ),
        ),
        (
            {"batch": {"ids": [1, 2, 3], "vectors": [[1, 2, 3, 4], [1, 2, 3, 4]]}},
            422,
            (
                "Validation error in JSON body: [batch.batch: number of ids and vectors must be "
                "equal (3 != 2)]"
            ),
        ),
        (
            {"batch": {"ids": [1, 2, 3], "vectors": [[1, 2, 3, 4]] * 3, "payloads": [{}, {}]}},
            422,
            (
                "Validation error in JSON body: [batch.batch: number of ids and payloads must be "
                "equal (3 != 2)]"
            ),
        ),
        (
            {"points": [{"id": 1, "vector": []}]},
            422,
            (
                "Validation error in JSON body: [points[0].vector.vector: dense vector must not be "
                "empty]"
            ),
        ),
        ({"points": [{"id": -1, "vector": [1, 2, 3, 4]}]}, 400, ID_ERROR.format("-1")),
        ({"points": [{"id": 1.5, "vector": [1, 2, 3, 4]}]}, 400, ID_ERROR.format("1.5")),
        ({"points": [{"id": "123", "vector": [1, 2, 3, 4]}]}, 400, ID_ERROR.format("123")),
        ({"points": [{"id": True, "vector": [1, 2, 3, 4]}]}, 400, ID_ERROR.format("true")),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": "x"}]},
            400,
            'Format error in JSON body: invalid type: string "x", expected a map',
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, True, 4]}]},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "VectorStruct"
            ),
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3]}]},
            400,
            "Wrong input: Vector dimension error: expected dim: 4, got 3",
        ),
        (
            {"points": [{"id": 1, "vector": {"image": [1, 2, 3, 4]}}]},
            400,
            "Wrong input: Not existing vector name error: image",
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4]}, {"id": 2, "vector": [1, 2, 3, 1e39]}]},
            400,
            "Wrong input: vector of point 2 has a value that is not a finite float32",
        ),
        (
            {"points": [], "update_filter": {"bogus": []}},
            400,
            (
                "Format error in JSON body: unknown field `bogus`, expected one of `should`, "
                "`min_should`, `must`, `must_not`"
            ),
        ),
    ],
)
async def test_invalid_upserts_are_rejected_and_write_nothing(api: Api, body, status, message):
    await api.create_collection()
    await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]})
    response = await api.upsert(body)
    assert (response.status, response.error) == (status, message)
    await assert_nothing_written(api, expected_count=1, next_op_id=1)


async def test_named_vector_dimension_errors_name_the_vector(multi_vector_collection: Api):
    body = {"points": [{"id": 1, "vector": {"text": [1, 2, 3]}}]}
    response = await multi_vector_collection.upsert(body, name="multi_vector_collection")
    assert response.status == 400
    assert response.error == (
        "Wrong input: Vector dimension error: expected dim: 4, got 3 for vector 'text'"
    )
    assert await multi_vector_collection.points_count("multi_vector_collection") == 0


@pytest.mark.parametrize(
    "query, message",
    [
        ("wait=yes", "provided string was not `true` or `false`"),
        ("ordering=fast", "unknown variant `fast`, expected one of `weak`, `medium`, `strong`"),
        ("timeout=abc", "invalid digit found in string"),
        ("timeout=-1", "std::time::Duration cannot be negative"),
        ("timeout=0", "value 0 invalid, must be 1 or larger"),
    ],
)
async def test_bad_query_parameters_are_rejected_and_write_nothing(api: Api, query, message):
    await api.create_collection()
    response = await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}, query=query)
    assert response.status == 400
    assert response.error == f"Deserialize error in query parameters: {message}"
    await assert_nothing_written(api, expected_count=0, next_op_id=0)


async def test_malformed_json_is_a_format_error(api: Api):
    await api.create_collection()
    response = await api.call("PUT", POINTS, data='{"points": [')
    assert response.status == 400
    assert response.error == "Format error in JSON body: unexpected end of data at line 1 column 13"
    assert response.body["time"] == 0.0
    response = await api.call("PUT", POINTS, data="")
    assert (
        response.error == "Format error in JSON body: EOF while parsing a value at line 1 column 0"
    )


async def test_upsert_into_a_missing_collection_is_404(api: Api):
    response = await api.upsert({"points": [{"id": 1, "vector": [1]}]}, name="nope")
    assert response.status == 404
    assert response.error == "Not found: Collection `nope` doesn't exist!"


async def test_a_body_error_is_reported_before_a_missing_collection(api: Api):
    response = await api.upsert({"points": "x"}, name="nope")
    assert response.status == 400
    assert (
        response.error == 'Format error in JSON body: invalid type: string "x", expected a sequence'
    )


# ---- ids, retrieve, get, delete ------------------------------------------------------------


async def test_uuid_ids_in_any_form_are_one_point_returned_canonical(api: Api):
    await api.create_collection()
    for form in (
        UUID_TEXT.upper().replace("-", ""),
        "{" + UUID_TEXT + "}",
        "urn:uuid:" + UUID_TEXT,
    ):
        response = await api.upsert({"points": [{"id": form, "vector": [1, 2, 3, 4]}]})
        assert response.status == 200
    assert await api.points_count() == 1
    assert await api.retrieve([UUID_TEXT.upper()]) == [{"id": UUID_TEXT, "payload": {}}]
    response = await api.call("GET", POINT, point_id=UUID_TEXT.upper())
    assert response.result["id"] == UUID_TEXT


async def test_integer_and_uuid_ids_are_different_points(api: Api):
    await api.create_collection()
    uuid_one = str(uuid.UUID(int=1))
    await api.upsert({"batch": {"ids": [1, uuid_one], "vectors": [[1, 2, 3, 4], [4, 3, 2, 1]]}})
    records = await api.retrieve([uuid_one, 1], with_vector=True)
    assert records == [
        {"id": uuid_one, "payload": {}, "vector": [4.0, 3.0, 2.0, 1.0]},
        {"id": 1, "payload": {}, "vector": [1.0, 2.0, 3.0, 4.0]},
    ]


async def test_retrieve_selectors_and_field_presence(api: Api):
    """Not asked for: `payload`/`vector` keys are absent (Qdrant skips None)."""
    await api.create_collection()
    await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": {"a": 1, "b": 2}}]})
    assert await api.retrieve([1], with_payload=False) == [{"id": 1}]
    assert await api.retrieve([1], with_payload=["a"]) == [{"id": 1, "payload": {"a": 1}}]
    assert await api.retrieve([1], with_payload={"exclude": ["a"]}) == [
        {"id": 1, "payload": {"b": 2}}
    ]
    assert await api.retrieve([1, 1, 7]) == [{"id": 1, "payload": {"a": 1, "b": 2}}]
    response = await api.call("POST", POINTS, json={"ids": [-3]})
    assert response.status == 400
    assert response.error == ID_ERROR.format("-3")


async def test_reading_a_vector_the_collection_lacks_is_400_when_a_point_is_found(api: Api):
    """Qdrant checks `with_vector` names as it reads a found point's vectors: retrieve and
    scroll answer 400 then, and 200 when no point is found."""
    await api.create_collection(vectors={"v": {"size": 2, "distance": "Dot"}})
    await api.upsert({"points": [{"id": 1, "vector": {"v": [1, 2]}}]})
    for body in ({"ids": [1], "with_vector": ["v", "nope"]}, {"with_vectors": ["nope"]}):
        route = POINTS if "ids" in body else f"{POINTS}/scroll"
        response = await api.call("POST", route, json=body)
        assert response.status == 400
        assert response.error == "Wrong input: Not existing vector name error: nope"
    assert await api.retrieve([7], with_vector=["nope"]) == []
    scroll = {"filter": {"must": {"has_id": [7]}}, "with_vector": ["nope"]}
    response = await api.call("POST", f"{POINTS}/scroll", json=scroll)
    assert response.result["points"] == []


async def test_get_point_returns_payload_and_vector_or_404(api: Api):
    await api.create_collection()
    await api.upsert({"points": [{"id": 7, "vector": [1, 2, 3, 4], "payload": {"x": "y"}}]})
    response = await api.call("GET", POINT, point_id=7)
    assert response.result == {"id": 7, "payload": {"x": "y"}, "vector": [1.0, 2.0, 3.0, 4.0]}
    response = await api.call("GET", POINT, point_id=8)
    assert (response.status, response.error) == (404, "Not found: Point with id 8 does not exists!")
    response = await api.call("GET", POINT, point_id="abc")
    assert (response.status, response.error) == (
        400,
        'Wrong input: Can not recognize "abc" as point id',
    )


async def test_delete_points_by_id(api: Api):
    await api.create_collection()
    await api.upsert({"batch": {"ids": [1, 2, 3], "vectors": [[1, 2, 3, 4]] * 3}})
    response = await api.call("POST", DELETE, json={"points": [1, 3, 42]}, query={"wait": "true"})
    assert response.result == {"operation_id": 1, "status": "completed"}
    assert [record["id"] for record in await api.retrieve([1, 2, 3])] == [2]
    response = await api.call("POST", DELETE, json={"points": [2]}, query={"wait": "false"})
    assert response.result == {"operation_id": 2, "status": "acknowledged"}


async def test_delete_errors_write_nothing(api: Api):
    await api.create_collection()
    await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]})
    response = await api.call("POST", DELETE, json={"points": [-1]})
    assert (response.status, response.error) == (
        400,
        "Format error in JSON body: data did not match any variant of untagged enum PointsSelector",
    )
    response = await api.call("POST", DELETE, json={"filter": {"must": "x"}})
    assert (response.status, response.error) == (
        400,
        "Format error in JSON body: data did not match any variant of untagged enum PointsSelector",
    )
    response = await api.call("POST", DELETE, json={"points": [1]}, query={"ordering": "x"})
    assert response.status == 400
    await assert_nothing_written(api, expected_count=1, next_op_id=1)


async def test_an_empty_upsert_is_refused_as_qdrant_does(api: Api):
    """Qdrant: an update that lists no point reaches no shard, 400 `Empty update request`."""
    await api.create_collection()
    for body in ({"points": []}, {"batch": {"ids": [], "vectors": []}}):
        response = await api.upsert(body)
        assert response.status == 400
        assert response.body["status"]["error"] == "Bad request: Empty update request"
    assert await api.points_count() == 0
    response = await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]})
    assert response.result["operation_id"] == 0


async def test_a_collection_without_dense_vectors_stores_payload_only_points(api: Api):
    await api.create_collection("e", metadata=None)
    response = await api.upsert({"points": [{"id": 1, "vector": {}, "payload": {"a": 1}}]}, "e")
    assert response.result == {"operation_id": 0, "status": "completed"}
    assert await api.retrieve([1], name="e", with_vector=True) == [
        {"id": 1, "payload": {"a": 1}, "vector": {}}
    ]
