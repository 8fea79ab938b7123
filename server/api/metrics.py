"""`GET /metrics`: Keel's state in Prometheus's text format, and the HTTP request counts.

Owns: the metric names (all `keel_...`, plus prometheus_client's standard `process_...`),
`RequestStats` (count and latency of every request by method, route template and status,
recorded by `metrics_middleware`), and `KeelCollector`, which reads engine state at scrape
time. Each app has its own CollectorRegistry, so several apps in one process never share or
collide on a metric.
Not here: measuring the write path (engine/wal/log.py, engine/applier.py record into
engine/stats.py histograms); whether /metrics needs an API key (server/auth.py).

Labels are bounded: `endpoint` is the route's template (`/collections/{collection_name}`),
never the raw path, `method` is one of HTTP's methods or "other", and `collection` is a
collection that exists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from engine.catalog import Catalog
from engine.collection import Collection, CollectionMetrics, CollectionStats
from engine.errors import NotReady
from engine.stats import LATENCY_BUCKETS_S, Histogram, HistogramSnapshot

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Prometheus text format 0.0.4, what generate_latest writes with escaping="underscores".
# Named explicitly: prometheus_client's CONTENT_TYPE_LATEST moved to version=1.0.0, which
# Prometheus before 3.0 does not negotiate.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED_ENDPOINT = "unmatched"  # 404/405 before any route matched
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A client that went away mid-request (nginx's convention; no response was sent).
CLIENT_CLOSED_STATUS = 499

COLLECTION_GAUGES = {
    "keel_collection_appended_op_id": "Last op id appended to the WAL (-1 before the first)",
    "keel_collection_durable_op_id": "Last op id fsynced in the WAL (acknowledged)",
    "keel_collection_applied_op_id": "Last op id applied to LMDB and HNSW (visible to reads)",
    "keel_collection_apply_lag_ops": "Ops appended but not yet applied (appended - applied)",
    "keel_collection_unapplied_bytes": "Bytes of acknowledged, unapplied ops held in memory "
    "(the admission budget in use)",
    "keel_collection_points": "Points in the collection",
    "keel_collection_checkpoint_age_seconds": "Seconds since the last HNSW checkpoint (or "
    "since the collection was opened)",
    "keel_collection_write_path_failed": "1 once the write path closed after a storage error",
}
# Prometheus metric name -> (help text, CollectionMetrics field).
COLLECTION_HISTOGRAMS = {
    "keel_wal_fsync_duration_seconds": ("WAL fdatasync latency", "wal_fsync_latency_s"),
    "keel_wal_batch_records": ("Records per WAL group commit", "wal_batch_record_count"),
    "keel_apply_batch_ops": ("Ops per applied batch", "apply_batch_op_count"),
    "keel_apply_batch_duration_seconds": (
        "Latency of applying one batch to LMDB and HNSW",
        "apply_batch_latency_s",
    ),
}


@dataclass(frozen=True)
class RequestKey:
    method: str
    endpoint: str  # route template without a trailing slash
    status: int


class RequestStats:
    """Latency histogram of every (method, endpoint, status) seen; written on the loop.

    Bounded without a cap: keys are at most KNOWN_METHODS + "other", times the routes of
    the app + "unmatched", times the statuses Keel answers (a few dozen).
    """

    def __init__(self) -> None:
        self._histograms: dict[RequestKey, Histogram] = {}

    def observe(self, key: RequestKey, took_s: float) -> None:
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = Histogram(LATENCY_BUCKETS_S)
        histogram.observe(took_s)

    def snapshot(self) -> dict[RequestKey, HistogramSnapshot]:
        return {key: histogram.snapshot() for key, histogram in self._histograms.items()}


@dataclass(frozen=True)
class Metrics:
    """What one app exposes: its registry and the request stats its middleware records."""

    registry: CollectorRegistry
    requests: RequestStats


METRICS_KEY = web.AppKey("metrics", Metrics)


def build_metrics(catalog: Catalog, keel_version: str) -> Metrics:
    """A registry of its own holding KeelCollector and the process collector."""
    registry = CollectorRegistry(auto_describe=False)
    requests = RequestStats()
    registry.register(KeelCollector(catalog, requests, keel_version))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, resident memory, fds
    return Metrics(registry, requests)


def metrics_middleware(requests: RequestStats) -> Callable:
    """Count every request with its final status; install it outermost, so that 401/403
    from auth and the 404/413/5xx bodies of error_middleware are seen too."""

    @web.middleware
    async def count_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        started_s = time.monotonic()
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
            key = RequestKey(_method_of(request), endpoint_of(request), status)
            requests.observe(key, time.monotonic() - started_s)

    return count_request


def endpoint_of(request: web.Request) -> str:
    """The matched route's template, e.g. `/collections/{collection_name}/points`."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ENDPOINT
    canonical = resource.canonical
    return canonical.rstrip("/") or "/"


async def metrics(request: web.Request) -> web.Response:
    """Everything in Prometheus text format; answers during recovery too (no collections)."""
    body = generate_latest(request.app[METRICS_KEY].registry, escaping="underscores")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


ROUTES = [("GET", "/metrics", metrics)]


class KeelCollector:
    """prometheus_client Collector: reads the catalog and the request stats at scrape time.

    Runs on the event loop (generate_latest calls collect() synchronously); it touches no
    disk beyond an LMDB stat per collection, like `GET /collections/{name}` does.
    """

    def __init__(self, catalog: Catalog, requests: RequestStats, keel_version: str) -> None:
        self._catalog = catalog
        self._requests = requests
        self._keel_version = keel_version

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("keel_build_info", "Keel's version", labels=["version"])
        info.add_metric([self._keel_version], 1)
        yield info
        yield GaugeMetricFamily(
            "keel_ready", "1 once recovery has finished", value=int(self._catalog.is_ready)
        )
        yield from _request_families(self._requests.snapshot())
        yield from _collection_families(_open_collections(self._catalog))


def _open_collections(catalog: Catalog) -> list[Collection]:
    try:
        return [catalog.get(name) for name in catalog.names()]
    except NotReady:
        return []  # still recovering (or shutting down): no collection section


def _request_families(snapshots: dict[RequestKey, HistogramSnapshot]) -> Iterator[Metric]:
    labels = ["method", "endpoint", "status"]
    total = CounterMetricFamily("keel_http_requests_total", "HTTP requests answered", labels=labels)
    duration = HistogramMetricFamily(
        "keel_http_request_duration_seconds", "HTTP request latency", labels=labels
    )
    for key, snapshot in sorted(snapshots.items(), key=lambda item: _sort_key(item[0])):
        values = [key.method, key.endpoint, str(key.status)]
        total.add_metric(values, snapshot.count)
        duration.add_metric(values, _buckets(snapshot), snapshot.sum)
    yield total
    yield duration


def _collection_families(collections: list[Collection]) -> Iterator[Metric]:
    gauges = {
        name: GaugeMetricFamily(name, text, labels=["collection"])
        for name, text in COLLECTION_GAUGES.items()
    }
    index_vectors = GaugeMetricFamily(
        "keel_collection_index_vectors",
        "Vectors in the collection's HNSW graph of each vector name",
        labels=["collection", "vector"],
    )
    read_view = GaugeMetricFamily(
        "keel_collection_read_view_bytes",
        "Memory the read path keeps instead of reading LMDB: labels, dense vectors, payload "
        "index entries (engine/readview/; an estimate)",
        labels=["collection"],
    )
    histograms = {
        name: HistogramMetricFamily(name, text, labels=["collection"])
        for name, (text, _) in COLLECTION_HISTOGRAMS.items()
    }
    for collection in collections:
        name = collection.name
        read_view.add_metric([name], collection.read_view.memory_bytes())
        progress = collection.metrics()
        for metric_name, value in _collection_values(progress, collection.stats()).items():
            gauges[metric_name].add_metric([name], value)
        for vector_name, count in sorted(progress.index_vector_counts.items()):
            index_vectors.add_metric([name, vector_name], count)
        for metric_name, (_, field_name) in COLLECTION_HISTOGRAMS.items():
            snapshot = getattr(progress, field_name)
            histograms[metric_name].add_metric([name], _buckets(snapshot), snapshot.sum)
    yield GaugeMetricFamily("keel_collections", "Collections open", value=len(collections))
    yield from gauges.values()
    yield index_vectors
    yield read_view
    yield from histograms.values()


def _collection_values(progress: CollectionMetrics, stats: CollectionStats) -> dict[str, float]:
    values = {
        "keel_collection_appended_op_id": progress.appended_op_id,
        "keel_collection_durable_op_id": progress.durable_op_id,
        "keel_collection_applied_op_id": progress.applied_op_id,
        "keel_collection_apply_lag_ops": progress.appended_op_id - progress.applied_op_id,
        "keel_collection_unapplied_bytes": progress.unapplied_bytes,
        "keel_collection_points": stats.points_count,
        "keel_collection_checkpoint_age_seconds": progress.checkpoint_age_s,
        "keel_collection_write_path_failed": int(stats.status == "red"),
    }
    assert values.keys() == COLLECTION_GAUGES.keys(), values.keys() ^ COLLECTION_GAUGES.keys()
    return values


def _buckets(snapshot: HistogramSnapshot) -> list[tuple[str, float]]:
    """Prometheus's cumulative `le` buckets, +Inf (== count) last."""
    bounds = [floatToGoString(bound) for bound in snapshot.upper_bounds]
    buckets = list(zip(bounds, snapshot.cumulative_counts()))
    buckets.append(("+Inf", snapshot.count))
    return buckets


def _method_of(request: web.Request) -> str:
    return request.method if request.method in KNOWN_METHODS else "other"


def _sort_key(key: RequestKey) -> tuple[str, str, int]:
    return (key.endpoint, key.method, key.status)
