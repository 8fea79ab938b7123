"""Payload writes through HTTP: set (POST), overwrite (PUT), delete keys, clear.

Each: by ids and by filter, the answer (operation_id, status) under wait/ordering/timeout, the
resulting payloads, and every error with Qdrant's status and text; a rejected request writes
nothing (the next write gets the next operation_id and no payload changed).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import engine.applier
from tests.api.conftest import Api

SET = "/collections/{collection_name}/points/payload"
DELETE_KEYS = "/collections/{collection_name}/points/payload/delete"
CLEAR = "/collections/{collection_name}/points/payload/clear"
ID_ERROR = (
    "Format error in JSON body: value {} is not a valid point ID, valid values are either an "
    "unsigned integer or a UUID"
)
CITY_PARIS = {"must": [{"key": "city", "match": {"value": "Paris"}}]}
PAYLOADS = {
    1: {"city": "Berlin", "n": 1, "meta": {"a": 1, "b": 2}},
    2: {"city": "Paris", "n": 2},
    3: {"city": "Paris", "n": 3, "meta": {"a": 3}},
    4: {"city": "London", "n": 4},
}


@pytest.fixture
async def cities(api: Api) -> Api:
    await api.create_collection()
    points = [{"id": i, "vector": [i, 0, 0, 1], "payload": p} for i, p in PAYLOADS.items()]
    response = await api.upsert({"points": points})
    assert response.result == {"operation_id": 0, "status": "completed"}
    return api


async def payloads(api: Api) -> dict[int, dict]:
    return {point["id"]: point["payload"] for point in await api.scroll_all(with_vector=False)}


async def assert_unchanged(api: Api, next_op_id: int) -> None:
    assert await payloads(api) == PAYLOADS
    assert await api.next_op_id() == next_op_id


# ---- set -----------------------------------------------------------------------------------


async def test_set_payload_merges_into_the_listed_points(cities: Api):
    body = {"payload": {"n": 10, "new": [1, 2]}, "points": [1, 3]}
    response = await cities.call("POST", SET, json=body)
    assert response.result == {"operation_id": 1, "status": "completed"}
    result = await payloads(cities)
    assert result[1] == {"city": "Berlin", "n": 10, "meta": {"a": 1, "b": 2}, "new": [1, 2]}
    assert result[3] == {"city": "Paris", "n": 10, "meta": {"a": 3}, "new": [1, 2]}
    assert result[2] == PAYLOADS[2] and result[4] == PAYLOADS[4]


async def test_set_payload_by_filter_touches_only_matching_points(cities: Api):
    response = await cities.call("POST", SET, json={"payload": {"fr": True}, "filter": CITY_PARIS})
    assert response.result == {"operation_id": 1, "status": "completed"}
    result = await payloads(cities)
    assert [i for i, payload in result.items() if payload.get("fr")] == [2, 3]


async def test_set_payload_at_a_key_merges_into_the_nested_object(cities: Api):
    body = {"payload": {"b": 20, "c": 30}, "points": [1, 2], "key": "meta"}
    assert (await cities.call("POST", SET, json=body)).status == 200
    result = await payloads(cities)
    assert result[1]["meta"] == {"a": 1, "b": 20, "c": 30}
    assert result[2]["meta"] == {"b": 20, "c": 30}  # created where it was missing


async def test_set_and_delete_at_array_paths_and_quoted_keys(api: Api):
    """JsonPath keys with `[i]`, `[]` and quotes (semantics compared with Qdrant's engine in
    tests/unit/test_payload_paths.py)."""
    await api.create_collection()
    payload = {"a": [{"b": 1}, {"b": 2}], "c.d": {"e": 1}}
    await api.upsert({"points": [{"id": 1, "vector": [1, 0, 0, 0], "payload": payload}]})
    body = {"payload": {"x": 9}, "points": [1], "key": "a[1]"}
    assert (await api.call("POST", SET, json=body)).status == 200
    body = {"payload": {"y": 8}, "points": [1], "key": '"c.d"'}
    assert (await api.call("POST", SET, json=body)).status == 200
    await api.call("POST", DELETE_KEYS, json={"keys": ["a[].b"], "points": [1]})
    [point] = await api.retrieve([1])
    assert point["payload"] == {"a": [{}, {"x": 9}], "c.d": {"e": 1, "y": 8}}


async def test_with_both_ids_and_filter_the_ids_win(cities: Api):
    """Qdrant applies the id list and ignores the filter (process_payload_operation)."""
    body = {"payload": {"x": 1}, "points": [4], "filter": CITY_PARIS}
    assert (await cities.call("POST", SET, json=body)).status == 200
    result = await payloads(cities)
    assert [i for i, payload in result.items() if "x" in payload] == [4]


@pytest.mark.parametrize(
    ("method", "route", "body", "edited"),
    [
        ("POST", SET, {"payload": {"x": 1}}, {**PAYLOADS[2], "x": 1}),
        ("PUT", SET, {"payload": {"x": 1}}, {"x": 1}),
        ("POST", DELETE_KEYS, {"keys": ["n", "meta"]}, {"city": "Paris"}),
        ("POST", CLEAR, {}, {}),
    ],
)
async def test_a_missing_id_is_404_after_the_others_are_edited(
    cities: Api, method: str, route: str, body: dict, edited: dict
):
    """Qdrant (wait=true): the existing points are edited, then 404 for the missing id; the
    op was logged and keeps its operation_id. With wait=false: `acknowledged`, same edit."""
    response = await cities.call(method, route, json={**body, "points": [2, 99, 98]})
    assert (response.status, response.error) == (404, "Not found: No point with id 99 found")
    assert (await payloads(cities))[2] == edited
    assert await cities.retrieve([99, 98]) == []
    assert await cities.next_op_id() == 2  # 0: the upsert, 1: the refused edit
    query = {"wait": "false"}
    response = await cities.call(method, route, json={**body, "points": [99, 3]}, query=query)
    assert response.result == {"operation_id": 3, "status": "acknowledged"}
    await cities.next_op_id()  # waits, and ops are applied in op order
    expected = {**PAYLOADS[3], "x": 1} if edited.get("n") == 2 else edited
    assert (await payloads(cities))[3] == expected


# ---- overwrite, delete keys, clear ---------------------------------------------------------


async def test_overwrite_replaces_the_whole_payload_and_ignores_key(cities: Api):
    body = {"payload": {"only": "this"}, "points": [1], "key": "meta"}
    response = await cities.call("PUT", SET, json=body)
    assert response.result == {"operation_id": 1, "status": "completed"}
    response = await cities.call("PUT", SET, json={"payload": {}, "filter": CITY_PARIS})
    assert response.result == {"operation_id": 2, "status": "completed"}
    result = await payloads(cities)
    assert result == {1: {"only": "this"}, 2: {}, 3: {}, 4: PAYLOADS[4]}


async def test_delete_keys_removes_top_level_and_nested_keys(cities: Api):
    body = {"keys": ["n", "meta.a", "absent"], "points": [1, 3]}
    response = await cities.call("POST", DELETE_KEYS, json=body)
    assert response.result == {"operation_id": 1, "status": "completed"}
    response = await cities.call("POST", DELETE_KEYS, json={"keys": ["city"], "filter": CITY_PARIS})
    assert response.result == {"operation_id": 2, "status": "completed"}
    result = await payloads(cities)
    assert result[1] == {"city": "Berlin", "meta": {"b": 2}}
    assert result[2] == {"n": 2}
    assert result[3] == {"meta": {}}
    assert result[4] == PAYLOADS[4]


async def test_clear_by_ids_and_by_filter(cities: Api):
    response = await cities.call("POST", CLEAR, json={"points": [1]})
    assert response.result == {"operation_id": 1, "status": "completed"}
    response = await cities.call("POST", CLEAR, json={"filter": CITY_PARIS})
    assert response.result == {"operation_id": 2, "status": "completed"}
    assert await payloads(cities) == {1: {}, 2: {}, 3: {}, 4: PAYLOADS[4]}


# ---- wait, ordering, timeout, operation ids ------------------------------------------------


async def test_wait_false_acknowledges_and_the_write_becomes_visible(cities: Api):
    body = {"payload": {"late": True}, "points": [4]}
    response = await cities.call("POST", SET, json=body, query={"wait": "false"})
    assert response.result == {"operation_id": 1, "status": "acknowledged"}
    for _ in range(500):
        if (await payloads(cities))[4].get("late"):
            break
        await asyncio.sleep(0.01)
    assert (await payloads(cities))[4] == {**PAYLOADS[4], "late": True}


async def test_wait_timeout_answers_200_and_the_write_still_completes(cities: Api, monkeypatch):
    """Hold the applier; wait=true&timeout=1 answers wait_timeout, for one write and for a
    batch, and once released both are applied (a timeout never cancels)."""
    release = threading.Event()
    original = engine.applier.apply_batch

    def slow_apply_batch(*args, **kwargs):
        release.wait(timeout=30)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.applier, "apply_batch", slow_apply_batch)
    query = {"wait": "true", "timeout": "1"}
    body = {"payload": {"slow": 1}, "points": [1]}
    response = await cities.call("POST", SET, json=body, query=query)
    assert response.result == {"operation_id": 1, "status": "wait_timeout"}
    operations = [{"clear_payload": {"points": [2]}}, {"delete": {"points": [3]}}]
    batch = "/collections/{collection_name}/points/batch"
    response = await cities.call("POST", batch, json={"operations": operations}, query=query)
    assert response.result == [
        {"operation_id": 2, "status": "wait_timeout"},
        {"operation_id": 3, "status": "wait_timeout"},
    ]
    release.set()
    assert await cities.next_op_id() == 4
    assert await payloads(cities) == {1: {**PAYLOADS[1], "slow": 1}, 2: {}, 4: PAYLOADS[4]}


@pytest.mark.parametrize("path, method", [(SET, "POST"), (SET, "PUT"), (CLEAR, "POST")])
@pytest.mark.parametrize("ordering", ["weak", "medium", "strong"])
async def test_ordering_and_timeout_are_accepted(cities: Api, path, method, ordering):
    body = {"payload": {"k": 1}, "points": [1]} if path == SET else {"points": [1]}
    query = {"wait": "true", "ordering": ordering, "timeout": "5"}
    response = await cities.call(method, path, json=body, query=query)
    assert response.result == {"operation_id": 1, "status": "completed"}


async def test_operation_ids_continue_across_kinds_of_write(cities: Api):
    calls = [
        ("POST", SET, {"payload": {"a": 1}, "points": [1]}),
        ("PUT", SET, {"payload": {"a": 2}, "points": [1]}),
        ("POST", DELETE_KEYS, {"keys": ["a"], "points": [1]}),
        ("POST", CLEAR, {"points": [1]}),
    ]
    op_ids = [
        (await cities.call(m, path, json=body)).result["operation_id"] for m, path, body in calls
    ]
    assert op_ids == [1, 2, 3, 4]
    assert await cities.next_op_id() == 5


# ---- errors: status, Qdrant's text, nothing written ----------------------------------------


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        (
            "POST",
            SET,
            {"payload": {"a": 1}},
            400,
            "Format error in JSON body: Either list of point ids or filter must be provided",
        ),
        (
            "PUT",
            SET,
            {"payload": {"a": 1}, "points": None, "filter": None},
            400,
            "Format error in JSON body: Either list of point ids or filter must be provided",
        ),
        (
            "POST",
            DELETE_KEYS,
            {"keys": ["a"]},
            400,
            "Format error in JSON body: Either list of point ids or filter must be provided",
        ),
        ("POST", SET, {"points": [1]}, 400, "Format error in JSON body: missing field `payload`"),
        (
            "POST",
            DELETE_KEYS,
            {"points": [1]},
            400,
            "Format error in JSON body: missing field `keys`",
        ),
        (
            "POST",
            SET,
            {"payload": "x", "points": [1]},
            400,
            'Format error in JSON body: invalid type: string "x", expected a map',
        ),
        (
            "PUT",
            SET,
            {"payload": None, "points": [1]},
            400,
            "Format error in JSON body: invalid type: null, expected a map",
        ),
        (
            "POST",
            SET,
            [1],
            400,
            "Format error in JSON body: invalid type: sequence, expected struct SetPayloadShadow",
        ),
        ("POST", SET, {"payload": {}, "points": [-1]}, 400, ID_ERROR.format("-1")),
        (
            "POST",
            SET,
            {"payload": {}, "points": 1},
            400,
            "Format error in JSON body: invalid type: integer `1`, expected a sequence",
        ),
        (
            "POST",
            SET,
            {"payload": {}, "points": [1], "key": "a..b"},
            400,
            "Format error in JSON body: Invalid json path: 'a..b'",
        ),
        (
            "POST",
            DELETE_KEYS,
            {"keys": "a", "points": [1]},
            400,
            'Format error in JSON body: invalid type: string "a", expected a sequence',
        ),
        (
            "POST",
            DELETE_KEYS,
            {"keys": [1], "points": [1]},
            400,
            "Format error in JSON body: invalid type: integer `1`, expected a string",
        ),
        (
            "POST",
            SET,
            {"payload": {}, "filter": {"bogus": []}},
            400,
            (
                "Format error in JSON body: unknown field `bogus`, expected one of `should`, "
                "`min_should`, `must`, `must_not`"
            ),
        ),
        (
            "POST",
            SET,
            {"payload": {}, "filter": {"must": [{"key": "a"}]}},
            422,
            (
                "Validation error in JSON body: [filter.must[0].__all__: At least one field "
                "condition must be specified]"
            ),
        ),
        (
            "POST",
            CLEAR,
            {"points": [1.5]},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "PointsSelector"
            ),
        ),
        (
            "POST",
            CLEAR,
            {},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "PointsSelector"
            ),
        ),
        ("POST", SET, {"payload": {}, "points": []}, 400, "Bad request: Empty update request"),
        ("POST", DELETE_KEYS, {"keys": [], "points": []}, 400, "Bad request: Empty update request"),
        ("POST", CLEAR, {"points": []}, 400, "Bad request: Empty update request"),
        (
            "POST",
            SET,
            {"payload": {}, "points": [1], "key": "meta[x]"},
            400,
            "Format error in JSON body: Invalid json path: 'meta[x]'",
        ),
    ],
)
async def test_invalid_payload_writes_are_rejected_and_write_nothing(
    cities: Api, method, path, body, status, message
):
    response = await cities.call(method, path, json=body)
    assert (response.status, response.error) == (status, message)
    await assert_unchanged(cities, next_op_id=1)


@pytest.mark.parametrize("method, path", [("POST", SET), ("PUT", SET), ("POST", DELETE_KEYS)])
async def test_unknown_collection_is_404_after_the_body_is_checked(api: Api, method, path):
    body = {"payload": {}, "keys": [], "points": [1]}
    response = await api.call(method, path, json=body, name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")
    response = await api.call(method, path, json={"payload": {}, "keys": []}, name="nope")
    assert response.status == 400
    # An empty id list is refused only once the collection is known (Qdrant's order).
    response = await api.call(method, path, json={**body, "points": []}, name="nope")
    assert response.status == 404


async def test_clear_of_an_unknown_collection_is_404(api: Api):
    response = await api.call("POST", CLEAR, json={"filter": {}}, name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")


async def test_bad_query_parameters_write_nothing(cities: Api):
    body = {"payload": {"a": 1}, "points": [1]}
    response = await cities.call("POST", SET, json=body, query={"ordering": "fast"})
    assert response.status == 400
    assert response.error == (
        "Deserialize error in query parameters: unknown variant `fast`, expected one of "
        "`weak`, `medium`, `strong`"
    )
    response = await cities.call("POST", SET, json=body, query={"timeout": "0"})
    assert response.status == 400
    await assert_unchanged(cities, next_op_id=1)


async def test_with_payload_include_and_exclude_take_json_paths(api: Api):
    """Semantics compared with Qdrant's engine in tests/unit/test_payload_paths.py."""
    await api.create_collection()
    payload = {"a": [{"b": 1, "c": 2}, {"b": 3}], "d": {"e": 4, "f": 5}, "g.h": 6}
    await api.upsert({"points": [{"id": 1, "vector": [1, 0, 0, 0], "payload": payload}]})
    [point] = await api.retrieve([1], with_payload={"include": ["a[].b", '"g.h"']})
    assert point["payload"] == {"a": [{"b": 1}, {"b": 3}], "g.h": 6}
    [point] = await api.retrieve([1], with_payload={"exclude": ["d.e", "a"]})
    assert point["payload"] == {"d": {"f": 5}, "g.h": 6}
    response = await api.call(
        "POST", "/collections/{collection_name}/points", json={"ids": [1], "with_payload": ["a[x]"]}
    )
    assert response.status == 400
