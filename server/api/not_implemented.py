"""Qdrant endpoints Keel does not implement yet: each answers an honest 501.

Owns: the list below. A client calling one of these gets Qdrant's error body saying so,
instead of a 404 that reads like a typo in its URL. When an endpoint is implemented, its
line moves out of here into the module that serves it.
"""

from __future__ import annotations

from aiohttp import web

from engine.errors import NotImplementedYet

COLLECTION = "/collections/{collection_name}"
POINTS = COLLECTION + "/points"
PARTIAL_SNAPSHOT = COLLECTION + "/shards/{shard_id}/snapshot/partial"

ROUTES_NOT_IMPLEMENTED = [
    # Resource quotas (disk and memory use past which writes are refused): Keel has none.
    ("GET", "/quotas"),
    ("PUT", "/quotas"),
    # Telemetry gathered from every peer of a cluster (/telemetry is this node's).
    ("GET", "/cluster/telemetry"),
    # Partial shard snapshots (only the files changed since a manifest of segment file
    # versions): Keel's snapshot is one LMDB copy, with no segments to diff. The partial
    # recover route is in shard_snapshots.py: it checks its query first, as Qdrant does.
    ("POST", PARTIAL_SNAPSHOT + "/create"),
    ("POST", PARTIAL_SNAPSHOT + "/recover_from"),
    ("GET", PARTIAL_SNAPSHOT + "/manifest"),
]


async def not_implemented(request: web.Request) -> web.Response:
    """501 in Qdrant's error shape, naming the endpoint."""
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
    raise NotImplementedYet(f"{request.method} {route}")


ROUTES = [(method, path, not_implemented) for method, path in ROUTES_NOT_IMPLEMENTED]
