"""Payload indexes survive SIGKILL: they are WAL operations applied in LMDB transactions.

Method: index `writer` before the load and `id` while writers upsert with wait=false, SIGKILL
the server mid-stream, restart on the same storage. Both indexes must be in `payload_schema`
covering every point, and filtered counts through an index must equal counts a scan gives
(`must_not` is never planned, so it scans).
"""

from __future__ import annotations

from pathlib import Path

from tests.keel_process import KeelProcess, wait_until
from tests.recovery.http_load import DIM, Upserter, request_json

COLLECTION = "indexed"
WRITERS = 3


def put_index(url: str, field_name: str, schema: str) -> int:
    status, body = request_json(
        url,
        "PUT",
        f"/collections/{COLLECTION}/index?wait=false",
        {"field_name": field_name, "field_schema": schema},
    )
    assert status == 200, body
    return body["result"]["operation_id"]


def count(url: str, filter_: dict) -> int:
    status, body = request_json(
        url, "POST", f"/collections/{COLLECTION}/points/count", {"filter": filter_}
    )
    assert status == 200, body
    return body["result"]["count"]


def test_payload_indexes_survive_sigkill_and_match_a_scan(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    body = {"vectors": {"size": DIM, "distance": "Euclid"}}
    status, answer = request_json(server.url, "PUT", f"/collections/{COLLECTION}", body)
    assert status == 200, answer
    put_index(server.url, "writer", "integer")
    writer = Upserter(server.url, COLLECTION, writer_count=WRITERS).start()
    wait_until(lambda: writer.log.acknowledged_count >= 100, timeout_s=60)
    put_index(server.url, "id", "float")
    wait_until(lambda: writer.log.acknowledged_count >= 250, timeout_s=60)
    assert server.kill_9() == -9
    log = writer.stop()
    assert log.unexpected == []

    server = KeelProcess.start(storage)
    status, info = request_json(server.url, "GET", f"/collections/{COLLECTION}")
    assert status == 200, info
    points_count = info["result"]["points_count"]
    assert points_count >= sum(len(ids) for _, ids in log.acknowledged)
    assert info["result"]["payload_schema"] == {
        "writer": {"data_type": "integer", "points": points_count},
        "id": {"data_type": "float", "points": points_count},
    }
    for writer_index in range(WRITERS):
        is_writer = {"key": "writer", "match": {"value": writer_index}}
        indexed = count(server.url, {"must": [is_writer]})
        scanned = points_count - count(server.url, {"must_not": [is_writer]})
        assert indexed == scanned
    below = {"key": "id", "range": {"lt": 10_000_000}}
    assert count(server.url, {"must": [below]}) == points_count - count(
        server.url, {"must_not": [below]}
    )
    assert server.terminate() == 0
