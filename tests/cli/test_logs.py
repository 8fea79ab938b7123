"""server/logs.py and server/request_log.py: what an operator reads, from a real server.

Each test starts `python -m server` and reads its stderr: JSON fields whole, one text line
per event whatever a client sends, request lines at the level log.requests chooses, and
one warning (not a line per vector) after an unclean stop.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

from engine.logfmt import Event
from server.logs import JsonFormatter, TextFormatter
from tests.keel_process import KeelProcess, wait_until

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
)
VECTORS = {"size": 2, "distance": "Dot"}


def call(server: KeelProcess, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def json_entries(server: KeelProcess) -> list[dict]:
    return [json.loads(line) for line in server.log_text().splitlines()]


def test_formatters_write_the_events_fields_not_a_reparse_of_its_text():
    event = Event("request failed", {"collection": "my coll", "error": "Not found: x", "n": 3})
    record = logging.LogRecord("server.app", logging.ERROR, __file__, 1, event, (), None)
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["event"], entry["collection"], entry["error"]) == (
        "request failed",
        "my coll",
        "Not found: x",
    )
    assert entry["n"] == 3
    text = TextFormatter().format(record)
    assert text.endswith(
        ' ERROR server.app request failed collection="my coll" error="Not found: x" n=3'
    )


def test_json_logs_keep_a_value_with_spaces_whole(tmp_path: Path) -> None:
    server = KeelProcess.start(tmp_path / "storage", extra_env={"KEEL__LOG__FORMAT": "json"})
    assert call(server, "PUT", "/collections/my%20coll", {"vectors": VECTORS})[0] == 200
    status, _ = call(server, "GET", "/quotas")
    assert status == 501

    def created() -> list[dict]:
        return [e for e in json_entries(server) if e["event"] == "collection created"]

    [entry] = wait_until(created)
    assert entry["collection"] == "my coll"
    assert entry["level"] == "INFO"
    assert server.terminate() == 0


def test_a_newline_in_a_collection_name_cannot_forge_a_log_line(tmp_path: Path) -> None:
    """Qdrant accepts control characters other than NUL and 0x1F in a collection name (its
    validate_collection_name); so does Keel, and the text log escapes them."""
    server = KeelProcess.start(tmp_path / "storage")
    forged = "evil%0A2026-01-01T00.00.00.000Z%20ERROR%20server.app%20x=y%0D"
    assert call(server, "PUT", f"/collections/{forged}", {"vectors": VECTORS})[0] == 200
    assert call(server, "GET", f"/collections/{forged}")[0] == 200
    assert server.terminate() == 0
    lines = server.log_text().splitlines()
    levels = [TEXT_LINE.match(line) for line in lines]
    assert all(levels), lines
    assert {level.group(1) for level in levels} == {"INFO"}, lines
    name = '"evil\\n2026-01-01T00.00.00.000Z ERROR server.app x=y\\r"'
    assert any(f"collection created collection={name}" in line for line in lines), lines


def test_client_errors_are_request_lines_at_info_never_errors(tmp_path: Path) -> None:
    server = KeelProcess.start(tmp_path / "storage", extra_env={"KEEL__LOG__REQUESTS": "errors"})
    assert call(server, "PUT", "/collections/c", {"vectors": VECTORS})[0] == 200
    search = {"vector": [1.0, 2.0, 3.0], "limit": 1}
    assert call(server, "POST", "/collections/c/points/search", search)[0] == 400
    assert call(server, "GET", "/quotas")[0] == 501
    assert call(server, "GET", "/collections/nope")[0] == 404
    assert server.terminate() == 0
    lines = server.log_text().splitlines()
    requests = [line for line in lines if " INFO server.request_log request " in line]
    assert len(requests) == 3, lines  # the 200 of the create is not an error
    bad_search, not_implemented, not_found = requests
    assert "method=POST route=/collections/{collection_name}/points/search status=400" in bad_search
    assert " collection=c " in bad_search
    assert 'error="Wrong input: Vector dimension error: expected dim: 2, got 3"' in bad_search
    assert re.search(r" took_s=[0-9.]+ bytes=\d+ ", bad_search), bad_search
    assert "route=/quotas status=501" in not_implemented
    assert "status=404" in not_found
    assert not any(" ERROR " in line for line in lines), lines


def test_request_lines_are_off_by_default(tmp_path: Path) -> None:
    server = KeelProcess.start(tmp_path / "storage")
    assert call(server, "GET", "/collections/nope")[0] == 404
    assert call(server, "GET", "/quotas")[0] == 501
    assert server.terminate() == 0
    lines = server.log_text().splitlines()
    assert not any(" server.request_log " in line for line in lines), lines
    assert not any(" ERROR " in line for line in lines), lines


def test_an_unclean_stop_is_one_warning_and_a_clean_start_is_quiet(tmp_path: Path) -> None:
    """After SIGTERM the next start warns of nothing and prints no per-vector catch-up
    line; after kill -9 it says once, at WARNING, that the last run did not stop cleanly."""
    storage = tmp_path / "storage"
    server = KeelProcess.start(storage)
    body = {"vectors": {"a": VECTORS, "b": VECTORS}}
    assert call(server, "PUT", "/collections/c", body)[0] == 200
    points = {"points": [{"id": 1, "vector": {"a": [1.0, 0.0], "b": [0.0, 1.0]}}]}
    assert call(server, "PUT", "/collections/c/points?wait=true", points)[0] == 200
    assert server.terminate() == 0

    server = KeelProcess.start(storage)
    assert call(server, "GET", "/collections/c")[0] == 200
    assert server.terminate() == 0
    clean_start = server.log_text()
    assert " WARNING " not in clean_start, clean_start
    assert "index caught up" not in clean_start, clean_start

    server = KeelProcess.start(storage)
    assert call(server, "PUT", "/collections/c/points?wait=true", points)[0] == 200
    assert server.kill_9() == -9
    server = KeelProcess.start(storage)
    wait_until(lambda: "index caught up" in server.log_text(), timeout_s=30)
    assert server.terminate() == 0
    warnings = [line for line in server.log_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "unclean shutdown" in warnings[0]
    assert f"storage={storage.resolve()} " in warnings[0]


def test_paths_in_logs_are_absolute(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    # The server runs in tmp_path; the later --storage wins over KeelProcess's absolute one.
    server = KeelProcess.start(storage, extra_args=["--storage", "storage"])
    assert server.terminate() == 0
    started = [line for line in server.log_text().splitlines() if " recovery started " in line]
    assert len(started) == 1, server.log_text()
    assert f"storage={storage.resolve()} " in started[0]
