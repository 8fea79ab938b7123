"""Vector-name ops (create/delete a named vector) survive kill -9 in op order with point writes.

Method: a real server gets a mix of point writes and vector-name ops, all with wait=false, and
is killed with SIGKILL right after the last answer; the restarted server must show the names
and every acknowledged point as the ops left them in order. Then two crash points inside one
op: after the WAL's fsync (nothing applied, config.json not written), and right after the
op's LMDB commit (config.json maybe not written); the restart must agree with LMDB.
"""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from tests.keel_process import KeelProcess
from tests.recovery.http_load import request_json

COLLECTION = "named"
PATH = f"/collections/{COLLECTION}"
NEVER = {
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_S": "86400",
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_OPS": "1000000",
}
NO_WAIT = "?wait=false"


def vectors_of(url: str) -> dict:
    status, body = request_json(url, "GET", PATH)
    assert status == 200, body
    return body["result"]["config"]["params"]["vectors"]


def points_of(url: str) -> dict[int, dict]:
    body = {"limit": 1000, "with_vector": True, "with_payload": False}
    status, answer = request_json(url, "POST", PATH + "/points/scroll", body)
    assert status == 200, answer
    return {point["id"]: point["vector"] for point in answer["result"]["points"]}


def acknowledged(url: str, method: str, path: str, body: dict | None = None) -> None:
    status, answer = request_json(url, method, path + NO_WAIT, body)
    assert (status, answer["result"]["status"]) == (200, "acknowledged"), answer


def test_vector_name_ops_replay_in_order_with_point_writes(tmp_path: Path):
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage, extra_env=NEVER)
    create = {"vectors": {"a": {"size": 2, "distance": "Dot"}}}
    assert request_json(server.url, "PUT", PATH, create)[0] == 200
    points = [{"id": i, "vector": {"a": [i, 1]}} for i in range(20)]
    acknowledged(server.url, "PUT", PATH + "/points", {"points": points})
    acknowledged(server.url, "PUT", PATH + "/vectors/b", {"dense": {"size": 3, "distance": "Dot"}})
    with_b = {"points": [{"id": i, "vector": {"b": [i, 0, 1]}} for i in range(10)]}
    acknowledged(server.url, "PUT", PATH + "/points/vectors", with_b)
    acknowledged(server.url, "DELETE", PATH + "/vectors/a")
    acknowledged(server.url, "PUT", PATH + "/vectors/a", {"dense": {"size": 2, "distance": "Dot"}})
    acknowledged(
        server.url, "PUT", PATH + "/points", {"points": [{"id": 30, "vector": {"a": [3, 3]}}]}
    )
    server.kill_9()

    server = KeelProcess.start(storage, extra_env=NEVER)
    assert vectors_of(server.url) == {
        "a": {"size": 2, "distance": "Dot"},
        "b": {"size": 3, "distance": "Dot"},
    }
    expected = {i: ({"b": [float(i), 0.0, 1.0]} if i < 10 else {}) for i in range(20)}
    expected[30] = {"a": [3.0, 3.0]}
    assert points_of(server.url) == expected  # a's old values are gone, b's kept
    query = {"query": [1, 1], "using": "a", "limit": 5}
    status, answer = request_json(server.url, "POST", PATH + "/points/query", query)
    assert status == 200, answer
    assert [p["id"] for p in answer["result"]["points"]] == [30]
    assert server.terminate() == 0


@pytest.mark.parametrize("crash_point", ["wal.after_sync", "store.after_schema_commit"])
def test_a_crash_inside_a_vector_name_op_recovers_as_lmdb_says(tmp_path: Path, crash_point: str):
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage, extra_env=NEVER)
    create = {"vectors": {"a": {"size": 2, "distance": "Dot"}}}
    assert request_json(server.url, "PUT", PATH, create)[0] == 200
    points = {"points": [{"id": i, "vector": {"a": [i, 1]}} for i in range(5)]}
    assert request_json(server.url, "PUT", PATH + "/points", points)[0] == 200
    assert server.terminate() == 0

    env = {**NEVER, "KEEL_FAILPOINTS": crash_point, "KEEL_TEST_FAULTS": "1"}
    server = KeelProcess.start(storage, extra_env=env)
    body = {"sparse": {"modifier": "idf"}}
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request_json(server.url, "PUT", PATH + "/vectors/s", body)
    assert server.wait_exit() == -9, server.log_text()
    assert f"failpoint hit, killing process name={crash_point}" in server.log_text()

    # The op was durable in both cases: the restart has it, in LMDB and in config.json.
    server = KeelProcess.start(storage, extra_env=NEVER)
    status, answer = request_json(server.url, "GET", PATH)
    assert status == 200, answer
    assert answer["result"]["config"]["params"]["sparse_vectors"] == {"s": {"modifier": "idf"}}
    sparse = {"indices": [1], "values": [2.0]}
    upsert = {"points": [{"id": 7, "vector": {"a": [0, 1], "s": sparse}}]}
    assert request_json(server.url, "PUT", PATH + "/points", upsert)[0] == 200
    assert sorted(points_of(server.url)) == [0, 1, 2, 3, 4, 7]
    assert server.terminate() == 0
    config = (storage / "collections" / COLLECTION / "config.json").read_text()
    assert '"s"' in config
