"""server/api/followers.py: the Keel-only follower endpoints under /keel/, with auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import Catalog
from engine.limits import EngineSettings
from server.app import create_app

RW, RO = "rw-key", "ro-key"
FOLLOWER = "/keel/collections/c/followers/f1"


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path):
    catalog = Catalog(tmp_path, EngineSettings())
    await catalog.open()
    app = create_app(catalog, keel_version="test", api_key=RW, read_only_api_key=RO)
    test_client = await aiohttp_client(app)
    headers = {"api-key": RW}
    await test_client.put(
        "/collections/c", json={"vectors": {"size": 2, "distance": "Dot"}}, headers=headers
    )
    yield test_client
    await catalog.close()


async def call(client, method: str, path: str, body=None, key: str = RW):
    response = await client.request(method, path, json=body, headers={"api-key": key})
    return response.status, await response.json() if response.status != 401 else None


async def test_register_read_ack_and_delete(client):
    status, body = await call(client, "PUT", FOLLOWER, {"next_op_id": None})
    assert status == 200, body
    assert body["result"]["next_op_id"] == 0
    upsert = {"points": [{"id": 1, "vector": [1, 2], "payload": {"a": 1}}]}
    await client.put("/collections/c/points?wait=true", json=upsert, headers={"api-key": RW})
    status, body = await call(client, "GET", "/keel/collections/c/wal?from_op_id=0", key=RO)
    assert status == 200, body
    result = body["result"]
    assert result["last_op_id"] == 0 and result["first_op_id"] == 0
    [record] = result["records"]
    assert record["op_id"] == 0
    assert record["request"] == {
        "method": "PUT",
        "path": "/collections/c/points",
        "body": {"points": [{"id": 1, "vector": [1.0, 2.0], "payload": {"a": 1}}]},
    }
    status, body = await call(client, "PUT", FOLLOWER, {"next_op_id": 1})
    assert body["result"]["next_op_id"] == 1
    status, body = await call(client, "GET", "/keel/collections/c/followers", key=RO)
    assert [f["name"] for f in body["result"]] == ["f1"]
    status, body = await call(client, "DELETE", FOLLOWER)
    assert (status, body["result"]) == (200, True)


async def test_writes_need_the_read_write_key(client):
    status, _ = await call(client, "PUT", FOLLOWER, {"next_op_id": None}, key=RO)
    assert status == 403
    status, _ = await call(client, "DELETE", FOLLOWER, key=RO)
    assert status == 403
    status, _ = await call(client, "GET", "/keel/collections/c/wal?from_op_id=0", key="wrong")
    assert status == 401


async def test_bad_requests(client):
    status, body = await call(client, "PUT", FOLLOWER, {"next_op_id": 99})
    assert status == 400, body
    status, body = await call(
        client, "PUT", "/keel/collections/c/followers/a%20b", {"next_op_id": 0}
    )
    assert status == 400, body
    status, body = await call(client, "GET", "/keel/collections/c/wal")
    assert status == 400, body
    status, body = await call(client, "GET", "/keel/collections/nope/wal?from_op_id=0")
    assert status == 404, body
