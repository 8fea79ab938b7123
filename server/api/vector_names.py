"""Vector-name handlers: `PUT` and `DELETE /collections/{c}/vectors/{vector_name}`.

Owns: the two routes of Qdrant 1.19's named-vector CRUD; each parses, calls
`Collection.update_vector_names` (a WAL operation, with the same `wait`/`ordering`/`timeout`
as a point write) and answers an UpdateResult.
Not here: the body's forms (server/wire/vector_name_config.py), which names may be added
(engine/validation.py), what applying does (engine/store/store.py, engine/collection.py).

Qdrant 1.19 (`src/actix/api/vector_name_api.rs`, `src/common/update.rs`): adding a name that
exists with the same space changes nothing and answers as a write; with another space or
kind, 400. Deleting a name the collection does not have changes nothing. The unnamed vector
has the empty name, which no path can spell.
"""

from __future__ import annotations

from aiohttp import web

from engine.ops import CreateVectorName, DeleteVectorName
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ok, update_result_json
from server.wire.schemas import parse_update_params
from server.wire.vector_name_config import check_vector_name_path, parse_vector_name_config


async def create_vector_name(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    vector_name = request.match_info["vector_name"]
    check_vector_name_path(vector_name)
    op = parse_vector_name_config(vector_name, await read_json(request))
    return await _update(request, name, op)


async def delete_vector_name(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    vector_name = request.match_info["vector_name"]
    check_vector_name_path(vector_name)
    return await _update(request, name, DeleteVectorName(vector_name))


async def _update(
    request: web.Request, name: str, op: CreateVectorName | DeleteVectorName
) -> web.Response:
    params = parse_update_params(request.query)
    collection = catalog_of(request).get(name)
    result = await collection.update_vector_names(op, wait=params.wait, timeout_s=params.timeout_s)
    return ok(request, update_result_json(result))


VECTOR_NAME = "/collections/{collection_name}/vectors/{vector_name}"
ROUTES = [
    ("PUT", VECTOR_NAME, create_vector_name),
    ("DELETE", VECTOR_NAME, delete_vector_name),
]
