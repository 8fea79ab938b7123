"""A collection config update (PATCH) survives kill -9, and one cut off before its rename
leaves the old config.

Method: a real server is started with the `files.before_replace` failpoint armed, so it
SIGKILLs itself between writing and fsyncing the new config.json's temp file and renaming it
into place; the restarted server must show the old config. Then an update that was answered
is followed by kill -9; the restarted server must show it.
"""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from tests.keel_process import KeelProcess
from tests.recovery.http_load import request_json

COLLECTION = "configured"
PATH = f"/collections/{COLLECTION}"
NEVER = {
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_S": "86400",
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_OPS": "1000000",
}


def metadata_of(url: str) -> dict:
    status, body = request_json(url, "GET", PATH)
    assert status == 200, body
    return body["result"]["config"]["metadata"]


def test_config_update_is_old_or_new_after_kill_9(tmp_path: Path):
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage, extra_env=NEVER)
    create = {"vectors": {"size": 2, "distance": "Dot"}, "metadata": {"version": 1}}
    assert request_json(server.url, "PUT", PATH, create)[0] == 200
    assert server.terminate() == 0

    env = {**NEVER, "KEEL_FAILPOINTS": "files.before_replace", "KEEL_TEST_FAULTS": "1"}
    server = KeelProcess.start(storage, extra_env=env)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request_json(server.url, "PATCH", PATH, {"metadata": {"version": 2}})
    assert server.wait_exit() == -9, server.log_text()
    assert "failpoint hit, killing process name=files.before_replace" in server.log_text()

    server = KeelProcess.start(storage, extra_env=NEVER)
    assert metadata_of(server.url) == {"version": 1}
    status, body = request_json(server.url, "PATCH", PATH, {"metadata": {"version": 3}})
    assert (status, body["result"]) == (200, True)
    server.kill_9()

    server = KeelProcess.start(storage, extra_env=NEVER)
    assert metadata_of(server.url) == {"version": 3}
    assert server.terminate() == 0
