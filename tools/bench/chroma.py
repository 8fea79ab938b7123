"""Chroma's server as a baseline: its own virtualenv, `chroma run`, and chroma_driver.py.

Owns: installing chromadb into a cache virtualenv when missing (never into Keel's), starting
and stopping `chroma run --path DIR --port P`, and turning the driver's output into the
report's shape. The driver sends pre-encoded JSON bodies from as many concurrent clients as
Keel's ingest and wrk use (8), so neither system is timed with a slower client than the
other. Any failure to install or start it is a skip with the reason, never a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from tools.bench.data import Dataset, recall_at_k
from tools.bench.rss import peak_rss_bytes

CHROMA_VENV = Path.home() / ".cache" / "keel-bench" / "chroma-venv"
INSTALL_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 60.0
DRIVER = Path(__file__).with_name("chroma_driver.py")


class ChromaUnavailable(Exception):
    """Chroma could not be installed or started; the message says why."""


def ensure_venv(venv: Path = CHROMA_VENV) -> Path:
    """The python of a virtualenv that has chromadb, creating it if needed."""
    python = venv / "bin" / "python"
    if python.exists() and _has_chromadb(python):
        return python
    print(f"bench: installing chromadb into {venv} (once)", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "chromadb"],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except (subprocess.SubprocessError, OSError) as error:
        raise ChromaUnavailable(f"cannot install chromadb into {venv}: {error}") from error
    if not _has_chromadb(python):
        raise ChromaUnavailable(f"chromadb installed into {venv} but does not import")
    return python


def run(dataset: Dataset, directory: Path, port: int, seconds: float, clients: int) -> dict:
    """Ingest and query Chroma's server; its numbers in the report's shape."""
    python = ensure_venv()
    data_dir = directory / "chroma-data"
    data_dir.mkdir()
    np.save(data_dir / "vectors.npy", dataset.vectors)
    np.save(data_dir / "queries.npy", dataset.queries)
    log_path = directory / "chroma.log"
    chroma = python.parent / "chroma"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [str(chroma), "run", "--path", str(directory / "chroma-db"), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(server, port, log_path)
        out_path = directory / "chroma-result.json"
        driver = subprocess.run(
            [str(python), str(DRIVER), "--port", str(port), "--data", str(data_dir),
             "--seconds", str(seconds), "--clients", str(clients), "--out", str(out_path)],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if driver.returncode != 0:
            raise ChromaUnavailable(f"chroma driver failed: {driver.stderr[-2000:]}")
        rss_bytes = peak_rss_bytes(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    raw = json.loads(out_path.read_text())
    found = {int(k): v for k, v in raw["found"].items()}
    latencies_s = raw["latencies_s"]
    return {
        "add_s": round(raw["add_s"], 3),
        "add_points_per_s": round(dataset.count / raw["add_s"], 1),
        "add_clients": raw["add_clients"],
        "points_count": raw["count"],
        "query_clients": clients,
        "query_qps": round(raw["query_count"] / raw["query_s"], 1),
        "query_latency_ms_p50": _ms(latencies_s, 50),
        "query_latency_ms_p99": _ms(latencies_s, 99),
        "query_recall": recall_at_k(found, dataset.truth),
        "ef_search": 100,
        "peak_rss_bytes": rss_bytes,
    }


def _has_chromadb(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", "import chromadb"], capture_output=True, check=False)
    return probe.returncode == 0


def _wait_ready(server: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline_s = time.monotonic() + READY_TIMEOUT_S
    while True:
        for path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
            try:
                url = f"http://127.0.0.1:{port}{path}"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        if server.poll() is not None or time.monotonic() > deadline_s:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ChromaUnavailable(f"chroma server did not start exit={server.poll()}: {tail}")
        time.sleep(0.2)


def _ms(latencies_s: list[float], percentile: float) -> float | None:
    if not latencies_s:
        return None
    return round(float(np.percentile(latencies_s, percentile) * 1000), 2)
