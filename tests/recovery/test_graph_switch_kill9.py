"""A PATCH that rebuilds or drops a vector's graph survives kill -9 (issue 17, part 5).

Method: a real server with checkpoints written by its clean stop; a PATCH changes one
vector's `ef_construct` (its graph is rebuilt from LMDB, its old checkpoint removed) and turns
another's graph off (`m: 0`); once the server reports green it is killed with SIGKILL. The
restart must find no checkpoint of either graph, build the first from LMDB, leave the second
without one, and answer searches of both with every point.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.keel_process import KeelProcess, wait_until
from tests.recovery.http_load import request_json

COLLECTION = "switched"
PATH = f"/collections/{COLLECTION}"
NEVER = {
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_S": "86400",
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_OPS": "1000000",
}


def info(url: str) -> dict:
    status, body = request_json(url, "GET", PATH)
    assert status == 200, body
    return body["result"]


def searched_ids(url: str, using: str) -> list[int]:
    query = {"query": [1, 1], "using": using, "limit": 100}
    status, body = request_json(url, "POST", PATH + "/points/query", query)
    assert status == 200, body
    return sorted(point["id"] for point in body["result"]["points"])


def test_a_rebuilt_and_a_dropped_graph_after_kill_9(tmp_path: Path):
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage, extra_env=NEVER)
    vectors = {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 2, "distance": "Dot"}}
    assert request_json(server.url, "PUT", PATH, {"vectors": vectors})[0] == 200
    points = [{"id": i, "vector": {"a": [1, i], "b": [i, 1]}} for i in range(40)]
    assert request_json(server.url, "PUT", PATH + "/points", {"points": points})[0] == 200
    assert server.terminate() == 0  # the clean stop checkpoints both graphs
    index_directory = storage / "collections" / COLLECTION / "index"
    meta_a, meta_b = (index_directory / f"v-{name.encode().hex()}.json" for name in "ab")
    assert meta_a.exists() and meta_b.exists()

    server = KeelProcess.start(storage, extra_env=NEVER)
    patch = {
        "vectors": {"a": {"hnsw_config": {"ef_construct": 50}}, "b": {"hnsw_config": {"m": 0}}}
    }
    assert request_json(server.url, "PATCH", PATH, patch)[0] == 200
    wait_until(lambda: info(server.url)["status"] == "green")
    assert info(server.url)["indexed_vectors_count"] == 40  # a's new graph; b has none
    server.kill_9()
    assert not meta_a.exists() and not meta_b.exists()

    server = KeelProcess.start(storage, extra_env=NEVER)
    wait_until(lambda: info(server.url)["status"] == "green")
    assert info(server.url)["indexed_vectors_count"] == 40
    params = info(server.url)["config"]["params"]["vectors"]
    assert params["a"]["hnsw_config"] == {"ef_construct": 50}
    assert params["b"]["hnsw_config"] == {"m": 0}
    assert searched_ids(server.url, "a") == list(range(40))
    assert searched_ids(server.url, "b") == list(range(40))
    assert server.terminate() == 0
    assert meta_a.exists() and not meta_b.exists()


def test_a_kill_right_after_the_patch_never_loads_the_old_graph(tmp_path: Path):
    """Killed as soon as the PATCH is answered (the build may not have started, the old
    checkpoint may still be there): the restart must build the graph with the new settings,
    which the checkpoint it then writes records."""
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage, extra_env=NEVER)
    vectors = {"a": {"size": 2, "distance": "Dot"}}
    assert request_json(server.url, "PUT", PATH, {"vectors": vectors})[0] == 200
    points = [{"id": i, "vector": {"a": [1, i]}} for i in range(40)]
    assert request_json(server.url, "PUT", PATH + "/points", {"points": points})[0] == 200
    assert server.terminate() == 0
    meta_a = storage / "collections" / COLLECTION / "index" / f"v-{b'a'.hex()}.json"
    assert json.loads(meta_a.read_bytes())["ef_construct"] == 100

    server = KeelProcess.start(storage, extra_env=NEVER)
    patch = {"vectors": {"a": {"hnsw_config": {"m": 8, "ef_construct": 40}}}}
    assert request_json(server.url, "PATCH", PATH, patch)[0] == 200
    server.kill_9()

    server = KeelProcess.start(storage, extra_env=NEVER)
    wait_until(lambda: info(server.url)["status"] == "green")
    assert info(server.url)["indexed_vectors_count"] == 40
    assert searched_ids(server.url, "a") == list(range(40))
    assert server.terminate() == 0
    meta = json.loads(meta_a.read_bytes())
    assert (meta["m"], meta["ef_construct"], meta["live_count"]) == (8, 40, 40)
