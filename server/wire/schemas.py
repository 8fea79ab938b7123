"""Request validation for Qdrant's REST API: bodies, query strings and paths -> engine types.

Owns: what a well-formed request is, checked in Qdrant's order and answered with Qdrant's
texts (path parameters, then the JSON body's format (400), then its validation (422), then
query parameters), before anything reaches the engine.
Not here: the upsert body (server/wire/upsert.py, the hot path), the other write bodies (server/wire/updates.py),
filters (server/wire/filters.py), collection configs (server/wire/collection_config.py), response shapes
(responses.py), the wording helpers (server/wire/serde_text.py).

Qdrant's behaviour read in its source (1.19): ids in `lib/segment/src/types.rs`
(`ExtendedPointId`), selectors `WithPayloadInterface`/`WithVector` (same file), bodies in
`lib/api/src/rest/schema.rs` and `lib/collection/src/operations/types.rs` (scroll and count:
`lib/shard/src/scroll.rs`, `count.rs`), query strings in
`src/common/update.rs` (`UpdateParams`) and `src/actix/api/read_params.rs`, collection
names in `lib/common/common/src/validation.rs` and `src/actix/api/mod.rs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from engine.errors import BadRequest, FormatError, missing_vector_name
from engine.filters.conditions import Filter
from engine.filters.payload_path import PayloadPath
from engine.limits import COLLECTION_NAME_BYTES_MAX, POINTS_PER_REQUEST_MAX, SCROLL_LIMIT_MAX
from engine.ops import (
    U64_MAX,
    UNNAMED_VECTOR,
    CollectionConfig,
    PayloadSelector,
    PointId,
    SearchRequest,
    SparseVector,
    VectorSelector,
)
from server.responses import ApiError
from server.wire.filters import parse_filter, parse_filter_collecting
from server.wire.formula import parse_f32
from server.wire.serde_text import (
    invalid_type,
    missing_field,
    range_message,
    rust_debug_str,
    unknown_variant,
    untagged_mismatch,
    validation_errors,
    value_display,
)

WRITE_ORDERINGS = ("weak", "medium", "strong")
READ_CONSISTENCY_TYPES = ("majority", "quorum", "all")
QUERY_DEFAULT_LIMIT = 10
SCROLL_DEFAULT_LIMIT = 10
# Qdrant's `validate_collection_name` (creation) and `..._legacy` (every other route).
NAME_CHARS_FORBIDDEN_ON_CREATE = '<>:"/\\|?*\0\x1f'
NAME_CHARS_FORBIDDEN = "/\0"
# Keel also refuses these everywhere: the name becomes a directory (DESIGN.md).
NAME_CHARS_FORBIDDEN_BY_KEEL = "\\"
NUMBER_TYPES = frozenset((int, float))
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
WITH_PAYLOAD_EXPECTING = (
    "Expected a boolean, an array of strings, or an object with an include/exclude field"
)
WITH_VECTOR_EXPECTING = "Expected a boolean, or an array of strings"
U32_MAX = 2**32 - 1  # sparse vector indices are u32 in Qdrant


@dataclass(frozen=True)
class UpdateParams:
    """Query parameters of a write: `wait` (Keel's default: true, as the seed says)."""

    wait: bool = True
    ordering: str = "weak"
    timeout_s: float | None = None


@dataclass(frozen=True)
class RetrieveRequest:
    ids: list[PointId]
    with_payload: PayloadSelector
    with_vector: VectorSelector


@dataclass(frozen=True)
class SearchBody:
    """A search or query body that passed the format checks, before the collection is known."""

    vector_name: str
    vector: list[Any]
    limit: int
    offset: int
    score_threshold: float | None
    hnsw_ef: int | None
    is_exact: bool
    with_payload: PayloadSelector
    with_vector: VectorSelector
    filter: Filter | None = None


@dataclass(frozen=True)
class ScrollBody:
    """POST /points/scroll: a page of points in id order from `offset`, matching `filter`."""

    filter: Filter | None  # None: every point
    limit: int
    offset: PointId | None
    with_payload: PayloadSelector
    with_vector: VectorSelector
    order_by: Any = None  # the raw `order_by` (server/wire/query.py parses it), None without


def load_json(body: bytes) -> Any:
    """Parse a request body; FormatError in serde_json's words where they can be matched."""
    if not body.strip():
        raise FormatError("EOF while parsing a value at line 1 column 0")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise FormatError(f"{error.msg} at line {error.lineno} column {error.colno}") from None


def parse_update_params(query: Mapping[str, str]) -> UpdateParams:
    """`wait`, `ordering`, `timeout` of an update; 400 in Qdrant's query-parameter words."""
    wait = True
    if "wait" in query:
        wait = _parse_query_bool(query["wait"])
    ordering = query.get("ordering", "weak")
    if ordering not in WRITE_ORDERINGS:
        raise _query_error(unknown_variant(ordering, WRITE_ORDERINGS).args[0])
    timeout_s = None
    if "timeout" in query:
        timeout_s = float(_parse_timeout_seconds(query["timeout"]))
    return UpdateParams(wait=wait, ordering=ordering, timeout_s=timeout_s)


def parse_read_params(query: Mapping[str, str]) -> float | None:
    """`consistency` (accepted; one node is always consistent) and `timeout` of a read."""
    consistency = query.get("consistency", "")
    if consistency and consistency not in READ_CONSISTENCY_TYPES and not consistency.isdigit():
        raise _query_error(
            f"failed to deserialize read consistency query parameter value '{consistency}'"
        )
    if "timeout" not in query:
        return None
    timeout_s = _parse_u64(query["timeout"])
    if timeout_s == 0:
        raise _query_error("invalid value: integer `0`, expected a nonzero u64")
    return float(timeout_s)


def check_collection_name(name: str, *, is_create: bool = False) -> None:
    """422 for a name Qdrant rejects, and for names Keel cannot store (`.`, `..`, `\\`)."""
    forbidden = NAME_CHARS_FORBIDDEN_ON_CREATE if is_create else NAME_CHARS_FORBIDDEN
    message = None
    if not 1 <= len(name) <= 255:
        message = f"value {rust_debug_str(name)} invalid, must be from 1 to 255 characters"
    elif bad := next((c for c in forbidden + NAME_CHARS_FORBIDDEN_BY_KEEL if c in name), None):
        message = f'collection name cannot contain "{bad}" char'
    elif name in (".", ".."):
        message = f'collection name cannot be "{name}"'
    elif len(name.encode()) > COLLECTION_NAME_BYTES_MAX:
        message = f"collection name must be at most {COLLECTION_NAME_BYTES_MAX} bytes long"
    if message is not None:
        raise ApiError(422, f"Validation error in path parameters: [collection_name: {message}]")


def parse_point_id(value: Any) -> PointId:
    """A JSON point id: an unsigned 64-bit integer or a UUID string (any form Rust accepts)."""
    if type(value) is int and 0 <= value <= U64_MAX:
        return value
    if type(value) is str:
        parsed = parse_uuid(value)
        if parsed is not None:
            return parsed
    raise FormatError(
        f"value {value_display(value)} is not a valid point ID, "
        "valid values are either an unsigned integer or a UUID"
    )


def parse_point_id_path(text: str) -> PointId:
    """A point id in a URL path: Rust's `u64::from_str` (an optional `+`), then a UUID."""
    digits = text.removeprefix("+")
    if digits.isascii() and digits.isdigit() and int(digits) <= U64_MAX:
        return int(digits)
    parsed = parse_uuid(text)
    if parsed is None:
        raise ApiError(400, f'Wrong input: Can not recognize "{text}" as point id')
    return parsed


def parse_uuid(text: str) -> uuid.UUID | None:
    """The `uuid` crate's `parse_str`: simple, hyphenated, `{braced}` or `urn:uuid:` forms.

    Python's uuid.UUID accepts more (hyphens anywhere, braces around the simple form), so
    the shape is checked here first; hex digits are case-insensitive.
    """
    length = len(text)
    if length == 32:
        hex_text: str | None = text
    elif length == 36:
        hex_text = _unhyphenate(text)
    elif length == 38 and text[0] == "{" and text[-1] == "}":
        hex_text = _unhyphenate(text[1:-1])
    elif length == 45 and text.startswith("urn:uuid:"):
        hex_text = _unhyphenate(text[9:])
    else:
        return None
    if hex_text is None or not HEX_DIGITS.issuperset(hex_text):
        return None
    return uuid.UUID(hex=hex_text)


def parse_point_ids(value: Any) -> list[PointId]:
    """A JSON array of point ids, bounded by POINTS_PER_REQUEST_MAX."""
    if type(value) is not list:
        raise invalid_type(value, "a sequence")
    check_point_count(len(value))
    return [parse_point_id(item) for item in value]


def check_point_count(count: int) -> None:
    if count > POINTS_PER_REQUEST_MAX:
        raise FormatError(
            f"too many points in one request: {count}, at most {POINTS_PER_REQUEST_MAX}"
        )


def parse_retrieve(data: Any) -> RetrieveRequest:
    """POST /points: ids, `with_payload` (default true), `with_vector` (default false)."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct PointRequest")
    if "ids" not in data:
        raise missing_field("ids")
    ids = parse_point_ids(data["ids"])
    with_payload = parse_with_payload(data.get("with_payload"), default=True)
    return RetrieveRequest(ids, with_payload, parse_with_vector(_with_vector_field(data)))


def parse_search(data: Any) -> SearchBody:
    """POST /points/search (SearchRequestInternal, flattened under `search_request`)."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct SearchRequest")
    if "vector" not in data:
        raise missing_field("vector")
    vector_name, vector = _parse_named_vector_struct(data["vector"])
    filter_errors: list[tuple[str, str]] = []
    filter_ = parse_filter_collecting(data.get("filter"), "search_request.filter", filter_errors)
    hnsw_ef, is_exact = _parse_search_params(data.get("params"))
    limit_field = "top" if "limit" not in data and "top" in data else "limit"
    if limit_field not in data:
        raise missing_field("limit")
    limit = parse_usize(data[limit_field])
    body = _search_body(data, vector_name, vector, limit, hnsw_ef, is_exact, filter_)
    _validate_limits("search_request", limit, hnsw_ef, filter_errors)
    return body


def parse_scroll(data: Any) -> ScrollBody:
    """POST /points/scroll (ScrollRequestInternal, flattened under `scroll_request`).

    `limit` default 10, at least 1; Keel also caps it at SCROLL_LIMIT_MAX (Qdrant has no
    cap): a bigger page is refused rather than cut short. `order_by` is kept raw for
    server/wire/query.py.
    """
    if not isinstance(data, dict):
        raise invalid_type(data, "struct ScrollRequest")
    offset = None if data.get("offset") is None else parse_point_id(data["offset"])
    limit = SCROLL_DEFAULT_LIMIT if data.get("limit") is None else parse_usize(data["limit"])
    errors: list[tuple[str, str]] = []
    filter_ = parse_filter_collecting(data.get("filter"), "scroll_request.filter", errors)
    with_payload = parse_with_payload(data.get("with_payload"), default=True)
    with_vector = parse_with_vector(_with_vector_field(data))
    if not 1 <= limit <= SCROLL_LIMIT_MAX:
        maximum = None if limit < 1 else SCROLL_LIMIT_MAX
        errors.insert(0, ("scroll_request.limit", range_message(limit, 1, maximum)))
    if errors:
        raise validation_errors(errors)
    return ScrollBody(filter_, limit, offset, with_payload, with_vector, data.get("order_by"))


def parse_count(data: Any) -> Any:
    """POST /points/count: the filter (None: every point). `exact` is accepted either way;
    Keel's count is always exact."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct CountRequest")
    filter_ = parse_filter(data.get("filter"), "count_request.filter")
    if "exact" in data and type(data["exact"]) is not bool:
        raise invalid_type(data["exact"], "a boolean")
    return filter_


def build_search(body: SearchBody, config: CollectionConfig) -> SearchRequest:
    """Check the query vector against the collection (Qdrant's words) and build the request."""
    vector_config = config.vectors.get(body.vector_name)
    if vector_config is None:
        raise missing_vector_name(body.vector_name)
    if len(body.vector) != vector_config.size:
        raise BadRequest(
            f"Vector dimension error: expected dim: {vector_config.size}, got {len(body.vector)}"
        )
    vector = np.array(body.vector, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise BadRequest("query vector contains a number that is not finite as a float32")
    return SearchRequest(
        vector_name=body.vector_name,
        vector=vector,
        limit=body.limit,
        offset=body.offset,
        score_threshold=body.score_threshold,
        hnsw_ef=body.hnsw_ef,
        is_exact=body.is_exact,
        with_payload=body.with_payload,
        with_vector=body.with_vector,
        filter=body.filter,
    )


def parse_with_payload(value: Any, *, default: bool) -> PayloadSelector:
    """`true`/`false`, a list of keys, `{"include": [..]}` or `{"exclude": [..]}`."""
    if value is None:
        return PayloadSelector(is_enabled=default)
    if type(value) is bool:
        return PayloadSelector(is_enabled=value)
    if _is_path_list(value):
        return PayloadSelector(is_enabled=True, include=tuple(value))
    if isinstance(value, dict) and len(value) == 1:
        if _is_path_list(value.get("include")):
            return PayloadSelector(is_enabled=True, include=tuple(value["include"]))
        if _is_path_list(value.get("exclude")):
            return PayloadSelector(is_enabled=True, exclude=tuple(value["exclude"]))
    raise FormatError(WITH_PAYLOAD_EXPECTING)


def _is_path_list(value: Any) -> bool:
    """A list of Qdrant JsonPaths (engine/query/payload_selection.py applies them)."""
    if not _is_string_list(value):
        return False
    try:
        for key in value:
            PayloadPath.parse(key)
    except ValueError:
        return False
    return True


def parse_with_vector(value: Any) -> VectorSelector:
    """`true`/`false` or a list of vector names (default false)."""
    if value is None:
        return VectorSelector(is_enabled=False)
    if type(value) is bool:
        return VectorSelector(is_enabled=value)
    if _is_string_list(value):
        return VectorSelector(is_enabled=True, names=tuple(value))
    raise FormatError(WITH_VECTOR_EXPECTING)


def check_selected_vectors_exist(
    config: CollectionConfig, with_vector: VectorSelector, is_any_found: bool
) -> None:
    """BadRequest for the first selected vector name the collection does not have.

    Qdrant's segment checks the names only as it reads a found point's vectors
    (`segment/read_view/vectors.rs`), so a read that finds nothing answers 200 whatever
    the names."""
    if not is_any_found or with_vector.names is None:
        return
    for name in with_vector.names:
        if name not in config.vectors and name not in config.sparse_vectors:
            raise missing_vector_name(name)


def parse_usize(value: Any) -> int:
    """serde's usize: a non-negative JSON integer (no floats, no bools)."""
    if type(value) is not int:
        raise invalid_type(value, "usize")
    if value < 0 or value > U64_MAX:
        raise FormatError(f"invalid value: integer `{value}`, expected usize")
    return value


# ---- private helpers -----------------------------------------------------------------------


def _query_error(message: str) -> ApiError:
    return ApiError(400, f"Deserialize error in query parameters: {message}")


def _parse_query_bool(text: str) -> bool:
    # serde_urlencoded parses with Rust's `bool::from_str`: exactly `true` or `false`.
    if text == "true":
        return True
    if text == "false":
        return False
    raise _query_error("provided string was not `true` or `false`")


def _parse_timeout_seconds(text: str) -> int:
    """Qdrant's `DurationSeconds<String>`: an i64 in the string, not negative; Keel adds ≥ 1."""
    seconds = _parse_i64(text)
    if seconds < 0:
        raise _query_error("std::time::Duration cannot be negative")
    if seconds == 0:
        # Qdrant would wait zero seconds; the spec says minimum 1 and so does Keel.
        raise _query_error(range_message(0, 1))
    return seconds


def _parse_i64(text: str) -> int:
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits:
        raise _query_error("cannot parse integer from empty string")
    if not (digits.isascii() and digits.isdigit()):
        raise _query_error("invalid digit found in string")
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise _query_error("number too large to fit in target type")
    return value


def _parse_u64(text: str) -> int:
    digits = text.removeprefix("+")
    if not digits:
        raise _query_error("cannot parse integer from empty string")
    if not (digits.isascii() and digits.isdigit()):
        raise _query_error("invalid digit found in string")
    if int(digits) > U64_MAX:
        raise _query_error("number too large to fit in target type")
    return int(digits)


def _unhyphenate(text: str) -> str | None:
    if text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return None
    return text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]


def _is_string_list(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _with_vector_field(data: dict[str, Any]) -> Any:
    # serde's `alias = "with_vectors"`.
    return data["with_vector"] if "with_vector" in data else data.get("with_vectors")


def _is_number_list(value: Any) -> bool:
    return type(value) is list and NUMBER_TYPES.issuperset(map(type, value))


def parse_sparse_vector(value: Any) -> SparseVector:
    """A shape-checked, validated `{"indices", "values"}` -> SparseVector sorted by index."""
    if len(value["indices"]) != len(value["values"]):
        raise BadRequest("Validation error: values: must be the same length as indices")
    if len(set(value["indices"])) != len(value["indices"]):
        raise BadRequest("Validation error: indices: must be unique")
    indices = np.asarray(value["indices"], dtype=np.uint32)
    with np.errstate(over="ignore"):
        values = np.asarray(value["values"], dtype=np.float32)
    if not np.isfinite(values).all():
        raise BadRequest("sparse vector has a value that is not a finite float32")
    order = np.argsort(indices, kind="stable")
    return SparseVector(indices[order], values[order])


def is_sparse_value(value: Any) -> bool:
    """The shape of Qdrant's SparseVector: indices u32, values numbers (phase 1)."""
    if type(value) is not dict or set(value) != {"indices", "values"}:
        return False
    indices, values = value["indices"], value["values"]
    return (
        type(indices) is list
        and type(values) is list
        and all(type(i) is int and 0 <= i <= U32_MAX for i in indices)
        and NUMBER_TYPES.issuperset(map(type, values))
    )


def _parse_named_vector_struct(value: Any) -> tuple[str, Any]:
    """Search's `vector`: a list (unnamed), `{"name": .., "vector": [..]}` or a
    NamedSparseVector `{"name": .., "vector": {"indices": [..], "values": [..]}}`."""
    if _is_number_list(value):
        return UNNAMED_VECTOR, value
    if isinstance(value, dict) and type(value.get("name")) is str:
        inner = value.get("vector")
        if _is_number_list(inner):
            return value["name"], inner
        if is_sparse_value(inner):
            return value["name"], parse_sparse_vector(inner)
    raise untagged_mismatch("NamedVectorStruct")


def _parse_search_params(value: Any) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    if not isinstance(value, dict):
        raise invalid_type(value, "struct SearchParams")
    hnsw_ef = value.get("hnsw_ef")
    if hnsw_ef is not None:
        hnsw_ef = parse_usize(hnsw_ef)
    is_exact = value.get("exact", False)
    if type(is_exact) is not bool:
        raise invalid_type(is_exact, "a boolean")
    return hnsw_ef, is_exact


def _search_body(
    data: dict[str, Any],
    vector_name: str,
    vector: list[Any],
    limit: int,
    hnsw_ef: int | None,
    is_exact: bool,
    filter_: Filter | None,
) -> SearchBody:
    offset = data.get("offset")
    offset = 0 if offset is None else parse_usize(offset)
    score_threshold = data.get("score_threshold")  # an f32 in Qdrant, as in query.py
    score_threshold = None if score_threshold is None else parse_f32(score_threshold)
    return SearchBody(
        vector_name=vector_name,
        vector=vector,
        limit=limit,
        offset=offset,
        score_threshold=score_threshold,
        hnsw_ef=hnsw_ef,
        is_exact=is_exact,
        # Search and query return no payload unless asked (Qdrant: "Default is false").
        with_payload=parse_with_payload(data.get("with_payload"), default=False),
        with_vector=parse_with_vector(_with_vector_field(data)),
        filter=filter_,
    )


def _validate_limits(
    prefix: str, limit: int, hnsw_ef: int | None, filter_errors: list[tuple[str, str]]
) -> None:
    errors = []
    if limit < 1:
        errors.append((f"{prefix}.limit", range_message(limit, 1)))
    if hnsw_ef is not None and hnsw_ef < 1:
        errors.append((f"{prefix}.params.hnsw_ef", range_message(hnsw_ef, 1)))
    errors.extend(filter_errors)
    if errors:
        raise validation_errors(errors)
