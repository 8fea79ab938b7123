"""What every handler shares: the app's keys, the catalog, and reading a JSON body.

Owns: `CATALOG_KEY`/`INFO_KEY`/`SNAPSHOTS_PATH_KEY` (set by app.create_app), the collection
name in the path (`collection_name_of`), `read_json`, and `parse_off_loop`, which moves the
parsing of big bodies off the event loop.
Not here: routes or error mapping (app.py), validation rules (server/wire/schemas.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from engine.catalog import Catalog
from server.wire.schemas import check_collection_name, load_json

T = TypeVar("T")

# Bodies up to this size are parsed on the event loop (well under a millisecond); bigger
# ones (a 1000 x 128 upsert is ~1.3 MB of JSON, a few ms of CPU) in a worker thread so the
# loop keeps answering other requests (STYLE.md §7).
PARSE_ON_LOOP_BYTES_MAX = 64 * 1024


@dataclass(frozen=True)
class ServerInfo:
    """Facts fixed when the app is built: versions and identity for `/` and `/telemetry`."""

    keel_version: str
    commit: str
    telemetry_id: str
    started_at: str  # RFC 3339, UTC
    max_request_size_bytes: int


CATALOG_KEY = web.AppKey("catalog", Catalog)
INFO_KEY = web.AppKey("server_info", ServerInfo)
SNAPSHOTS_PATH_KEY = web.AppKey("snapshots_path", Path)  # storage.snapshots_path
# service.enable_snapshot_url_recovery: whether http(s):// snapshot locations are recovered.
SNAPSHOT_URL_RECOVERY_KEY = web.AppKey("snapshot_url_recovery", bool)


def catalog_of(request: web.Request) -> Catalog:
    return request.app[CATALOG_KEY]


def collection_name_of(request: web.Request) -> str:
    """The `{collection_name}` of the route, checked (BadRequest if Qdrant would refuse it)."""
    name = request.match_info["collection_name"]
    check_collection_name(name)
    return name


async def read_body(request: web.Request) -> bytes:
    """The whole body; aiohttp raises 413 past `client_max_size` (mapped in app.py)."""
    return await request.read()


async def read_json(request: web.Request) -> Any:
    """The body parsed as JSON (FormatError if it is not JSON)."""
    return load_json(await read_body(request))


async def parse_off_loop(body: bytes, parse: Callable[[Any], T]) -> T:
    """`parse(load_json(body))`, in a worker thread when the body is big."""
    return await off_loop(len(body), _load_and_parse, body, parse)


async def off_loop(size_bytes: int, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` inline for small inputs, else in the default executor.

    Only for pure CPU work on request data: it must not touch engine state.
    """
    if size_bytes <= PARSE_ON_LOOP_BYTES_MAX:
        return function(*args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, function, *args)


def _load_and_parse(body: bytes, parse: Callable[[Any], T]) -> T:
    return parse(load_json(body))
