"""The HTTP load generator: the same client code drives Keel and the HTTP floor.

Owns: concurrent client tasks (one aiohttp session each, keep-alive), pre-encoded orjson
bodies, per-request latency by time.perf_counter, and keeping the parsed answers for recall.
Not here: what a body means (keel.py builds them) or where the server comes from.

Bodies are encoded before the clock starts, so the client spends its CPU on the requests,
not on JSON: on a 2-core machine the client and the server share the CPU, and the floor pays
exactly the same client cost as Keel.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import orjson

REQUEST_TIMEOUT_S = 300.0  # a wait=true batch of 1000 may wait on the applier for a while
HEADERS = {"Content-Type": "application/json"}


@dataclass
class LoadResult:
    """What one load phase measured."""

    request_count: int
    took_s: float
    latencies_s: list[float] = field(repr=False)
    answers: dict[int, Any] = field(repr=False)  # body index -> parse(answer), first seen

    @property
    def requests_per_s(self) -> float:
        return self.request_count / self.took_s if self.took_s > 0 else 0.0

    def latency_ms(self, percentile: float) -> float | None:
        if not self.latencies_s:
            return None
        return float(np.percentile(self.latencies_s, percentile) * 1000)

    def summary(self) -> dict:
        return {
            "requests": self.request_count,
            "took_s": round(self.took_s, 3),
            "requests_per_s": round(self.requests_per_s, 1),
            "latency_ms_p50": _round(self.latency_ms(50)),
            "latency_ms_p90": _round(self.latency_ms(90)),
            "latency_ms_p99": _round(self.latency_ms(99)),
        }


def encode(body: Any) -> bytes:
    """A request body as JSON bytes (numpy arrays included)."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


async def run_load(
    url: str,
    bodies: Sequence[bytes],
    clients: int,
    seconds: float | None = None,
    parse: Callable[[Any], Any] | None = None,
    method: str = "POST",
    budget_s: float | None = None,
) -> LoadResult:
    """Send `bodies` to `url` from `clients` concurrent tasks.

    With `seconds=None` every body is sent exactly once (an ingest; with `budget_s`, no new
    request starts after that many seconds); otherwise the bodies are cycled until `seconds`
    have passed (a read phase). Every answer must be HTTP 200; its parsed JSON goes through
    `parse` (which may raise on a wrong answer) and the first result per body index is kept.
    Raises RuntimeError naming the status on any other answer.
    """
    assert clients >= 1, clients
    assert bodies, "no request bodies"
    assert seconds is None or budget_s is None, "a cycled phase is bounded by `seconds`"
    indexes = iter(range(len(bodies))) if seconds is None else itertools.cycle(range(len(bodies)))
    limit_s = seconds if budget_s is None else budget_s
    deadline_s = None if limit_s is None else time.perf_counter() + limit_s
    latencies_s: list[float] = []
    answers: dict[int, Any] = {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def client() -> None:
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for index in indexes:
                started_s = time.perf_counter()
                if deadline_s is not None and started_s > deadline_s:
                    return
                async with session.request(
                    method, url, data=bodies[index], headers=HEADERS
                ) as response:
                    raw = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{method} {url} status={response.status}: {raw[:300]}")
                latencies_s.append(time.perf_counter() - started_s)
                if parse is not None and index not in answers:
                    answers[index] = parse(orjson.loads(raw))

    started_s = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    took_s = time.perf_counter() - started_s
    return LoadResult(len(latencies_s), took_s, latencies_s, answers)


async def request_json(method: str, url: str, body: Any = None) -> Any:
    """One request outside any measurement (setup, polling); its JSON `result`."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(
            method, url, data=None if body is None else encode(body), headers=HEADERS
        ) as response,
    ):
        raw = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {url} status={response.status}: {raw[:300]}")
        return orjson.loads(raw).get("result")


def search_ids(answer: Any) -> list[int]:
    """The point ids of a Qdrant search answer, best first."""
    return [hit["id"] for hit in answer["result"]]


def query_ids(answer: Any) -> list[int]:
    """The point ids of a Qdrant `/points/query` answer, best first."""
    return [hit["id"] for hit in answer["result"]["points"]]


def batch_ids(answer: Any) -> list[list[int]]:
    """The point ids of every query of a Qdrant query/batch answer."""
    return [[hit["id"] for hit in one["points"]] for one in answer["result"]]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
