"""Bodies of the point writes besides upsert -> engine operations: delete, payload, vectors, batch.

Owns: `POST /points/delete`, the four payload bodies (`SetPayload` for set and overwrite,
`DeletePayload`, the `PointsSelector` of clear), `UpdateVectors`, `DeleteVectors` and the
`UpdateOperations` of `POST /points/batch`, parsed in two phases like server/wire/upsert.py's:
1. `parse_*(data)` -> `PointWrite`s: the format (400 `Format error in JSON body: ...`), then
   the validation (422 `Validation error in JSON body: [...]`); needs no collection.
2. `plan_writes(writes, config)` -> `WritePlan`: the engine ops, vectors checked against the
   collection (400 `Wrong input: ...`), Qdrant's `Bad request: ...` for empty selections.
Nothing invalid gets past phase 2, and a batch is checked whole before any op is logged.
Not here: the upsert body itself (server/wire/upsert.py), filters (server/wire/filters.py), handlers (server/api/points.py).

Qdrant 1.19, read in its source (not copied):
- `SetPayload`/`DeletePayload` (lib/shard/src/operations/payload_ops.rs) deserialize through a
  shadow struct whose `try_from` fails with "Either list of point ids or filter must be
  provided" when both are absent (null counts as absent). With both, the id list wins and
  the filter is ignored (`process_payload_operation` in lib/shard/src/update/mod.rs,
  `resolve_points_or_filter` in lib/shard/src/resolve.rs). Overwrite ignores `key`
  (`do_overwrite_payload`, src/common/update.rs). Keys are `JsonPath`s
  (lib/segment/src/json_path/parse.rs): an invalid one is "Invalid json path: '<path>'".
- `PointsSelector` (lib/collection/src/operations/point_ops.rs) is untagged: ids first, then
  `{"filter": ..}`; anything else is serde's "did not match any variant" text.
- `UpdateVectors` and `PointVectors` (lib/api/src/rest/schema.rs, validate.rs): at least one
  point ("must specify points to update"), each with a vector ("must specify vectors to
  update for point"); `DeleteVectors` (lib/collection/src/operations/vector_ops.rs): at least
  one name ("must specify vector names to delete"); with both a filter and ids Qdrant runs
  two operations, filter first, and answers the second (`do_delete_vectors`); with neither,
  400 "Bad request: No filter or points provided".
- An explicit empty id list reaches no shard: 400 "Bad request: Empty update request"
  (`update_from_client`, lib/collection/src/collection/point_ops.rs), after the collection
  lookup (404 first).
- `UpdateOperation` is an untagged enum of one-key structs (src/common/update.rs): any format
  error inside an operation reads "data did not match any variant of untagged enum
  UpdateOperation"; validation paths are `operations[i].<kind>.<field>`.
Keel differs on purpose: a batch is validated whole and logged with consecutive op ids
(Qdrant applies the operations before a bad one); at most BATCH_OPERATIONS_MAX operations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import FormatError
from engine.filters.payload_path import PayloadPath
from engine.limits import BATCH_OPERATIONS_MAX
from engine.ops import (
    CollectionConfig,
    DeletePoints,
    DeleteVectors,
    Operation,
    PayloadMode,
    PointId,
    UpdatePayload,
    UpdateResult,
    UpdateVectors,
)
from server.responses import ApiError
from server.wire.filters import parse_filter_collecting
from server.wire.schemas import check_point_count, parse_point_id, parse_point_ids
from server.wire.serde_text import invalid_type, missing_field, untagged_mismatch, validation_errors
from server.wire.upsert import (
    build_point_vectors,
    build_upsert,
    check_point_vector,
    parse_upsert_parts,
    point_vector_errors,
)

# Qdrant sets no bound; every op of a batch becomes one WAL record, appended together.
NO_SELECTOR = "Either list of point ids or filter must be provided"

Errors = list[tuple[str, str]]
# Phase 2 of one write: its engine ops, given the collection's config.
OpsBuilder = Callable[[CollectionConfig], list[Operation]]


@dataclass(frozen=True)
class PointWrite:
    """One write of a request (an endpoint's body, or one operation of a batch), well-formed
    but not yet checked against a collection."""

    build_ops: OpsBuilder


@dataclass(frozen=True)
class WritePlan:
    """The engine ops of a request's writes, in order, and which op answers for each write
    (the last of its ops: Qdrant answers a two-op delete_vectors with the second)."""

    ops: list[Operation]
    answer_indexes: list[int]

    def answers(self, results: list[UpdateResult]) -> list[UpdateResult]:
        assert len(results) == len(self.ops), (len(results), len(self.ops))
        return [results[index] for index in self.answer_indexes]


def plan_writes(writes: list[PointWrite], config: CollectionConfig) -> WritePlan:
    """Phase 2 for every write of a request; raises before anything is logged."""
    ops: list[Operation] = []
    answer_indexes = []
    for write in writes:
        write_ops = write.build_ops(config)
        assert write_ops, "every write becomes at least one op"
        ops.extend(write_ops)
        answer_indexes.append(len(ops) - 1)
    return WritePlan(ops, answer_indexes)


# ---- phase 1, one function per body --------------------------------------------------------


def parse_delete(data: Any) -> list[PointWrite]:
    """POST /points/delete: a PointsSelector."""
    return [_raise_errors(*_delete_write(data, ""))]


def parse_set_payload(data: Any) -> list[PointWrite]:
    """POST /points/payload: merge `payload` into the selected points (at `key` if given)."""
    return [_raise_errors(*_set_payload_write(data, "", PayloadMode.SET))]


def parse_overwrite_payload(data: Any) -> list[PointWrite]:
    """PUT /points/payload: replace the selected points' payload (`key` is ignored)."""
    return [_raise_errors(*_set_payload_write(data, "", PayloadMode.OVERWRITE))]


def parse_delete_payload(data: Any) -> list[PointWrite]:
    """POST /points/payload/delete: remove `keys` from the selected points' payload."""
    return [_raise_errors(*_delete_payload_write(data, ""))]


def parse_clear_payload(data: Any) -> list[PointWrite]:
    """POST /points/payload/clear: a PointsSelector."""
    return [_raise_errors(*_clear_payload_write(data, ""))]


def parse_update_vectors(data: Any) -> list[PointWrite]:
    """PUT /points/vectors: replace the named vectors given, keep the others."""
    return [_raise_errors(*_update_vectors_write(data, ""))]


def parse_delete_vectors(data: Any) -> list[PointWrite]:
    """POST /points/vectors/delete: remove the named vectors of the selected points."""
    return [_raise_errors(*_delete_vectors_write(data, ""))]


def parse_batch(data: Any) -> list[PointWrite]:
    """POST /points/batch: `{"operations": [{"<kind>": body}, ...]}`, every body checked."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct UpdateOperations")
    if "operations" not in data:
        raise missing_field("operations")
    operations = data["operations"]
    if type(operations) is not list:
        raise invalid_type(operations, "a sequence")
    if len(operations) > BATCH_OPERATIONS_MAX:
        raise FormatError(
            f"too many operations in one request: {len(operations)}, at most {BATCH_OPERATIONS_MAX}"
        )
    writes, errors = [], []
    for index, operation in enumerate(operations):
        write, operation_errors = _batch_operation(operation, f"operations[{index}].")
        writes.append(write)
        errors.extend(operation_errors)
    if errors:
        raise validation_errors(errors)
    return writes


def parse_points_selector(
    data: Any, prefix: str, errors: Errors
) -> tuple[list[PointId] | None, Any]:
    """Qdrant's untagged PointsSelector: (ids, None) for `{"points": [..]}`, else
    (None, filter) for `{"filter": {..}}`; serde's variant text for anything else.
    The filter's validation errors are appended to `errors`."""
    if isinstance(data, dict) and "points" in data:
        if type(data["points"]) is list:
            check_point_count(len(data["points"]))
        try:
            return parse_point_ids(data["points"]), None
        except FormatError:
            pass  # then the filter form is tried, as serde does
    if isinstance(data, dict) and data.get("filter") is not None:
        try:
            return None, parse_filter_collecting(data["filter"], f"{prefix}filter", errors)
        except FormatError:
            pass
    raise untagged_mismatch("PointsSelector")


def parse_json_path(value: Any) -> str:
    """A payload key as Qdrant's JsonPath, in its canonical form (what the WAL records)."""
    if type(value) is not str:
        raise invalid_type(value, "a string")
    try:
        return str(PayloadPath.parse(value))
    except ValueError:
        raise FormatError(f"Invalid json path: '{value}'") from None


# ---- phase 1 of each kind: (write, validation errors), paths under `prefix` ----------------


def _delete_write(data: Any, prefix: str) -> tuple[PointWrite, Errors]:
    errors: Errors = []
    ids, filter_ = parse_points_selector(data, prefix, errors)
    if ids is None:
        return _fixed_write(None, DeletePoints(ids=[], filter=filter_)), errors
    return _fixed_write(ids, DeletePoints(ids=ids)), errors


def _clear_payload_write(data: Any, prefix: str) -> tuple[PointWrite, Errors]:
    errors: Errors = []
    ids, filter_ = parse_points_selector(data, prefix, errors)
    return _fixed_write(ids, UpdatePayload(ids, PayloadMode.CLEAR, filter=filter_)), errors


def _set_payload_write(data: Any, prefix: str, mode: PayloadMode) -> tuple[PointWrite, Errors]:
    errors: Errors = []
    fields = _struct_fields(
        data,
        "SetPayloadShadow",
        {
            "payload": _parse_payload,
            "points": _parse_optional_ids,
            "filter": lambda value: parse_filter_collecting(value, f"{prefix}filter", errors),
            "key": lambda value: None if value is None else parse_json_path(value),
        },
    )
    if "payload" not in fields:
        raise missing_field("payload")
    ids, filter_ = _selection(fields)
    key = fields.get("key") if mode is PayloadMode.SET else None
    op = UpdatePayload(ids, mode, payload=fields["payload"], key=key, filter=filter_)
    return _fixed_write(ids, op), errors


def _delete_payload_write(data: Any, prefix: str) -> tuple[PointWrite, Errors]:
    errors: Errors = []
    fields = _struct_fields(
        data,
        "DeletePayloadShadow",
        {
            "keys": _parse_keys,
            "points": _parse_optional_ids,
            "filter": lambda value: parse_filter_collecting(value, f"{prefix}filter", errors),
        },
    )
    if "keys" not in fields:
        raise missing_field("keys")
    ids, filter_ = _selection(fields)
    op = UpdatePayload(ids, PayloadMode.DELETE_KEYS, keys=fields["keys"], filter=filter_)
    return _fixed_write(ids, op), errors


def _update_vectors_write(data: Any, prefix: str) -> tuple[PointWrite, Errors]:
    filter_errors: Errors = []
    fields = _struct_fields(
        data,
        "UpdateVectors",
        {
            "points": _parse_point_vectors,
            "update_filter": lambda value: parse_filter_collecting(
                value, f"{prefix}update_filter", filter_errors
            ),
        },
    )
    if "points" not in fields:
        raise missing_field("points")
    ids, vectors = fields["points"]
    update_filter = fields.get("update_filter")
    errors = [] if ids else [(f"{prefix}points", "must specify points to update")]
    for index, vector in enumerate(vectors):
        errors.extend(_point_vector_errors(f"{prefix}points[{index}]", vector))
    errors.extend(filter_errors)

    def build_ops(config: CollectionConfig) -> list[Operation]:
        dense, sparse, multi = build_point_vectors(ids, vectors, config)
        return [UpdateVectors(ids, dense, update_filter, sparse, multi)]

    return PointWrite(build_ops), errors


def _delete_vectors_write(data: Any, prefix: str) -> tuple[PointWrite, Errors]:
    filter_errors: Errors = []
    fields = _struct_fields(
        data,
        "DeleteVectors",
        {
            "points": _parse_optional_ids,
            "filter": lambda value: parse_filter_collecting(
                value, f"{prefix}filter", filter_errors
            ),
            "vector": _parse_vector_names,
        },
        aliases={"vectors": "vector"},
    )
    if "vector" not in fields:
        raise missing_field("vector")
    names = fields["vector"]
    errors = [] if names else [(f"{prefix}vector", "must specify vector names to delete")]
    errors.extend(filter_errors)
    ids, filter_ = fields.get("points"), fields.get("filter")

    def build_ops(config: CollectionConfig) -> list[Operation]:
        if ids is None and filter_ is None:
            raise _bad_request("No filter or points provided")
        ops: list[Operation] = []
        if filter_ is not None:
            ops.append(DeleteVectors(None, names, filter=filter_))
        if ids is not None:
            check_not_empty(ids)
            ops.append(DeleteVectors(ids, names))
        return ops

    return PointWrite(build_ops), errors


def _upsert_write(data: Any, prefix: str) -> tuple[PointWrite, Errors]:
    body, errors = parse_upsert_parts(data, prefix)
    return PointWrite(lambda config: [build_upsert(body, config)]), errors


BATCH_KINDS: tuple[tuple[str, Callable[[Any, str], tuple[PointWrite, Errors]]], ...] = (
    ("upsert", _upsert_write),
    ("delete", _delete_write),
    ("set_payload", lambda data, prefix: _set_payload_write(data, prefix, PayloadMode.SET)),
    (
        "overwrite_payload",
        lambda data, prefix: _set_payload_write(data, prefix, PayloadMode.OVERWRITE),
    ),
    ("delete_payload", _delete_payload_write),
    ("clear_payload", _clear_payload_write),
    ("update_vectors", _update_vectors_write),
    ("delete_vectors", _delete_vectors_write),
)


def _batch_operation(operation: Any, prefix: str) -> tuple[PointWrite, Errors]:
    """The first kind (in Qdrant's variant order) whose key is there and whose body parses."""
    if isinstance(operation, dict):
        for kind, parse in BATCH_KINDS:
            if kind in operation:
                try:
                    return parse(operation[kind], f"{prefix}{kind}.")
                except FormatError:
                    pass  # serde tries the next variant and reports none of their errors
    raise untagged_mismatch("UpdateOperation")


# ---- field parsers and shared steps --------------------------------------------------------


def _struct_fields(
    data: Any,
    struct_name: str,
    parsers: dict[str, Callable[[Any], Any]],
    aliases: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The known fields of a JSON object, parsed in document order as serde visits them;
    unknown fields are ignored (Qdrant's structs do not deny them)."""
    if not isinstance(data, dict):
        raise invalid_type(data, f"struct {struct_name}")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        field = (aliases or {}).get(key, key)
        if field in parsers:
            if field in fields:
                raise FormatError(f"duplicate field `{field}`")
            fields[field] = parsers[field](value)
    return fields


def _selection(fields: dict[str, Any]) -> tuple[list[PointId] | None, Any]:
    """(ids, None) or (None, filter) of a SetPayload/DeletePayload: the ids win over a filter."""
    ids, filter_ = fields.get("points"), fields.get("filter")
    if ids is None and filter_ is None:
        raise FormatError(NO_SELECTOR)
    return (ids, None) if ids is not None else (None, filter_)


def _fixed_write(ids: list[PointId] | None, op: Operation) -> PointWrite:
    """A write whose op needs nothing of the collection; an explicit empty id list is
    refused once the collection is known, as Qdrant does."""

    def build_ops(config: CollectionConfig) -> list[Operation]:
        if ids is not None:
            check_not_empty(ids)
        return [op]

    return PointWrite(build_ops)


def check_not_empty(ids: list[PointId]) -> None:
    """Qdrant refuses a write that lists no point at all (it reaches no shard)."""
    if not ids:
        raise _bad_request("Empty update request")


def _bad_request(message: str) -> ApiError:
    # Qdrant's StorageError::BadRequest: 400 with its own prefix, not "Wrong input".
    return ApiError(400, f"Bad request: {message}")


def _raise_errors(write: PointWrite, errors: Errors) -> PointWrite:
    if errors:
        raise validation_errors(errors)
    return write


def _parse_payload(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise invalid_type(value, "a map")
    return value


def _parse_optional_ids(value: Any) -> list[PointId] | None:
    return None if value is None else parse_point_ids(value)


def _parse_keys(value: Any) -> list[str]:
    if type(value) is not list:
        raise invalid_type(value, "a sequence")
    return [parse_json_path(key) for key in value]


def _parse_vector_names(value: Any) -> list[str]:
    """A set of names in Qdrant (HashSet): duplicates collapse, first order kept."""
    if type(value) is not list:
        raise invalid_type(value, "a sequence")
    for name in value:
        if type(name) is not str:
            raise invalid_type(name, "a string")
    return list(dict.fromkeys(value))


def _parse_point_vectors(value: Any) -> tuple[list[PointId], list[Any]]:
    """`[{"id", "vector" (alias "vectors")}, ..]`: the ids and each shape-checked vector."""
    if type(value) is not list:
        raise invalid_type(value, "a sequence")
    check_point_count(len(value))
    ids, vectors = [], []
    for point in value:
        if type(point) is not dict:
            raise invalid_type(point, "struct PointVectors")
        if "id" not in point:
            raise missing_field("id")
        ids.append(parse_point_id(point["id"]))
        if "vector" in point and "vectors" in point:
            raise FormatError("duplicate field `vector`")
        if "vector" not in point and "vectors" not in point:
            raise missing_field("vector")
        vector = point["vector"] if "vector" in point else point["vectors"]
        check_point_vector(vector)
        vectors.append(vector)
    return ids, vectors


def _point_vector_errors(path: str, vector: Any) -> Errors:
    """`PointVectors::validate`: no vector at all first, else the empty dense ones."""
    values = vector.values() if type(vector) is dict else [vector]
    if all(value == [] for value in values):
        return [(f"{path}.vector", "must specify vectors to update for point")]
    check_point_vector(vector)
    # PointVectors::validate answers its VectorStruct's errors as they are, not under `vector`.
    return point_vector_errors(path, vector)
