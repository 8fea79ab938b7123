"""`GET /metrics` (Prometheus text) and `/telemetry`: values that move with writes, request
labels that are route templates, answers during recovery, and the API key switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.catalog import Catalog
from engine.limits import MIB, EngineSettings
from server.app import create_app
from server.auth import MISSING_KEY_TEXT
from tests.api.conftest import KEEL_VERSION, Api

Samples = dict[tuple[str, frozenset], float]
RW, RO = "rw-secret", "ro-secret"


async def scrape(client: Any, headers: dict | None = None) -> Samples:
    response = await client.get("/metrics", headers=headers or {})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def http_count(samples: Samples, method: str, endpoint: str, status: int) -> float:
    labels = {"method": method, "endpoint": endpoint, "status": str(status)}
    return samples.get(("keel_http_requests_total", frozenset(labels.items())), 0.0)


def points_body(first_id: int, count: int) -> dict:
    return {
        "points": [
            {"id": point_id, "vector": [1.0, 0.0, 0.0, float(point_id)]}
            for point_id in range(first_id, first_id + count)
        ]
    }


async def test_write_path_metrics_move_with_waited_upserts(api: Api):
    """Three upserts with wait=true between two scrapes: op ids advance by three, lag and
    unapplied bytes are back to zero, and every histogram counted the new batches."""
    await api.create_collection("c")
    await api.upsert(points_body(0, 2), query={"wait": "true"})
    before = await scrape(api.client)
    for first_id in (10, 20, 30):
        assert (await api.upsert(points_body(first_id, 5), query={"wait": "true"})).result
    after = await scrape(api.client)
    for name in ("appended", "durable", "applied"):
        metric = f"keel_collection_{name}_op_id"
        assert value(after, metric, collection="c") == value(before, metric, collection="c") + 3
    assert value(after, "keel_collection_applied_op_id", collection="c") == 3
    assert value(after, "keel_collection_apply_lag_ops", collection="c") == 0
    assert value(after, "keel_collection_unapplied_bytes", collection="c") == 0
    assert value(after, "keel_collection_points", collection="c") == 17
    assert value(after, "keel_collection_index_vectors", collection="c", vector="") == 17
    # The read view holds at least the 17 vectors' floats.
    assert value(after, "keel_collection_read_view_bytes", collection="c") >= 17 * 4 * 4
    assert value(after, "keel_collection_checkpoint_age_seconds", collection="c") >= 0
    assert value(after, "keel_collection_write_path_failed", collection="c") == 0
    assert value(after, "keel_collections") == 1
    assert value(after, "keel_ready") == 1
    for histogram, growth_min in (
        ("keel_wal_fsync_duration_seconds_count", 1),
        ("keel_wal_batch_records_sum", 3),
        ("keel_apply_batch_ops_sum", 3),
        ("keel_apply_batch_duration_seconds_count", 1),
    ):
        grown = value(after, histogram, collection="c") - value(before, histogram, collection="c")
        assert grown >= growth_min, (histogram, grown)
    # Histograms stay well-formed: +Inf equals _count.
    inf_bucket = value(after, "keel_wal_batch_records_bucket", collection="c", le="+Inf")
    assert inf_bucket == value(after, "keel_wal_batch_records_count", collection="c")


async def test_requests_are_counted_by_route_template_method_and_status(api: Api):
    await api.create_collection("c")
    await api.client.get("/collections/c")
    await api.client.get("/collections/c/")  # the trailing-slash route counts as the same
    await api.client.get("/collections/missing")
    await api.client.get("/no/such/route")
    samples = await scrape(api.client)
    template = "/collections/{collection_name}"
    assert http_count(samples, "GET", template, 200) == 2
    assert http_count(samples, "GET", template, 404) == 1
    assert http_count(samples, "PUT", template, 200) == 1
    assert http_count(samples, "GET", "unmatched", 404) == 1
    endpoints = {dict(labels).get("endpoint") for _, labels in samples}
    assert not {"/collections/c", "/collections/missing", "/no/such/route"} & endpoints
    duration_labels = {"method": "GET", "endpoint": template, "status": "200"}
    assert value(samples, "keel_http_request_duration_seconds_count", **duration_labels) == 2


async def test_a_too_large_body_is_counted_as_413(aiohttp_client, catalog: Catalog):
    app = create_app(catalog, keel_version=KEEL_VERSION, max_request_size_bytes=MIB)
    client = await aiohttp_client(app)
    await client.put("/collections/c", json={"vectors": {"size": 4, "distance": "Dot"}})
    response = await client.put("/collections/c/points", data=b"x" * (2 * MIB))
    assert response.status == 413
    samples = await scrape(client)
    assert http_count(samples, "PUT", "/collections/{collection_name}/points", 413) == 1


async def test_metrics_answer_while_recovery_has_not_finished(aiohttp_client, tmp_path: Path):
    catalog = Catalog(tmp_path, EngineSettings())  # not opened: recovery has not run
    client = await aiohttp_client(create_app(catalog, keel_version=KEEL_VERSION))
    samples = await scrape(client)
    assert value(samples, "keel_ready") == 0
    assert value(samples, "keel_collections") == 0
    assert not [name for name, _ in samples if name.startswith("keel_collection_")]
    # Qdrant's names answer too: no collection yet, the API Keel speaks.
    assert value(samples, "collections_total") == 0
    assert value(samples, "app_info", name="qdrant", version="1.19.0") == 1
    assert value(samples, "collection_active_replicas_min") == 0
    assert not [labels for _, labels in samples if {"id", "collection"} & dict(labels).keys()]
    response = await client.get("/telemetry")
    assert response.status == 200
    assert (await response.json())["result"]["collections"] == {"number_of_collections": 0}


@pytest.mark.parametrize("is_key_required", [True, False])
async def test_the_metrics_key_requirement_follows_the_setting(
    aiohttp_client, catalog: Catalog, is_key_required: bool
):
    app = create_app(
        catalog,
        keel_version=KEEL_VERSION,
        api_key=RW,
        read_only_api_key=RO,
        metrics_require_api_key=is_key_required,
    )
    client = await aiohttp_client(app)
    response = await client.get("/metrics")
    if is_key_required:
        assert (response.status, await response.text()) == (401, MISSING_KEY_TEXT)
    else:
        assert response.status == 200
    # Either key reads metrics; the setting opens /metrics only, nothing else.
    for key in (RO, RW):
        samples = await scrape(client, {"api-key": key})
    # The refused scrape is counted too: the metrics middleware sits outside auth.
    assert http_count(samples, "GET", "/metrics", 401) == (1 if is_key_required else 0)
    assert (await client.get("/collections")).status == 401
    assert (await client.get("/collections", headers={"api-key": RO})).status == 200


async def test_telemetry_lists_collections_and_request_statistics(api: Api):
    await api.create_collection("c")
    await api.upsert(points_body(0, 4), query={"wait": "true"})
    await api.client.get("/collections/missing")
    # Validated against the spec; level 3 is the first with the shards.
    result = (await api.call("GET", "/telemetry", query={"details_level": "3"})).result
    [collection] = result["collections"]["collections"]
    assert collection["id"] == "c"
    local = collection["shards"][0]["local"]
    assert (local["num_points"], local["num_vectors"]) == (4, 4)
    assert local["num_vectors_by_name"] == {"": 4}
    # One op applied (Keel's op id 0): Qdrant's op_num counts applied ops.
    assert local["update_queue"] == {"length": 0, "op_num": 1}
    responses = result["requests"]["rest"]["responses"]
    upserts = responses["PUT /collections/{collection_name}/points"]["200"]
    assert upserts["count"] == 1
    assert upserts["min_duration_micros"] <= upserts["max_duration_micros"]
    assert responses["GET /collections/{collection_name}"]["404"]["count"] == 1
    assert result["requests"]["grpc"] == {"responses": {}}
