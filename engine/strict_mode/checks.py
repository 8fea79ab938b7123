"""Strict mode's checks of each kind of request, in Qdrant's order and words.

Owns: refusing a request strict mode does not allow (StrictModeError, 400): the generic
limits (`check_limit_opt`, `check_bool_opt`, timeout, batch size), filters (indexed fields,
condition count and size), search params, the full-scan rule of the universal query
(`Query::check_fullscan`), group_by fields, formulas, and writes (batch size, collection
size, sparse vector lengths, filters of filtered updates, the payload index count).
Not here: what a filter needs of the indexes (engine/strict_mode/fields.py), rate limits
(engine/strict_mode/rate_limits.py), where the checks run (engine/collection.py).

Qdrant 1.19: lib/collection/src/operations/verification/ (mod.rs: the generic checks and
their texts; query.rs, search.rs, count.rs, facet.rs, matrix.rs, local_shard.rs: what each
request's limit, filter, exact flag and params are; update.rs: the writes) and
src/common/update.rs (the payload index count).

Differences, each because Keel stores things differently: the collection's vector storage
size counts dense vectors (count x dim x 4 bytes; sparse vectors are not counted), its payload
storage size is the JSON size of the stored payloads (Qdrant measures its storage files).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import StrictModeError
from engine.filters import conditions as filters
from engine.filters.payload_path import PayloadPath
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    CreateFieldIndex,
    DeletePoints,
    DeleteVectors,
    MultiColumn,
    Operation,
    PayloadMode,
    SparseColumn,
    StrictModeConfig,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
)
from engine.query import plan
from engine.query.formula import Formula
from engine.strict_mode.fields import (
    IndexSchemas,
    has_tenant_condition,
    max_condition_input_size,
    one_unindexed_expression_key,
    one_unindexed_key,
    total_conditions_count,
)

# Payload edits that add bytes: Qdrant's SetPayload (set and overwrite) checks the payload size.
SETTING_MODES = (PayloadMode.SET, PayloadMode.OVERWRITE)
# Index schemas whose index answers `match` (PayloadSchemaType::supports_match).
MATCH_SCHEMAS = ("keyword", "integer", "uuid", "bool")


def is_enabled(config: StrictModeConfig | None) -> bool:
    return config is not None and config.enabled is True


def _strict(config: CollectionConfig) -> StrictModeConfig:
    assert config.strict_mode is not None, "checked only while strict mode is enabled"
    return config.strict_mode


def refusal(error: str, solution: str) -> StrictModeError:
    """CollectionError::strict_mode's text: `{error}. Help: {solution}`."""
    return StrictModeError(f"{error}. Help: {solution}")


# ---- the generic checks (verification/mod.rs) --------------------------------------------


def check_limit(value: float | None, limit: float | None, name: str) -> None:
    """`check_limit_opt`: refuse `value` above `limit` (either None: nothing to check)."""
    if value is None or limit is None or value <= limit:
        return
    raise refusal(
        f'Limit exceeded {_number(value)} > {_number(limit)} for "{name}"',
        f'Reduce the "{name}" parameter to or below {_number(limit)}.',
    )


def check_exact(is_exact: bool | None, config: StrictModeConfig) -> None:
    """`check_bool_opt` of `search_allow_exact`."""
    if config.search_allow_exact is False and is_exact:
        raise refusal("Exact search disabled!", "Set exact=false.")


def check_timeout(timeout_s: float | None, config: StrictModeConfig | None) -> None:
    """`max_timeout` against a request's `timeout` (whole seconds, as Qdrant parses it)."""
    if is_enabled(config) and timeout_s is not None:
        assert config is not None
        check_limit(int(timeout_s), config.max_timeout, "timeout")


def check_filter(
    filter_: filters.Filter | None,
    allow_unindexed: bool | None,
    config: StrictModeConfig,
    indexes: IndexSchemas,
) -> None:
    """`check_request_filter` for one filter: its fields indexed (when `allow_unindexed` is
    False), then `filter_max_conditions`, then `condition_max_size`."""
    if filter_ is None:
        return
    if allow_unindexed is False:
        unindexed = one_unindexed_key(filter_, indexes)
        if unindexed is not None:
            key, schemas = unindexed
            raise refusal(
                f'Index required but not found for "{key}" of one of the following types: '
                f"[{', '.join(sorted(set(schemas)))}]",
                "Create an index for this key or use a different filter.",
            )
    if config.filter_max_conditions is not None:
        count = total_conditions_count(filter_)
        if count > config.filter_max_conditions:
            raise refusal(
                f"Filter condition limit reached ({count} > {config.filter_max_conditions})",
                "Reduce the amount of conditions of your filter.",
            )
    if config.condition_max_size is not None:
        size = max_condition_input_size(filter_)
        if size > config.condition_max_size:
            raise refusal(
                f"Condition size limit reached ({size} > {config.condition_max_size})",
                "Reduce the size of your condition.",
            )


def check_search_params(
    hnsw_ef: int | None,
    is_exact: bool,
    oversampling: float | None,
    config: StrictModeConfig,
    idf_corpus: filters.Filter | None = None,
    indexes: IndexSchemas | None = None,
) -> None:
    """A request's SearchParams: oversampling, hnsw_ef (its own check_custom), the `idf`
    corpus filter as a read's filter (`indexed_filter_read`: read with unindexed-field
    rules and limits), then exact (its `request_exact`)."""
    check_limit(oversampling, config.search_max_oversampling, "oversampling")
    check_limit(hnsw_ef, config.search_max_hnsw_ef, "hnsw_ef")
    if idf_corpus is not None:
        assert indexes is not None
        check_filter(idf_corpus, config.unindexed_filtering_retrieve, config, indexes)
    check_exact(is_exact, config)


# ---- reads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeParams:
    """What a query node's `params` say that its plan node does not keep: the quantization
    oversampling (Keel searches exactly and ignores it). Mirrors the node's prefetch tree."""

    oversampling: float | None = None
    has_params: bool = False  # `params` given: Qdrant checks exact/hnsw_ef only then
    prefetch: tuple[NodeParams, ...] = ()


@dataclass(frozen=True)
class QueryCheck:
    """One read of the query family as strict mode sees it: the plan, which API it came
    through (`is_universal`: /points/query*, whose nodes are checked for full scans; the
    search/recommend/discover APIs are not) and what its plan does not keep."""

    request: plan.QueryRequest
    params: NodeParams = field(default_factory=NodeParams)
    is_universal: bool = True


def check_queries(
    checks: list[QueryCheck], is_batch: bool, config: CollectionConfig, indexes: IndexSchemas
) -> None:
    """A read of the query family (a batch: its size first, then each request in order)."""
    strict = config.strict_mode
    assert strict is not None
    if is_batch:
        check_limit(len(checks), strict.search_max_batchsize, "search batch size")
    for check in checks:
        check_query(check, config, indexes)


def check_query(check: QueryCheck, config: CollectionConfig, indexes: IndexSchemas) -> None:
    """A query, search, recommend or discover request (one of a batch), in Qdrant's order:
    prefetches (each checked whole), the node's full scan, the limit (group requests:
    limit x group_size), the filter, the params; groups: the group_by field."""
    strict = config.strict_mode
    assert strict is not None
    request, root = check.request, check.request.root
    group_by = request.group_by
    if group_by is None:  # CollectionQueryGroupsRequest does not look at its prefetches
        for child, params in _children(root, check.params):
            _check_node(child, params, check.is_universal, config, indexes)
    if check.is_universal and not root.prefetch:
        check_full_scan(root, config, indexes)
    check_formula(root.query, strict, indexes)
    limit = root.limit if group_by is None else root.limit * group_by.group_size
    check_limit(limit, strict.max_query_limit, "limit")
    check_filter(root.filter, strict.unindexed_filtering_retrieve, strict, indexes)
    _check_node_params(root, check.params, strict, indexes)
    if group_by is not None:
        check_group_by(group_by.key, strict, indexes)


def check_search(
    limit: int,
    filter_: filters.Filter | None,
    hnsw_ef: int | None,
    is_exact: bool,
    oversampling: float | None,
    config: CollectionConfig,
    indexes: IndexSchemas,
) -> None:
    """POST /points/search (SearchRequestInternal): limit, filter, params."""
    strict = _strict(config)
    check_limit(limit, strict.max_query_limit, "limit")
    check_filter(filter_, strict.unindexed_filtering_retrieve, strict, indexes)
    check_search_params(hnsw_ef, is_exact, oversampling, strict)


def check_scroll(
    limit: int | None,
    filter_: filters.Filter | None,
    config: CollectionConfig,
    indexes: IndexSchemas,
) -> None:
    """Scroll (ScrollRequestInternal): `limit` as the client gave it (None: not given)."""
    strict = _strict(config)
    check_limit(limit, strict.max_query_limit, "limit")
    check_filter(filter_, strict.unindexed_filtering_retrieve, strict, indexes)


def check_count(
    filter_: filters.Filter | None, is_exact: bool, config: CollectionConfig, indexes: IndexSchemas
) -> None:
    """Count (CountRequestInternal): `exact` defaults to true there, so a count without
    `"exact": false` is refused when exact search is not allowed."""
    strict = _strict(config)
    check_filter(filter_, strict.unindexed_filtering_retrieve, strict, indexes)
    check_exact(is_exact, strict)


def check_facet(
    limit: int | None,
    filter_: filters.Filter | None,
    is_exact: bool | None,
    config: CollectionConfig,
    indexes: IndexSchemas,
) -> None:
    """Facet (FacetRequestInternal): `limit` and `exact` as the client gave them."""
    strict = _strict(config)
    check_limit(limit, strict.max_query_limit, "limit")
    check_filter(filter_, strict.unindexed_filtering_retrieve, strict, indexes)
    check_exact(is_exact, strict)


def check_matrix(
    sample: int | None,
    limit: int | None,
    filter_: filters.Filter | None,
    config: CollectionConfig,
    indexes: IndexSchemas,
) -> None:
    """Search matrix (SearchMatrixRequestInternal): the limit is `limit x sample` of what the
    client gave (one of them alone when the other is absent)."""
    strict = _strict(config)
    given = [value for value in (limit, sample) if value is not None]
    query_limit = math.prod(given) if given else None
    check_limit(query_limit, strict.max_query_limit, "limit")
    check_filter(filter_, strict.unindexed_filtering_retrieve, strict, indexes)


def check_group_by(key: str, config: StrictModeConfig, indexes: IndexSchemas) -> None:
    """`check_grouping_field`: a group_by field needs an index that supports `match`."""
    if config.unindexed_filtering_retrieve is not False:
        return
    index = indexes.get(PayloadPath.parse(key))
    solution = "Create an index supporting `match` for this key."
    if index is None:
        raise refusal(f'Index required but not found for "{key}"', solution)
    schema_type, _ = index
    if schema_type not in MATCH_SCHEMAS:
        kind = schema_type.capitalize()  # PayloadSchemaType's Debug
        raise refusal(f'Index of type "{kind}" found for "{key}"', solution)


def check_full_scan(node: plan.QueryNode, config: CollectionConfig, indexes: IndexSchemas) -> None:
    """`Query::check_fullscan`: with `search_allow_exact` false, a vector query on a dense
    vector whose HNSW graph is off (m = 0) is refused, unless its filter has a tenant index
    field and the vector's payload_m is not 0."""
    strict = config.strict_mode
    assert strict is not None
    not_vector = plan.Fusion | plan.OrderBy | plan.Sample | Formula
    is_vector_query = node.query is not None and not isinstance(node.query, not_vector)
    if strict.search_allow_exact is not False or not is_vector_query:
        return
    if node.using in config.sparse_vectors or node.using not in config.vectors:
        return
    vector_hnsw = config.echo.get("vectors", {}).get(node.using, {}).get("hnsw_config", {})
    m = vector_hnsw.get("m", config.hnsw.m)
    default_payload_m = config.echo.get("hnsw_config", {}).get("payload_m", m)
    payload_m = vector_hnsw.get("payload_m", default_payload_m)
    if m > 0:
        return
    label = "" if node.using == UNNAMED_VECTOR else f" on '{node.using}'"
    if not has_tenant_condition(node.filter, indexes):
        raise refusal(
            f"Request is forbidden{label} because global vector indexing is disabled "
            "(hnsw_config.m = 0)",
            "Use tenant-specific filter, enable global vector indexing or enable strict mode "
            "`search_allow_exact` option",
        )
    if payload_m == 0:
        raise refusal(
            f"Request is forbidden{label} because vector indexing is disabled "
            "(hnsw_config.m = 0 and hnsw_config.payload_m = 0)",
            "Enable vector indexing, use a prefetch query with indexed vectors or enable "
            "strict mode `search_allow_exact` option",
        )


def check_formula(query: Any, config: StrictModeConfig, indexes: IndexSchemas) -> None:
    """`Query::check_strict_mode`: a formula's payload keys need a suitable index when
    unindexed filtering is off (a `defaults` entry for the key does not help)."""
    if config.unindexed_filtering_retrieve is not False or not isinstance(query, Formula):
        return
    unindexed = one_unindexed_expression_key(query.expression, indexes)
    if unindexed is not None:
        key, schemas = unindexed
        raise refusal(
            f'Index required but not found for "{key}" of one of the following types: '
            f"[{', '.join(sorted(set(schemas)))}]",
            "Create an index for this key or use a different formula expression.",
        )


def _check_node(
    node: plan.QueryNode,
    params: NodeParams,
    is_universal: bool,
    config: CollectionConfig,
    indexes: IndexSchemas,
) -> None:
    """A prefetch (CollectionPrefetch): its prefetches, its full scan (always: a prefetch
    searches), its limit, filter and params."""
    strict = config.strict_mode
    assert strict is not None
    for child, child_params in _children(node, params):
        _check_node(child, child_params, is_universal, config, indexes)
    if is_universal and node.query is not None:
        check_full_scan(node, config, indexes)
    check_formula(node.query, strict, indexes)
    check_limit(node.limit, strict.max_query_limit, "limit")
    check_filter(node.filter, strict.unindexed_filtering_retrieve, strict, indexes)
    _check_node_params(node, params, strict, indexes)


def _check_node_params(
    node: plan.QueryNode, params: NodeParams, config: StrictModeConfig, indexes: IndexSchemas
) -> None:
    is_given = params.has_params or node.hnsw_ef is not None or node.is_exact
    if is_given:
        corpus = None if node.idf is None else node.idf.corpus
        check_search_params(
            node.hnsw_ef, node.is_exact, params.oversampling, config, corpus, indexes
        )


def _children(
    node: plan.QueryNode, params: NodeParams
) -> Iterator[tuple[plan.QueryNode, NodeParams]]:
    for index, child in enumerate(node.prefetch):
        has_params = index < len(params.prefetch)
        yield child, params.prefetch[index] if has_params else NodeParams()


def _number(value: float) -> str:
    """Rust's Display of the value: integers bare, floats as Rust writes an f64."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---- writes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionSizes:
    """How big the collection is, for the size limits (module docstring: how each is read)."""

    points_count: int
    vector_bytes: int
    payload_bytes: int


def needs_sizes(config: StrictModeConfig) -> bool:
    limits = (
        config.max_collection_vector_size_bytes,
        config.max_collection_payload_size_bytes,
        config.max_points_count,
    )
    return any(limit is not None for limit in limits)


def check_write(
    op: Operation,
    config: StrictModeConfig,
    indexes: IndexSchemas,
    sizes: CollectionSizes | None,
) -> None:
    """One write operation, as Qdrant checks the request it came from (update.rs)."""
    if isinstance(op, UpsertPoints):
        check_limit(len(op.ids), config.upsert_max_batchsize, "upsert limit")
        _check_sizes(config, sizes, payload_only=False)
        _check_multivector_counts(op.multi, config)
        _check_sparse_lengths(op.sparse, config)
    elif isinstance(op, UpdateVectors):
        check_limit(len(op.ids), config.upsert_max_batchsize, "update limit")
        _check_sizes(config, sizes, payload_only=False)
        _check_multivector_counts(op.multi, config)
        _check_sparse_lengths(op.sparse, config)
    elif isinstance(op, UpdatePayload) and op.mode in SETTING_MODES:
        _check_sizes(config, sizes, payload_only=True)
    if isinstance(op, DeletePoints | UpdatePayload | DeleteVectors):
        check_filter(op.filter, config.unindexed_filtering_update, config, indexes)


def consumes_memory(op: Operation) -> bool:
    """Whether the op adds data (Qdrant's `consumes_memory`): upserts, vector updates, set and
    overwrite payload, index creation; deletes free memory and are never held back."""
    if isinstance(op, UpdatePayload):
        return op.mode in SETTING_MODES
    return isinstance(op, UpsertPoints | UpdateVectors | CreateFieldIndex)


def check_resident_memory(used_percent: int | None, config: StrictModeConfig) -> None:
    """The deprecated `max_resident_memory_percent`: a write that adds data is refused while
    the process's resident memory is at or above that share (None: unreadable, allowed)."""
    limit = config.max_resident_memory_percent
    if limit is None or used_percent is None or used_percent < limit:
        return
    raise refusal(
        f"Resident memory usage is at {used_percent}% of total memory, exceeding the "
        f"configured limit of {limit}%",
        "Reduce memory usage (e.g. delete points or drop collections), or raise "
        "`max_resident_memory_percent` in the strict mode config of this collection.",
    )


def check_payload_index_count(index_count: int, config: StrictModeConfig | None) -> None:
    """Creating a payload index while the collection has `max_payload_index_count` of them
    (replacing an existing one counts too, as in Qdrant)."""
    if not is_enabled(config):
        return
    assert config is not None
    limit = config.max_payload_index_count
    if limit is not None and index_count >= limit:
        raise refusal(
            f"Collection already has the maximum number of payload indices ({limit})",
            "Please delete an existing index before creating a new one.",
        )


def _check_sizes(
    config: StrictModeConfig, sizes: CollectionSizes | None, payload_only: bool
) -> None:
    """`check_collection_size_limit` (400 `Bad request`, without a `Help:`)."""
    if sizes is None:
        return
    vector_limit = config.max_collection_vector_size_bytes
    if not payload_only and vector_limit is not None and sizes.vector_bytes >= vector_limit:
        raise StrictModeError(
            f"Max vector storage size limit of {_megabytes(vector_limit)}MB reached!"
        )
    payload_limit = config.max_collection_payload_size_bytes
    if payload_limit is not None and sizes.payload_bytes >= payload_limit:
        raise StrictModeError(
            f"Max payload storage size limit of {_megabytes(payload_limit)}MB reached!"
        )
    points_limit = config.max_points_count
    if not payload_only and points_limit is not None and sizes.points_count >= points_limit:
        raise StrictModeError(f"Max points count limit of {points_limit} reached!")


def _check_multivector_counts(multi: dict[str, MultiColumn], config: StrictModeConfig) -> None:
    """`multivector_config`: a matrix with more rows than its name's max_vectors is refused
    (checked before the sparse lengths, as Qdrant's update.rs does)."""
    _check_row_counts(multi, config.multivector_config, "Multivector", "vectors")


def _check_sparse_lengths(sparse: dict[str, SparseColumn], config: StrictModeConfig) -> None:
    """`sparse_config`: a sparse vector longer than its name's max_length is refused."""
    _check_row_counts(sparse, config.sparse_config, "Sparse vector", "indices")


def _check_row_counts(
    columns: dict[str, MultiColumn] | dict[str, SparseColumn],
    limits: dict[str, int | None] | None,
    kind: str,
    unit: str,
) -> None:
    """Each value's length (a column's offsets delimit its values) against its name's limit,
    in Qdrant's words: "<kind> '<name>' has a limit of N <unit>, but M were provided!"."""
    for name, column in columns.items():
        limit = (limits or {}).get(name)
        if limit is None:
            continue
        lengths = column.offsets[1:] - column.offsets[:-1]
        too_long = lengths[lengths > limit]
        if len(too_long):
            raise StrictModeError(
                f"{kind} '{name}' has a limit of {limit} {unit}, "
                f"but {int(too_long[0])} were provided!"
            )


def _megabytes(size_bytes: int) -> str:
    """`size as f32 / (1024.0 * 1024.0)` as Rust displays an f32: shortest round trip."""
    value = size_bytes / (1024.0 * 1024.0)
    return _rust_f32(value)


def _rust_f32(value: float) -> str:
    return str(np.format_float_positional(np.float32(value), unique=True, trim="-"))
