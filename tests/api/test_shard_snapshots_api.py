"""Shard snapshots over HTTP: shard 0 is the collection, any other shard id is Qdrant's 404.

Every answer is checked against Qdrant's spec. Shard 0's snapshots are the collection's
snapshot files, so a snapshot made by one route is listed, downloaded and deleted by the
other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.api.conftest import Api, ApiResponse
from tests.api.openapi_check import check_response

SHARD_SNAPSHOTS = "/collections/{collection_name}/shards/{shard_id}/snapshots"
ONE_SHARD_SNAPSHOT = SHARD_SNAPSHOTS + "/{snapshot_name}"


async def shard_call(
    api: Api,
    method: str,
    template: str,
    *,
    name: str = "c",
    shard_id: str = "0",
    snapshot_name: str = "",
    json: Any = None,
    form: aiohttp.FormData | None = None,
    validate: bool = True,
) -> ApiResponse:
    """A call on a shard snapshot route, validated against the spec like Api.call."""
    path = template.replace("{collection_name}", name).replace("{shard_id}", shard_id)
    path = path.replace("{snapshot_name}", snapshot_name)
    data: Any = form if form is not None else None if json is None else orjson.dumps(json)
    response = await api.client.request(method, path, data=data)
    if response.content_type != "application/json":
        return ApiResponse(response.status, await response.read(), response.headers)
    body = await response.json()
    if validate:
        check_response(template, method.lower(), response.status, body)
    return ApiResponse(response.status, body, response.headers)


def point(i: int) -> dict[str, Any]:
    return {"id": i, "vector": [float(i), 1.0, 0.0, 0.0]}


async def test_shard_zero_snapshots_are_the_collections(api: Api, tmp_path: Path) -> None:
    await api.create_collection()
    await api.upsert({"points": [point(1), point(2)]})

    description = (await shard_call(api, "POST", SHARD_SNAPSHOTS)).result

    listed = (await shard_call(api, "GET", SHARD_SNAPSHOTS)).result
    assert listed == [description]
    collection_listed = await api.call("GET", "/collections/{collection_name}/snapshots")
    assert collection_listed.result == [description]
    download = await shard_call(api, "GET", ONE_SHARD_SNAPSHOT, snapshot_name=description["name"])
    assert download.status == 200
    assert hashlib.sha256(download.body).hexdigest() == description["checksum"]
    assert (tmp_path / "snapshots" / "c" / description["name"]).read_bytes() == download.body

    await api.upsert({"points": [point(3)]})
    # Qdrant's ShardSnapshotLocation: a snapshot of the shard by its name.
    recovered = await shard_call(
        api, "PUT", SHARD_SNAPSHOTS + "/recover", json={"location": description["name"]}
    )
    assert recovered.result is True
    assert [p["id"] for p in await api.scroll_all()] == [1, 2]

    form = aiohttp.FormData()
    form.add_field("snapshot", download.body, filename="x.snapshot")
    await api.upsert({"points": [point(4)]})
    uploaded = await shard_call(api, "POST", SHARD_SNAPSHOTS + "/upload", form=form)
    assert uploaded.result is True
    assert [p["id"] for p in await api.scroll_all()] == [1, 2]

    deleted = await shard_call(api, "DELETE", ONE_SHARD_SNAPSHOT, snapshot_name=description["name"])
    assert deleted.result is True
    assert (await shard_call(api, "GET", SHARD_SNAPSHOTS)).result == []


async def test_another_shard_id_is_not_found_once_the_collection_is(api: Api) -> None:
    missing_collection = await shard_call(api, "GET", SHARD_SNAPSHOTS, name="nope")
    assert (missing_collection.status, missing_collection.error) == (
        404,
        "Not found: Collection `nope` doesn't exist!",
    )
    await api.create_collection()
    for method, template in [
        ("GET", SHARD_SNAPSHOTS),
        ("POST", SHARD_SNAPSHOTS),
        ("PUT", SHARD_SNAPSHOTS + "/recover"),
        ("GET", ONE_SHARD_SNAPSHOT),
        ("DELETE", ONE_SHARD_SNAPSHOT),
    ]:
        response = await shard_call(
            api,
            method,
            template,
            shard_id="1",
            snapshot_name="x.snapshot",
            json={"location": "file:///x.snapshot"},  # a body Qdrant parses before the shard
        )
        assert (response.status, response.error) == (404, "Not found: shard 1 not found")
    bad = await shard_call(api, "GET", SHARD_SNAPSHOTS, shard_id="-1")
    assert (bad.status, bad.error) == (
        400,
        'Deserialize error in path parameters: can not parse "-1" to a u32',
    )


async def test_recovering_a_shard_never_creates_the_collection(api: Api, tmp_path: Path) -> None:
    await api.create_collection()
    description = (await shard_call(api, "POST", SHARD_SNAPSHOTS)).result
    location = (tmp_path / "snapshots" / "c" / description["name"]).as_uri()
    response = await shard_call(
        api, "PUT", SHARD_SNAPSHOTS + "/recover", name="other", json={"location": location}
    )
    assert response.status == 404
    assert (await api.call("GET", "/collections/{collection_name}", name="other")).status == 404


STREAM = "/collections/{collection_name}/shards/{shard_id}/snapshot"


async def test_a_streamed_shard_snapshot_restores_the_collection_and_is_not_kept(
    api: Api, tmp_path: Path
) -> None:
    await api.create_collection()
    await api.upsert({"points": [point(1), point(2)]})
    streamed = await shard_call(api, "GET", STREAM)
    assert streamed.status == 200
    assert streamed.headers["Content-Type"] == "application/octet-stream"
    assert int(streamed.headers["Content-Length"]) == len(streamed.body)
    # Nothing is kept: no snapshot listed, nothing left in the storage's tmp/.
    assert (await shard_call(api, "GET", SHARD_SNAPSHOTS)).result == []
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []

    await api.upsert({"points": [point(3)]})
    form = aiohttp.FormData()
    form.add_field("snapshot", streamed.body, filename="streamed.snapshot")
    uploaded = await shard_call(api, "POST", SHARD_SNAPSHOTS + "/upload", form=form)
    assert uploaded.result is True
    assert [p["id"] for p in await api.scroll_all()] == [1, 2]

    # Qdrant checks an upload's checksum before it looks for the shard.
    form = aiohttp.FormData()
    form.add_field("snapshot", streamed.body, filename="streamed.snapshot")
    mismatch = await shard_call(
        api, "POST", SHARD_SNAPSHOTS + "/upload?checksum=" + "0" * 64, shard_id="1", form=form
    )
    assert (mismatch.status, mismatch.error.split(",")[0]) == (
        400,
        f"Checksum mismatch: expected {hashlib.sha256(streamed.body).hexdigest()}",
    )
    other_shard = await shard_call(api, "GET", STREAM, shard_id="1")
    assert (other_shard.status, other_shard.error) == (404, "Not found: shard 1 not found")
    missing = await shard_call(api, "GET", STREAM, name="nope")
    assert missing.status == 404


async def test_shard_snapshots_with_wait_false_answer_202_and_log_a_missing_shard(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Qdrant looks the collection and shard up inside the work it accepted: with
    wait=false, shard 1 is a 202 and a logged failure, and creates nothing; shard 0 is a
    202 with its snapshot listed; a shard id that is not a u32 is still a 400."""
    caplog.set_level("WARNING", logger="server.api.snapshots")
    await api.create_collection()
    for shard_id in ("1", "0"):
        response = await shard_call(
            api, "POST", SHARD_SNAPSHOTS + "?wait=false", shard_id=shard_id, validate=False
        )
        assert (response.status, response.body["status"]) == (202, "accepted")
        assert "result" not in response.body
    [description] = (await shard_call(api, "GET", SHARD_SNAPSHOTS)).result
    failures = [r.getMessage() for r in caplog.records if "wait=false" in r.getMessage()]
    assert len(failures) == 1, failures
    assert "shard 1 not found" in failures[0]
    deleted = await shard_call(
        api,
        "DELETE",
        ONE_SHARD_SNAPSHOT + "?wait=false",
        snapshot_name=description["name"],
        validate=False,
    )
    assert (deleted.status, deleted.body["status"]) == (202, "accepted")
    assert (await shard_call(api, "GET", SHARD_SNAPSHOTS)).result == []
    bad = await shard_call(api, "POST", SHARD_SNAPSHOTS + "?wait=false", shard_id="x")
    assert bad.status == 400


PARTIAL = "/collections/{collection_name}/shards/{shard_id}/snapshot/partial"


async def test_partial_snapshot_routes_answer_an_honest_501(api: Api) -> None:
    """Qdrant's four partial-snapshot routes are routed (not aiohttp's 404 "no API route")
    and say Keel does not do them; recover first checks its query as Qdrant does (422 for
    a malformed checksum, 400 for a shard id that is not a u32)."""
    await api.create_collection()
    for method, suffix in [
        ("POST", "/create"),
        ("POST", "/recover"),
        ("POST", "/recover_from"),
        ("GET", "/manifest"),
    ]:
        response = await shard_call(api, method, PARTIAL + suffix, json={})
        assert (response.status, response.error) == (
            501,
            f"Not implemented in Keel: {method} {PARTIAL}{suffix}",
        )
    form = aiohttp.FormData()
    form.add_field("snapshot", b"not a snapshot", filename="x.snapshot")
    malformed = await shard_call(api, "POST", PARTIAL + "/recover?checksum=abc", form=form)
    assert malformed.status == 422
    assert "invalid_sha256_hash" in malformed.error
    assert malformed.error.startswith("Validation error in query parameters: [checksum: ")
    bad_shard = await shard_call(api, "POST", PARTIAL + "/recover", shard_id="x", json={})
    assert bad_shard.status == 400
    long_name = "a" * 256
    bad_name = await shard_call(api, "POST", PARTIAL + "/recover", name=long_name, json={})
    assert bad_name.status == 422
    assert bad_name.error.startswith("Validation error in path parameters: [collection_name: ")


async def test_shard_recover_takes_qdrants_locations(api: Api, tmp_path: Path) -> None:
    """Qdrant's ShardSnapshotLocation (src/common/snapshots.rs): a snapshot name, in the
    shard's snapshots (404 naming the path if missing, 404 for a name with `..`), or an
    http(s) URL; a file:// URL is 400, even for a file the collection route would take."""
    await api.create_collection()
    await api.upsert({"points": [point(1)]})
    description = (await shard_call(api, "POST", SHARD_SNAPSHOTS)).result
    await api.upsert({"points": [point(2)]})
    recover = SHARD_SNAPSHOTS + "/recover"
    file_url = (tmp_path / "snapshots" / "c" / description["name"]).as_uri()
    directory = tmp_path / "snapshots" / "c"
    not_supported = "URLs with file scheme are not supported"

    expected = {
        file_url: (400, f"Wrong input: Invalid snapshot URL {file_url}: {not_supported}"),
        "missing.snapshot": (
            404,
            f'Not found: Snapshot "{directory / "missing.snapshot"}" not found',
        ),
        f"../c/{description['name']}": (
            404,
            f"Not found: Snapshot ../c/{description['name']} not found",
        ),
    }
    for location, answer in expected.items():
        response = await shard_call(api, "PUT", recover, json={"location": location})
        assert (response.status, response.error) == answer, location
    not_a_location = await shard_call(api, "PUT", recover, json={"location": 7})
    mismatch = "data did not match any variant of untagged enum ShardSnapshotLocation"
    assert (not_a_location.status, not_a_location.error) == (
        400,
        f"Format error in JSON body: {mismatch}",
    )
    wrong = {"location": description["name"], "checksum": "0" * 64}
    response = await shard_call(api, "PUT", recover, json=wrong)
    mismatch = f"expected {'0' * 64}, got {description['checksum']}"
    assert (response.status, response.error) == (
        400,
        f"Wrong input: Snapshot checksum mismatch: {mismatch}",
    )
    assert [p["id"] for p in await api.scroll_all()] == [1, 2]
    by_name = {"location": description["name"], "checksum": description["checksum"]}
    assert (await shard_call(api, "PUT", recover, json=by_name)).result is True
    assert [p["id"] for p in await api.scroll_all()] == [1]
