"""Aliases survive kill -9: an acknowledged alias change is in aliases.json (atomic replace)."""

from __future__ import annotations

from pathlib import Path

from tests.keel_process import KeelProcess
from tests.recovery.http_load import request_json


def test_alias_changes_survive_sigkill(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    for name in ("blue", "green"):
        status, body = request_json(
            server.url, "PUT", f"/collections/{name}", {"vectors": {"size": 2, "distance": "Dot"}}
        )
        assert status == 200, body
    actions = [{"create_alias": {"collection_name": "blue", "alias_name": "live"}}]
    assert request_json(server.url, "POST", "/collections/aliases", {"actions": actions})[0] == 200
    switch = [
        {"delete_alias": {"alias_name": "live"}},
        {"create_alias": {"collection_name": "green", "alias_name": "live"}},
    ]
    assert request_json(server.url, "POST", "/collections/aliases", {"actions": switch})[0] == 200
    assert server.kill_9() == -9

    server = KeelProcess.start(storage)
    status, body = request_json(server.url, "GET", "/aliases")
    assert body["result"]["aliases"] == [{"alias_name": "live", "collection_name": "green"}]
    status, body = request_json(
        server.url,
        "PUT",
        "/collections/live/points?wait=true",
        {"points": [{"id": 1, "vector": [1, 0]}]},
    )
    assert status == 200, body
    status, body = request_json(server.url, "GET", "/collections/green")
    assert body["result"]["points_count"] == 1
    assert server.terminate() == 0
