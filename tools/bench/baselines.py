"""The in-process baselines: the disk's fsync ceiling, raw hnswlib and qdrant-edge.

Owns: measuring each of them on the benchmark's data set, in this process.
Not here: the HTTP floor (floor.py) and Chroma (chroma.py), which are servers.

Every baseline reports the same shape as Keel where it can: ingest rate, and per `ef`,
single-query QPS (one query at a time, one thread) and batched QPS (calls of 100 queries, as
Keel's query/batch x100) with recall@10. qdrant-edge also runs the selectivity sweep (one
filtered query per call, at the sweep's ef) on the same data.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import hnswlib
import numpy as np

from tools.bench.data import (
    INDEXED_FIELD,
    PLAIN_FIELD,
    SELECTIVITIES,
    Dataset,
    K,
    filtered_truth,
    payload,
    recall_at_k,
)

HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
FSYNC_BLOCK_BYTES = 4096
EDGE_UPSERT_BATCH_POINTS = 1_000
QUERY_BATCH_SIZE = 100  # queries per batched call: the size of Keel's query/batch bodies
# Qdrant's default full_scan_threshold (KB of vectors): below it a filtered search scores the
# matching points exactly, above it searches the graph. The sweep measures Qdrant as shipped;
# it also means an unfiltered search of a data set under 10 MB (--quick) is a full scan.
EDGE_FULL_SCAN_THRESHOLD_KB = 10_000
SWEEP_QUERIES_MIN = 100  # a sweep row answers at least this many queries, however slow


def fsync_ceiling(directory: Path, seconds: float) -> dict:
    """Appends of 4 KiB each followed by fdatasync: the one-fsync-per-op rate of this disk."""
    path = directory / "fsync-probe"
    block = os.urandom(FSYNC_BLOCK_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    count = 0
    started_s = time.perf_counter()
    try:
        while time.perf_counter() - started_s < seconds:
            os.write(fd, block)
            os.fdatasync(fd)
            count += 1
    finally:
        os.close(fd)
        path.unlink()
    took_s = time.perf_counter() - started_s
    return {"fsyncs": count, "took_s": round(took_s, 3), "fsyncs_per_s": round(count / took_s, 1)}


def raw_hnswlib(dataset: Dataset, efs: list[int], seconds: float, directory: Path) -> dict:
    """hnswlib alone: add_items on all cores, then queries per ef, single and batched."""
    index = hnswlib.Index(space="cosine", dim=dataset.dim)
    index.init_index(
        max_elements=dataset.count, ef_construction=HNSW_EF_CONSTRUCT, M=HNSW_M, random_seed=100
    )
    started_s = time.perf_counter()
    index.add_items(dataset.vectors, np.arange(dataset.count), num_threads=-1)
    add_s = time.perf_counter() - started_s
    index_path = directory / "hnswlib.bin"
    index.save_index(str(index_path))
    index_bytes = index_path.stat().st_size
    index_path.unlink()
    by_ef = {}
    for ef in efs:
        index.set_ef(ef)
        by_ef[str(ef)] = {
            "single": _single(lambda q: index.knn_query(q, k=K, num_threads=1)[0][0], dataset,
                              seconds),
            "batched": _batched(lambda qs: index.knn_query(qs, k=K, num_threads=-1)[0],
                                dataset, seconds),
        }  # fmt: skip
    return {
        "add_items_s": round(add_s, 3),
        "add_items_vectors_per_s": round(dataset.count / add_s, 1),
        # save_index writes the vectors and the graph links, as hnswlib holds them in memory.
        "index_bytes": index_bytes,
        "by_ef": by_ef,
    }


def qdrant_edge(
    dataset: Dataset, efs: list[int], seconds: float, directory: Path, sweep_ef: int | None
) -> dict:
    """Qdrant's engine in process (qdrant-edge-py): upsert, flush, optimize until indexed,
    then queries per hnsw_ef, single and batched (query_batch, 100 per call), and with
    `sweep_ef` the selectivity sweep. The integer index on `sel` is created before the
    upserts, so the optimizer builds the extra graph links Qdrant keeps per indexed field."""
    import qdrant_edge as edge

    config = edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=dataset.dim, distance=edge.Distance.Cosine),
        hnsw_config=edge.HnswIndexConfig(
            m=HNSW_M,
            ef_construct=HNSW_EF_CONSTRUCT,
            full_scan_threshold=EDGE_FULL_SCAN_THRESHOLD_KB,
        ),
        # indexing_threshold is in KB; a small value makes even --quick data build HNSW.
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=100),
    )
    shard = edge.EdgeShard.create(str(directory / "edge-shard"), config)
    shard.update(
        edge.UpdateOperation.create_field_index(INDEXED_FIELD, edge.PayloadSchemaType.Integer)
    )
    # Points are built before the clock starts: this measures the engine, not list building.
    batches = [
        [
            edge.Point(point_id, dataset.vectors[point_id].tolist(), payload(point_id))
            for point_id in range(start, min(start + EDGE_UPSERT_BATCH_POINTS, dataset.count))
        ]
        for start in range(0, dataset.count, EDGE_UPSERT_BATCH_POINTS)
    ]
    try:
        started_s = time.perf_counter()
        for batch in batches:
            shard.update(edge.UpdateOperation.upsert_points(batch))
        upsert_s = time.perf_counter() - started_s
        shard.flush()
        flush_s = time.perf_counter() - started_s - upsert_s
        shard.optimize()
        indexed_s = time.perf_counter() - started_s
        info = shard.info()
        queries = [query.tolist() for query in dataset.queries]

        def request(index: int, ef: int):
            return edge.QueryRequest(
                limit=K,
                query=edge.Query.Nearest(queries[index]),
                params=edge.SearchParams(hnsw_ef=ef),
            )

        by_ef = {}
        for ef in efs:
            by_ef[str(ef)] = {
                "single": _single_indexed(
                    lambda i, ef=ef: [p.id for p in shard.query(request(i, ef))], dataset, seconds
                ),
                "batched": _edge_batched(shard, edge, request, dataset, ef),
            }
        sweep = None if sweep_ef is None else edge_sweep(shard, edge, dataset, sweep_ef, seconds)
        return {
            "upsert_s": round(upsert_s, 3),
            "upsert_points_per_s": round(dataset.count / upsert_s, 1),
            "flush_s": round(flush_s, 3),
            "until_indexed_s": round(indexed_s, 3),
            "until_indexed_points_per_s": round(dataset.count / indexed_s, 1),
            "points_count": info.points_count,
            "indexed_vectors_count": info.indexed_vectors_count,
            "segments_count": info.segments_count,
            "by_ef": by_ef,
            "sweep": sweep,
        }
    finally:
        shard.close()


def edge_sweep(shard, edge, dataset: Dataset, ef: int, seconds: float) -> dict:
    """One filtered query per call (`sel < t` on the indexed field and on the plain one) for
    each selectivity, QPS and recall@10 against brute force over the matching points; and
    the unfiltered query at the same ef, measured the same way, for the ratios."""
    queries = [query.tolist() for query in dataset.queries]

    def searcher(filter_):
        def search(index: int) -> list[int]:
            request = edge.QueryRequest(
                limit=K, query=edge.Query.Nearest(queries[index]), filter=filter_,
                params=edge.SearchParams(hnsw_ef=ef),
            )  # fmt: skip
            return [point.id for point in shard.query(request)]

        return search

    out: dict = {"hnsw_ef": ef, "unfiltered": _timed(searcher(None), dataset.truth, seconds)}
    for selectivity, bound in SELECTIVITIES.items():
        truth = filtered_truth(dataset, selectivity)
        out[selectivity] = {
            kind: _timed(searcher(edge.Filter(must=[edge.FieldCondition(
                field_name, range=edge.RangeFloat(lt=float(bound)))])), truth, seconds)
            for kind, field_name in (("indexed", INDEXED_FIELD), ("plain", PLAIN_FIELD))
        }  # fmt: skip
    return out


def _single(search, dataset: Dataset, seconds: float) -> dict:
    return _single_indexed(lambda i: search(dataset.queries[i]).tolist(), dataset, seconds)


def _single_indexed(search_index, dataset: Dataset, seconds: float) -> dict:
    """One query at a time, cycling through the queries for `seconds` (at least one pass)."""
    found: dict[int, list[int]] = {}
    count = 0
    started_s = time.perf_counter()
    while count < len(dataset.queries) or time.perf_counter() - started_s < seconds:
        index = count % len(dataset.queries)
        ids = search_index(index)
        if index not in found:
            found[index] = [int(i) for i in ids]
        count += 1
        if time.perf_counter() - started_s > seconds and count >= len(dataset.queries):
            break
    took_s = time.perf_counter() - started_s
    return {"qps": round(count / took_s, 1), "recall": _round(recall_at_k(found, dataset.truth))}


def _timed(search_index, truth, seconds: float) -> dict:
    """One query at a time for `seconds` and at least SWEEP_QUERIES_MIN queries (or every
    query, if fewer); recall over the distinct queries answered."""
    found: dict[int, list[int]] = {}
    count, query_count = 0, len(truth)
    started_s = time.perf_counter()
    while count < min(SWEEP_QUERIES_MIN, query_count) or (
        time.perf_counter() - started_s < seconds
    ):
        index = count % query_count
        ids = search_index(index)
        found.setdefault(index, ids)
        count += 1
    took_s = time.perf_counter() - started_s
    return {"qps": round(count / took_s, 1), "queries": count,
            "recall": _round(recall_at_k(found, truth))}  # fmt: skip


def _batched(search_all, dataset: Dataset, seconds: float) -> dict:
    """`search_all` over the queries in calls of QUERY_BATCH_SIZE, in passes over every
    query until `seconds` have passed (at least one pass)."""
    found: dict[int, list[int]] = {}
    query_count = 0
    started_s = time.perf_counter()
    while query_count == 0 or time.perf_counter() - started_s < seconds:
        for start in range(0, len(dataset.queries), QUERY_BATCH_SIZE):
            labels = search_all(dataset.queries[start : start + QUERY_BATCH_SIZE])
            for offset, row in enumerate(labels):
                found.setdefault(start + offset, [int(x) for x in row])
            query_count += len(labels)
    took_s = time.perf_counter() - started_s
    return {
        "qps": round(query_count / took_s, 1),
        "recall": _round(recall_at_k(found, dataset.truth)),
    }


def _edge_batched(shard, edge, request, dataset: Dataset, ef: int) -> dict:
    found: dict[int, list[int]] = {}
    started_s = time.perf_counter()
    for start in range(0, len(dataset.queries), QUERY_BATCH_SIZE):
        indexes = range(start, min(start + QUERY_BATCH_SIZE, len(dataset.queries)))
        answers = shard.query_batch(edge.QueryBatchRequest([request(i, ef) for i in indexes]))
        for index, points in zip(indexes, answers):
            found[index] = [p.id for p in points]
    took_s = time.perf_counter() - started_s
    return {
        "qps": round(len(dataset.queries) / took_s, 1),
        "recall": _round(recall_at_k(found, dataset.truth)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
