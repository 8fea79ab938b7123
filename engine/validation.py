"""Checking a write operation against its collection before it is logged.

Owns: what makes an op unacceptable for a collection (vector names, dimensions, non-finite
numbers, sparse indices, payload nesting depth, payload index definitions) and the one
change made on the way in (Cosine vectors normalised to unit length, values rounded to the
vector's datatype).
Not here: parsing requests (server/), applying ops (engine/store/mutations.py).

Everything an op could fail on when applied must be refused here: a logged op that fails
to apply closes the write path and fails every replay after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from engine import limits
from engine.errors import BadRequest, missing_vector_name
from engine.filters import text_match
from engine.filters.payload_path import PayloadPath
from engine.ops import (
    CollectionConfig,
    CreateFieldIndex,
    CreateVectorName,
    DeleteVectorName,
    DeleteVectors,
    Distance,
    MultiColumn,
    NamedVectors,
    Operation,
    SparseColumn,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
    VectorConfig,
)
from engine.query import multivector
from engine.store.payload_index import FIELD_NAME_BYTES_MAX, SCHEMA_TYPES, IndexSpec
from engine.vectors.scores import as_datatype, is_raw_cosine, normalize_rows

MULTI_TO_REGULAR = "Conversion between multi and regular vectors failed"


def validated(
    op: Operation, config: CollectionConfig, index_specs: Mapping[str, IndexSpec]
) -> Operation:
    """`op` checked against the collection's config and payload indexes, Cosine vectors
    normalised; BadRequest (or NotImplementedYet) for an op that must not be logged."""
    if isinstance(op, CreateVectorName):
        _check_create_vector_name(op, config)
        return op
    if isinstance(op, DeleteVectorName):
        return op  # an absent name is deleted as Qdrant does it: nothing happens
    if isinstance(op, UpsertPoints):
        if len(op.payloads) != len(op.ids):
            raise BadRequest(
                f"number of ids and payloads must be equal ({len(op.ids)} != {len(op.payloads)})"
            )
        for payload in op.payloads:
            check_payload_depth(payload)
        _check_sparse(op.sparse, config)
        multi = _validated_multi(op.multi, config)
        return replace(op, vectors=_validated_vectors(op.vectors, config), multi=multi)
    if isinstance(op, UpdatePayload):
        key_steps = len(PayloadPath.parse(op.key).steps) if op.key else 0
        if key_steps > limits.PAYLOAD_DEPTH_MAX:
            check_payload_depth({"": {}}, depth=key_steps)  # raises: the path alone
        check_payload_depth(op.payload, depth=1 + key_steps)
    if isinstance(op, UpdateVectors):
        # Ids that don't exist when the op is applied are skipped (see engine/store/mutations.py):
        # checking here would miss earlier unapplied ops and earlier ops of a batch.
        _check_sparse(op.sparse, config)
        multi = _validated_multi(op.multi, config)
        return replace(op, vectors=_validated_vectors(op.vectors, config), multi=multi)
    if isinstance(op, DeleteVectors):
        for name in op.names:
            if name not in config.vectors and name not in config.sparse_vectors:
                raise missing_vector_name(name)
    if isinstance(op, CreateFieldIndex):
        _check_field_index(op, index_specs)
    return op


def _check_field_index(op: CreateFieldIndex, index_specs: Mapping[str, IndexSpec]) -> None:
    if op.schema_type not in SCHEMA_TYPES:
        raise BadRequest(f"unknown payload index type {op.schema_type!r}")
    try:
        PayloadPath.parse(op.field_name)
    except ValueError as error:
        raise BadRequest(f"bad payload index field name {op.field_name!r}: {error}") from None
    if len(op.field_name.encode()) > FIELD_NAME_BYTES_MAX:
        raise BadRequest(f"payload field name is longer than {FIELD_NAME_BYTES_MAX} bytes")
    if op.schema_type == "text":
        text_match.check_text_params(op.params or {})  # 501 for what Keel can't tokenize
    if op.field_name not in index_specs and len(index_specs) >= limits.PAYLOAD_INDEXES_MAX:
        raise BadRequest(f"a collection has at most {limits.PAYLOAD_INDEXES_MAX} indexes")


def _check_create_vector_name(op: CreateVectorName, config: CollectionConfig) -> None:
    """Qdrant's `add_vector_to_config`: the same name again with the same space is accepted
    (and changes nothing), with another space or kind it is refused."""
    name = op.name
    dense, sparse = config.vectors.get(name), config.sparse_vectors.get(name)
    if op.dense is not None:
        if sparse is not None:
            raise BadRequest(f"Vector `{name}` already exists as a sparse vector")
        if dense is None:
            if len(config.vectors) >= limits.VECTOR_NAMES_MAX:
                raise BadRequest(f"a collection has at most {limits.VECTOR_NAMES_MAX} vectors")
            return
        echo = config.echo.get("vectors", {}).get(name, {})
        is_same = (dense.size, dense.distance, dense.is_multivector) == (
            op.dense.size,
            op.dense.distance,
            op.dense.is_multivector,
        ) and echo.get("datatype") == op.echo.get("datatype")
        if not is_same:
            raise BadRequest(f"Vector `{name}` already exists with a different configuration")
        return
    assert op.sparse is not None, op
    if dense is not None:
        raise BadRequest(f"Vector `{name}` already exists as a dense vector")
    if sparse is None:
        if len(config.sparse_vectors) >= limits.VECTOR_NAMES_MAX:
            raise BadRequest(f"a collection has at most {limits.VECTOR_NAMES_MAX} sparse vectors")
        return
    echo = config.echo.get("sparse_vectors", {}).get(name, {})
    is_same = sparse.modifier == op.sparse.modifier and echo.get("index", {}).get(
        "datatype"
    ) == op.echo.get("index", {}).get("datatype")
    if not is_same:
        raise BadRequest(f"Sparse vector `{name}` already exists with a different configuration")


def _check_sparse(sparse: dict[str, SparseColumn], config: CollectionConfig) -> None:
    for name, column in sparse.items():
        if name not in config.sparse_vectors:
            raise missing_vector_name(name)
        if column.indices.shape != column.values.shape:
            raise BadRequest("Validation error: indices and values must have the same length")
        if not np.isfinite(column.values).all():
            raise BadRequest("sparse vector contains a non-finite number (NaN or infinity)")
        steps = np.diff(column.indices.astype(np.int64))
        row_starts = column.offsets[1:-1] - 1  # steps across rows are not compared
        is_step_within_row = np.ones(len(steps), dtype=bool)
        is_step_within_row[row_starts[(row_starts >= 0) & (row_starts < len(steps))]] = False
        if (steps[is_step_within_row] <= 0).any():
            raise BadRequest("sparse vector indices must be ascending and unique")


def _validated_vectors(
    vectors: dict[str, NamedVectors], config: CollectionConfig
) -> dict[str, NamedVectors]:
    result = {}
    for name, named in vectors.items():
        vector_config = config.vectors.get(name)
        if vector_config is None:
            raise missing_vector_name(name)
        if vector_config.is_multivector:
            raise BadRequest(MULTI_TO_REGULAR)  # the server sends one-row matrices instead
        matrix = named.matrix
        if matrix.ndim != 2 or matrix.shape[1] != vector_config.size:
            got = matrix.shape[-1] if matrix.ndim else 0
            suffix = "" if config.is_single_unnamed else f" for vector '{name}'"
            raise BadRequest(
                f"Vector dimension error: expected dim: {vector_config.size}, got {got}{suffix}"
            )
        if not np.isfinite(matrix).all():
            raise BadRequest("vector contains a non-finite number (NaN or infinity)")
        result[name] = NamedVectors(named.rows, stored_form(matrix, vector_config))
    return result


def _validated_multi(
    multi: dict[str, MultiColumn], config: CollectionConfig
) -> dict[str, MultiColumn]:
    """Each matrix checked (engine/query/multivector.py), Cosine rows made unit length."""
    result = {}
    for name, column in multi.items():
        vector_config = config.vectors.get(name)
        if vector_config is None:
            raise missing_vector_name(name)
        if not vector_config.is_multivector:
            raise BadRequest(MULTI_TO_REGULAR)
        for row in range(len(column.rows)):
            multivector.check_stored_matrix(
                column.matrix_of(row), vector_config.size, name, config.is_single_unnamed
            )
        if column.offsets.shape[0] != column.rows.shape[0] + 1:
            raise BadRequest(f"multivector column {name!r} has bad offsets")
        matrix = stored_form(column.matrix, vector_config)
        result[name] = MultiColumn(column.rows, column.offsets, matrix)
    return result


def stored_form(matrix: np.ndarray, vector_config: VectorConfig) -> np.ndarray:
    """The rows as Keel stores them, as Qdrant stores them: Cosine ones unit length (the
    metric's preprocessing), then rounded as the vector's `datatype` is
    (engine/vectors/scores.py `as_datatype`). A uint8 Cosine vector is not made unit length:
    Qdrant keeps it as given, in bytes, and scores it by true cosine (`is_raw_cosine`)."""
    if vector_config.distance is Distance.COSINE and not is_raw_cosine(vector_config):
        matrix = normalize_rows(matrix)
    return as_datatype(matrix, vector_config.datatype)


def check_payload_depth(payload: object, depth: int = 1) -> None:
    """Raise BadRequest for a payload nested deeper than PAYLOAD_DEPTH_MAX (iteratively:
    the payload being checked is the deep thing). `depth`: the level `payload` lands at
    (a payload set at a key of k steps lands at k + 1)."""
    stack = [(payload, depth)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if type(value) is dict else value if type(value) is list else ()
        if not children:
            continue
        if depth > limits.PAYLOAD_DEPTH_MAX:
            raise BadRequest(
                f"payload is nested deeper than {limits.PAYLOAD_DEPTH_MAX} levels of objects "
                "and arrays"
            )
        stack.extend((child, depth + 1) for child in children)
