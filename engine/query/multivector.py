"""MaxSim: how a multivector (late interaction, ColBERT-style) name is scored, exactly.

Owns: the query matrix a nearest query gives a multivector name (a matrix, or a plain vector
as a one-row matrix, as Qdrant's `MultiDenseVectorInternal::try_from`), the MaxSim score of
stored matrices against it, and the score Qdrant reports.
Not here: which points are scored (engine/query/universal_reads.py `score_points`: every point
having the vector and matching the filter, or only a prefetch's candidates), the dispatch
(engine/query/universal.py `_multivector_hits`).

Qdrant 1.19 (`lib/segment/src/vector_storage/query_scorer/mod.rs` `score_max_similarity`):
for each query row, the best `Metric::similarity` against the point's rows, summed. The
similarity is the dot product for Dot and Cosine (rows unit length, the query's too: the
metric's `preprocess`), minus the squared L2 distance for Euclid and minus the L1 distance for
Manhattan; higher is better for every distance. A nearest query's score is then
post-processed as a plain one (`local_shard/search.rs`): Euclid reports sqrt(|sum|),
Manhattan |sum|, so a lower reported score is better there, and `score_threshold` compares
the reported score (Distance::check_threshold). With a `datatype`, the query's rows are
preprocessed for it and rounded to it as stored rows are (`multi_metric_query_scorer.rs`), and
a uint8 Cosine vector's rows are compared by true cosine: `query_matrix` makes the query's
rows unit length, the caller the stored ones (engine/vectors/scores.py `on_scoring_rows`).

Cost: no graph (hnswlib has no MaxSim), so a search reads every candidate matrix from LMDB
and does query_rows x point_rows x dim multiply-adds per point.
"""

from __future__ import annotations

import numpy as np

from engine.errors import BadRequest
from engine.ops import Distance, VectorConfig
from engine.vectors.scores import (
    SCALAR_DIMS_MAX,
    as_datatype,
    is_raw_cosine,
    normalize_rows,
    summed_terms,
)

# Qdrant's MAX_MULTIVECTOR_FLATTENED_LEN (release build): numbers in one matrix, exclusive.
MULTIVECTOR_FLATTENED_LEN_MAX = 1024 * 1024


def query_matrix(example: np.ndarray, config: VectorConfig) -> np.ndarray:
    """The query as a float32 matrix of `config.size` columns, preprocessed as Qdrant does
    (unit rows for Cosine, then rounded to the vector's datatype: engine/vectors/scores.py
    `query_form` row by row); BadRequest for a wrong size or a non-finite number."""
    matrix = np.asarray(example, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)  # a plain vector: a matrix of one row
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] != config.size:
        got = matrix.shape[-1] if matrix.ndim == 2 and matrix.shape[0] else 0
        raise BadRequest(f"Vector dimension error: expected dim: {config.size}, got {got}")
    if not np.isfinite(matrix).all():
        raise BadRequest("query vector contains a number that is not finite as a float32")
    if config.distance is Distance.COSINE and not is_raw_cosine(config):
        matrix = normalize_rows(matrix)
    if config.datatype is not None:
        matrix = as_datatype(matrix, config.datatype)
    if is_raw_cosine(config):
        matrix = normalize_rows(matrix)  # stored rows are scored unit length: `scoring_rows`
    return matrix


def average(positive: list[np.ndarray], negative: list[np.ndarray]) -> np.ndarray:
    """Recommend's `average_vector` query on a multivector, as Qdrant's
    `avg_vector_for_recommendation` (recommendations.rs): matrices are not averaged but
    concatenated, the negatives' rows negated; plain vectors (all of one side) are averaged
    as usual and searched as one row. Examples are as given (stored ones unit length)."""
    positive_kind, negative_kind = _kind(positive), _kind(negative)
    if positive_kind is None:
        raise BadRequest("Positive vectors should not be empty with `average` strategy")
    average_positive = _average(positive, positive_kind)
    if negative_kind is None:
        return average_positive
    if negative_kind != positive_kind:
        raise BadRequest(
            "Positive and negative vectors should be of the same type, either all dense or all "
            "sparse or all multi"
        )
    average_negative = _average(negative, negative_kind)
    if positive_kind == "multi":
        return np.concatenate([average_positive, -average_negative]).astype(np.float32)
    return (average_positive + average_positive - average_negative).astype(np.float32)


def maxsim_scores(query: np.ndarray, matrices: list[np.ndarray], distance: Distance) -> np.ndarray:
    """MaxSim of each stored matrix against `query` (preprocessed), higher better for every
    distance: one similarity matrix for all the points' rows, then a max per point's rows."""
    assert query.ndim == 2, query.shape
    if not matrices:
        return np.empty(0, dtype=np.float32)
    counts = np.fromiter((len(matrix) for matrix in matrices), dtype=np.int64)
    assert (counts > 0).all(), "a stored multivector has no rows"
    rows = np.concatenate(matrices).astype(np.float32, copy=False)
    similarity = _similarity(query, rows, distance)  # query rows x all stored rows
    starts = np.zeros(len(counts), dtype=np.int64)
    starts[1:] = np.cumsum(counts)[:-1]
    best = np.maximum.reduceat(similarity, starts, axis=1)  # query rows x points
    return best.sum(axis=0, dtype=np.float32)


def reported(scores: np.ndarray, distance: Distance) -> np.ndarray:
    """The score Qdrant reports for a nearest query (Distance::postprocess_score)."""
    if distance is Distance.EUCLID:
        return np.sqrt(np.abs(scores))
    if distance is Distance.MANHATTAN:
        return np.abs(scores)
    return scores


def check_stored_matrix(matrix: np.ndarray, size: int, name: str, is_unnamed: bool) -> None:
    """A matrix to store under a multivector name: rows of `size`, finite, not too big."""
    suffix = "" if is_unnamed else f" for vector '{name}'"
    if matrix.ndim != 2 or matrix.shape[1] != size:
        got = matrix.shape[-1] if matrix.ndim else 0
        raise BadRequest(f"Vector dimension error: expected dim: {size}, got {got}{suffix}")
    if matrix.shape[0] == 0:
        raise BadRequest(f"Vector dimension error: expected dim: {size}, got 0{suffix}")
    if matrix.size >= MULTIVECTOR_FLATTENED_LEN_MAX:
        raise BadRequest(
            f"Total size of all vectors ({matrix.size}) must be less than "
            f"{MULTIVECTOR_FLATTENED_LEN_MAX}"
        )
    if not np.isfinite(matrix).all():
        raise BadRequest("vector contains a non-finite number (NaN or infinity)")


def _kind(examples: list[np.ndarray]) -> str | None:
    kinds = {"multi" if np.ndim(example) == 2 else "dense" for example in examples}
    if len(kinds) > 1:
        raise BadRequest("Can't average vectors with different types")
    return kinds.pop() if kinds else None


def _average(examples: list[np.ndarray], kind: str) -> np.ndarray:
    arrays = [np.asarray(example, dtype=np.float32) for example in examples]
    if kind == "multi":
        return np.concatenate(arrays)
    return np.mean(np.stack(arrays), axis=0, dtype=np.float32)


def _similarity(query: np.ndarray, rows: np.ndarray, distance: Distance) -> np.ndarray:
    if 0 < rows.shape[-1] <= SCALAR_DIMS_MAX:  # Qdrant's scalar loop, to the bit
        summed = summed_terms(rows[None, :, :], query[:, None, :], distance)
        return summed if distance.is_higher_better else -summed
    if distance in (Distance.COSINE, Distance.DOT):
        return query @ rows.T
    if distance is Distance.EUCLID:
        # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r; clipped at 0 against rounding.
        squared = (
            np.sum(query * query, axis=1)[:, None]
            + np.sum(rows * rows, axis=1)[None, :]
            - 2.0 * (query @ rows.T)
        )
        return -np.maximum(squared, 0.0).astype(np.float32)
    # Manhattan: query row by query row, to bound the temporary at rows x dim.
    return -np.stack([np.abs(rows - row).sum(axis=1, dtype=np.float32) for row in query])
