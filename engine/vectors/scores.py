"""Exact scores of vectors as Qdrant reports them, and the order they sort in.

Owns: a matrix of candidates scored against one query (similarity for Cosine and Dot,
distance for Euclid and Manhattan), unit-length rows for Cosine, a vector's `datatype`
(values rounded as Qdrant's storage type rounds them, the query included), the best-first
order and the score threshold test (strict, both ways, as Qdrant's Distance::check_threshold),
and the IDF weight of sparse indices.
Not here: which candidates are scored (engine/query/reads.py), the universal query's custom scores
(engine/query/scores.py).

Datatypes, as Qdrant 1.19 scores them (`lib/segment/src/vector_storage/query_scorer/
metric_query_scorer.rs`, `lib/segment/src/data_types/primitive.rs`, `lib/segment/src/spaces/
metric_f16/`, `metric_uint/`): the query goes through the metric's `preprocess` for the
storage type, then is converted to that type like a stored vector, and the two are compared
in it. For float16 that is: Cosine vectors unit length, then rounded to halves; the
similarity is the float32 sum of the products. A uint8 Cosine vector is neither stored nor
queried unit length (`metric_uint/simple_cosine.rs` `preprocess` keeps it): both are cut to
bytes as given and scored by true cosine, `dot / sqrt(|a|^2 |b|^2)`, 0 when either is zero.
Keel keeps such a vector as Qdrant does (bytes, as float32) and scores it as the dot product
of unit rows (`scoring_rows`) and a unit query (`query_form`): the same cosine, rounded once
more; its graph holds the rows unit length (engine/vectors/hnsw.py). A store written before
(issue 17) holds such a vector unit length and unrounded: it reads back as written and scores
by the same formula (a cosine does not see a row's scale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.ops import Distance, VectorConfig

FLOAT16_MAX = float(np.finfo(np.float16).max)
# Qdrant scores and normalises vectors of fewer dimensions than this with a plain loop, each
# term in f32 and added left to right in f32 (lib/segment/src/spaces/simple.rs,
# MIN_DIM_SIZE_SIMD; longer ones with SIMD, in an order of its own). Keel does the same below
# it, so the scores and stored vectors of small vectors (Qdrant's docs, its own tests) are
# Qdrant's to the bit; above it numpy's order may differ from Qdrant's SIMD in the last bit.
SCALAR_DIMS_MAX = 15
F32_EPSILON = np.float32(np.finfo(np.float32).eps)


def _summed_in_order(terms: np.ndarray) -> np.ndarray:
    """The sum of each row of `terms` (float32), left to right in float32, from -0.0 as
    Rust's f32 `Sum` starts; a column at a time, so rows are summed together."""
    total = np.full(terms.shape[:-1], -0.0, dtype=np.float32)
    for column in range(terms.shape[-1]):
        total += terms[..., column]
    return total


def _normalized_in_order(matrix: np.ndarray) -> np.ndarray:
    """Qdrant's `cosine_preprocess` of short rows: the squared length summed in order, rows
    whose squared length is under f32 epsilon or within 1e-6 of 1 kept as they are."""
    squared = _summed_in_order(matrix * matrix)
    is_kept = (squared < F32_EPSILON) | (np.abs(squared - np.float32(1.0)) <= np.float32(1e-6))
    lengths = np.sqrt(np.where(is_kept, np.float32(1.0), squared))
    return np.where(is_kept[:, None], matrix, matrix / lengths[:, None]).astype(np.float32)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit-length rows, as Qdrant stores Cosine vectors; zero rows stay zero."""
    matrix = matrix.astype(np.float32, copy=False)
    if matrix.ndim == 2 and 0 < matrix.shape[1] <= SCALAR_DIMS_MAX:
        return _normalized_in_order(matrix)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    # Qdrant leaves zero vectors and ones already within 1e-6 of unit length as they are.
    is_kept = (norms == 0) | (np.abs(norms - 1.0) < 1e-6)
    return np.where(is_kept, matrix, matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


def unit_vector(vector: np.ndarray) -> np.ndarray:
    """normalize_rows of one vector, with the same float32 arithmetic (bit for bit), without
    its matrix work: 2.5 us against 10, measured, on every Cosine search."""
    vector = vector.astype(np.float32, copy=False)
    if 0 < len(vector) <= SCALAR_DIMS_MAX:
        return _normalized_in_order(vector[None, :])[0]
    norm = np.sqrt(np.add.reduce(vector * vector))  # as linalg.norm(axis=1) sums
    if norm == 0 or abs(norm - 1.0) < 1e-6:
        return vector
    return (vector / norm).astype(np.float32)


def as_datatype(matrix: np.ndarray, datatype: str | None) -> np.ndarray:
    """Float32 values rounded as Qdrant's storage of `datatype` rounds them: float16 to the
    nearest half (`f16::from_f32`; clipped to the largest finite half first, where Qdrant
    would hold infinity), uint8 toward zero and into [0, 255] (Rust's saturating `x as u8`);
    float32 (None) as they are."""
    if datatype == "float16":
        clipped = np.clip(matrix, -FLOAT16_MAX, FLOAT16_MAX)
        return clipped.astype(np.float16).astype(np.float32)
    if datatype == "uint8":
        return np.clip(np.trunc(matrix), 0, 255).astype(np.float32)
    return matrix


def is_raw_cosine(config: VectorConfig) -> bool:
    """A uint8 Cosine vector: stored as given (in bytes), never unit length, as in Qdrant."""
    return config.distance is Distance.COSINE and config.datatype == "uint8"


def query_form(vector: np.ndarray, config: VectorConfig) -> np.ndarray:
    """A query vector (a float32 copy) as Keel scores it against `config`'s stored rows:
    Qdrant's query (unit length for Cosine, then in the storage type: module docstring),
    made unit length afterwards for a uint8 Cosine vector (`scoring_rows`)."""
    vector = np.array(vector, dtype=np.float32)
    if config.distance is Distance.COSINE and config.datatype != "uint8":
        vector = unit_vector(vector)
    if config.datatype is not None:
        vector = as_datatype(vector, config.datatype)
    if is_raw_cosine(config):
        vector = unit_vector(vector)
    return vector


def scoring_rows(matrix: np.ndarray, config: VectorConfig) -> np.ndarray:
    """Stored rows as a query from `query_form` is scored against: unit length for a uint8
    Cosine vector (so the dot product is Qdrant's true cosine; a zero row scores 0 as in
    Qdrant), as they are otherwise."""
    return normalize_rows(matrix) if is_raw_cosine(config) else matrix


def on_scoring_rows(
    score: Callable[[Any], np.ndarray], config: VectorConfig
) -> Callable[[Any], np.ndarray]:
    """`score` of stored rows (a matrix, or a multivector's list of matrices), given them as
    `scoring_rows` makes them."""
    if not is_raw_cosine(config):
        return score

    def scored(stored: Any) -> np.ndarray:
        if isinstance(stored, np.ndarray):
            return score(normalize_rows(stored))
        return score([normalize_rows(matrix) for matrix in stored])

    return scored


def score_rows(matrix: np.ndarray, query: np.ndarray, config: VectorConfig) -> np.ndarray:
    """Qdrant's score of each stored row of `config`'s vector against a `query_form` query."""
    return score_matrix(scoring_rows(matrix, config), query, config.distance)


def score_matrix(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Qdrant's score of each row against query: similarity or distance."""
    if 0 < matrix.shape[-1] <= SCALAR_DIMS_MAX:
        return reported_distance(summed_terms(matrix, query, distance), distance)
    if distance in (Distance.COSINE, Distance.DOT):
        return matrix @ query
    if distance is Distance.EUCLID:
        return np.sqrt(np.sum((matrix - query) ** 2, axis=1, dtype=np.float32))
    return np.sum(np.abs(matrix - query), axis=1, dtype=np.float32)


def summed_terms(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Qdrant's scalar similarity of short vectors (`dot_similarity`, `euclid_similarity`,
    `manhattan_similarity`): the terms in f32, summed in order; for Euclid and Manhattan
    the sum of squares or of absolute differences (Qdrant negates it, then reports its root
    or itself). `matrix` and `query` broadcast: rows x dims against dims, or more axes."""
    matrix = matrix.astype(np.float32, copy=False)
    query = query.astype(np.float32, copy=False)
    if distance in (Distance.COSINE, Distance.DOT):
        return _summed_in_order(matrix * query)
    difference = matrix - query
    if distance is Distance.EUCLID:
        return _summed_in_order(difference * difference)
    return _summed_in_order(np.abs(difference))


def reported_distance(summed: np.ndarray, distance: Distance) -> np.ndarray:
    """The score Qdrant reports from `summed_terms`: Euclid's square root."""
    return np.sqrt(summed) if distance is Distance.EUCLID else summed


def best_order(scores: np.ndarray, distance: Distance, count: int) -> np.ndarray:
    keys = -scores if distance.is_higher_better else scores
    if count < len(keys):
        part = np.argpartition(keys, count - 1)[:count]
        return part[np.argsort(keys[part], kind="stable")]
    return np.argsort(keys, kind="stable")


def passes_threshold_each(scores: np.ndarray, threshold: float, distance: Distance) -> np.ndarray:
    """Whether each score passes `threshold` (an f32 widened, as parsed), as a bool array:
    strictly, both ways, as Qdrant's Distance::check_threshold. The scores are widened to
    float64 first: numpy would otherwise compare a float32 array in float32, rounding."""
    wide = scores.astype(np.float64)
    return wide > threshold if distance.is_higher_better else wide < threshold


def idf(frequencies: np.ndarray, documents_count: int) -> np.ndarray:
    """Qdrant's inverse document frequency of each index: ln((n - df + 0.5) / (df + 0.5) + 1)."""
    return np.log((documents_count - frequencies + 0.5) / (frequencies + 0.5) + 1.0)
