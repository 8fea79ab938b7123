"""Payload index handlers: `PUT /collections/{c}/index`, `DELETE /collections/{c}/index/{f}`.

Owns: parsing `CreateFieldIndex` bodies (a schema type name, or a params object with `type`)
and the field path, and answering an UpdateResult; the index is a WAL operation, applied (and
built over the existing points) by the engine, with the same `wait`/`ordering`/`timeout`.
Not here: what an index holds or how filters use it (engine/store/payload_index.py, planner.py),
`payload_schema` in collection info (server/wire/collection_config.py).

Qdrant 1.19 (`src/actix/api/update_api.rs`, `lib/segment/src/types.rs`): a missing or null
`field_schema` is 400 "Bad request: Can't auto-detect field type, please specify
`field_schema` in the request"; a field without points, or without an index when deleting,
is fine. The one params check Qdrant's validation makes (`lib/segment/src/data_types/
index.rs`): an integer index needs `lookup` or `range` (422).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.errors import FormatError
from engine.filters.payload_path import PayloadPath
from engine.filters.text_match import TOKENIZERS
from engine.ops import CreateFieldIndex, DeleteFieldIndex, Operation
from engine.store.payload_index import SCHEMA_TYPES
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ApiError, ok, update_result_json
from server.wire.collection_config import MEMORY
from server.wire.schemas import parse_update_params
from server.wire.serde_text import (
    code_only_message,
    invalid_type,
    missing_field,
    untagged_mismatch,
    validation_errors,
)

AUTO_DETECT_TEXT = (
    "Bad request: Can't auto-detect field type, please specify `field_schema` in the request"
)
INTEGER_WITHOUT_CAPABILITY = code_only_message(
    "the 'lookup' and 'range' capabilities can't be both disabled"
)
# Params fields Keel accepts and keeps (for payload_schema); all are booleans or numbers or
# strings in Qdrant's spec, checked here by JSON type only.
BOOL_PARAMS = (
    "is_tenant",
    "on_disk",
    "enable_hnsw",
    "prefix",
    "lookup",
    "range",
    "is_principal",
    "lowercase",
    "ascii_folding",
    "phrase_matching",
)

# The fields of each `*IndexParams` in Qdrant 1.19's spec (besides `type` itself).
_COMMON_PARAMS = ("type", "on_disk", "memory", "enable_hnsw")
PARAMS_FIELDS_BY_TYPE = {
    "keyword": (*_COMMON_PARAMS, "is_tenant", "prefix"),
    "integer": (*_COMMON_PARAMS, "lookup", "range", "is_principal"),
    "float": (*_COMMON_PARAMS, "is_principal"),
    "geo": _COMMON_PARAMS,
    "text": (
        *_COMMON_PARAMS,
        "tokenizer",
        "min_token_len",
        "max_token_len",
        "lowercase",
        "ascii_folding",
        "phrase_matching",
        "stopwords",
        "stemmer",
    ),
    "bool": _COMMON_PARAMS,
    "datetime": (*_COMMON_PARAMS, "is_principal"),
    "uuid": (*_COMMON_PARAMS, "is_tenant"),
}
assert set(PARAMS_FIELDS_BY_TYPE) == set(SCHEMA_TYPES)


async def create_field_index(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    op = parse_create_field_index(await read_json(request))
    return await _update(request, name, op)


async def delete_field_index(request: web.Request) -> web.Response:
    name = collection_name_of(request)
    op = DeleteFieldIndex(_field_path(request.match_info["field_name"]))
    return await _update(request, name, op)


def parse_create_field_index(data: Any) -> CreateFieldIndex:
    """A CreateFieldIndex body; FormatError as serde words it, ApiError for no schema."""
    if type(data) is not dict:
        raise invalid_type(data, "struct CreateFieldIndex")
    if "field_name" not in data:
        raise missing_field("field_name")
    if type(data["field_name"]) is not str:
        raise invalid_type(data["field_name"], "a string")
    field_name = _field_path(data["field_name"])
    schema = data.get("field_schema")
    if schema is None:
        raise ApiError(400, AUTO_DETECT_TEXT)
    if type(schema) is str and schema in SCHEMA_TYPES:
        return CreateFieldIndex(field_name, schema, None)
    if type(schema) is dict and _is_valid_params(schema):
        is_capable = schema.get("lookup") is not False or schema.get("range") is not False
        if schema["type"] == "integer" and not is_capable:
            raise validation_errors([("field_schema.lookup", INTEGER_WITHOUT_CAPABILITY)])
        return CreateFieldIndex(field_name, schema["type"], _declared_params(schema))
    raise untagged_mismatch("PayloadFieldSchema")


def _is_valid_params(params: dict[str, Any]) -> bool:
    if params.get("type") not in SCHEMA_TYPES:
        return False
    for key in BOOL_PARAMS:
        if params.get(key) is not None and type(params[key]) is not bool:
            return False
    if params.get("tokenizer") is not None and params["tokenizer"] not in TOKENIZERS:
        return False
    if params.get("memory") is not None and params["memory"] not in MEMORY:
        return False
    for key in ("min_token_len", "max_token_len"):
        value = params.get(key)
        if value is not None and (type(value) is not int or value < 0):
            return False
    return True


def _declared_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params without the fields their type does not declare. Qdrant's serde ignores
    those; keeping them would echo them in `payload_schema`, outside Qdrant's spec."""
    declared = PARAMS_FIELDS_BY_TYPE[params["type"]]
    return {key: value for key, value in params.items() if key in declared}


def _field_path(text: str) -> str:
    """The field as Qdrant's JsonPath prints it (canonical), or a FormatError."""
    try:
        return str(PayloadPath.parse(text))
    except ValueError:
        raise FormatError(f"Invalid json path: '{text}'") from None


async def _update(request: web.Request, name: str, op: Operation) -> web.Response:
    params = parse_update_params(request.query)
    collection = catalog_of(request).get(name)
    if isinstance(op, CreateFieldIndex):  # Qdrant's strict mode looks at creations only
        await collection.check_writes([op], params.timeout_s)
    result = await collection.update(op, wait=params.wait, timeout_s=params.timeout_s)
    return ok(request, update_result_json(result))


COLLECTION = "/collections/{collection_name}"
ROUTES = [
    ("PUT", COLLECTION + "/index", create_field_index),
    ("DELETE", COLLECTION + "/index/{field_name}", delete_field_index),
]
