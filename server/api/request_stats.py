"""Statistics of the HTTP requests answered: count, latency and last answer, by request key.

Owns: `RequestKey` (method, route template, status), `RequestStats` (a histogram and the
time of the last answer per key, and per collection for routes naming an existing one) and
its read-only `RequestSnapshot`.
Not here: recording them on each request (server/api/metrics.py `metrics_middleware`), how
they are shown (Prometheus text in metrics.py and qdrant_metrics.py, TelemetryData in
telemetry.py).

Bounded without a cap: keys are at most HTTP's methods + "other", times the routes of the
app + "unmatched", times the statuses Keel answers (a few dozen). Per collection, only a
collection that exists when the request ends is recorded (a 404 for a made-up name is not),
and a collection's entries go at the first snapshot after it no longer exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.stats import LATENCY_BUCKETS_S, Histogram, HistogramSnapshot


@dataclass(frozen=True)
class RequestKey:
    method: str
    endpoint: str  # route template without a trailing slash
    status: int


@dataclass(frozen=True)
class RequestSnapshot:
    latency_s: HistogramSnapshot
    last_responded_s: float  # wall clock (time.time()) of the last answer


class _Entry:
    """One key's latency histogram and last answer time; written on the event loop only."""

    def __init__(self) -> None:
        self.latency_s = Histogram(LATENCY_BUCKETS_S)
        self.last_responded_s = 0.0

    def observe(self, took_s: float, now_s: float) -> None:
        self.latency_s.observe(took_s)
        self.last_responded_s = now_s

    def snapshot(self) -> RequestSnapshot:
        return RequestSnapshot(self.latency_s.snapshot(), self.last_responded_s)


class RequestStats:
    """Every (method, endpoint, status) seen, overall and by collection.

    `collection_of(name)` names the collection a path's `{collection_name}` reaches (an alias
    resolved), or None when there is none: only then is a request recorded per collection.
    """

    def __init__(self, collection_of: Callable[[str], str | None]) -> None:
        self._collection_of = collection_of
        self._entries: dict[RequestKey, _Entry] = {}
        self._by_collection: dict[str, dict[RequestKey, _Entry]] = {}

    def observe(self, key: RequestKey, took_s: float, collection_name: str | None) -> None:
        now_s = time.time()
        _entry(self._entries, key).observe(took_s, now_s)
        if collection_name is None:
            return
        collection = self._collection_of(collection_name)
        if collection is not None:
            entries = self._by_collection.setdefault(collection, {})
            _entry(entries, key).observe(took_s, now_s)

    def snapshot(self) -> dict[RequestKey, RequestSnapshot]:
        return {key: entry.snapshot() for key, entry in self._entries.items()}

    def snapshot_by_collection(
        self, collections: frozenset[str]
    ) -> dict[str, dict[RequestKey, RequestSnapshot]]:
        """Per collection of `collections` (those that exist now); forgets the others."""
        for gone in self._by_collection.keys() - collections:
            del self._by_collection[gone]
        return {
            collection: {key: entry.snapshot() for key, entry in entries.items()}
            for collection, entries in self._by_collection.items()
        }


def _entry(entries: dict[RequestKey, _Entry], key: RequestKey) -> _Entry:
    entry = entries.get(key)
    if entry is None:
        entry = entries[key] = _Entry()
    return entry
