"""Request limits: each answers a clear 4xx in Qdrant's error shape and writes nothing.

Limits already covered elsewhere: body size (test_points_api, 413), points per request and
id range (test_points_api), vector dimension (test_collections_api), name length and
characters (test_collections_api). Here: payload nesting depth and the collection count.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine import limits
from tests.api.conftest import Api

POINTS = "/collections/{collection_name}/points"
SET_PAYLOAD = "/collections/{collection_name}/points/payload"


def nested_json(depth: int) -> str:
    """nested(depth) as JSON text (orjson refuses to write such depths; a client may)."""
    return '{"a":' * depth + "1" + "}" * depth


def nested(depth: int) -> Any:
    """A payload whose objects nest `depth` levels (the payload itself is level 1)."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture
async def collection(api: Api) -> Api:
    await api.create_collection("c", vectors={"size": 2, "distance": "Dot"})
    return api


async def test_a_payload_at_the_depth_limit_is_stored(collection: Api) -> None:
    body = {"points": [{"id": 1, "vector": [1, 2], "payload": nested(limits.PAYLOAD_DEPTH_MAX)}]}
    response = await collection.upsert(body, query={"wait": "true"})
    assert response.status == 200
    [point] = await collection.retrieve([1])
    assert point["payload"] == nested(limits.PAYLOAD_DEPTH_MAX)


async def test_a_payload_past_the_depth_limit_is_refused_and_nothing_written(
    collection: Api,
) -> None:
    op_id = await collection.next_op_id()
    deep = nested(limits.PAYLOAD_DEPTH_MAX + 1)
    for body in (
        {"points": [{"id": 1, "vector": [1, 2], "payload": deep}]},
        {"batch": {"ids": [1], "vectors": [[1, 2]], "payloads": [{"list": [deep]}]}},
    ):
        response = await collection.upsert(body, query={"wait": "true"})
        assert response.status == 400
        assert response.error == (
            f"Wrong input: payload is nested deeper than {limits.PAYLOAD_DEPTH_MAX} levels "
            "of objects and arrays"
        )
    assert await collection.points_count() == 0
    assert await collection.next_op_id() == op_id + 1  # no op id was used in between


async def test_set_payload_past_the_depth_limit_is_refused(collection: Api) -> None:
    await collection.upsert({"points": [{"id": 1, "vector": [1, 2]}]}, query={"wait": "true"})
    response = await collection.call(
        "POST",
        SET_PAYLOAD,
        json={"payload": nested(limits.PAYLOAD_DEPTH_MAX + 1), "points": [1]},
        query={"wait": "true"},
    )
    assert response.status == 400
    assert "nested deeper" in response.error
    [point] = await collection.retrieve([1])
    assert point["payload"] == {}


async def test_a_thousand_levels_never_reach_the_wal(collection: Api) -> None:
    """Deeper than the WAL decoder's limit: refused up front, so no poison op is ever
    acknowledged (it would fail to apply, then fail every replay)."""
    body = '{"points": [{"id": 1, "vector": [1, 2], "payload": ' + nested_json(1000) + "}]}"
    response = await collection.call("PUT", POINTS, data=body)
    assert response.status == 400
    assert "nested deeper" in response.error
    response = await collection.upsert(
        {"points": [{"id": 2, "vector": [1, 2]}]}, query={"wait": "true"}
    )
    assert response.result["status"] == "completed"


async def test_the_collection_count_is_bounded(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "COLLECTIONS_MAX", 2)
    for name in ("a", "b"):
        await api.create_collection(name, vectors={"size": 2, "distance": "Dot"})
    response = await api.call(
        "PUT",
        "/collections/{collection_name}",
        name="c",
        json={"vectors": {"size": 2, "distance": "Dot"}},
    )
    assert response.status == 400
    assert response.error == "Wrong input: Keel holds at most 2 collections; delete one first"
    response = await api.call("GET", "/collections/{collection_name}", name="c")
    assert response.status == 404


async def test_recovering_a_snapshot_into_a_new_name_counts_toward_the_limit(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setattr(limits, "COLLECTIONS_MAX", 2)
    for name in ("a", "b"):
        await api.create_collection(name, vectors={"size": 2, "distance": "Dot"})
    snapshots = "/collections/{collection_name}/snapshots"
    description = (await api.call("POST", snapshots, name="a")).result
    location = (tmp_path / "snapshots" / "a" / description["name"]).as_uri()
    recover = snapshots + "/recover"
    response = await api.call("PUT", recover, json={"location": location}, name="c")
    assert response.status == 400 and "at most 2 collections" in response.error
    assert (await api.call("PUT", recover, json={"location": location}, name="b")).result


async def test_set_payload_at_a_deep_key_counts_the_key_toward_the_depth(collection: Api) -> None:
    await collection.upsert({"points": [{"id": 1, "vector": [1, 2]}]}, query={"wait": "true"})
    deep_key = ".".join(["k"] * limits.PAYLOAD_DEPTH_MAX)
    for body in (
        {"payload": {"x": 1}, "points": [1], "key": deep_key},
        {"payload": {}, "points": [1], "key": deep_key + ".k"},
        {"payload": {"x": {"y": 1}}, "points": [1], "key": ".".join(["k"] * 99)},
    ):
        response = await collection.call("POST", SET_PAYLOAD, json=body, query={"wait": "true"})
        assert response.status == 400, body["key"][:20]
        assert "nested deeper" in response.error
    body = {"payload": {"x": 1}, "points": [1], "key": ".".join(["k"] * 99)}
    assert (await collection.call("POST", SET_PAYLOAD, json=body)).status == 200
