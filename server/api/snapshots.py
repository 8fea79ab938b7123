"""Snapshot handlers: a collection's (create, list, download, delete, recover, upload) and
full-storage ones (create, list, download, delete).

Owns: the six routes under `/collections/{collection_name}/snapshots` and the four under
`/snapshots`; each parses, calls one engine function and shapes Qdrant's answer
(SnapshotDescription, or `true`).
Not here: the snapshot file formats and their checks (engine/snapshot.py,
engine/full_snapshot.py), taking a snapshot and replacing a collection by one
(engine/catalog.py), where snapshots live (config.py `storage.snapshots_path`, handed over
by app.py). Full snapshots lie directly in that directory, collection snapshots one
directory down; like Qdrant, a full snapshot is restored only offline (`keel snapshot
restore-full`, server/commands/snapshot_cli.py).

Qdrant 1.19 (`src/actix/api/snapshot_api.rs`, `lib/storage/src/content_manager/snapshots/`):
an alias names its collection everywhere; recover and upload create the collection or
replace it; a `file://` location must lie inside the snapshots directory (403 otherwise);
an `http(s)://` one is downloaded first (server/api/snapshot_download.py, `api_key` sent
with it). With `wait=false` the write routes answer Qdrant's 202 `{"status": "accepted"}`,
a failure only logged (`answer_or_accept`). Keel differs in two ways: with `wait=false` it
still does the work before answering (so the 202 comes once the snapshot exists, or is
gone); `priority` is accepted and ignored (one node has no replicas to prefer).
"""

from __future__ import annotations

import asyncio
import logging
import re
import string
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from engine import snapshot
from engine.errors import BadRequest, FormatError, KeelError, ValidationError
from engine.logfmt import log_event
from server.api import snapshot_download
from server.api.context import (
    SNAPSHOT_URL_RECOVERY_KEY,
    SNAPSHOTS_PATH_KEY,
    catalog_of,
    collection_name_of,
    read_json,
)
from server.responses import ApiError, elapsed_s, json_response, ok
from server.wire.schemas import parse_update_params
from server.wire.serde_text import (
    invalid_type,
    missing_field,
    rust_debug_str,
    unknown_variant,
    untagged_mismatch,
)

log = logging.getLogger(__name__)

# A check the shard routes run as part of the work (collection and shard exist), so that,
# as in Qdrant, it fails the work (logged after a 202) rather than the request.
Check = Callable[[], None] | None

SNAPSHOTS = "/collections/{collection_name}/snapshots"
FULL_SNAPSHOTS = "/snapshots"
SNAPSHOT_PRIORITIES = ("no_sync", "snapshot", "replica")
UPLOAD_FIELD_NAME = "snapshot"  # Qdrant's multipart field
UPLOAD_PARTS_MAX = 16  # multipart parts looked at before giving up on finding the snapshot
UPLOAD_CHUNK_BYTES = snapshot.CHUNK_BYTES
SHA256_HEX_DIGITS = 64
# What the url crate reads as an absolute URL's start (a scheme, then ':'); Qdrant's
# ShardSnapshotLocation reads any other string as a file name.
URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


async def create_snapshot(request: web.Request, check: Check = None) -> web.Response:
    """POST .../snapshots; `check` (the shard routes') runs as part of the work."""
    name = collection_name_of(request)
    wait = parse_wait(request.query)

    async def work() -> dict[str, Any]:
        if check is not None:
            check()
        snapshots_path = request.app[SNAPSHOTS_PATH_KEY]
        return snapshot_description_json(
            await catalog_of(request).create_snapshot(name, snapshots_path)
        )

    return await answer_or_accept(request, wait, work)


async def list_snapshots(request: web.Request) -> web.Response:
    directory = snapshot_directory(request)
    loop = asyncio.get_running_loop()
    infos = await loop.run_in_executor(None, snapshot.list_snapshots, directory)
    return ok(request, [snapshot_description_json(info) for info in infos])


async def download_snapshot(request: web.Request) -> web.StreamResponse:
    directory = snapshot_directory(request)
    path = snapshot.find_snapshot(directory, request.match_info["snapshot_name"])
    # Streamed by aiohttp (sendfile where it can), never read into memory.
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def delete_snapshot(request: web.Request, check: Check = None) -> web.Response:
    wait = parse_wait(request.query)

    async def work() -> bool:
        if check is not None:
            check()
        directory = snapshot_directory(request)
        loop = asyncio.get_running_loop()
        snapshot_name = request.match_info["snapshot_name"]
        await loop.run_in_executor(None, snapshot.delete_snapshot, directory, snapshot_name)
        return True

    return await answer_or_accept(request, wait, work)


async def recover_snapshot(request: web.Request, check: Check = None) -> web.Response:
    """PUT .../snapshots/recover {"location": "file:///...", "checksum": ...}."""
    name = collection_name_of(request)
    wait = parse_wait(request.query)
    location, checksum, api_key = parse_snapshot_recover(await read_json(request))

    async def work() -> bool:
        if check is not None:
            check()
        if urllib.parse.urlsplit(location).scheme in ("http", "https"):
            await recover_downloaded(request, name, location, checksum, api_key)
        else:
            path = local_snapshot_path(location, request.app[SNAPSHOTS_PATH_KEY])
            await catalog_of(request).restore(name, path, checksum)
        return True

    return await answer_or_accept(request, wait, work)


async def upload_snapshot(request: web.Request, check: Check = None) -> web.Response:
    """POST .../snapshots/upload, multipart field `snapshot`; query `checksum`, `priority`."""
    name = collection_name_of(request)
    wait, checksum = parse_upload_query(request.query)
    catalog = catalog_of(request)
    upload = await _receive_upload(request, catalog.new_upload_path())

    async def work() -> bool:
        # First, as in Qdrant (snapshot_api.rs): the upload's checksum, then the shard's
        # collection. Qdrant's words and order: its hash as "expected", then the given one.
        if checksum is not None and checksum.lower() != upload.sha256:
            message = f"Checksum mismatch: expected {upload.sha256}, actual {checksum}"
            raise ApiError(400, message)
        if check is not None:
            check()
        await catalog.restore(name, upload.path, None)
        return True

    loop = asyncio.get_running_loop()
    try:
        return await answer_or_accept(request, wait, work)
    finally:
        await loop.run_in_executor(None, upload.discard)


async def create_full_snapshot(request: web.Request) -> web.Response:
    """POST /snapshots: every collection and the aliases (engine/full_snapshot.py)."""
    wait = parse_wait(request.query)

    async def work() -> dict[str, Any]:
        snapshots_path = request.app[SNAPSHOTS_PATH_KEY]
        return snapshot_description_json(
            await catalog_of(request).create_full_snapshot(snapshots_path)
        )

    return await answer_or_accept(request, wait, work)


async def list_full_snapshots(request: web.Request) -> web.Response:
    catalog_of(request).names()  # NotReady while recovering, like every storage call
    loop = asyncio.get_running_loop()
    directory = request.app[SNAPSHOTS_PATH_KEY]
    infos = await loop.run_in_executor(None, snapshot.list_snapshots, directory)
    return ok(request, [snapshot_description_json(info) for info in infos])


async def download_full_snapshot(request: web.Request) -> web.StreamResponse:
    directory = request.app[SNAPSHOTS_PATH_KEY]
    path = snapshot.find_snapshot(directory, request.match_info["snapshot_name"])
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def delete_full_snapshot(request: web.Request) -> web.Response:
    wait = parse_wait(request.query)

    async def work() -> bool:
        loop = asyncio.get_running_loop()
        directory = request.app[SNAPSHOTS_PATH_KEY]
        snapshot_name = request.match_info["snapshot_name"]
        await loop.run_in_executor(None, snapshot.delete_snapshot, directory, snapshot_name)
        return True

    return await answer_or_accept(request, wait, work)


async def answer_or_accept(
    request: web.Request, wait: bool, work: Callable[[], Awaitable[Any]]
) -> web.Response:
    """Qdrant's `time_or_accept` (src/actix/helpers.rs): with `wait` (the default), the
    work's result or its error; with `wait=false`, 202 `{"status": "accepted", "time"}`,
    and a failure of the work is only logged, as Qdrant logs it.

    Unlike Qdrant, Keel does the work before answering either way: when the 202 goes out,
    the snapshot is already made, deleted or recovered (or its failure logged).
    """
    if wait:
        return ok(request, await work())
    try:
        await work()
    except (KeelError, ApiError) as error:
        # The client asked not to wait for the outcome; Qdrant's spawned task logs it.
        log_event(
            log,
            logging.WARNING,
            "snapshot operation failed after wait=false",
            method=request.method,
            path=request.path,
            error=str(error),
        )
    return json_response({"status": "accepted", "time": elapsed_s(request)}, status=202)


def snapshot_description_json(info: snapshot.SnapshotInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "creation_time": info.created_at.strftime("%Y-%m-%dT%H:%M:%S"),
        "size": info.size_bytes,
        "checksum": info.checksum,
    }


def parse_snapshot_recover(
    data: Any, *, is_shard: bool = False
) -> tuple[str, str | None, str | None]:
    """SnapshotRecover (or, `is_shard`, ShardSnapshotRecover) -> (location, checksum,
    api_key); priority is checked, unused. A collection's location is a URL (serde's
    `Url`: a string without a scheme is a format error); a shard's may also be a name."""
    struct_name = "struct ShardSnapshotRecover" if is_shard else "struct SnapshotRecover"
    if not isinstance(data, dict):
        raise invalid_type(data, struct_name)
    if "location" not in data:
        raise missing_field("location")
    location, checksum = data["location"], data.get("checksum")
    if not isinstance(location, str):
        if is_shard:
            raise untagged_mismatch("ShardSnapshotLocation")
        raise invalid_type(location, "a string")
    if not is_shard and URL_SCHEME.match(location) is None:
        raise FormatError("relative URL without a base")  # the url crate's words
    if checksum is not None and not isinstance(checksum, str):
        raise invalid_type(checksum, "a string")
    if data.get("api_key") is not None and not isinstance(data["api_key"], str):
        raise invalid_type(data["api_key"], "a string")
    priority = data.get("priority")
    if priority is not None and priority not in SNAPSHOT_PRIORITIES:
        raise unknown_variant(priority, SNAPSHOT_PRIORITIES)
    if checksum is not None and (problem := sha256_problem(checksum)) is not None:
        raise ValidationError(f"checksum: {problem}")
    return location, checksum, data.get("api_key")


def parse_wait(query: Mapping[str, str]) -> bool:
    """Qdrant's SnapshottingParam: `wait` (default true), parsed as an update's is; other
    keys (`ordering`, `timeout`) are ignored, as serde ignores fields the struct lacks."""
    return parse_update_params({"wait": query["wait"]} if "wait" in query else {}).wait


def parse_upload_query(query: Mapping[str, str]) -> tuple[bool, str | None]:
    """Qdrant's SnapshotUploadingParam -> (wait, checksum): `wait` and `priority` parsed
    (400), then `checksum` validated (422)."""
    wait = parse_wait(query)
    _check_priority(query.get("priority"))
    checksum = query.get("checksum")
    if checksum is not None and (problem := sha256_problem(checksum)) is not None:
        raise ApiError(422, f"Validation error in query parameters: [checksum: {problem}]")
    return wait, checksum


def sha256_problem(checksum: str) -> str | None:
    """Qdrant's description of a checksum that is not a sha256 in hex, or None if it is one.

    Qdrant's `validate_sha256_hash` (lib/common/common/src/validation.rs) gives a wrong
    length no message, so Qdrant prints the validator's own text, whose parameters come
    from a HashMap in an order that changes from run to run; Keel writes one of them.
    """
    if len(checksum.encode()) != SHA256_HEX_DIGITS:
        return (
            f"Validation error: invalid_sha256_hash [{{"
            f'"length": Number({len(checksum.encode())}), '
            f'"expected_length": Number({SHA256_HEX_DIGITS}), '
            f'"value": String({rust_debug_str(checksum)})}}]'
        )
    if any(c not in string.hexdigits for c in checksum):
        return "invalid characters, expected 0-9, a-f, A-F"
    return None


def local_snapshot_path(location: str, snapshots_path: Path) -> Path:
    """The file a `file://` location names, checked in Qdrant's order and words
    (lib/storage/src/content_manager/snapshots/download.rs): a file path (no host but
    `localhost`), an existing file (400 each), inside the snapshots directory (403)."""
    url = urllib.parse.urlsplit(location)
    if url.scheme != "file":
        raise BadRequest(f"URL {location} with scheme {url.scheme} is not supported")
    if url.netloc not in ("", "localhost") or not url.path.startswith("/"):
        raise ApiError(
            400, "Bad request: Invalid snapshot URI, file path must be absolute or on localhost"
        )
    path = Path(urllib.parse.unquote(url.path))
    if not path.exists():
        message = f"Snapshot file {rust_debug_str(str(path))} does not exist"
        raise ApiError(400, f"Bad request: {message}")
    # resolve(): neither `..` nor a symlink may lead out of the snapshots directory.
    try:
        resolved_path = path.resolve(strict=True)
    except OSError as error:
        message = f"Failed to resolve snapshot path {rust_debug_str(str(path))}: {error.strerror}"
        raise ApiError(400, f"Bad request: {message} (os error {error.errno})") from None
    snapshots_dir = snapshots_path.resolve()
    if not resolved_path.is_relative_to(snapshots_dir):
        directory_text = rust_debug_str(str(snapshots_dir))
        raise ApiError(
            403,
            f"Forbidden: Snapshot file path must be inside the snapshots directory {directory_text}",
        )
    return path


async def recover_downloaded(
    request: web.Request, name: str, url: str, checksum: str | None, api_key: str | None
) -> None:
    """Download `url` into the storage's tmp/, check `checksum` against what arrived (Qdrant's
    text), restore it as a `file://` snapshot is restored, and remove the download. Refused
    (Qdrant's 403) when service.enable_snapshot_url_recovery is false."""
    if not request.app[SNAPSHOT_URL_RECOVERY_KEY]:
        message = "Snapshot recovery from remote URLs is disabled in the configuration"
        raise ApiError(403, f"Forbidden: {message}")
    catalog = catalog_of(request)
    upload = await snapshot_download.download_snapshot(url, catalog.new_upload_path(), api_key)
    loop = asyncio.get_running_loop()
    try:
        if checksum is not None and upload.sha256 != checksum.lower():
            message = f"Snapshot checksum mismatch: expected {checksum}, got {upload.sha256}"
            raise BadRequest(message)
        await catalog.restore(name, upload.path, None)
    finally:
        await loop.run_in_executor(None, upload.discard)


def snapshot_directory(request: web.Request) -> Path:
    """The snapshot directory of the collection (or alias) in the path; NotFound if none."""
    collection = catalog_of(request).get(collection_name_of(request))
    return request.app[SNAPSHOTS_PATH_KEY] / collection.name


def _check_priority(priority: str | None) -> None:
    if priority is not None and priority not in SNAPSHOT_PRIORITIES:
        message = unknown_variant(priority, SNAPSHOT_PRIORITIES).args[0]
        raise ApiError(400, f"Deserialize error in query parameters: {message}")


async def _receive_upload(request: web.Request, path: Path) -> snapshot.SnapshotUpload:
    """Stream the multipart field `snapshot` into a new file at `path`, chunk by chunk."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(f"expected a multipart/form-data body, got {request.content_type}")
    reader = await request.multipart()
    loop = asyncio.get_running_loop()
    for _ in range(UPLOAD_PARTS_MAX):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name != UPLOAD_FIELD_NAME:
            await part.release()
            continue
        upload = await loop.run_in_executor(None, snapshot.SnapshotUpload, path)
        try:
            while chunk := await part.read_chunk(UPLOAD_CHUNK_BYTES):
                await loop.run_in_executor(None, upload.write, chunk)
            await loop.run_in_executor(None, upload.close)
        except BaseException:
            await loop.run_in_executor(None, upload.discard)
            raise
        return upload
    raise BadRequest(f"multipart body has no `{UPLOAD_FIELD_NAME}` field")


ROUTES = [
    ("POST", SNAPSHOTS, create_snapshot),
    ("GET", SNAPSHOTS, list_snapshots),
    ("POST", SNAPSHOTS + "/upload", upload_snapshot),
    ("PUT", SNAPSHOTS + "/recover", recover_snapshot),
    ("GET", SNAPSHOTS + "/{snapshot_name}", download_snapshot),
    ("DELETE", SNAPSHOTS + "/{snapshot_name}", delete_snapshot),
    ("POST", FULL_SNAPSHOTS, create_full_snapshot),
    ("GET", FULL_SNAPSHOTS, list_full_snapshots),
    ("GET", FULL_SNAPSHOTS + "/{snapshot_name}", download_full_snapshot),
    ("DELETE", FULL_SNAPSHOTS + "/{snapshot_name}", delete_full_snapshot),
]
