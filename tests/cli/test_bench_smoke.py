"""`python -m tools.bench --quick` runs end to end and writes every section of its JSON.

Goal: the benchmark keeps working as Keel changes (its numbers are not checked: timing
targets are reported by the tool, never asserted). Method: run it as a user does, in a
subprocess, without Chroma (which installs a virtualenv on first use), and read the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
TARGET_NAMES = {"ingest_vs_chroma", "indexed_vs_hnswlib", "search_vs_floor",
                "batch_vs_hnswlib", "small_vs_fsync", "replay", "rss"}  # fmt: skip
KEEL_SECTIONS = {"ingest_wait_false", "ingest_wait_true", "small_requests", "search",
                 "query_batch", "filtered", "memory", "replay"}  # fmt: skip


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
    assert "PASS" in completed.stdout or "MISS" in completed.stdout
