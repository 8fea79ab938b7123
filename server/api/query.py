"""The universal query's HTTP handlers: run parsed queries and shape Qdrant's answers.

Owns: `POST /points/query`, `/query/batch`, `/query/groups`, `/search/batch`,
`/search/groups`, scroll with `order_by`, Qdrant's checks after the collection is found
(`check_query`), the collections a query looks up, and the answer shapes (ScoredPoints,
groups, records with their `order_value`).
Not here: parsing bodies into plans (server/wire/query.py), running plans (engine/query/universal.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from engine.catalog import Catalog
from engine.collection import Collection
from engine.errors import BadRequest, NotFound
from engine.ops import UNNAMED_VECTOR, CollectionConfig
from engine.query.plan import (
    Fusion,
    Group,
    OrderBy,
    QueryNode,
    QueryRequest,
    QueryResult,
    VectorQuery,
    examples_of,
    is_point_id,
    lookup_collections,
    with_lookup_collection,
)
from engine.strict_mode import checks as strict_checks
from engine.strict_mode.checks import NodeParams, QueryCheck
from engine.strict_mode.fields import IndexSchemas
from engine.strict_mode.rate_limits import query_batch_read_costs
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import (
    ApiError,
    ok,
    point_id_json,
    record_json,
    scored_points_json,
    vectors_json,
)
from server.wire.query import (
    parse_query_batch,
    parse_query_groups,
    parse_query_request,
    parse_search_batch,
    parse_search_groups,
    scroll_as_query,
)
from server.wire.schemas import (
    ScrollBody,
    check_selected_vectors_exist,
    parse_read_params,
)

# Qdrant's local shard refuses an id offset in an ordered scroll (`shard_ops.rs`, scroll_by).
SCROLL_OFFSET_WITH_ORDER_BY = (
    "Cannot use an `offset` when using `order_by`. The alternative for paging is to use "
    "`order_by.start_from` and a filter to exclude the IDs that you've already seen for the "
    "`order_by.start_from` value"
)


async def query_points(request: web.Request) -> web.Response:
    """POST /points/query: `{"points": [ScoredPoint, ..]}`."""
    return await answer(request, parse_query_request, _query_response_json, is_universal=True)


async def query_batch(request: web.Request) -> web.Response:
    """POST /points/query/batch: one `{"points": [..]}` per search, in order."""
    return await answer(request, parse_query_batch, _query_response_json, is_universal=True)


async def search_batch(request: web.Request) -> web.Response:
    """POST /points/search/batch: one list of ScoredPoints per search, in order."""
    return await answer(request, parse_search_batch, points_json)


async def query_groups(request: web.Request) -> web.Response:
    """POST /points/query/groups: `{"groups": [{"id", "hits"}, ..]}`."""
    return await answer(request, parse_query_groups, groups_json, is_universal=True)


async def search_groups(request: web.Request) -> web.Response:
    return await answer(request, parse_search_groups, groups_json)


async def scroll_ordered(request: web.Request, name: str, scroll: ScrollBody) -> web.Response:
    """POST /points/scroll with `order_by`: one page of Records with their `order_value`;
    `next_page_offset` is always null, as in Qdrant."""
    query_request = scroll_as_query(scroll)
    collection = catalog_of(request).get(name)
    if scroll.offset is not None:
        raise BadRequest(SCROLL_OFFSET_WITH_ORDER_BY)
    result = await collection.query(query_request, {})
    check_selected_vectors_exist(collection.config, scroll.with_vector, bool(result.points))
    is_single_unnamed = collection.config.is_single_unnamed
    records = [
        _with_order_value(_record_json(point, is_single_unnamed), value)
        for point, value in zip(result.points, result.order_values or [])
    ]
    return ok(request, {"points": records, "next_page_offset": None})


async def answer(
    request: web.Request,
    parse: Callable[[Any], Any],
    shape: Callable[[QueryRequest, QueryResult, bool], Any],
    *,
    is_universal: bool = False,
) -> web.Response:
    """Parse the body (one request or a batch), run each query, shape each result.
    `is_universal`: a /points/query* request (strict mode checks its full scans)."""
    name = collection_name_of(request)
    data = await read_json(request)
    parsed = parse(data)
    timeout_s = parse_read_params(request.query)
    catalog = catalog_of(request)
    collection = catalog.get(name)
    is_batch = isinstance(parsed, list)
    requests = parsed if is_batch else [parsed]
    invalid = _first_invalid(requests)
    if invalid is not None and not any(_names_points(r.root) for r in requests):
        raise invalid
    check = partial(_check_strict_mode, requests, data, is_batch, is_universal)
    costs = partial(query_batch_read_costs, requests, collection.stored_similarity_cost)
    collection.check_read(check, timeout_s, costs)
    is_single_unnamed = collection.config.is_single_unnamed
    jobs = [(query_request, _lookups(catalog, query_request)) for query_request in requests]
    if invalid is not None:
        await _resolve_named_points(collection, jobs)
        raise invalid
    results = await collection.query_many(jobs)
    for query_request, result in zip(requests, results):
        is_any_found = bool(result.points) or any(group.hits for group in result.groups or ())
        check_selected_vectors_exist(collection.config, query_request.with_vector, is_any_found)
    answers = [
        shape(query_request, result, is_single_unnamed)
        for query_request, result in zip(requests, results)
    ]
    return ok(request, answers if isinstance(parsed, list) else answers[0])


def _first_invalid(requests: list[QueryRequest]) -> ApiError | None:
    for query_request in requests:
        try:
            check_query(query_request.root)
        except ApiError as error:
            return error
    return None


def _names_points(node: QueryNode) -> bool:
    """Whether the node or a prefetch names points by id (here or in `lookup_from`)."""
    query = node.query
    examples = examples_of(query) if isinstance(query, VectorQuery) else []
    return any(map(is_point_id, examples)) or any(map(_names_points, node.prefetch))


async def _resolve_named_points(
    collection: Collection, jobs: list[tuple[QueryRequest, dict[str, Collection]]]
) -> None:
    """Qdrant fetches the vectors of the points a query names before it validates the
    request (`check_query`), so a missing point or vector name is the answer then."""
    for query_request, lookups in jobs:
        await collection.resolve_named_points(query_request, lookups)


def check_query(node: QueryNode) -> None:
    """Qdrant's `CollectionQueryRequest::validation` (collection_query.rs), after the
    collection is found, in its order and words, for the node and its prefetches."""
    if node.prefetch and node.query is None:
        raise ApiError(
            400,
            "Bad request: A query is needed to merge the prefetches. "
            "Can't have prefetches without defining a query.",
        )
    if node.score_threshold is not None and isinstance(node.query, OrderBy):
        raise ApiError(400, "Bad request: Can't use score_threshold with an order_by query.")
    if node.score_threshold is not None and node.query is None:
        raise ApiError(
            400,
            "Bad request: A query is needed to use the score_threshold. "
            "Can't have score_threshold without defining a query.",
        )
    if isinstance(node.query, Fusion) and node.using != UNNAMED_VECTOR:
        raise ApiError(
            400, "Bad request: Fusion queries cannot be combined with the 'using' field."
        )
    for child in node.prefetch:
        check_query(child)


def _check_strict_mode(
    requests: list[QueryRequest],
    data: Any,
    is_batch: bool,
    is_universal: bool,
    config: CollectionConfig,
    indexes: IndexSchemas,
) -> None:
    """Strict mode's checks of the parsed requests, with what their bodies' `params` say
    that the plans drop (called only when the collection has strict mode on)."""
    raw_requests = data["searches"] if is_batch else [data]  # the parse checked the shape
    checks = [
        QueryCheck(query_request, node_params(raw), is_universal)
        for query_request, raw in zip(requests, raw_requests)
    ]
    strict_checks.check_queries(checks, is_batch, config, indexes)


def node_params(raw: Any) -> NodeParams:
    """The `params.quantization.oversampling` of a query body and of its prefetches (the
    plan drops it: Keel searches exactly), for strict mode's `search_max_oversampling`."""
    if not isinstance(raw, dict):
        return NodeParams()
    params = raw.get("params")
    quantization = params.get("quantization") if isinstance(params, dict) else None
    oversampling = quantization.get("oversampling") if isinstance(quantization, dict) else None
    prefetch = raw.get("prefetch")
    prefetches = prefetch if isinstance(prefetch, list) else [] if prefetch is None else [prefetch]
    is_number = type(oversampling) in (int, float)
    return NodeParams(
        oversampling=float(oversampling) if is_number else None,
        has_params=isinstance(params, dict),
        prefetch=tuple(node_params(child) for child in prefetches),
    )


def _lookups(catalog: Catalog, request: QueryRequest) -> dict[str, Collection]:
    """The collections named by `lookup_from` and `with_lookup`, checked in Qdrant's order
    (the query's own, then its prefetches', last listed first), so that of several missing
    ones the same is named."""
    names = [request.root.lookup_from.collection] if request.root.lookup_from else []
    stack = list(request.root.prefetch)
    while stack:
        prefetch = stack.pop()
        if prefetch.lookup_from is not None:
            names.append(prefetch.lookup_from.collection)
        stack.extend(prefetch.prefetch)
    with_lookup = with_lookup_collection(request)
    names += [with_lookup] if with_lookup is not None else []
    lookups: dict[str, Collection] = {}
    for name in names:
        if name not in lookups:
            lookups[name] = _lookup_collection(catalog, name)
    assert set(lookups) >= lookup_collections(request.root), (set(lookups), request.root)
    return lookups


def _lookup_collection(catalog: Catalog, name: str) -> Collection:
    # A missing `lookup_from` or `with_lookup` collection is 404 with words of its own, not
    # the catalog's "Collection `x` doesn't exist!": Qdrant's
    # validate_lookup_from_collection_exists (storage/src/content_manager/toc/point_ops.rs,
    # the query and its prefetches), fetch_vectors.rs and lookup/mod.rs all say so.
    if not catalog.exists(name):
        raise NotFound(f"Collection {name} not found")
    return catalog.get(name)


def points_json(_: QueryRequest, result: QueryResult, is_single_unnamed: bool) -> list[Any]:
    points = scored_points_json(result.points, is_single_unnamed)
    if result.order_values is not None:
        points = [_with_order_value(p, v) for p, v in zip(points, result.order_values)]
    return points


def _query_response_json(
    request: QueryRequest, result: QueryResult, is_single_unnamed: bool
) -> dict[str, Any]:
    return {"points": points_json(request, result, is_single_unnamed)}


def groups_json(
    request: QueryRequest, result: QueryResult, is_single_unnamed: bool
) -> dict[str, Any]:
    assert result.groups is not None
    groups: list[Group] = result.groups
    return {"groups": [_group_json(group, is_single_unnamed) for group in groups]}


def _group_json(group: Group, is_single_unnamed: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": group.id,
        "hits": scored_points_json(group.hits, is_single_unnamed),
    }
    if group.lookup is not None:
        body["lookup"] = record_json(group.lookup, is_single_unnamed)
    return body


def _record_json(point: Any, is_single_unnamed: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"id": point_id_json(point.id)}
    if point.payload is not None:
        body["payload"] = point.payload
    if point.vectors is not None:
        body["vector"] = vectors_json(point.vectors, is_single_unnamed)
    return body


def _with_order_value(body: dict[str, Any], value: Any) -> dict[str, Any]:
    return {**body, "order_value": value}
