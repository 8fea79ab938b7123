"""Keel over HTTP, driven the way a user drives it: a real server subprocess per phase group.

Owns: every Keel measurement but the selectivity sweep: durable ingest (wait=false until
acknowledged and until indexed; wait=true), 1-point requests from 64 clients against the
server's fsyncs, search QPS/latency/recall per concurrency and hnsw_ef (aiohttp client),
query/batch, the server-capacity runs under wrk (plain `/points/query` at the fixed ef with
its recall, and 1-point upserts with distinct ids), peak RSS and what `/metrics` says the read
path keeps in memory, and restart time with N operations in the WAL.
Not here: the load generators (client.py, wrk.py), the sweep (sweep.py), the baselines, the
report.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.keel_process import KeelProcess
from tools.bench import wrk
from tools.bench.client import (
    LoadResult,
    batch_ids,
    encode,
    query_ids,
    request_json,
    run_load,
    search_ids,
)
from tools.bench.data import Dataset, K, payload, recall_at_k
from tools.bench.rss import peak_rss_bytes, rss_bytes, rss_parts_bytes

COLLECTION = "bench"
INGEST_BATCH_POINTS = 1_000
INGEST_CLIENTS = 8
SMALL_REQUEST_CLIENTS = 64
QUERY_BATCH_SIZE = 100
QUERY_BATCH_CLIENTS = 2  # one per core: a batch already keeps the server's CPU busy
RECALL_CLIENTS = 8  # the aiohttp client that reads the answers of the wrk bodies
RECALL_BUDGET_S_MIN = 10.0  # a recall pass stops after max(this, the phase's seconds)
UPSERT_COLLECTION = "upserts"
UPSERT_BODIES = 1_000  # distinct vectors; wrk splices a new id into each request
READ_CACHE_METRIC = "keel_collection_read_view_bytes"
REPLAY_BATCH_OPS = 1_000  # operations per points/batch request (Keel's maximum)
REPLAY_DIM = 8
INDEXED_TIMEOUT_S = 1_800.0
POLL_INTERVAL_S = 0.02
# Checkpoints are what the replay phase must not have: it wants every op in the WAL.
NO_CHECKPOINT_ENV = {
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_S": "86400",
    "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_OPS": "100000000",
}


@dataclass(frozen=True)
class SearchPlan:
    efs: list[int]
    concurrencies: list[int]
    seconds: float


def start(
    storage_dir: Path,
    extra_env: dict[str, str] | None = None,
    ready_timeout_s: float = 60.0,
    module: str = "server",
) -> KeelProcess:
    """A Keel server on a fresh storage directory (or restarted on one); `module` runs it
    (tools/bench/ceiling.py: Keel with an empty engine)."""
    return KeelProcess.start(
        storage_dir, extra_env=extra_env, ready_timeout_s=ready_timeout_s, module=module
    )


async def create_collection(url: str, name: str, dim: int, keyword_fields: tuple = ()) -> None:
    body = {
        "vectors": {"size": dim, "distance": "Cosine"},
        "hnsw_config": {"m": 16, "ef_construct": 100},
    }
    await request_json("PUT", f"{url}/collections/{name}", body)
    for field_name in keyword_fields:
        await create_keyword_index(url, name, field_name)


async def create_keyword_index(url: str, name: str, field_name: str) -> None:
    body = {"field_name": field_name, "field_schema": "keyword"}
    await request_json("PUT", f"{url}/collections/{name}/index?wait=true", body)


async def ingest(url: str, dataset: Dataset, is_wait: bool) -> dict:
    """Batches of 1000 from 8 clients; time until every batch is acknowledged (wait=false)
    or completed (wait=true), and until the graph holds every vector."""
    await create_collection(url, COLLECTION, dataset.dim)
    bodies = [
        encode({"batch": {"ids": list(ids), "vectors": dataset.vectors[ids.start : ids.stop],
                          "payloads": [payload(i) for i in ids]}})
        for ids in _ranges(dataset.count, INGEST_BATCH_POINTS)
    ]  # fmt: skip
    wait = "true" if is_wait else "false"
    expected_status = "completed" if is_wait else "acknowledged"

    def check(answer):
        status = answer["result"]["status"]
        assert status == expected_status, answer
        return status

    started_s = time.perf_counter()
    load = await run_load(
        f"{url}/collections/{COLLECTION}/points?wait={wait}",
        bodies,
        INGEST_CLIENTS,
        parse=check,
        method="PUT",
    )
    acknowledged_s = time.perf_counter() - started_s
    await wait_indexed(url, COLLECTION, dataset.count)
    indexed_s = time.perf_counter() - started_s
    return {
        "wait": is_wait,
        "clients": INGEST_CLIENTS,
        "batch_points": INGEST_BATCH_POINTS,
        "acknowledged_s": round(acknowledged_s, 3),
        "acknowledged_points_per_s": round(dataset.count / acknowledged_s, 1),
        "until_indexed_s": round(indexed_s, 3),
        "until_indexed_points_per_s": round(dataset.count / indexed_s, 1),
        "request_latency": load.summary(),
    }


async def wait_indexed(url: str, name: str, count: int) -> dict:
    """Poll collection info until `count` points are stored and in the graph."""
    deadline_s = time.monotonic() + INDEXED_TIMEOUT_S
    while True:
        info = await request_json("GET", f"{url}/collections/{name}")
        if info["points_count"] >= count and info["indexed_vectors_count"] >= count:
            return info
        if time.monotonic() > deadline_s:
            raise RuntimeError(f"not indexed within {INDEXED_TIMEOUT_S} s: {info}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def small_requests(server: KeelProcess, dim: int, seconds: float) -> dict:
    """1 point per request, wait=false, 64 clients for `seconds`. The server is stopped
    afterwards so its `wal closed` log line tells how many group commits (fsyncs) it did."""
    name = "small"
    await create_collection(server.url, name, dim)
    rng = np.random.default_rng(3)
    bodies = [
        encode({"points": [{"id": i, "vector": rng.standard_normal(dim, dtype=np.float32),
                            "payload": payload(i)}]})
        for i in range(10_000)
    ]  # fmt: skip
    load = await run_load(
        f"{server.url}/collections/{name}/points?wait=false",
        bodies,
        SMALL_REQUEST_CLIENTS,
        seconds=seconds,
        method="PUT",
    )
    exit_code = server.terminate()
    fsyncs = _wal_batches_written(server.log_text(), name)
    return {
        "clients": SMALL_REQUEST_CLIENTS,
        "points_per_request": 1,
        **load.summary(),
        "server_fsyncs": fsyncs,
        "server_fsyncs_per_s": None if fsyncs is None else round(fsyncs / load.took_s, 1),
        "requests_per_fsync": None if not fsyncs else round(load.request_count / fsyncs, 1),
        "server_exit_code": exit_code,
    }


async def search(url: str, dataset: Dataset, plan: SearchPlan) -> dict:
    """POST /points/search, one vector per request, per concurrency and hnsw_ef."""
    results: dict[str, dict] = {}
    for concurrency in plan.concurrencies:
        for ef in plan.efs:
            bodies = [
                encode({"vector": q, "limit": K, "params": {"hnsw_ef": ef}})
                for q in dataset.queries
            ]
            load = await run_load(
                f"{url}/collections/{COLLECTION}/points/search",
                bodies,
                concurrency,
                seconds=plan.seconds,
                parse=search_ids,
            )
            results.setdefault(str(concurrency), {})[str(ef)] = _with_recall(load, dataset.truth)
    return results


async def query_batch(url: str, dataset: Dataset, efs: list[int], seconds: float) -> dict:
    """POST /points/query/batch with 100 queries per request, per hnsw_ef."""
    starts = list(range(0, len(dataset.queries), QUERY_BATCH_SIZE))
    results = {}
    for ef in efs:
        bodies = [
            encode({"searches": [{"query": q, "limit": K, "params": {"hnsw_ef": ef}}
                                 for q in dataset.queries[start : start + QUERY_BATCH_SIZE]]})
            for start in starts
        ]  # fmt: skip
        load = await run_load(
            f"{url}/collections/{COLLECTION}/points/query/batch",
            bodies,
            QUERY_BATCH_CLIENTS,
            seconds=seconds,
            parse=batch_ids,
        )
        found = {
            starts[body_index] + offset: ids
            for body_index, answer in load.answers.items()
            for offset, ids in enumerate(answer)
        }
        query_count = sum(
            min(QUERY_BATCH_SIZE, len(dataset.queries) - starts[i % len(starts)])
            for i in range(load.request_count)
        )
        results[str(ef)] = {
            "clients": QUERY_BATCH_CLIENTS,
            "queries_per_request": QUERY_BATCH_SIZE,
            **load.summary(),
            "qps": round(query_count / load.took_s, 1),
            "recall": _round(recall_at_k(found, dataset.truth)),
        }
    return results


def query_bodies(dataset: Dataset, ef: int, condition: dict | None = None) -> list[bytes]:
    """`POST /points/query` bodies, one per query vector, encoded once."""
    extra = {} if condition is None else {"filter": condition}
    return [
        encode({"query": q, "limit": K, "params": {"hnsw_ef": ef}, **extra})
        for q in dataset.queries
    ]


def upsert_bodies(dim: int) -> list[bytes]:
    """1-point `PUT /points` bodies, the id left as wrk's placeholder (see wrk.py)."""
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((UPSERT_BODIES, dim), dtype=np.float32)
    quoted = b'"' + wrk.ID_PLACEHOLDER + b'"'  # encoded as a string, spliced in as a number
    return [
        encode({"points": [{"id": wrk.ID_PLACEHOLDER.decode(), "vector": vector,
                            "payload": payload(i)}]}).replace(quoted, wrk.ID_PLACEHOLDER)
        for i, vector in enumerate(vectors)
    ]  # fmt: skip


async def wrk_query(url: str, bodies: list[bytes], truth, seconds: float, work_dir) -> dict:
    """`POST /points/query` under wrk for `seconds`, then recall@10 of the same bodies read
    by the aiohttp client (each body once, within a time budget)."""
    target = f"{url}/collections/{COLLECTION}/points/query"
    row = await asyncio.to_thread(wrk.run, wrk.WrkRun(target, "POST", bodies, seconds), work_dir)
    recall = await recall_of(target, bodies, truth, max(seconds, RECALL_BUDGET_S_MIN))
    return {**row, "qps": row["ok_requests_per_s"], **recall}


async def wrk_ceiling(
    storage_dir: Path, dataset: Dataset, ef: int, seconds: float, work_dir
) -> dict:
    """`POST /points/query` under wrk, with the capacity run's bodies, on Keel with an empty
    engine (tools/bench/ceiling.py): what Keel's HTTP path alone serves."""
    server = start(storage_dir, module="tools.bench.ceiling")
    try:
        await create_collection(server.url, COLLECTION, dataset.dim)
        target = f"{server.url}/collections/{COLLECTION}/points/query"
        bodies = query_bodies(dataset, ef)
        row = await asyncio.to_thread(
            wrk.run, wrk.WrkRun(target, "POST", bodies, seconds), work_dir
        )
        return {**row, "qps": row["ok_requests_per_s"]}
    finally:
        server.terminate()


async def recall_of(target: str, bodies: list[bytes], truth, budget_s: float) -> dict:
    """Recall@10 of `bodies` sent once each (from the first) until `budget_s` has passed.
    A non-200 answer leaves the recall unmeasured, with the answer kept as `recall_error`
    (the report shows it): one failing filter must not cost the rest of the run."""
    try:
        load = await run_load(target, bodies, RECALL_CLIENTS, parse=query_ids, budget_s=budget_s)
    except RuntimeError as error:
        return {"recall": None, "recall_queries": 0, "recall_error": str(error)[:500]}
    return {"recall": _round(recall_at_k(load.answers, truth)),
            "recall_queries": len(load.answers)}  # fmt: skip


async def wrk_upserts(url: str, dim: int, seconds: float, work_dir) -> dict:
    """1-point upserts with wait=false and distinct ids under wrk, into their own collection
    (the main collection's data stays what the read phases measured)."""
    await create_collection(url, UPSERT_COLLECTION, dim)
    target = f"{url}/collections/{UPSERT_COLLECTION}/points?wait=false"
    plan = wrk.WrkRun(target, "PUT", upsert_bodies(dim), seconds)
    row = await asyncio.to_thread(wrk.run, plan, work_dir)
    # Every acknowledged upsert is a new point, so once applied the count shows the ids were
    # distinct (requests cut off by wrk's stop may add a few more).
    await wait_points(url, UPSERT_COLLECTION, row["requests"] - row["errors"]["status"])
    info = await request_json("GET", f"{url}/collections/{UPSERT_COLLECTION}")
    return {**row, "qps": row["ok_requests_per_s"], "points_at_end": info["points_count"]}


async def wait_points(url: str, name: str, count: int) -> None:
    deadline_s = time.monotonic() + INDEXED_TIMEOUT_S
    while (await request_json("GET", f"{url}/collections/{name}"))["points_count"] < count:
        if time.monotonic() > deadline_s:
            raise RuntimeError(f"{name}: fewer than {count} points after {INDEXED_TIMEOUT_S} s")
        await asyncio.sleep(POLL_INTERVAL_S)


def memory(server: KeelProcess) -> dict:
    """Peak and current RSS, and the read path's memory if `/metrics` reports it."""
    pid = server.popen.pid
    return {"peak_rss_bytes": peak_rss_bytes(pid), "rss_bytes": rss_bytes(pid),
            **rss_parts_bytes(pid), "read_cache_bytes": read_cache_bytes(server.url)}  # fmt: skip


def read_cache_bytes(url: str) -> int | None:
    """The sum of every `keel_collection_read_view_bytes` sample in `/metrics`; None if the server
    does not export that gauge."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if re.match(rf"{READ_CACHE_METRIC}(\{{| )", line)
    ]
    return int(sum(values)) if values else None


async def replay(storage_dir: Path, op_count: int) -> dict:
    """Restart time with `op_count` operations in the WAL that LMDB and the graph lack.

    A fresh collection is created and the server stopped cleanly; its (empty) LMDB and
    index directories are copied aside. The server is restarted, `op_count` 1-point upserts
    (dim 8, small payload) are written with wait=false, 1000 per points/batch request, and
    the server is SIGKILLed. The copies are put back, as if LMDB had lost every applied
    transaction (which `metasync=False` plus a power loss may do to the last ones): now the
    restart must replay every op from the WAL. Timed from spawn to /readyz answering 200,
    and to every point being in the graph.
    """
    name = "replay"
    server = start(storage_dir, NO_CHECKPOINT_ENV)
    await create_collection(server.url, name, REPLAY_DIM)
    server.terminate()
    collection_dir = storage_dir / "collections" / name
    saved_dir = storage_dir.parent / "replay-saved"
    for part in ("lmdb", "index"):
        shutil.copytree(collection_dir / part, saved_dir / part)
    server = start(storage_dir, NO_CHECKPOINT_ENV)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((REPLAY_BATCH_OPS, REPLAY_DIM), dtype=np.float32)
    bodies = [
        encode({"operations": [
            {"upsert": {"points": [{"id": first + i, "vector": vectors[i], "payload": {"n": i}}]}}
            for i in range(min(REPLAY_BATCH_OPS, op_count - first))
        ]})
        for first in range(0, op_count, REPLAY_BATCH_OPS)
    ]  # fmt: skip
    load = await run_load(
        f"{server.url}/collections/{name}/points/batch?wait=false", bodies, INGEST_CLIENTS
    )
    server.kill_9()
    for part in ("lmdb", "index"):
        shutil.rmtree(collection_dir / part)
        shutil.copytree(saved_dir / part, collection_dir / part)
    started_s = time.perf_counter()
    server = start(storage_dir, NO_CHECKPOINT_ENV, ready_timeout_s=INDEXED_TIMEOUT_S)
    ready_s = time.perf_counter() - started_s
    # Ready means replayed into LMDB; the graph catches up after that (searches are exact
    # meanwhile), so the time until it is indexed is reported beside it.
    info = await wait_indexed(server.url, name, op_count)
    indexed_s = time.perf_counter() - started_s
    server.terminate()
    replayed = _opened_line(server.log_text(), name)
    return {
        "ops_written": op_count,
        "write_ops_per_s": round(op_count / load.took_s, 1),
        "ops_replayed": replayed["ops_replayed"],
        "open_took_s": replayed["took_s"],
        "restart_until_ready_s": round(ready_s, 3),
        "restart_until_indexed_s": round(indexed_s, 3),
        # The target's number: ops replayed per second of restart, Python's start included.
        "replay_ops_per_s": round(replayed["ops_replayed"] / ready_s, 1),
        "replay_ops_per_s_open_only": round(
            replayed["ops_replayed"] / max(replayed["took_s"], 1e-3), 1
        ),
        "points_after_restart": info["points_count"],
    }


def _with_recall(load: LoadResult, truth: np.ndarray) -> dict:
    return {**load.summary(), "qps": round(load.requests_per_s, 1),
            "recall": _round(recall_at_k(load.answers, truth))}  # fmt: skip


def _wal_batches_written(log_text: str, name: str) -> int | None:
    match = re.search(rf"wal closed collection={name} batches_written=(\d+)", log_text)
    return int(match.group(1)) if match else None


def _opened_line(log_text: str, name: str) -> dict:
    matches = re.findall(
        rf"collection opened collection={name} ops_replayed=(\d+) .*?took_s=([\d.]+)", log_text
    )
    assert matches, f"no `collection opened` line for {name} in the server log"
    ops_replayed, took_s = matches[-1]
    return {"ops_replayed": int(ops_replayed), "took_s": float(took_s)}


def _ranges(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
