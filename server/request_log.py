"""Request logs: one `request` event per HTTP request, at INFO or DEBUG by `log.requests`.

Owns: the request log middleware and which requests it logs at which level.
Not here: turning errors into answers (app.py), counting requests (server/api/metrics.py), where
and how lines are written (server/logs.py).

    request method=POST route=/collections/{collection_name}/points/search status=400
            collection=c took_s=0.001 bytes=120 error="Wrong input: ..."

`route` is the matched route's template, never the raw path, so lines can be counted per
endpoint; the collection, when the route names one, is its own field (escaped like every
value). `error` is the text of the answer's error body, for every 4xx and 5xx.

`log.requests` chooses which requests get an INFO line: "off" none, "errors" those
answered 4xx or 5xx, "all" every one; the rest are logged at DEBUG, so `log.level = DEBUG`
shows every request whatever the setting. A client's mistake (4xx), a refusal while
recovering or overloaded (503) and a feature Keel lacks (501) are only ever logged here:
they are not server faults. A server fault (any other 5xx) is logged at ERROR by app.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.logfmt import log_event
from server.api.metrics import CLIENT_CLOSED_STATUS, endpoint_of
from server.config import LOG_REQUESTS
from server.responses import ERROR_TEXT_KEY

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_log_middleware(mode: str) -> Callable:
    """Log every request once it is answered: INFO if `mode` selects it, else DEBUG.
    Install it just inside metrics, so that auth's 401/403 are seen too."""
    assert mode in LOG_REQUESTS, mode

    @web.middleware
    async def log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        started_s = time.monotonic()
        response: web.StreamResponse | None = None
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as http_exception:  # a redirect error_middleware let pass
            status = http_exception.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED_STATUS
            raise
        finally:
            level = request_level(mode, status)
            if log.isEnabledFor(level):
                _log(level, request, status, response, time.monotonic() - started_s)

    return log_request


def request_level(mode: str, status: int) -> int:
    """INFO for a request `mode` selects, DEBUG for the others."""
    is_selected = mode == "all" or (mode == "errors" and status >= 400)
    return logging.INFO if is_selected else logging.DEBUG


def _log(
    level: int,
    request: web.Request,
    status: int,
    response: web.StreamResponse | None,
    took_s: float,
) -> None:
    fields: dict[str, object] = {
        "method": request.method,
        "route": endpoint_of(request),
        "status": status,
    }
    collection_name = request.match_info.get("collection_name")
    if collection_name is not None:
        fields["collection"] = collection_name
    fields["took_s"] = round(took_s, 4)  # 0.1 ms; finer would print as 1e-05
    fields["bytes"] = None if response is None else response.content_length
    if response is not None and ERROR_TEXT_KEY in response:
        fields["error"] = response[ERROR_TEXT_KEY]
    log_event(log, level, "request", **fields)
