"""`GET /metrics`: Keel's state in Prometheus's text format, and the HTTP request counts.

Owns: Keel's own metric names (all `keel_...`, plus prometheus_client's standard
`process_...`), `metrics_middleware`, which records every request into `RequestStats`
(server/api/request_stats.py), and `KeelCollector`, which reads engine state at scrape time.
Each scrape builds its own CollectorRegistry (Keel's collector, Qdrant's names from
server/api/qdrant_metrics.py, the process collector), so the query parameters apply to that
scrape only and several apps in one process never share or collide on a metric.
Not here: measuring the write path (engine/wal/log.py, engine/applier.py record into
engine/stats.py histograms); whether /metrics needs an API key (server/auth.py).

Labels are bounded: `endpoint` is the route's template (`/collections/{collection_name}`),
never the raw path, `method` is one of HTTP's methods or "other", and `collection` is a
collection that exists. `anonymize=true` hashes collection and vector names in every label,
Keel's included; `per_collection` and `timeout` are Qdrant's (qdrant_metrics.py).
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

from engine.catalog import Catalog
from engine.collection import Collection, CollectionMetrics, CollectionStats
from engine.errors import NotFound, NotReady
from server.api.qdrant_metrics import QdrantCollector, cumulative_buckets
from server.api.request_stats import RequestKey, RequestSnapshot, RequestStats
from server.api.telemetry import (
    Anonymizer,
    TelemetryParams,
    open_collections,
    parse_telemetry_params,
)

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
class Metrics:
    """What one app exposes: the catalog, Keel's version, the request stats its middleware
    records."""

    catalog: Catalog
    keel_version: str
    requests: RequestStats


METRICS_KEY = web.AppKey("metrics", Metrics)


def build_metrics(catalog: Catalog, keel_version: str) -> Metrics:
    """The request stats of an app over `catalog`, and what a scrape needs besides."""

    def collection_of(name: str) -> str | None:
        try:
            return catalog.get(name).name  # an alias counts for its collection
        except (NotFound, NotReady):
            return None

    return Metrics(catalog, keel_version, RequestStats(collection_of))


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
            collection_name = request.match_info.get("collection_name")
            requests.observe(key, time.monotonic() - started_s, collection_name)

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
    params = parse_telemetry_params(request.query, has_details=False)
    registry = build_registry(request.app[METRICS_KEY], params)
    body = generate_latest(registry, escaping="underscores")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def build_registry(app_metrics: Metrics, params: TelemetryParams) -> CollectorRegistry:
    """One scrape's registry: Keel's names, Qdrant's names, the process's."""
    registry = CollectorRegistry(auto_describe=False)
    anonymizer = Anonymizer(params.anonymize)
    catalog, requests = app_metrics.catalog, app_metrics.requests
    registry.register(KeelCollector(catalog, requests, app_metrics.keel_version, anonymizer))
    registry.register(QdrantCollector(catalog, requests, params))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, resident memory, fds
    return registry


ROUTES = [("GET", "/metrics", metrics)]


class KeelCollector:
    """prometheus_client Collector: reads the catalog and the request stats at scrape time.

    Runs on the event loop (generate_latest calls collect() synchronously); it touches no
    disk beyond an LMDB stat per collection, like `GET /collections/{name}` does.
    """

    def __init__(
        self,
        catalog: Catalog,
        requests: RequestStats,
        keel_version: str,
        anonymizer: Anonymizer,
    ) -> None:
        self._catalog = catalog
        self._requests = requests
        self._keel_version = keel_version
        self._anonymizer = anonymizer

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("keel_build_info", "Keel's version", labels=["version"])
        info.add_metric([self._keel_version], 1)
        yield info
        yield GaugeMetricFamily(
            "keel_ready", "1 once recovery has finished", value=int(self._catalog.is_ready)
        )
        yield from _request_families(self._requests.snapshot())
        yield from _collection_families(open_collections(self._catalog), self._anonymizer)


def _request_families(snapshots: dict[RequestKey, RequestSnapshot]) -> Iterator[Metric]:
    labels = ["method", "endpoint", "status"]
    total = CounterMetricFamily("keel_http_requests_total", "HTTP requests answered", labels=labels)
    duration = HistogramMetricFamily(
        "keel_http_request_duration_seconds", "HTTP request latency", labels=labels
    )
    for key, snapshot in sorted(snapshots.items(), key=lambda item: _sort_key(item[0])):
        values = [key.method, key.endpoint, str(key.status)]
        total.add_metric(values, snapshot.latency_s.count)
        duration.add_metric(values, cumulative_buckets(snapshot.latency_s), snapshot.latency_s.sum)
    yield total
    yield duration


def _collection_families(collections: list[Collection], anonymizer: Anonymizer) -> Iterator[Metric]:
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
        name = anonymizer.name(collection.name)
        read_view.add_metric([name], collection.read_view.memory_bytes())
        progress = collection.metrics()
        for metric_name, value in _collection_values(progress, collection.stats()).items():
            gauges[metric_name].add_metric([name], value)
        for vector_name, count in sorted(progress.index_vector_counts.items()):
            index_vectors.add_metric([name, anonymizer.name(vector_name)], count)
        for metric_name, (_, field_name) in COLLECTION_HISTOGRAMS.items():
            snapshot = getattr(progress, field_name)
            histograms[metric_name].add_metric([name], cumulative_buckets(snapshot), snapshot.sum)
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


def _method_of(request: web.Request) -> str:
    return request.method if request.method in KNOWN_METHODS else "other"


def _sort_key(key: RequestKey) -> tuple[str, str, int]:
    return (key.endpoint, key.method, key.status)
