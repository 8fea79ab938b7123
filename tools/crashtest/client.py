"""The crash test's HTTP session, and the checks' requests: one JSON request, one answer.

Owns: the session settings, `SendCount` (did a request leave at all?), `request_json`.
Not here: the writers' requests, whose failures are outcomes, not errors (workload.py).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

JSON_HEADERS = {"Content-Type": "application/json"}
REQUEST_TIMEOUT_S = 60.0  # a healthy Keel answers in milliseconds; this only bounds a hang


class ServerError(Exception):
    """The server answered a check's request with something the check cannot use."""


class SendCount:
    """How many times aiohttp sent one request's headers: pass it as `trace_request_ctx`.

    aiohttp re-sends an idempotent request (PUT, DELETE) once when the connection drops, so
    a connection refused at the end does not prove the server never saw the request; this
    count does.
    """

    def __init__(self) -> None:
        self.count = 0


def new_session(connection_count_max: int) -> aiohttp.ClientSession:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_count_send)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_count_max),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        trace_configs=[trace],
    )


async def request_json(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body or None if the body is not JSON)."""
    data = None if body is None else orjson.dumps(body)
    async with session.request(method, url, data=data, headers=JSON_HEADERS) as response:
        raw = await response.read()
    try:
        return response.status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return response.status, None


async def result_of(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    """The `result` of a 200 answer; ServerError naming the request otherwise."""
    status, answer = await request_json(session, method, url, body)
    if status != 200 or not isinstance(answer, dict) or "result" not in answer:
        raise ServerError(f"{method} {url} answered {status}: {str(answer)[:300]}")
    return answer["result"]


async def _count_send(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    if isinstance(context.trace_request_ctx, SendCount):
        context.trace_request_ctx.count += 1


def error_text(answer: Any) -> str:
    """Qdrant's error text from an error body, or the body itself."""
    if isinstance(answer, dict) and isinstance(answer.get("status"), dict):
        return str(answer["status"].get("error"))
    return str(answer)[:300]
