"""The upsert body (PUT /collections/{name}/points) -> UpsertPoints: the write hot path.

Owns: the three body forms of the seed (a points list with unnamed or named vectors, and
the columnar `batch`), in two phases, in Qdrant's order:
1. `parse_upsert(data)`: the format (400 `Format error in JSON body: ...`), then the
   validation (422 `Validation error in JSON body: [...]`); needs no collection.
2. `build_upsert(body, config)`: dimensions, vector names, finiteness against the
   collection (400 `Wrong input: ...`), then the columnar UpsertPoints: per vector name the
   positions of the points that carry it and one float32 matrix.
Nothing invalid gets past phase 2, so nothing invalid is ever written.
Not here: ids and other shared parsing (server/wire/schemas.py), texts (server/wire/serde_text.py).

Qdrant 1.19, read in its source: `PointInsertOperations` (lib/api/src/rest/schema.rs; an
object with `batch` is a batch, else with `points` a list, else "Invalid PointInsertOperations
format"), `Batch::validate` and `validate_non_empty_dense` (lib/api/src/rest/validate.rs,
schema.rs; field paths as validator nests them), and `validate_vector_dimensions`
(src/common/validate_vectors.rs: dimensions are checked before names, unknown names skipped;
the segment rejects those later with "Not existing vector name error").
Keel differs on purpose: a body with both `points` and `batch` is rejected (Qdrant silently
ignores `points`); unknown vector names are rejected up front; values must be finite as
float32; a point of a collection with one unnamed vector must carry it.

The vector checks are shared with `PUT /points/vectors` (server/wire/updates.py): `check_point_vector`
in phase 1 and `build_point_vectors` in phase 2, so both answer with the same texts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import BadRequest, FormatError, NotImplementedYet, missing_vector_name
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    MultiColumn,
    NamedVectors,
    PointId,
    SparseColumn,
    SparseVector,
    UpdateMode,
    UpsertPoints,
)
from engine.query.multivector import MULTIVECTOR_FLATTENED_LEN_MAX
from server.wire.filters import parse_filter_collecting
from server.wire.schemas import (
    NUMBER_TYPES,
    check_point_count,
    is_sparse_value,
    load_json,
    parse_point_id,
    parse_sparse_vector,
)
from server.wire.serde_text import (
    code_only_message,
    invalid_type,
    missing_field,
    unknown_variant,
    untagged_mismatch,
    validation_errors,
)

if TYPE_CHECKING:
    from engine.filters.conditions import Filter

INVALID_FORMAT = "Invalid PointInsertOperations format"
UPDATE_MODES = tuple(mode.value for mode in UpdateMode)
EMPTY_DENSE = "dense vector must not be empty"
# SparseVector::validate (lib/sparse/src/common/sparse_vector.rs): code-only errors.
SPARSE_LENGTHS = code_only_message("must be the same length as indices")
SPARSE_UNIQUE = code_only_message("must be unique")
MULTI_TO_REGULAR = "Conversion between multi and regular vectors failed"
# Markers of a point's vector after phase 1.
DENSE, MULTI, NAMED, SPARSE = "dense", "multi", "named", "sparse"
SPARSE_TO_REGULAR = "Conversion between sparse and regular vectors failed"


@dataclass(frozen=True)
class UpsertBody:
    """A well-formed upsert body, not yet checked against a collection.

    Exactly one of `point_vectors` (list form: each point's `vector` value, shape-checked)
    and `batch_vectors` (batch form: the `vectors` value) is set.
    """

    ids: list[PointId]
    payloads: list[dict[str, Any] | None]
    point_vectors: list[Any] | None
    batch_vectors: list[Any] | dict[str, list[Any]] | None
    update_mode: UpdateMode
    update_filter: Filter | None = None


def parse_upsert_json(body: bytes) -> UpsertBody:
    """Phase 1 from the raw body: `load_json`, then `parse_upsert`."""
    return parse_upsert(load_json(body))


def parse_upsert(data: Any) -> UpsertBody:
    """Phase 1: the body's format and validation, as Qdrant's deserializer and validator."""
    body, errors = parse_upsert_parts(data)
    if errors:
        raise validation_errors(errors)
    return body


def parse_upsert_parts(data: Any, prefix: str = "") -> tuple[UpsertBody, list[tuple[str, str]]]:
    """Phase 1 without raising for validation: the body and its (path, message) errors.

    `prefix` goes before every field path (`operations[0].upsert.` inside a points batch).
    Raises FormatError.
    """
    if not isinstance(data, dict):
        raise FormatError(INVALID_FORMAT)
    if "batch" in data and "points" in data:
        raise FormatError(f"{INVALID_FORMAT}: send either `points` or `batch`, not both")
    if "batch" in data:
        body, errors = _parse_batch(data["batch"])
    elif "points" in data:
        body, errors = _parse_points(data["points"])
    else:
        raise FormatError(INVALID_FORMAT)
    update_mode = _parse_update_mode(data.get("update_mode"))
    errors = [(prefix + path, message) for path, message in errors]
    update_filter = parse_filter_collecting(
        data.get("update_filter"), f"{prefix}update_filter", errors
    )
    return replace(body, update_mode=update_mode, update_filter=update_filter), errors


def build_upsert(body: UpsertBody, config: CollectionConfig) -> UpsertPoints:
    """Phase 2: check vectors against the collection and build columnar UpsertPoints."""
    if body.batch_vectors is not None:
        vectors, sparse, multi = _batch_columns(body, config)
    else:
        vectors, sparse, multi = _list_columns(body, config)
    return UpsertPoints(
        body.ids, vectors, body.payloads, body.update_mode, body.update_filter, sparse, multi
    )


def check_point_vector(vector: Any) -> list[str | None]:
    """Shape of one point's vector (VectorStruct); returns the names of empty dense vectors.

    The unnamed vector is reported as the name None. Raises FormatError for a value that is
    no VectorStruct, NotImplementedYet for inference objects.
    """
    if type(vector) is list:
        kind = _list_kind(vector)
        if kind is None:
            raise untagged_mismatch("VectorStruct")
        return [None] if kind == DENSE and not vector else []
    if type(vector) is dict:
        empty_names: list[str | None] = []
        for name, value in vector.items():
            kind = _named_value_kind(value)
            if kind is None:
                _raise_if_inference_object(value)  # a named document: {"name": {"model"..}}
                _raise_if_inference_object(vector)
                raise untagged_mismatch("VectorStruct")
            if kind == DENSE and not value:
                empty_names.append(name)
        return empty_names
    _raise_if_inference_object(vector)
    raise untagged_mismatch("VectorStruct")


def point_vector_errors(path: str, vector: Any) -> list[tuple[str, str]]:
    """`VectorStruct::validate` of one shape-checked vector: `<path>.vector` for an empty
    unnamed vector, the named values as `named_vector_errors` words them."""
    if type(vector) is list:
        if _list_kind(vector) == MULTI:
            return [(f"{path}.{field}", message) for field, message in multi_errors(vector)]
        return [(f"{path}.vector", EMPTY_DENSE)] if not vector else []
    return named_vector_errors(path, list(vector.values()))


def named_vector_errors(path: str, values: list[Any]) -> list[tuple[str, str]]:
    """Qdrant's `validate_iter` over named vector values (lib/common/common/src/validation.rs):
    the errors of the failing values, under `?` when one fails, else under `?[i]`, i counting
    the failing values only. An empty dense value fails on `vector`, a sparse one on `values`
    (lengths differ) and `indices` (repeated)."""
    failing = [errors for value in values if (errors := _vector_value_errors(value))]
    labels = ["?"] if len(failing) == 1 else [f"?[{i}]" for i in range(len(failing))]
    return [
        (f"{path}.{label}.{field}", message)
        for label, errors in zip(labels, failing)
        for field, message in errors
    ]


def build_point_vectors(
    ids: list[PointId], point_vectors: list[Any], config: CollectionConfig
) -> tuple[dict[str, NamedVectors], dict[str, SparseColumn], dict[str, MultiColumn]]:
    """Phase 2 of per-point vectors (shape-checked by check_point_vector): the columns by name,
    checked against the collection in Qdrant's order (dimensions, then names), float32."""
    body = UpsertBody(ids, [None] * len(ids), point_vectors, None, UpdateMode.UPSERT)
    return _list_columns(body, config)


# ---- phase 1: format and validation --------------------------------------------------------


def _parse_points(points: Any) -> tuple[UpsertBody, list[tuple[str, str]]]:
    """The list form: `[{"id", "vector" (alias "vectors"), "payload"?}, ...]`."""
    if type(points) is not list:
        raise invalid_type(points, "a sequence")
    check_point_count(len(points))
    ids: list[PointId] = []
    payloads: list[dict[str, Any] | None] = []
    vectors: list[Any] = []
    errors: list[tuple[str, str]] = []
    for index, point in enumerate(points):
        if type(point) is not dict:
            raise invalid_type(point, "struct PointStruct")
        if "id" not in point:
            raise missing_field("id")
        ids.append(parse_point_id(point["id"]))
        vector = _point_vector_field(point)
        payloads.append(_parse_payload(point.get("payload")))
        check_point_vector(vector)
        errors.extend(point_vector_errors(f"points[{index}].vector", vector))
        vectors.append(vector)
    return UpsertBody(ids, payloads, vectors, None, UpdateMode.UPSERT), errors


def _parse_batch(batch: Any) -> tuple[UpsertBody, list[tuple[str, str]]]:
    """The batch form: `{"ids": [..], "vectors": [[..]] or {name: [[..]]}, "payloads"?}`."""
    if not isinstance(batch, dict):
        raise invalid_type(batch, "struct Batch")
    for field in ("ids", "vectors"):
        if field not in batch:
            raise missing_field(field)
    if type(batch["ids"]) is not list:
        raise invalid_type(batch["ids"], "a sequence")
    check_point_count(len(batch["ids"]))
    ids = [parse_point_id(raw) for raw in batch["ids"]]
    vectors = batch["vectors"]
    columns = _check_batch_vectors(vectors)
    raw_payloads = batch.get("payloads")
    if raw_payloads is not None and type(raw_payloads) is not list:
        raise invalid_type(raw_payloads, "a sequence")
    payloads = [_parse_payload(raw) for raw in raw_payloads or ()]
    errors = _batch_errors(ids, columns, raw_payloads)
    if raw_payloads is None:
        payloads = [None] * len(ids)
    return UpsertBody(ids, payloads, None, vectors, UpdateMode.UPSERT), errors


def _point_vector_field(point: dict[str, Any]) -> Any:
    # PointStruct's `vector` has serde alias `vectors`; both at once is serde's duplicate.
    if "vector" in point:
        if "vectors" in point:
            raise FormatError("duplicate field `vector`")
        return point["vector"]
    if "vectors" in point:
        return point["vectors"]
    raise missing_field("vector")


def _parse_payload(payload: Any) -> dict[str, Any] | None:
    if payload is None or type(payload) is dict:
        return payload
    raise invalid_type(payload, "a map")


def _parse_update_mode(value: Any) -> UpdateMode:
    if value is None:
        return UpdateMode.UPSERT
    if value not in UPDATE_MODES:
        raise unknown_variant(value, UPDATE_MODES)
    return UpdateMode(value)


def _list_kind(value: list[Any]) -> str | None:
    """DENSE for a list of numbers (bools are not numbers), MULTI for a list of those."""
    kinds = set(map(type, value))
    if kinds <= NUMBER_TYPES:
        return DENSE
    if kinds == {list} and all(NUMBER_TYPES.issuperset(map(type, row)) for row in value):
        return MULTI
    return None


def _named_value_kind(value: Any) -> str | None:
    if type(value) is list:
        return _list_kind(value)
    if is_sparse_value(value):
        return SPARSE
    return None


def _raise_if_inference_object(value: Any) -> None:
    # Document, Image and InferenceObject ask Qdrant to embed for you; Keel does not.
    if isinstance(value, dict) and "model" in value and {"text", "image", "object"} & set(value):
        raise NotImplementedYet("inference (documents, images, objects) is not supported")


def _vector_value_errors(value: Any) -> list[tuple[str, str]]:
    """`Vector::validate` of one named value: (field, message) pairs."""
    if type(value) is list:
        if _list_kind(value) == MULTI:
            return multi_errors(value)
        return [("vector", EMPTY_DENSE)] if not value else []
    if type(value) is not dict:
        return []
    errors = []
    if len(value["indices"]) != len(value["values"]):
        errors.append(("values", SPARSE_LENGTHS))
    if len(set(value["indices"])) != len(value["indices"]):
        errors.append(("indices", SPARSE_UNIQUE))
    return errors


def _check_batch_vectors(vectors: Any) -> dict[str | None, list[Any]]:
    """Shape of a batch's `vectors` (BatchVectorStruct): the columns, unnamed under None."""
    if type(vectors) is list:
        if all(type(row) is list and _list_kind(row) is not None for row in vectors):
            return {None: vectors}
        if vectors and all(type(row) is dict for row in vectors):
            _raise_if_inference_object(vectors[0])
        raise untagged_mismatch("BatchVectorStruct")
    if type(vectors) is dict:
        for column in vectors.values():
            if type(column) is not list:
                raise untagged_mismatch("BatchVectorStruct")
            for value in column:
                if _named_value_kind(value) is None:
                    raise untagged_mismatch("BatchVectorStruct")
        return dict(vectors)
    raise untagged_mismatch("BatchVectorStruct")


def _batch_errors(
    ids: list[PointId], columns: dict[str | None, list[Any]], payloads: list[Any] | None
) -> list[tuple[str, str]]:
    """`Batch::validate`: the vectors' own errors first, then each count against the ids'."""
    if None in columns:
        # One error at most: Batch::validate stops at the first failing row (`?`).
        for row in columns[None]:
            if not row:
                return [("batch.vector", EMPTY_DENSE)]
            if _list_kind(row) == MULTI and (errors := multi_errors(row)):
                return [(f"batch.{field}", message) for field, message in errors[:1]]
    else:
        values = [value for column in columns.values() for value in column]
        errors = named_vector_errors("batch", values)
        if errors:
            return errors
    for column in columns.values():
        if len(column) != len(ids):
            message = f"number of ids and vectors must be equal ({len(ids)} != {len(column)})"
            return [("batch.batch", message)]
    if payloads is not None and len(payloads) != len(ids):
        message = f"number of ids and payloads must be equal ({len(ids)} != {len(payloads)})"
        return [("batch.batch", message)]
    return []


def multi_errors(matrix: list[list[Any]]) -> list[tuple[str, str]]:
    """`validate_multi_vector` (lib/common/common/src/validation.rs): its first error, under
    `data`. A matrix with no rows is `[]`, which parses as an empty dense vector first."""
    lengths = [len(row) for row in matrix]
    if 0 in lengths:
        return [("data", "all vectors must be non-empty")]
    total = sum(lengths)
    if total >= MULTIVECTOR_FLATTENED_LEN_MAX:
        limit = MULTIVECTOR_FLATTENED_LEN_MAX
        return [("data", f"Total size of all vectors ({total}) must be less than {limit}")]
    bad = next((length for length in lengths if length != lengths[0]), None)
    if bad is not None:
        message = f"all vectors must have the same dimension, found vector with dimension {bad}"
        return [("data", message)]
    return []


# ---- phase 2: against the collection -------------------------------------------------------


def _list_columns(
    body: UpsertBody, config: CollectionConfig
) -> tuple[dict[str, NamedVectors], dict[str, SparseColumn], dict[str, MultiColumn]]:
    """Group the list form's vectors by name, checking each as Qdrant does, in its order."""
    assert body.point_vectors is not None
    rows_by_name: dict[str, list[int]] = {}
    values_by_name: dict[str, list[list[Any]]] = {}
    unknown_name: str | None = None
    has_multi = False
    for position, vector in enumerate(body.point_vectors):
        is_unnamed = type(vector) is list
        items = ((UNNAMED_VECTOR, vector),) if is_unnamed else vector.items()
        for name, value in items:
            if _is_sparse_item(name, value, config):
                continue
            vector_config = config.vectors.get(name)
            if vector_config is None:
                unknown_name = name if unknown_name is None else unknown_name
                continue
            is_multi = bool(value) and type(value[0]) is list
            for row in value if is_multi else (value,):
                if len(row) != vector_config.size:
                    raise _dimension_error(vector_config.size, len(row), name, is_unnamed)
            if vector_config.is_multivector and not is_multi:
                value = [value]  # a plain vector: a matrix of one row, as Qdrant converts it
            has_multi = has_multi or (is_multi and not vector_config.is_multivector)
            rows_by_name.setdefault(name, []).append(position)
            values_by_name.setdefault(name, []).append(value)
    _raise_for_names(unknown_name, has_multi)
    if config.is_single_unnamed and not config.sparse_vectors:
        _require_unnamed_vector(body.ids, rows_by_name.get(UNNAMED_VECTOR, []))
    dense, multi = _dense_and_multi(body.ids, rows_by_name, values_by_name, config)
    named = [{} if type(vector) is list else vector for vector in body.point_vectors]
    return dense, _sparse_columns(named, config), multi


def _batch_columns(
    body: UpsertBody, config: CollectionConfig
) -> tuple[dict[str, NamedVectors], dict[str, SparseColumn], dict[str, MultiColumn]]:
    """The batch form's columns: every point carries every vector named in the batch."""
    vectors = body.batch_vectors
    is_unnamed = type(vectors) is list
    columns = {UNNAMED_VECTOR: vectors} if is_unnamed else vectors
    sparse_names = [n for n, c in columns.items() if c and _is_sparse_item(n, c[0], config)]
    points = [
        {name: columns[name][position] for name in sparse_names}
        for position in range(len(body.ids))
    ]
    columns = {n: c for n, c in columns.items() if n not in sparse_names}
    unknown_name: str | None = None
    has_multi = False
    for name, column in columns.items():
        vector_config = config.vectors.get(name)
        if vector_config is None:
            unknown_name = name if unknown_name is None else unknown_name
            continue
        for value in column:
            is_multi = bool(value) and type(value[0]) is list
            for row in value if is_multi else (value,):
                if len(row) != vector_config.size:
                    raise _dimension_error(vector_config.size, len(row), name, is_unnamed)
            has_multi = has_multi or (is_multi and not vector_config.is_multivector)
    _raise_for_names(unknown_name, has_multi)
    if config.is_single_unnamed and not config.sparse_vectors:
        _require_unnamed_vector(body.ids, range(len(columns.get(UNNAMED_VECTOR, ()))))
    positions = list(range(len(body.ids)))
    rows_by_name = {name: positions for name, column in columns.items() if column}
    values_by_name = {
        name: [_as_matrix_value(value, config.vectors[name].is_multivector) for value in column]
        for name, column in columns.items()
        if column
    }
    dense, multi = _dense_and_multi(body.ids, rows_by_name, values_by_name, config)
    return dense, _sparse_columns(points, config), multi


def _is_sparse_item(name: str, value: Any, config: CollectionConfig) -> bool:
    """Whether (name, value) of a point's vectors is a sparse vector of the collection;
    a sparse value under a dense name, or the reverse, is Qdrant's conversion error."""
    is_sparse_name = name in config.sparse_vectors
    is_sparse = type(value) is dict
    if is_sparse_name != is_sparse and (is_sparse_name or name in config.vectors):
        raise BadRequest(SPARSE_TO_REGULAR)
    if is_sparse and not is_sparse_name:
        raise missing_vector_name(name)
    return is_sparse


def _sparse_columns(
    points: list[dict[str, Any]], config: CollectionConfig
) -> dict[str, SparseColumn]:
    """The sparse vectors of each point's vectors map, by name: one column per name."""
    rows: dict[str, list[int]] = {}
    vectors: dict[str, list[SparseVector]] = {}
    for position, named in enumerate(points):
        for name, value in named.items():
            if name in config.sparse_vectors and type(value) is dict:
                rows.setdefault(name, []).append(position)
                vectors.setdefault(name, []).append(parse_sparse_vector(value))
    return {name: SparseColumn.from_vectors(rows[name], vectors[name]) for name in rows}


def _dimension_error(expected: int, got: int, name: str, is_unnamed: bool) -> BadRequest:
    suffix = "" if is_unnamed else f" for vector '{name}'"
    return BadRequest(f"Vector dimension error: expected dim: {expected}, got {got}{suffix}")


def _raise_for_names(unknown_name: str | None, has_multi: bool) -> None:
    if unknown_name is not None:
        raise missing_vector_name(unknown_name)
    if has_multi:
        raise BadRequest(MULTI_TO_REGULAR)


def _require_unnamed_vector(ids: list[PointId], positions: Any) -> None:
    if len(positions) != len(ids):
        missing = min(set(range(len(ids))) - set(positions))
        raise BadRequest(
            f"point {ids[missing]} has no vector; this collection's unnamed vector is required"
        )


def _as_matrix_value(value: list[Any], is_multivector: bool) -> list[Any]:
    """A multivector name's value as a matrix (a plain vector is one row); others as they are."""
    return [value] if is_multivector and value and type(value[0]) is not list else value


def _dense_and_multi(
    ids: list[PointId],
    rows_by_name: dict[str, list[int]],
    values_by_name: dict[str, list[Any]],
    config: CollectionConfig,
) -> tuple[dict[str, NamedVectors], dict[str, MultiColumn]]:
    """The dense columns and the multivector columns, by name, float32 and finite."""
    dense, multi = {}, {}
    for name, values in values_by_name.items():
        vector_config = config.vectors[name]
        if vector_config.is_multivector:
            multi[name] = _multi_column(ids, rows_by_name[name], values, vector_config.size)
        else:
            dense[name] = _named_vectors(ids, rows_by_name[name], values, vector_config.size)
    return dense, multi


def _multi_column(
    ids: list[PointId], rows: list[int], matrices: list[list[list[Any]]], dim: int
) -> MultiColumn:
    column = MultiColumn.from_matrices(rows, [_to_matrix(m, dim) for m in matrices], dim)
    is_finite = np.isfinite(column.matrix).all(axis=1)
    if not is_finite.all():
        # The point of the first bad row: the last matrix starting at or before it.
        bad_row = int(np.argmin(is_finite))
        row = int(np.searchsorted(column.offsets, bad_row, side="right")) - 1
        point_id = ids[rows[row]]
        raise BadRequest(f"vector of point {point_id} has a value that is not a finite float32")
    return column


def _named_vectors(
    ids: list[PointId], rows: list[int], values: list[list[Any]], dim: int
) -> NamedVectors:
    matrix = _to_matrix(values, dim)
    is_finite = np.isfinite(matrix).all(axis=1)
    if not is_finite.all():
        point_id = ids[rows[int(np.argmin(is_finite))]]
        raise BadRequest(f"vector of point {point_id} has a value that is not a finite float32")
    return NamedVectors(rows=np.array(rows, dtype=np.int32), matrix=matrix)


def _to_matrix(values: list[list[Any]], dim: int) -> np.ndarray:
    """float32 matrix of rows phase 1 found to be numbers and phase 2 to have `dim` each."""
    with np.errstate(over="ignore"):  # overflow to inf is reported by the caller
        return np.array(values, dtype=np.float32).reshape(len(values), dim)
