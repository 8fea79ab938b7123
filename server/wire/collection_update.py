"""`PATCH /collections/{name}` bodies (Qdrant's `UpdateCollection`) applied to a config.

Owns: parsing an UpdateCollection body and merging it into the collection's CollectionConfig
the way Qdrant merges each diff, so that `GET /collections/{name}` shows what Qdrant would.
Not here: writing the config (engine: Catalog.update_config, atomic and durable), the
handler (server/api/collections.py), what a create body is (server/wire/collection_config.py, whose field tables
and scalar parsers this module reuses).

Qdrant 1.19, read in its source: `UpdateCollection` (lib/storage/src/content_manager/
collection_meta_ops.rs), `TableOfContent::update_collection` (lib/storage/src/content_manager/
toc/collection_meta_ops.rs), the `DiffConfig` impls (lib/collection/src/operations/
config_diff.rs: a field given replaces the stored one, a field absent or null keeps it),
`CollectionParams::update_vectors_from_diff` (lib/collection/src/config.rs) and
`Collection::update_metadata` (lib/collection/src/collection/collection_ops.rs): metadata is
merged one level deep by `merge_map` (lib/segment/src/common/utils.rs), a key set to null is
removed; a collection without metadata takes the patch as it is, nulls included. Strict mode:
`Collection::update_strict_mode_config` (collection_ops.rs) merges the diff field by field
(`DiffConfig for StrictModeConfig`: null keeps the stored value), or takes it as it is when the
collection had none.

Difference: Qdrant saves each part of the update in turn and stops at the first that fails
(an unknown vector name after an optimizers change keeps the optimizers change); Keel checks
the whole body first and then writes the new config once, all or nothing.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import FormatError, missing_vector_name
from engine.ops import (
    CollectionConfig,
    HnswSettings,
    SparseModifier,
    SparseVectorConfig,
    StrictModeConfig,
    VectorConfig,
)
from server.wire.collection_config import (
    HNSW_ALIASES,
    HNSW_FIELDS,
    MEMORY,
    OPTIMIZER_ALIASES,
    OPTIMIZER_FIELDS,
    _parse_fields,
    _parse_quantization,
    _parse_scalar,
    _parse_sparse_vectors,
    parse_strict_mode_config,
    payload_memory_errors,
    sparse_datatype_errors,
)
from server.wire.serde_text import invalid_type, untagged_mismatch, validation_errors

# CollectionParamsDiff: replication_factor and write_consistency_factor are NonZeroU32.
PARAMS_DIFF_FIELDS = {
    "replication_factor": ("u32", None, None),
    "write_consistency_factor": ("u32", None, None),
    "read_fan_out_factor": ("u32", None, None),
    "read_fan_out_delay_ms": ("u64", None, None),
    "on_disk_payload": ("bool", None, None),
}
NONZERO_PARAMS = ("replication_factor", "write_consistency_factor")
DISABLED = "Disabled"  # QuantizationConfigDiff::Disabled, serialised as this string


@dataclass(frozen=True)
class CollectionUpdate:
    """A parsed UpdateCollection body: each diff as Qdrant would apply it (empty: unchanged)."""

    hnsw: dict[str, Any]
    optimizers: dict[str, Any]
    params: dict[str, Any]
    vector_diffs: dict[str, dict[str, Any]]
    quantization: dict[str, Any] | str | None
    metadata: dict[str, Any] | None
    # The body's `sparse_vectors`: name -> the fields given (`modifier`, `index`), as echoed.
    sparse_diffs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    strict_mode: StrictModeConfig | None = None  # the diff; None: unchanged

    def apply(self, config: CollectionConfig) -> CollectionConfig:
        """`config` with this update merged in; BadRequest for a vector it does not have."""
        for name in sorted(self.sparse_diffs):
            if name not in config.sparse_vectors:
                raise missing_vector_name(name)
        echo = copy.deepcopy(config.echo)
        echo["optimizers_config"] = {**echo.get("optimizers_config", {}), **self.optimizers}
        echo["params"] = _merged_params(echo.get("params", {}), self.params)
        echo["hnsw_config"] = {**echo.get("hnsw_config", {}), **self.hnsw}
        if self.quantization is not None:
            is_disabled = self.quantization == DISABLED
            echo["quantization_config"] = None if is_disabled else self.quantization
        if self.metadata is not None:
            echo["metadata"] = merge_metadata(echo.get("metadata"), self.metadata)
        vectors = _merged_vectors(config, echo, self.vector_diffs)
        sparse_vectors = _merged_sparse(config, echo, self.sparse_diffs)
        hnsw = _merged_hnsw(config.hnsw, self.hnsw)
        strict_mode = config.strict_mode
        if self.strict_mode is not None:
            is_first = strict_mode is None
            strict_mode = self.strict_mode if is_first else strict_mode.merged(self.strict_mode)
        return CollectionConfig(
            vectors=vectors,
            hnsw=hnsw,
            echo=echo,
            sparse_vectors=sparse_vectors,
            strict_mode=strict_mode,
        )


def parse_update_collection(data: Any) -> CollectionUpdate:
    """An UpdateCollection body, checked as Qdrant checks it before finding the collection.

    Raises FormatError (400) for a malformed body, ValidationError (422) for values out of
    range; `apply` answers BadRequest (400) for a vector name the collection does not have.
    """
    if not isinstance(data, dict):
        raise invalid_type(data, "struct UpdateCollection")
    errors: list[tuple[str, str]] = []
    hnsw = _parse_fields(
        data.get("hnsw_config"), HNSW_FIELDS, HNSW_ALIASES, "HnswConfigDiff", "hnsw_config", errors
    )
    optimizers = _parse_fields(
        data.get("optimizers_config", data.get("optimizer_config")),
        OPTIMIZER_FIELDS,
        OPTIMIZER_ALIASES,
        "OptimizersConfigDiff",
        "optimizers_config",
        errors,
    )
    params = _parse_params_diff(data.get("params"), errors)
    vector_diffs = _parse_vectors_diff(data.get("vectors"), errors)
    quantization = _parse_quantization_diff(
        data.get("quantization_config", data.get("quantization"))
    )
    metadata = data.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise invalid_type(metadata, "a map")
    strict_mode = parse_strict_mode_config(data.get("strict_mode_config"), errors)
    # SparseVectorParams, as in a create body: only the fields given are kept (the echo).
    _, sparse_diffs = _parse_sparse_vectors(data.get("sparse_vectors"))
    errors.extend(sparse_datatype_errors(sparse_diffs, is_update=True))
    if errors:
        raise validation_errors(errors)
    return CollectionUpdate(
        hnsw, optimizers, params, vector_diffs, quantization, metadata, sparse_diffs, strict_mode
    )


def merge_metadata(current: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """Qdrant's metadata merge: top-level keys replaced, a null value removes its key; with
    no metadata yet, the patch is taken as it is (nulls included, as Qdrant does)."""
    if current is None:
        return dict(patch)
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# ---- parsing -------------------------------------------------------------------------------


def _parse_params_diff(raw: Any, errors: list[tuple[str, str]]) -> dict[str, Any]:
    if raw is None:
        return {}
    params = _parse_fields(raw, PARAMS_DIFF_FIELDS, {}, "CollectionParamsDiff", "params", errors)
    for name in NONZERO_PARAMS:
        if params.get(name) == 0:
            raise FormatError("invalid value: integer `0`, expected a nonzero u32")
    payload = raw.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            raise invalid_type(payload, "struct PayloadStorageParams")
        memory = payload.get("memory")
        params["payload"] = {} if memory is None else {"memory": _parse_scalar(memory, MEMORY)}
        errors.extend(payload_memory_errors(params["payload"], "params.payload"))
    return params


def _parse_vectors_diff(raw: Any, errors: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """VectorsConfigDiff: vector name -> VectorParamsDiff (hnsw_config, quantization, memory)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid_type(raw, "a map")
    diffs: dict[str, dict[str, Any]] = {}
    for name in sorted(raw):  # a BTreeMap in Qdrant
        inner = raw[name]
        if not isinstance(inner, dict):
            raise invalid_type(inner, "struct VectorParamsDiff")
        path = "vectors.?"
        diff: dict[str, Any] = {}
        if inner.get("hnsw_config") is not None:
            diff["hnsw_config"] = _parse_fields(
                inner["hnsw_config"],
                HNSW_FIELDS,
                HNSW_ALIASES,
                "HnswConfigDiff",
                f"{path}.hnsw_config",
                errors,
            )
        quantization = _parse_quantization_diff(
            inner.get("quantization_config", inner.get("quantization"))
        )
        if quantization is not None:
            diff["quantization_config"] = quantization
        for field, kind in (("on_disk", "bool"), ("memory", MEMORY)):
            if inner.get(field) is not None:
                diff[field] = _parse_scalar(inner[field], kind)
        if diff.get("memory") == "pinned":
            message = "`pinned` memory placement is not supported for dense vector storage"
            errors.append((f"{path}.memory", message))
        diffs[name] = diff
    return diffs


def _parse_quantization_diff(raw: Any) -> dict[str, Any] | str | None:
    """QuantizationConfigDiff: a QuantizationConfig, or "Disabled" to remove it."""
    if raw is None or raw == DISABLED:
        return raw
    try:
        return _parse_quantization(raw)
    except FormatError:
        raise untagged_mismatch("QuantizationConfigDiff") from None


# ---- merging -------------------------------------------------------------------------------


def _merged_params(current: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    merged = {**current, **{k: v for k, v in diff.items() if k != "payload"}}
    if "payload" in diff:
        merged["payload"] = {**current.get("payload", {}), **diff["payload"]}
    return merged


def _merged_sparse(
    config: CollectionConfig, echo: dict[str, Any], diffs: dict[str, dict[str, Any]]
) -> dict[str, SparseVectorConfig]:
    """Qdrant's `update_sparse_vectors_from_other`: a `modifier` given replaces the stored
    one (IDF weighting is computed per query, so it takes effect at once); `index` fields
    given replace those stored (`SparseIndexParams::update_from_other`), shown only."""
    sparse_vectors = dict(config.sparse_vectors)
    sparse_echo = {name: dict(params) for name, params in echo.get("sparse_vectors", {}).items()}
    for name, diff in diffs.items():
        params = sparse_echo.setdefault(name, {})
        if "modifier" in diff:
            params["modifier"] = diff["modifier"]
            sparse_vectors[name] = SparseVectorConfig(SparseModifier(diff["modifier"]))
        if "index" in diff:
            params["index"] = {**params.get("index", {}), **diff["index"]}
    echo["sparse_vectors"] = sparse_echo
    return sparse_vectors


def _merged_hnsw(current: HnswSettings, diff: dict[str, Any]) -> HnswSettings:
    return HnswSettings(
        m=diff.get("m", current.m),
        ef_construct=diff.get("ef_construct", current.ef_construct),
        full_scan_threshold=diff.get("full_scan_threshold", current.full_scan_threshold),
    )


def _merged_vectors(
    config: CollectionConfig, echo: dict[str, Any], diffs: dict[str, dict[str, Any]]
) -> dict[str, VectorConfig]:
    """Per-vector diffs applied to the engine's VectorConfigs and to the vectors' echo."""
    vectors = dict(config.vectors)
    vector_echoes = echo.setdefault("vectors", {})
    for name, diff in diffs.items():
        if name not in vectors:
            raise missing_vector_name(name)
        vector_echo = vector_echoes.setdefault(name, {})
        if "hnsw_config" in diff:
            hnsw = {**vector_echo.get("hnsw_config", {}), **diff["hnsw_config"]}
            if hnsw:
                vector_echo["hnsw_config"] = hnsw
            vectors[name] = replace(
                vectors[name], hnsw_m=hnsw.get("m"), hnsw_ef_construct=hnsw.get("ef_construct")
            )
        if "quantization_config" in diff:
            quantization = diff["quantization_config"]
            vector_echo.pop("quantization_config", None)
            if quantization != DISABLED:
                vector_echo["quantization_config"] = quantization
        for field in ("on_disk", "memory"):
            if field in diff:
                vector_echo[field] = diff[field]
    return vectors
