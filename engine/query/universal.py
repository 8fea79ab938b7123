"""Qdrant's universal query: nearest by vector or id, recommend, discover, context, relevance
feedback, prefetch trees, fusion, formulas, order_by, groups.

Owns: running a plan (engine/query/plan.py) against one collection's reader in a read thread:
nodes and prefetches, fusion, order_by, groups and lookups, MMR, sparse and dense vector
queries, and batches (`execute_many`).
Not here: the plan types (engine/query/plan.py), HTTP parsing (server/wire/query.py), how each kind
scores (engine/query/scores.py, engine/query/formula.py, engine/query/feedback.py), the reads it
makes (engine/query/reads.py, engine/query/universal_reads.py).

From Qdrant 1.19's source (`lib/collection/src/operations/universal_query/`):
- recommend with `average_vector` searches the averaged vector; `best_score`, `sum_scores`,
  discover and context score every candidate (exactly, over the vectors in LMDB);
- a sparse `using` is searched by `sparse_search` (dot product over the inverted index,
  only points sharing an index with the query), in a node, a prefetch and under fusion alike;
- examples given as point ids are excluded from the results (`collection_query.rs`
  adds a `must_not has_id` for every referenced id: recommend's, discover's target and pairs).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import numpy as np

from engine.errors import BadRequest, NotFound, missing_vector_name
from engine.filters import conditions as filters
from engine.filters import instants
from engine.filters.payload_path import PayloadPath
from engine.ops import (
    Distance,
    PayloadSelector,
    PointId,
    ScoredPoint,
    SearchRequest,
    SparseModifier,
    SparseVector,
    VectorConfig,
    VectorSelector,
)
from engine.query import multivector
from engine.query.feedback import RelevanceFeedback, feedback_scorer
from engine.query.formula import CompiledFormula, Formula, compile_formula, rescore
from engine.query.plan import (
    Context,
    Discover,
    Fusion,
    Group,
    Nearest,
    OrderBy,
    QueryNode,
    QueryRequest,
    QueryResult,
    Recommend,
    Sample,
    VectorQuery,
    WithLookup,
    examples_of,
    excluded_ids,
    is_point_id,
    merge_filters,
    push_filters_down,
)
from engine.query.scores import (
    Hit,
    average_vector,
    dbsf,
    discover_scorer,
    internal_similarity,
    mmr_order,
    recommend_scorer,
    rrf,
    sparse_average,
)
from engine.query.universal_reads import QueryReader
from engine.vectors.scores import on_scoring_rows, query_form, score_rows

Lookups = dict[str, QueryReader]  # collection name -> reader, for lookup_from and with_lookup
# Qdrant's search budget for groups (lib/shard/src/grouping/driver.rs): searches that find
# new groups, then searches that fill the best groups not full yet.
GROUP_COLLECTING_SEARCHES = 5
GROUP_FILLING_SEARCHES = 5
SPARSE_DENSE_MISMATCH = "Conversion between sparse and regular vectors failed"
MULTI_DENSE_MISMATCH = "Conversion between multi and regular vectors failed"


def group_keys(payload: dict, path: PayloadPath) -> list[Any] | None:
    """The groups a point joins (Qdrant's GroupsAggregator): each distinct value at `path`
    (a selected array counts as its elements) that is a string or an integer; None
    when any value is of another kind (Qdrant leaves such a point out of every group)."""
    keys: list[Any] = []
    seen: set[tuple[type, Any]] = set()
    for value in path.values(payload):
        for item in value if isinstance(value, list) else [value]:
            if type(item) not in (str, int):
                return None
            if (type(item), item) not in seen:
                seen.add((type(item), item))
                keys.append(item)
    return keys


def order_hits(points: list[tuple[PointId, dict]], order_by: OrderBy, limit: int) -> list[Hit]:
    """Qdrant's order_by: one entry per (number or datetime value, point) at the key, sorted
    by value only, from `start_from` on; score 1.0 (local_shard/scroll.rs)."""
    entries: dict[tuple[Any, Any], Hit] = {}
    path = PayloadPath.parse(order_by.key)
    for point_id, payload in points:
        for value in path.values(payload):
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
        key = instants.instant_key(value)
        if key is not None:
            seconds, nanos = divmod(key, instants.INSTANT_KEY_SPAN)
            return seconds * 1_000_000 + nanos // 1000
    return None


# ---- the executor: runs in a read thread ----------------------------------------------------


@dataclass
class _Context:
    reader: QueryReader  # of the queried collection
    lookups: Lookups
    # Ids used as examples in the queried collection: Qdrant adds `must_not has_id` for them
    # to the root filter, which reaches every prefetch. Keel drops them from each node's hits
    # instead (fetching that many more), so a plain search stays a graph search.
    excluded: frozenset[Any]


def execute(
    reader: QueryReader, request: QueryRequest, lookups: Lookups, collection_name: str
) -> QueryResult:
    """Run `request` against `reader`, in a read thread; `lookups` holds the Readers
    of the collections named by `lookup_from`. Raises BadRequest or NotFound like Qdrant."""
    excluded = frozenset(_referenced_ids(request.root, collection_name))
    context = _Context(reader, lookups, excluded)
    if request.group_by is not None:
        return _grouped(context, _root_with_group_filter(request), request)
    root = push_filters_down(request.root)
    hits = _run_node(context, root, root.limit + request.offset)
    hits = hits[request.offset : request.offset + root.limit]
    points = reader.scored_points(
        [(hit.id, hit.score) for hit in hits], request.with_payload, request.with_vector
    )
    if root.query is not None and not isinstance(root.query, OrderBy | Sample):
        return QueryResult(points)
    # Qdrant answers scroll-shaped results with version 0 (local_shard/scroll.rs).
    points = [replace(point, version=0) for point in points]
    if not isinstance(root.query, OrderBy):
        return QueryResult(points)
    values = {hit.id: hit.order_value for hit in hits}
    return QueryResult(points, [values[point.id] for point in points])


def execute_many(
    reader: QueryReader, jobs: list[tuple[QueryRequest, Lookups]], collection_name: str
) -> list[QueryResult]:
    """`execute` of each job, in order. Plain nearest queries by a dense vector (filtered or
    not; no prefetch, groups or MMR) are run as the search they are (`Reader.search`,
    through `Reader.search_many` when there are several, which searches unfiltered ones
    together): the same points, without the query planner's steps or a second lookup of
    each hit. Raises at the first query that fails."""
    plain = [position for position, (request, _) in enumerate(jobs) if _is_plain(reader, request)]
    points_of: dict[int, list[ScoredPoint]] = {}
    if len(plain) == 1:
        points_of[plain[0]] = reader.search(_plain_search(reader, jobs[plain[0]][0]))
    elif plain:
        searches = [_plain_search(reader, jobs[position][0]) for position in plain]
        for position, found in zip(plain, reader.search_many(searches)):
            if isinstance(found, Exception):
                raise found
            points_of[position] = found
    return [
        QueryResult(points_of[position])
        if position in points_of
        else execute(reader, request, lookups, collection_name)
        for position, (request, lookups) in enumerate(jobs)
    ]


def resolve_named_points(reader: QueryReader, request: QueryRequest, lookups: Lookups) -> None:
    """Fetch the vectors of the points every node's query names (here or in its
    `lookup_from` collection), raising what Qdrant raises for a missing point or vector
    name. Qdrant does this for a whole request before validating it, so those errors come
    before the request's own faults (the caller's `check_query`, `_validate_node`)."""
    context = _Context(reader, lookups, frozenset())
    nodes = [request.root]
    while nodes:
        node = nodes.pop(0)
        nodes.extend(node.prefetch)
        query = node.query
        if not isinstance(query, VectorQuery) or not any(map(is_point_id, examples_of(query))):
            continue
        if _lookup_vector_name(node) in _lookup_reader(context, node).config.sparse_vectors:
            _sparse_examples(context, node, query)
        else:
            _examples(context, node, query)


def _is_plain(reader: QueryReader, request: QueryRequest) -> bool:
    root, query = request.root, request.root.query
    return (
        isinstance(query, Nearest)
        and query.mmr is None
        and isinstance(query.example, list)
        and not root.prefetch
        and root.lookup_from is None
        and root.idf is None
        and request.group_by is None
        and root.using in reader.config.vectors
        and not reader.config.vectors[root.using].is_multivector
        and _is_acknowledged(reader, root.using)
    )


def _plain_search(reader: QueryReader, request: QueryRequest) -> SearchRequest:
    """The search `execute` runs for a plain nearest query (see `_searched`), with the
    query's offset, payload and vector selection."""
    root = request.root
    assert isinstance(root.query, Nearest)
    vector = np.asarray(root.query.example, dtype=np.float32)
    _check_dimensions([vector], reader.config.vectors[root.using].size)
    return SearchRequest(
        vector_name=root.using,
        vector=vector,
        limit=root.limit,
        offset=request.offset,
        score_threshold=root.score_threshold,
        hnsw_ef=root.hnsw_ef,
        is_exact=root.is_exact,
        with_payload=request.with_payload,
        with_vector=request.with_vector,
        filter=root.filter,
    )


def _root_with_group_filter(request: QueryRequest) -> QueryNode:
    """The root; with group_by, only points that have the key are candidates."""
    if request.group_by is None:
        return request.root
    path = PayloadPath.parse(request.group_by.key)
    extra = filters.Filter(must_not=(filters.IsEmptyCondition(path),))
    return replace(request.root, filter=merge_filters(extra, request.root.filter))


def _grouped(context: _Context, root: QueryNode, request: QueryRequest) -> QueryResult:
    """Qdrant's group search (lib/shard/src/grouping/driver.rs): searches of `limit` x
    `group_size` candidates (prefetch limits x `group_size` too), each excluding the points
    already grouped; up to GROUP_COLLECTING_SEARCHES that also exclude the full groups, until
    the `limit` best groups are full or nothing more is found, then up to
    GROUP_FILLING_SEARCHES restricted to the best groups not full yet. `root` is not pushed
    down yet: each search's filters reach the prefetches as the root's do."""
    group_by = request.group_by
    assert group_by is not None
    path = PayloadPath.parse(group_by.key)
    groups = _Groups(root.limit, group_by.group_size, _result_order(context.reader, root))
    base = replace(
        root,
        limit=root.limit * group_by.group_size,
        prefetch=tuple(_scaled(prefetch, group_by.group_size) for prefetch in root.prefetch),
    )
    is_collecting, searches_left = True, GROUP_COLLECTING_SEARCHES
    while root.limit > 0 and group_by.group_size > 0:
        if searches_left == 0:
            if not is_collecting:
                break
            is_collecting, searches_left = False, GROUP_FILLING_SEARCHES
            continue
        searches_left -= 1
        if is_collecting:
            narrowing = _group_conditions(path, groups.full_values(), filters.MatchExcept)
        else:
            narrowing = _group_conditions(path, groups.open_best_values(), filters.MatchAny)
        grouped_ids = frozenset(groups.ids)
        extra = filters.Filter(
            must=narrowing or None,
            must_not=(filters.HasIdCondition(grouped_ids),) if grouped_ids else None,
        )
        node = push_filters_down(replace(base, filter=merge_filters(extra, base.filter)))
        hits = _run_node(context, node, node.limit)
        payloads = dict(context.reader.payload_points(None, [hit.id for hit in hits]))
        for hit in hits:
            if hit.id in payloads:
                groups.add(hit, group_keys(payloads[hit.id], path))
        is_enough = groups.full_best_count() >= root.limit
        if is_enough or (not hits and not is_collecting):
            break
        if not hits:
            is_collecting, searches_left = False, GROUP_FILLING_SEARCHES
    best = groups.distill()
    members = [hit for _, hits in best for hit in hits]
    points = context.reader.scored_points(
        [(hit.id, hit.score) for hit in {hit.id: hit for hit in members}.values()],
        request.with_payload,
        request.with_vector,
    )
    by_id = {point.id: point for point in points}
    result = [
        Group(value, [by_id[hit.id] for hit in hits if hit.id in by_id]) for value, hits in best
    ]
    if group_by.with_lookup is not None:
        result = _looked_up(context, group_by.with_lookup, result)
    return QueryResult([], groups=result)


def _scaled(node: QueryNode, factor: int) -> QueryNode:
    """The prefetch with its limit, and its prefetches', times `factor` (Qdrant's
    `increase_limit_for_group`)."""
    prefetch = tuple(_scaled(child, factor) for child in node.prefetch)
    return replace(node, limit=node.limit * factor, prefetch=prefetch)


def _group_conditions(
    path: PayloadPath, values: list[Any], match: Callable[[Any], Any]
) -> tuple[filters.FieldCondition, ...]:
    """Qdrant's `except_on` / `match_on`: one condition for the integer values, one for the
    strings (a match takes one kind)."""
    ints = frozenset(value for value in values if type(value) is int)
    strings = frozenset(value for value in values if type(value) is str)
    return tuple(
        filters.FieldCondition(path, match=match(kind)) for kind in (ints, strings) if kind
    )


def _result_order(reader: QueryReader, node: QueryNode) -> int:
    """Qdrant's `query_result_order` of the node: 1 larger scores better, -1 smaller
    (a distance, or points by id), 0 none (a random sample, MMR)."""
    query = node.query
    if query is None:
        return -1
    if isinstance(query, Sample):
        return 0
    if isinstance(query, OrderBy):
        return 1 if query.is_descending else -1
    if isinstance(query, Nearest) and query.mmr is not None:
        return 0
    is_distance_scored = isinstance(query, Nearest) or (
        isinstance(query, Recommend) and query.strategy == "average_vector"
    )
    vector = reader.config.vectors.get(node.using)
    if is_distance_scored and vector is not None:
        return 1 if vector.distance.is_higher_better else -1
    return 1


class _Groups:
    """Qdrant's GroupsAggregator (lib/shard/src/grouping/aggregator.rs): each hit joins the
    group of every key value it has; a group is full at `group_size` members; the best
    groups are the `limit` with the best best hit."""

    def __init__(self, limit: int, group_size: int, order: int) -> None:
        self.limit = limit
        self.group_size = group_size
        self.order = order
        self.ids: set[PointId] = set()
        self._members: dict[tuple[type, Any], dict[PointId, Hit]] = {}
        self._best: dict[tuple[type, Any], Hit] = {}
        self._full: set[tuple[type, Any]] = set()

    def add(self, hit: Hit, values: list[Any] | None) -> None:
        for value in values or ():
            slot = (type(value), value)
            members = self._members.setdefault(slot, {})
            if hit.id not in members:
                members[hit.id] = hit
                self.ids.add(hit.id)
            if len(members) == self.group_size:
                self._full.add(slot)
            best = self._best.get(slot)
            if best is None or self._is_better(hit, best):
                self._best[slot] = hit

    def full_values(self) -> list[Any]:
        return [value for _, value in self._full]

    def open_best_values(self) -> list[Any]:
        return [slot[1] for slot in self._best_slots() if slot not in self._full]

    def full_best_count(self) -> int:
        return sum(slot in self._full for slot in self._best_slots())

    def distill(self) -> list[tuple[Any, list[Hit]]]:
        """The best groups, best first, each with its `group_size` best members."""
        return [
            (slot[1], self._ranked(list(self._members[slot].values()))[: self.group_size])
            for slot in self._best_slots()
        ]

    def _best_slots(self) -> list[tuple[type, Any]]:
        slots = list(self._best)
        if self.order:
            slots.sort(key=lambda slot: self._key(self._best[slot]), reverse=self.order > 0)
        return slots[: self.limit]

    def _ranked(self, hits: list[Hit]) -> list[Hit]:
        if not self.order:
            return hits
        return sorted(hits, key=self._key, reverse=self.order > 0)

    def _is_better(self, hit: Hit, other: Hit) -> bool:
        if not self.order:
            return False
        return (
            self._key(hit) > self._key(other)
            if self.order > 0
            else self._key(hit) < self._key(other)
        )

    @staticmethod
    def _key(hit: Hit) -> Any:
        # Qdrant's ScoredPoint order: by order_value when there is one, else by score.
        return hit.score if hit.order_value is None else hit.order_value


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
    # Qdrant compiles a formula with the request, before planning or running anything.
    formula = compile_formula(query) if isinstance(query, Formula) else None
    candidates = None
    if node.prefetch:
        responses = [_run_node(context, child, child.limit) for child in node.prefetch]
        if isinstance(query, Fusion):
            return _fused(query, responses, node.score_threshold)[:wanted]
        if formula is not None:
            return _formula_hits(context, node, formula, responses, wanted)
        candidates = list(dict.fromkeys(hit.id for response in responses for hit in response))
    if formula is not None:
        # planned_query.rs: a validation error, which Qdrant answers 400.
        raise BadRequest("Validation failed: cannot apply Formula without prefetches")
    if isinstance(query, Fusion):
        # planned_query.rs: an OperationError::validation_error, which Qdrant answers 400.
        raise BadRequest("Validation failed: cannot apply Fusion without prefetches")
    if isinstance(query, OrderBy):
        return order_hits(context.reader.payload_points(node.filter, candidates), query, wanted)
    if isinstance(query, Sample):
        points = context.reader.payload_points(node.filter, candidates)
        drawn = random.sample(points, min(wanted, len(points)))
        return [Hit(point_id, 1.0) for point_id, _ in drawn]
    if query is None:
        return _by_id(context.reader.payload_points(node.filter, candidates), wanted)
    if isinstance(query, Nearest) and query.mmr is not None:
        return _mmr_hits(context, node, query, candidates, wanted)
    return _vector_hits(context, node, query, candidates, wanted)


def _formula_hits(
    context: _Context,
    node: QueryNode,
    formula: CompiledFormula,
    responses: list[list[Hit]],
    wanted: int,
) -> list[Hit]:
    """The prefetched points rescored by the formula (engine/query/formula.py). Each
    condition of the formula is one filtered read of those points."""
    reader = context.reader
    candidates = list(dict.fromkeys(hit.id for response in responses for hit in response))
    points = reader.payload_points(None, candidates)  # points deleted meanwhile drop out
    ids = [point_id for point_id, _ in points]
    matched = [
        {point_id for point_id, _ in reader.payload_points(filters.Filter(must=(condition,)), ids)}
        for condition in formula.conditions
    ]
    scores = [{hit.id: hit.score for hit in response} for response in responses]
    specs = reader.payload_index_specs()
    return rescore(formula, points, scores, matched, node.score_threshold, wanted, specs)


def _mmr_hits(
    context: _Context,
    node: QueryNode,
    query: Nearest,
    candidates: list[PointId] | None,
    wanted: int,
) -> list[Hit]:
    """The nearest `candidates_limit` hits, re-ranked by MMR (query_scores.mmr_order)."""
    assert query.mmr is not None
    plain = replace(query, mmr=None)
    pool_size = query.mmr.candidates_limit or node.limit
    # Excluded ids (the query's own point) never become candidates, as with Qdrant's filter.
    pool = _vector_hits(context, node, plain, candidates, pool_size + len(context.excluded))
    pool = [hit for hit in pool if hit.id not in context.excluded][:pool_size]
    is_sparse = node.using in context.reader.config.sparse_vectors
    ids = [hit.id for hit in pool]
    if is_sparse:
        stored = context.reader.sparse_vectors_of(ids, node.using)
    else:
        stored = context.reader.example_vectors(ids, node.using)
    pool = [hit for hit in pool if stored.get(hit.id) is not None]  # Qdrant skips those too
    if len(pool) < 2:
        return pool[:wanted]
    vector_config = context.reader.config.vectors.get(node.using)
    is_multivector = vector_config is not None and vector_config.is_multivector
    if is_sparse:
        distance = Distance.DOT
        [vector] = _sparse_examples(context, node, plain)
        vectors: Any = [stored[hit.id] for hit in pool]
        queries: list[Any] = vectors
    else:
        assert vector_config is not None
        distance = vector_config.distance
        [example] = _examples(context, node, plain)
        # Qdrant scores MMR in a float32 volatile storage of the vectors as retrieved
        # (shard/src/query/mmr): whatever the datatype, no rounding, and only the query side
        # preprocessed (unit length for Cosine, a uint8 one included).
        as_float32 = replace(vector_config, datatype=None)
        if is_multivector:
            vector = multivector.query_matrix(example, as_float32)
            vectors = [stored[hit.id] for hit in pool]  # matrices: internal_similarity is MaxSim
            queries = [multivector.query_matrix(matrix, as_float32) for matrix in vectors]
        else:
            vector = query_form(example, as_float32)
            vectors = np.stack([stored[hit.id] for hit in pool]).astype(np.float32)
            queries = [query_form(row, as_float32) for row in vectors]
    relevance = internal_similarity(vectors, vector, distance)
    # Not symmetric (MaxSim; a preprocessed query against stored rows): Qdrant's LazyMatrix
    # scores a candidate as the query against a picked point; mmr_order reads
    # similarity[picked][candidate].
    similarity = np.stack([internal_similarity(vectors, row, distance) for row in queries]).T
    lambda_ = 1.0 - query.mmr.diversity
    return [pool[index] for index in mmr_order(relevance, similarity, lambda_, wanted)]


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
    query: VectorQuery,
    candidates: list[PointId] | None,
    wanted: int,
) -> list[Hit]:
    reader = context.reader
    if not _is_acknowledged(reader, node.using):
        raise missing_vector_name(node.using)  # deleted by an op not applied yet
    if node.idf is not None and not _has_idf_modifier(reader, node.using):
        # Qdrant refuses it rather than ignore a param that changes the scores.
        raise BadRequest(
            "search param `idf` requires a sparse vector with the `idf` modifier, "
            f'which vector "{node.using}" is not'
        )
    if node.using in reader.config.sparse_vectors:
        return _sparse_hits(context, node, query, candidates, wanted)
    vector_config = reader.config.vectors.get(node.using)
    if vector_config is None:
        return _pending_name_hits(reader, node.using, query)
    if any(isinstance(example, SparseVector) for example in examples_of(query)):
        raise BadRequest(SPARSE_DENSE_MISMATCH)
    if vector_config.is_multivector:
        return _multivector_hits(context, node, query, candidates, wanted)
    distance = vector_config.distance
    examples = _examples(context, node, query)
    if any(np.ndim(example) != 1 for example in examples):
        raise BadRequest(MULTI_DENSE_MISMATCH)  # a matrix, given or looked up by id
    _check_dimensions(examples, vector_config.size)
    if _is_scored_directly(query):
        # Each example preprocessed and in the storage type, as Qdrant's CustomQueryScorer.
        examples = [query_form(example, vector_config) for example in examples]
        score = on_scoring_rows(_direct_scorer(query, examples, distance), vector_config)
        pairs = reader.score_points(node.using, score, True, node.filter, candidates, wanted)
        return _thresholded(pairs, node.score_threshold, True)
    if isinstance(query, Recommend):
        vector = average_vector(examples[: len(query.positive)], examples[len(query.positive) :])
    else:
        vector = examples[0]
    if candidates is None:
        return _searched(reader, node, vector, wanted)
    score = _nearest_scorer(query_form(vector, vector_config), vector_config)
    is_higher_better = distance.is_higher_better
    pairs = reader.score_points(
        node.using, score, is_higher_better, node.filter, candidates, wanted
    )
    return _thresholded(pairs, node.score_threshold, is_higher_better)


def _has_idf_modifier(reader: QueryReader, name: str) -> bool:
    sparse = reader.config.sparse_vectors.get(name)
    return sparse is not None and sparse.modifier is SparseModifier.IDF


def _is_acknowledged(reader: QueryReader, name: str) -> bool:
    """Whether the collection has vector `name` as acknowledged: a name an acknowledged op
    deletes is gone at once, before the op is applied (Qdrant drops it from the collection's
    config before its shards apply the op, and then refuses queries naming it)."""
    if reader.acknowledged_config is None:
        return True
    acknowledged = reader.acknowledged_config()
    return name in acknowledged.vectors or name in acknowledged.sparse_vectors


def _pending_name_hits(reader: QueryReader, name: str, query: VectorQuery) -> list[Hit]:
    """A query on vector `name` that no applied op created: nothing when an acknowledged op
    has (in Qdrant the name exists once the op is accepted, and no point has a value of it:
    a write giving one comes after the op), after the size check of a given dense vector;
    else Qdrant's unknown-name error."""
    acknowledged = None if reader.acknowledged_config is None else reader.acknowledged_config()
    if acknowledged is None or not (
        name in acknowledged.vectors or name in acknowledged.sparse_vectors
    ):
        raise missing_vector_name(name)
    pending = acknowledged.vectors.get(name)
    if pending is not None and not pending.is_multivector:
        given = [
            np.asarray(example, dtype=np.float32)
            for example in examples_of(query)
            if not is_point_id(example) and not isinstance(example, SparseVector)
        ]
        _check_dimensions([vector for vector in given if vector.ndim == 1], pending.size)
    return []


def _multivector_hits(
    context: _Context,
    node: QueryNode,
    query: VectorQuery,
    candidates: list[PointId] | None,
    wanted: int,
) -> list[Hit]:
    """A vector query on a multivector name, scored exactly (engine/query/multivector.py)
    over every point having it (filtered) or over the prefetch's candidates: nearest and
    recommend's average_vector by MaxSim with Qdrant's reported scores, the other
    strategies, discover, context and relevance feedback by their scores over MaxSim."""
    assert not isinstance(query, Nearest) or query.mmr is None, "mmr runs in _mmr_hits"
    vector_config = context.reader.config.vectors[node.using]
    distance = vector_config.distance
    examples = _examples(context, node, query)
    # Each checked (size, finite) and preprocessed; averaging takes them as given.
    matrices = [multivector.query_matrix(example, vector_config) for example in examples]
    if _is_scored_directly(query):
        score = on_scoring_rows(_direct_scorer(query, matrices, distance), vector_config)
        pairs = context.reader.score_points(
            node.using, score, True, node.filter, candidates, wanted
        )
        return _thresholded(pairs, node.score_threshold, True)
    if isinstance(query, Recommend):
        split = len(query.positive)
        example = multivector.average(examples[:split], examples[split:])
    else:
        [example] = examples
    matrix = multivector.query_matrix(example, vector_config)
    pairs = context.reader.score_points(
        node.using,
        on_scoring_rows(
            lambda matrices: multivector.maxsim_scores(matrix, matrices, distance), vector_config
        ),
        True,  # MaxSim is a similarity for every distance; reported scores are after
        node.filter,
        candidates,
        wanted,
    )
    scores = multivector.reported(np.array([score for _, score in pairs]), distance)
    reported = [(point_id, float(score)) for (point_id, _), score in zip(pairs, scores)]
    return _thresholded(reported, node.score_threshold, distance.is_higher_better)


def _sparse_hits(
    context: _Context,
    node: QueryNode,
    query: VectorQuery,
    candidates: list[PointId] | None,
    wanted: int,
) -> list[Hit]:
    """A query on a sparse vector name. Nearest and recommend's average vector: the dot
    product through the inverted index (only points sharing an index with the query score).
    The other recommend strategies, discover and context: every point having the vector
    scored exactly, a missing overlap counting 0, as Qdrant's `search_scored` does."""
    examples = _sparse_examples(context, node, query)
    if isinstance(query, Nearest):
        vector = examples[0]
    elif isinstance(query, Recommend) and query.strategy == "average_vector":
        split = len(query.positive)
        vector = sparse_average(examples[:split], examples[split:])
    else:
        score = _direct_scorer(query, examples, Distance.DOT)
        pairs = context.reader.score_points(
            node.using, score, True, node.filter, candidates, wanted
        )
        return _thresholded(pairs, node.score_threshold, True)
    corpus = None if node.idf is None else node.idf.corpus
    pairs = context.reader.sparse_search(
        node.using, vector, node.filter, candidates, wanted, corpus
    )
    return _thresholded(pairs, node.score_threshold, True)


def _sparse_examples(context: _Context, node: QueryNode, query: VectorQuery) -> list[SparseVector]:
    """The query's examples as SparseVectors (in examples_of's order), ids resolved in the
    collection `lookup_from` names, if any."""
    examples = examples_of(query)
    ids = [example for example in examples if is_point_id(example)]
    name = _lookup_vector_name(node)
    reader = _lookup_reader(context, node)
    if ids and name not in reader.config.sparse_vectors:
        if name in reader.config.vectors:
            raise BadRequest(SPARSE_DENSE_MISMATCH)
        _raise_unknown_lookup_vector(reader, ids, name)
    found = reader.sparse_vectors_of(ids, name) if ids else {}
    vectors = []
    for example in examples:
        if is_point_id(example):
            if example not in found:
                raise NotFound(f"No point with id {example} found")
            example = found[example]
            if example is None:
                raise NotFound(f'Vector with name "{name}" for point not found')
        if not isinstance(example, SparseVector):
            raise BadRequest(SPARSE_DENSE_MISMATCH)
        vectors.append(example)
    return vectors


def _searched(reader: QueryReader, node: QueryNode, vector: np.ndarray, wanted: int) -> list[Hit]:
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
    return [Hit(point_id, score) for point_id, score in reader.search_hits(request)]


def _nearest_scorer(
    vector: np.ndarray, vector_config: VectorConfig
) -> Callable[[np.ndarray], np.ndarray]:
    return lambda matrix: score_rows(matrix, vector, vector_config)


def _thresholded(
    pairs: list[tuple[PointId, float]], threshold: float | None, is_higher_better: bool
) -> list[Hit]:
    # Qdrant's comparison is strict both ways (Distance::check_threshold).
    return [
        Hit(point_id, score)
        for point_id, score in pairs
        if threshold is None or (score > threshold if is_higher_better else score < threshold)
    ]


def _examples(context: _Context, node: QueryNode, query: VectorQuery) -> list[np.ndarray]:
    """The query's examples as vectors (in examples_of's order), ids resolved, as given:
    the caller preprocesses them (engine/vectors/scores.py `query_form`)."""
    examples = examples_of(query)
    ids = [example for example in examples if is_point_id(example)]
    found: dict[PointId, np.ndarray | None] = {}
    if ids:
        reader, name = _lookup_reader(context, node), _lookup_vector_name(node)
        if name not in reader.config.vectors:
            if name in reader.config.sparse_vectors:
                raise BadRequest(SPARSE_DENSE_MISMATCH)
            _raise_unknown_lookup_vector(reader, ids, name)
        found = reader.example_vectors(ids, name)
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
    # raw and stored vectors as given; the query scorer preprocesses whatever is scored.
    return vectors


def _is_scored_directly(query: VectorQuery) -> bool:
    """Scored by a custom score over candidate vectors, not by one query vector's search."""
    if isinstance(query, Recommend):
        return query.strategy != "average_vector"
    return isinstance(query, Discover | Context | RelevanceFeedback)


def _direct_scorer(
    query: VectorQuery, examples: list[np.ndarray], distance: Distance
) -> Callable[[np.ndarray], np.ndarray]:
    if isinstance(query, Recommend):
        positive, negative = examples[: len(query.positive)], examples[len(query.positive) :]
        return recommend_scorer(query.strategy, positive, negative, distance)
    if isinstance(query, RelevanceFeedback):
        feedback = list(zip(examples[1:], (score for _, score in query.feedback)))
        return feedback_scorer(examples[0], feedback, (query.a, query.b, query.c), distance)
    target = examples[0] if isinstance(query, Discover) else None
    flat = examples[1:] if isinstance(query, Discover) else examples
    pairs = list(zip(flat[0::2], flat[1::2]))
    return discover_scorer(target, pairs, distance)


def _lookup_reader(context: _Context, node: QueryNode) -> QueryReader:
    if node.lookup_from is None:
        return context.reader
    return context.lookups[node.lookup_from.collection]


def _raise_unknown_lookup_vector(reader: QueryReader, ids: list[PointId], name: str) -> NoReturn:
    """The error for example ids whose vector `name` the lookup collection lacks.

    Qdrant checks the name only as it reads a found point's vectors (`segment/read_view/
    vectors.rs`): when none of the ids is in the collection, the query fails on the first
    missing point instead (`collection/query.rs`, PointNotFound)."""
    assert ids, "no example id to look up"
    if not reader.retrieve(ids, PayloadSelector(False), VectorSelector(False)):
        raise NotFound(f"No point with id {ids[0]} found")
    raise missing_vector_name(name)


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
