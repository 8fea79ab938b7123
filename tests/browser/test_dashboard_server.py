"""The dashboard's server side, without a browser: static files served without a key, every
file the page loads present, `GET /durability` keyed like any read and equal to `/metrics`,
and recovery's progress read from the engine's log events.
"""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request

from engine.logfmt import log_event
from server.api.dashboard import DASHBOARD_DIR, RecoveryProgress
from tests.browser.conftest import API_KEY, READ_ONLY_KEY, api_call
from tests.keel_process import KeelProcess

IMPORT = re.compile(r'^import .* from "\./([\w.]+)";$', re.MULTILINE)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
ASSET = re.compile(r'(?:href|src)="/dashboard/([\w.]+)"')


def get_raw(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET with no key."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_the_page_and_its_files_need_no_key(keel_server: KeelProcess) -> None:
    for path, content_type in [
        ("/dashboard", "text/html"),
        ("/dashboard/", "text/html"),
        ("/dashboard/index.html", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ]:
        status, served_type, body = get_raw(keel_server.url + path)
        assert status == 200, path
        assert served_type.startswith(content_type), (path, served_type)
        assert body
    assert get_raw(keel_server.url + "/collections")[0] == 401  # data calls still need one


def test_only_the_dashboards_own_files_are_served(keel_server: KeelProcess) -> None:
    for path in (
        "/dashboard/missing.js",
        "/dashboard/%2E%2E%2Fapi%2Fdashboard.py",
        "/dashboard/..%2F..%2Fpyproject.toml",
        "/dashboard/.hidden",
    ):
        status, _, body = get_raw(keel_server.url + path)
        assert status == 404, path
        assert b"Not found" in body


def test_every_file_the_page_loads_is_shipped() -> None:
    """index.html's assets and every module's imports are files of server/dashboard/ (which
    pyproject.toml ships as package data), so no load can 404 or leave for the internet."""
    index = (DASHBOARD_DIR / "index.html").read_text()
    wanted = set(ASSET.findall(index))
    for module in DASHBOARD_DIR.glob("*.js"):
        wanted |= set(IMPORT.findall(module.read_text()))
    assert {"app.js", "style.css", "durability.js"} <= wanted
    assert sorted(name for name in wanted if not (DASHBOARD_DIR / name).is_file()) == []
    for path in DASHBOARD_DIR.iterdir():
        # SVG's namespace is a name, never fetched.
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert "http://" not in text, path
        assert "https://" not in text, path


def test_durability_needs_a_key_and_matches_metrics(keel_server: KeelProcess) -> None:
    status, answer = api_call(keel_server.url, "GET", "/durability", key="")
    assert (status, answer) == (401, "Must provide an API key or an Authorization bearer token")
    status, answer = api_call(keel_server.url, "GET", "/durability", key=READ_ONLY_KEY)
    assert status == 200, answer
    result = answer["result"]
    assert result["ready"] is True and result["recovery"] is None
    by_name = {collection["name"]: collection for collection in result["collections"]}
    assert set(by_name) >= {"cities", "named"}
    _, metrics = api_call(keel_server.url, "GET", "/metrics", key=API_KEY)
    for name in ("cities", "named"):
        shown = by_name[name]
        for field in ("appended_op_id", "durable_op_id", "applied_op_id", "unapplied_bytes"):
            line = f'keel_collection_{field}{{collection="{name}"}} '
            (value,) = [
                row.removeprefix(line) for row in metrics.splitlines() if row.startswith(line)
            ]
            assert float(value) == shown[field], (name, field)
        assert shown["status"] == "green" and shown["write_path_error"] is None
        assert shown["unapplied_bytes_max"] > 0
        assert shown["wal"]["segments"] and shown["wal"]["bytes"] > 0
        fsyncs = shown["histograms"]["wal_fsync_latency_s"]
        assert fsyncs["count"] >= 1 and len(fsyncs["bucket_counts"]) == len(fsyncs["upper_bounds"])


def test_recovery_progress_follows_the_engines_events() -> None:
    progress = RecoveryProgress()
    engine_log = logging.getLogger("engine.catalog")
    engine_log.addHandler(progress)
    previous_level = engine_log.level
    engine_log.setLevel(logging.INFO)
    try:
        log_event(engine_log, logging.INFO, "recovery started", storage="/s", collections=2)
        log_event(
            engine_log, logging.INFO, "replay progress", collection="a", op_id=5, last_op_id=9
        )
        assert progress.state.collections_total == 2
        assert (progress.state.collection, progress.state.op_id) == ("a", 5)
        assert progress.state.last_op_id == 9
        log_event(engine_log, logging.INFO, "collection opened", collection="a", ops_replayed=9)
        assert progress.state.collections_opened == 1
        assert progress.state.collection is None
    finally:
        engine_log.removeHandler(progress)
        engine_log.setLevel(previous_level)
