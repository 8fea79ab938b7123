"""Drives a running Chroma server; runs in Chroma's own virtualenv, not Keel's.

Usage: python chroma_driver.py --port P --data DIR --seconds S --clients C --out FILE

Reads DIR/vectors.npy and DIR/queries.npy, creates a Cosine collection (HNSW M=16,
ef_construction=100, ef_search=100), adds the vectors in batches of 1000 with a small
metadata each, then queries (n_results=10) from C threads for S seconds, and writes JSON:
add timing, query timing and latencies, and the ids found per query (recall is computed by
the caller, which has the exact answers). Only the standard library, numpy and chromadb.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from pathlib import Path

import chromadb
import numpy as np

ADD_BATCH_POINTS = 1_000


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
    collection = create_collection(client)
    started_s = time.perf_counter()
    for start in range(0, len(vectors), ADD_BATCH_POINTS):
        ids = range(start, min(start + ADD_BATCH_POINTS, len(vectors)))
        collection.add(
            ids=[str(i) for i in ids],
            embeddings=vectors[start : start + len(ids)],
            metadatas=[{"tag": f"t{i % 100}", "half": f"h{i % 2}"} for i in ids],
        )
    add_s = time.perf_counter() - started_s
    result = {"add_s": add_s, "count": collection.count(), **query_load(args, queries)}
    args.out.write_text(json.dumps(result))


def create_collection(client):
    hnsw = {"space": "cosine", "max_neighbors": 16, "ef_construction": 100, "ef_search": 100}
    try:
        return client.create_collection("bench", configuration={"hnsw": hnsw})
    except (TypeError, ValueError):
        # Chroma before 1.0 takes its HNSW settings as collection metadata.
        metadata = {"hnsw:space": "cosine", "hnsw:M": 16, "hnsw:construction_ef": 100,
                    "hnsw:search_ef": 100}  # fmt: skip
        return client.create_collection("bench", metadata=metadata)


def query_load(args, queries: np.ndarray) -> dict:
    """C threads, each with its own client made before the clock starts, for S seconds."""
    indexes = itertools.cycle(range(len(queries)))
    lock = threading.Lock()
    latencies_s: list[float] = []
    found: dict[int, list[int]] = {}
    barrier = threading.Barrier(args.clients + 1)
    deadline: list[float] = []

    def worker() -> None:
        collection = chromadb.HttpClient(host="127.0.0.1", port=args.port).get_collection("bench")
        barrier.wait()
        while True:
            with lock:
                index = next(indexes)
            started_s = time.perf_counter()
            if started_s > deadline[0]:
                return
            answer = collection.query(query_embeddings=queries[index : index + 1], n_results=10)
            took_s = time.perf_counter() - started_s
            with lock:
                latencies_s.append(took_s)
                found.setdefault(index, [int(i) for i in answer["ids"][0]])

    threads = [threading.Thread(target=worker) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    started_s = time.perf_counter()
    deadline.append(started_s + args.seconds)
    barrier.wait()
    for thread in threads:
        thread.join()
    return {
        "query_s": time.perf_counter() - started_s,
        "query_count": len(latencies_s),
        "latencies_s": latencies_s,
        "found": {str(k): v for k, v in found.items()},
    }


if __name__ == "__main__":
    main()
