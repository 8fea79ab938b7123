"""Service endpoints: `/` (version), health probes, `/telemetry` and `/issues`.

Owns: the answers of `GET /`, `/healthz`, `/livez`, `/readyz`, `/telemetry`, `/issues`.
Not here: collections and points (server/api/collections.py, server/api/points.py); what
TelemetryData holds at each details level (server/api/telemetry.py); `/metrics`
(server/api/metrics.py) and the request statistics both share (server/api/request_stats.py).

Qdrant 1.19 (`src/actix/api/service_api.rs`): `/` is *not* wrapped in the envelope; the
probes answer text/plain; `/readyz` is 503 until every shard is loaded, which for Keel is
until the catalog's recovery (WAL replay) has finished. `/telemetry` takes `details_level`
(default 0), `anonymize`, `per_collection` and `timeout` (seconds, default 60).

`/issues` (`src/actix/api/issues_api.rs`) reports what Qdrant's issue detectors found
(e.g. a filter on a field without a payload index); Keel has no detectors, so its report is
always empty, and `DELETE /issues` clears nothing and answers `true`.
"""

from __future__ import annotations

from aiohttp import web

from engine.catalog import Catalog
from engine.errors import NotReady
from server.api.context import INFO_KEY, catalog_of
from server.api.metrics import METRICS_KEY
from server.api.telemetry import QDRANT_VERSION, AppFacts, build_telemetry, parse_telemetry_params
from server.responses import json_response, ok

QDRANT_TITLE = "qdrant - vector search engine"
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
    """TelemetryData at the asked details level (server/api/telemetry.py).

    The id is the storage's (engine/catalog.py), stable across restarts, so `keel migrate`
    and `keel import` can tell whether two URLs reach one server. Qdrant's is per process.
    """
    params = parse_telemetry_params(request.query, has_details=True)
    info = request.app[INFO_KEY]
    catalog = catalog_of(request)
    # The catalog reads its id right after taking the lock, before the server answers
    # anything; only an app built in process over an unopened catalog falls back.
    app = AppFacts(catalog.storage_id or info.telemetry_id, info.keel_version, info.started_at)
    requests = request.app[METRICS_KEY].requests
    by_collection = None
    if params.per_collection:
        by_collection = requests.snapshot_by_collection(_collection_names(catalog))
    result = await build_telemetry(catalog, app, requests.snapshot(), by_collection, params)
    return ok(request, result)


async def get_issues(request: web.Request) -> web.Response:
    return ok(request, {"issues": []})


async def clear_issues(request: web.Request) -> web.Response:
    return ok(request, True)


def _collection_names(catalog: Catalog) -> frozenset[str]:
    try:
        return frozenset(catalog.names())
    except NotReady:
        return frozenset()  # still recovering: no collection yet


ROUTES = [
    ("GET", "/", root),
    ("GET", "/healthz", healthz),
    ("GET", "/livez", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/telemetry", telemetry),
    ("GET", "/issues", get_issues),
    ("DELETE", "/issues", clear_issues),
]
