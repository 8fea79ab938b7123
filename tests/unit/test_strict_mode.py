"""engine/strict_mode/: each rule on its own, and the config's wire and disk forms.

The texts and numbers are Qdrant 1.19's (lib/collection/src/operations/verification/,
problems/unindexed_field.rs, lib/common/common/src/rate_limiting.rs, query_estimator.rs).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from engine.errors import FormatError, RateLimited, StrictModeError, ValidationError
from engine.filters import conditions as filters
from engine.filters.payload_path import PayloadPath
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    DeletePoints,
    Distance,
    NamedVectors,
    PayloadMode,
    SparseColumn,
    SparseVector,
    SparseVectorConfig,
    StrictModeConfig,
    UpdatePayload,
    UpsertPoints,
    VectorConfig,
)
from engine.query import formula as formulas
from engine.query import plan
from engine.strict_mode import checks, fields, memory, rate_limits
from server.wire.collection_config import collection_info_json, parse_create_collection
from server.wire.collection_update import parse_update_collection
from server.wire.filters import parse_filter

VECTORS = {"size": 4, "distance": "Dot"}


def keys_needed(filter_json: dict[str, Any], indexes: fields.IndexSchemas | None = None) -> Any:
    filter_ = parse_filter(filter_json)
    assert filter_ is not None
    found = fields.one_unindexed_key(filter_, indexes or {})
    return None if found is None else (str(found[0]), sorted(set(found[1])))


def index(field: str, schema_type: str, **params: Any) -> fields.IndexSchemas:
    return {PayloadPath.parse(field): (schema_type, {"type": schema_type, **params})}


def strict_config(**values: Any) -> CollectionConfig:
    return CollectionConfig(
        vectors={UNNAMED_VECTOR: VectorConfig(4, Distance.DOT)},
        strict_mode=StrictModeConfig(enabled=True, **values),
    )


# ---- the config: wire, merge, disk ------------------------------------------------------


def test_create_parses_and_info_echoes_only_what_was_set():
    config = parse_create_collection(
        {"vectors": VECTORS, "strict_mode_config": {"enabled": True, "max_timeout": 2}}
    )
    assert config.strict_mode == StrictModeConfig(enabled=True, max_timeout=2)
    info = collection_info_json(config, _Stats())
    assert info["config"]["strict_mode_config"] == {"enabled": True, "max_timeout": 2}
    without = parse_create_collection({"vectors": VECTORS})
    assert without.strict_mode is None
    assert "strict_mode_config" not in collection_info_json(without, _Stats())["config"]


@pytest.mark.parametrize(
    ("strict", "error", "message"),
    [
        (
            {"read_rate_limit": 0},
            ValidationError,
            "strict_mode_config.read_rate_limit: value 0 invalid, must be 1 or larger",
        ),
        (
            {"max_resident_memory_percent": 101},
            ValidationError,
            (
                "strict_mode_config.max_resident_memory_percent: value 101 invalid, "
                "must be from 1 to 100"
            ),
        ),
        (
            {"sparse_config": {"s": {"max_length": 0}}},
            ValidationError,
            "strict_mode_config.sparse_config.s.max_length: value 0 invalid, must be 1 or larger",
        ),
        ({"max_query_limit": -1}, FormatError, "invalid value: integer `-1`, expected usize"),
        ({"search_max_oversampling": "x"}, FormatError, 'invalid type: string "x", expected f64'),
        ("on", FormatError, 'invalid type: string "on", expected struct StrictModeConfig'),
    ],
)
def test_bad_strict_mode_configs_are_refused(strict: Any, error: type, message: str):
    with pytest.raises(error) as raised:
        parse_update_collection({"strict_mode_config": strict})
    assert message in str(raised.value)


def test_unknown_fields_are_ignored_as_serde_does():
    update = parse_update_collection({"strict_mode_config": {"enabled": True, "nope": 1}})
    assert update.strict_mode == StrictModeConfig(enabled=True)


def test_patch_takes_the_diff_first_then_merges_field_by_field():
    base = parse_create_collection({"vectors": VECTORS})
    first = parse_update_collection({"strict_mode_config": {"write_rate_limit": 1}}).apply(base)
    assert first.strict_mode == StrictModeConfig(write_rate_limit=1)
    diff = {"enabled": True, "write_rate_limit": None, "sparse_config": {"s": {}}}
    second = parse_update_collection({"strict_mode_config": diff}).apply(first)
    expected = StrictModeConfig(enabled=True, write_rate_limit=1, sparse_config={"s": None})
    assert second.strict_mode == expected
    untouched = parse_update_collection({"metadata": {"a": 1}}).apply(second)
    assert untouched.strict_mode is second.strict_mode  # no new rate limiters


def test_config_json_round_trips_and_old_files_read_as_not_set():
    config = strict_config(search_max_oversampling=1.5, multivector_config={"m": 5})
    data = json.loads(json.dumps(config.to_json_dict()))
    assert data["strict_mode"]["multivector_config"] == {"m": {"max_vectors": 5}}
    assert CollectionConfig.from_json_dict(data) == config
    data.pop("strict_mode")
    old = CollectionConfig.from_json_dict(data)
    assert old.strict_mode is None
    assert "strict_mode" not in old.to_json_dict()  # written as before strict mode existed


# ---- generic checks ---------------------------------------------------------------------


def test_limit_texts():
    checks.check_limit(4, 4, "limit")
    checks.check_limit(None, 1, "limit")
    with pytest.raises(StrictModeError) as raised:
        checks.check_limit(2.0, 1.9, "oversampling")
    assert str(raised.value) == (
        'Limit exceeded 2 > 1.9 for "oversampling". '
        'Help: Reduce the "oversampling" parameter to or below 1.9.'
    )


def test_timeout_only_while_enabled():
    checks.check_timeout(10.0, StrictModeConfig(enabled=False, max_timeout=1))
    with pytest.raises(StrictModeError, match='for "timeout"'):
        checks.check_timeout(10.0, StrictModeConfig(enabled=True, max_timeout=1))


# ---- which index a condition needs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"key": "a", "match": {"value": "x"}}, ["keyword"]),
        (
            {"key": "a", "match": {"value": "550e8400-e29b-41d4-a716-446655440000"}},
            ["keyword", "uuid"],
        ),
        ({"key": "a", "match": {"value": 1}}, ["integer"]),
        ({"key": "a", "match": {"value": True}}, ["bool"]),
        ({"key": "a", "match": {"any": [1, 2]}}, ["integer"]),
        ({"key": "a", "match": {"except": ["x"]}}, ["keyword"]),
        ({"key": "a", "match": {"text": "x"}}, ["text"]),
        ({"key": "a", "match": {"phrase": "x"}}, ["text (with phrase_matching: true)"]),
        ({"key": "a", "match": {"prefix": "x"}}, ["keyword (with prefix: true)"]),
        ({"key": "a", "range": {"gt": 1}}, ["float", "integer"]),
        ({"key": "a", "range": {"gt": "2024-01-01T00:00:00Z"}}, ["datetime"]),
        ({"key": "a", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}, ["geo"]),
        ({"key": "a", "match": {"any": []}}, None),
        ({"has_id": [1]}, None),
    ],
)
def test_required_index_of_each_condition(condition: dict[str, Any], expected: Any):
    found = keys_needed({"must": [condition]})
    assert found == (None if expected is None else ("a", expected))


def test_is_null_and_values_count_take_any_index():
    every = sorted(set(fields.SCHEMA_OF_CAPABILITY.values()))
    assert keys_needed({"must": [{"is_null": {"key": "a"}}]}) == ("a", every)
    assert keys_needed({"must": [{"key": "a", "values_count": {"gt": 1}}]}) == ("a", every)
    assert keys_needed({"must": [{"is_null": {"key": "a"}}]}, index("a", "geo")) is None


@pytest.mark.parametrize(
    ("condition", "schema", "is_served"),
    [
        ({"match": {"value": 1}}, index("a", "integer", lookup=False, range=True), False),
        ({"range": {"gte": 1}}, index("a", "integer", lookup=False, range=True), True),
        ({"match": {"value": 1}}, index("a", "integer", lookup=True, range=False), True),
        ({"range": {"gte": 1}}, index("a", "float"), True),
        ({"match": {"prefix": "x"}}, index("a", "keyword"), False),
        ({"match": {"prefix": "x"}}, index("a", "keyword", prefix=True), True),
        ({"match": {"phrase": "x"}}, index("a", "text"), False),
        ({"match": {"phrase": "x"}}, index("a", "text", phrase_matching=True), True),
        ({"match": {"text": "x"}}, index("a", "text", phrase_matching=True), True),
        ({"match": {"value": "550e8400-e29b-41d4-a716-446655440000"}}, index("a", "uuid"), True),
        ({"match": {"value": "x"}}, index("a", "uuid"), False),
    ],
)
def test_an_index_serves_a_condition_by_its_capabilities(condition, schema, is_served):
    found = keys_needed({"must": [{"key": "a", **condition}]}, schema)
    assert (found is None) == is_served


def test_nested_must_not_and_sub_filters_are_walked():
    nested = {"nested": {"key": "a.b", "filter": {"must": [{"key": "c", "match": {"value": 1}}]}}}
    assert keys_needed({"must": [nested]}) == ("a.b[].c", ["integer"])
    assert keys_needed({"must": [nested]}, index("a.b[].c", "integer")) is None
    must_not = {"must_not": [{"must": [{"key": "d", "match": {"value": "x"}}]}]}
    assert keys_needed(must_not) == ("d", ["keyword"])
    min_should = {
        "min_should": {"conditions": [{"key": "e", "match": {"value": 1}}], "min_count": 1}
    }
    assert keys_needed(min_should) == ("e", ["integer"])


def test_filter_sizes():
    filter_ = parse_filter(
        {
            "must": [
                {"key": "a", "match": {"any": [1, 2, 3]}},
                {
                    "nested": {
                        "key": "n",
                        "filter": {"must": [{"has_id": [1, 2, 3, 4]}, {"is_empty": {"key": "x"}}]},
                    }
                },
            ],
            "should": [{"must": [{"key": "b", "match": {"value": 1}}]}],
        }
    )
    assert filter_ is not None
    assert fields.total_conditions_count(filter_) == 4
    assert fields.max_condition_input_size(filter_) == 4


def test_formula_keys_need_a_numeric_geo_or_datetime_index():
    expression = formulas.Sum(
        (
            formulas.Variable("$score[1]"),
            formulas.Mult((formulas.Constant(2.0), formulas.Variable("price"))),
        )
    )
    found = fields.one_unindexed_expression_key(expression, {})
    assert found is not None
    assert (str(found[0]), sorted(set(found[1]))) == ("price", ["float", "integer"])
    assert fields.one_unindexed_expression_key(expression, index("price", "float")) is None
    geo = formulas.GeoDistance(filters.GeoPoint(0.0, 0.0), PayloadPath.parse("where"))
    decay = formulas.Decay("exp", formulas.DatetimeKey(PayloadPath.parse("at")), target=geo)
    found = fields.one_unindexed_expression_key(decay, {})
    assert found is not None
    assert str(found[0]) == "at"


# ---- request checks ----------------------------------------------------------------------


def test_unindexed_filter_then_condition_count_then_size():
    config = StrictModeConfig(enabled=True, filter_max_conditions=1, condition_max_size=1)
    two = parse_filter({"must": [{"key": "a", "match": {"any": [1, 2]}}, {"has_id": [1]}]})
    with pytest.raises(StrictModeError) as raised:
        checks.check_filter(two, False, config, {})
    assert str(raised.value).startswith('Index required but not found for "a"')
    with pytest.raises(StrictModeError, match=r"Filter condition limit reached \(2 > 1\)"):
        checks.check_filter(two, None, config, {})
    one = parse_filter({"must": [{"key": "a", "match": {"any": [1, 2]}}]})
    with pytest.raises(StrictModeError, match=r"Condition size limit reached \(2 > 1\)"):
        checks.check_filter(one, None, config, {})


def _node(**values: Any) -> plan.QueryNode:
    return plan.QueryNode(
        **{"query": plan.Nearest(np.zeros(4, np.float32)), "using": "", "limit": 10, **values}
    )


def test_query_prefetches_are_checked_but_not_those_of_groups():
    config = strict_config(max_query_limit=5)
    request = plan.QueryRequest(_node(limit=3, prefetch=(_node(limit=50),)))
    with pytest.raises(StrictModeError, match="50 > 5"):
        checks.check_query(checks.QueryCheck(request), config, {})
    grouped = plan.QueryRequest(
        _node(limit=1, prefetch=(_node(limit=50),)), group_by=plan.GroupBy("k", group_size=5)
    )
    checks.check_query(checks.QueryCheck(grouped), strict_config(max_query_limit=5), {})
    with pytest.raises(StrictModeError, match="10 > 5"):
        grouped = plan.QueryRequest(_node(limit=2), group_by=plan.GroupBy("k", group_size=5))
        checks.check_query(checks.QueryCheck(grouped), config, {})


def test_oversampling_of_a_prefetch():
    config = strict_config(search_max_oversampling=1.0)
    request = plan.QueryRequest(_node(prefetch=(_node(),)))
    params = checks.NodeParams(prefetch=(checks.NodeParams(oversampling=2.0, has_params=True),))
    with pytest.raises(StrictModeError, match='2 > 1 for "oversampling"'):
        checks.check_query(checks.QueryCheck(request, params), config, {})


def test_full_scan_rule():
    config = strict_config(search_allow_exact=False)
    config = CollectionConfig(
        vectors={"d": VectorConfig(4, Distance.DOT)},
        echo={"vectors": {"d": {"hnsw_config": {"m": 0, "payload_m": 0}}}},
        sparse_vectors={"s": SparseVectorConfig()},
        strict_mode=config.strict_mode,
    )
    tenant = index("t", "keyword", is_tenant=True)
    tenant_filter = parse_filter({"must": [{"key": "t", "match": {"value": "x"}}]})
    with pytest.raises(StrictModeError, match="global vector indexing is disabled"):
        checks.check_full_scan(_node(using="d"), config, {})
    with pytest.raises(StrictModeError, match="and hnsw_config.payload_m = 0"):
        checks.check_full_scan(_node(using="d", filter=tenant_filter), config, tenant)
    checks.check_full_scan(_node(using="s"), config, {})
    checks.check_full_scan(_node(using="d", query=plan.Sample()), config, {})
    universal_only = plan.QueryRequest(_node(using="d"))
    checks.check_query(checks.QueryCheck(universal_only, is_universal=False), config, {})


def test_group_by_field():
    config = StrictModeConfig(enabled=True, unindexed_filtering_retrieve=False)
    checks.check_group_by("k", config, index("k", "integer"))
    with pytest.raises(StrictModeError, match='Index of type "Geo" found for "k"'):
        checks.check_group_by("k", config, index("k", "geo"))


def _upsert(count: int, sparse: dict[str, SparseColumn] | None = None) -> UpsertPoints:
    rows = np.arange(count, dtype=np.int32)
    vectors = {UNNAMED_VECTOR: NamedVectors(rows, np.zeros((count, 4), np.float32))}
    return UpsertPoints(list(range(count)), vectors, [None] * count, sparse=sparse or {})


def test_write_checks_and_texts():
    sizes = checks.CollectionSizes(points_count=10, vector_bytes=240, payload_bytes=45000)
    config = StrictModeConfig(
        enabled=True, max_collection_vector_size_bytes=240, max_collection_payload_size_bytes=45000
    )
    with pytest.raises(StrictModeError) as raised:
        checks.check_write(_upsert(1), config, {}, sizes)
    assert str(raised.value) == "Max vector storage size limit of 0.00022888184MB reached!"
    set_payload = UpdatePayload([1], PayloadMode.SET, payload={"a": 1})
    with pytest.raises(StrictModeError, match="limit of 0.042915344MB reached"):
        checks.check_write(set_payload, config, {}, sizes)
    clear = UpdatePayload([1], PayloadMode.CLEAR)
    checks.check_write(clear, config, {}, sizes)  # frees space: allowed
    checks.check_write(DeletePoints([1]), config, {}, sizes)
    sparse = SparseColumn.from_vectors(
        [0], [SparseVector(np.arange(5, dtype=np.uint32), np.ones(5, np.float32))]
    )
    lengths = StrictModeConfig(enabled=True, sparse_config={"s": 4})
    with pytest.raises(StrictModeError, match="'s' has a limit of 4 indices, but 5 were provided!"):
        checks.check_write(_upsert(1, {"s": sparse}), lengths, {}, None)


def test_payload_index_count():
    checks.check_payload_index_count(5, StrictModeConfig(enabled=False, max_payload_index_count=0))
    with pytest.raises(StrictModeError, match=r"maximum number of payload indices \(2\)"):
        checks.check_payload_index_count(
            2, StrictModeConfig(enabled=True, max_payload_index_count=2)
        )


# ---- rate limits ---------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_token_bucket_refills_and_says_when_to_retry():
    clock = _Clock()
    limiter = rate_limits.RateLimiter(60, clock)  # one token a second
    limiter.try_consume(60, "Read")
    with pytest.raises(RateLimited) as raised:
        limiter.try_consume(3, "Read")
    assert str(raised.value) == (
        "Read rate limit exceeded: Operation requires 3 tokens but only 0.0 were available. "
        "Retry after 3s"
    )
    assert raised.value.retry_after_s == pytest.approx(3.0)
    clock.now_s += 3.0
    limiter.try_consume(3, "Read")
    clock.now_s += 1000.0  # never above the capacity
    limiter.try_consume(60, "Read")
    with pytest.raises(RateLimited) as raised:
        limiter.try_consume(61, "Write")
    assert raised.value.retry_after_s is None
    assert "request larger than rate limiter capacity" in str(raised.value)


def test_a_refused_write_batch_gives_its_tokens_back():
    limits = rate_limits.RateLimits(StrictModeConfig(enabled=True, write_rate_limit=10))
    with pytest.raises(RateLimited):
        limits.consume_writes([6, 6])
    limits.consume_writes([10])  # all ten still there
    assert rate_limits.RateLimits(StrictModeConfig(write_rate_limit=10)).write is None


def test_query_costs():
    sparse = SparseVector(np.arange(65, dtype=np.uint32), np.ones(65, np.float32))
    request = plan.QueryRequest(
        _node(
            query=plan.Fusion("rrf"),
            prefetch=(
                _node(query=plan.Recommend((1, 2), (np.zeros(4, np.float32),), "best_score")),
                _node(query=plan.Nearest(sparse), filter=parse_filter({"must": [{"has_id": [1]}]})),
                _node(query=None),
            ),
        )
    )
    # ids 1 and 2; recommend: 3 vectors + the has_id exclusion; sparse: 2 + 1 condition; scroll: 1
    assert rate_limits.query_read_costs(request) == (2, 4 + 3 + 1)
    # average_vector searches with one averaged vector.
    average = plan.QueryRequest(_node(query=plan.Recommend((1, 2, 3), ())))
    assert rate_limits.query_read_costs(average) == (3, 1 + 1)


def test_filtered_write_estimate():
    filter_ = parse_filter(
        {"must": [{"key": "a", "match": {"value": 1}}, {"key": "b", "match": {"value": 1}}]}
    )
    assert filter_ is not None
    assert rate_limits.estimated_points(filter_, 100, lambda condition: None) == 25
    indexed = rate_limits.estimated_points(filter_, 100, lambda condition: 10)
    assert indexed == 1  # 100 x 0.1 x 0.1
    not_filter = parse_filter({"must_not": [{"has_id": [1, 2]}]})
    assert not_filter is not None
    assert rate_limits.estimated_points(not_filter, 100, lambda condition: 2) == 98
    should = parse_filter(
        {"should": [{"key": "a", "match": {"value": 1}}, {"key": "b", "match": {"value": 1}}]}
    )
    assert should is not None
    assert rate_limits.estimated_points(should, 100, lambda condition: None) == 75
    op = DeletePoints([], filter=filter_)
    cost = rate_limits.write_cost(op, 10, lambda f: 0, {})
    assert cost == 2  # round(10 x 0.5 x 0.5)


class _Stats:
    status = "green"
    indexed_vectors_count = 0
    points_count = 0
    segments_count = 1
    payload_indexes = ()


def test_conditions_module_is_the_one_strict_mode_walks():
    """Every condition class the filter language has is handled by the walks above."""
    handled = {
        filters.FieldCondition,
        filters.IsEmptyCondition,
        filters.IsNullCondition,
        filters.HasIdCondition,
        filters.HasVectorCondition,
        filters.SliceCondition,
        filters.NestedCondition,
        filters.Filter,
    }
    assert set(filters.Condition.__args__) == handled


def test_resident_memory_limit_holds_back_writes_that_add_data():
    config = StrictModeConfig(enabled=True, max_resident_memory_percent=80)
    checks.check_resident_memory(79, config)
    checks.check_resident_memory(None, config)  # unreadable: allowed
    with pytest.raises(StrictModeError) as raised:
        checks.check_resident_memory(80, config)
    assert str(raised.value) == (
        "Resident memory usage is at 80% of total memory, exceeding the configured limit of "
        "80%. Help: Reduce memory usage (e.g. delete points or drop collections), or raise "
        "`max_resident_memory_percent` in the strict mode config of this collection."
    )
    assert checks.consumes_memory(_upsert(1))
    assert checks.consumes_memory(UpdatePayload([1], PayloadMode.OVERWRITE, payload={}))
    assert not checks.consumes_memory(UpdatePayload([1], PayloadMode.DELETE_KEYS, keys=["a"]))
    assert not checks.consumes_memory(DeletePoints([1]))


def test_resident_memory_is_read_from_proc():
    percent = memory.resident_memory_percent()
    assert percent is not None
    assert 0 <= percent <= 100
    assert memory.percent_of(3, 4) == 75
    assert memory.percent_of(5, 4) == 100
