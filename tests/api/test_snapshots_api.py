"""Collection snapshots over HTTP: create, list, download, delete, recover, upload.

Every answer is checked against Qdrant's spec. The central test takes a snapshot while a
writer keeps upserting and checks the restored collection is exactly the writes up to the
snapshot's op id.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.conftest import Api, ApiResponse
from tests.api.openapi_check import check_response

SNAPSHOTS = "/collections/{collection_name}/snapshots"
ONE_SNAPSHOT = SNAPSHOTS + "/{snapshot_name}"
RECOVER = SNAPSHOTS + "/recover"
UPLOAD = SNAPSHOTS + "/upload"


async def snapshot_call(
    api: Api, method: str, name: str, snapshot_name: str, query: str = ""
) -> ApiResponse:
    """A call on /snapshots/{snapshot_name}, validated against the spec like Api.call."""
    path = f"/collections/{name}/snapshots/{snapshot_name}{query}"
    response = await api.client.request(method, path)
    body = await response.json()
    check_response(ONE_SNAPSHOT, method.lower(), response.status, body)
    return ApiResponse(response.status, body, response.headers)


async def upload(api: Api, name: str, data: bytes, query: str = "") -> ApiResponse:
    form = aiohttp.FormData()
    form.add_field("snapshot", data, filename="x.snapshot", content_type="application/octet-stream")
    response = await api.client.post(f"/collections/{name}/snapshots/upload{query}", data=form)
    body = await response.json()
    check_response(UPLOAD, "post", response.status, body)
    return ApiResponse(response.status, body, response.headers)


async def create_snapshot(api: Api, name: str) -> dict[str, Any]:
    return (await api.call("POST", SNAPSHOTS, name=name)).result


async def create_alias(api: Api, alias: str, collection: str) -> None:
    body = {"actions": [{"create_alias": {"alias_name": alias, "collection_name": collection}}]}
    assert (await api.call("POST", "/collections/aliases", json=body)).result is True


def point(i: int) -> dict[str, Any]:
    return {"id": i, "vector": [float(i), 1.0, 0.0, 0.0], "payload": {"n": i}}


def snapshot_op_id(snapshot_name: str) -> int:
    """`<collection>-<op_id>-<Y-m-d-H-M-S>.snapshot`."""
    return int(snapshot_name.removesuffix(".snapshot").rsplit("-", 7)[1])


async def upsert_points(api: Api, ids: list[int], name: str = "c") -> int:
    response = await api.upsert({"points": [point(i) for i in ids]}, name=name)
    return response.result["operation_id"]


async def test_create_list_download_delete_through_an_alias(api: Api, tmp_path: Path) -> None:
    await api.create_collection("c")
    await create_alias(api, "al", "c")
    op_id = await upsert_points(api, [1, 2, 3])

    description = await create_snapshot(api, "al")

    assert description["name"].startswith(f"c-{op_id}-")
    assert snapshot_op_id(description["name"]) == op_id
    listed = (await api.call("GET", SNAPSHOTS, name="al")).result
    assert listed == [{**description, "creation_time": listed[0]["creation_time"]}]
    response = await api.client.get(f"/collections/al/snapshots/{description['name']}")
    assert response.status == 200
    assert response.content_type == "application/octet-stream"
    data = await response.read()
    assert len(data) == description["size"]
    assert hashlib.sha256(data).hexdigest() == description["checksum"]
    assert (tmp_path / "snapshots" / "c" / description["name"]).read_bytes() == data

    deleted = await snapshot_call(api, "DELETE", "al", description["name"], "?wait=true")
    assert deleted.result is True
    assert (await api.call("GET", SNAPSHOTS, name="c")).result == []
    missing = await snapshot_call(api, "GET", "c", description["name"])
    assert missing.status == 404
    assert (await snapshot_call(api, "DELETE", "c", description["name"])).status == 404


async def test_unknown_collection_and_bad_names(api: Api) -> None:
    assert (await api.call("POST", SNAPSHOTS, name="nope")).status == 404
    assert (await api.call("GET", SNAPSHOTS, name="nope")).status == 404
    await api.create_collection("c")
    for bad_name in ("a..b.snapshot", ".hidden"):
        response = await snapshot_call(api, "GET", "c", bad_name)
        assert (response.status, response.error) == (
            404,
            f"Not found: Snapshot {bad_name} not found",
        )
    assert (await api.call("POST", SNAPSHOTS, name="c", query={"wait": "maybe"})).status == 400
    # SnapshottingParam has only `wait`: serde ignores an update's other parameters.
    ignored = {"wait": "true", "ordering": "bogus", "timeout": "soon"}
    assert (await api.call("POST", SNAPSHOTS, name="c", query=ignored)).status == 200


@pytest.mark.parametrize(
    ("prefix", "depth"),  # depth: from the route's snapshot directory up to tmp_path
    [
        ("/collections/c/snapshots/", 2),
        ("/collections/c/shards/0/snapshots/", 2),
        ("/snapshots/", 1),
    ],
)
async def test_encoded_slashes_never_reach_a_file_outside_the_snapshots_directory(
    api: Api, tmp_path: Path, prefix: str, depth: int
) -> None:
    """Goal: `..%2F` in a snapshot name is Qdrant's 404, never a file served from outside.
    Method: put a file beside the snapshots directory and name it from each download
    route, with every slash encoded (the router decodes them into the name), as a DELETE
    too; the file must be untouched and its bytes nowhere in an answer."""
    await api.create_collection("c")
    secret = tmp_path / "secret.snapshot"
    secret.write_bytes(b"not for clients")
    (tmp_path / "snapshots" / "c").mkdir(parents=True, exist_ok=True)
    name = "..%2F" * depth + "secret.snapshot"
    for method in ("GET", "DELETE"):
        response = await api.client.request(method, prefix + name)
        body = await response.read()
        assert response.status == 404, body
        assert b"not for clients" not in body
        decoded = "../" * depth + "secret.snapshot"
        assert (await response.json())["status"]["error"] == (
            f"Not found: Snapshot {decoded} not found"
        )
    assert secret.read_bytes() == b"not for clients"


async def test_a_snapshot_under_concurrent_writes_restores_to_its_exact_op_id(
    api: Api, tmp_path: Path
) -> None:
    """A writer upserts point i (vector and payload derived from i) with wait=false, noting
    each write's operation_id, while a snapshot is taken. The snapshot restored under a new
    name must hold exactly the points whose write had operation_id <= the snapshot's op id
    (acknowledged but unapplied writes included or not by that rule alone), with identical
    payloads and vectors, and answer searches."""
    await api.create_collection("c")
    op_id_by_point: dict[int, int] = {}
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set() and i < 2_000:
            response = await api.upsert({"points": [point(i)]}, query={"wait": "false"})
            op_id_by_point[i] = response.result["operation_id"]
            i += 1

    writer_task = asyncio.create_task(writer())
    while len(op_id_by_point) < 20:
        await asyncio.sleep(0.001)
    description = await create_snapshot(api, "c")
    written_at_snapshot = len(op_id_by_point)
    while len(op_id_by_point) < written_at_snapshot + 20:
        await asyncio.sleep(0.001)
    stop.set()
    await writer_task

    op_id = snapshot_op_id(description["name"])
    expected_ids = sorted(i for i, written in op_id_by_point.items() if written <= op_id)
    assert 20 <= len(expected_ids) < len(op_id_by_point)
    location = (tmp_path / "snapshots" / "c" / description["name"]).as_uri()
    body = {"location": location, "checksum": description["checksum"], "priority": "snapshot"}
    assert (await api.call("PUT", RECOVER, json=body, name="restored")).result is True

    points = await api.scroll_all("restored")
    assert [p["id"] for p in points] == expected_ids
    for p in points:
        assert p["payload"] == {"n": p["id"]}
        assert p["vector"] == [float(p["id"]), 1.0, 0.0, 0.0]
    search = {"vector": [1.0, 0.0, 0.0, 0.0], "limit": 3}
    hits = (
        await api.call(
            "POST", "/collections/{collection_name}/points/search", json=search, name="restored"
        )
    ).result
    assert [hit["id"] for hit in hits] == expected_ids[::-1][:3]
    # Op ids continue after the snapshot's in the restored collection.
    assert await upsert_points(api, [10_000], name="restored") == op_id + 1


async def test_recover_replaces_an_existing_collection_and_a_bad_checksum_changes_nothing(
    api: Api, tmp_path: Path
) -> None:
    await api.create_collection("c")
    await create_alias(api, "al", "c")
    await upsert_points(api, [1, 2])
    description = await create_snapshot(api, "c")
    await upsert_points(api, [3])
    location = (tmp_path / "snapshots" / "c" / description["name"]).as_uri()

    bad = {"location": location, "checksum": "0" * 64}
    response = await api.call("PUT", RECOVER, json=bad, name="al")
    mismatch = f"expected {'0' * 64}, got {description['checksum']}"
    assert (response.status, response.error) == (
        400,
        f"Wrong input: Snapshot checksum mismatch: {mismatch}",
    )
    assert [p["id"] for p in await api.scroll_all("c")] == [1, 2, 3]

    assert (await api.call("PUT", RECOVER, json={"location": location}, name="al")).result
    assert [p["id"] for p in await api.scroll_all("al")] == [1, 2]
    assert (await api.call("GET", "/collections/{collection_name}", name="c")).status == 200


async def test_recover_refuses_other_locations(api: Api, tmp_path: Path) -> None:
    other_scheme = {"location": "ftp://example.com/c.snapshot"}
    response = await api.call("PUT", RECOVER, json=other_scheme, name="c")
    assert (response.status, response.error) == (
        400,
        "Wrong input: URL ftp://example.com/c.snapshot with scheme ftp is not supported",
    )
    # serde's Url: no scheme is a format error (Keel leaves out serde_json's position).
    relative = await api.call("PUT", RECOVER, json={"location": "whatever"}, name="c")
    assert (relative.status, relative.error) == (
        400,
        "Format error in JSON body: relative URL without a base",
    )
    outside = tmp_path / "outside.snapshot"
    outside.write_bytes(b"x")
    (tmp_path / "snapshots").mkdir(exist_ok=True)
    snapshots_dir = (tmp_path / "snapshots").resolve()
    forbidden = (
        403,
        f'Forbidden: Snapshot file path must be inside the snapshots directory "{snapshots_dir}"',
    )
    response = await api.call("PUT", RECOVER, json={"location": outside.as_uri()}, name="c")
    assert (response.status, response.error) == forbidden
    escape = (tmp_path / "snapshots" / ".." / "outside.snapshot").as_uri()
    response = await api.call("PUT", RECOVER, json={"location": escape}, name="c")
    assert (response.status, response.error) == forbidden
    assert (await api.call("PUT", RECOVER, json={}, name="c")).status == 400
    assert (await api.call("GET", "/collections/{collection_name}", name="c")).status == 404


async def test_recover_checks_a_file_location_in_qdrants_order_and_words(
    api: Api, tmp_path: Path
) -> None:
    """Qdrant's download.rs: not a local path (a host other than localhost) is 400, a
    missing file 400 (before the directory check, so outside or inside alike), then 403."""
    not_local = "Bad request: Invalid snapshot URI, file path must be absolute or on localhost"
    missing_inside = tmp_path / "snapshots" / "missing.snapshot"
    expected = {
        "file://whatever.snapshot": not_local,
        "file://./etc/passwd": not_local,
        "file:///whatever.snapshot": 'Bad request: Snapshot file "/whatever.snapshot" does not exist',
        "file://localhost/whatever.snapshot": (
            'Bad request: Snapshot file "/whatever.snapshot" does not exist'
        ),
        missing_inside.as_uri(): f'Bad request: Snapshot file "{missing_inside}" does not exist',
    }
    for location, error in expected.items():
        response = await api.call("PUT", RECOVER, json={"location": location}, name="nope")
        assert (response.status, response.error) == (400, error), location
    assert (await api.call("GET", "/collections/{collection_name}", name="nope")).status == 404


SHA256_LENGTH_PROBLEM = (
    'checksum: Validation error: invalid_sha256_hash [{"length": Number(3), '
    '"expected_length": Number(64), "value": String("abc")}]'
)
SHA256_CHARACTERS_PROBLEM = "checksum: invalid characters, expected 0-9, a-f, A-F"


async def test_a_malformed_checksum_is_qdrants_422_before_anything_is_read(
    api: Api, tmp_path: Path
) -> None:
    """Qdrant validates `checksum` (validate_sha256_hash) with the query or the body: 422
    in the validator's words, before the upload is looked at or the location opened."""
    await api.create_collection("c")
    for checksum, problem in (
        ("abc", SHA256_LENGTH_PROBLEM),
        ("g" * 64, SHA256_CHARACTERS_PROBLEM),
    ):
        response = await upload(api, "c", b"not a snapshot", f"?checksum={checksum}")
        assert (response.status, response.body["status"]["error"]) == (
            422,
            f"Validation error in query parameters: [{problem}]",
        )
        body = {"location": (tmp_path / "nowhere.snapshot").as_uri(), "checksum": checksum}
        response = await api.call("PUT", RECOVER, json=body, name="c")
        assert (response.status, response.error) == (
            422,
            f"Validation error in JSON body: [{problem}]",
        )
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []


@pytest.mark.parametrize("target", ["new", "al"])
async def test_upload_creates_or_replaces(api: Api, tmp_path: Path, target: str) -> None:
    await api.create_collection("c")
    await create_alias(api, "al", "c")
    await upsert_points(api, [1, 2])
    description = await create_snapshot(api, "c")
    data = (tmp_path / "snapshots" / "c" / description["name"]).read_bytes()
    await upsert_points(api, [3])

    response = await upload(api, target, data, "?checksum=" + "1" * 64)
    # Qdrant's words and order (snapshot_api.rs): the upload's hash is "expected".
    assert (response.status, response.body["status"]["error"]) == (
        400,
        f"Checksum mismatch: expected {description['checksum']}, actual {'1' * 64}",
    )
    assert [p["id"] for p in await api.scroll_all("c")] == [1, 2, 3]

    response = await upload(
        api, target, data, f"?priority=snapshot&checksum={description['checksum']}"
    )
    assert response.body["result"] is True
    assert [p["id"] for p in await api.scroll_all(target)] == [1, 2]
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []
    expected_c = [1, 2] if target == "al" else [1, 2, 3]
    assert [p["id"] for p in await api.scroll_all("c")] == expected_c


# ---- full-storage snapshots: /snapshots ----------------------------------------------------

FULL_SNAPSHOTS = "/snapshots"
ONE_FULL_SNAPSHOT = FULL_SNAPSHOTS + "/{snapshot_name}"


async def full_snapshot_call(api: Api, method: str, snapshot_name: str) -> ApiResponse:
    response = await api.client.request(method, f"/snapshots/{snapshot_name}")
    body = await response.json()
    check_response(ONE_FULL_SNAPSHOT, method.lower(), response.status, body)
    return ApiResponse(response.status, body, response.headers)


async def test_full_snapshot_create_list_download_delete(api: Api, tmp_path: Path) -> None:
    """Goal: Qdrant's four /snapshots routes, with its names and shapes. Method: create one
    over two collections and an alias, list it, download it and compare with the file and
    the checksum, delete it, then ask for it again (404 with Qdrant's text)."""
    await api.create_collection("a")
    await api.create_collection("b")
    await create_alias(api, "al", "a")
    await upsert_points(api, [1, 2], name="a")
    await upsert_points(api, [3], name="b")

    created = await api.call("POST", FULL_SNAPSHOTS, query={"wait": "true"})
    description = created.result

    assert created.status == 200
    assert description["name"].startswith("full-snapshot-")
    assert description["name"].endswith(".snapshot")
    path = tmp_path / "snapshots" / description["name"]
    assert path.stat().st_size == description["size"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == description["checksum"]
    assert [p.name for p in (tmp_path / "snapshots").iterdir() if p.name.startswith(".")] == []
    listed = (await api.call("GET", FULL_SNAPSHOTS)).result
    assert listed == [{**description, "creation_time": listed[0]["creation_time"]}]
    response = await api.client.get(f"/snapshots/{description['name']}")
    assert response.status == 200
    assert response.content_type == "application/octet-stream"
    assert await response.read() == path.read_bytes()

    deleted = await full_snapshot_call(api, "DELETE", description["name"])
    assert deleted.result is True
    assert not path.exists()
    assert (await api.call("GET", FULL_SNAPSHOTS)).result == []
    missing = await full_snapshot_call(api, "GET", description["name"])
    assert missing.status == 404
    assert missing.error == f"Not found: Snapshot {description['name']} not found"
    gone = await full_snapshot_call(api, "DELETE", description["name"])
    assert gone.status == 404
    assert gone.error == f"Not found: Snapshot {description['name']} not found"


async def test_full_snapshots_list_none_and_ignore_collection_snapshots(api: Api) -> None:
    """Collection snapshots live one directory down: /snapshots lists only its own files."""
    assert (await api.call("GET", FULL_SNAPSHOTS)).result == []
    await api.create_collection("c")
    await create_snapshot(api, "c")
    assert (await api.call("GET", FULL_SNAPSHOTS)).result == []
    empty = (await api.call("POST", FULL_SNAPSHOTS)).result  # no collection needed
    assert [d["name"] for d in (await api.call("GET", FULL_SNAPSHOTS)).result] == [empty["name"]]


# ---- wait=false: Qdrant's 202 ---------------------------------------------------------------


def assert_accepted(response: ApiResponse) -> None:
    """Qdrant's accepted_response (src/actix/helpers.rs): 202, status "accepted", no result."""
    assert response.status == 202, response.body
    assert set(response.body) == {"status", "time"}, response.body
    assert response.body["status"] == "accepted"
    assert isinstance(response.body["time"], float)


async def test_wait_false_answers_202_accepted_with_the_work_already_done(
    api: Api, tmp_path: Path
) -> None:
    """Goal: create and delete, of collection and full snapshots, answer Qdrant's 202 with
    wait=false, and (Keel's promise) the snapshot exists or is gone when the 202 arrives.
    Method: each call once, then the listing and the files, with no polling."""
    await api.create_collection("c")
    no_wait = {"wait": "false"}
    assert_accepted(await api.call("POST", SNAPSHOTS, name="c", query=no_wait, validate=False))
    [description] = (await api.call("GET", SNAPSHOTS, name="c")).result
    assert (tmp_path / "snapshots" / "c" / description["name"]).is_file()
    deleted = await api.call(
        "DELETE",
        ONE_SNAPSHOT.replace("{snapshot_name}", description["name"]),
        query=no_wait,
        validate=False,
    )
    assert_accepted(deleted)
    assert (await api.call("GET", SNAPSHOTS, name="c")).result == []

    assert_accepted(await api.call("POST", FULL_SNAPSHOTS, query=no_wait, validate=False))
    [full] = (await api.call("GET", FULL_SNAPSHOTS)).result
    assert (tmp_path / "snapshots" / full["name"]).is_file()
    path = ONE_FULL_SNAPSHOT.replace("{snapshot_name}", full["name"])
    assert_accepted(await api.call("DELETE", path, query=no_wait, validate=False))
    assert (await api.call("GET", FULL_SNAPSHOTS)).result == []
    # wait=true (and no wait) still answers the result.
    created = await api.call("POST", SNAPSHOTS, name="c", query={"wait": "true"})
    assert created.status == 200
    assert created.result["name"].endswith(".snapshot")


async def test_wait_false_logs_a_failure_after_its_202(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As Qdrant's time_or_accept: the client asked not to wait, so a failing snapshot
    operation still answers 202, and the failure is logged, not lost."""
    caplog.set_level("WARNING", logger="server.api.snapshots")
    no_wait = {"wait": "false"}
    assert_accepted(await api.call("POST", SNAPSHOTS, name="nope", query=no_wait, validate=False))
    location = (tmp_path / "snapshots" / "missing.snapshot").as_uri()
    recovered = await api.call(
        "PUT", RECOVER, name="new", json={"location": location}, query=no_wait, validate=False
    )
    assert_accepted(recovered)
    assert (await api.call("GET", "/collections/{collection_name}", name="new")).status == 404
    failures = [r.getMessage() for r in caplog.records if "wait=false" in r.getMessage()]
    assert len(failures) == 2, failures
    assert "Collection `nope` doesn't exist!" in failures[0]
    assert "missing.snapshot" in failures[1]
    assert "does not exist" in failures[1]
