"""Recovering a snapshot from an http(s):// location (server/api/snapshot_download.py).

A local aiohttp server (pytest-aiohttp's `aiohttp_server`) serves a snapshot Keel made;
Keel recovers from its URL, through the collection and the shard routes, with Qdrant's
answers when the checksum, the answer or the connection is wrong.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine import limits
from server.app import create_app
from tests.api.conftest import KEEL_VERSION, Api

SNAPSHOTS = "/collections/{collection_name}/snapshots"
RECOVER = SNAPSHOTS + "/recover"
SHARD_RECOVER = "/collections/{collection_name}/shards/0/snapshots/recover"


def point(i: int) -> dict[str, Any]:
    return {"id": i, "vector": [float(i), 1.0, 0.0, 0.0], "payload": {"n": i}}


async def snapshot_server(aiohttp_server: Any, data: bytes) -> tuple[str, list[web.Request]]:
    """Serve `data` at /s.snapshot (404 elsewhere); return the base URL and the requests."""
    seen: list[web.Request] = []

    async def serve(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(body=data, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/s.snapshot", serve)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


async def made_snapshot(api: Api, tmp_path: Path) -> tuple[bytes, str]:
    """A snapshot of collection `c` holding points 1 and 2: (its bytes, its sha256)."""
    await api.create_collection("c")
    await api.upsert({"points": [point(1), point(2)]}, name="c")
    description = (await api.call("POST", SNAPSHOTS, name="c")).result
    data = (tmp_path / "snapshots" / "c" / description["name"]).read_bytes()
    return data, description["checksum"]


async def test_recover_from_http_creates_and_replaces_and_keeps_no_download(
    api: Api, tmp_path: Path, aiohttp_server: Any
) -> None:
    data, checksum = await made_snapshot(api, tmp_path)
    base_url, seen = await snapshot_server(aiohttp_server, data)
    location = f"{base_url}/s.snapshot"

    body = {"location": location, "checksum": checksum, "api_key": "secret"}
    assert (await api.call("PUT", RECOVER, json=body, name="new")).result is True
    assert [p["id"] for p in await api.scroll_all("new")] == [1, 2]
    assert seen[-1].headers["Api-key"] == "secret"  # Qdrant sends it as this header

    await api.upsert({"points": [point(3)]}, name="c")
    # validate=False: the spec check knows the template with {shard_id}, not shard 0's path.
    shard = await api.call(
        "PUT", SHARD_RECOVER, json={"location": location}, name="c", validate=False
    )
    assert (shard.status, shard.body["result"]) == (200, True)
    assert [p["id"] for p in await api.scroll_all("c")] == [1, 2]
    assert "Api-key" not in seen[-1].headers
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []


async def test_a_wrong_checksum_or_answer_changes_nothing(
    api: Api, tmp_path: Path, aiohttp_server: Any
) -> None:
    data, checksum = await made_snapshot(api, tmp_path)
    base_url, _ = await snapshot_server(aiohttp_server, data)
    await api.upsert({"points": [point(3)]}, name="c")

    wrong = {"location": f"{base_url}/s.snapshot", "checksum": "3" * 64}
    response = await api.call("PUT", RECOVER, json=wrong, name="c")
    assert (response.status, response.error) == (
        400,
        f"Wrong input: Snapshot checksum mismatch: expected {'3' * 64}, got {checksum}",
    )
    missing = await api.call(
        "PUT", RECOVER, json={"location": f"{base_url}/nope.snapshot"}, name="c"
    )
    missing_url = f"{base_url}/nope.snapshot"
    assert (missing.status, missing.error) == (
        400,
        f"Wrong input: Failed to download tar from {missing_url}: status - 404 Not Found",
    )
    assert [p["id"] for p in await api.scroll_all("c")] == [1, 2, 3]
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []


async def test_an_unreachable_location_is_qdrants_500(api: Api, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/s.snapshot"
        response = await api.call("PUT", RECOVER, json={"location": url}, name="new")
    assert (response.status, response.error) == (
        500,
        f"Service internal error: Http request error: error sending request for url ({url})",
    )
    assert (await api.call("GET", "/collections/{collection_name}", name="new")).status == 404
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []


async def test_a_download_past_the_size_limit_is_refused_and_removed(
    api: Api, tmp_path: Path, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = await made_snapshot(api, tmp_path)
    base_url, _ = await snapshot_server(aiohttp_server, data)
    monkeypatch.setattr(limits, "SNAPSHOT_BYTES_MAX", len(data) - 1)
    body = {"location": f"{base_url}/s.snapshot"}
    response = await api.call("PUT", RECOVER, json=body, name="new")
    assert (response.status, response.error) == (
        400,
        f"Wrong input: snapshot file exceeds {len(data) - 1} bytes",
    )
    assert (await api.call("GET", "/collections/{collection_name}", name="new")).status == 404
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []


async def test_url_recovery_switched_off_is_qdrants_403_and_fetches_nothing(
    catalog: Any, tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """service.enable_snapshot_url_recovery = false (against SSRF): an http(s) location is
    refused before anything is fetched, on both routes; file:// and uploads still work."""
    app = create_app(catalog, keel_version=KEEL_VERSION, enable_snapshot_url_recovery=False)
    api = Api(await aiohttp_client(app))
    data, checksum = await made_snapshot(api, tmp_path)
    base_url, seen = await snapshot_server(aiohttp_server, data)
    message = "Forbidden: Snapshot recovery from remote URLs is disabled in the configuration"
    body = {"location": f"{base_url}/s.snapshot", "checksum": checksum}
    response = await api.call("PUT", RECOVER, json=body, name="new")
    assert (response.status, response.error) == (403, message)
    shard = await api.call("PUT", SHARD_RECOVER, json=body, name="c", validate=False)
    assert (shard.status, shard.body["status"]["error"]) == (403, message)
    assert seen == []  # nothing was fetched
    assert (await api.call("GET", "/collections/{collection_name}/exists", name="new")).result == {
        "exists": False
    }
    snapshot_path = tmp_path / "snapshots" / "c"
    [name] = [path.name for path in snapshot_path.iterdir() if path.suffix == ".snapshot"]
    local = {"location": f"file://{snapshot_path / name}"}
    assert (await api.call("PUT", RECOVER, json=local, name="new")).result is True
