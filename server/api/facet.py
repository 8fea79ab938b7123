"""`POST /collections/{name}/facet`: counts of the values of one payload key.

Owns: parsing Qdrant's FacetRequest (`key`, `limit` default 10, `filter`, `exact`,
`shard_key`) and shaping `{"hits": [{"value", "count"}]}`.
Not here: the counting (engine/query/reads.py `Reader.facet`), filters (server/wire/filters.py).

Qdrant 1.19 (src/actix/api/facet_api.rs, `FacetRequestInternal` in lib/api/src/rest/
schema.rs: `limit` at least 1, validated under `facet_request.`; the hit order in
lib/segment/src/data_types/facets.rs: count descending, then value ascending).
Difference: Qdrant needs a keyword, integer, bool or uuid payload index on `key` ("No
appropriate index for faceting: ..."); Keel counts by scanning the matching payloads, so it
needs none (with such an index, only values of its type are counted, as in Qdrant), and its
counts are always exact (`exact` is accepted either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from engine.errors import FormatError, NotImplementedYet
from engine.filters.conditions import Filter
from engine.filters.payload_path import PayloadPath
from engine.strict_mode import checks as strict_checks
from engine.strict_mode.rate_limits import filtered_read_costs
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ok
from server.wire.filters import parse_filter
from server.wire.schemas import parse_read_params
from server.wire.serde_text import invalid_type, missing_field, range_message, validation_errors

FACET_LIMIT_DEFAULT = 10
U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class FacetBody:
    key: PayloadPath
    limit: int
    filter: Filter | None
    limit_given: int | None = None  # as the client gave them, for strict mode
    is_exact: bool | None = None


async def facet(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    body = parse_facet(await read_json(request))
    timeout_s = parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    check = partial(strict_checks.check_facet, body.limit_given, body.filter, body.is_exact)
    collection.check_read(check, timeout_s, partial(filtered_read_costs, body.filter))
    hits = await collection.facet(body.key, body.filter, body.limit)
    return ok(request, {"hits": [{"value": value, "count": count} for value, count in hits]})


def parse_facet(data: Any) -> FacetBody:
    """A FacetRequest: 400 for a malformed body, 422 for `limit` 0, 501 for `shard_key`."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct FacetRequest")
    if "key" not in data:
        raise missing_field("key")
    if type(data["key"]) is not str:
        raise invalid_type(data["key"], "a string")
    try:
        key = PayloadPath.parse(data["key"])
    except ValueError:
        raise FormatError(f"Invalid json path: '{data['key']}'") from None
    limit = data.get("limit")
    if limit is None:
        limit = FACET_LIMIT_DEFAULT
    elif type(limit) is not int:
        raise invalid_type(limit, "usize")
    elif not 0 <= limit <= U64_MAX:
        raise FormatError(f"invalid value: integer `{limit}`, expected usize")
    if data.get("exact") is not None and type(data["exact"]) is not bool:
        raise invalid_type(data["exact"], "a boolean")
    filter_ = parse_filter(data.get("filter"), "facet_request.filter")
    if limit < 1:
        raise validation_errors([("facet_request.limit", range_message(limit, 1))])
    if data.get("shard_key") is not None:
        raise NotImplementedYet("shard keys are not supported by single-node Keel")
    return FacetBody(key, limit, filter_, data.get("limit"), data.get("exact"))


ROUTES = [("POST", "/collections/{collection_name}/facet", facet)]
