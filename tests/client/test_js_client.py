"""Issue 17's features through Qdrant's JS client, as a Node user would call them.

Goal: multivector (MaxSim) queries, a prefetch reranked by a multivector, a formula query and
named-vector creation/deletion work through `@qdrant/js-client-rest`, not only through curl
and qdrant-client. Method: tests/client/js/issue17.mjs runs against a real Keel server; its
answers must be the ones the same requests get over plain HTTP (a second collection made the
same way). The client is installed from npm on first use into ~/.cache/keel-tests (slow: it
needs the network once). Without node or npm the test skips and says why, except in CI,
where it fails.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.keel_process import KeelProcess

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parent / "js" / "issue17.mjs"
CLIENT_SPEC = "@qdrant/js-client-rest@1.18.0"
CACHE_DIR = Path.home() / ".cache" / "keel-tests" / "js-client-rest-1.18.0"


def _client_dir() -> Path:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install nodejs npm)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    if not (CACHE_DIR / "node_modules" / "@qdrant" / "js-client-rest").is_dir():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        (CACHE_DIR / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", CLIENT_SPEC],
            cwd=CACHE_DIR,
            check=True,
            timeout=300,
        )
    return CACHE_DIR


def _rows(i: int) -> dict:
    def row(k: int) -> list[float]:
        return [math.sin(i + k), math.cos(i * 2 + k), ((i * 7 + k) % 5) / 5, 1.0]

    return {"text": row(0), "colbert": [row(1), row(2), row(3)][: 1 + i % 3]}


def _same_requests_over_http(url: str) -> dict:
    """What issue17.mjs asks, made with plain HTTP on another collection."""
    http = httpx.Client(base_url=url + "/collections/http17", timeout=30)
    http.put(
        "",
        json={
            "vectors": {
                "text": {"size": 4, "distance": "Cosine"},
                "colbert": {
                    "size": 4,
                    "distance": "Dot",
                    "multivector_config": {"comparator": "max_sim"},
                },
            }
        },
    ).raise_for_status()
    points = [
        {
            "id": i,
            "vector": _rows(i),
            "payload": {"rank": i, "city": "Berlin" if i % 2 else "Paris"},
        }
        for i in range(20)
    ]
    http.put("/points?wait=true", json={"points": points}).raise_for_status()
    matrix = [[1, 0, 0.5, 1], [0, 1, 0.5, 1]]
    prefetch = {"query": [1, 0.5, 0.2, 1], "using": "text", "limit": 10}

    def query(body: dict) -> list:
        response = http.post("/points/query", json=body)
        response.raise_for_status()
        return response.json()["result"]["points"]

    answers = {
        "maxsim": query({"query": matrix, "using": "colbert", "limit": 5}),
        "rerank": query({"prefetch": prefetch, "query": matrix, "using": "colbert", "limit": 3}),
        "formula": query(
            {
                "prefetch": prefetch,
                "query": {
                    "formula": {"sum": ["$score", {"mult": [0.01, "rank"]}]},
                    "defaults": {"rank": 0},
                },
                "limit": 5,
            }
        ),
    }
    http.put("/vectors/extra?wait=true", json={"dense": {"size": 2, "distance": "Euclid"}})
    http.put(
        "/points/vectors?wait=true", json={"points": [{"id": 3, "vector": {"extra": [1, 2]}}]}
    ).raise_for_status()
    answers["extra"] = query({"query": [1, 2], "using": "extra", "limit": 3})
    return answers


def _comparable(points: list) -> list:
    return [(point["id"], round(point["score"], 5)) for point in points]


def test_issue_17_features_through_the_js_client(tmp_path: Path) -> None:
    client_dir = _client_dir()
    script = client_dir / SCRIPT.name
    shutil.copyfile(SCRIPT, script)  # resolves @qdrant/js-client-rest from its node_modules
    server = KeelProcess.start(tmp_path / "storage")
    try:
        ran = subprocess.run(
            ["node", str(script), server.url],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr
        through_js = json.loads(ran.stdout)
        expected = _same_requests_over_http(server.url)
    finally:
        server.terminate()
    for key in ("maxsim", "rerank", "formula", "extra"):
        assert through_js[key], key
        assert _comparable(through_js[key]) == _comparable(expected[key]), key
    assert through_js["vectors_after_create"] == ["colbert", "extra", "text"]
    assert through_js["vectors_after_delete"] == ["colbert", "text"]
