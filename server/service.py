"""Service endpoints: `/` (version), health probes, and a minimal `/telemetry`.

Owns: the answers of `GET /`, `/healthz`, `/livez`, `/readyz`, `/telemetry`.
Not here: collections and points (collections.py, points.py).

Qdrant 1.19 (`src/actix/api/service_api.rs`): `/` is *not* wrapped in the envelope; the
probes answer text/plain; `/readyz` is 503 until every shard is loaded, which for Keel is
until the catalog's recovery (WAL replay) has finished.
"""

from __future__ import annotations

from aiohttp import web

from engine.errors import NotReady
from server.context import INFO_KEY, catalog_of
from server.responses import json_response, ok

QDRANT_TITLE = "qdrant - vector search engine"
QDRANT_VERSION = "1.19.0"  # the API version Keel speaks; Keel's own is in server/version.py
HEALTHZ_TEXT = "healthz check passed"
READY_TEXT = "all shards are ready"
NOT_READY_TEXT = "some shards are not ready"


async def root(request: web.Request) -> web.Response:
    """Qdrant's version info, unwrapped: tools check exactly these three keys."""
    info = request.app[INFO_KEY]
    return json_response({"title": QDRANT_TITLE, "version": QDRANT_VERSION, "commit": info.commit})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text=HEALTHZ_TEXT, content_type="text/plain")


async def readyz(request: web.Request) -> web.Response:
    if catalog_of(request).is_ready:
        return web.Response(text=READY_TEXT, content_type="text/plain")
    return web.Response(text=NOT_READY_TEXT, status=503, content_type="text/plain")


async def telemetry(request: web.Request) -> web.Response:
    """A minimal TelemetryData: an id, the app (name `keel`, Keel's version), collections."""
    info = request.app[INFO_KEY]
    try:
        collection_count = len(catalog_of(request).names())
    except NotReady:
        collection_count = 0  # still recovering; telemetry should answer anyway
    result = {
        "id": info.telemetry_id,
        "app": {"name": "keel", "version": info.keel_version, "startup": info.started_at},
        "collections": {"number_of_collections": collection_count},
    }
    return ok(request, result)


ROUTES = [
    ("GET", "/", root),
    ("GET", "/healthz", healthz),
    ("GET", "/livez", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/telemetry", telemetry),
]
