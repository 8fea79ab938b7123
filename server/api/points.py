"""Point handlers: writes (upsert, delete, payload, vectors, batch) and reads (retrieve,
scroll, count, search, query).

Owns: the routes under `/collections/{name}/points`; each parses (in Qdrant's order: path,
body, query string), looks the collection up, calls one engine method, shapes the answer.
Not here: what a valid body is (server/wire/schemas.py, server/wire/upsert.py, server/wire/updates.py), JSON of points
(responses.py).

Qdrant 1.19: `src/actix/api/update_api.rs` (every write answers an UpdateResult, batch a list
of them), `retrieve_api.rs` (scroll; a missing point is 404 "Point with id {id} does not
exists!", an unparsable one 400 "Can not recognize ..."), `count_api.rs`, `search_api.rs`
and `query_api.rs`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from engine.errors import NotFound
from engine.ops import PayloadSelector, SparseVector, UpdateResult, VectorSelector
from engine.strict_mode import checks as strict_checks
from engine.strict_mode.rate_limits import (
    filtered_read_costs,
    retrieve_read_costs,
    search_read_costs,
)
from server.api import query as query_api
from server.api.context import (
    catalog_of,
    collection_name_of,
    off_loop,
    parse_off_loop,
    read_body,
    read_json,
)
from server.responses import (
    ok,
    point_id_json,
    record_json,
    scored_points_json,
    update_result_json,
)
from server.wire import query, updates
from server.wire.schemas import (
    build_search,
    check_selected_vectors_exist,
    parse_count,
    parse_point_id_path,
    parse_read_params,
    parse_retrieve,
    parse_scroll,
    parse_search,
    parse_update_params,
)
from server.wire.upsert import build_upsert, parse_upsert_json


async def upsert_points(request: web.Request) -> web.Response:
    """PUT /points: the seed's three body forms; `wait` defaults to true."""
    name = collection_name_of(request)
    raw_body = await read_body(request)
    body = await off_loop(len(raw_body), parse_upsert_json, raw_body)
    params = parse_update_params(request.query)
    collection = catalog_of(request).get(name)
    op = await off_loop(len(raw_body), build_upsert, body, collection.config)
    updates.check_not_empty(op.ids)
    await collection.check_writes([op], params.timeout_s)
    result = await collection.update(op, wait=params.wait, timeout_s=params.timeout_s)
    return ok(request, update_result_json(result))


def single_write(parse: Callable[..., Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for a write endpoint whose body is one operation (delete, payload and vector
    edits): parse it with `parse`, log it, answer its UpdateResult."""

    async def handler(request: web.Request) -> web.Response:
        [result] = await _write(request, parse)
        return ok(request, update_result_json(result))

    handler.__name__ = parse.__name__.removeprefix("parse_")
    return handler


async def batch_update(request: web.Request) -> web.Response:
    """POST /points/batch: every operation checked first, then logged with consecutive ids."""
    results = await _write(request, updates.parse_batch)
    return ok(request, [update_result_json(result) for result in results])


async def retrieve_points(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    retrieve = parse_retrieve(await read_json(request))
    timeout_s = parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    collection.check_read(None, timeout_s, partial(retrieve_read_costs, retrieve.ids))
    records = await collection.retrieve(retrieve.ids, retrieve.with_payload, retrieve.with_vector)
    check_selected_vectors_exist(collection.config, retrieve.with_vector, bool(records))
    is_single_unnamed = collection.config.is_single_unnamed
    return ok(request, [record_json(record, is_single_unnamed) for record in records])


async def get_point(request: web.Request) -> web.Response:
    """One point with its payload and vectors (Qdrant asks for both here)."""
    name = collection_name_of(request)
    timeout_s = parse_read_params(request.query)
    point_id = parse_point_id_path(request.match_info["point_id"])
    collection = catalog_of(request).get(name)
    collection.check_read(None, timeout_s, partial(retrieve_read_costs, [point_id]))
    records = await collection.retrieve(
        [point_id], PayloadSelector(is_enabled=True), VectorSelector(is_enabled=True)
    )
    if not records:
        raise NotFound(f"Point with id {point_id} does not exists!")
    return ok(request, record_json(records[0], collection.config.is_single_unnamed))


async def scroll_points(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    data = await read_json(request)
    scroll = parse_scroll(data)
    timeout_s = parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    # Strict mode sees the limit the client gave (Qdrant's ScrollRequestInternal.limit).
    check = partial(strict_checks.check_scroll, data.get("limit"), scroll.filter)
    collection.check_read(check, timeout_s, partial(filtered_read_costs, scroll.filter))
    if scroll.order_by is not None:
        return await query_api.scroll_ordered(request, name, scroll)
    records, next_offset = await collection.scroll(
        scroll.filter, scroll.limit, scroll.offset, scroll.with_payload, scroll.with_vector
    )
    check_selected_vectors_exist(collection.config, scroll.with_vector, bool(records))
    is_single_unnamed = collection.config.is_single_unnamed
    return ok(
        request,
        {
            "points": [record_json(record, is_single_unnamed) for record in records],
            "next_page_offset": None if next_offset is None else point_id_json(next_offset),
        },
    )


async def count_points(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    data = await read_json(request)
    filter_ = parse_count(data)
    timeout_s = parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    # CountRequestInternal's `exact` defaults to true (strict mode's search_allow_exact).
    check = partial(strict_checks.check_count, filter_, data.get("exact", True))
    collection.check_read(check, timeout_s, partial(filtered_read_costs, filter_))
    return ok(request, {"count": await collection.count(filter_)})


async def search_points(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    data = await read_json(request)
    search = parse_search(data)
    timeout_s = parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    oversampling = query_api.node_params(data).oversampling
    check = partial(
        strict_checks.check_search,
        search.limit,
        search.filter,
        search.hnsw_ef,
        search.is_exact,
        oversampling,
    )
    costs = partial(search_read_costs, search.vector, search.filter)
    collection.check_read(check, timeout_s, costs)
    is_single_unnamed = collection.config.is_single_unnamed
    vector_config = collection.config.vectors.get(search.vector_name)
    is_multivector = vector_config is not None and vector_config.is_multivector
    # A NamedSparseVector, or a vector searching a multivector (MaxSim): the query engine's.
    if isinstance(search.vector, SparseVector) or is_multivector:
        scored = (await collection.query(query.search_as_query(search), {})).points
    else:
        scored = await collection.search(build_search(search, collection.config))
    check_selected_vectors_exist(collection.config, search.with_vector, bool(scored))
    return ok(request, scored_points_json(scored, is_single_unnamed))


async def _write(
    request: web.Request, parse: Callable[[Any], list[updates.PointWrite]]
) -> list[UpdateResult]:
    """The shared steps of the writes besides upsert: parse the body (off the loop when big),
    the query string, check every write against the collection, log them in one go."""
    name = collection_name_of(request)
    raw_body = await read_body(request)
    writes = await parse_off_loop(raw_body, parse)
    params = parse_update_params(request.query)
    collection = catalog_of(request).get(name)
    plan = await off_loop(len(raw_body), updates.plan_writes, writes, collection.config)
    if not plan.ops:
        return []  # an empty batch: Qdrant answers an empty list
    await collection.check_writes(plan.ops, params.timeout_s)
    results = await collection.update_many(plan.ops, wait=params.wait, timeout_s=params.timeout_s)
    return plan.answers(results)


POINTS = "/collections/{collection_name}/points"
ROUTES = [
    ("PUT", POINTS, upsert_points),
    ("POST", POINTS, retrieve_points),
    ("POST", POINTS + "/delete", single_write(updates.parse_delete)),
    ("POST", POINTS + "/payload", single_write(updates.parse_set_payload)),
    ("PUT", POINTS + "/payload", single_write(updates.parse_overwrite_payload)),
    ("POST", POINTS + "/payload/delete", single_write(updates.parse_delete_payload)),
    ("POST", POINTS + "/payload/clear", single_write(updates.parse_clear_payload)),
    ("PUT", POINTS + "/vectors", single_write(updates.parse_update_vectors)),
    ("POST", POINTS + "/vectors/delete", single_write(updates.parse_delete_vectors)),
    ("POST", POINTS + "/batch", batch_update),
    ("POST", POINTS + "/scroll", scroll_points),
    ("POST", POINTS + "/count", count_points),
    ("POST", POINTS + "/search", search_points),
    ("POST", POINTS + "/search/batch", query_api.search_batch),
    ("POST", POINTS + "/search/groups", query_api.search_groups),
    ("POST", POINTS + "/query", query_api.query_points),
    ("POST", POINTS + "/query/batch", query_api.query_batch),
    ("POST", POINTS + "/query/groups", query_api.query_groups),
    ("GET", POINTS + "/{point_id}", get_point),
]
