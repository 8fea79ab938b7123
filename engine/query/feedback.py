"""Relevance feedback queries (Qdrant 1.18+): a target vector corrected by scored examples.

Owns: the `naive` strategy's scoring of candidate vectors, as Qdrant's
`lib/segment/src/vector_storage/query/feedback_query.rs` defines it:

    score = a * sim(target) + sum over pairs (confidence ^ b * c) * (sim(positive) - sim(negative))

where the pairs are every ordered pair of feedback examples (itertools' `permutations(2)`
order) whose feedback scores differ by more than 0 (confidence = the difference), and sim is
Qdrant's internal similarity (engine/query/scores.py `internal_similarity`). Everything is
f32, summed in that order. The examples' ids are left out of the results (as every example).
Not here: parsing (server/wire/query.py), resolving ids to vectors and running the scan
(engine/query/universal.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.ops import Distance
from engine.query.scores import internal_similarity


@dataclass(frozen=True)
class RelevanceFeedback:
    """`{"relevance_feedback": {"target", "feedback": [{"example", "score"}], "strategy"}}`
    with the naive strategy's coefficients (f32 values, widened)."""

    target: Any  # an Example (engine/query/plan.py): a vector, a SparseVector or a point id
    feedback: tuple[tuple[Any, float], ...]  # (example, its feedback score)
    a: float
    b: float
    c: float


def feedback_scorer(
    target: Any,
    feedback: list[tuple[Any, float]],
    coefficients: tuple[float, float, float],
    distance: Distance,
) -> Callable[[Any], np.ndarray]:
    """Score function over candidate vectors (a matrix, or a list of SparseVectors) for
    resolved, preprocessed examples."""
    a, b, c = (np.float32(value) for value in coefficients)
    pairs = _context_pairs(feedback, b, c)

    def score(matrix: Any) -> np.ndarray:
        total = a * internal_similarity(matrix, target, distance).astype(np.float32)
        for positive, negative, partial in pairs:
            delta = internal_similarity(matrix, positive, distance).astype(
                np.float32
            ) - internal_similarity(matrix, negative, distance).astype(np.float32)
            total = total + partial * delta
        return np.asarray(total, dtype=np.float32)

    return score


def _context_pairs(
    feedback: list[tuple[Any, float]], b: np.float32, c: np.float32
) -> list[tuple[Any, Any, np.float32]]:
    """(positive, negative, confidence ^ b * c) for each ordered pair more confident than 0."""
    pairs = []
    if len(feedback) < 2:
        return pairs
    with np.errstate(all="ignore"):
        for i, (positive, positive_score) in enumerate(feedback):
            for j, (negative, negative_score) in enumerate(feedback):
                if i == j:
                    continue
                confidence = np.float32(positive_score) - np.float32(negative_score)
                if confidence <= 0.0:  # as Rust's `<= margin`: a NaN would pass
                    continue
                pairs.append((positive, negative, np.float32(confidence**b) * c))
    return pairs
