"""How the universal query scores points: fusion, recommend strategies, discovery, context.

Owns: `Hit` (a point id and its score in an intermediate result) and the pure scoring
functions engine/query/universal.py composes — RRF and DBSF fusion of ranked lists, recommend's average
vector and its best-score / sum-scores objectives, the discovery and context scores — over
Qdrant's internal similarities (Cosine and Dot: the dot product of unit or raw vectors;
Euclid: minus the squared distance; Manhattan: minus the distance).
Not here: running a plan (engine/query/universal.py), nearest-neighbour search (engine/query/reads.py).

Formulas read in Qdrant 1.19's source:
- RRF: `lib/segment/src/common/reciprocal_rank_fusion.rs`, score `1 / ((pos + 1) / weight + k -
  1)` with `DEFAULT_RRF_K = 2`, summed over the prefetches;
- DBSF: `lib/segment/src/common/score_fusion.rs`, each list normalised by mean ± 3 sample
  standard deviations (a one-point list scores 0.5, equal extremes 0.5), then summed;
- recommend: `lib/collection/src/recommendations.rs` (`avg_pos + avg_pos - avg_neg` of the
  examples as given: `VectorInternal::preprocess` leaves dense vectors alone) and
  `lib/segment/src/vector_storage/query/reco_query.rs` (best score: the sigmoid
  `0.5 * (x / (1 + |x|) + 1)` of the best positive similarity when it beats the best negative,
  else minus that of the best negative; sum scores: positives minus negatives);
- MMR: `lib/shard/src/query/mmr/mod.rs` (relevance and pairwise similarities are the raw
  similarities above; the hits keep their search scores, in MMR order);
- discovery: `discover_query.rs` (per pair +1 / -1 / 0 by which side is more similar, plus
  the scaled sigmoid of the similarity to the target); context: `context_query.rs` (per
  pair `fast_sigmoid(min(positive - negative - f32::EPSILON, 0))`, summed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import BadRequest
from engine.ops import Distance, PointId, SparseVector
from engine.query import multivector
from engine.vectors.scores import SCALAR_DIMS_MAX, summed_terms

F32_EPSILON = float(np.finfo(np.float32).eps)  # Rust f32::EPSILON, the context margin


@dataclass(frozen=True)
class Hit:
    """An intermediate result: a point id, its score and, for order_by, the ordered value."""

    id: PointId
    score: float
    order_value: Any = None


def rrf(responses: list[list[Hit]], k: int, weights: tuple[float, ...] | None) -> list[Hit]:
    """Reciprocal rank fusion; only the order of each list matters."""
    if weights is not None and len(weights) != len(responses):
        raise BadRequest(
            "Number of weights in RRF should match number of pre-fetches: "
            f"got {len(weights)}, expected {len(responses)}"
        )
    scores: dict[Any, float] = {}
    for index, response in enumerate(responses):
        weight = 1.0 if weights is None else weights[index]
        for position, hit in enumerate(response):
            contribution = 0.0 if weight <= 0 else 1.0 / ((position + 1) / weight + k - 1.0)
            scores[hit.id] = scores.get(hit.id, 0.0) + contribution
    return sorted((Hit(i, s) for i, s in scores.items()), key=lambda hit: -hit.score)


def dbsf(responses: list[list[Hit]]) -> list[Hit]:
    """Distribution-based score fusion: normalise each list by mean ± 3σ, then sum."""
    scores: dict[Any, float] = {}
    for response in responses:
        for hit_id, score in _distribution_normalised(response):
            scores[hit_id] = scores.get(hit_id, 0.0) + score
    return sorted((Hit(i, s) for i, s in scores.items()), key=lambda hit: -hit.score)


def _distribution_normalised(response: list[Hit]) -> list[tuple[Any, float]]:
    if len(response) < 2:
        return [(hit.id, 0.5) for hit in response]
    values = np.array([hit.score for hit in response], dtype=np.float64)
    std_dev = float(np.std(values, ddof=1))
    low, high = float(values.mean()) - 3 * std_dev, float(values.mean()) + 3 * std_dev
    if low == high:
        return [(hit.id, 0.5) for hit in response]
    return [(hit.id, (hit.score - low) / (high - low)) for hit in response]


def average_vector(positive: list[np.ndarray], negative: list[np.ndarray]) -> np.ndarray:
    """Recommend's `average_vector` query: `avg_pos + avg_pos - avg_neg` (or `avg_pos`)."""
    if not positive:
        raise BadRequest("Positive vectors should not be empty with `average` strategy")
    average_positive = np.mean(np.stack(positive), axis=0, dtype=np.float32)
    if not negative:
        return average_positive
    average_negative = np.mean(np.stack(negative), axis=0, dtype=np.float32)
    return (average_positive + average_positive - average_negative).astype(np.float32)


def internal_similarity(matrix: Any, query: Any, distance: Distance) -> np.ndarray:
    """Qdrant's internal score (higher is better): dot products, or minus the distance
    (squared for Euclid) for the distances where lower is better. For sparse vectors
    (`matrix` a list of SparseVectors, `query` one) the dot product, 0 without overlap; for
    multivectors (`matrix` a list of matrices, `query` one) MaxSim."""
    if isinstance(query, SparseVector):
        return np.array([sparse_dot(query, vector) for vector in matrix], dtype=np.float32)
    if query.ndim == 2:  # a multivector query: `matrix` is a list of matrices
        return multivector.maxsim_scores(query, matrix, distance)
    if 0 < matrix.shape[-1] <= SCALAR_DIMS_MAX:  # Qdrant's scalar loop, to the bit
        summed = summed_terms(matrix, query, distance)
        return summed if distance.is_higher_better else -summed
    if distance in (Distance.COSINE, Distance.DOT):
        return matrix @ query
    if distance is Distance.EUCLID:
        return -np.sum((matrix - query) ** 2, axis=1, dtype=np.float32)
    return -np.sum(np.abs(matrix - query), axis=1, dtype=np.float32)


def sparse_dot(a: SparseVector, b: SparseVector) -> float:
    """Dot product of two sparse vectors with sorted unique indices; 0.0 without overlap."""
    _, in_a, in_b = np.intersect1d(a.indices, b.indices, assume_unique=True, return_indices=True)
    return float(np.dot(a.values[in_a].astype(np.float64), b.values[in_b]))


def sparse_average(positive: list[SparseVector], negative: list[SparseVector]) -> SparseVector:
    """Recommend's average vector for sparse examples: `avg_pos + avg_pos - avg_neg` index by
    index over the union of indices (Qdrant's `combine_aggregate`; an index a side lacks
    counts 0 there)."""
    if not positive:
        raise BadRequest("Positive vectors should not be empty with `average` strategy")

    def mean(vectors: list[SparseVector]) -> dict[int, float]:
        total: dict[int, float] = {}
        for vector in vectors:
            for index, value in zip(vector.indices.tolist(), vector.values.tolist()):
                total[index] = total.get(index, 0.0) + value
        return {index: value / len(vectors) for index, value in total.items()}

    positive_mean = mean(positive)
    negative_mean = mean(negative) if negative else {}
    indices = sorted(positive_mean.keys() | negative_mean.keys())
    values = [
        2 * positive_mean.get(index, 0.0) - negative_mean.get(index, 0.0) for index in indices
    ]
    return SparseVector(np.asarray(indices, np.uint32), np.asarray(values, np.float32))


def recommend_scorer(
    strategy: str, positive: list[Any], negative: list[Any], distance: Distance
) -> Callable[[Any], np.ndarray]:
    """Score function of `best_score` or `sum_scores` over candidate vectors (a matrix, or
    a list of SparseVectors)."""

    def score(matrix: np.ndarray) -> np.ndarray:
        def similarities(examples: list[np.ndarray]) -> np.ndarray:
            if not examples:
                return np.empty((0, len(matrix)), dtype=np.float32)
            return np.stack([internal_similarity(matrix, e, distance) for e in examples])

        positives, negatives = similarities(positive), similarities(negative)
        if strategy == "sum_scores":
            return positives.sum(axis=0) - negatives.sum(axis=0)
        best_positive = positives.max(axis=0) if len(positive) else np.full(len(matrix), -np.inf)
        best_negative = negatives.max(axis=0) if len(negative) else np.full(len(matrix), -np.inf)
        return np.where(
            best_positive > best_negative,
            _scaled_fast_sigmoid(best_positive),
            -_scaled_fast_sigmoid(best_negative),
        ).astype(np.float32)

    return score


def _scaled_fast_sigmoid(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return 0.5 * (values / (1.0 + np.abs(values)) + 1.0)


def discover_scorer(
    target: Any, pairs: list[tuple[Any, Any]], distance: Distance
) -> Callable[[Any], np.ndarray]:
    """Qdrant's discovery score (`discover_query.rs`): for each pair +1 if the point is more
    similar to its positive, -1 if to its negative (0 if equal), plus the scaled sigmoid of
    the similarity to the target. Without a target, the context score (`context_query.rs`):
    the sum over pairs of fast_sigmoid(min(positive - negative - f32::EPSILON, 0))."""

    def score(matrix: np.ndarray) -> np.ndarray:
        total = np.zeros(len(matrix), dtype=np.float32)
        for positive, negative in pairs:
            positive_similarity = internal_similarity(matrix, positive, distance)
            negative_similarity = internal_similarity(matrix, negative, distance)
            if target is not None:
                total += np.sign(positive_similarity - negative_similarity)
                continue
            loss = np.minimum(positive_similarity - negative_similarity - F32_EPSILON, 0.0)
            total += (loss / (1.0 + np.abs(loss))).astype(np.float32)
        if target is not None:
            total += _scaled_fast_sigmoid(internal_similarity(matrix, target, distance))
        return total.astype(np.float32)

    return score


def mmr_order(
    relevance: np.ndarray, similarity: np.ndarray, lambda_: float, count: int
) -> list[int]:
    """Maximal marginal relevance (Qdrant's `shard/src/query/mmr`): the first pick is the
    most relevant candidate, each next one maximises
    `lambda * relevance - (1 - lambda) * max similarity to those picked`. Ties go as in
    Qdrant: pending candidates are kept in order with swap-remove, and the last maximum wins
    (Rust's max_by_key)."""
    pending = list(range(len(relevance)))
    if not pending or count <= 0:
        return []
    picked = [_swap_remove(pending, _last_argmax(relevance[pending]))]
    closest = similarity[picked[0]].astype(np.float64)  # max similarity to anything picked
    while len(picked) < count and pending:
        scores = lambda_ * relevance[pending] - (1.0 - lambda_) * closest[pending]
        choice = _swap_remove(pending, _last_argmax(scores))
        picked.append(choice)
        closest = np.maximum(closest, similarity[choice])
    return picked


def _last_argmax(values: np.ndarray) -> int:
    return int(len(values) - 1 - np.argmax(values[::-1]))


def _swap_remove(items: list[int], position: int) -> int:
    """Rust's Vec/IndexSet swap_remove: the last element takes the removed one's place."""
    removed = items[position]
    items[position] = items[-1]
    items.pop()
    return removed
