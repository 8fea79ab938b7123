"""Qdrant's distance matrix (`/points/search/matrix/pairs` and `/offsets`).

Owns: drawing the sample and finding each sampled point's nearest neighbours among the
other sampled points.
Not here: the two answer shapes (server/api/matrix.py), search itself (engine/query/reads.py).

Qdrant 1.19 (`lib/collection/src/collection/distance_matrix.rs`): `sample` points having the
vector `using` and matching `filter` are drawn at random (fewer than two: an empty answer);
they are sorted by id; for each, the `limit` nearest of the other sampled points are found
with the point's own vector, scored as a search scores them. Keel scores them exactly (the
sample is small); for a sparse vector through the inverted index, like a sparse search.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from engine.errors import missing_vector_name
from engine.filters import conditions as filters
from engine.ops import PointId, point_key
from engine.query import multivector
from engine.query.plan import merge_filters
from engine.query.universal_reads import QueryReader
from engine.vectors.scores import on_scoring_rows, query_form, score_rows


@dataclass(frozen=True)
class DistanceMatrix:
    ids: list[PointId]  # the sample, in id order
    neighbours: list[list[tuple[PointId, float]]]  # per sampled point: (id, score), best first


def distance_matrix(
    reader: QueryReader, filter_: filters.Filter | None, sample_count: int, limit: int, using: str
) -> DistanceMatrix:
    """Run in a read thread (it scans and scores)."""
    is_sparse = using in reader.config.sparse_vectors
    vector_config = reader.config.vectors.get(using)
    if vector_config is None and not is_sparse:
        raise missing_vector_name(using)
    having = merge_filters(filter_, filters.Filter(must=(filters.HasVectorCondition(using),)))
    candidates = [point_id for point_id, _ in reader.payload_points(having, None)]
    sample = random.sample(candidates, min(sample_count, len(candidates)))
    if len(sample) < 2:
        return DistanceMatrix([], [])
    sample.sort(key=point_key)  # Keel's id order: integers, then UUIDs
    if is_sparse:
        vectors = reader.sparse_vectors_of(sample, using)
    else:
        vectors = reader.example_vectors(sample, using)
    # A point may lose its vector between the draw and this read (a concurrent write).
    sample = [point_id for point_id in sample if vectors.get(point_id) is not None]
    if len(sample) < 2:
        return DistanceMatrix([], [])
    neighbours = []
    for point_id in sample:
        vector = vectors[point_id]
        others = [other for other in sample if other != point_id]
        if is_sparse:
            # A sparse search: only points sharing an index with this one score.
            neighbours.append(reader.sparse_search(using, vector, None, others, limit))
            continue
        assert vector_config is not None
        if vector_config.is_multivector:
            neighbours.append(_maxsim_neighbours(reader, using, vector, others, limit))
            continue
        # The point's vector is a query like any other (Qdrant searches with it).
        query = query_form(vector, vector_config)
        pairs = reader.score_points(
            using,
            lambda matrix, query=query: score_rows(matrix, query, vector_config),
            vector_config.distance.is_higher_better,
            None,
            others,
            limit,
        )
        neighbours.append(pairs)
    return DistanceMatrix(sample, neighbours)


def _maxsim_neighbours(
    reader: QueryReader, using: str, matrix: np.ndarray, others: list[PointId], limit: int
) -> list[tuple[PointId, float]]:
    """A sampled point's nearest among `others` by MaxSim, its stored matrix the query
    (preprocessed as any query), scores as a nearest query reports them."""
    vector_config = reader.config.vectors[using]
    distance = vector_config.distance
    query = multivector.query_matrix(matrix, vector_config)
    pairs = reader.score_points(
        using,
        on_scoring_rows(
            lambda matrices: multivector.maxsim_scores(query, matrices, distance), vector_config
        ),
        True,
        None,
        others,
        limit,
    )
    scores = multivector.reported(np.array([score for _, score in pairs]), distance)
    return [(point_id, float(score)) for (point_id, _), score in zip(pairs, scores)]
