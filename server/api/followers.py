"""Keel-only endpoints for WAL followers (`keel follow`), under `/keel/` so that they never
clash with a path of Qdrant's API.

Owns:
- `PUT /keel/collections/{c}/followers/{name}` body `{"next_op_id": N}` (or `null`: the
  next op not yet applied), optionally `"incarnation": ID`: register a follower, or ack its
  progress. A write (needs the read-write key). Answers `{"name", "next_op_id",
  "lost_reason", "incarnation"}` (the collection's incarnation id: it changes when the
  collection is restored from a snapshot or deleted and created again).
- `GET /keel/collections/{c}/followers`: every follower (a read).
- `DELETE /keel/collections/{c}/followers/{name}`: forget it (a write); true if it existed.
- `GET /keel/collections/{c}/wal?from_op_id=N&limit=M`: durable ops from N on, each as
  `{"op_id", "request": {"method", "path", "body"}}` (server/wire/op_requests.py), with
  `first_op_id` (the oldest op the WAL still holds), `last_op_id` (the last durable
  one, for lag) and `incarnation`; `&incarnation=ID` refuses to read another history. A read.
A lost follower, one asking for ops already truncated, or one naming another incarnation
is answered 409 with a message that says to re-run `keel migrate`.
Not here: retention (engine/wal/followers.py), reading the log (engine/wal/log.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from engine.errors import BadRequest, Conflict
from engine.wal.followers import REMIGRATE_HINT, Follower, check_follower_name
from server.api.context import catalog_of, collection_name_of, off_loop, read_json
from server.responses import ok
from server.wire.op_requests import op_request

PREFIX = "/keel/collections/{collection_name}"
WAL_READ_COUNT_DEFAULT = 256
WAL_READ_COUNT_MAX = 4_096
# Bodies of one answer, as CBOR; the JSON is a few times bigger (vectors as text).
WAL_READ_BYTES_MAX = 4 * 1024 * 1024


async def put_follower(request: web.Request) -> web.Response:
    collection = catalog_of(request).get(collection_name_of(request))
    name = request.match_info["follower_name"]
    check_follower_name(name)
    data = await read_json(request)
    next_op_id = _parse_next_op_id(data)
    incarnation = _parse_incarnation(data.get("incarnation"))
    follower = await collection.register_follower(name, next_op_id, incarnation)
    return ok(request, follower_json(follower, collection.incarnation))


async def list_followers(request: web.Request) -> web.Response:
    collection = catalog_of(request).get(collection_name_of(request))
    incarnation = collection.incarnation
    return ok(request, [follower_json(f, incarnation) for f in collection.followers.list()])


async def delete_follower(request: web.Request) -> web.Response:
    collection = catalog_of(request).get(collection_name_of(request))
    name = request.match_info["follower_name"]
    check_follower_name(name)
    loop = asyncio.get_running_loop()
    # The registry file is replaced and fsynced: never on the event loop.
    is_removed = await loop.run_in_executor(None, collection.followers.remove, name)
    return ok(request, is_removed)


async def read_wal(request: web.Request) -> web.Response:
    collection = catalog_of(request).get(collection_name_of(request))
    from_op_id = _query_int(request, "from_op_id", None)
    count_max = _query_int(request, "limit", WAL_READ_COUNT_DEFAULT)
    if not 1 <= count_max <= WAL_READ_COUNT_MAX:
        raise BadRequest(f"limit must be 1..{WAL_READ_COUNT_MAX}")
    collection.check_incarnation(_parse_incarnation(request.query.get("incarnation")))
    follower_name = request.query.get("follower")
    if follower_name is not None:
        _check_not_lost(collection.followers.get(follower_name))
    first_op_id, last_op_id = collection.wal_bounds()
    if from_op_id is None or from_op_id < 0:
        raise BadRequest("query parameter from_op_id (an op id >= 0) is required")
    if from_op_id < first_op_id:
        raise Conflict(
            f"op {from_op_id} of collection {collection.name} is no longer in the WAL (it "
            f"starts at op {first_op_id}); {REMIGRATE_HINT}"
        )
    records = []
    if from_op_id <= last_op_id:
        records = await collection.read_wal(from_op_id, count_max, WAL_READ_BYTES_MAX)
    is_single_unnamed = collection.config.is_single_unnamed
    rendered = await off_loop(
        len(records) * 1024, _render_records, collection.name, records, is_single_unnamed
    )
    answer = {
        "records": rendered,
        "first_op_id": first_op_id,
        "last_op_id": last_op_id,
        "incarnation": collection.incarnation,
    }
    return ok(request, answer)


def follower_json(follower: Follower, incarnation: str) -> dict[str, Any]:
    return {
        "name": follower.name,
        "next_op_id": follower.next_op_id,
        "lost_reason": follower.lost_reason,
        "incarnation": incarnation,
    }


def _render_records(
    collection_name: str, records: list[tuple[int, Any]], is_single_unnamed: bool
) -> list[dict[str, Any]]:
    return [
        {"op_id": op_id, "request": op_request(collection_name, op, is_single_unnamed).to_json()}
        for op_id, op in records
    ]


def _check_not_lost(follower: Follower | None) -> None:
    if follower is not None and follower.is_lost:
        raise Conflict(
            f"follower {follower.name!r} is lost: {follower.lost_reason}; {REMIGRATE_HINT}"
        )


def _parse_next_op_id(data: Any) -> int | None:
    if type(data) is not dict or "next_op_id" not in data:
        raise BadRequest('body must be {"next_op_id": N} (N an op id, or null)')
    value = data["next_op_id"]
    if value is not None and (type(value) is not int or value < 0):
        raise BadRequest(f"next_op_id must be an op id >= 0 or null, got {value!r}")
    return value


def _parse_incarnation(value: Any) -> str | None:
    if value is not None and (type(value) is not str or not value.isalnum() or len(value) > 64):
        raise BadRequest(f"incarnation must be a collection's incarnation id, got {value!r}")
    return value


def _query_int(request: web.Request, name: str, default: int | None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer, got {text!r}") from None


ROUTES = [
    ("GET", PREFIX + "/followers", list_followers),
    ("PUT", PREFIX + "/followers/{follower_name}", put_follower),
    ("DELETE", PREFIX + "/followers/{follower_name}", delete_follower),
    ("GET", PREFIX + "/wal", read_wal),
]
