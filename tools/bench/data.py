"""The benchmark's data set: clustered vectors, small payloads, queries and exact answers.

Owns: generating the vectors (float32, unit length, Cosine), the payloads every system
stores, the query vectors, the exact top-10 neighbours computed by numpy in chunks, and the
selectivity sweep's filters with their exact answers. Not here: loading them into any system
(each system's module does that).

Vectors cluster around 256 random centres, the way embeddings do; uniform random vectors in
128 dimensions are a known worst case where HNSW needs a huge ef for any recall.

Payloads carry one integer twice: `sel` (given a payload index by the sweep) and `sel_plain`
(never indexed), 0..999 in a pseudo-random order of the point ids (id * 7919 mod 1000, a
permutation of each block of 1000 ids). A range `sel < t` matches exactly t per mille of the
points, and which points match has nothing to do with where their vectors lie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K = 10
CENTRE_COUNT = 256
NOISE = 0.6  # spread around each centre, as tools/bench_filtered.py used
TRUTH_CHUNK_ROWS = 8_192  # database rows scored per numpy matmul: bounds the score matrix
SEL_VALUES = 1_000  # `sel` takes 0..999: `sel < t` matches t per mille of the points
SEL_STRIDE = 7_919  # a prime, so id * SEL_STRIDE mod 1000 permutes every 1000 ids
INDEXED_FIELD = "sel"
PLAIN_FIELD = "sel_plain"
# The sweep: name -> t in `sel < t`.
SELECTIVITIES = {"0.1%": 1, "1%": 10, "10%": 100, "50%": 500, "90%": 900}


@dataclass(frozen=True)
class Dataset:
    vectors: np.ndarray  # (count, dim) float32, unit rows; point id i is row i
    queries: np.ndarray  # (query_count, dim) float32, unit rows
    truth: np.ndarray  # (query_count, K) int64: exact nearest ids by Cosine

    @property
    def count(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def vectors_bytes(self) -> int:
        return self.vectors.nbytes


def make_dataset(count: int, dim: int, query_count: int, seed: int = 7) -> Dataset:
    """Vectors and queries from the same clusters, and the exact top-K of every query."""
    assert count >= K, count
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRE_COUNT, dim), dtype=np.float32)
    vectors = _clustered(rng, centres, count)
    queries = _clustered(rng, centres, query_count)
    return Dataset(vectors, queries, exact_top_k(vectors, queries, K))


def payload(point_id: int) -> dict:
    """The small payload of one point: the sweep's integer, indexed and plain copies."""
    value = sel_value(point_id)
    return {INDEXED_FIELD: value, PLAIN_FIELD: value}


def sel_value(point_id):
    """`sel` of a point id (an int or a numpy array of them)."""
    return point_id * SEL_STRIDE % SEL_VALUES


def filter_mask(count: int, selectivity: str) -> np.ndarray:
    """Which ids of 0..count-1 match the sweep's filter of that selectivity ("1%", ...)."""
    return sel_value(np.arange(count, dtype=np.int64)) < SELECTIVITIES[selectivity]


def filter_condition(selectivity: str, field_name: str) -> dict:
    """The Qdrant filter (JSON) matching `filter_mask(..., selectivity)` on `field_name`."""
    assert field_name in (INDEXED_FIELD, PLAIN_FIELD), field_name
    return {"must": [{"key": field_name, "range": {"lt": SELECTIVITIES[selectivity]}}]}


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k highest dot products per query (fewer if `vectors` has fewer rows),
    scanning `vectors` in chunks so the score matrix stays at queries x TRUTH_CHUNK_ROWS."""
    k = min(k, len(vectors))
    assert k >= 1, "no vectors to rank"
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), TRUTH_CHUNK_ROWS):
        scores = queries @ vectors[start : start + TRUTH_CHUNK_ROWS].T
        ids = np.arange(start, start + scores.shape[1])
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


def filtered_truth(dataset: Dataset, selectivity: str) -> np.ndarray:
    """Exact top-K per query among the points matching the filter (all of them if fewer)."""
    matching_ids = np.flatnonzero(filter_mask(dataset.count, selectivity))
    local = exact_top_k(dataset.vectors[matching_ids], dataset.queries, K)
    return matching_ids[local]


def recall_at_k(found: dict[int, list[int]], truth: np.ndarray) -> float | None:
    """Mean recall@K over the queries in `found` (query index -> returned ids); a truth of
    fewer than K ids (a filter matching fewer points) is recalled in full by those."""
    if not found:
        return None
    hits = [len(set(ids[:K]) & set(truth[index].tolist())) for index, ids in found.items()]
    return float(np.sum(hits) / (truth.shape[1] * len(found)))


def _clustered(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    noise = rng.standard_normal((count, centres.shape[1]), dtype=np.float32) * NOISE
    rows = centres[rng.integers(0, len(centres), count)] + noise
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
