"""A real server killed with SIGKILL mid-stream keeps every acknowledged write.

Method: writer threads upsert with wait=false; once enough are acknowledged the server is
SIGKILLed while they still write; it is restarted on the same storage and must hold every
acknowledged point (retrieve and search agree), each in-flight request entirely or not at
all, and continue operation ids after the highest one it acknowledged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.keel_process import KeelProcess, wait_until
from tests.recovery.http_load import DIM, Upserter, WriteLog, request_json, vector_for

COLLECTION = "crash"


def create_collection(url: str) -> None:
    status, body = request_json(
        url, "PUT", f"/collections/{COLLECTION}", {"vectors": {"size": DIM, "distance": "Euclid"}}
    )
    assert status == 200, body


def retrieve_payloads(url: str, ids: list[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    for start in range(0, len(ids), 2_000):
        status, body = request_json(
            url,
            "POST",
            f"/collections/{COLLECTION}/points",
            {"ids": ids[start : start + 2_000], "with_payload": True},
        )
        assert status == 200, body
        found.update({record["id"]: record["payload"] for record in body["result"]})
    return found


def check_everything_acknowledged_is_there(url: str, log: WriteLog) -> None:
    assert log.unexpected == []
    acknowledged_ids = [i for _, ids in log.acknowledged for i in ids]
    found = retrieve_payloads(url, acknowledged_ids)
    missing = sorted(set(acknowledged_ids) - set(found))
    assert not missing, f"{len(missing)} acknowledged points lost, e.g. {missing[:5]}"
    assert all(found[i]["id"] == i for i in acknowledged_ids)
    for ids in log.in_flight:  # all-or-nothing
        present = retrieve_payloads(url, ids)
        assert len(present) in (0, len(ids)), f"in-flight request half applied: {sorted(present)}"
    sample = acknowledged_ids[:: max(1, len(acknowledged_ids) // 40)]
    # Exact search must find every sampled point; the HNSW graph, being approximate, nearly
    # every one (a graph that lost points after recovery would miss many).
    assert [nearest_id(url, point_id, is_exact=True) for point_id in sample] == sample
    graph_hits = sum(nearest_id(url, point_id, is_exact=False) == point_id for point_id in sample)
    assert graph_hits >= 0.9 * len(sample), (graph_hits, len(sample))


def nearest_id(url: str, point_id: int, is_exact: bool) -> int:
    status, body = request_json(
        url,
        "POST",
        f"/collections/{COLLECTION}/points/search",
        {"vector": vector_for(point_id), "limit": 1, "params": {"exact": is_exact}},
    )
    assert status == 200, body
    [hit] = body["result"]
    if hit["id"] == point_id:
        assert hit["score"] == pytest.approx(0.0, abs=1e-4)
    return hit["id"]


def test_acknowledged_upserts_survive_sigkill(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    create_collection(server.url)
    writer = Upserter(server.url, COLLECTION, writer_count=6).start()
    wait_until(lambda: writer.log.acknowledged_count >= 300, timeout_s=60)
    assert server.kill_9() == -9
    log = writer.stop()
    highest_op_id = max(op_id for op_id, _ in log.acknowledged)

    server = KeelProcess.start(storage)
    check_everything_acknowledged_is_there(server.url, log)
    status, body = request_json(
        server.url,
        "PUT",
        f"/collections/{COLLECTION}/points?wait=true",
        {"points": [{"id": 1, "vector": vector_for(1)}]},
    )
    assert status == 200, body
    assert body["result"]["operation_id"] > highest_op_id
    assert "ops_replayed=" in server.log_text()
    status, info = request_json(server.url, "GET", f"/collections/{COLLECTION}")
    assert info["result"]["points_count"] == info["result"]["indexed_vectors_count"]
    assert server.terminate() == 0


def test_sigterm_finishes_queued_writes_and_exits_zero(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    create_collection(server.url)
    log = Upserter(server.url, COLLECTION, writer_count=4, requests_max=60).start().join()
    assert server.terminate() == 0
    assert "stopped" in server.log_text()
    assert log.in_flight == []
    assert log.acknowledged_count == 240

    server = KeelProcess.start(storage)
    # A clean stop applied and checkpointed everything: nothing is left to replay.
    assert "ops_replayed=0" in server.log_text()
    check_everything_acknowledged_is_there(server.url, log)
    assert server.terminate() == 0


def test_a_kill_while_graphs_catch_up_after_a_restart_loses_nothing(tmp_path: Path) -> None:
    """Graphs catch up with LMDB after the open, in memory only: a kill in the middle of
    it leaves LMDB and the WAL as they were, and the next start catches up again."""
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    create_collection(server.url)
    log = Upserter(server.url, COLLECTION, writer_count=2, requests_max=100).start().join()
    assert server.kill_9() == -9  # no checkpoint yet: the restart rebuilds the graph
    env = {"KEEL_FAILPOINTS": "applier.catch_up_after_add", "KEEL_TEST_FAULTS": "1"}
    server = KeelProcess.spawn(storage, extra_env=env)
    assert server.wait_exit() == -9, server.log_text()
    assert "failpoint hit, killing process name=applier.catch_up_after_add" in server.log_text()
    server = KeelProcess.start(storage)
    check_everything_acknowledged_is_there(server.url, log)
    wait_until(lambda: "index caught up" in server.log_text(), timeout_s=30)
    status, info = request_json(server.url, "GET", f"/collections/{COLLECTION}")
    assert status == 200, info
    assert info["result"]["status"] == "green"
    assert info["result"]["points_count"] == info["result"]["indexed_vectors_count"]
    assert server.terminate() == 0


@pytest.mark.parametrize(
    "failpoint",
    [
        "wal.after_write",
        "wal.after_sync",
        "files.before_replace",
        "index.before_meta",
    ],
)
def test_a_crash_at_each_failpoint_loses_nothing_acknowledged(
    tmp_path: Path, failpoint: str
) -> None:
    """The server SIGKILLs itself at a named spot (between write and fsync, between a
    checkpoint's data and its metadata...); a restart must hold everything acknowledged."""
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    create_collection(server.url)
    assert server.terminate() == 0
    env = {
        "KEEL_FAILPOINTS": failpoint,
        "KEEL_TEST_FAULTS": "1",
        "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_OPS": "3",
    }
    server = KeelProcess.start(storage, extra_env=env)
    log = Upserter(server.url, COLLECTION, writer_count=2, requests_max=200).start().join()
    assert server.wait_exit() == -9, server.log_text()
    assert f"failpoint hit, killing process name={failpoint}" in server.log_text()
    server = KeelProcess.start(storage)
    check_everything_acknowledged_is_there(server.url, log)
    assert server.terminate() == 0
