"""The universal query's plan: what a query asks, as the executor (engine/query/universal.py) runs it.

Owns: the plan types — the query kinds (nearest with optional MMR, recommend, discover,
context, relevance feedback, fusion, order_by, sample, formula), a node with its prefetches,
limits and filter, groups and lookups, the result — and the pure helpers on them: a query's
examples and the ids it excludes, filters pushed down to prefetches, the collections a plan
looks up.
Not here: running a plan (engine/query/universal.py), scoring (engine/query/scores.py), parsing bodies (server/).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import NotFound
from engine.filters import conditions as filters
from engine.ops import PayloadSelector, PointId, PointRecord, ScoredPoint, VectorSelector
from engine.query.feedback import RelevanceFeedback
from engine.query.formula import Formula

RRF_K_DEFAULT = 2
GROUP_SIZE_DEFAULT = 3
Example = Any  # an np.ndarray (float32), a SparseVector, or a PointId to take the vector from


@dataclass(frozen=True)
class Mmr:
    """Re-rank the nearest `candidates_limit` hits for diversity (maximal marginal relevance)."""

    diversity: float = 0.5  # 0: pure relevance, 1: pure diversity (lambda = 1 - diversity)
    candidates_limit: int | None = None  # None: the node's limit


@dataclass(frozen=True)
class Nearest:
    example: Example
    mmr: Mmr | None = None


@dataclass(frozen=True)
class Recommend:
    positive: tuple[Example, ...]
    negative: tuple[Example, ...]
    strategy: str = "average_vector"  # or "best_score", "sum_scores"


@dataclass(frozen=True)
class Discover:
    """Points on the positive side of as many pairs as possible, then nearest the target."""

    target: Example
    pairs: tuple[tuple[Example, Example], ...]  # (positive, negative)


@dataclass(frozen=True)
class Context:
    """Points on the positive side of every pair; no target (the score is 0 inside)."""

    pairs: tuple[tuple[Example, Example], ...]  # (positive, negative)


VectorQuery = Nearest | Recommend | Discover | Context | RelevanceFeedback


@dataclass(frozen=True)
class Fusion:
    method: str  # "rrf" or "dbsf"
    k: int = RRF_K_DEFAULT
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Sample:
    """`{"sample": "random"}`: points matching the filter (or from the prefetches) drawn at
    random, each scored 1.0 as a scroll is."""


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
class IdfParams:
    """A search's `params.idf` (Qdrant 1.19): the points whose statistics weigh a sparse
    query's dimensions under the `idf` modifier: the whole collection (`"global"`, corpus
    None), or those matching the `corpus` filter that have the vector."""

    corpus: filters.Filter | None = None


@dataclass(frozen=True)
class QueryNode:
    """One level of a query: its prefetches, its query, and the limits on what it returns."""

    query: VectorQuery | Fusion | OrderBy | Sample | Formula | None
    using: str
    limit: int
    prefetch: tuple[QueryNode, ...] = ()
    filter: filters.Filter | None = None
    score_threshold: float | None = None
    hnsw_ef: int | None = None
    is_exact: bool = False
    lookup_from: LookupFrom | None = None
    idf: IdfParams | None = None


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


def excluded_ids(query: VectorQuery | Fusion | OrderBy | Sample | Formula | None) -> set[Any]:
    """Point ids given as examples: Qdrant leaves them out of the results."""
    if isinstance(query, Fusion | OrderBy | Sample | Formula) or query is None:
        return set()
    return {example for example in examples_of(query) if is_point_id(example)}


def examples_of(query: VectorQuery) -> list[Example]:
    """Every example of a vector query, in a fixed order: the nearest one; recommend's
    positives then negatives; discover's target then each pair's positive and negative;
    relevance feedback's target then its feedback examples."""
    if isinstance(query, Nearest):
        return [query.example]
    if isinstance(query, RelevanceFeedback):
        return [query.target, *(example for example, _ in query.feedback)]
    if isinstance(query, Recommend):
        return [*query.positive, *query.negative]
    pairs = [example for pair in query.pairs for example in pair]
    return [query.target, *pairs] if isinstance(query, Discover) else pairs


def is_point_id(example: Example) -> bool:
    return isinstance(example, (int, uuid.UUID))


def merge_filters(outer: Any, inner: Any) -> Any:
    """Both filters (either may be None): a prefetch sees its parent's filter too."""
    if outer is None:
        return inner
    if inner is None:
        return outer
    return filters.Filter(must=(outer, inner))


def push_filters_down(node: QueryNode, parent_filter: filters.Filter | None = None) -> QueryNode:
    """Every prefetch gets its ancestors' filters, as Qdrant's planner does."""
    merged = merge_filters(parent_filter, node.filter)
    children = tuple(push_filters_down(child, merged) for child in node.prefetch)
    return replace(node, filter=merged, prefetch=children)


def missing_vector_error(point_id: PointId) -> NotFound:
    return NotFound(f"No point with id {point_id} found")


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
