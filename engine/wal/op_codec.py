"""The CBOR encoding of an operation in a WAL record body, and of the filters inside it.

Owns: `encode_op` / `decode_op` and `encode_tree` / `decode_tree` (filters by class name and
init fields). Renaming an op field here, or a filter class or field in engine/filters/conditions.py, breaks
replay of old logs.
Not here: what the ops are (ops.py), framing records into batches (engine/wal/format.py).

Record body: a CBOR map, keys short on purpose (they are repeated in every record):

| key | in ops              | meaning                                                     |
|-----|---------------------|-------------------------------------------------------------|
| t   | all                 | "upsert", "delete", "payload", "vectors", "delete_vectors", |
|     |                     | "create_index", "delete_index", "create_vector_name",       |
|     |                     | "delete_vector_name"                                        |
| ids | all                 | point ids: uint, or 16-byte bstr for a UUID; null: filter   |
| m   | upsert, payload     | update_mode / payload mode                                  |
| v   | upsert, vectors     | name -> [rows, dim, matrix]: rows = LE int32 positions into |
|     |                     | ids, matrix = LE float32, len(rows) x dim                   |
| s   | upsert, vectors     | sparse name -> [rows, offsets, indices, values]: rows as in |
|     |                     | v, offsets LE int64 (len(rows) + 1) into indices (LE uint32,|
|     |                     | ascending per row) and values (LE float32); absent: none    |
| mv  | upsert, vectors     | multivector name -> [rows, offsets, dim, matrix]: rows as in|
|     |                     | v, offsets LE int64 (len(rows) + 1) into the matrix's rows, |
|     |                     | matrix LE float32, offsets[-1] x dim; absent: none          |
| p   | upsert, payload     | payload per id (upsert) / the payload to set (payload)      |
| k   | payload             | keys to delete                                              |
| key | payload             | nested path to set at                                       |
| n   | delete_vectors      | vector names                                                |
| f   | point ops           | filter (update_filter or selector), as `encode_tree` data   |
| fn  | create/delete_index | payload field name (a JSON path, as the client wrote it)    |
| st  | create_index        | schema type: "keyword", "integer", "float", ...             |
| sp  | create_index        | the schema's params object as the client sent it, or null   |
| vn  | *_vector_name       | the vector name                                             |
| d   | create_vector_name  | dense: {"size", "distance", "multivector"?} (as config.json  |
|     |                     | writes a vector), or null for a sparse one                  |
| sm  | create_vector_name  | sparse: its modifier ("none", "idf"), or null for a dense one|
| e   | create_vector_name  | what collection info echoes of it (JSON object)             |

Filters are resolved when the op is applied, in op order, never when it is logged: a filter
selects the points as they are after every earlier op.
Vectors are stored as float32 bytes, never as lists of numbers (DESIGN.md).
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import cbor2
import numpy as np

from engine.errors import CorruptionError
from engine.ops import (
    U64_MAX,
    CreateFieldIndex,
    CreateVectorName,
    DeleteFieldIndex,
    DeletePoints,
    DeleteVectorName,
    DeleteVectors,
    Distance,
    MultiColumn,
    NamedVectors,
    Operation,
    PayloadMode,
    PointId,
    SparseColumn,
    SparseModifier,
    SparseVectorConfig,
    UpdateMode,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
    VectorConfig,
    stored_datatype,
)


def encode_op(op: Operation) -> bytes:
    """CBOR body of a WAL record for `op` (see the module docstring for the layout)."""
    return cbor2.dumps(_OP_ENCODERS[type(op)](op))


def decode_op(body: bytes, filter_types: Mapping[str, type] | None = None) -> Operation:
    """Inverse of encode_op; `filter_types` names the classes a filter may be built of
    (engine/filters/conditions.py `FILTER_TYPES`). Raises CorruptionError on a body Keel never
    wrote."""
    try:
        data = cbor2.loads(body)
        decoder = _OP_DECODERS.get(data["t"])
        if decoder is None:
            raise ValueError(f"unknown op type {data['t']!r}")
        return decoder(data, filter_types or {})
    except (KeyError, ValueError, TypeError, cbor2.CBORDecodeError) as error:
        raise CorruptionError(f"WAL record body does not decode: {error}") from error


def encode_tree(value: Any) -> Any:
    """A dataclass tree (a filter) as CBOR-able data, tagged with class names."""
    if is_dataclass(value) and not isinstance(value, type):
        # Fields outside __init__ are derived (a filter's compiled closure): not data.
        fields_data = {f.name: encode_tree(getattr(value, f.name)) for f in fields(value) if f.init}
        return {"@": type(value).__name__, **fields_data}
    if isinstance(value, enum.Enum):
        return {"@enum": type(value).__name__, "v": value.value}
    if isinstance(value, tuple):
        return {"@tuple": [encode_tree(item) for item in value]}
    if isinstance(value, frozenset | set):
        return {"@set": [encode_tree(item) for item in value]}
    if isinstance(value, list):
        return [encode_tree(item) for item in value]
    if isinstance(value, dict):
        return {"@dict": [[encode_tree(k), encode_tree(v)] for k, v in value.items()]}
    if isinstance(value, uuid.UUID):
        return {"@uuid": value.bytes}
    if isinstance(value, datetime.datetime):
        return {"@datetime": value.isoformat()}
    assert value is None or isinstance(value, bool | int | float | str), type(value)
    return value


def decode_tree(data: Any, types: Mapping[str, type]) -> Any:
    """Inverse of encode_tree, building only classes named in `types`."""
    if isinstance(data, list):
        return [decode_tree(item, types) for item in data]
    if not isinstance(data, dict):
        return data
    if "@" in data:
        cls = types[data["@"]]
        return cls(**{k: decode_tree(v, types) for k, v in data.items() if k != "@"})
    if "@enum" in data:
        return types[data["@enum"]](data["v"])
    if "@tuple" in data:
        return tuple(decode_tree(item, types) for item in data["@tuple"])
    if "@set" in data:
        return frozenset(decode_tree(item, types) for item in data["@set"])
    if "@dict" in data:
        return {decode_tree(k, types): decode_tree(v, types) for k, v in data["@dict"]}
    if "@uuid" in data:
        return uuid.UUID(bytes=data["@uuid"])
    if "@datetime" in data:
        return datetime.datetime.fromisoformat(data["@datetime"])
    raise ValueError(f"untagged map in an encoded tree: {sorted(data)}")


def _encode_vectors(vectors: dict[str, NamedVectors]) -> dict[str, list[Any]]:
    encoded = {}
    for name, nv in vectors.items():
        assert nv.matrix.dtype == np.float32, nv.matrix.dtype
        assert nv.matrix.shape[0] == nv.rows.shape[0], (nv.matrix.shape, nv.rows.shape)
        rows = nv.rows.astype("<i4", copy=False).tobytes()
        matrix = nv.matrix.astype("<f4", copy=False).tobytes()
        encoded[name] = [rows, nv.matrix.shape[1], matrix]
    return encoded


def _decode_vectors(data: dict[str, list[Any]]) -> dict[str, NamedVectors]:
    vectors = {}
    for name, (rows, dim, matrix) in data.items():
        # Read-only views of the record's bytes, no copy: replay decodes every op it applies,
        # and nothing writes into an op's arrays ("<f4" is float32 on the machines we run on).
        rows_array = np.frombuffer(rows, dtype=_INT32_LE)
        matrix_array = np.frombuffer(matrix, dtype=_FLOAT32_LE)
        vectors[name] = NamedVectors(rows_array, matrix_array.reshape(len(rows_array), dim))
    return vectors


def _encode_sparse(sparse: dict[str, SparseColumn]) -> dict[str, list[bytes]]:
    encoded = {}
    for name, column in sparse.items():
        assert column.offsets.shape[0] == column.rows.shape[0] + 1, (name, column.offsets.shape)
        assert column.indices.shape == column.values.shape, (name, column.indices.shape)
        encoded[name] = [
            column.rows.astype("<i4", copy=False).tobytes(),
            column.offsets.astype("<i8", copy=False).tobytes(),
            column.indices.astype("<u4", copy=False).tobytes(),
            column.values.astype("<f4", copy=False).tobytes(),
        ]
    return encoded


def _decode_sparse(data: dict[str, list[bytes]]) -> dict[str, SparseColumn]:
    columns = {}
    for name, (rows, offsets, indices, values) in data.items():
        column = SparseColumn(
            np.frombuffer(rows, dtype="<i4").astype(np.int32),
            np.frombuffer(offsets, dtype="<i8").astype(np.int64),
            np.frombuffer(indices, dtype="<u4").astype(np.uint32),
            np.frombuffer(values, dtype="<f4").astype(np.float32),
        )
        if column.offsets.shape[0] != column.rows.shape[0] + 1:
            raise ValueError(f"sparse column {name!r} has bad offsets")
        columns[name] = column
    return columns


def _encode_multi(multi: dict[str, MultiColumn]) -> dict[str, list[Any]]:
    encoded = {}
    for name, column in multi.items():
        assert column.offsets.shape[0] == column.rows.shape[0] + 1, (name, column.offsets.shape)
        assert column.matrix.dtype == np.float32, (name, column.matrix.dtype)
        assert column.matrix.shape[0] == column.offsets[-1], (name, column.matrix.shape)
        encoded[name] = [
            column.rows.astype("<i4", copy=False).tobytes(),
            column.offsets.astype("<i8", copy=False).tobytes(),
            column.matrix.shape[1],
            column.matrix.astype("<f4", copy=False).tobytes(),
        ]
    return encoded


def _decode_multi(data: dict[str, list[Any]]) -> dict[str, MultiColumn]:
    columns = {}
    for name, (rows, offsets, dim, matrix) in data.items():
        offsets_array = np.frombuffer(offsets, dtype="<i8").astype(np.int64)
        matrix_array = np.frombuffer(matrix, dtype=_FLOAT32_LE)
        rows_array = np.frombuffer(rows, dtype="<i4").astype(np.int32)
        if offsets_array.shape[0] != rows_array.shape[0] + 1:
            raise ValueError(f"multivector column {name!r} has bad offsets")
        if matrix_array.shape[0] != int(offsets_array[-1]) * dim:
            raise ValueError(f"multivector column {name!r} has a matrix of the wrong size")
        columns[name] = MultiColumn(
            rows_array, offsets_array, matrix_array.reshape(int(offsets_array[-1]), dim)
        )
    return columns


def _encode_ids(ids: list[PointId] | None) -> list[int | bytes] | None:
    return None if ids is None else [_encode_id(point_id) for point_id in ids]


def _decode_ids(raw: list[int | bytes] | None) -> list[PointId] | None:
    if raw is None:
        return None
    # The common case, unsigned integers in range, without a call per id.
    for item in raw:
        if type(item) is not int or not 0 <= item <= U64_MAX:
            return [_decode_id(item) for item in raw]
    return raw  # type: ignore[return-value]  # every item checked just above


def _encode_upsert(op: UpsertPoints) -> dict[str, Any]:
    assert len(op.payloads) == len(op.ids), (len(op.payloads), len(op.ids))
    return {
        "t": "upsert",
        "ids": _encode_ids(op.ids),
        "m": op.update_mode.value,
        "v": _encode_vectors(op.vectors),
        "p": op.payloads,
        "f": encode_tree(op.update_filter),
        **({"s": _encode_sparse(op.sparse)} if op.sparse else {}),
        **({"mv": _encode_multi(op.multi)} if op.multi else {}),
    }


def _decode_upsert(data: dict[str, Any], types: Mapping[str, type]) -> UpsertPoints:
    return UpsertPoints(
        ids=_decode_ids(data["ids"]),
        vectors=_decode_vectors(data["v"]),
        payloads=data["p"],
        update_mode=_UPDATE_MODES[data["m"]],
        update_filter=decode_tree(data.get("f"), types),
        sparse=_decode_sparse(data["s"]) if "s" in data else {},
        multi=_decode_multi(data["mv"]) if "mv" in data else {},
    )


def _encode_delete(op: DeletePoints) -> dict[str, Any]:
    return {"t": "delete", "ids": _encode_ids(op.ids), "f": encode_tree(op.filter)}


def _decode_delete(data: dict[str, Any], types: Mapping[str, type]) -> DeletePoints:
    return DeletePoints(ids=_decode_ids(data["ids"]), filter=decode_tree(data.get("f"), types))


def _encode_payload(op: UpdatePayload) -> dict[str, Any]:
    return {
        "t": "payload",
        "ids": _encode_ids(op.ids),
        "m": op.mode.value,
        "p": op.payload,
        "k": op.keys,
        "key": op.key,
        "f": encode_tree(op.filter),
    }


def _decode_payload(data: dict[str, Any], types: Mapping[str, type]) -> UpdatePayload:
    return UpdatePayload(
        ids=_decode_ids(data["ids"]),
        mode=PayloadMode(data["m"]),
        payload=data["p"],
        keys=data["k"],
        key=data["key"],
        filter=decode_tree(data["f"], types),
    )


def _encode_update_vectors(op: UpdateVectors) -> dict[str, Any]:
    return {
        "t": "vectors",
        "ids": _encode_ids(op.ids),
        "v": _encode_vectors(op.vectors),
        "f": encode_tree(op.update_filter),
        **({"s": _encode_sparse(op.sparse)} if op.sparse else {}),
        **({"mv": _encode_multi(op.multi)} if op.multi else {}),
    }


def _decode_update_vectors(data: dict[str, Any], types: Mapping[str, type]) -> UpdateVectors:
    return UpdateVectors(
        ids=_decode_ids(data["ids"]),
        vectors=_decode_vectors(data["v"]),
        update_filter=decode_tree(data["f"], types),
        sparse=_decode_sparse(data.get("s", {})),
        multi=_decode_multi(data.get("mv", {})),
    )


def _encode_delete_vectors(op: DeleteVectors) -> dict[str, Any]:
    return {
        "t": "delete_vectors",
        "ids": _encode_ids(op.ids),
        "n": op.names,
        "f": encode_tree(op.filter),
    }


def _decode_delete_vectors(data: dict[str, Any], types: Mapping[str, type]) -> DeleteVectors:
    return DeleteVectors(
        ids=_decode_ids(data["ids"]), names=data["n"], filter=decode_tree(data["f"], types)
    )


def _encode_create_index(op: CreateFieldIndex) -> dict[str, Any]:
    return {"t": "create_index", "fn": op.field_name, "st": op.schema_type, "sp": op.params}


def _decode_create_index(data: dict[str, Any], _types: Mapping[str, type]) -> CreateFieldIndex:
    return CreateFieldIndex(field_name=data["fn"], schema_type=data["st"], params=data["sp"])


def _encode_delete_index(op: DeleteFieldIndex) -> dict[str, Any]:
    return {"t": "delete_index", "fn": op.field_name}


def _decode_delete_index(data: dict[str, Any], _types: Mapping[str, type]) -> DeleteFieldIndex:
    return DeleteFieldIndex(field_name=data["fn"])


def _encode_create_vector_name(op: CreateVectorName) -> dict[str, Any]:
    assert (op.dense is None) != (op.sparse is None), op
    dense = None
    if op.dense is not None:
        # Only what makes the space: per-vector tuning is config (PATCH), not this op's.
        dense = {"size": op.dense.size, "distance": op.dense.distance.value}
        if op.dense.is_multivector:
            dense["multivector"] = "max_sim"
    sparse = None if op.sparse is None else op.sparse.modifier.value
    return {"t": "create_vector_name", "vn": op.name, "d": dense, "sm": sparse, "e": op.echo}


def _decode_create_vector_name(data: dict[str, Any], _types: Mapping[str, type]) -> Any:
    dense, sparse = data["d"], data["sm"]
    if (dense is None) == (sparse is None):
        raise ValueError("create_vector_name needs exactly one of dense and sparse")
    return CreateVectorName(
        name=data["vn"],
        dense=None
        if dense is None
        else VectorConfig(
            size=dense["size"],
            distance=Distance(dense["distance"]),
            is_multivector=dense.get("multivector") == "max_sim",
            datatype=stored_datatype(data["e"]),  # carried by the echo, as in config.json
        ),
        sparse=None if sparse is None else SparseVectorConfig(SparseModifier(sparse)),
        echo=data["e"],
    )


def _encode_delete_vector_name(op: DeleteVectorName) -> dict[str, Any]:
    return {"t": "delete_vector_name", "vn": op.name}


def _decode_delete_vector_name(data: dict[str, Any], _types: Mapping[str, type]) -> Any:
    return DeleteVectorName(name=data["vn"])


_OP_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    UpsertPoints: _encode_upsert,
    DeletePoints: _encode_delete,
    UpdatePayload: _encode_payload,
    UpdateVectors: _encode_update_vectors,
    DeleteVectors: _encode_delete_vectors,
    CreateFieldIndex: _encode_create_index,
    DeleteFieldIndex: _encode_delete_index,
    CreateVectorName: _encode_create_vector_name,
    DeleteVectorName: _encode_delete_vector_name,
}
_OP_DECODERS: dict[str, Callable[[dict[str, Any], Mapping[str, type]], Any]] = {
    "upsert": _decode_upsert,
    "delete": _decode_delete,
    "payload": _decode_payload,
    "vectors": _decode_update_vectors,
    "delete_vectors": _decode_delete_vectors,
    "create_index": _decode_create_index,
    "delete_index": _decode_delete_index,
    "create_vector_name": _decode_create_vector_name,
    "delete_vector_name": _decode_delete_vector_name,
}


_UPDATE_MODES = {mode.value: mode for mode in UpdateMode}  # without EnumType.__call__ per op
_INT32_LE = np.dtype("<i4")
_FLOAT32_LE = np.dtype("<f4")


def _encode_id(point_id: PointId) -> int | bytes:
    return point_id.bytes if isinstance(point_id, uuid.UUID) else point_id


def _decode_id(raw: int | bytes) -> PointId:
    if isinstance(raw, bytes):
        return uuid.UUID(bytes=raw)
    if not isinstance(raw, int) or not 0 <= raw <= U64_MAX:
        raise ValueError(f"bad point id in record: {raw!r}")
    return raw
