"""Qdrant's pre-1.10 recommend and discover endpoints, as the universal queries they are.

Owns: `POST /points/recommend`, `/recommend/batch`, `/recommend/groups`, `/discover` and
`/discover/batch`. Qdrant 1.19 still serves them (`src/actix/api/recommend_api.rs`,
`discover_api.rs`) though its OpenAPI spec and qdrant-client 1.20 no longer list them; curl
examples from older docs use them. Each body is rewritten into the `POST /points/query` body
that means the same and parsed by server/wire/query.py, so both run the same engine code.
Not here: parsing queries (server/wire/query.py), running them (engine/query/universal.py).

Qdrant 1.19 `lib/collection/src/operations/types.rs` (RecommendRequestInternal,
RecommendGroupsRequestInternal, DiscoverRequestInternal: `limit` required, alias `top`;
`with_vectors` alias), `recommendations.rs` and `discovery.rs` (the example checks below,
in their words). Answers: a list of ScoredPoint (batch: one list per search); groups:
`{"groups": [..]}` as `/search/groups`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.api import query as query_api
from server.responses import ApiError
from server.wire import query
from server.wire.serde_text import invalid_type, missing_field

# Fields the legacy bodies share with QueryRequest, passed through unchanged.
SHARED_FIELDS = (
    "filter",
    "params",
    "limit",
    "offset",
    "with_payload",
    "with_vector",
    "with_vectors",
    "score_threshold",
    "using",
    "lookup_from",
    "group_by",
    "group_size",
    "with_lookup",
)


def recommend_as_query(data: Any, struct: str = "struct RecommendRequest") -> dict[str, Any]:
    """A RecommendRequest body as the `{"query": {"recommend": ..}}` body it means."""
    body = _shared(data, struct)
    positive, negative = data.get("positive") or [], data.get("negative") or []
    strategy = data.get("strategy") or "average_vector"
    if strategy == "average_vector" and not positive:
        raise ApiError(
            400, "Bad request: At least one positive vector ID required with this strategy"
        )
    if not positive and not negative:
        raise ApiError(
            400,
            "Bad request: At least one positive or negative vector ID required with this strategy",
        )
    recommend = {"positive": positive, "negative": negative, "strategy": strategy}
    return {**body, "query": {"recommend": recommend}}


def discover_as_query(data: Any) -> dict[str, Any]:
    """A DiscoverRequest body: a discover query with a target, else a context query."""
    body = _shared(data, "struct DiscoverRequest")
    target, context = data.get("target"), data.get("context") or []
    if type(context) is not list:
        raise invalid_type(context, "a sequence")
    if target is None and not context:
        raise ApiError(400, "Bad request: target and/or context_pairs must be specified")
    if target is None:
        return {**body, "query": {"context": context}}
    return {**body, "query": {"discover": {"target": target, "context": context}}}


def _shared(data: Any, struct: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid_type(data, struct)
    body = {key: data[key] for key in SHARED_FIELDS if key in data}
    if "limit" not in body and "top" in data:
        body["limit"] = data["top"]
    if "limit" not in body and "group_by" not in data:
        raise missing_field("limit")
    return body


def _parse_recommend(data: Any) -> Any:
    return query.parse_query_request(recommend_as_query(data))


def _parse_recommend_batch(data: Any) -> list[Any]:
    searches = query.searches_of(data, "struct RecommendRequestBatch")
    return [query.parse_query_request(recommend_as_query(item)) for item in searches]


def _parse_recommend_groups(data: Any) -> Any:
    if isinstance(data, dict):
        for name in ("group_by", "group_size", "limit"):
            if name not in data:
                raise missing_field(name)
    return query.parse_query_groups(recommend_as_query(data, "struct RecommendGroupsRequest"))


def _parse_discover(data: Any) -> Any:
    return query.parse_query_request(discover_as_query(data))


def _parse_discover_batch(data: Any) -> list[Any]:
    searches = query.searches_of(data, "struct DiscoverRequestBatch")
    return [query.parse_query_request(discover_as_query(item)) for item in searches]


async def recommend(request: web.Request) -> web.Response:
    return await query_api.answer(request, _parse_recommend, query_api.points_json)


async def recommend_batch(request: web.Request) -> web.Response:
    return await query_api.answer(request, _parse_recommend_batch, query_api.points_json)


async def recommend_groups(request: web.Request) -> web.Response:
    return await query_api.answer(request, _parse_recommend_groups, query_api.groups_json)


async def discover(request: web.Request) -> web.Response:
    return await query_api.answer(request, _parse_discover, query_api.points_json)


async def discover_batch(request: web.Request) -> web.Response:
    return await query_api.answer(request, _parse_discover_batch, query_api.points_json)


POINTS = "/collections/{collection_name}/points"
ROUTES = [
    ("POST", POINTS + "/recommend", recommend),
    ("POST", POINTS + "/recommend/batch", recommend_batch),
    ("POST", POINTS + "/recommend/groups", recommend_groups),
    ("POST", POINTS + "/discover", discover),
    ("POST", POINTS + "/discover/batch", discover_batch),
]
