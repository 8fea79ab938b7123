"""Strict mode's rate limits: a token bucket per collection and kind, and request costs.

Owns: `RateLimiter` (Qdrant's lib/common/common/src/rate_limiting.rs: a bucket of
`per_minute` tokens, full at the start, refilled continuously), `RateLimits` (a collection's
read and write buckets, rebuilt full whenever its strict mode changes, as
`LocalShard::on_strict_mode_config_update`), what a read costs (lib/shard/src/
operation_rate_cost.rs, search.rs `search_rate_cost`, query/scroll.rs `scroll_rate_cost`,
the planned query's searches and scrolls in `LocalShard::query_batch`), and what a filtered
write costs: its expected number of points (lib/segment/src/index/query_estimator.rs).
Not here: taking the tokens for a request (engine/collection.py), the 429 (server/app.py).

Difference: Qdrant also builds the buckets when it loads a collection whose strict mode has
rate limits but is disabled (`LocalShard::new` does not look at `enabled`), so after a restart
such a collection is rate limited until its next strict mode PATCH; Keel builds them only
while strict mode is enabled, as Qdrant does after every PATCH.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from engine.errors import RateLimited
from engine.filters import conditions as filters
from engine.ops import (
    DeletePoints,
    DeleteVectors,
    Operation,
    StrictModeConfig,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
)
from engine.query import plan
from engine.query.formula import Formula
from engine.strict_mode.fields import IndexSchemas, total_conditions_count

BASE_COST = 1  # a read's cost before its filter's conditions (operation_rate_cost.rs)
SPARSE_DIMS_COST_UNIT = 64  # a sparse query vector costs one token per 64 dims, rounded up
MIN_SHOULD_COMBINATIONS_MAX = 1000  # bound on the estimate's subsets of a min_should


# ---- rate limits --------------------------------------------------------------------------


class RateLimiter:
    """Qdrant's token bucket: `per_minute` tokens, full at the start, refilled continuously
    at per_minute / 60 tokens a second; a request takes its cost in tokens or is refused."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        assert per_minute >= 1, per_minute
        self.capacity = per_minute
        self.tokens_per_s = per_minute / 60.0
        self.tokens = float(per_minute)
        self._clock = clock
        self._last_s = clock()

    def try_consume(self, cost: int, kind: str) -> None:
        """Take `cost` tokens or raise RateLimited (`kind`: "Read" or "Write")."""
        if cost > self.capacity:
            raise RateLimited(
                f"{kind} rate limit exceeded, request larger than rate limiter capacity, "
                "please try to split your request",
                None,
            )
        now_s = self._clock()
        self.tokens = min(self.capacity, self.tokens + self.tokens_per_s * (now_s - self._last_s))
        self._last_s = now_s
        if self.tokens >= cost:
            self.tokens -= cost
            return
        retry_after_s = (cost - self.tokens) / self.tokens_per_s
        raise RateLimited(
            f"{kind} rate limit exceeded: Operation requires {cost} tokens but only "
            f"{self.tokens:.1f} were available. Retry after {math.ceil(retry_after_s)}s",
            retry_after_s,
        )

    def refund(self, cost: int) -> None:
        """Give back tokens taken for a request that was refused after all (never above
        the capacity)."""
        self.tokens = min(float(self.capacity), self.tokens + cost)


class RateLimits:
    """A collection's read and write buckets, rebuilt (full) whenever its strict mode
    changes, as Qdrant's `on_strict_mode_config_update`: none unless strict mode is enabled."""

    def __init__(self, config: StrictModeConfig | None) -> None:
        enabled = config if config is not None and config.enabled is True else None
        read = None if enabled is None else enabled.read_rate_limit
        write = None if enabled is None else enabled.write_rate_limit
        self.read = None if read is None else RateLimiter(read)
        self.write = None if write is None else RateLimiter(write)

    def consume_reads(self, costs: list[int]) -> None:
        """Take each cost in turn, as Qdrant's shard takes one per call (a call that costs
        nothing, such as fetching no example ids, is not made)."""
        if self.read is None:
            return
        for cost in costs:
            if cost > 0:
                self.read.try_consume(cost, "Read")

    def consume_writes(self, costs: list[int]) -> None:
        """Take the tokens of each operation of a write request (at least one each, as
        Qdrant's replica set takes per operation). Keel logs a request's operations all or
        none, so when one is refused the tokens the earlier ones took are given back."""
        if self.write is None:
            return
        taken: list[int] = []
        try:
            for cost in costs:
                self.write.try_consume(max(1, cost), "Write")
                taken.append(max(1, cost))
        except RateLimited:
            for cost in taken:
                self.write.refund(cost)
            raise


def filter_cost(filter_: filters.Filter | None) -> int:
    return 0 if filter_ is None else total_conditions_count(filter_)


# What each read takes from the read bucket, one cost per call Qdrant's shard takes tokens for.


def filtered_read_costs(filter_: filters.Filter | None) -> list[int]:
    """Scroll, count and facet: one, plus the filter's conditions."""
    return [BASE_COST + filter_cost(filter_)]


def retrieve_read_costs(ids: list[Any]) -> list[int]:
    """Retrieve: one per id."""
    return [len(ids)]


def search_read_costs(vector: Any, filter_: filters.Filter | None) -> list[int]:
    """POST /points/search: the query vector's cost plus the filter's conditions."""
    return [search_cost(vector, filter_)]


def matrix_read_costs(sample_count: int, filter_: filters.Filter | None) -> list[int]:
    """The distance matrix as Keel reads it: the sampling scroll, then a search per sampled
    point, each with the filter."""
    return [(sample_count + 1) * (BASE_COST + filter_cost(filter_))]


# The similarity cost of a point's stored vector `name`, for an example given by id: the rows
# of a multivector, else 1 (Collection.stored_similarity_cost reads it).
StoredCost = Callable[[Any, str], int]


def query_batch_read_costs(
    requests: list[plan.QueryRequest], stored_cost: StoredCost | None = None
) -> list[int]:
    """A query or a batch of them: fetching the example ids, then the searches and scrolls."""
    costs = [query_read_costs(request, stored_cost) for request in requests]
    return [sum(ids for ids, _ in costs), sum(cost for _, cost in costs)]


def query_read_costs(
    request: plan.QueryRequest, stored_cost: StoredCost | None = None
) -> tuple[int, int]:
    """(ids to fetch, search and scroll cost) of a query: Qdrant first retrieves the vectors
    of the examples given as ids (one token each), then runs the planned searches (each
    example vector costs its similarity cost, an id's the fetched vector's, plus the
    filter's conditions and one for the has_id exclusion of those ids) and scrolls (one,
    plus the filter's conditions)."""
    root = plan.push_filters_down(request.root)
    ids_count = 0
    cost = 0
    for leaf in _leaves(root):
        query = leaf.query
        is_scroll = query is None or isinstance(
            query, plan.Fusion | plan.OrderBy | plan.Sample | Formula
        )
        if not is_scroll:
            examples = plan.examples_of(query)
            id_count = sum(1 for example in examples if plan.is_point_id(example))
            ids_count += id_count
            # An id naming a point of another collection (lookup_from) costs 1: its vector
            # is not this collection's to read.
            fetched = stored_cost if leaf.lookup_from is None else None
            cost += _query_vectors_cost(query, examples, leaf.using, fetched)
            cost += filter_cost(leaf.filter) + (1 if id_count else 0)
        else:
            cost += BASE_COST + filter_cost(leaf.filter)
    return ids_count, cost


def search_cost(example: Any, filter_: filters.Filter | None) -> int:
    """A core search's cost: its vector's similarity cost plus its filter's conditions."""
    return _similarity_cost(example, "", None) + filter_cost(filter_)


def _query_vectors_cost(
    query: Any, examples: list[Any], using: str, stored_cost: StoredCost | None
) -> int:
    """`QueryEnum::search_cost`: each vector the search compares with, except recommend's
    `average_vector`, which searches with the one averaged vector (a sparse average has the
    union of the examples' dimensions)."""
    is_average = isinstance(query, plan.Recommend) and query.strategy == "average_vector"
    if not is_average:
        return sum(_similarity_cost(example, using, stored_cost) for example in examples)
    sparse = [example for example in examples if getattr(example, "indices", None) is not None]
    if not sparse:
        return 1
    dims = set().union(*(set(example.indices.tolist()) for example in sparse))
    return -(-len(dims) // SPARSE_DIMS_COST_UNIT)


def _leaves(node: plan.QueryNode) -> Iterator[plan.QueryNode]:
    """The nodes Qdrant's planner turns into shard searches and scrolls: those without
    prefetches (a node with prefetches rescores what they found)."""
    if not node.prefetch:
        yield node
        return
    for child in node.prefetch:
        yield from _leaves(child)


def _similarity_cost(example: Any, using: str, stored_cost: StoredCost | None) -> int:
    """`VectorInternal::similarity_cost`: a multivector costs its rows, a sparse vector its
    dimensions by SPARSE_DIMS_COST_UNIT, a dense one 1; an id, the vector it fetches."""
    if plan.is_point_id(example):
        return 1 if stored_cost is None else stored_cost(example, using)
    indices = getattr(example, "indices", None)
    if indices is not None:  # a SparseVector
        return max(0, -(-len(indices) // SPARSE_DIMS_COST_UNIT))
    if np.ndim(example) == 2:  # a multivector query: its rows
        return len(example)
    return 1


# ---- the cardinality estimate of a filtered write ------------------------------------------


def write_cost(
    op: Operation,
    total: int,
    count: Callable[[filters.Filter], int],
    indexes: IndexSchemas,
) -> int:
    """An op's cost (`estimate_effect_area`): the points it lists, else its filter's expected
    count (`count` counts the points of a filter: used for the conditions an index or the id
    map answers exactly, as Qdrant's estimate does); 0 for index changes."""
    if isinstance(op, UpsertPoints | UpdateVectors):
        return len(op.ids)
    if not isinstance(op, DeletePoints | UpdatePayload | DeleteVectors):
        return 0
    if op.filter is None:
        return len(op.ids or ())

    def exact_count(condition: filters.Condition) -> int | None:
        is_indexed = isinstance(
            condition, filters.FieldCondition | filters.IsEmptyCondition | filters.IsNullCondition
        ) and (condition.key in indexes)
        is_known = isinstance(condition, filters.HasIdCondition | filters.HasVectorCondition)
        if is_indexed or is_known:
            return count(filters.Filter(must=(condition,)))
        return None

    return estimated_points(op.filter, total, exact_count)


def estimated_points(
    filter_: filters.Filter, total: int, exact_count: Callable[[filters.Condition], int | None]
) -> int:
    """Qdrant's expected cardinality of a filter (query_estimator.rs `estimate_filter`, the
    `exp` figure): conditions combined as independent probabilities. `exact_count` gives a
    primitive condition's count when an index or the id map knows it (None: unknown, which
    Qdrant estimates as half the points)."""
    if total == 0:
        return 0
    parts: list[int] = []
    if filter_.must:
        parts.append(_must([_estimate(c, total, exact_count) for c in filter_.must], total))
    if filter_.should:
        parts.append(_should([_estimate(c, total, exact_count) for c in filter_.should], total))
    if filter_.min_should is not None:
        estimates = [_estimate(c, total, exact_count) for c in filter_.min_should.conditions]
        parts.append(_min_should(estimates, filter_.min_should.min_count, total))
    if filter_.must_not:
        inverted = [total - _estimate(c, total, exact_count) for c in filter_.must_not]
        parts.append(_must(inverted, total))
    return _must(parts, total)


def _estimate(
    condition: filters.Condition, total: int, exact_count: Callable[[filters.Condition], int | None]
) -> int:
    if isinstance(condition, filters.Filter):
        return estimated_points(condition, total, exact_count)
    if isinstance(condition, filters.SliceCondition):
        return total // condition.total
    count = exact_count(condition)
    return total // 2 if count is None else count


def _must(estimates: list[int], total: int) -> int:
    probability = math.prod(estimate / total for estimate in estimates)
    return round(probability * total)


def _should(estimates: list[int], total: int) -> int:
    miss_probability = math.prod(1.0 - estimate / total for estimate in estimates)
    return round((1.0 - miss_probability) * total)


def _min_should(estimates: list[int], min_count: int, total: int) -> int:
    if min_count > len(estimates):
        return 0
    subsets = itertools.islice(
        itertools.combinations(estimates, min_count), MIN_SHOULD_COMBINATIONS_MAX
    )
    return _should([_must(list(subset), total) for subset in subsets], total)
