"""tools/bench/ceiling.py: Keel with an empty engine, the bench's bound of the HTTP path.

Goal: the server it starts is Keel's own HTTP path (parsing, validation, the read-pool hop,
the answer) with only the coalesced query job replaced, so its QPS under wrk is a fair
ceiling. Method: start it as the bench does, then check a query gets the 10 canned points,
a malformed one still gets Keel's 400 (the body is parsed and validated as shipped), and
the collection really is empty (nothing was searched).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.keel_process import KeelProcess


def call(url: str, method: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_ceiling_server_answers_canned_points_after_keels_own_parsing(tmp_path: Path):
    server = KeelProcess.start(tmp_path / "storage", module="tools.bench.ceiling")
    try:
        base = f"{server.url}/collections/bench"
        assert call(base, "PUT", {"vectors": {"size": 4, "distance": "Cosine"}})[0] == 200
        status, answer = call(f"{base}/points/query", "POST", {"query": [1, 0, 0, 0], "limit": 3})
        assert status == 200
        assert [point["id"] for point in answer["result"]["points"]] == list(range(10))
        status, answer = call(f"{base}/points/query", "POST", {"query": "not a vector"})
        assert status == 400 and "error" in answer["status"]
        status, answer = call(f"{base}/points/count", "POST", {"exact": True})
        assert status == 200 and answer["result"]["count"] == 0
    finally:
        server.terminate()
