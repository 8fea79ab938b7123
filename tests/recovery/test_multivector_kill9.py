"""A multivector upsert killed between its WAL fsync and its apply is replayed whole.

Method: the server SIGKILLs itself right after the upsert's WAL batch is synced (failpoint
`wal.after_sync`), before LMDB has it; on restart the replay must decode the record's
matrices and store them: retrieve returns each point's matrix and MaxSim ranks them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.keel_process import KeelProcess
from tests.recovery.http_load import request_json

COLLECTION = "late"
MATRICES = {
    1: [[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]],
    2: [[0.0, 1.0, 0.0]],
    3: [[0.5, 0.5, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
}


def test_a_multivector_upsert_synced_but_not_applied_is_replayed(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    vectors = {
        "mv": {"size": 3, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}}
    }
    status, body = request_json(
        server.url, "PUT", f"/collections/{COLLECTION}", {"vectors": vectors}
    )
    assert status == 200, body
    assert server.terminate() == 0

    env = {"KEEL_FAILPOINTS": "wal.after_sync", "KEEL_TEST_FAULTS": "1"}
    server = KeelProcess.start(storage, extra_env=env)
    points = [{"id": i, "vector": {"mv": m}} for i, m in MATRICES.items()]
    try:
        request_json(
            server.url, "PUT", f"/collections/{COLLECTION}/points?wait=false", {"points": points}
        )
    except OSError:
        pass  # the process died before answering: the WAL holds the synced record
    assert server.wait_exit() == -9, server.log_text()
    assert "failpoint hit, killing process name=wal.after_sync" in server.log_text()

    server = KeelProcess.start(storage)
    status, body = request_json(
        server.url,
        "POST",
        f"/collections/{COLLECTION}/points",
        {"ids": list(MATRICES), "with_vector": True},
    )
    assert status == 200, body
    assert {record["id"]: record["vector"]["mv"] for record in body["result"]} == MATRICES
    query = {"query": [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], "using": "mv"}
    status, body = request_json(
        server.url, "POST", f"/collections/{COLLECTION}/points/query", query
    )
    assert status == 200, body
    # MaxSim (Dot): 1 -> 2 + 0, 2 -> 0 + 1, 3 -> 1 + 1.
    hits = [(hit["id"], hit["score"]) for hit in body["result"]["points"]]
    assert hits == [(1, pytest.approx(2.0)), (3, pytest.approx(2.0)), (2, pytest.approx(1.0))]
    assert server.terminate() == 0
