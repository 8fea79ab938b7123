"""Bodies of Qdrant's universal query and its relatives -> engine.query.plan plans.

Owns: parsing of `POST /points/query` (every query kind: nearest by vector or id, recommend,
discover, context, relevance feedback, fusion, rrf, order_by, sample, formula, none), its
`prefetch` trees and `lookup_from`, the batch and groups forms of query and search, and
scroll's `order_by`.
Not here: the handlers and answer shapes (server/api/query.py), how a plan runs
(engine/query/universal.py), filters (server/wire/filters.py).

Qdrant 1.19: `lib/api/src/rest/schema.rs` (QueryRequestInternal, Prefetch, QueryInterface,
RecommendInput, OrderByInterface, QueryGroupsRequestInternal), `lib/segment/src/data_types/
order_by.rs` (Direction, StartFrom), `lib/collection/src/operations/types.rs`
(SearchRequestBatch, SearchGroupsRequestInternal, `group_size` default 3, `limit` of groups);
relevance feedback: `schema.rs` (RelevanceFeedbackInput) and `rest/validate.rs` (what answers
422, under which path); formulas are read by server/wire/formula.py.
"""

from __future__ import annotations

from typing import Any

from engine.errors import FormatError, NotImplementedYet
from engine.filters import instants
from engine.filters.payload_path import PayloadPath
from engine.limits import PREFETCH_DEPTH_MAX
from engine.ops import UNNAMED_VECTOR
from engine.query.feedback import RelevanceFeedback
from engine.query.plan import (
    GROUP_SIZE_DEFAULT,
    Context,
    Discover,
    Fusion,
    GroupBy,
    IdfParams,
    LookupFrom,
    Mmr,
    Nearest,
    OrderBy,
    QueryNode,
    QueryRequest,
    Recommend,
    Sample,
    WithLookup,
)
from server.wire.filters import parse_filter_collecting
from server.wire.formula import is_too_deep, parse_f32, parse_formula, struct_fields
from server.wire.schemas import (
    QUERY_DEFAULT_LIMIT,
    ScrollBody,
    SearchBody,
    is_sparse_value,
    parse_point_id,
    parse_search,
    parse_sparse_vector,
    parse_usize,
    parse_with_payload,
    parse_with_vector,
)
from server.wire.serde_text import (
    code_only_message,
    invalid_type,
    missing_field,
    range_message,
    unknown_variant,
    validation_errors,
)
from server.wire.upsert import multi_errors

FUSIONS = ("rrf", "dbsf")
SAMPLES = ("random",)
STRATEGIES = ("average_vector", "best_score", "sum_scores")
DIRECTIONS = ("asc", "desc")
# Qdrant's `Query` variants in declaration order (lib/api/src/rest/schema.rs).
QUERY_KINDS = (
    "nearest",
    "recommend",
    "discover",
    "context",
    "order_by",
    "fusion",
    "rrf",
    "formula",
    "sample",
    "relevance_feedback",
)
ORDER_BY_EXPECTING = "data did not match any variant of untagged enum OrderByInterface"
QUERY_EXPECTING = "Expected some form of vector, id, or a type of query"
NUMBER_TYPES = frozenset((int, float))
MMR_CANDIDATES_LIMIT_MAX = 16_384  # Qdrant's validation bound (rest/schema.rs Mmr)
Errors = list[tuple[str, str]]
# RecommendInput's validation (`rest/validate.rs`).
RECOMMEND_WITHOUT_EXAMPLES = code_only_message(
    "At least one positive or negative vector/id must be provided"
)


def parse_query_request(data: Any, prefix: str = "internal") -> QueryRequest:
    """POST /points/query (QueryRequestInternal)."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct QueryRequest")
    errors: Errors = []
    root = _parse_node(data, prefix, errors, depth=0, default_limit=QUERY_DEFAULT_LIMIT)
    offset = 0 if data.get("offset") is None else parse_usize(data["offset"])
    request = QueryRequest(
        root=root,
        offset=offset,
        with_payload=parse_with_payload(data.get("with_payload"), default=False),
        with_vector=parse_with_vector(_with_vector_field(data)),
    )
    if errors:
        raise validation_errors(errors)
    return request


def parse_query_batch(data: Any) -> list[QueryRequest]:
    """POST /points/query/batch: `{"searches": [QueryRequest, ..]}`."""
    searches = searches_of(data, "struct QueryRequestBatch")
    return [parse_query_request(item, f"searches[{i}].internal") for i, item in enumerate(searches)]


def parse_query_groups(data: Any) -> QueryRequest:
    """POST /points/query/groups: a query plus `group_by`, `group_size` (3), `limit` (10
    groups); validation paths under `internal.group_request` (flattened in Qdrant)."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct QueryGroupsRequest")
    if "group_by" not in data:
        raise missing_field("group_by")
    errors: Errors = []
    root = _parse_node(data, "internal", errors, depth=0, default_limit=QUERY_DEFAULT_LIMIT)
    group_path = "internal.group_request"
    errors = [(f"{group_path}.limit" if p == "internal.limit" else p, m) for p, m in errors]
    group_by = _parse_group_by(data, group_path, errors, GROUP_SIZE_DEFAULT)
    request = QueryRequest(
        root=root,
        with_payload=parse_with_payload(data.get("with_payload"), default=False),
        with_vector=parse_with_vector(_with_vector_field(data)),
        group_by=group_by,
    )
    if errors:
        raise validation_errors(errors)
    return request


def parse_search_batch(data: Any) -> list[QueryRequest]:
    """POST /points/search/batch: `{"searches": [SearchRequest, ..]}`, each as a query."""
    return [
        search_as_query(parse_search(item))
        for item in searches_of(data, "struct SearchRequestBatch")
    ]


def parse_search_groups(data: Any) -> QueryRequest:
    """POST /points/search/groups: a search plus `group_by`, `group_size` and `limit` (of
    groups), all three required (BaseGroupRequest); no `offset`."""
    if not isinstance(data, dict):
        raise invalid_type(data, "struct SearchGroupsRequest")
    for name in ("vector", "group_by", "group_size", "limit"):
        if name not in data:
            raise missing_field(name)
    search = parse_search({key: value for key, value in data.items() if key != "offset"})
    errors: Errors = []
    group_by = _parse_group_by(data, "search_group_request.group_request", errors, None)
    if errors:
        raise validation_errors(errors)
    request = search_as_query(search)
    return QueryRequest(request.root, 0, request.with_payload, request.with_vector, group_by)


def search_as_query(search: SearchBody) -> QueryRequest:
    """A search body as the nearest query it is."""
    root = QueryNode(
        query=Nearest(search.vector),
        using=search.vector_name,
        limit=search.limit,
        filter=search.filter,
        score_threshold=search.score_threshold,
        hnsw_ef=search.hnsw_ef,
        is_exact=search.is_exact,
    )
    return QueryRequest(root, search.offset, search.with_payload, search.with_vector)


def scroll_as_query(scroll: ScrollBody) -> QueryRequest:
    """Scroll with `order_by` as an order_by query; `offset` is refused by the handler
    (query_api.scroll_ordered), as Qdrant's shard refuses it."""
    try:
        order_by = _parse_order_by(scroll.order_by)
    except FormatError:
        # OrderByInterface is an untagged enum: serde's one text for every mistake inside.
        raise FormatError(ORDER_BY_EXPECTING) from None
    root = QueryNode(query=order_by, using=UNNAMED_VECTOR, limit=scroll.limit, filter=scroll.filter)
    return QueryRequest(root, 0, scroll.with_payload, scroll.with_vector)


# ---- the tree ------------------------------------------------------------------------------


def _parse_node(
    data: dict[str, Any], prefix: str, errors: Errors, depth: int, default_limit: int
) -> QueryNode:
    using = data.get("using")
    if using is not None and type(using) is not str:
        raise invalid_type(using, "a string")
    query = _parse_query(data.get("query"), f"{prefix}.query", errors)
    if isinstance(query, Recommend) and not query.positive and not query.negative:
        errors.append((f"{prefix}.query.positives, negatives", RECOMMEND_WITHOUT_EXAMPLES))
    filter_ = parse_filter_collecting(data.get("filter"), f"{prefix}.filter", errors)
    hnsw_ef, is_exact, idf = _parse_params(data.get("params"), f"{prefix}.params", errors)
    limit = default_limit if data.get("limit") is None else parse_usize(data["limit"])
    if limit < 1:
        errors.append((f"{prefix}.limit", range_message(limit, 1)))
    # Qdrant's threshold is an f32 compared with f32 scores: rounded here, it compares with
    # Keel's scores (float32 values) exactly as there.
    threshold = data.get("score_threshold")
    threshold = None if threshold is None else parse_f32(threshold)
    prefetch = _parse_prefetches(data.get("prefetch"), prefix, errors, depth)
    return QueryNode(
        query=query,
        using=using or UNNAMED_VECTOR,
        limit=limit,
        prefetch=prefetch,
        filter=filter_,
        score_threshold=threshold,
        hnsw_ef=hnsw_ef,
        is_exact=is_exact,
        lookup_from=_parse_lookup_from(data.get("lookup_from")),
        idf=idf,
    )


def _parse_prefetches(value: Any, prefix: str, errors: Errors, depth: int) -> tuple[QueryNode, ...]:
    if value is None:
        return ()
    items = value if type(value) is list else [value]
    if depth >= PREFETCH_DEPTH_MAX:
        raise FormatError(f"prefetch nests deeper than {PREFETCH_DEPTH_MAX} levels")
    nodes = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid_type(item, "struct Prefetch")
        path = f"{prefix}.prefetch[{index}]"
        nodes.append(_parse_node(item, path, errors, depth + 1, QUERY_DEFAULT_LIMIT))
    return tuple(nodes)


def _parse_query(query: Any, path: str, errors: Errors) -> Any:
    """QueryInterface: a vector input (nearest) or one of Qdrant's query objects. Validation
    errors (formulas, relevance feedback) go to `errors` under `path`.

    It is an untagged enum in Qdrant (`schema.rs`): any mistake inside it, a bad fusion name
    or strategy included, answers its one `expecting` text."""
    if query is None:
        return None
    if isinstance(query, dict) and "formula" in query and is_too_deep(query):
        # serde_json's recursion limit stops the whole body before any variant is tried.
        raise FormatError("recursion limit exceeded")
    found: Errors = []
    try:
        parsed = _parse_query_variant(query, path, found)
    except FormatError:
        raise FormatError(QUERY_EXPECTING) from None
    errors.extend(found)
    return parsed


def _parse_query_variant(query: Any, path: str, errors: Errors) -> Any:
    # Variants in Qdrant's order: the first whose key is present decides (untagged serde).
    if not isinstance(query, dict) or _is_vector_object(query):
        return Nearest(_parse_vector_input(query))
    kind = next((kind for kind in QUERY_KINDS if kind in query), None)
    value = query.get(kind)
    if kind == "nearest":
        return Nearest(_parse_vector_input(value), _parse_mmr(query.get("mmr")))
    if kind == "recommend":
        return _parse_recommend(value)
    if kind == "discover":
        if not isinstance(value, dict):
            raise invalid_type(value, "struct DiscoverInput")
        for name in ("target", "context"):
            if name not in value:
                raise missing_field(name)
        return Discover(_parse_vector_input(value["target"]), parse_context(value["context"]))
    if kind == "context":
        return Context(parse_context(value))
    if kind == "order_by":
        return _parse_order_by(value)
    if kind == "fusion":
        if value not in FUSIONS:
            raise unknown_variant(value, FUSIONS)
        return Fusion(value)
    if kind == "rrf":
        return _parse_rrf(value)
    if kind == "sample":
        if value not in SAMPLES:
            raise unknown_variant(value, SAMPLES)
        return Sample()
    if kind == "formula":
        return parse_formula(query, path, errors)
    if kind == "relevance_feedback":
        return _parse_relevance_feedback(value, f"{path}.relevance_feedback", errors)
    raise FormatError(QUERY_EXPECTING)


def _is_vector_object(value: dict[str, Any]) -> bool:
    # VectorInput's object forms: a sparse vector, a document, an image, an inference object.
    return ("indices" in value and "values" in value) or "model" in value


def _parse_vector_input(value: Any) -> Any:
    """VectorInput: a dense vector (a list), a matrix (a multivector query: a list of lists),
    a sparse vector or a point id; inference objects 501."""
    if _is_number_list(value):
        return value
    if type(value) in (int, str):
        return parse_point_id(value)
    if type(value) is list and value and all(_is_number_list(item) for item in value):
        return _parse_matrix(value)
    if isinstance(value, dict) and "indices" in value and "values" in value:
        if not is_sparse_value(value):
            raise FormatError("Expected some form of vector, id, or a type of query")
        return parse_sparse_vector(value)
    if isinstance(value, dict) and "model" in value:
        raise NotImplementedYet("inference objects are not implemented yet")
    raise FormatError("Expected some form of vector, id, or a type of query")


def _is_number_list(value: Any) -> bool:
    # map(type) and issuperset run in C: a 128-d vector checked in 2 us, not 30.
    return type(value) is list and NUMBER_TYPES.issuperset(map(type, value))


def _parse_matrix(value: list[list[Any]]) -> list[list[Any]]:
    """A multivector query, checked as Qdrant's `validate_multi_vector` (422 under `data`)."""
    errors = multi_errors(value)
    if errors:
        raise validation_errors([(f"query.{field}", message) for field, message in errors])
    return value


def _parse_recommend(value: Any) -> Recommend:
    if not isinstance(value, dict):
        raise invalid_type(value, "struct RecommendInput")
    examples = {}
    for side in ("positive", "negative"):
        items = value.get(side)
        if items is not None and type(items) is not list:
            raise invalid_type(items, "a sequence")
        examples[side] = tuple(_parse_vector_input(item) for item in items or ())
    strategy = value.get("strategy") or "average_vector"
    if strategy not in STRATEGIES:
        raise unknown_variant(strategy, STRATEGIES)
    return Recommend(examples["positive"], examples["negative"], strategy)


def _parse_mmr(value: Any) -> Mmr | None:
    """Mmr: `diversity` in [0, 1] (default 0.5), `candidates_limit` at most 16 384."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_type(value, "struct Mmr")
    diversity = value.get("diversity")
    if diversity is not None and type(diversity) not in NUMBER_TYPES:
        raise invalid_type(diversity, "f32")
    limit = (
        None if value.get("candidates_limit") is None else parse_usize(value["candidates_limit"])
    )
    errors = []
    if diversity is not None and not 0.0 <= diversity <= 1.0:
        errors.append(("query.mmr.diversity", range_message(diversity, 0.0, 1.0)))
    if limit is not None and limit > MMR_CANDIDATES_LIMIT_MAX:
        errors.append(
            ("query.mmr.candidates_limit", range_message(limit, None, MMR_CANDIDATES_LIMIT_MAX))
        )
    if errors:
        raise validation_errors(errors)
    return Mmr(0.5 if diversity is None else float(diversity), limit)


def parse_context(value: Any) -> tuple[tuple[Any, Any], ...]:
    """ContextInput: one ContextPair, a list of them, or null (no pairs)."""
    if value is None:
        return ()
    items = value if type(value) is list else [value]
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            raise invalid_type(item, "struct ContextPair")
        for side in ("positive", "negative"):
            if side not in item:
                raise missing_field(side)
        pairs.append((_parse_vector_input(item["positive"]), _parse_vector_input(item["negative"])))
    return tuple(pairs)


def _parse_rrf(value: Any) -> Fusion:
    if not isinstance(value, dict):
        raise invalid_type(value, "struct Rrf")
    k = 2 if value.get("k") is None else parse_usize(value["k"])
    if k < 1:
        raise validation_errors([("rrf.k", range_message(k, 1))])
    weights = value.get("weights")
    if weights is not None:
        if not _is_number_list(weights):
            raise invalid_type(weights, "a sequence of f32")
        weights = tuple(float(weight) for weight in weights)
    return Fusion("rrf", k, weights)


def _parse_order_by(value: Any) -> OrderBy:
    """OrderByInterface: a key, or `{"key", "direction", "start_from"}`."""
    if type(value) is str:
        _check_key_path(value)
        return OrderBy(value)
    if not isinstance(value, dict):
        raise FormatError(ORDER_BY_EXPECTING)
    if type(value.get("key")) is not str:
        raise missing_field("key") if "key" not in value else invalid_type(value["key"], "a string")
    _check_key_path(value["key"])
    direction = value.get("direction") or "asc"
    if direction not in DIRECTIONS:
        raise unknown_variant(direction, DIRECTIONS)
    return OrderBy(value["key"], direction == "desc", _parse_start_from(value.get("start_from")))


def _parse_start_from(value: Any) -> float | None:
    # StartFrom: an integer, a float or an RFC 3339 datetime (as microseconds, like values).
    if value is None or type(value) in NUMBER_TYPES:
        return value
    if type(value) is str:
        key = instants.instant_key(value)
        if key is not None:
            seconds, nanos = divmod(key, instants.INSTANT_KEY_SPAN)
            return seconds * 1_000_000 + nanos // 1000
    raise FormatError("data did not match any variant of untagged enum StartFrom")


def _parse_lookup_from(value: Any) -> LookupFrom | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_type(value, "struct LookupLocation")
    if "collection" not in value:
        raise missing_field("collection")
    collection, vector = value["collection"], value.get("vector")
    if type(collection) is not str:
        raise invalid_type(collection, "a string")
    if vector is not None and type(vector) is not str:
        raise invalid_type(vector, "a string")
    return LookupFrom(collection, vector)


def _parse_params(
    value: Any, prefix: str, errors: Errors
) -> tuple[int | None, bool, IdfParams | None]:
    if value is None:
        return None, False, None
    if not isinstance(value, dict):
        raise invalid_type(value, "struct SearchParams")
    hnsw_ef = None if value.get("hnsw_ef") is None else parse_usize(value["hnsw_ef"])
    if hnsw_ef is not None and hnsw_ef < 1:
        errors.append((f"{prefix}.hnsw_ef", range_message(hnsw_ef, 1)))
    is_exact = value.get("exact", False)
    if type(is_exact) is not bool:
        raise invalid_type(is_exact, "a boolean")
    return hnsw_ef, is_exact, _parse_idf(value.get("idf"), f"{prefix}.idf", errors)


def _parse_idf(value: Any, prefix: str, errors: Errors) -> IdfParams | None:
    """IdfParams, untagged: `"global"`, or `{"corpus": Filter}`."""
    if value is None:
        return None
    if value == "global":
        return IdfParams()
    if isinstance(value, dict) and isinstance(value.get("corpus"), dict):
        return IdfParams(parse_filter_collecting(value["corpus"], f"{prefix}.corpus", errors))
    raise FormatError("data did not match any variant of untagged enum IdfParams")


def _parse_group_by(
    data: dict[str, Any], prefix: str, errors: Errors, default_size: int | None
) -> GroupBy:
    key = data["group_by"]
    if type(key) is not str:
        raise invalid_type(key, "a string")
    _check_key_path(key)
    if data.get("group_size") is None and default_size is not None:
        size = default_size
    else:
        size = parse_usize(data.get("group_size"))
    if size < 1:
        errors.append((f"{prefix}.group_size", range_message(size, 1)))
    return GroupBy(key, size, _parse_with_lookup(data.get("with_lookup")))


def _parse_with_lookup(value: Any) -> WithLookup | None:
    """WithLookupInterface: a collection name, or `{"collection", "with_payload" (true),
    "with_vectors" (false)}`."""
    if value is None:
        return None
    if type(value) is str:
        return WithLookup(value)
    if not isinstance(value, dict) or type(value.get("collection")) is not str:
        raise FormatError("data did not match any variant of untagged enum WithLookupInterface")
    return WithLookup(
        value["collection"],
        parse_with_payload(value.get("with_payload"), default=True),
        parse_with_vector(value.get("with_vectors", value.get("with_vector"))),
    )


def _check_key_path(key: str) -> None:
    """A payload key Qdrant parses (JsonPath)."""
    try:
        PayloadPath.parse(key)
    except ValueError:
        raise FormatError(f"Invalid json path: '{key}'") from None


def searches_of(data: Any, struct: str) -> list[Any]:
    """The `searches` list of a batch body (query, search, recommend or discover)."""
    if not isinstance(data, dict):
        raise invalid_type(data, struct)
    if "searches" not in data:
        raise missing_field("searches")
    if type(data["searches"]) is not list:
        raise invalid_type(data["searches"], "a sequence")
    return data["searches"]


def _with_vector_field(data: dict[str, Any]) -> Any:
    # serde's `alias = "with_vectors"`.
    return data["with_vector"] if "with_vector" in data else data.get("with_vectors")


# ---- relevance feedback ---------------------------------------------------------------------


def _parse_relevance_feedback(value: Any, path: str, errors: Errors) -> RelevanceFeedback:
    """RelevanceFeedbackInput: `target`, `feedback` [{example, score}], `strategy`
    {"naive": {a, b, c}}; 422 for `b` < 0, then (only without that) for no feedback."""
    fields = struct_fields(value, ("target", "feedback", "strategy"))
    target = _parse_vector_input(fields["target"])
    if type(fields["feedback"]) is not list:
        raise invalid_type(fields["feedback"], "a sequence")
    feedback = []
    for item in fields["feedback"]:
        item_fields = struct_fields(item, ("example", "score"))
        example = _parse_vector_input(item_fields["example"])
        feedback.append((example, parse_f32(item_fields["score"])))
    naive = struct_fields(struct_fields(fields["strategy"], ("naive",))["naive"], "abc")
    a, b, c = (parse_f32(naive[name]) for name in "abc")
    if b < 0.0:
        errors.append((f"{path}.strategy.naive.b", range_message(b, 0.0)))
    elif not feedback:
        # A struct-level check, which validator skips when a field failed.
        errors.append((f"{path}.__all__", "feedback elements must be non-empty"))
    return RelevanceFeedback(target, tuple(feedback), a, b, c)
