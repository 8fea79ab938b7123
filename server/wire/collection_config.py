"""Collection configs on the wire: CreateCollection bodies in, CollectionInfo out.

Owns: parsing and validating `PUT /collections/{name}` (Qdrant's `CreateCollection`) into
the engine's CollectionConfig, keeping every accepted option the engine does not use in
`CollectionConfig.echo` (JSON, stored with the collection), and rendering `GET
/collections/{name}` from it with Qdrant's defaults, field for field.
Not here: collection names (server/wire/schemas.py), handlers (server/api/collections.py).

Qdrant 1.19, read in its source: `CreateCollection` and `CreateCollectionOperation::new`
(lib/storage/src/content_manager/collection_meta_ops.rs), `VectorParams`/`VectorsConfig`
(lib/collection/src/operations/types.rs: an untagged enum, so any format error inside
`vectors` reads "data did not match any variant of untagged enum VectorsConfig"; size is a
NonZeroU64 validated to [1, 65536]), the diffs in lib/collection/src/operations/
config_diff.rs, outputs `CollectionInfo`/`CollectionConfig`/`CollectionParams`/`HnswConfig`/
`OptimizersConfig`/`WalConfig` (skip_serializing_if as there), defaults in config/config.yaml.
Strict mode: `StrictModeConfig` and its `*Output` (lib/segment/src/types.rs: every field
optional, left out of the output when unset; the limits validated `range(min = 1)`), stored as
given on create (`create_collection.rs`: no default strict mode in Keel's storage config) and
absent from collection info when never set. Collection info's `warnings`:
`CollectionConfigInternal::get_warnings` (lib/collection/src/config.rs), from the config alone.
"""

from __future__ import annotations

from typing import Any

from engine.errors import BadRequest, FormatError, NotImplementedYet
from engine.limits import VECTOR_DIM_MAX, VECTOR_NAMES_MAX
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    Distance,
    HnswSettings,
    SparseModifier,
    SparseVectorConfig,
    StrictModeConfig,
    VectorConfig,
    stored_datatype,
)
from server.wire.serde_text import (
    invalid_type,
    missing_field,
    range_message,
    unknown_variant,
    untagged_mismatch,
    validation_errors,
)

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
MEMORY = ("cold", "cached", "pinned")
DATATYPES = ("float32", "uint8", "float16", "turbo4")
DISTANCES = tuple(distance.value for distance in Distance)
MULTIVECTOR_COMPARATORS = ("max_sim",)
VECTOR_NAME_BYTES_MAX = 200  # Qdrant's validate_vector_name
VECTOR_NAME_CHARS_FORBIDDEN = '<>:"/\\|?*\0\x1f'

# name -> (kind, minimum, maximum); kinds: usize, u32, u64, f64, bool, threads, or enum values.
HNSW_FIELDS = {
    "m": ("usize", None, None),
    "ef_construct": ("usize", 4, None),
    "full_scan_threshold": ("usize", 10, None),
    "max_indexing_threads": ("usize", None, None),
    "on_disk": ("bool", None, None),
    "memory": (MEMORY, None, None),
    "payload_m": ("usize", None, None),
    "inline_storage": ("bool", None, None),
}
HNSW_ALIASES = {"full_scan_threshold_kb": "full_scan_threshold"}
SPARSE_INDEX_FIELDS = {
    "full_scan_threshold": ("usize", None, None),
    "on_disk": ("bool", None, None),
    "memory": (MEMORY, None, None),
    "datatype": (DATATYPES, None, None),
}
HNSW_CORE = ("m", "ef_construct", "full_scan_threshold")  # in HnswSettings, not in the echo
WAL_FIELDS = {
    "wal_capacity_mb": ("usize", 1, None),
    "wal_segments_ahead": ("usize", None, None),
    "wal_retain_closed": ("usize", None, None),
}
OPTIMIZER_FIELDS = {
    "deleted_threshold": ("f64", 0.0, 1.0),
    "vacuum_min_vector_number": ("usize", 100, None),
    "default_segment_number": ("usize", None, None),
    "max_segment_size": ("usize", 1, None),
    "memmap_threshold": ("usize", None, None),
    "indexing_threshold": ("usize", None, None),
    "flush_interval_sec": ("u64", None, None),
    "max_optimization_threads": ("threads", None, None),
    "prevent_unoptimized": ("bool", None, None),
}
OPTIMIZER_ALIASES = {
    "max_segment_size_kb": "max_segment_size",
    "memmap_threshold_kb": "memmap_threshold",
    "indexing_threshold_kb": "indexing_threshold",
}
PARAM_FIELDS = {
    "shard_number": ("u32", 1, None),
    "replication_factor": ("u32", 1, None),
    "write_consistency_factor": ("u32", 1, None),
    "on_disk_payload": ("bool", None, None),
}
QUANTIZATION_FIELDS = {
    "scalar": {
        "type": (("int8",), None, None),
        "quantile": ("f64", None, None),
        "always_ram": ("bool", None, None),
        "memory": (MEMORY, None, None),
    },
    "product": {
        "compression": (("x4", "x8", "x16", "x32", "x64"), None, None),
        "always_ram": ("bool", None, None),
        "memory": (MEMORY, None, None),
    },
    "binary": {
        "always_ram": ("bool", None, None),
        "memory": (MEMORY, None, None),
        "encoding": (("one_bit", "two_bits", "one_and_half_bits"), None, None),
        "query_encoding": (("default", "binary", "scalar4bits", "scalar8bits"), None, None),
    },
    "turbo": {
        "always_ram": ("bool", None, None),
        "memory": (MEMORY, None, None),
        "bits": (("bits1", "bits1_5", "bits2", "bits4"), None, None),
    },
}
QUANTIZATION_REQUIRED = {"scalar": ("type",), "product": ("compression",)}
# StrictModeConfig's scalars; the minimums are its `validate(range(min = 1))`.
STRICT_MODE_SCALARS = {
    "enabled": ("bool", None, None),
    "max_query_limit": ("usize", 1, None),
    "max_timeout": ("usize", 1, None),
    "unindexed_filtering_retrieve": ("bool", None, None),
    "unindexed_filtering_update": ("bool", None, None),
    "search_max_hnsw_ef": ("usize", None, None),
    "search_allow_exact": ("bool", None, None),
    "search_max_oversampling": ("f64", None, None),
    "upsert_max_batchsize": ("usize", None, None),
    "search_max_batchsize": ("usize", None, None),
    "max_collection_vector_size_bytes": ("usize", None, None),
    "read_rate_limit": ("usize", 1, None),
    "write_rate_limit": ("usize", 1, None),
    "max_collection_payload_size_bytes": ("usize", None, None),
    "max_points_count": ("usize", 1, None),
    "filter_max_conditions": ("usize", None, None),
    "condition_max_size": ("usize", None, None),
    "max_payload_index_count": ("usize", None, None),
    "max_resident_memory_percent": ("u8", 1, 100),
}
# The per-vector sub-configs: field -> (struct name, its one limit, also `range(min = 1)`).
STRICT_MODE_VECTOR_CONFIGS = {
    "multivector_config": ("StrictModeMultivector", "max_vectors"),
    "sparse_config": ("StrictModeSparse", "max_length"),
}

# Qdrant's defaults (config/config.yaml, lib/collection/src/config.rs) for what Keel echoes.
DEFAULT_HNSW_OUTPUT = {"max_indexing_threads": 0, "on_disk": False}
DEFAULT_OPTIMIZER_CONFIG = {
    "deleted_threshold": 0.2,
    "vacuum_min_vector_number": 1000,
    "default_segment_number": 0,
    "max_segment_size": None,
    "memmap_threshold": None,
    "indexing_threshold": 10000,
    "flush_interval_sec": 5,
    "max_optimization_threads": None,
    "prevent_unoptimized": None,
}
DEFAULT_WAL_CONFIG = {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1}
DEFAULT_PARAMS = {
    "shard_number": 1,
    "replication_factor": 1,
    "write_consistency_factor": 1,
    "on_disk_payload": True,
}


def parse_create_collection(data: Any) -> CollectionConfig:
    """A CreateCollection body -> CollectionConfig: 400 format, 422 validation, 501 unsupported."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct CreateCollection")
    errors: list[tuple[str, str]] = []
    vectors, vector_echo, is_single_form = _parse_vectors(data.get("vectors", {}), errors)
    params = _parse_fields(data, PARAM_FIELDS, {}, "CreateCollection", "", errors)
    hnsw = _parse_fields(
        data.get("hnsw_config"), HNSW_FIELDS, HNSW_ALIASES, "HnswConfigDiff", "hnsw_config", errors
    )
    wal = _parse_fields(
        data.get("wal_config"), WAL_FIELDS, {}, "WalConfigDiff", "wal_config", errors
    )
    optimizers_raw = data.get("optimizers_config", data.get("optimizer_config"))
    optimizers = _parse_fields(
        optimizers_raw,
        OPTIMIZER_FIELDS,
        OPTIMIZER_ALIASES,
        "OptimizersConfigDiff",
        "optimizers_config",
        errors,
    )
    quantization = _parse_quantization(data.get("quantization_config", data.get("quantization")))
    metadata = data.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise invalid_type(metadata, "a map")
    extra_params = _parse_extra_params(data)
    errors.extend(payload_memory_errors(extra_params.get("payload"), "payload"))
    strict_mode = parse_strict_mode_config(data.get("strict_mode_config"), errors)
    sparse_vectors, sparse_echo = _parse_sparse_vectors(data.get("sparse_vectors"))
    errors.extend(sparse_datatype_errors(sparse_echo, is_update=False))
    if errors:
        raise validation_errors(errors)
    _check_vector_names(vectors, is_single_form)
    _reject_unsupported(data)
    echo = {
        "is_single_form": is_single_form,
        "vectors": vector_echo,
        "params": {**params, **extra_params},
        "hnsw_config": hnsw,
        "wal_config": wal,
        "optimizers_config": optimizers,
        "quantization_config": quantization,
        "metadata": metadata,
    }
    defaults = HnswSettings()
    hnsw_settings = HnswSettings(
        m=hnsw.get("m", defaults.m),
        ef_construct=hnsw.get("ef_construct", defaults.ef_construct),
        full_scan_threshold=hnsw.get("full_scan_threshold", defaults.full_scan_threshold),
    )
    echo["sparse_vectors"] = sparse_echo
    # CreateCollectionOperation::new (storage/src/content_manager/collection_meta_ops.rs), in
    # its order: every sparse name (a BTreeMap: name order), then the empty name, then the
    # first duplicate in dense name order.
    for name in sorted(sparse_vectors):
        _check_vector_name(name, "sparse")
    if UNNAMED_VECTOR in sparse_vectors:
        raise BadRequest("Sparse vector name cannot be empty")
    if duplicates := set(vectors) & set(sparse_vectors):
        message = "Dense and sparse vector names must be unique - duplicate found with"
        raise BadRequest(f"{message} '{min(duplicates)}'")
    return CollectionConfig(
        vectors=vectors,
        hnsw=hnsw_settings,
        echo=echo,
        sparse_vectors=sparse_vectors,
        strict_mode=strict_mode,
    )


def parse_strict_mode_config(raw: Any, errors: list[tuple[str, str]]) -> StrictModeConfig | None:
    """A StrictModeConfig (create) or its diff (PATCH): None when absent or null. Unknown
    fields are ignored, as serde does; range violations go to `errors` (422)."""
    if raw is None:
        return None
    if type(raw) is not dict:
        raise invalid_type(raw, "struct StrictModeConfig")
    path = "strict_mode_config"
    values: dict[str, Any] = _parse_fields(
        raw, STRICT_MODE_SCALARS, {}, "StrictModeConfig", path, errors
    )
    for name, (struct_name, limit) in STRICT_MODE_VECTOR_CONFIGS.items():
        if raw.get(name) is None:
            continue
        if type(raw[name]) is not dict:
            raise invalid_type(raw[name], "a map")
        limits: dict[str, int | None] = {}
        for vector_name in sorted(raw[name]):  # a BTreeMap in Qdrant
            fields = {limit: ("usize", 1, None)}
            inner_path = f"{path}.{name}.{vector_name}"
            inner = _parse_fields(
                raw[name][vector_name], fields, {}, struct_name, inner_path, errors
            )
            limits[vector_name] = inner.get(limit)
        values[name] = limits
    return StrictModeConfig(**values)


def payload_memory_errors(payload: dict[str, Any] | None, path: str) -> list[tuple[str, str]]:
    """`PayloadStorageParams` validation (lib/collection/src/config.rs): payload storage has
    no `pinned` placement."""
    if payload is None or payload.get("memory") != "pinned":
        return []
    return [(f"{path}.memory", "`pinned` memory placement is not supported for payload storage")]


def sparse_datatype_errors(
    sparse_echo: dict[str, dict[str, Any]], is_update: bool
) -> list[tuple[str, str]]:
    """`SparseIndexParams` validation: sparse vectors have no `turbo4` datatype. A create
    body's map is validated by validator's map rule (`sparse_vectors[<position>]`, the
    position in name order); an update's `SparseVectorsConfig` by `validate_iter` (`?`, then
    `?[<index among the failing>]` when more than one fails)."""
    message = "sparse vectors do not support the `turbo4` datatype"
    names = sorted(sparse_echo)
    failing = [n for n in names if sparse_echo[n].get("index", {}).get("datatype") == "turbo4"]
    if not is_update:
        paths = [f"sparse_vectors[{names.index(name)}]" for name in failing]
    elif len(failing) == 1:
        paths = ["sparse_vectors.?"]
    else:
        paths = [f"sparse_vectors.?[{index}]" for index in range(len(failing))]
    return [(f"{path}.index.datatype", message) for path in paths]


def _parse_sparse_vectors(
    raw: Any,
) -> tuple[dict[str, SparseVectorConfig], dict[str, dict[str, Any]]]:
    """`sparse_vectors`: name -> SparseVectorParams `{index?, modifier?}`; the configs and
    their echo (what collection info shows, as Qdrant: only the fields given, nulls left out)."""
    if raw is None:
        return {}, {}
    if type(raw) is not dict:
        raise invalid_type(raw, "a map")
    configs: dict[str, SparseVectorConfig] = {}
    echo: dict[str, dict[str, Any]] = {}
    for name, params in raw.items():
        if type(params) is not dict:
            raise invalid_type(params, "struct SparseVectorParams")
        for key in params:
            if key not in ("index", "modifier"):
                raise FormatError(f"unknown field `{key}`, expected `index` or `modifier`")
        modifier = params.get("modifier")
        if modifier is not None and modifier not in ("none", "idf"):
            raise unknown_variant(modifier, ("none", "idf"))
        # Parsed field by field, not echoed raw: a mistyped field (`"on_disk": {}`) would
        # otherwise be stored and shown in collection info, outside Qdrant's spec.
        index = _parse_fields(
            params.get("index"), SPARSE_INDEX_FIELDS, {}, "SparseIndexParams", "index", []
        )
        configs[name] = SparseVectorConfig(SparseModifier(modifier or "none"))
        echo[name] = {key: value for key, value in params.items() if value is not None}
        if "index" in echo[name]:
            echo[name]["index"] = index
    if len(configs) > VECTOR_NAMES_MAX:
        raise BadRequest(f"too many sparse vectors: {len(configs)}, at most {VECTOR_NAMES_MAX}")
    return configs, echo


def collection_info_json(config: CollectionConfig, stats: Any) -> dict[str, Any]:
    """CollectionInfo as Qdrant 1.19 writes it for a collection made with `config`."""
    echo = config.echo
    info_config: dict[str, Any] = {
        "params": _params_json(config),
        "hnsw_config": {
            "m": config.hnsw.m,
            "ef_construct": config.hnsw.ef_construct,
            "full_scan_threshold": config.hnsw.full_scan_threshold,
            **DEFAULT_HNSW_OUTPUT,
            **{k: v for k, v in echo.get("hnsw_config", {}).items() if k not in HNSW_CORE},
        },
        "optimizer_config": _optimizer_json(echo.get("optimizers_config", {})),
        "wal_config": {**DEFAULT_WAL_CONFIG, **echo.get("wal_config", {})},
        "quantization_config": echo.get("quantization_config"),
    }
    if config.strict_mode is not None:
        info_config["strict_mode_config"] = config.strict_mode.to_json_dict()
    if echo.get("metadata") is not None:
        info_config["metadata"] = echo["metadata"]
    info: dict[str, Any] = {"status": stats.status, "optimizer_status": "ok"}
    warnings = configuration_warnings(config)
    if warnings:  # Qdrant leaves `warnings` out when it is empty
        info["warnings"] = [{"message": message} for message in warnings]
    return {
        **info,
        "indexed_vectors_count": stats.indexed_vectors_count,
        "points_count": stats.points_count,
        "segments_count": stats.segments_count,
        "config": info_config,
        "payload_schema": payload_schema_json(stats.payload_indexes),
    }


def configuration_warnings(config: CollectionConfig) -> list[str]:
    """Qdrant's `CollectionConfigInternal::get_warnings`: per vector (in name order), the
    collection's hnsw_config with the vector's own over it; `inline_storage` on a multivector,
    or on a vector with no quantization (its own or the collection's), is ignored, and said so."""
    echo = config.echo
    vector_echoes = echo.get("vectors", {})
    has_collection_quantization = echo.get("quantization_config") is not None
    warnings = []
    for name in sorted(config.vectors):
        vector_echo = vector_echoes.get(name, {})
        hnsw = {**echo.get("hnsw_config", {}), **vector_echo.get("hnsw_config", {})}
        if not hnsw.get("inline_storage", False):
            continue
        option = f"The `hnsw_config.inline_storage` option for vector '{name}'"
        has_quantization = has_collection_quantization or "quantization_config" in vector_echo
        if "multivector_config" in vector_echo:
            warnings.append(
                f"{option} is not compatible with multivectors. This option will be ignored."
            )
        elif not has_quantization:
            warnings.append(
                f"{option} requires quantization to be enabled. This option will be ignored."
            )
    return warnings


def payload_schema_json(specs: Any) -> dict[str, Any]:
    """`payload_schema`: field -> PayloadIndexInfo (`params` only when created with them)."""
    schema: dict[str, Any] = {}
    for spec in specs:
        info: dict[str, Any] = {"data_type": spec.schema_type}
        if spec.params is not None:
            info["params"] = spec.params
        info["points"] = spec.points_count
        schema[spec.field_name] = info
    return schema


# ---- parsing -------------------------------------------------------------------------------


def _parse_vectors(
    raw: Any, errors: list[tuple[str, str]]
) -> tuple[dict[str, VectorConfig], dict[str, Any], bool]:
    """VectorsConfig: one unnamed `{size, distance, ..}` or `{name: {size, distance, ..}}`."""
    if isinstance(raw, dict) and ("size" in raw or "distance" in raw):
        try:
            vector, echo, vector_errors = _parse_vector_params(raw)
        except FormatError:
            pass  # untagged: serde then tries the map of named vectors
        else:
            errors.extend((f"vectors.{path}", message) for path, message in vector_errors)
            return {UNNAMED_VECTOR: vector}, {UNNAMED_VECTOR: echo}, True
    if not isinstance(raw, dict):
        raise untagged_mismatch("VectorsConfig")
    vectors, echoes, failing = {}, {}, []
    for name in sorted(raw):  # a BTreeMap in Qdrant: validated in name order
        try:
            vectors[name], echoes[name], vector_errors = _parse_vector_params(raw[name])
        except FormatError:
            raise untagged_mismatch("VectorsConfig") from None
        if vector_errors:
            failing.append(vector_errors)
    for index, vector_errors in enumerate(failing):
        prefix = "vectors.?" if len(failing) == 1 else f"vectors.?[{index}]"
        errors.extend((f"{prefix}.{path}", message) for path, message in vector_errors)
    return vectors, echoes, False


def _parse_vector_params(raw: Any) -> tuple[VectorConfig, dict[str, Any], list[tuple]]:
    """One VectorParams; returns the config, what to echo, and field-relative 422 errors."""
    if not isinstance(raw, dict):
        raise invalid_type(raw, "struct VectorParams")
    for field in ("size", "distance"):
        if field not in raw:
            raise missing_field(field)
    size = _parse_scalar(raw["size"], "u64")
    if size == 0:
        raise FormatError("invalid value: integer `0`, expected a nonzero u64")
    distance = _parse_scalar(raw["distance"], DISTANCES)
    errors: list[tuple[str, str]] = []
    if size > VECTOR_DIM_MAX:
        errors.append(("size", range_message(size, 1, VECTOR_DIM_MAX)))
    hnsw = _parse_fields(
        raw.get("hnsw_config"), HNSW_FIELDS, HNSW_ALIASES, "HnswConfigDiff", "hnsw_config", errors
    )
    echo = {"hnsw_config": hnsw} if hnsw else {}
    quantization = _parse_quantization(raw.get("quantization_config", raw.get("quantization")))
    if quantization is not None:
        echo["quantization_config"] = quantization
    for field, kind in (("on_disk", "bool"), ("memory", MEMORY), ("datatype", DATATYPES)):
        if raw.get(field) is not None:
            echo[field] = _parse_scalar(raw[field], kind)
    if echo.get("memory") == "pinned":
        message = "`pinned` memory placement is not supported for dense vector storage"
        errors.append(("memory", message))
    if raw.get("multivector_config") is not None:
        echo["multivector_config"] = _parse_multivector_config(raw["multivector_config"])
    vector = VectorConfig(
        size=size,
        distance=Distance(distance),
        hnsw_m=hnsw.get("m"),
        hnsw_ef_construct=hnsw.get("ef_construct"),
        is_multivector="multivector_config" in echo,
        datatype=stored_datatype(echo),
    )
    return vector, echo, errors


def _parse_multivector_config(raw: Any) -> dict[str, str]:
    """MultiVectorConfig: `{"comparator": "max_sim"}`, its only comparator (echoed so)."""
    if not isinstance(raw, dict):
        raise invalid_type(raw, "struct MultiVectorConfig")
    if "comparator" not in raw:
        raise missing_field("comparator")
    if raw["comparator"] not in MULTIVECTOR_COMPARATORS:
        raise unknown_variant(raw["comparator"], MULTIVECTOR_COMPARATORS)
    return {"comparator": raw["comparator"]}


def _parse_fields(
    raw: Any,
    fields: dict[str, tuple],
    aliases: dict[str, str],
    struct_name: str,
    path: str,
    errors: list[tuple[str, str]],
) -> dict[str, Any]:
    """The optional scalars `fields` of a struct (a config diff); other keys are ignored,
    as serde ignores unknown fields. Range violations go to `errors` (422)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid_type(raw, f"struct {struct_name}")
    result = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        if name not in fields or value is None:
            continue
        kind, minimum, maximum = fields[name]
        result[name] = _parse_scalar(value, kind)
        is_low = minimum is not None and result[name] < minimum
        if is_low or (maximum is not None and result[name] > maximum):
            field_path = f"{path}.{name}" if path else name
            errors.append((field_path, range_message(result[name], minimum, maximum)))
    return result


def _parse_scalar(value: Any, kind: Any) -> Any:
    """One serde scalar: integers (no bools, no floats), f64, bool, "auto"|usize or an enum."""
    if isinstance(kind, tuple):
        if value not in kind:
            raise unknown_variant(value, kind)
        return value
    if kind == "bool":
        if type(value) is not bool:
            raise invalid_type(value, "a boolean")
        return value
    if kind == "f64":
        if type(value) not in (int, float):
            raise invalid_type(value, "f64")
        return float(value)
    if kind == "threads":
        if value == "auto":
            return None  # OptimizersConfig writes "auto" as null: no limit
        return _parse_scalar(value, "usize")
    maximum = {"u8": 255, "u32": U32_MAX, "u64": U64_MAX, "usize": U64_MAX}[kind]
    if type(value) is not int:
        raise invalid_type(value, kind)
    if not 0 <= value <= maximum:
        raise FormatError(f"invalid value: integer `{value}`, expected {kind}")
    return value


def _parse_quantization(raw: Any) -> dict[str, Any] | None:
    """QuantizationConfig (scalar, product, binary or turbo), echoed; Keel searches exactly."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in QUANTIZATION_FIELDS:
        raise untagged_mismatch("QuantizationConfig")
    kind, inner = next(iter(raw.items()))
    if not isinstance(inner, dict):
        raise untagged_mismatch("QuantizationConfig")
    if any(field not in inner for field in QUANTIZATION_REQUIRED.get(kind, ())):
        raise untagged_mismatch("QuantizationConfig")
    try:
        fields = _parse_fields(inner, QUANTIZATION_FIELDS[kind], {}, kind, kind, [])
    except FormatError:
        raise untagged_mismatch("QuantizationConfig") from None
    return {kind: fields}


def _parse_extra_params(data: dict[str, Any]) -> dict[str, Any]:
    """sharding_method and payload storage params, echoed in CollectionParams."""
    extra: dict[str, Any] = {}
    if data.get("sharding_method") is not None:
        extra["sharding_method"] = _parse_scalar(data["sharding_method"], ("auto", "custom"))
    payload = data.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            raise invalid_type(payload, "struct PayloadStorageParams")
        memory = payload.get("memory")
        extra["payload"] = {} if memory is None else {"memory": _parse_scalar(memory, MEMORY)}
    return extra


def _check_vector_names(vectors: dict[str, VectorConfig], is_single_form: bool) -> None:
    """CreateCollectionOperation::new's vector-name rule (400), and Keel's count bound."""
    if len(vectors) > VECTOR_NAMES_MAX:
        raise BadRequest(f"too many vectors: {len(vectors)}, at most {VECTOR_NAMES_MAX}")
    if is_single_form:
        return
    for name in vectors:
        _check_vector_name(name, "dense")


def _check_vector_name(name: str, kind: str) -> None:
    if len(name.encode()) > VECTOR_NAME_BYTES_MAX:
        reason = f"vector name must be at most {VECTOR_NAME_BYTES_MAX} bytes long"
    elif bad := next((c for c in VECTOR_NAME_CHARS_FORBIDDEN if c in name), None):
        reason = f'vector name cannot contain "{bad}" char'
    else:
        return
    raise BadRequest(f"Invalid {kind} vector name `{name}`: {reason}")


def _reject_unsupported(data: dict[str, Any]) -> None:
    if data.get("sharding_method") == "custom":
        raise NotImplementedYet("custom sharding is not supported by single-node Keel")


# ---- rendering -----------------------------------------------------------------------------


def _params_json(config: CollectionConfig) -> dict[str, Any]:
    echo = config.echo
    vector_echo = echo.get("vectors", {})

    def vector_json(name: str) -> dict[str, Any]:
        vector = config.vectors[name]
        return {"size": vector.size, "distance": vector.distance.value, **vector_echo.get(name, {})}

    is_single_form = echo.get("is_single_form", config.is_single_unnamed)
    if is_single_form:
        vectors: dict[str, Any] = vector_json(UNNAMED_VECTOR)
    else:
        vectors = {name: vector_json(name) for name in config.vectors}
    params = {"vectors": vectors, **DEFAULT_PARAMS, **echo.get("params", {})}
    if config.sparse_vectors:
        sparse_echo = echo.get("sparse_vectors", {})
        params["sparse_vectors"] = {
            name: sparse_echo.get(name, {}) for name in config.sparse_vectors
        }
    return params


def _optimizer_json(diff: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_OPTIMIZER_CONFIG, **diff}
