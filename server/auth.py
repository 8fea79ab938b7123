"""API keys, as Qdrant checks them: one read-write key, one read-only key.

Owns: which requests need a key, how it is read (`api-key` header, or `Authorization:
Bearer`), the constant-time comparison, and what a read-only key may do.
Not here: where the keys come from (config.py), the error body of other errors (app.py).

Qdrant 1.19 (`src/common/auth/mod.rs`, `src/actix/auth.rs`): no key -> 401 "Must provide an
API key or an Authorization bearer token"; a wrong key -> 401 "Invalid API key or JWT"; both
as plain text. `/` (name and version, which uptime checks probe) and the health probes stay
open to any request, with no key, a wrong one or the read-only one: Qdrant's whitelist in
`src/actix/mod.rs` is exactly `/`, `/healthz`, `/readyz`, `/livez` (matched after its
NormalizePath trims a trailing slash), plus its web UI's path; Keel's web UI is the
dashboard's static files under `/dashboard`, whose data calls each carry the user's key.
`/metrics` is open too when configured so. A
read-only key may only read; Keel answers a write with it 403 in Qdrant's error shape.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.responses import error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz", "/healthz/", "/livez/", "/readyz/"})
# Open too when service.metrics_require_api_key is false, so a Prometheus scraper needs no key.
METRICS_PATHS = frozenset({"/metrics", "/metrics/"})
DASHBOARD_PATH = "/dashboard"
MISSING_KEY_TEXT = "Must provide an API key or an Authorization bearer token"
WRONG_KEY_TEXT = "Invalid API key or JWT"
READ_ONLY_TEXT = "Forbidden: Write access is required"
# POST routes that only read (everything served by GET reads too).
_COLLECTION = "/collections/{collection_name}"
READ_POST_ROUTES = frozenset(
    _COLLECTION + suffix
    for suffix in (
        "/points",
        "/points/search",
        "/points/search/batch",
        "/points/search/groups",
        "/points/query",
        "/points/query/batch",
        "/points/query/groups",
        "/points/scroll",
        "/points/count",
        "/facet",
        "/points/recommend",
        "/points/recommend/batch",
        "/points/discover",
        "/points/discover/batch",
        "/points/search/matrix/pairs",
        "/points/search/matrix/offsets",
    )
)


def auth_middleware(
    api_key: str, read_only_api_key: str, *, metrics_require_api_key: bool = True
) -> Callable:
    """A middleware enforcing the keys; every request passes when neither is set.
    `/metrics` needs a key like any read unless `metrics_require_api_key` is False."""
    open_paths = OPEN_PATHS if metrics_require_api_key else OPEN_PATHS | METRICS_PATHS

    @web.middleware
    async def check_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths or is_dashboard_path(request.path):
            return await handler(request)
        key = _presented_key(request)
        if key is None:
            return web.Response(status=401, text=MISSING_KEY_TEXT)
        if api_key and hmac.compare_digest(key.encode(), api_key.encode()):
            return await handler(request)
        if read_only_api_key and hmac.compare_digest(key.encode(), read_only_api_key.encode()):
            if is_read_request(request):
                return await handler(request)
            return error(403, READ_ONLY_TEXT, 0.0)
        return web.Response(status=401, text=WRONG_KEY_TEXT)

    return check_api_key


def is_dashboard_path(path: str) -> bool:
    """The dashboard's static files (server/api/dashboard.py): open like Qdrant's web UI path;
    the page sends the key the user types with each data call it makes."""
    return path == DASHBOARD_PATH or path.startswith(DASHBOARD_PATH + "/")


def is_read_request(request: web.Request) -> bool:
    if request.method in ("GET", "HEAD"):
        return True
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    return request.method == "POST" and canonical.rstrip("/") in READ_POST_ROUTES


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("api-key")
    if key is not None:
        return key
    authorization = request.headers.get("Authorization", "")
    return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
