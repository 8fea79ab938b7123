"""Point handlers: upsert, delete, retrieve (many, one), search and query.

Owns: the routes under `/collections/{name}/points`; each parses (in Qdrant's order: path,
body, query string), looks the collection up, calls one engine method, shapes the answer.
Not here: what a valid body is (schemas.py, upsert.py), JSON of points (responses.py).

Qdrant 1.19: `src/actix/api/update_api.rs` (upsert, delete), `retrieve_api.rs` (a missing
point is 404 "Point with id {id} does not exists!", an unparsable one 400 "Can not
recognize ..."), `search_api.rs` and `query_api.rs`.
"""

from __future__ import annotations

from aiohttp import web

from engine.errors import NotFound
from engine.ops import PayloadSelector, VectorSelector
from server.context import catalog_of, off_loop, read_body, read_json
from server.responses import ok, record_json, scored_point_json, update_result_json
from server.schemas import (
    build_search,
    check_collection_name,
    parse_delete,
    parse_point_id_path,
    parse_query,
    parse_read_params,
    parse_retrieve,
    parse_search,
    parse_update_params,
)
from server.upsert import build_upsert, parse_upsert_json


async def upsert_points(request: web.Request) -> web.Response:
    """PUT /points: the seed's three body forms; `wait` defaults to true."""
    name = _collection_name(request)
    raw_body = await read_body(request)
    body = await off_loop(len(raw_body), parse_upsert_json, raw_body)
    params = parse_update_params(request.query)
    collection = catalog_of(request).get(name)
    op = await off_loop(len(raw_body), build_upsert, body, collection.config)
    result = await collection.update(op, wait=params.wait, timeout_s=params.timeout_s)
    return ok(request, update_result_json(result))


async def delete_points(request: web.Request) -> web.Response:
    name = _collection_name(request)
    op = parse_delete(await read_json(request))
    params = parse_update_params(request.query)
    collection = catalog_of(request).get(name)
    result = await collection.update(op, wait=params.wait, timeout_s=params.timeout_s)
    return ok(request, update_result_json(result))


async def retrieve_points(request: web.Request) -> web.Response:
    name = _collection_name(request)
    retrieve = parse_retrieve(await read_json(request))
    parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    records = await collection.retrieve(retrieve.ids, retrieve.with_payload, retrieve.with_vector)
    is_single_unnamed = collection.config.is_single_unnamed
    return ok(request, [record_json(record, is_single_unnamed) for record in records])


async def get_point(request: web.Request) -> web.Response:
    """One point with its payload and vectors (Qdrant asks for both here)."""
    name = _collection_name(request)
    parse_read_params(request.query)
    point_id = parse_point_id_path(request.match_info["point_id"])
    collection = catalog_of(request).get(name)
    records = await collection.retrieve(
        [point_id], PayloadSelector(is_enabled=True), VectorSelector(is_enabled=True)
    )
    if not records:
        raise NotFound(f"Point with id {point_id} does not exists!")
    return ok(request, record_json(records[0], collection.config.is_single_unnamed))


async def search_points(request: web.Request) -> web.Response:
    name = _collection_name(request)
    search = parse_search(await read_json(request))
    parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    scored = await collection.search(build_search(search, collection.config))
    is_single_unnamed = collection.config.is_single_unnamed
    return ok(request, [scored_point_json(point, is_single_unnamed) for point in scored])


async def query_points(request: web.Request) -> web.Response:
    name = _collection_name(request)
    query = parse_query(await read_json(request))
    parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    scored = await collection.search(build_search(query, collection.config))
    is_single_unnamed = collection.config.is_single_unnamed
    points = [scored_point_json(point, is_single_unnamed) for point in scored]
    return ok(request, {"points": points})


def _collection_name(request: web.Request) -> str:
    name = request.match_info["collection_name"]
    check_collection_name(name)
    return name


ROUTES = [
    ("PUT", "/collections/{collection_name}/points", upsert_points),
    ("POST", "/collections/{collection_name}/points", retrieve_points),
    ("POST", "/collections/{collection_name}/points/delete", delete_points),
    ("POST", "/collections/{collection_name}/points/search", search_points),
    ("POST", "/collections/{collection_name}/points/query", query_points),
    ("GET", "/collections/{collection_name}/points/{point_id}", get_point),
]
