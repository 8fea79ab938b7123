"""Collection handlers: list, create, get (CollectionInfo), update (PATCH), exists, delete.

Owns: the six routes under `/collections` that manage collections; each parses, calls one
catalog method and shapes the answer.
Not here: what a valid config is or how it is shown (server/wire/collection_config.py), how a PATCH
body changes a config (server/wire/collection_update.py).

Qdrant 1.19 (`src/actix/api/collections_api.rs`): creation checks the name strictly
(`validate_collection_name`), the other routes with the legacy rule; DELETE of a missing
collection answers `{"result": false}`, not 404.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from server.api.context import catalog_of, collection_name_of, read_json
from server.api.telemetry import update_queue
from server.responses import ApiError, ok
from server.wire.collection_config import collection_info_json, parse_create_collection
from server.wire.collection_update import parse_update_collection
from server.wire.schemas import check_collection_name


async def list_collections(request: web.Request) -> web.Response:
    names = catalog_of(request).names()
    return ok(request, {"collections": [{"name": name} for name in names]})


async def create_collection(request: web.Request) -> web.Response:
    name = request.match_info["collection_name"]
    check_collection_name(name, is_create=True)
    config = parse_create_collection(await read_json(request))
    check_timeout_param(request.query)
    await catalog_of(request).create(name, config)
    return ok(request, True)


async def get_collection(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    collection = catalog_of(request).get(name)
    info = collection_info_json(collection.config, collection.stats())
    # Qdrant's UpdateQueueInfo: ops acknowledged and not applied yet (its `deferred_points`
    # is left out: Keel defers no points).
    info["update_queue"] = {"length": update_queue(collection)["length"]}
    return ok(request, info)


async def update_collection(request: web.Request) -> web.Response:
    """PATCH: merge the body into the config; durable (config.json replaced) when answered."""
    name = collection_name_of(request)
    update = parse_update_collection(await read_json(request))
    check_timeout_param(request.query)
    await catalog_of(request).update_config(name, update.apply)
    return ok(request, True)


async def collection_exists(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    return ok(request, {"exists": catalog_of(request).exists(name)})


async def delete_collection(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    check_timeout_param(request.query)
    return ok(request, await catalog_of(request).delete(name))


def check_timeout_param(query: Mapping[str, str]) -> None:
    """Qdrant's `WaitTimeout` (u64 ≥ 1); Keel's create and delete are synchronous anyway."""
    if "timeout" not in query:
        return
    text = query["timeout"]
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, "Deserialize error in query parameters: invalid digit found in string")
    if int(text) < 1:
        message = "[timeout: value 0 invalid, must be 1 or larger]"
        raise ApiError(422, f"Validation error in query parameters: {message}")


ROUTES = [
    ("GET", "/collections", list_collections),
    ("PUT", "/collections/{collection_name}", create_collection),
    ("GET", "/collections/{collection_name}", get_collection),
    ("PATCH", "/collections/{collection_name}", update_collection),
    ("DELETE", "/collections/{collection_name}", delete_collection),
    ("GET", "/collections/{collection_name}/exists", collection_exists),
]
