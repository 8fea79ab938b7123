"""Drives a running Chroma server; runs in Chroma's own virtualenv, not Keel's.

Usage: python chroma_driver.py --port P --data DIR --seconds S --clients C --out FILE

Reads DIR/vectors.npy and DIR/queries.npy, creates a Cosine collection (HNSW M=16,
ef_construction=100, ef_search=100) with chromadb's client, then drives Chroma's REST API
directly the way the bench drives Keel: every request body is JSON encoded (orjson) before
the clock starts, and C threads, each with its own keep-alive connection, send them. Adds
are batches of 1000 with the same small metadata Keel stores (timed until every add
answered); queries are n_results=10 for S seconds. Writes JSON: add timing, query timing and
latencies, and the ids found per query (recall is computed by the caller, which has the
exact answers). Only the standard library, numpy, orjson and chromadb.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
from pathlib import Path

import chromadb
import numpy as np
import orjson

ADD_BATCH_POINTS = 1_000
SEL_VALUES, SEL_STRIDE = 1_000, 7_919  # tools/bench/data.py's payload, which Keel stores
API_PREFIX = "/api/v2/tenants/default_tenant/databases/default_database/collections"
HEADERS = {"Content-Type": "application/json"}
REQUEST_TIMEOUT_S = 600.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    vectors = np.load(args.data / "vectors.npy")
    queries = np.load(args.data / "queries.npy")
    client = chromadb.HttpClient(host="127.0.0.1", port=args.port)
    collection_id = create_collection(client).id
    add_bodies = [
        orjson.dumps({"ids": [str(i) for i in range(start, stop)],
                      "embeddings": vectors[start:stop], "metadatas": [payload(i) for i in
                      range(start, stop)], "documents": None, "uris": None},
                     option=orjson.OPT_SERIALIZE_NUMPY)
        for start in range(0, len(vectors), ADD_BATCH_POINTS)
        for stop in [min(start + ADD_BATCH_POINTS, len(vectors))]
    ]  # fmt: skip
    add_path = f"{API_PREFIX}/{collection_id}/add"
    started_s = time.perf_counter()
    load(args.port, add_path, add_bodies, args.clients, deadline_s=None)
    add_s = time.perf_counter() - started_s
    query_bodies = [
        orjson.dumps({"query_embeddings": [query.tolist()], "n_results": 10,
                      "include": ["distances"]})
        for query in queries
    ]  # fmt: skip
    started_s = time.perf_counter()
    answers, latencies_s = load(args.port, f"{API_PREFIX}/{collection_id}/query", query_bodies,
                                args.clients, deadline_s=started_s + args.seconds)  # fmt: skip
    query_s = time.perf_counter() - started_s
    found = {index: [int(i) for i in answer["ids"][0]] for index, answer in answers.items()}
    result = {
        "add_s": add_s,
        "add_clients": args.clients,
        "count": client.get_collection("bench").count(),
        "query_s": query_s,
        "query_count": len(latencies_s),
        "latencies_s": latencies_s,
        "found": {str(k): v for k, v in found.items()},
    }
    args.out.write_text(json.dumps(result))


def payload(point_id: int) -> dict:
    value = point_id * SEL_STRIDE % SEL_VALUES
    return {"sel": value, "sel_plain": value}


def create_collection(client):
    hnsw = {"space": "cosine", "max_neighbors": 16, "ef_construction": 100, "ef_search": 100}
    return client.create_collection("bench", configuration={"hnsw": hnsw})


def load(port: int, path: str, bodies: list[bytes], clients: int, deadline_s: float | None):
    """Send `bodies` from `clients` threads: each once (deadline_s None) or cycled until
    `deadline_s`. Returns the first parsed answer per body index and every latency."""
    indexes = (
        iter(range(len(bodies))) if deadline_s is None else itertools.cycle(range(len(bodies)))
    )
    lock = threading.Lock()
    latencies_s: list[float] = []
    answers: dict[int, dict] = {}
    failures: list[str] = []

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            while not failures:
                with lock:
                    index = next(indexes, None)
                started_s = time.perf_counter()
                if index is None or (deadline_s is not None and started_s > deadline_s):
                    return
                connection.request("POST", path, body=bodies[index], headers=HEADERS)
                response = connection.getresponse()
                raw = response.read()
                took_s = time.perf_counter() - started_s
                if response.status not in (200, 201):  # add answers 201 Created
                    failures.append(f"POST {path} status={response.status}: {raw[:300]!r}")
                    return
                with lock:
                    latencies_s.append(took_s)
                    if deadline_s is not None and index not in answers:
                        answers[index] = orjson.loads(raw)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0])
    return answers, latencies_s


if __name__ == "__main__":
    main()
