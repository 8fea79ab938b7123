"""Service endpoints: `/` (version), health probes, `/telemetry` and `/issues`.

Owns: the answers of `GET /`, `/healthz`, `/livez`, `/readyz`, `/telemetry`, `/issues`.
Not here: collections and points (server/api/collections.py, server/api/points.py); `/metrics` and the request
counts telemetry shares with it (server/api/metrics.py).

`/telemetry` fills the parts of Qdrant's TelemetryData that are cheap and true for Keel: the
app, each collection as one local shard (points, vectors, the unapplied ops as its update
queue; Keel has no optimizer, so total_optimized_points is 0), and REST response statistics
by "METHOD route template" and status. avg_duration_micros is the mean over every request
since start, not Qdrant's mean of the last 128.

Qdrant 1.19 (`src/actix/api/service_api.rs`): `/` is *not* wrapped in the envelope; the
probes answer text/plain; `/readyz` is 503 until every shard is loaded, which for Keel is
until the catalog's recovery (WAL replay) has finished.

`/issues` (`src/actix/api/issues_api.rs`) reports what Qdrant's issue detectors found
(e.g. a filter on a field without a payload index); Keel has no detectors, so its report is
always empty, and `DELETE /issues` clears nothing and answers `true`.
"""

from __future__ import annotations

from aiohttp import web

from engine.catalog import Catalog
from engine.collection import Collection
from engine.errors import NotReady
from engine.stats import HistogramSnapshot
from server.api.context import INFO_KEY, catalog_of
from server.api.metrics import METRICS_KEY, RequestKey
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
    """TelemetryData: an id, the app (name `keel`, Keel's version), collections, requests.

    The id is the storage's (engine/catalog.py), stable across restarts, so `keel migrate`
    and `keel import` can tell whether two URLs reach one server. Qdrant's is per process.
    """
    info = request.app[INFO_KEY]
    # The catalog reads its id right after taking the lock, before the server answers
    # anything; only an app built in process over an unopened catalog falls back.
    storage_id = catalog_of(request).storage_id
    result = {
        "id": storage_id or info.telemetry_id,
        "app": {"name": "keel", "version": info.keel_version, "startup": info.started_at},
        "collections": _collections_telemetry(catalog_of(request)),
        "requests": _requests_telemetry(request.app[METRICS_KEY].requests.snapshot()),
    }
    return ok(request, result)


async def get_issues(request: web.Request) -> web.Response:
    return ok(request, {"issues": []})


async def clear_issues(request: web.Request) -> web.Response:
    return ok(request, True)


def _collections_telemetry(catalog: Catalog) -> dict:
    try:
        collections = [catalog.get(name) for name in catalog.names()]
    except NotReady:
        return {"number_of_collections": 0}  # still recovering; telemetry answers anyway
    return {
        "number_of_collections": len(collections),
        "collections": [_collection_telemetry(collection) for collection in collections],
    }


def _collection_telemetry(collection: Collection) -> dict:
    """A CollectionTelemetry: the collection as one local shard with no replicas."""
    stats = collection.stats()
    progress = collection.metrics()
    vector_counts = collection.vector_counts()
    update_queue = {"length": progress.appended_op_id - progress.applied_op_id}
    if progress.applied_op_id >= 0:
        update_queue["op_num"] = progress.applied_op_id
    local = {
        "status": stats.status,
        "total_optimized_points": 0,
        "num_points": stats.points_count,
        "num_vectors": sum(vector_counts.values()),
        "num_vectors_by_name": vector_counts,
        "update_queue": update_queue,
    }
    shard = {"id": 0, "local": local, "remote": [], "replicate_states": {}}
    return {"id": collection.name, "shards": [shard]}


def _requests_telemetry(snapshots: dict[RequestKey, HistogramSnapshot]) -> dict:
    """RequestsTelemetry: REST statistics by "METHOD template", then by status; no gRPC."""
    responses: dict[str, dict[str, dict]] = {}
    for key, snapshot in sorted(snapshots.items(), key=lambda item: str(item[0])):
        by_status = responses.setdefault(f"{key.method} {key.endpoint}", {})
        by_status[str(key.status)] = _duration_statistics(snapshot)
    return {"rest": {"responses": responses}, "grpc": {"responses": {}}}


def _duration_statistics(snapshot: HistogramSnapshot) -> dict:
    assert snapshot.count > 0, "a request key exists only once a request was counted"
    assert snapshot.min_value is not None and snapshot.max_value is not None, snapshot
    return {
        "count": snapshot.count,
        "avg_duration_micros": snapshot.sum / snapshot.count * 1e6,
        "min_duration_micros": snapshot.min_value * 1e6,
        "max_duration_micros": snapshot.max_value * 1e6,
        "total_duration_micros": round(snapshot.sum * 1e6),
    }


ROUTES = [
    ("GET", "/", root),
    ("GET", "/healthz", healthz),
    ("GET", "/livez", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/telemetry", telemetry),
    ("GET", "/issues", get_issues),
    ("DELETE", "/issues", clear_issues),
]
