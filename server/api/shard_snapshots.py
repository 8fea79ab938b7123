"""Shard snapshot handlers: Keel's collection is one shard, id 0, and its snapshots are the
collection's.

Owns: the six routes under `/collections/{collection_name}/shards/{shard_id}/snapshots`
(create, list, download, delete, recover, upload); each checks the shard, then answers as
the collection snapshot route does.
Also `GET .../shards/{shard_id}/snapshot`: a snapshot made for the request, streamed, and not
kept (written to the storage's tmp/ while it streams, deleted after, or by the next start if
Keel stops meanwhile).
Also `POST .../shards/{shard_id}/snapshot/partial/recover`: checked as Qdrant checks it, then
501 (Keel makes no partial snapshots; the other partial routes are in not_implemented.py).
Not here: the collection snapshot handlers these hand over to (server/api/snapshots.py).

Qdrant 1.19 (`src/actix/api/snapshot_api.rs`, `lib/collection/src/shards/shard_holder/`):
the shard id is a u32 path parameter (400 "Deserialize error in path parameters" if not);
the collection is looked up first (404), then the shard: one the collection does not have
is 404 "Not found: shard N not found". For create, delete, recover and upload those lookups
are part of the work, so with `wait=false` their failure is logged after a 202, as in Qdrant. Recovering or uploading a shard snapshot needs the
collection to exist; it never creates one.

Recover takes Qdrant's ShardSnapshotLocation: an `http(s)://` URL, downloaded as the
collection route downloads it, or the bare name of one of the shard's snapshots; another
URL (`file://` included) is 400 `Invalid snapshot URL ...: URLs with file scheme are not
supported`, as in Qdrant (src/common/snapshots.rs).

Keel differs where one shard makes a difference invisible or impossible: a snapshot of
shard 0 *is* a snapshot of the collection (the same file, name and checksum, listed by both
routes), and recovering one replaces the collection as a collection snapshot does, its
config included (Qdrant keeps the collection's config and replaces the shard's data).
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.parse
from pathlib import Path

from aiohttp import web

from engine import snapshot
from engine.errors import BadRequest, NotFound, NotImplementedYet
from server.api import snapshots
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ApiError
from server.wire.serde_text import rust_debug_str

SHARD_SNAPSHOTS = "/collections/{collection_name}/shards/{shard_id}/snapshots"
SHARD_ID = 0  # the one shard of a Keel collection
U32_MAX = 2**32 - 1


async def create_shard_snapshot(request: web.Request) -> web.Response:
    parse_shard_id(request)
    return await snapshots.create_snapshot(request, check=lambda: check_shard(request))


async def list_shard_snapshots(request: web.Request) -> web.Response:
    check_shard(request)
    return await snapshots.list_snapshots(request)


async def download_shard_snapshot(request: web.Request) -> web.StreamResponse:
    check_shard(request)
    return await snapshots.download_snapshot(request)


async def delete_shard_snapshot(request: web.Request) -> web.Response:
    parse_shard_id(request)
    return await snapshots.delete_snapshot(request, check=lambda: check_shard(request))


async def recover_shard_snapshot(request: web.Request) -> web.Response:
    """PUT .../shards/{shard_id}/snapshots/recover: Qdrant's ShardSnapshotLocation, an
    http(s) URL (downloaded) or the name of one of the shard's snapshots (any other URL
    is 400); the collection and shard are looked up first, as part of the work."""
    parse_shard_id(request)
    name = collection_name_of(request)
    wait = snapshots.parse_wait(request.query)
    location, checksum, api_key = snapshots.parse_snapshot_recover(
        await read_json(request), is_shard=True
    )

    async def work() -> bool:
        check_shard(request)
        if snapshots.URL_SCHEME.match(location) is None:
            path = _shard_snapshot_path(request, location)
            await catalog_of(request).restore(name, path, checksum)
            return True
        scheme = urllib.parse.urlsplit(location).scheme
        if scheme not in ("http", "https"):
            raise BadRequest(
                f"Invalid snapshot URL {location}: URLs with {scheme} scheme are not supported"
            )
        await snapshots.recover_downloaded(request, name, location, checksum, api_key)
        return True

    return await snapshots.answer_or_accept(request, wait, work)


async def upload_shard_snapshot(request: web.Request) -> web.Response:
    parse_shard_id(request)
    return await snapshots.upload_snapshot(request, check=lambda: check_shard(request))


async def stream_shard_snapshot(request: web.Request) -> web.StreamResponse:
    """GET .../shards/{shard_id}/snapshot: the collection as of now, as a snapshot file."""
    check_shard(request)
    catalog = catalog_of(request)
    name = collection_name_of(request)
    directory = catalog.new_upload_path().with_suffix(".stream")
    loop = asyncio.get_running_loop()
    try:
        info = await catalog.create_snapshot(name, directory)
        path = directory / catalog.get(name).name / info.name
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{info.name}"',
                "Content-Length": str(info.size_bytes),
            }
        )
        await response.prepare(request)
        # Written chunk by chunk, not as a FileResponse: that one may still be sending
        # (sendfile) when the handler returns and the file is removed (measured: disconnects).
        with open(path, "rb") as file:  # noqa: ASYNC230 - opening is instant; reads are not
            while chunk := await loop.run_in_executor(None, file.read, snapshot.CHUNK_BYTES):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await loop.run_in_executor(None, shutil.rmtree, directory, True)


async def recover_partial_snapshot(request: web.Request) -> web.Response:
    """POST .../shards/{shard_id}/snapshot/partial/recover: 501, after the checks Qdrant
    makes before it reads the upload (the path: shard id 400, collection name 422; then
    `wait`, `priority` 400, `checksum` 422), so a malformed request gets Qdrant's answer."""
    parse_shard_id(request)
    collection_name_of(request)  # its format only, as Qdrant's path validation
    snapshots.parse_upload_query(request.query)
    route = request.match_info.route.resource
    raise NotImplementedYet(f"POST {route.canonical if route else request.path}")


def check_shard(request: web.Request) -> None:
    """The shard id parses as a u32, the collection (or alias) exists, the shard id is 0."""
    shard_id = parse_shard_id(request)
    name = collection_name_of(request)
    catalog_of(request).get(name)
    if shard_id != SHARD_ID:
        raise NotFound(f"shard {shard_id} not found")


def _shard_snapshot_path(request: web.Request, snapshot_name: str) -> Path:
    """The shard's snapshot named `snapshot_name`, in Qdrant's 404s: a name that is not a
    plain file name, then a file that is not there (named by its path)."""
    directory = snapshots.snapshot_directory(request)
    try:
        snapshot.check_snapshot_name(snapshot_name)
    except BadRequest:
        raise NotFound(f"Snapshot {snapshot_name} not found") from None
    path = directory / snapshot_name
    if not path.is_file():
        raise NotFound(f"Snapshot {rust_debug_str(str(path))} not found")
    return path


def parse_shard_id(request: web.Request) -> int:
    """The `{shard_id}` of the path as a u32: Qdrant's 400 if it is not one."""
    text = request.match_info["shard_id"]
    if not (text.isascii() and text.isdigit() and int(text) <= U32_MAX):
        raise ApiError(
            400, f'Deserialize error in path parameters: can not parse "{text}" to a u32'
        )
    return int(text)


ROUTES = [
    ("POST", SHARD_SNAPSHOTS, create_shard_snapshot),
    ("GET", SHARD_SNAPSHOTS, list_shard_snapshots),
    ("POST", SHARD_SNAPSHOTS + "/upload", upload_shard_snapshot),
    ("PUT", SHARD_SNAPSHOTS + "/recover", recover_shard_snapshot),
    ("GET", SHARD_SNAPSHOTS + "/{snapshot_name}", download_shard_snapshot),
    ("DELETE", SHARD_SNAPSHOTS + "/{snapshot_name}", delete_shard_snapshot),
    ("GET", "/collections/{collection_name}/shards/{shard_id}/snapshot", stream_shard_snapshot),
    (
        "POST",
        "/collections/{collection_name}/shards/{shard_id}/snapshot/partial/recover",
        recover_partial_snapshot,
    ),
]
