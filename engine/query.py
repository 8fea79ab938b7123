"""Qdrant's universal query: nearest by vector or id, recommend, prefetch trees, fusion, groups.

Owns: the query plan types, the pure composition functions (recommend's average vector and
best-score objective, RRF and DBSF fusion, grouping) and a small executor that runs a plan
against one collection's Reader in a read thread.
Not here: HTTP parsing (server/query.py), nearest-neighbour search itself (reads.py).

Formulas read in Qdrant 1.19's source:
- RRF: `lib/segment/src/common/reciprocal_rank_fusion.rs`, score `1 / ((pos + 1) / weight + k -
  1)` with `DEFAULT_RRF_K = 2`, summed over the prefetches;
- DBSF: `lib/segment/src/common/score_fusion.rs`, each list normalised by mean ± 3 sample
  standard deviations (a one-point list scores 0.5, equal extremes 0.5), then summed;
- recommend: `lib/collection/src/recommendations.rs` (`avg_pos + avg_pos - avg_neg` of the
  examples as given: `VectorInternal::preprocess` leaves dense vectors alone) and
  `lib/segment/src/vector_storage/query/reco_query.rs` (best score: the sigmoid
  `0.5 * (x / (1 + |x|) + 1)` of the best positive similarity when it beats the best negative,
  else minus that of the best negative; sum scores: positives minus negatives), on Qdrant's
  internal similarities (Euclid: minus the squared distance, Manhattan: minus the distance);
- a sparse `using` is searched by `Reader.sparse_search` (dot product over the inverted index,
  only points sharing an index with the query), in a node, a prefetch and under fusion alike;
- examples given as point ids are excluded from the results (`collection_query.rs`
  adds a `must_not has_id` for them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine import filters
from engine.errors import BadRequest, NotFound, NotImplementedYet
from engine.ops import (
    Distance,
    PayloadSelector,
    PointId,
    PointRecord,
    ScoredPoint,
    SearchRequest,
    SparseVector,
    VectorSelector,
)
from engine.reads import Reader, score_matrix

RRF_K_DEFAULT = 2
GROUP_SIZE_DEFAULT = 3
GROUP_OVERFETCH = 4  # candidates fetched per wanted group member
GROUP_FETCH_MIN = 100
Example = Any  # an np.ndarray (float32), a SparseVector, or a PointId to take the vector from
SPARSE_DENSE_MISMATCH = "Conversion between sparse and regular vectors failed"


@dataclass(frozen=True)
class Nearest:
    example: Example


@dataclass(frozen=True)
class Recommend:
    positive: tuple[Example, ...]
    negative: tuple[Example, ...]
    strategy: str = "average_vector"  # or "best_score", "sum_scores"


@dataclass(frozen=True)
class Fusion:
    method: str  # "rrf" or "dbsf"
    k: int = RRF_K_DEFAULT
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class OrderBy:
    key: str
    is_descending: bool = False
    start_from: float | None = None


@dataclass(frozen=True)
class LookupFrom:
    collection: str
    vector_name: str | None


@dataclass(frozen=True)
class QueryNode:
    """One level of a query: its prefetches, its query, and the limits on what it returns."""

    query: Nearest | Recommend | Fusion | OrderBy | None
    using: str
    limit: int
    prefetch: tuple[QueryNode, ...] = ()
    filter: Any = None  # an engine.filters.Filter
    score_threshold: float | None = None
    hnsw_ef: int | None = None
    is_exact: bool = False
    lookup_from: LookupFrom | None = None


@dataclass(frozen=True)
class WithLookup:
    """Groups' `with_lookup`: each group id is read as a point id in `collection`."""

    collection: str
    with_payload: PayloadSelector = field(default_factory=lambda: PayloadSelector(True))
    with_vector: VectorSelector = field(default_factory=VectorSelector)


@dataclass(frozen=True)
class GroupBy:
    key: str
    group_size: int = GROUP_SIZE_DEFAULT
    with_lookup: WithLookup | None = None


@dataclass(frozen=True)
class QueryRequest:
    root: QueryNode
    offset: int = 0
    with_payload: PayloadSelector = field(default_factory=lambda: PayloadSelector(False))
    with_vector: VectorSelector = field(default_factory=VectorSelector)
    group_by: GroupBy | None = None


@dataclass(frozen=True)
class Hit:
    """An intermediate result: a point id, its score and, for order_by, the ordered value."""

    id: PointId
    score: float
    order_value: Any = None


@dataclass(frozen=True)
class Group:
    id: Any  # str or int
    hits: list[ScoredPoint]
    lookup: PointRecord | None = None  # with_lookup: the point whose id is the group id


@dataclass(frozen=True)
class QueryResult:
    points: list[ScoredPoint]
    order_values: list[Any] | None = None  # parallel to points when the query was order_by
    groups: list[Group] | None = None  # with group_by (points is empty then)


# ---- pure functions ---------------------------------------------------------------------


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


def internal_similarity(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Qdrant's internal score (higher is better): dot products, or minus the distance
    (squared for Euclid) for the distances where lower is better."""
    if distance in (Distance.COSINE, Distance.DOT):
        return matrix @ query
    if distance is Distance.EUCLID:
        return -np.sum((matrix - query) ** 2, axis=1, dtype=np.float32)
    return -np.sum(np.abs(matrix - query), axis=1, dtype=np.float32)


def recommend_scorer(
    strategy: str, positive: list[np.ndarray], negative: list[np.ndarray], distance: Distance
) -> Callable[[np.ndarray], np.ndarray]:
    """Score function of `best_score` or `sum_scores` over a matrix of candidate vectors."""

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


def group_hits(
    points: list[tuple[PointId, dict]], key: str, group_size: int, limit: int
) -> list[tuple[Any, list[PointId]]]:
    """Qdrant's groups: points in score order, each joining the group of every string or
    integer value under `key` (arrays give several groups), until the points run out; at
    most `limit` groups, ordered by their best hit, each of at most `group_size` ids."""
    groups: dict[tuple[type, Any], tuple[Any, list[PointId]]] = {}
    for point_id, payload in points:
        for value in group_values(payload, key):
            slot = (type(value), value)
            if slot not in groups and len(groups) == limit:
                continue
            members = groups.setdefault(slot, (value, []))[1]
            if len(members) < group_size:
                members.append(point_id)
    return list(groups.values())


def group_values(payload: dict, key: str) -> list[Any]:
    """Distinct string or integer values at `key` (a dotted path; arrays are flattened)."""
    values: list[Any] = []
    seen: set[tuple[type, Any]] = set()
    for value in _values_at(payload, key.split(".")):
        for item in value if isinstance(value, list) else [value]:
            if type(item) in (str, int) and (type(item), item) not in seen:
                seen.add((type(item), item))
                values.append(item)
    return values


def _values_at(value: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [value]
    if isinstance(value, list):
        return [found for item in value for found in _values_at(item, parts)]
    if isinstance(value, dict) and parts[0] in value:
        return _values_at(value[parts[0]], parts[1:])
    return []


def order_hits(points: list[tuple[PointId, dict]], order_by: OrderBy, limit: int) -> list[Hit]:
    """Qdrant's order_by: one entry per (number or datetime value, point) at the key, sorted
    by value only, from `start_from` on; score 1.0 (local_shard/scroll.rs)."""
    entries: dict[tuple[Any, Any], Hit] = {}
    for point_id, payload in points:
        for value in _values_at(payload, order_by.key.split(".")):
            for item in value if isinstance(value, list) else [value]:
                order_value = order_value_of(item)
                if order_value is not None:
                    entries.setdefault((order_value, point_id), Hit(point_id, 1.0, order_value))
    hits = sorted(entries.values(), key=lambda hit: hit.order_value, reverse=order_by.is_descending)
    start = order_by.start_from
    if start is not None:
        hits = [
            hit
            for hit in hits
            if (hit.order_value <= start if order_by.is_descending else hit.order_value >= start)
        ]
    return hits[:limit]


def order_value_of(value: Any) -> int | float | None:
    """A payload value as an order value: numbers as they are, datetimes as microseconds
    since the epoch (Qdrant's `OrderValue`), anything else None."""
    if type(value) in (int, float):
        return value
    if type(value) is str:
        key = filters.instant_key(value)
        if key is not None:
            seconds, nanos = divmod(key, filters.INSTANT_KEY_SPAN)
            return seconds * 1_000_000 + nanos // 1000
    return None


def excluded_ids(query: Nearest | Recommend | Fusion | OrderBy | None) -> set[Any]:
    """Point ids given as examples: Qdrant leaves them out of the results."""
    if isinstance(query, Nearest):
        examples: tuple[Example, ...] = (query.example,)
    elif isinstance(query, Recommend):
        examples = query.positive + query.negative
    else:
        return set()
    return {example for example in examples if is_point_id(example)}


def is_point_id(example: Example) -> bool:
    return isinstance(example, (int, uuid.UUID))


def merge_filters(outer: Any, inner: Any) -> Any:
    """Both filters (either may be None): a prefetch sees its parent's filter too."""
    if outer is None:
        return inner
    if inner is None:
        return outer
    return filters.Filter(must=(outer, inner))


def push_filters_down(node: QueryNode, parent_filter: Any = None) -> QueryNode:
    """Every prefetch gets its ancestors' filters, as Qdrant's planner does."""
    merged = merge_filters(parent_filter, node.filter)
    children = tuple(push_filters_down(child, merged) for child in node.prefetch)
    return replace(node, filter=merged, prefetch=children)


def missing_vector_error(point_id: PointId) -> NotFound:
    return NotFound(f"No point with id {point_id} found")


# ---- the executor: runs in a read thread ----------------------------------------------------


@dataclass
class _Context:
    reader: Reader  # of the queried collection
    lookups: dict[str, Reader]  # collection name -> Reader, for lookup_from and with_lookup
    # Ids used as examples in the queried collection: Qdrant adds `must_not has_id` for them
    # to the root filter, which reaches every prefetch. Keel drops them from each node's hits
    # instead (fetching that many more), so a plain search stays a graph search.
    excluded: frozenset[Any]


def execute(
    reader: Reader, request: QueryRequest, lookups: dict[str, Reader], collection_name: str
) -> QueryResult:
    """Run `request` against `reader`, in a read thread; `lookups` holds the Readers
    of the collections named by `lookup_from`. Raises BadRequest or NotFound like Qdrant."""
    excluded = frozenset(_referenced_ids(request.root, collection_name))
    context = _Context(reader, lookups, excluded)
    root = push_filters_down(_root_with_group_filter(request))
    if request.group_by is not None:
        return _grouped(context, root, request)
    hits = _run_node(context, root, root.limit + request.offset)
    hits = hits[request.offset : request.offset + root.limit]
    points = reader.scored_points(
        [(hit.id, hit.score) for hit in hits], request.with_payload, request.with_vector
    )
    if root.query is not None and not isinstance(root.query, OrderBy):
        return QueryResult(points)
    # Qdrant answers scroll-shaped results with version 0 (local_shard/scroll.rs).
    points = [replace(point, version=0) for point in points]
    if root.query is None:
        return QueryResult(points)
    values = {hit.id: hit.order_value for hit in hits}
    return QueryResult(points, [values[point.id] for point in points])


def _root_with_group_filter(request: QueryRequest) -> QueryNode:
    """The root; with group_by, only points that have the key are candidates."""
    if request.group_by is None:
        return request.root
    path = filters.PayloadPath.parse(request.group_by.key)
    extra = filters.Filter(must_not=(filters.IsEmptyCondition(path),))
    return replace(request.root, filter=merge_filters(extra, request.root.filter))


def _grouped(context: _Context, root: QueryNode, request: QueryRequest) -> QueryResult:
    """Groups from the best hits: enough candidates to fill `limit` groups of `group_size`
    in all but very skewed data (Qdrant searches again per missing group instead)."""
    assert request.group_by is not None
    wanted = max(root.limit * request.group_by.group_size * GROUP_OVERFETCH, GROUP_FETCH_MIN)
    hits = _run_node(context, root, wanted)
    payloads = dict(context.reader.payload_points(None, [hit.id for hit in hits]))
    scores = [(hit.id, hit.score) for hit in hits if hit.id in payloads]
    groups = group_hits(
        [(point_id, payloads[point_id]) for point_id, _ in scores],
        request.group_by.key,
        request.group_by.group_size,
        root.limit,
    )
    score_of = dict(scores)
    members = [point_id for _, ids in groups for point_id in ids]
    points = context.reader.scored_points(
        [(point_id, score_of[point_id]) for point_id in dict.fromkeys(members)],
        request.with_payload,
        request.with_vector,
    )
    by_id = {point.id: point for point in points}
    result = [Group(group_id, [by_id[i] for i in ids if i in by_id]) for group_id, ids in groups]
    if request.group_by.with_lookup is not None:
        result = _looked_up(context, request.group_by.with_lookup, result)
    return QueryResult([], groups=result)


def _looked_up(context: _Context, lookup: WithLookup, groups: list[Group]) -> list[Group]:
    """Each group with the point of `lookup.collection` whose id is the group id, if any
    (lib/collection/src/lookup/mod.rs: ids that are no point id are skipped)."""
    ids = {group.id: _as_point_id(group.id) for group in groups}
    wanted = [point_id for point_id in ids.values() if point_id is not None]
    reader = context.lookups[lookup.collection]
    records = reader.retrieve(wanted, lookup.with_payload, lookup.with_vector) if wanted else []
    by_id = {record.id: record for record in records}
    return [replace(group, lookup=by_id.get(ids[group.id])) for group in groups]


def _as_point_id(value: Any) -> PointId | None:
    if type(value) is int:
        return value if 0 <= value < 2**64 else None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _referenced_ids(node: QueryNode, collection_name: str) -> set[Any]:
    ids: set[Any] = set()
    if node.lookup_from is None or node.lookup_from.collection == collection_name:
        ids |= excluded_ids(node.query)
    for child in node.prefetch:
        ids |= _referenced_ids(child, collection_name)
    return ids


def _run_node(context: _Context, node: QueryNode, wanted: int) -> list[Hit]:
    """The node's hits, best first, at most `wanted`, without the excluded ids."""
    if not context.excluded:
        return _node_hits(context, node, wanted)
    hits = _node_hits(context, node, wanted + len(context.excluded))
    return [hit for hit in hits if hit.id not in context.excluded][:wanted]


def _node_hits(context: _Context, node: QueryNode, wanted: int) -> list[Hit]:
    _validate_node(node)
    query = node.query
    candidates = None
    if node.prefetch:
        responses = [_run_node(context, child, child.limit) for child in node.prefetch]
        if isinstance(query, Fusion):
            return _fused(query, responses, node.score_threshold)[:wanted]
        candidates = list(dict.fromkeys(hit.id for response in responses for hit in response))
    if isinstance(query, Fusion):
        # planned_query.rs: an OperationError::validation_error, which Qdrant answers 400.
        raise BadRequest("Validation failed: cannot apply Fusion without prefetches")
    if isinstance(query, OrderBy):
        return order_hits(context.reader.payload_points(node.filter, candidates), query, wanted)
    if query is None:
        return _by_id(context.reader.payload_points(node.filter, candidates), wanted)
    return _vector_hits(context, node, query, candidates, wanted)


def _by_id(points: list[tuple[PointId, dict]], wanted: int) -> list[Hit]:
    # No query: points in id order (integers, then UUIDs), score 1.0 as Qdrant's scroll.
    return [Hit(point_id, 1.0) for point_id, _ in points[:wanted]]


def _validate_node(node: QueryNode) -> None:
    # Qdrant's `CollectionQueryRequest::validation`, in its order and words.
    if node.prefetch and node.query is None:
        raise BadRequest(
            "A query is needed to merge the prefetches. "
            "Can't have prefetches without defining a query."
        )
    if node.score_threshold is not None and isinstance(node.query, OrderBy):
        raise BadRequest("Can't use score_threshold with an order_by query.")
    if isinstance(node.query, Fusion) and node.using != "":
        raise BadRequest("Fusion queries cannot be combined with the 'using' field.")


def _fused(query: Fusion, responses: list[list[Hit]], threshold: float | None) -> list[Hit]:
    fused = rrf(responses, query.k, query.weights) if query.method == "rrf" else dbsf(responses)
    if threshold is None:
        return fused
    # Fused scores pass at or above the threshold (local_shard/query.rs `fusion_rescore`),
    # unlike vector scores, which must beat it.
    return [hit for hit in fused if hit.score >= threshold]


def _vector_hits(
    context: _Context,
    node: QueryNode,
    query: Nearest | Recommend,
    candidates: list[PointId] | None,
    wanted: int,
) -> list[Hit]:
    reader = context.reader
    if node.using in reader.config.sparse_vectors:
        return _sparse_hits(context, node, query, candidates, wanted)
    vector_config = reader.config.vectors.get(node.using)
    if vector_config is None:
        raise BadRequest(f"Not existing vector name error: {node.using}")
    examples = [query.example] if isinstance(query, Nearest) else [*query.positive, *query.negative]
    if any(isinstance(example, SparseVector) for example in examples):
        raise BadRequest(SPARSE_DENSE_MISMATCH)
    distance = vector_config.distance
    examples = _examples(context, node, query)
    _check_dimensions(examples, vector_config.size)
    if isinstance(query, Recommend) and query.strategy != "average_vector":
        positive, negative = examples[: len(query.positive)], examples[len(query.positive) :]
        score = recommend_scorer(query.strategy, positive, negative, distance)
        pairs = reader.score_points(node.using, score, True, node.filter, candidates, wanted)
        return _thresholded(pairs, node.score_threshold, True)
    if isinstance(query, Recommend):
        vector = average_vector(examples[: len(query.positive)], examples[len(query.positive) :])
    else:
        vector = examples[0]
    if candidates is None:
        return _searched(reader, node, vector, wanted)
    if distance is Distance.COSINE:
        vector = _unit(vector)
    score = _nearest_scorer(vector, distance)
    is_higher_better = distance.is_higher_better
    pairs = reader.score_points(
        node.using, score, is_higher_better, node.filter, candidates, wanted
    )
    return _thresholded(pairs, node.score_threshold, is_higher_better)


def _sparse_hits(
    context: _Context,
    node: QueryNode,
    query: Nearest | Recommend,
    candidates: list[PointId] | None,
    wanted: int,
) -> list[Hit]:
    """A nearest query on a sparse vector name: dot product through the inverted index."""
    if isinstance(query, Recommend):
        raise NotImplementedYet("recommend on sparse vectors is not implemented yet")
    example = query.example
    if is_point_id(example):
        if node.lookup_from is not None:
            raise NotImplementedYet("lookup_from with sparse vectors is not implemented yet")
        found = context.reader.sparse_vectors_of([example], node.using)
        if example not in found:
            raise NotFound(f"No point with id {example} found")
        example = found[example]
        if example is None:
            raise NotFound(f'Vector with name "{node.using}" for point not found')
    if not isinstance(example, SparseVector):
        raise BadRequest(SPARSE_DENSE_MISMATCH)
    pairs = context.reader.sparse_search(node.using, example, node.filter, candidates, wanted)
    return _thresholded(pairs, node.score_threshold, True)


def _searched(reader: Reader, node: QueryNode, vector: np.ndarray, wanted: int) -> list[Hit]:
    request = SearchRequest(
        vector_name=node.using,
        vector=vector.astype(np.float32),
        limit=wanted,
        score_threshold=node.score_threshold,
        hnsw_ef=node.hnsw_ef,
        is_exact=node.is_exact,
        with_payload=PayloadSelector(False),
        filter=node.filter,
    )
    return [Hit(point.id, point.score) for point in reader.search(request)]


def _nearest_scorer(vector: np.ndarray, distance: Distance) -> Callable[[np.ndarray], np.ndarray]:
    return lambda matrix: score_matrix(matrix, vector, distance)


def _thresholded(
    pairs: list[tuple[PointId, float]], threshold: float | None, is_higher_better: bool
) -> list[Hit]:
    # Qdrant's comparison is strict both ways (Distance::check_threshold).
    return [
        Hit(point_id, score)
        for point_id, score in pairs
        if threshold is None or (score > threshold if is_higher_better else score < threshold)
    ]


def _examples(context: _Context, node: QueryNode, query: Nearest | Recommend) -> list[np.ndarray]:
    """The query's examples as vectors (positives first), ids resolved, preprocessed as Qdrant
    does: unit length for a Cosine vector."""
    examples = [query.example] if isinstance(query, Nearest) else [*query.positive, *query.negative]
    ids = [example for example in examples if is_point_id(example)]
    found: dict[PointId, np.ndarray | None] = {}
    if ids:
        found = _lookup_reader(context, node).example_vectors(ids, _lookup_vector_name(node))
    distance = context.reader.config.vectors[node.using].distance
    vectors = []
    for example in examples:
        if is_point_id(example):
            if example not in found:
                raise NotFound(f"No point with id {example} found")
            vector = found[example]
            if vector is None:
                raise NotFound(
                    f'Vector with name "{_lookup_vector_name(node)}" for point not found'
                )
        else:
            vector = np.asarray(example, dtype=np.float32)
        vectors.append(vector)
    # Qdrant's `VectorInternal::preprocess` leaves dense vectors alone: average_vector mixes
    # raw and stored (unit) vectors as given; the metric normalises whatever is scored.
    is_scored_directly = isinstance(query, Recommend) and query.strategy != "average_vector"
    if distance is Distance.COSINE and is_scored_directly:
        vectors = [_unit(vector) for vector in vectors]
    return vectors


def _lookup_reader(context: _Context, node: QueryNode) -> Reader:
    if node.lookup_from is None:
        return context.reader
    return context.lookups[node.lookup_from.collection]


def _lookup_vector_name(node: QueryNode) -> str:
    # Qdrant: the lookup's `vector`, else the query's `using` (collection_query.rs).
    if node.lookup_from is not None and node.lookup_from.vector_name is not None:
        return node.lookup_from.vector_name
    return node.using


def _check_dimensions(vectors: list[np.ndarray], size: int) -> None:
    for vector in vectors:
        if vector.shape != (size,):
            raise BadRequest(f"Vector dimension error: expected dim: {size}, got {len(vector)}")
        if not np.isfinite(vector).all():
            raise BadRequest("query vector contains a number that is not finite as a float32")


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0 or abs(norm - 1.0) < 1e-6:
        return vector.astype(np.float32)
    return (vector / norm).astype(np.float32)


def lookup_collections(node: QueryNode) -> set[str]:
    """Names of the collections the query's `lookup_from`s read."""
    names = {node.lookup_from.collection} if node.lookup_from is not None else set()
    for child in node.prefetch:
        names |= lookup_collections(child)
    return names


def with_lookup_collection(request: QueryRequest) -> str | None:
    """The collection groups' `with_lookup` reads, if any."""
    if request.group_by is None or request.group_by.with_lookup is None:
        return None
    return request.group_by.with_lookup.collection
