"""Requests that arrive while a restarted Keel still recovers (app.py recovery_wait_middleware).

After a crash the server listens before recovery has finished. A client that, like Qdrant's
own test harness, waits for the port (or `GET /`) and then starts working must be held until
the storage is open and get its data, not a 503.

The crash is the `wal.after_sync` failpoint: the server kills itself once a 100 000-point
upsert is durable in the WAL and before it is applied, so the restart replays all of it
(about a second; a request needs a few milliseconds to arrive). Each test checks with
`/readyz` that recovery is still running when its request is sent.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from pathlib import Path

from tests.keel_process import KeelProcess, wait_until
from tests.recovery.http_load import request_json

POINTS_COUNT = 100_000
ANSWER_TIMEOUT_S = 60.0
CRASH_AFTER_SYNC = {"KEEL_TEST_FAULTS": "1", "KEEL_FAILPOINTS": "wal.after_sync"}


def test_a_request_sent_as_soon_as_the_port_accepts_gets_its_data(tmp_path: Path) -> None:
    storage = _storage_with_an_unapplied_upsert(tmp_path)
    server = KeelProcess.spawn(storage)
    wait_until(lambda: _accepts_connections(server.port))
    assert server.readyz_status() == 503, "recovery ended before the test could ask"
    answers: list[tuple[int, dict, http.client.HTTPMessage]] = []
    client = threading.Thread(
        target=lambda: answers.extend(
            _get(server.port, path) for path in ("/", "/collections/c/points/7")
        )
    )
    client.start()
    client.join(timeout=ANSWER_TIMEOUT_S)
    assert not client.is_alive()
    (root_status, root_body, _), (status, body, _) = answers
    assert (root_status, root_body.get("title")) == (200, "qdrant - vector search engine")
    assert status == 200, body
    assert body["result"]["payload"] == {"n": 7}
    assert server.readyz_status() == 200
    assert server.terminate() == 0


def test_with_no_wait_a_request_during_recovery_gets_503_with_retry_after(tmp_path) -> None:
    storage = _storage_with_an_unapplied_upsert(tmp_path)
    server = KeelProcess.spawn(storage, extra_env={"KEEL__SERVICE__RECOVERY_WAIT_S": "0"})
    wait_until(lambda: _accepts_connections(server.port))
    status, body, headers = _get(server.port, "/collections/c/points/7")
    assert status == 503, body
    assert headers["Retry-After"] == "1"
    assert body["status"]["error"].startswith("Service unavailable: storage is not open")
    assert server.wait_ready()
    status, body, _ = _get(server.port, "/collections/c/points/7")
    assert (status, body["result"]["payload"]) == (200, {"n": 7})
    assert server.terminate() == 0


def _storage_with_an_unapplied_upsert(tmp_path: Path) -> Path:
    """A storage whose collection c has POINTS_COUNT points durable in its WAL only: the
    server died (failpoint wal.after_sync) before applying them, so recovery replays them."""
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage, extra_env=CRASH_AFTER_SYNC)
    config = {"vectors": {"size": 4, "distance": "Dot"}}
    assert request_json(server.url, "PUT", "/collections/c", config)[0] == 200
    points = [
        {"id": i, "vector": [1.0, float(i % 7), 0.0, 0.5], "payload": {"n": i}}
        for i in range(POINTS_COUNT)
    ]
    try:
        request_json(server.url, "PUT", "/collections/c/points?wait=true", {"points": points})
    except (ConnectionError, http.client.HTTPException):
        pass  # the failpoint killed the server mid-request, as intended
    assert server.kill_9() == -9  # already dead by the failpoint: this reaps it
    assert "failpoint hit, killing process name=wal.after_sync" in server.log_text()
    return storage


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _get(port: int, path: str) -> tuple[int, dict, http.client.HTTPMessage]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}"), response.headers
    finally:
        connection.close()
