"""Qdrant's TelemetryData for Keel: what `GET /telemetry` answers at each details level.

Owns: the query parameters of `/telemetry` and `/metrics` (`TelemetryParams`), `Anonymizer`,
the name and API version Keel answers as (`QDRANT_NAME`, `QDRANT_VERSION`), and the
TelemetryData document built from the catalog and the request statistics.
Not here: the route (server/api/service.py), the statistics themselves
(server/api/request_stats.py), Prometheus text (metrics.py, qdrant_metrics.py).

Qdrant 1.19 (`src/common/telemetry.rs`, `telemetry_ops/`, `lib/collection/src/telemetry.rs`)
shapes the answer by `details_level`: 0 has the collection count and the request count and
mean by route; 1 adds app features, per-request min/max/total/last answer, and one short
entry per collection; 2 makes those entries id, load time and config; 3 adds the shards; 4
and above the segments; from level 1 the node's `memory`, `hardware` and `search_pool` come
too. Keel fills each part with its own numbers. A part Keel has no equivalent for is left
out, Qdrant's own form when it has none: the cluster's status and config (single node), the
app's runtime flags and system facts. Nothing is made up; where a Qdrant field names
something Keel never does (an optimizer, a deferred point, a partial snapshot) its value is
the true zero.

The node's parts, each Keel's own measure (Qdrant: `telemetry_ops/memory_telemetry.rs`,
`hardware.rs`, `search_pool.rs`):
- `memory`: Qdrant reads jemalloc; Keel runs on glibc's malloc and reads `mallinfo2()`
  (chunks in use, free bytes kept) and `/proc/self/status` (`RssAnon`). Left out where
  either is missing (not glibc 2.33+, no /proc), as Qdrant leaves it out without jemalloc.
- `hardware`: Qdrant lists the collections whose requests it measured; Keel measures no
  request's CPU or I/O, so it lists none (an empty map, never made-up zeros).
- `search_pool`: Qdrant's two search runtimes; Keel has one fixed read pool per open
  collection (`READ_THREADS` threads), so both counts are their sum and the mode is fixed.

Keel's collection is one local shard (id 0) of one segment in LMDB: the segment's vectors
are kept in memory for search ("Memory" storage) except multivectors, its payloads in the
memory-mapped LMDB file ("mmap"). Sizes are estimates as Qdrant's are: vectors as count x
size x 4 bytes (what strict mode bounds), payloads as their JSON size (a scan in the read
pool, cached; bounded by `timeout`).
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.catalog import Catalog
from engine.collection import READ_THREADS, Collection
from engine.errors import NotReady
from server.api.distributed import SHARD_ID, SHARD_STATE, peer_id_of
from server.api.optimizations import segment_uuid
from server.api.request_stats import RequestKey, RequestSnapshot
from server.responses import ApiError
from server.wire.collection_config import collection_info_json, payload_schema_json

QDRANT_NAME = "qdrant"
QDRANT_VERSION = "1.19.0"  # the API version Keel speaks; Keel's own is in server/version.py
TIMEOUT_S_DEFAULT = 60  # Qdrant's DEFAULT_TELEMETRY_TIMEOUT
FLOAT32_BYTES = 4
VARIANT_NAME = "local shard"
# AppFeaturesTelemetry: build features of a Qdrant binary. Keel has none of them: no debug
# build, no /debug routes ("staging"), no GPU, no RocksDB, no recovery mode.
APP_FEATURES = {
    "debug": False,
    "service_debug_feature": False,
    "recovery_mode": False,
    "gpu": False,
    "rocksdb": False,
    "staging": False,
}
# Keel enforces no resource quota: disabled, and no resource capped (Qdrant's null).
QUOTA = {"config": {"enabled": False}, "exceeded": {"resident_memory": None, "disk_usage": None}}
PARTIAL_SNAPSHOT = {
    "ongoing_create_snapshot_requests": 0,
    "is_recovering": False,
    "recovery_timestamp": 0,
}
ANONYMIZED_COUNT_DIGITS = 4  # Qdrant keeps the leading digits of a count up to 10^4
PROC_STATUS_PATH = Path("/proc/self/status")
KIB = 1024
# Qdrant routes searches to its smaller high_cpu pool under CPU load and to its high_io pool,
# over-committed for IO waits, otherwise. Keel's read pools have a fixed size and never
# switch to a bigger one: the high_cpu kind.
SEARCH_POOL_MODE = "high_cpu"


@dataclass(frozen=True)
class TelemetryParams:
    details_level: int = 0
    anonymize: bool = False
    per_collection: bool = False
    timeout_s: int = TIMEOUT_S_DEFAULT


def parse_telemetry_params(query: Mapping[str, str], *, has_details: bool) -> TelemetryParams:
    """`anonymize`, `per_collection`, `timeout` (u64 >= 1) and, for `/telemetry`,
    `details_level` (usize); other keys are ignored, as serde does without deny_unknown."""
    timeout_s = _query_u64(query, "timeout", TIMEOUT_S_DEFAULT)
    if timeout_s < 1:
        message = f"[timeout: value {timeout_s} invalid, must be 1 or larger]"
        raise ApiError(422, f"Validation error in query parameters: {message}")
    return TelemetryParams(
        details_level=_query_u64(query, "details_level", 0) if has_details else 0,
        anonymize=_query_bool(query, "anonymize"),
        per_collection=_query_bool(query, "per_collection"),
        timeout_s=timeout_s,
    )


class Anonymizer:
    """Qdrant's `anonymize=true`: names (collections, vectors, payload fields) become a hash
    of themselves, counts keep their leading digits; off, both are the identity."""

    def __init__(self, is_on: bool) -> None:
        self.is_on = is_on

    def name(self, text: str) -> str:
        if not self.is_on:
            return text
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return str(int.from_bytes(digest, "big"))

    def count(self, value: int) -> int:
        if not self.is_on or value <= 0:
            return value
        magnitude = round(math.log10(value))
        if magnitude <= ANONYMIZED_COUNT_DIGITS:
            return value
        coefficient = 10 ** (magnitude - ANONYMIZED_COUNT_DIGITS)
        return value // coefficient * coefficient


@dataclass(frozen=True)
class AppFacts:
    """What the app knows of itself: the telemetry id, Keel's version, its start time."""

    telemetry_id: str
    keel_version: str
    started_at: str


async def build_telemetry(
    catalog: Catalog,
    app: AppFacts,
    requests: dict[RequestKey, RequestSnapshot],
    by_collection: dict[str, dict[RequestKey, RequestSnapshot]] | None,
    params: TelemetryParams,
) -> dict[str, Any]:
    """TelemetryData at `params.details_level`; ApiError 408 past `params.timeout_s`."""
    level = params.details_level
    anonymizer = Anonymizer(params.anonymize)
    try:
        async with asyncio.timeout(params.timeout_s):
            collections = await _collections_telemetry(catalog, level, anonymizer)
    except TimeoutError:
        message = f"Operation 'collections telemetry' timed out after {params.timeout_s}s"
        raise ApiError(408, f"Timeout: {message}") from None
    result: dict[str, Any] = {
        "id": app.telemetry_id,
        "app": _app_telemetry(app, level),
        "collections": collections,
        "cluster": {"enabled": False},  # a single node: no consensus, no peers
        "requests": {
            "rest": _web_api_telemetry(requests, by_collection, level, anonymizer),
            "grpc": {"responses": {}},  # Keel serves REST only
        },
    }
    if level >= 1:  # Qdrant's order: after requests, before quota
        memory = memory_telemetry()
        if memory is not None:
            result["memory"] = memory
        # Keel counts no request's CPU or I/O: no collection has counters to list.
        result["hardware"] = {"collection_data": {}}
        result["search_pool"] = search_pool_telemetry(catalog)
    result["quota"] = QUOTA
    return result


def open_collections(catalog: Catalog) -> list[Collection]:
    """Every open collection by name; none while recovery has not finished."""
    try:
        return [catalog.get(name) for name in catalog.names()]
    except NotReady:
        return []


def memory_telemetry() -> dict[str, int] | None:
    """MemoryTelemetry from glibc's malloc and /proc; None where either is missing.

    jemalloc's fields, filled with what glibc measures: `active_bytes` and `allocated_bytes`
    are the bytes of the chunks malloc has handed out and not got back (mallinfo2's
    uordblks + hblkhd: each chunk's size word and alignment included, what the allocations
    occupy, nearer jemalloc's `active`; glibc keeps no count of the bytes asked for, so
    `allocated` carries the same figure).
    `metadata_bytes` is 0: glibc keeps its bookkeeping inside those chunks and heaps, so
    none is left to count apart. `retained_bytes` is the free bytes malloc keeps in its
    heaps instead of returning them to the system (fordblks). `resident_bytes` is the
    process's resident anonymous memory (RssAnon): every allocator's pages in RAM, Python's
    own small-object arenas included, LMDB's file pages not. Python's objects of 512 bytes
    or less come from those arenas, not malloc, so they count in `resident_bytes` only.
    """
    if _MALLINFO2 is None:
        return None
    resident_bytes = _rss_anon_bytes()
    if resident_bytes is None:
        return None
    info = _MALLINFO2()
    in_use_bytes = info.uordblks + info.hblkhd
    return {
        "active_bytes": in_use_bytes,
        "allocated_bytes": in_use_bytes,
        "metadata_bytes": 0,
        "resident_bytes": resident_bytes,
        "retained_bytes": info.fordblks,
    }


def search_pool_telemetry(catalog: Catalog) -> dict[str, Any]:
    """SearchThreadPoolTelemetry: Keel's read pools, one of READ_THREADS threads per open
    collection (engine/collection.py), summed; the same pool answers in either mode."""
    threads_count = READ_THREADS * len(open_collections(catalog))
    return {
        "mode": SEARCH_POOL_MODE,
        "high_cpu_threads": threads_count,
        "high_io_threads": threads_count,
    }


def duration_statistics(snapshot: RequestSnapshot, level: int) -> dict[str, Any]:
    """OperationDurationStatistics: count and mean always, the rest from level 1 (Qdrant's
    `detailed`). The mean is over every answer since start, not Qdrant's last 128."""
    latency = snapshot.latency_s
    assert latency.count > 0, "a request key exists only once a request was counted"
    assert latency.min_value is not None and latency.max_value is not None, latency
    statistics: dict[str, Any] = {
        "count": latency.count,
        "avg_duration_micros": latency.sum / latency.count * 1e6,
    }
    if level >= 1:
        statistics["min_duration_micros"] = latency.min_value * 1e6
        statistics["max_duration_micros"] = latency.max_value * 1e6
        statistics["total_duration_micros"] = round(latency.sum * 1e6)
        statistics["last_responded"] = _rfc3339(snapshot.last_responded_s)
    return statistics


def vectors_size_bytes(collection: Collection, counts: Mapping[str, int]) -> int | None:
    """Dense vectors as count x size x float32, as strict mode counts them; None with a
    multivector name (its rows per point are not counted anywhere without a scan)."""
    vectors = collection.config.vectors
    if any(vector.is_multivector for vector in vectors.values()):
        return None
    return sum(counts[name] * vector.size * FLOAT32_BYTES for name, vector in vectors.items())


# ---- private: parts of the document --------------------------------------------------------


def _app_telemetry(app: AppFacts, level: int) -> dict[str, Any]:
    result: dict[str, Any] = {"name": "keel", "version": app.keel_version}
    if level >= 1:
        result["features"] = APP_FEATURES
    result["startup"] = app.started_at
    return result


async def _collections_telemetry(
    catalog: Catalog, level: int, anonymizer: Anonymizer
) -> dict[str, Any]:
    collections = open_collections(catalog)
    result: dict[str, Any] = {"number_of_collections": len(collections)}
    if level < 1:
        return result
    if level == 1:
        result["collections"] = [_aggregated(c, anonymizer) for c in collections]
    else:
        result["collections"] = [
            await _collection_telemetry(catalog, collection, level, anonymizer)
            for collection in collections
        ]
    result["snapshots"] = []  # Keel keeps no per-collection snapshot counters
    return result


def _aggregated(collection: Collection, anonymizer: Anonymizer) -> dict[str, Any]:
    """CollectionsAggregatedTelemetry: vectors, optimizer status, params."""
    return {
        "vectors": anonymizer.count(sum(collection.vector_counts().values())),
        "optimizers_status": "ok",  # Keel has no optimizer that could fail
        "params": _config(collection, anonymizer)["params"],
    }


def _config(collection: Collection, anonymizer: Anonymizer) -> dict[str, Any]:
    """The collection's config as CollectionInfo shows it; anonymized, the vector names are
    hashed and the free-form metadata left out."""
    config = collection_info_json(collection.config, collection.stats())["config"]
    if not anonymizer.is_on:
        return config
    params = config["params"]
    if not collection.config.is_single_unnamed:  # the named form: a map by name
        params["vectors"] = {anonymizer.name(k): v for k, v in params["vectors"].items()}
    if "sparse_vectors" in params:
        sparse = params["sparse_vectors"]
        params["sparse_vectors"] = {anonymizer.name(k): v for k, v in sparse.items()}
    config.pop("metadata", None)
    return config


async def _collection_telemetry(
    catalog: Catalog, collection: Collection, level: int, anonymizer: Anonymizer
) -> dict[str, Any]:
    config = _config(collection, anonymizer)
    config.setdefault("quantization_config", None)
    config["uuid"] = None if anonymizer.is_on else str(uuid.UUID(collection.incarnation))
    result: dict[str, Any] = {"id": anonymizer.name(collection.name)}
    if collection.open_took_s is not None:
        result["init_time_ms"] = round(collection.open_took_s * 1000)
    result["config"] = config
    if level >= 3:
        local = await _local_shard(collection, level, anonymizer)
        replica = {
            "id": SHARD_ID,
            "key": None,
            "local": local,
            "remote": [],
            "replicate_states": {str(peer_id_of(catalog)): SHARD_STATE},
            # Keel makes and recovers no partial snapshots: none ever ran.
            "partial_snapshot": PARTIAL_SNAPSHOT,
        }
        result.update(shards=[replica], transfers=[], resharding=[])
    return result


async def _local_shard(
    collection: Collection, level: int, anonymizer: Anonymizer
) -> dict[str, Any]:
    """LocalShardTelemetry of the collection's one shard."""
    stats = collection.stats()
    counts = collection.vector_counts()
    payload_bytes = await collection.payload_bytes()
    vector_bytes = vectors_size_bytes(collection, counts)
    local: dict[str, Any] = {
        "variant_name": VARIANT_NAME,
        "status": stats.status,
        "total_optimized_points": 0,  # Keel has no optimizer
        "payloads_size_bytes": payload_bytes,
        "num_points": anonymizer.count(stats.points_count),
        "num_vectors": anonymizer.count(sum(counts.values())),
        "num_vectors_by_name": {
            anonymizer.name(name): anonymizer.count(count) for name, count in counts.items()
        },
        "optimizations": {"status": "ok", "optimizations": {"count": 0}},
        "async_scorer": False,  # no io_uring scorer
        "update_queue": update_queue(collection),
    }
    if vector_bytes is not None:
        local["vectors_size_bytes"] = vector_bytes
    if level >= 4:
        if vector_bytes is not None:  # a segment's sizes are required numbers
            segment = await _segment(collection, counts, vector_bytes, payload_bytes, anonymizer)
            local["segments"] = [segment]
        # Keel has no `indexed_only` search: no vector is ever left out of one.
        local["indexed_only_excluded_vectors"] = {}
    return local


def update_queue(collection: Collection) -> dict[str, int]:
    """ShardUpdateQueueInfo: ops appended to the WAL and not yet applied, and the number of
    ops applied (Qdrant's op_num is 0 before the first and n after the n-th)."""
    progress = collection.metrics()
    return {
        "length": progress.appended_op_id - progress.applied_op_id,
        "op_num": progress.applied_op_id + 1,
    }


async def _segment(
    collection: Collection,
    counts: Mapping[str, int],
    vector_bytes: int,
    payload_bytes: int,
    anonymizer: Anonymizer,
) -> dict[str, Any]:
    """SegmentTelemetry of the collection's one segment (its LMDB store and graphs)."""
    stats = collection.stats()
    indexed = collection.metrics().index_vector_counts
    disk_bytes = await asyncio.to_thread(_directory_bytes, collection.directory)
    info = {
        "uuid": str(segment_uuid(collection)),
        "segment_type": "indexed",
        "num_vectors": anonymizer.count(sum(counts.values())),
        "num_points": anonymizer.count(stats.points_count),
        "num_deferred_points": 0,  # a point is visible once applied
        "num_indexed_vectors": anonymizer.count(stats.indexed_vectors_count),
        "num_deleted_vectors": 0,  # a delete removes the vector from LMDB at once
        "vectors_size_bytes": vector_bytes,
        "payloads_size_bytes": payload_bytes,
        "ram_usage_bytes": collection.read_view.memory_bytes(),
        "disk_usage_bytes": disk_bytes,
        "is_appendable": True,
        "index_schema": {
            anonymizer.name(field): schema
            for field, schema in payload_schema_json(stats.payload_indexes).items()
        },
        "vector_data": {
            anonymizer.name(name): {
                "num_vectors": anonymizer.count(count),
                "num_indexed_vectors": anonymizer.count(indexed.get(name, 0)),
                "num_deleted_vectors": 0,
            }
            for name, count in counts.items()
        },
    }
    return {
        "info": info,
        "config": _segment_config(collection, anonymizer),
        "vector_index_searches": [],  # Keel keeps no per-index search statistics
        "payload_field_indices": [],  # nor per-index value counts
    }


def _segment_config(collection: Collection, anonymizer: Anonymizer) -> dict[str, Any]:
    """SegmentConfig: each vector's size, distance and graph settings (a vector's own `m`
    and `ef_construct` over the collection's)."""
    hnsw = collection_info_json(collection.config, collection.stats())["config"]["hnsw_config"]
    vector_data = {}
    for name, vector in collection.config.vectors.items():
        options = dict(hnsw)
        if vector.hnsw_m is not None:
            options["m"] = vector.hnsw_m
        if vector.hnsw_ef_construct is not None:
            options["ef_construct"] = vector.hnsw_ef_construct
        vector_data[anonymizer.name(name)] = {
            "size": vector.size,
            "distance": vector.distance.value,
            "storage_type": "Memory",  # persisted in LMDB, searched from memory
            "index": {"type": "hnsw", "options": options},
        }
    return {"vector_data": vector_data, "payload_storage_type": {"type": "mmap"}}


def _web_api_telemetry(
    requests: dict[RequestKey, RequestSnapshot],
    by_collection: dict[str, dict[RequestKey, RequestSnapshot]] | None,
    level: int,
    anonymizer: Anonymizer,
) -> dict[str, Any]:
    """WebApiTelemetry: by "METHOD template", then status; per collection when asked."""
    result: dict[str, Any] = {"responses": _responses(requests, level)}
    if by_collection:  # Qdrant leaves the key out when it is empty
        result["per_collection_responses"] = {
            anonymizer.name(collection): _responses(snapshots, level)
            for collection, snapshots in sorted(by_collection.items())
        }
    return result


def _responses(
    snapshots: dict[RequestKey, RequestSnapshot], level: int
) -> dict[str, dict[str, Any]]:
    responses: dict[str, dict[str, Any]] = {}
    for key, snapshot in sorted(snapshots.items(), key=lambda item: str(item[0])):
        by_status = responses.setdefault(f"{key.method} {key.endpoint}", {})
        by_status[str(key.status)] = duration_statistics(snapshot, level)
    return responses


def _rfc3339(wall_s: float) -> str:
    text = datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"  # as chrono writes UTC, and app.startup is


def _directory_bytes(directory: Path) -> int:
    """Bytes of every file under the collection's directory (LMDB, WAL, graphs)."""
    total = 0
    for root, _, files in os.walk(directory):
        for file_name in files:
            try:
                total += os.stat(os.path.join(root, file_name)).st_blocks * 512
            except FileNotFoundError:
                continue  # a WAL segment or checkpoint replaced meanwhile
    return total


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc 2.33 and later): ten size_t counters."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _load_mallinfo2() -> Any:
    """glibc's mallinfo2, or None (no dlopen, musl, glibc before 2.33). Not the older
    mallinfo: its int fields wrap past 2 GiB."""
    try:
        # The process's own symbols (dlopen(NULL)) hold libc's, as server/malloc_arenas.py.
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function


_MALLINFO2 = _load_mallinfo2()


def _rss_anon_bytes() -> int | None:
    """RssAnon of /proc/self/status (kB there), or None without it (not Linux, or a
    kernel before 4.5)."""
    try:
        text = PROC_STATUS_PATH.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("RssAnon:"):
            value_kib, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value_kib) * KIB
    return None


def _query_bool(query: Mapping[str, str], key: str) -> bool:
    text = query.get(key)
    if text is None:
        return False
    if text not in ("true", "false"):
        message = "provided string was not `true` or `false`"
        raise ApiError(400, f"Deserialize error in query parameters: {message}")
    return text == "true"


def _query_u64(query: Mapping[str, str], key: str, default: int) -> int:
    text = query.get(key)
    if text is None:
        return default
    if not text:
        message = "cannot parse integer from empty string"
    elif not (text.isascii() and text.isdigit()):
        message = "invalid digit found in string"
    elif int(text) >= 2**64:
        message = "number too large to fit in target type"
    else:
        return int(text)
    raise ApiError(400, f"Deserialize error in query parameters: {message}")
