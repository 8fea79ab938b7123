"""Multivector (late interaction) search in Keel: a dense prefetch reranked by MaxSim, and a
whole-collection MaxSim scan, beside numpy doing the same scan in process.

Owns: the `multivector` phase: a collection of MV_POINTS points, each with the dataset's
dense vector and a matrix of MV_ROWS rows of MV_DIM floats (random, unit rows), Dot distance;
queries of MV_QUERY_ROWS rows. One client, one request at a time: these are latency-bound
searches, not a capacity test.
Not here: how Keel scores MaxSim (engine/query/multivector.py: exact, as Qdrant's source
computes it; hnswlib has no MaxSim index).
"""

from __future__ import annotations

import time

import aiohttp
import numpy as np

from tools.bench.client import encode
from tools.bench.data import Dataset

MV_COLLECTION = "bench_multivector"
MV_POINTS = 10_000
MV_ROWS = 8
MV_DIM = 32
MV_QUERY_ROWS = 4
RERANK_CANDIDATES = 100
UPSERT_BATCH = 500
K = 10


async def run(url: str, dataset: Dataset, seconds: float) -> dict:
    rng = np.random.default_rng(23)
    count = min(MV_POINTS, dataset.count)
    matrices = _unit_rows(rng.standard_normal((count, MV_ROWS, MV_DIM)).astype(np.float32))
    query_count = min(50, len(dataset.queries))
    queries = _unit_rows(
        rng.standard_normal((query_count, MV_QUERY_ROWS, MV_DIM)).astype(np.float32)
    )
    base = f"{url}/collections/{MV_COLLECTION}"
    async with aiohttp.ClientSession(headers={"content-type": "application/json"}) as http:
        config = {
            "vectors": {
                "dense": {"size": dataset.dim, "distance": "Cosine"},
                "colbert": {
                    "size": MV_DIM,
                    "distance": "Dot",
                    "multivector_config": {"comparator": "max_sim"},
                },
            }
        }
        await _call(http, "PUT", base, encode(config))
        started_s = time.perf_counter()
        for start in range(0, count, UPSERT_BATCH):
            ids = range(start, min(count, start + UPSERT_BATCH))
            points = [
                {"id": i, "vector": {"dense": dataset.vectors[i], "colbert": matrices[i]}}
                for i in ids
            ]
            await _call(http, "PUT", f"{base}/points?wait=true", encode({"points": points}))
        upsert_s = time.perf_counter() - started_s
        full_bodies = [
            encode({"query": query, "using": "colbert", "limit": K}) for query in queries
        ]
        rerank_bodies = [
            encode(
                {
                    "prefetch": {
                        "query": dataset.queries[j],
                        "using": "dense",
                        "limit": RERANK_CANDIDATES,
                    },
                    "query": queries[j],
                    "using": "colbert",
                    "limit": K,
                }
            )
            for j in range(query_count)
        ]
        full = await _timed(http, f"{base}/points/query", full_bodies, seconds)
        rerank = await _timed(http, f"{base}/points/query", rerank_bodies, seconds)
        await _call(http, "DELETE", base, b"")
    truth = [_maxsim_top(matrices, query) for query in queries]
    recall = np.mean([len(set(ids) & set(true)) / K for ids, true in zip(full.pop("ids"), truth)])
    rerank.pop("ids")
    started_s = time.perf_counter()
    for query in queries:
        _maxsim_top(matrices, query)
    numpy_qps = len(queries) / (time.perf_counter() - started_s)
    return {
        "points": count,
        "rows": MV_ROWS,
        "dim": MV_DIM,
        "query_rows": MV_QUERY_ROWS,
        "upsert_points_per_s": round(count / upsert_s, 1),
        "full_scan": {**full, "recall": round(float(recall), 3)},
        "rerank": {**rerank, "candidates": RERANK_CANDIDATES},
        "numpy_full_scan_qps": round(numpy_qps, 1),
    }


def _unit_rows(matrices: np.ndarray) -> np.ndarray:
    return matrices / np.linalg.norm(matrices, axis=-1, keepdims=True)


def _maxsim_top(matrices: np.ndarray, query: np.ndarray) -> list[int]:
    """The exact top K by MaxSim with Dot: per point, the sum over query rows of the best
    row product."""
    scores = np.einsum("qd,nrd->nqr", query, matrices).max(axis=2).sum(axis=1)
    return np.argsort(-scores, kind="stable")[:K].tolist()


async def _call(http: aiohttp.ClientSession, method: str, url: str, body: bytes) -> dict:
    async with http.request(method, url, data=body) as response:
        answer = await response.json()
        assert response.status == 200, (method, url, response.status, answer)
        return answer


async def _timed(
    http: aiohttp.ClientSession, url: str, bodies: list[bytes], seconds: float
) -> dict:
    """Each body once (more rounds while under `seconds`): q/s, p50 latency, ids of the
    first round."""
    latencies: list[float] = []
    ids: list[list[int]] = []
    started_s = time.perf_counter()
    while not latencies or (time.perf_counter() - started_s < seconds and len(latencies) < 500):
        for body in bodies:
            sent_s = time.perf_counter()
            answer = await _call(http, "POST", url, body)
            latencies.append(time.perf_counter() - sent_s)
            if len(ids) < len(bodies):
                ids.append([hit["id"] for hit in answer["result"]["points"]])
    elapsed_s = time.perf_counter() - started_s
    return {
        "qps": round(len(latencies) / elapsed_s, 1),
        "p50_ms": round(float(np.median(latencies)) * 1000, 2),
        "ids": ids,
    }
