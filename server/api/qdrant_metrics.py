"""The metric names Qdrant's `/metrics` exports, for the parts that are true of Keel.

Owns: `QdrantCollector` (app_info, collections_*, collection_*, cluster_enabled,
rest_responses_*, memory_*, and the /proc process figures), `cumulative_buckets`.
Not here: Keel's own `keel_*` names and the route (server/api/metrics.py), the request
statistics (server/api/request_stats.py).

Qdrant 1.19 (`src/common/metrics.rs`) builds its metrics from a level-4 telemetry; so does
this collector, from the same engine numbers `/telemetry` reports. As there, a family with
no sample is left out, request metrics cover a fixed list of point and search routes only
(timings for status 200 only), and `per_collection=true` replaces them with the same series
labelled by collection (unless no request was recorded per collection yet). `memory_*` are
telemetry's `memory` (glibc's malloc and RssAnon, server/api/telemetry.py), left out where
it is. Left out because Keel has nothing true to put in them:
`collection_hardware_metric_*` (Keel measures no request's CPU or I/O; Qdrant writes none
either while no collection was measured), `snapshot_*` (snapshot counters),
`collection_indexed_only_excluded_points`, `quota_exceeded` (Keel enforces no quota), the
cluster's consensus figures (single node), `grpc_*` (no gRPC).
`app_info` names the API Keel speaks, as `GET /` does (`qdrant`, 1.19.0); Keel's own version
is `keel_build_info`. `rest_responses_avg_duration_seconds` is the mean since start, not
Qdrant's mean of the last 128.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from engine.catalog import Catalog
from engine.collection import Collection
from engine.stats import HistogramSnapshot
from server.api.request_stats import RequestKey, RequestSnapshot, RequestStats
from server.api.telemetry import (
    QDRANT_NAME,
    QDRANT_VERSION,
    Anonymizer,
    TelemetryParams,
    memory_telemetry,
    open_collections,
    update_queue,
)

# Qdrant's REST_ENDPOINT_WHITELIST: the routes whose responses are exported.
REST_ENDPOINTS = frozenset(
    "/collections/{collection_name}" + suffix
    for suffix in (
        "/index",
        "/points",
        "/points/batch",
        "/points/count",
        "/points/delete",
        "/points/discover",
        "/points/discover/batch",
        "/points/facet",
        "/points/payload",
        "/points/payload/clear",
        "/points/payload/delete",
        "/points/query",
        "/points/query/batch",
        "/points/query/groups",
        "/points/recommend",
        "/points/recommend/batch",
        "/points/recommend/groups",
        "/points/scroll",
        "/points/search",
        "/points/search/batch",
        "/points/search/groups",
        "/points/search/matrix/offsets",
        "/points/search/matrix/pairs",
        "/points/vectors",
        "/points/vectors/delete",
        "/vectors/{vector_name}",
    )
)
TIMED_STATUS = 200  # Qdrant reports timings of successful REST responses only
PROC_SELF = Path("/proc/self")
MAX_MAP_COUNT_PATH = Path("/proc/sys/vm/max_map_count")
# /proc/self/stat fields after the command name: minflt, cminflt, majflt, cmajflt are the
# 10th to 13th fields of the line, the 8th to 11th after ")".
STAT_MINFLT, STAT_CMINFLT, STAT_MAJFLT, STAT_CMAJFLT = 7, 8, 9, 10
# Keel's memory_* gauges, one per field of telemetry's memory, each saying what Keel measures.
MEMORY_HELP = {
    "active_bytes": "bytes of the chunks glibc's malloc has handed out and not got back",
    "allocated_bytes": "as memory_active_bytes: glibc keeps no count of the bytes asked for",
    "metadata_bytes": "0: glibc keeps its bookkeeping inside the chunks it counts",
    "resident_bytes": "resident anonymous memory of the process (RssAnon)",
    "retained_bytes": "free bytes glibc's malloc keeps instead of returning them",
}


class QdrantCollector:
    """prometheus_client Collector of one scrape (its parameters fixed at construction)."""

    def __init__(self, catalog: Catalog, requests: RequestStats, params: TelemetryParams) -> None:
        self._catalog = catalog
        self._requests = requests
        self._params = params
        self._anonymizer = Anonymizer(params.anonymize)

    def collect(self) -> Iterator[Metric]:
        app_info = GaugeMetricFamily(
            "app_info",
            "information about qdrant server: the API this server speaks (Keel's own version "
            "is keel_build_info)",
            labels=["name", "version"],
        )
        app_info.add_metric([QDRANT_NAME, QDRANT_VERSION], 1)
        yield app_info
        yield GaugeMetricFamily(
            "app_status_recovery_mode", "1 in Qdrant's recovery mode; Keel has none", value=0
        )
        collections = open_collections(self._catalog)
        yield from _collection_families(collections, self._anonymizer)
        yield GaugeMetricFamily(
            "cluster_enabled", "1 with distributed mode on; Keel is a single node", value=0
        )
        by_collection = {}
        if self._params.per_collection:
            names = frozenset(collection.name for collection in collections)
            by_collection = self._requests.snapshot_by_collection(names)
        if by_collection:
            yield from _rest_families(_per_collection_series(by_collection, self._anonymizer))
        else:  # as Qdrant: nothing recorded per collection yet, the overall series instead
            series = [([], key, snapshot) for key, snapshot in self._requests.snapshot().items()]
            yield from _rest_families(series)
        yield from _memory_families()
        yield from _process_families()


def cumulative_buckets(snapshot: HistogramSnapshot) -> list[tuple[str, float]]:
    """Prometheus's cumulative `le` buckets, +Inf (== count) last."""
    bounds = [floatToGoString(bound) for bound in snapshot.upper_bounds]
    buckets = list(zip(bounds, snapshot.cumulative_counts()))
    buckets.append(("+Inf", snapshot.count))
    return buckets


# ---- private -------------------------------------------------------------------------------

# One request series: extra labels (the collection), its key, its statistics.
Series = tuple[list[tuple[str, str]], RequestKey, RequestSnapshot]


def _collection_families(collections: list[Collection], anonymizer: Anonymizer) -> Iterator[Metric]:
    gauges = {
        name: GaugeMetricFamily(name, text, labels=["id"])
        for name, text in (
            ("collection_running_optimizations", "optimization tasks running (Keel has none)"),
            ("collection_points", "points per collection"),
            ("collection_shard_transfer_incoming", "incoming shard transfers (single node)"),
            ("collection_shard_transfer_outgoing", "outgoing shard transfers (single node)"),
            ("collection_update_queue_length", "ops in the WAL not yet applied"),
            (
                "collection_update_queue_deferred_points",
                "points hidden from reads until optimized (Keel hides none)",
            ),
        )
    }
    vectors = GaugeMetricFamily(
        "collection_vectors",
        "vectors by collection and vector name",
        labels=["collection", "vector"],
    )
    vector_total = 0
    for collection in collections:
        collection_id = anonymizer.name(collection.name)
        counts = collection.vector_counts()
        for vector_name, count in sorted(counts.items()):
            vectors.add_metric(
                [collection_id, anonymizer.name(vector_name)], anonymizer.count(count)
            )
            vector_total += anonymizer.count(count)
        points = anonymizer.count(collection.stats().points_count)
        values = (0, points, 0, 0, update_queue(collection)["length"], 0)
        for family, value in zip(gauges.values(), values, strict=True):
            family.add_metric([collection_id], value)
    yield GaugeMetricFamily("collections_total", "collections in this node", value=len(collections))
    yield GaugeMetricFamily(
        "collections_vector_total", "vectors in every collection together", value=vector_total
    )
    if collections:
        yield vectors
    # Every collection is one shard with one replica, this node's, active.
    replicas = 1 if collections else 0
    yield GaugeMetricFamily(
        "collection_active_replicas_min", "fewest active replicas of a shard", value=replicas
    )
    yield GaugeMetricFamily(
        "collection_active_replicas_max", "most active replicas of a shard", value=replicas
    )
    yield GaugeMetricFamily(
        "collection_dead_replicas", "shard replicas not active (single node: none)", value=0
    )
    if collections:
        yield from gauges.values()


def _per_collection_series(
    by_collection: dict[str, dict[RequestKey, RequestSnapshot]], anonymizer: Anonymizer
) -> list[Series]:
    return [
        ([("collection", anonymizer.name(collection))], key, snapshot)
        for collection, snapshots in sorted(by_collection.items())
        for key, snapshot in snapshots.items()
    ]


def _rest_families(series: list[Series]) -> Iterator[Metric]:
    """rest_responses_*: a count per series, timings for status 200."""
    chosen = sorted(
        (item for item in series if item[1].endpoint in REST_ENDPOINTS),
        key=lambda item: (item[0], item[1].endpoint, item[1].method, item[1].status),
    )
    if not chosen:
        return
    names = ["method", "endpoint", "status"] + [name for name, _ in chosen[0][0]]
    total = CounterMetricFamily("rest_responses", "responses answered", labels=names)
    avg, low, high = (
        GaugeMetricFamily(f"rest_responses_{kind}_duration_seconds", text, labels=names)
        for kind, text in (
            ("avg", "mean response duration since start"),
            ("min", "fastest response"),
            ("max", "slowest response"),
        )
    )
    histogram = HistogramMetricFamily(
        "rest_responses_duration_seconds", "response latency", labels=names
    )
    for extra, key, snapshot in chosen:
        values = [key.method, key.endpoint, str(key.status)] + [value for _, value in extra]
        latency = snapshot.latency_s
        total.add_metric(values, latency.count)
        if key.status != TIMED_STATUS:
            continue
        assert latency.min_value is not None and latency.max_value is not None, latency
        avg.add_metric(values, latency.sum / latency.count)
        low.add_metric(values, latency.min_value)
        high.add_metric(values, latency.max_value)
        histogram.add_metric(values, cumulative_buckets(latency), latency.sum)
    yield total
    for family in (avg, low, high, histogram):
        if family.samples:
            yield family


def _memory_families() -> Iterator[Metric]:
    """memory_*: telemetry's memory, none where it is left out (as Qdrant without jemalloc)."""
    memory = memory_telemetry()
    if memory is None:
        return
    for field, value in memory.items():
        yield GaugeMetricFamily(f"memory_{field}", MEMORY_HELP[field], value=value)


def _process_families() -> Iterator[Metric]:
    """Qdrant's /proc figures prometheus_client's process collector does not have (it has
    process_open_fds and process_max_fds already); none off Linux, as in Qdrant."""
    try:
        threads = len(list((PROC_SELF / "task").iterdir()))
        with open(PROC_SELF / "maps", "rb") as maps:
            mmaps = sum(1 for _ in maps)
        max_mmaps = int(MAX_MAP_COUNT_PATH.read_text())
        fields = (PROC_SELF / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return
    minor = int(fields[STAT_MINFLT]) + int(fields[STAT_CMINFLT])
    major = int(fields[STAT_MAJFLT]) + int(fields[STAT_CMAJFLT])
    yield GaugeMetricFamily("process_threads", "threads of the process", value=threads)
    yield GaugeMetricFamily("process_open_mmaps", "memory mappings of the process", value=mmaps)
    yield GaugeMetricFamily(
        "system_max_mmaps", "the kernel's limit of memory mappings per process", value=max_mmaps
    )
    yield CounterMetricFamily(
        "process_minor_page_faults", "minor page faults (no disk access)", value=minor
    )
    yield CounterMetricFamily(
        "process_major_page_faults", "page faults that read from disk", value=major
    )
