"""`python -m tools.bench --quick` runs end to end and writes every section of its JSON.

Goal: the benchmark keeps working as Keel changes (its numbers are not checked: timing
targets are reported by the tool, never asserted). Method: run it as a user does, in a
subprocess, without Chroma (which installs a virtualenv on first use), and read the JSON:
every section is there, wrk's runs answered without errors, the sweep has each selectivity
with and without an index on both systems, and the upserts under wrk stored distinct points.
The wrk phases need wrk (`apt-get install wrk`); without it this test fails, naming it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
SELECTIVITIES = ("0.1%", "1%", "10%", "50%", "90%")
KINDS = ("indexed", "plain")
TARGET_NAMES = {"ingest_vs_chroma", "indexed_vs_hnswlib", "search_vs_floor",
                "batch_vs_hnswlib", "filtered_recall", "small_vs_fsync", "replay", "rss"} | {
                f"filtered_{s}_{k}" for s in SELECTIVITIES for k in KINDS}  # fmt: skip
KEEL_SECTIONS = {"ingest_wait_false", "ingest_wait_true", "small_requests", "search",
                 "query_batch", "capacity", "sweep", "multivector", "memory", "replay"}  # fmt: skip


@pytest.mark.slow
def test_quick_bench_writes_every_section(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--quick",
            "--skip",
            "chroma",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert shutil.which("wrk"), "wrk is missing: apt-get install wrk"
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"config", "fsync_ceiling", "hnswlib", "qdrant_edge", "http_floor", "keel"} <= set(
        results
    )
    assert "chroma" not in results
    assert KEEL_SECTIONS <= set(results["keel"])
    assert set(results["targets"]) == TARGET_NAMES
    assert results["targets"]["ingest_vs_chroma"]["verdict"] == "SKIP"
    verdicts = {
        t["verdict"] for name, t in results["targets"].items() if name != "ingest_vs_chroma"
    }
    assert verdicts <= {"PASS", "MISS"}
    assert results["keel"]["replay"]["ops_replayed"] == results["config"]["replay_ops"]
    assert results["keel"]["search"]["8"]["16"]["recall"] > 0.5
    ef = results["fixed_ef"]["hnsw_ef"]
    assert results["hnswlib"]["by_ef"][str(ef)]["single"]["recall"] >= 0.95
    capacity = results["keel"]["capacity"]
    wrk_rows = [results["http_floor"]["query"], results["http_floor"]["upsert"],
                capacity["query"], capacity["upsert"], capacity["ceiling"],
                results["keel"]["sweep"]["unfiltered_after"]]  # fmt: skip
    wrk_rows += [results["keel"]["sweep"][s][k] for s in SELECTIVITIES for k in KINDS]
    for row in wrk_rows:
        assert row["tool"] == "wrk"
        assert row["requests"] > 0
        assert row["errors"] == dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
    assert capacity["query"]["recall"] > 0.5
    assert capacity["upsert"]["points_at_end"] >= capacity["upsert"]["requests"]
    for selectivity in SELECTIVITIES:
        for kind in KINDS:
            assert results["keel"]["sweep"][selectivity][kind]["recall"] > 0.5
            assert results["qdrant_edge"]["sweep"][selectivity][kind]["recall"] > 0.5
    multi = results["keel"]["multivector"]
    assert multi["full_scan"]["recall"] >= 0.95  # exact MaxSim: numpy's top 10, up to float ties
    assert multi["full_scan"]["qps"] > 0 and multi["rerank"]["qps"] > 0
    assert "multivector MaxSim" in completed.stdout
    assert "PASS" in completed.stdout or "MISS" in completed.stdout
