"""Alias handlers: change aliases, list all, list a collection's.

Owns: `POST /collections/aliases`, `GET /aliases`, `GET /collections/{name}/aliases`; each
parses, calls one catalog method and shapes the answer.
Not here: resolving an alias in other routes (the catalog's `get` does it for every route).

Qdrant 1.19 (`src/actix/api/alias_api.rs`, `lib/storage/src/content_manager/toc/`): the
actions are create_alias / delete_alias / rename_alias; a missing alias is 404 `Alias x does
not exists!`. Keel applies the actions all or none (Qdrant stops at the first failing one,
keeping the earlier ones).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.catalog import AliasAction
from server.api.collections import check_timeout_param
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ok
from server.wire.serde_text import invalid_type, missing_field, untagged_mismatch

# action key -> (kind, required string fields in AliasAction order)
_ACTION_FIELDS = {
    "create_alias": ("create", ("alias_name", "collection_name")),
    "delete_alias": ("delete", ("alias_name",)),
    "rename_alias": ("rename", ("old_alias_name", "new_alias_name")),
}


async def change_aliases(request: web.Request) -> web.Response:
    actions = parse_alias_actions(await read_json(request))
    check_timeout_param(request.query)
    await catalog_of(request).change_aliases(actions)
    return ok(request, True)


async def list_aliases(request: web.Request) -> web.Response:
    return ok(request, _aliases_json(catalog_of(request).aliases()))


async def list_collection_aliases(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    return ok(request, _aliases_json(catalog_of(request).aliases(name)))


def parse_alias_actions(data: Any) -> list[AliasAction]:
    """ChangeAliasesOperation -> actions; serde's texts for a body of the wrong shape."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct ChangeAliasesOperation")
    if "actions" not in data:
        raise missing_field("actions")
    if not isinstance(data["actions"], list):
        raise invalid_type(data["actions"], "a sequence")
    return [_parse_action(item) for item in data["actions"]]


def _parse_action(item: Any) -> AliasAction:
    if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in _ACTION_FIELDS:
        raise untagged_mismatch("AliasOperations")
    key, body = next(iter(item.items()))
    kind, field_names = _ACTION_FIELDS[key]
    if not isinstance(body, dict) or any(not isinstance(body.get(f), str) for f in field_names):
        raise untagged_mismatch("AliasOperations")
    values = [body[f] for f in field_names]
    if kind == "create":
        return AliasAction("create", values[0], collection_name=values[1])
    if kind == "delete":
        return AliasAction("delete", values[0])
    return AliasAction("rename", values[0], new_alias_name=values[1])


def _aliases_json(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"aliases": [{"alias_name": a, "collection_name": c} for a, c in pairs]}


ROUTES = [
    ("POST", "/collections/aliases", change_aliases),
    ("GET", "/aliases", list_aliases),
    ("GET", "/collections/{collection_name}/aliases", list_collection_aliases),
]
