"""The body of `PUT /collections/{c}/vectors/{name}` (Qdrant 1.19's `VectorNameConfig`).

Owns: parsing `{"dense": {size, distance, multivector_config?, datatype?}}` or
`{"sparse": {modifier?, datatype?}}` into a `CreateVectorName` op with the echo collection info
shows of the new vector, and the path's vector-name rule.
Not here: whether the name may be added to this collection (engine/validation.py), the
handlers (server/api/vector_names.py).

Qdrant 1.19, read in its source: `VectorNameConfig` (lib/segment/src/data_types/
vector_name_config.rs) is an untagged enum of the two wrappers, so any format error inside
reads "data did not match any variant of untagged enum VectorNameConfig"; `size` is
validated to [1, 65536] (422), a sparse `datatype` of `turbo4` is refused (422). What
collection info then shows is `dense_config_to_params` / `sparse_config_to_params`
(lib/collection/src/collection/vector_name_schema.rs): size, distance, and only the
datatype and multivector config given; a sparse vector's modifier, and `index.datatype`
when a datatype was given. The path's name: `validate_vector_name` (at most 200 bytes, none
of `<>:"/\\|?*`, NUL, 0x1F), 422 as a path parameter.
"""

from __future__ import annotations

from typing import Any

from engine.errors import FormatError
from engine.limits import VECTOR_DIM_MAX
from engine.ops import (
    CreateVectorName,
    Distance,
    SparseModifier,
    SparseVectorConfig,
    VectorConfig,
    stored_datatype,
)
from server.responses import ApiError
from server.wire.collection_config import (
    DATATYPES,
    DISTANCES,
    VECTOR_NAME_BYTES_MAX,
    VECTOR_NAME_CHARS_FORBIDDEN,
)
from server.wire.serde_text import range_message, untagged_mismatch, validation_errors

MODIFIERS = ("none", "idf")
SPARSE_TURBO4 = "sparse vectors do not support the `turbo4` datatype"


def check_vector_name_path(name: str) -> None:
    """422 for a vector name Qdrant's `VectorNamePath` refuses."""
    if len(name.encode()) > VECTOR_NAME_BYTES_MAX:
        message = f"vector name must be at most {VECTOR_NAME_BYTES_MAX} bytes long"
    elif bad := next((c for c in VECTOR_NAME_CHARS_FORBIDDEN if c in name), None):
        message = f'vector name cannot contain "{bad}" char'
    else:
        return
    raise ApiError(422, f"Validation error in path parameters: [vector_name: {message}]")


def parse_vector_name_config(name: str, body: Any) -> CreateVectorName:
    """The op adding vector `name` as `body` describes; FormatError (400) for a body of
    neither form, ValidationError (422) for a size out of range or a sparse turbo4."""
    if isinstance(body, dict) and "dense" in body:
        try:
            return _parse_dense(name, body["dense"])
        except FormatError:
            pass  # untagged: serde then tries the sparse form
    if isinstance(body, dict) and "sparse" in body:
        try:
            return _parse_sparse(name, body["sparse"])
        except FormatError:
            pass
    raise untagged_mismatch("VectorNameConfig")


def _parse_dense(name: str, raw: Any) -> CreateVectorName:
    if not isinstance(raw, dict) or "size" not in raw or "distance" not in raw:
        raise FormatError("not a DenseVectorConfig")
    size, distance = raw["size"], raw["distance"]
    if type(size) is not int or size < 0 or distance not in DISTANCES:
        raise FormatError("not a DenseVectorConfig")
    echo: dict[str, Any] = {}
    multivector = raw.get("multivector_config")
    if multivector is not None:
        if not isinstance(multivector, dict) or multivector.get("comparator") != "max_sim":
            raise FormatError("not a MultiVectorConfig")
        echo["multivector_config"] = {"comparator": "max_sim"}
    datatype = raw.get("datatype")
    if datatype is not None:
        if datatype not in DATATYPES:
            raise FormatError("not a VectorStorageDatatype")
        echo["datatype"] = datatype
    if not 1 <= size <= VECTOR_DIM_MAX:
        raise validation_errors([("dense.size", range_message(size, 1, VECTOR_DIM_MAX))])
    dense = VectorConfig(
        size,
        Distance(distance),
        is_multivector=multivector is not None,
        datatype=stored_datatype(echo),
    )
    return CreateVectorName(name, dense=dense, echo=echo)


def _parse_sparse(name: str, raw: Any) -> CreateVectorName:
    if not isinstance(raw, dict):
        raise FormatError("not a SparseVectorConfig")
    modifier, datatype = raw.get("modifier"), raw.get("datatype")
    if modifier is not None and modifier not in MODIFIERS:
        raise FormatError("not a Modifier")
    if datatype is not None and datatype not in DATATYPES:
        raise FormatError("not a VectorStorageDatatype")
    if datatype == "turbo4":
        raise validation_errors([("sparse.datatype", SPARSE_TURBO4)])
    echo: dict[str, Any] = {}
    if modifier is not None:
        echo["modifier"] = modifier
    if datatype is not None:
        echo["index"] = {"datatype": datatype}
    sparse = SparseVectorConfig(SparseModifier(modifier or "none"))
    return CreateVectorName(name, sparse=sparse, echo=echo)
