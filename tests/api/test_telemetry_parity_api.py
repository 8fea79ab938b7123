"""`/telemetry` and `/metrics` as Qdrant 1.19's REST suite checks them on a single node
(its tests/openapi/test_service.py and test_update_queue.py), with Keel's numbers behind
every value: the checks are ported as behaviour, then each value is compared with what the
engine holds.

The node's parts from level 1 are Keel's own measures, checked against their sources:
`memory` against glibc's malloc and /proc (a buffer allocated between two answers must show
in both), `search_pool` against the read pools of the open collections, `hardware` empty
(Keel measures no request's CPU or I/O).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.collection import READ_THREADS
from server.api.telemetry import Anonymizer
from tests.api.conftest import Api

Samples = dict[tuple[str, frozenset], float]
SCROLL = "/collections/{collection_name}/points/scroll"
UPSERT = "/collections/{collection_name}/points"
TOP_KEYS_LEVEL_0 = {"id", "app", "collections", "cluster", "requests", "quota"}
# TelemetryData's field order in Qdrant 1.19 (src/common/telemetry.rs), from level 1.
TOP_KEYS_IN_ORDER = [
    "id",
    "app",
    "collections",
    "cluster",
    "requests",
    "memory",
    "hardware",
    "search_pool",
    "quota",
]
MIB = 1024 * 1024
HAS_MALLINFO2 = sys.platform == "linux" and hasattr(ctypes.CDLL(None), "mallinfo2")
LOCAL_KEYS_LEVEL_3 = {
    "variant_name",
    "status",
    "total_optimized_points",
    "vectors_size_bytes",
    "payloads_size_bytes",
    "num_points",
    "num_vectors",
    "num_vectors_by_name",
    "optimizations",
    "async_scorer",
    "update_queue",
}
LOCAL_KEYS_LEVEL_4 = LOCAL_KEYS_LEVEL_3 | {"segments", "indexed_only_excluded_vectors"}
NAMED = {
    "vectors": {
        "a": {"size": 4, "distance": "Dot"},
        "b": {"size": 2, "distance": "Cosine", "hnsw_config": {"m": 8}},
    }
}


async def metrics_text(api: Api, query: str = "") -> str:
    response = await api.client.get("/metrics" + query)
    assert response.status == 200, await response.text()
    return await response.text()


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def rest_labels(method: str, endpoint: str, status: int, **extra: str) -> dict[str, str]:
    return {"method": method, "endpoint": endpoint, "status": str(status), **extra}


async def telemetry(api: Api, **query: str) -> dict[str, Any]:
    """GET /telemetry, validated against Qdrant's TelemetryData by `api.call`."""
    return (await api.call("GET", "/telemetry", query=query or None)).result


async def upsert(api: Api, count: int, name: str = "c", first_id: int = 0) -> None:
    points = [
        {"id": first_id + i, "vector": [1.0, 0.0, 0.0, float(i)], "payload": {"n": i}}
        for i in range(count)
    ]
    response = await api.upsert({"points": points}, name=name, query={"wait": "true"})
    assert response.result["status"] == "completed"


async def scroll(api: Api, name: str = "c", body: Any = None, validate: bool = True) -> int:
    response = await api.call(
        "POST", SCROLL, json=body or {"limit": 1}, name=name, validate=validate
    )
    return response.status


# ---- /metrics ------------------------------------------------------------------------------


async def test_metrics_name_the_api_and_count_the_collections(api: Api) -> None:
    await api.create_collection("a")
    await api.create_collection("b")
    text = await metrics_text(api)
    assert "# HELP app_info information about qdrant server" in text
    assert "# TYPE app_info gauge" in text
    samples = parse(text)
    assert value(samples, "app_info", name="qdrant", version="1.19.0") == 1
    assert 'app_info{name="qdrant",version="' in text  # label order as Qdrant writes it
    assert value(samples, "collections_total") == 2
    await api.call("DELETE", "/collections/{collection_name}", name="b")
    assert value(parse(await metrics_text(api)), "collections_total") == 1


async def test_request_metrics_carry_no_collection_label_by_default(api: Api) -> None:
    await api.create_collection()
    await upsert(api, 3)
    for _ in range(2):
        assert await scroll(api) == 200
    text = await metrics_text(api)
    samples = parse(text)
    assert value(samples, "rest_responses_total", **rest_labels("POST", SCROLL, 200)) == 2
    assert value(samples, "collection_points", id="c") == 3
    request_series = [labels for name, labels in samples if name.startswith("rest_responses")]
    assert request_series
    assert not [labels for labels in request_series if "collection" in dict(labels)]


async def test_per_collection_request_metrics_label_each_existing_collection(api: Api) -> None:
    for name in ("a", "b", "gone"):
        await api.create_collection(name)
    for name in ("a", "a", "b", "gone"):
        assert await scroll(api, name) == 200
    await api.call("DELETE", "/collections/{collection_name}", name="gone")
    assert await scroll(api, "missing", validate=False) == 404
    samples = parse(await metrics_text(api, "?per_collection=true"))
    labels = rest_labels("POST", SCROLL, 200)
    assert value(samples, "rest_responses_total", **labels, collection="a") == 2
    assert value(samples, "rest_responses_total", **labels, collection="b") == 1
    collections = {
        dict(labels).get("collection")
        for name, labels in samples
        if name.startswith("rest_responses")
    }
    # Every series is labelled; a deleted collection and a made-up name are not there.
    assert collections == {"a", "b"}


async def test_per_collection_falls_back_to_the_overall_series_with_none_recorded(
    api: Api,
) -> None:
    """As in Qdrant: with nothing recorded per collection, the overall series are shown."""
    assert await scroll(api, "missing", validate=False) == 404  # kept overall only
    samples = parse(await metrics_text(api, "?per_collection=true"))
    assert value(samples, "rest_responses_total", **rest_labels("POST", SCROLL, 404)) == 1


async def test_request_metrics_cover_point_routes_and_time_successes_only(api: Api) -> None:
    await api.create_collection()
    await upsert(api, 2)
    assert await scroll(api) == 200
    assert await scroll(api, body={"limit": "many"}, validate=False) == 400
    assert (await api.call("GET", "/collections/{collection_name}")).status == 200
    samples = parse(await metrics_text(api))
    ok, refused = rest_labels("POST", SCROLL, 200), rest_labels("POST", SCROLL, 400)
    assert value(samples, "rest_responses_total", **refused) == 1
    for timing in ("avg", "min", "max"):
        assert (
            "rest_responses_" + timing + "_duration_seconds",
            frozenset(refused.items()),
        ) not in samples
    low = value(samples, "rest_responses_min_duration_seconds", **ok)
    mean = value(samples, "rest_responses_avg_duration_seconds", **ok)
    high = value(samples, "rest_responses_max_duration_seconds", **ok)
    assert 0 < low <= mean <= high
    assert value(samples, "rest_responses_duration_seconds_count", **ok) == 1
    endpoints = {dict(labels).get("endpoint") for name, labels in samples if "rest_" in name}
    assert "/collections/{collection_name}" not in endpoints  # not one of Qdrant's routes
    assert UPSERT in endpoints
    # Keel's own request metrics still count every route.
    keel_labels = rest_labels("GET", "/collections/{collection_name}", 200)
    assert value(samples, "keel_http_requests_total", **keel_labels) == 1


async def test_collection_metrics_are_the_engines_numbers(api: Api) -> None:
    await api.create_collection("c", **NAMED)
    points = [
        {"id": 1, "vector": {"a": [1, 0, 0, 0], "b": [1, 0]}},
        {"id": 2, "vector": {"a": [0, 1, 0, 0]}},
    ]
    await api.upsert({"points": points}, query={"wait": "true"})
    samples = parse(await metrics_text(api))
    assert value(samples, "collection_vectors", collection="c", vector="a") == 2
    assert value(samples, "collection_vectors", collection="c", vector="b") == 1
    assert value(samples, "collections_vector_total") == 3
    assert value(samples, "collection_points", id="c") == 2
    assert value(samples, "collection_update_queue_length", id="c") == 0
    assert value(samples, "collection_update_queue_deferred_points", id="c") == 0
    assert value(samples, "collection_running_optimizations", id="c") == 0
    for direction in ("incoming", "outgoing"):
        assert value(samples, f"collection_shard_transfer_{direction}", id="c") == 0
    assert value(samples, "collection_active_replicas_min") == 1
    assert value(samples, "collection_active_replicas_max") == 1
    assert value(samples, "collection_dead_replicas") == 0
    assert value(samples, "cluster_enabled") == 0
    assert value(samples, "app_status_recovery_mode") == 0
    assert value(samples, "keel_collection_points", collection="c") == 2  # Keel's own stay
    names = {name for name, _ in samples}
    assert not {name for name in names if name.startswith(("grpc_", "snapshot_"))}
    assert not {name for name in names if name.startswith("collection_hardware_metric_")}


@pytest.mark.skipif(sys.platform != "linux", reason="Qdrant reads these from /proc too")
async def test_process_figures_come_from_proc(api: Api) -> None:
    samples = parse(await metrics_text(api))
    assert value(samples, "process_threads") >= 1
    assert value(samples, "process_open_mmaps") >= 1
    max_map_count = int(Path("/proc/sys/vm/max_map_count").read_text())
    assert value(samples, "system_max_mmaps") == max_map_count
    assert value(samples, "process_minor_page_faults_total") > 0
    assert value(samples, "process_major_page_faults_total") >= 0
    assert value(samples, "process_open_fds") >= 1  # prometheus_client's, same name


@pytest.mark.skipif(not HAS_MALLINFO2, reason="Keel's memory part is glibc's and /proc's")
async def test_memory_gauges_are_telemetrys_memory(api: Api) -> None:
    """Qdrant exports its telemetry's memory as memory_* gauges; Keel's follow a 64 MiB
    buffer allocated between two scrapes, as the telemetry does."""
    before = parse(await metrics_text(api))
    for field in ("active", "allocated", "metadata", "resident", "retained"):
        assert value(before, f"memory_{field}_bytes") >= 0  # each is there
    assert value(before, "memory_metadata_bytes") == 0
    buffer = b"\x01" * (64 * MIB)
    during = parse(await metrics_text(api))
    for field in ("allocated", "resident"):
        grown_bytes = value(during, f"memory_{field}_bytes") - value(
            before, f"memory_{field}_bytes"
        )
        assert grown_bytes >= 60 * MIB, (field, grown_bytes)
    del buffer


async def test_metrics_query_parameters_are_checked(api: Api) -> None:
    response = await api.client.get("/metrics?timeout=0")
    assert response.status == 422
    response = await api.client.get("/metrics?per_collection=yes")
    assert response.status == 400
    assert (await response.json())["status"]["error"] == (
        "Deserialize error in query parameters: provided string was not `true` or `false`"
    )
    assert (await api.client.get("/metrics?timeout=5&anonymize=false")).status == 200


# ---- /telemetry ----------------------------------------------------------------------------


async def test_telemetry_by_default_is_level_0(api: Api) -> None:
    await api.create_collection()
    await upsert(api, 2)
    result = await telemetry(api)
    assert set(result) == TOP_KEYS_LEVEL_0
    assert result["collections"] == {"number_of_collections": 1}
    upserts = result["requests"]["rest"]["responses"]["PUT " + UPSERT]["200"]
    assert upserts["count"] == 1
    assert set(upserts) == {"count", "avg_duration_micros"}  # the details come at level 1
    assert "per_collection_responses" not in result["requests"]["rest"]
    assert "per_collection_responses" not in result["requests"]["grpc"]
    assert result["cluster"] == {"enabled": False}
    assert result["quota"]["config"] == {"enabled": False}
    assert "features" not in result["app"]


@pytest.mark.parametrize("level", [0, 1, 2, 3, 10])
async def test_each_details_level_has_qdrants_parts(api: Api, level: int) -> None:
    await api.create_collection()
    await upsert(api, 3)
    result = await telemetry(api, details_level=str(level))
    upserts = result["requests"]["rest"]["responses"]["PUT " + UPSERT]["200"]
    assert upserts["count"] == 1
    if level == 0:
        assert set(result) == TOP_KEYS_LEVEL_0
        assert set(result["collections"]) == {"number_of_collections"}
        return
    # Without glibc's mallinfo2 (musl, macOS) memory is left out, as Qdrant without jemalloc.
    expected = [key for key in TOP_KEYS_IN_ORDER if HAS_MALLINFO2 or key != "memory"]
    assert list(result) == expected
    assert set(result["collections"]) == {"number_of_collections", "collections", "snapshots"}
    assert result["app"]["features"]["staging"] is False  # Qdrant's suite skips on this
    assert upserts["last_responded"].endswith("Z")  # UTC, as chrono writes it
    last = datetime.fromisoformat(upserts["last_responded"])
    assert abs((datetime.now(UTC) - last).total_seconds()) < 60
    [collection] = result["collections"]["collections"]
    if level == 1:
        assert set(collection) == {"vectors", "optimizers_status", "params"}
        assert collection["vectors"] == 3
        return
    if level == 2:
        assert set(collection) == {"id", "init_time_ms", "config"}
        return
    assert set(collection) == {"id", "init_time_ms", "config", "shards", "transfers", "resharding"}
    [shard] = collection["shards"]
    assert set(shard) == {"id", "key", "local", "remote", "replicate_states", "partial_snapshot"}
    expected = LOCAL_KEYS_LEVEL_3 if level == 3 else LOCAL_KEYS_LEVEL_4
    assert set(shard["local"]) == expected
    if level >= 4:
        [segment] = shard["local"]["segments"]
        assert set(segment) == {"info", "config", "vector_index_searches", "payload_field_indices"}


@pytest.mark.skipif(not HAS_MALLINFO2, reason="Keel's memory part is glibc's and /proc's")
async def test_memory_is_what_malloc_and_proc_measure(api: Api) -> None:
    """A 64 MiB buffer, filled so its pages are resident, allocated between two answers:
    malloc's bytes in use and the resident anonymous memory both grow by it, and fall back
    once it is freed. resident_bytes is RssAnon, read here around the answer."""
    before = (await telemetry(api, details_level="1"))["memory"]
    assert before["metadata_bytes"] == 0  # glibc counts its bookkeeping inside its chunks
    assert before["active_bytes"] == before["allocated_bytes"]
    assert before["retained_bytes"] >= 0
    buffer = b"\x01" * (64 * MIB)  # past 512 bytes Python takes it from malloc
    rss_anon_low = _rss_anon_bytes()
    during = (await telemetry(api, details_level="1"))["memory"]
    rss_anon_high = _rss_anon_bytes()
    assert during["allocated_bytes"] - before["allocated_bytes"] >= 60 * MIB
    assert during["resident_bytes"] - before["resident_bytes"] >= 60 * MIB
    assert rss_anon_low - 8 * MIB <= during["resident_bytes"] <= rss_anon_high + 8 * MIB
    del buffer
    after = (await telemetry(api, details_level="1"))["memory"]
    assert during["allocated_bytes"] - after["allocated_bytes"] >= 60 * MIB


async def test_search_pool_is_the_read_threads_of_the_open_collections(api: Api) -> None:
    pool = (await telemetry(api, details_level="1"))["search_pool"]
    assert pool == {"mode": "high_cpu", "high_cpu_threads": 0, "high_io_threads": 0}
    await api.create_collection("a")
    await api.create_collection("b")
    pool = (await telemetry(api, details_level="2"))["search_pool"]
    assert pool["high_cpu_threads"] == pool["high_io_threads"] == 2 * READ_THREADS
    await api.call("DELETE", "/collections/{collection_name}", name="b")
    pool = (await telemetry(api, details_level="1"))["search_pool"]
    assert pool["high_cpu_threads"] == pool["high_io_threads"] == READ_THREADS
    assert "search_pool" not in await telemetry(api)  # level 0 has none of the node's parts


async def test_hardware_lists_no_collection_keel_measures_none(api: Api) -> None:
    """Qdrant lists each collection whose requests it measured; Keel measures none, so the
    map stays empty after writes and reads rather than showing made-up zeros."""
    await api.create_collection()
    await upsert(api, 3)
    assert await scroll(api) == 200
    result = await telemetry(api, details_level="3")
    assert result["hardware"] == {"collection_data": {}}


async def test_update_queue_op_num_counts_the_applied_ops(api: Api) -> None:
    """Qdrant's op_num is 0 on an empty collection and n after n waited updates."""
    await api.create_collection()

    async def queue() -> dict[str, int]:
        result = await telemetry(api, details_level="10")
        [collection] = result["collections"]["collections"]
        [shard] = collection["shards"]
        return shard["local"]["update_queue"]

    assert await queue() == {"length": 0, "op_num": 0}
    await upsert(api, 1)
    assert await queue() == {"length": 0, "op_num": 1}
    await upsert(api, 1)
    assert await queue() == {"length": 0, "op_num": 2}


async def test_shard_and_segment_numbers_are_the_engines(api: Api) -> None:
    await api.create_collection("c", **NAMED)
    payloads = [{"city": "Berlin"}, {"city": "Paris", "n": 2}]
    points = [
        {"id": 1, "vector": {"a": [1, 0, 0, 0], "b": [1, 0]}, "payload": payloads[0]},
        {"id": 2, "vector": {"a": [0, 1, 0, 0]}, "payload": payloads[1]},
    ]
    await api.upsert({"points": points}, query={"wait": "true"})
    index = {"field_name": "city", "field_schema": "keyword"}
    await api.call(
        "PUT", "/collections/{collection_name}/index", json=index, query={"wait": "true"}
    )
    [collection] = (await telemetry(api, details_level="4"))["collections"]["collections"]
    assert collection["id"] == "c"
    assert collection["init_time_ms"] >= 0
    assert collection["config"]["params"]["vectors"] == NAMED["vectors"]
    [shard] = collection["shards"]
    cluster = (await api.call("GET", "/collections/{collection_name}/cluster")).result
    assert shard["replicate_states"] == {str(cluster["peer_id"]): "Active"}
    local = shard["local"]
    assert (local["num_points"], local["num_vectors"]) == (2, 3)
    assert local["num_vectors_by_name"] == {"a": 2, "b": 1}
    assert local["vectors_size_bytes"] == (2 * 4 + 1 * 2) * 4  # count x size x float32
    json_bytes = sum(len(json.dumps(p, separators=(",", ":")).encode()) for p in payloads)
    assert local["payloads_size_bytes"] == json_bytes
    assert local["status"] == "green"
    [segment] = local["segments"]
    info = segment["info"]
    assert (info["num_points"], info["num_vectors"], info["num_indexed_vectors"]) == (2, 3, 3)
    assert info["vector_data"]["b"] == {
        "num_vectors": 1,
        "num_indexed_vectors": 1,
        "num_deleted_vectors": 0,
    }
    assert info["index_schema"]["city"]["data_type"] == "keyword"
    assert info["disk_usage_bytes"] > 0
    assert info["ram_usage_bytes"] > 0
    optimizations = await api.call(
        "GET", "/collections/{collection_name}/optimizations", query={"with": "idle_segments"}
    )
    [idle] = optimizations.result["idle_segments"]
    assert info["uuid"] == idle["uuid"]  # one segment, one uuid, wherever it is named
    vector_data = segment["config"]["vector_data"]
    assert vector_data["b"]["distance"] == "Cosine"
    graph_m = {name: data["index"]["options"]["m"] for name, data in vector_data.items()}
    assert graph_m == {"a": 16, "b": 8}  # b's own m over the collection's


async def test_per_collection_telemetry_lists_each_collections_requests(api: Api) -> None:
    await api.create_collection("a")
    await api.create_collection("b")
    assert await scroll(api, "a") == 200
    result = await telemetry(api, per_collection="true", details_level="1")
    by_collection = result["requests"]["rest"]["per_collection_responses"]
    assert by_collection["a"]["POST " + SCROLL]["200"]["count"] == 1
    assert "POST " + SCROLL not in by_collection["b"]
    assert "per_collection_responses" not in result["requests"]["grpc"]


async def test_anonymize_hides_collection_vector_and_field_names(api: Api) -> None:
    secret = "secret_tenant"
    vectors = {"vectors": {"secret_vector": {"size": 4, "distance": "Dot"}}}
    await api.create_collection(secret, **vectors)
    point = {"id": 1, "vector": {"secret_vector": [1, 0, 0, 0]}, "payload": {"secret_field": 1}}
    await api.upsert({"points": [point]}, name=secret, query={"wait": "true"})
    index = {"field_name": "secret_field", "field_schema": "integer"}
    await api.call(
        "PUT",
        "/collections/{collection_name}/index",
        json=index,
        name=secret,
        query={"wait": "true"},
    )
    result = await telemetry(api, details_level="10", anonymize="true", per_collection="true")
    assert not _paths_containing(result, "secret")
    [collection] = result["collections"]["collections"]
    hidden = Anonymizer(is_on=True).name(secret)
    assert collection["id"] == hidden
    assert collection["config"]["uuid"] is None
    assert collection["shards"][0]["local"]["num_points"] == 1  # small counts stay exact
    metrics = await metrics_text(api, "?anonymize=true&per_collection=true")
    assert "secret" not in metrics
    assert value(parse(metrics), "collection_points", id=hidden) == 1
    assert secret in await metrics_text(api)  # off by default


def test_anonymized_counts_keep_their_leading_digits() -> None:
    anonymizer = Anonymizer(is_on=True)
    assert [anonymizer.count(n) for n in (0, 7, 9_999, 31_622)] == [0, 7, 9_999, 31_622]
    assert anonymizer.count(123_456) == 123_450
    assert anonymizer.count(7_654_321) == 7_654_000  # 10^7 magnitude: 4 digits kept
    assert Anonymizer(is_on=False).count(7_654_321) == 7_654_321


async def test_telemetry_query_parameters_are_checked(api: Api) -> None:
    cases = [
        ("details_level=high", 400, "invalid digit found in string"),
        ("details_level=-1", 400, "invalid digit found in string"),
        ("anonymize=1", 400, "provided string was not `true` or `false`"),
        ("timeout=0", 422, "[timeout: value 0 invalid, must be 1 or larger]"),
    ]
    for query, status, text in cases:
        response = await api.call("GET", "/telemetry", query=query)
        assert response.status == status, query
        assert response.error.endswith(text), response.error


async def test_telemetry_past_its_timeout_is_408(api: Api, monkeypatch) -> None:
    """The payload size is a scan; `timeout` bounds the gathering, as Qdrant's does."""
    await api.create_collection()

    async def slow_scan(self: Any) -> int:
        await asyncio.sleep(5)
        return 0

    monkeypatch.setattr("engine.collection.Collection.payload_bytes", slow_scan)
    response = await api.call("GET", "/telemetry", query={"details_level": "3", "timeout": "1"})
    assert response.status == 408
    assert response.error == "Timeout: Operation 'collections telemetry' timed out after 1s"
    assert (await api.call("GET", "/telemetry", query={"details_level": "2"})).status == 200


def _rss_anon_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def _paths_containing(document: Any, word: str, path: str = "") -> list[str]:
    """Where `word` is in a key or a string of `document`, as JSON paths."""
    if isinstance(document, dict):
        found = [f"{path}.{key}" for key in document if word in str(key)]
        for key, item in document.items():
            found += _paths_containing(item, word, f"{path}.{key}")
        return found
    if isinstance(document, list):
        return [
            p
            for i, item in enumerate(document)
            for p in _paths_containing(item, word, f"{path}[{i}]")
        ]
    return [path] if isinstance(document, str) and word in document else []
