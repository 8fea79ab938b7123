"""The aiohttp application: routes, timing, and the one place errors become HTTP answers.

Owns: `create_app`, the route table (Qdrant's paths, with and without a trailing slash, as
Qdrant's NormalizePath trims it), and `error_middleware`, which maps engine errors, the
server's own ApiError, aiohttp's errors (404, 405, 413) and anything unexpected into
Qdrant's error body `{"status": {"error": ..}, "time": ..}`.
Not here: opening or closing the catalog (run.py does, around the app's life), handlers
(server/api/service.py, server/api/collections.py, server/api/points.py), parsing (server/wire/schemas.py).

Status codes follow Qdrant (`src/actix/helpers.rs`, `lib/storage/src/content_manager/
errors.rs`): "Wrong input" 400, "Not found" 404, an existing collection 409 with
"Wrong input: Collection `x` already exists!", body format 400 and body validation 422
(time 0.0, as Qdrant's validation handler writes it).
"""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from engine.catalog import Catalog
from engine.errors import (
    BadRequest,
    Conflict,
    FormatError,
    KeelError,
    NotFound,
    NotImplementedYet,
    NotReady,
    Overloaded,
    RateLimited,
    StorageError,
    StrictModeError,
    ValidationError,
)
from engine.limits import RECOVERY_WAIT_S, REQUEST_BODY_BYTES_MAX
from engine.logfmt import log_event
from server import routing
from server.api import (
    aliases,
    collections,
    dashboard,
    distributed,
    facet,
    followers,
    legacy_query,
    matrix,
    metrics,
    not_implemented,
    optimizations,
    payload_indexes,
    points,
    service,
    shard_snapshots,
    snapshots,
    vector_names,
)
from server.api.context import (
    CATALOG_KEY,
    INFO_KEY,
    SNAPSHOT_URL_RECOVERY_KEY,
    SNAPSHOTS_PATH_KEY,
    ServerInfo,
    catalog_of,
)
from server.auth import auth_middleware, is_dashboard_path
from server.request_log import request_log_middleware
from server.responses import STARTED_S_KEY, ApiError, elapsed_s, error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Most specific class first is not needed: the lookup walks each error's MRO.
STATUS_BY_ERROR: dict[type[KeelError], int] = {
    ValidationError: 422,
    FormatError: 400,
    BadRequest: 400,
    NotFound: 404,
    Conflict: 409,
    StrictModeError: 400,
    RateLimited: 429,
    Overloaded: 503,
    NotReady: 503,
    NotImplementedYet: 501,
    StorageError: 500,
}
TEXT_BY_ERROR: dict[type[KeelError], str] = {
    ValidationError: "Validation error in JSON body: [{}]",
    FormatError: "Format error in JSON body: {}",
    BadRequest: "Wrong input: {}",
    NotFound: "Not found: {}",
    Conflict: "Wrong input: {}",
    StrictModeError: "Bad request: {}",
    RateLimited: "Rate limiting exceeded: {}",
    Overloaded: "Service unavailable: {}",
    NotReady: "Service unavailable: {}",
    NotImplementedYet: "Not implemented in Keel: {}",
    StorageError: "Service internal error: {}",
}
# Qdrant writes time 0.0 on errors found before the handler ran (body, query, path).
ERRORS_BEFORE_HANDLER = (FormatError, ValidationError)
GIT_TIMEOUT_S = 2.0
# Retry-After of a 503 during recovery: the retry is itself held up to service.recovery_wait_s
# (recovery_wait_middleware), so asking again soon costs the client nothing.
NOT_READY_RETRY_AFTER_S = 1
# Answered at once during recovery: the probes and the process's own statistics are how one
# watches a recovery. With and without the trailing slash Qdrant trims.
PATHS_NEVER_WAITING = frozenset(
    path + suffix
    for path in ("/healthz", "/livez", "/readyz", "/metrics", "/telemetry", "/durability")
    for suffix in ("", "/")
)
REPO_ROOT = Path(__file__).resolve().parents[1]


def create_app(
    catalog: Catalog,
    *,
    max_request_size_bytes: int = REQUEST_BODY_BYTES_MAX,
    keel_version: str,
    api_key: str = "",
    read_only_api_key: str = "",
    metrics_require_api_key: bool = True,
    snapshots_path: Path | None = None,
    log_requests: str = "off",
    recovery_wait_s: float = RECOVERY_WAIT_S,
    enable_snapshot_url_recovery: bool = True,
) -> web.Application:
    """The HTTP application over `catalog`; the caller opens and closes the catalog.
    With `api_key` or `read_only_api_key` set, requests need one (server/auth.py), for
    `/metrics` too unless `metrics_require_api_key` is False. Collection snapshots go to
    `snapshots_path` (default: `snapshots` beside the storage directory, where the config's
    defaults put it too). `log_requests` is the config's log.requests (request_log.py).
    A request arriving before the catalog is open waits up to `recovery_wait_s`
    (service.recovery_wait_s, recovery_wait_middleware), then 503. With
    `enable_snapshot_url_recovery` False (service.enable_snapshot_url_recovery), snapshots
    are not recovered from http(s):// locations."""
    assert 0 < max_request_size_bytes <= REQUEST_BODY_BYTES_MAX, max_request_size_bytes
    app_metrics = metrics.build_metrics(catalog, keel_version)
    # The recovery wait runs inside error_middleware, which answers its NotReady.
    middlewares = [error_middleware, recovery_wait_middleware(recovery_wait_s)]
    if api_key or read_only_api_key:
        middlewares.insert(
            0,
            auth_middleware(
                api_key, read_only_api_key, metrics_require_api_key=metrics_require_api_key
            ),
        )
    # Outermost: they must see the final status, auth's 401/403 included.
    middlewares.insert(0, request_log_middleware(log_requests))
    middlewares.insert(0, metrics.metrics_middleware(app_metrics.requests))
    app = routing.application(client_max_size=max_request_size_bytes, middlewares=middlewares)
    app[CATALOG_KEY] = catalog
    app[SNAPSHOTS_PATH_KEY] = snapshots_path or catalog.storage_path.parent / "snapshots"
    app[SNAPSHOT_URL_RECOVERY_KEY] = enable_snapshot_url_recovery
    app[metrics.METRICS_KEY] = app_metrics
    app[INFO_KEY] = ServerInfo(
        keel_version=keel_version,
        commit=build_commit(keel_version),
        telemetry_id=str(uuid.uuid4()),
        started_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        max_request_size_bytes=max_request_size_bytes,
    )
    routes = [
        *service.ROUTES,
        *metrics.ROUTES,
        *aliases.ROUTES,
        *collections.ROUTES,
        *vector_names.ROUTES,
        *facet.ROUTES,
        *points.ROUTES,
        *legacy_query.ROUTES,
        *matrix.ROUTES,
        *payload_indexes.ROUTES,
        *snapshots.ROUTES,
        *shard_snapshots.ROUTES,
        *optimizations.ROUTES,
        *distributed.ROUTES,
        *followers.ROUTES,
        *dashboard.ROUTES,
        *not_implemented.ROUTES,
    ]
    app.cleanup_ctx.append(dashboard.follow_recovery)  # /durability's recovery section
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        if path != "/":
            app.router.add_route(method, path + "/", handler)
    return app


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time the request; turn every error into Qdrant's error body (the only mapping)."""
    request[STARTED_S_KEY] = time.monotonic()
    try:
        return await handler(request)
    except ApiError as api_error:
        return error(api_error.status, api_error.message, 0.0)
    except KeelError as keel_error:
        status, message = describe_error(keel_error)
        time_s = 0.0 if isinstance(keel_error, ERRORS_BEFORE_HANDLER) else elapsed_s(request)
        headers = None
        if isinstance(keel_error, Overloaded):
            headers = {"Retry-After": str(max(1, math.ceil(keel_error.retry_after_s)))}
        elif isinstance(keel_error, NotReady):
            headers = {"Retry-After": str(NOT_READY_RETRY_AFTER_S)}
        elif isinstance(keel_error, RateLimited) and keel_error.retry_after_s is not None:
            headers = {"Retry-After": str(math.ceil(keel_error.retry_after_s))}
        if status == 500:
            # A server fault. 503 (recovering, overloaded) and 501 are answers, not faults:
            # like every 4xx, only the request log (request_log.py) reports them.
            log_event(
                log,
                logging.ERROR,
                "request failed",
                method=request.method,
                route=metrics.endpoint_of(request),
                status=status,
                error=message,
            )
        return error(status, message, time_s, headers)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        message = _http_error_text(request, http_error)
        return error(http_error.status, message, elapsed_s(request))
    except Exception:  # noqa: BLE001 - any other fault is Qdrant's 500 body, logged with its traceback
        log_event(
            log,
            logging.ERROR,
            "unhandled error",
            method=request.method,
            route=metrics.endpoint_of(request),
            exc_info=True,
        )
        message = "Service internal error: unexpected error, see the server log"
        return error(500, message, elapsed_s(request))


def recovery_wait_middleware(wait_s: float) -> Callable:
    """Hold every request but PATHS_NEVER_WAITING until the catalog is ready, at most `wait_s`
    seconds (0: not at all); NotReady past that, or at once if recovery failed.

    Keel listens before recovery has finished so that `/readyz` can say "not ready" (run.py).
    Qdrant does not serve at all until it has loaded, so clients (Qdrant's own test harness,
    deployment scripts) wait for `GET /` and then start working: holding their requests,
    `GET /` included, is what they expect. Runs inside error_middleware, which answers the
    NotReady 503 with Retry-After.
    """
    assert wait_s >= 0, wait_s

    @web.middleware
    async def wait_for_recovery(request: web.Request, handler: Handler) -> web.StreamResponse:
        catalog = catalog_of(request)
        path = request.path
        # The dashboard's page loads during recovery and polls /durability, which shows it.
        if catalog.is_ready or path in PATHS_NEVER_WAITING or is_dashboard_path(path):
            return await handler(request)
        if not await catalog.wait_ready(wait_s):
            raise NotReady(f"storage is not open: recovery has not finished within {wait_s:g} s")
        return await handler(request)

    return wait_for_recovery


def describe_error(keel_error: KeelError) -> tuple[int, str]:
    """(HTTP status, Qdrant-style text) of an engine error; 500 for a class not mapped."""
    for error_class in type(keel_error).__mro__:
        if error_class in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_class], TEXT_BY_ERROR[error_class].format(keel_error)
    return 500, f"Service internal error: {keel_error}"


def build_commit(keel_version: str) -> str:
    """40 hex digits for `GET /`: Keel's git HEAD if this is a checkout, else a stable hash."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        completed = None
    commit = completed.stdout.strip() if completed and completed.returncode == 0 else ""
    if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit):
        return commit
    return hashlib.sha1(f"keel-{keel_version}".encode()).hexdigest()


def _http_error_text(request: web.Request, http_error: web.HTTPException) -> str:
    if isinstance(http_error, web.HTTPRequestEntityTooLarge):
        limit = request.app[INFO_KEY].max_request_size_bytes
        if request.content_length is not None:
            return (
                f"JSON payload ({request.content_length} bytes) is larger than allowed "
                f"(limit: {limit} bytes)."
            )
        return f"JSON payload has exceeded limit ({limit} bytes)."
    if isinstance(http_error, web.HTTPNotFound):
        return f"Not found: no API route {request.method} {request.path}"
    if isinstance(http_error, web.HTTPMethodNotAllowed):
        return f"Method {request.method} is not allowed on {request.path}"
    return http_error.reason
