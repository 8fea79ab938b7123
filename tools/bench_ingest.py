"""Durable ingest with wait=false over HTTP: requests/s against the disk's fsync ceiling.

Usage: python tools/bench_ingest.py [--clients 32] [--points 1] [--seconds 10] [--dim 128]

One run measures, on this machine and in this run:
  1. the fsync ceiling: 4 KiB append + fdatasync per op, ops/s, in a temp dir beside the
     server's storage (same file system);
  2. Keel: `--clients` concurrent HTTP clients each upserting `--points` points per request
     with wait=false (acknowledged = fsynced) for `--seconds`;
and prints both with their ratio, plus how many group commits (fsyncs) the server did (from
its `wal closed ... batches_written=` log line at shutdown). Nothing here is a pass/fail
threshold: the machine is shared and noisy, so only ratios from one run mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.keel_process import KeelProcess


def fsync_ceiling_ops_per_s(directory: Path, seconds: float) -> float:
    """Appends of 4 KiB, each followed by fdatasync: the one-fsync-per-op rate."""
    path = directory / "fsync-probe"
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    count = 0
    started_s = time.monotonic()
    try:
        while time.monotonic() - started_s < seconds:
            os.write(fd, block)
            os.fdatasync(fd)
            count += 1
    finally:
        os.close(fd)
        path.unlink()
    return count / (time.monotonic() - started_s)


async def drive(url: str, clients: int, points: int, dim: int, seconds: float) -> dict:
    rng = np.random.default_rng(0)
    # orjson with numpy rows: the client must cost little next to the server it measures.
    vectors = list(rng.normal(size=(points, dim)).astype(np.float32))
    deadline_s = time.monotonic() + seconds
    acknowledged = 0
    latencies_s: list[float] = []

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal acknowledged
        sequence = 0
        while time.monotonic() < deadline_s:
            first_id = (index * 10_000_000) + sequence * points
            body = {"points": [{"id": first_id + i, "vector": vectors[i]} for i in range(points)]}
            started_s = time.monotonic()
            async with session.put(
                f"{url}/collections/bench/points?wait=false",
                data=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                headers={"Content-Type": "application/json"},
            ) as response:
                answer = await response.json()
            assert answer["result"]["status"] == "acknowledged", answer
            latencies_s.append(time.monotonic() - started_s)
            acknowledged += 1
            sequence += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started_s = time.monotonic()
        await asyncio.gather(*(client(i, session) for i in range(clients)))
        took_s = time.monotonic() - started_s
    return {
        "requests_per_s": acknowledged / took_s,
        "points_per_s": acknowledged * points / took_s,
        "latency_ms_p50": float(np.percentile(latencies_s, 50) * 1000),
        "latency_ms_p99": float(np.percentile(latencies_s, 99) * 1000),
        "took_s": took_s,
        "requests": acknowledged,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--points", type=int, default=1, help="points per request")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hnsw-m", type=int, default=16, help="0: no HNSW graph (isolates it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as temp:
        temp_dir = Path(temp)
        ceiling = fsync_ceiling_ops_per_s(temp_dir, seconds=min(args.seconds, 5.0))
        server = KeelProcess.start(temp_dir / "storage")
        try:
            asyncio.run(_create(server.url, args.dim, args.hnsw_m))
            result = asyncio.run(
                drive(server.url, args.clients, args.points, args.dim, args.seconds)
            )
        finally:
            exit_code = server.terminate()
        match = re.search(
            r"wal closed collection=bench batches_written=(\d+) "
            r"records_written=(\d+)",
            server.log_text(),
        )
    batches = int(match.group(1)) if match else None
    report = {
        "fsync_ceiling_ops_per_s": round(ceiling, 1),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()},
        "server_fsyncs": batches,
        "server_fsyncs_per_s": round(batches / result["took_s"], 1) if batches else None,
        "records_per_fsync": round(result["requests"] / batches, 1) if batches else None,
        "ratio_requests_to_fsync_ceiling": round(result["requests_per_s"] / ceiling, 2),
        "clients": args.clients,
        "points_per_request": args.points,
        "dim": args.dim,
        "hnsw_m": args.hnsw_m,
        "server_exit_code": exit_code,
    }
    print(json.dumps(report, indent=2))
    return 0


async def _create(url: str, dim: int, hnsw_m: int) -> None:
    body = {"vectors": {"size": dim, "distance": "Cosine"}, "hnsw_config": {"m": hnsw_m}}
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{url}/collections/bench", json=body) as response,
    ):
        assert response.status == 200, await response.text()


if __name__ == "__main__":
    raise SystemExit(main())
