"""What a filter or a formula asks of the payload indexes, and how big a filter is.

Owns: the index capabilities each condition needs and each index schema has
(Qdrant's lib/collection/src/problems/unindexed_field.rs: `Extractor`,
`infer_index_from_field_condition`, `schema_capabilities`, the schema names its errors give),
`one_unindexed_key` of a filter and of a formula expression, and the filter sizes strict mode
bounds (`Filter::total_conditions_count`, `max_condition_input_size`, lib/segment/src/types.rs).
Not here: refusing requests (engine/strict_mode/checks.py), evaluating filters (engine/filters/).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from engine.filters import conditions as filters
from engine.filters.payload_path import PayloadPath
from engine.query import formula as formulas

# The index capabilities Qdrant distinguishes (unindexed_field.rs FieldIndexType), and the
# index schema Qdrant names for each in its error (`From<FieldIndexType> for
# PayloadFieldSchema`, written by PayloadFieldSchema's Display).
SCHEMA_OF_CAPABILITY = {
    "int_match": "integer",
    "int_range": "integer",
    "keyword_match": "keyword",
    "keyword_prefix": "keyword (with prefix: true)",
    "float_range": "float",
    "text": "text",
    "text_phrase": "text (with phrase_matching: true)",
    "bool_match": "bool",
    "uuid_match": "uuid",
    "uuid_range": "uuid",
    "datetime_range": "datetime",
    "geo": "geo",
}
ALL_CAPABILITIES = tuple(SCHEMA_OF_CAPABILITY)

# A payload index as the checks see it: (schema type, params or None), by field path.
IndexSchemas = dict[PayloadPath, tuple[str, dict[str, Any] | None]]


def total_conditions_count(filter_: filters.Filter) -> int:
    """Every condition of the filter; a nested condition or sub-filter counts its own."""
    return sum(_sub_conditions_count(condition) for condition in iter_conditions(filter_))


def max_condition_input_size(filter_: filters.Filter) -> int:
    """The size of the largest condition: the values of a `match: {any|except}`, the ids of a
    has_id; the largest inside nested conditions and sub-filters."""
    return max((_size_estimation(c) for c in iter_conditions(filter_)), default=0)


def one_unindexed_key(
    filter_: filters.Filter, indexes: IndexSchemas
) -> tuple[PayloadPath, list[str]] | None:
    """A field of the filter without an index able to serve its condition, with the index
    schemas that would (Qdrant's `one_unindexed_key`); None when every field has one. The
    top-level conditions are looked at in order, up to the first one found."""
    found: dict[PayloadPath, list[str]] = {}
    for condition in iter_conditions(filter_):
        _find_unindexed(condition, None, indexes, found)
        if found:
            break
    return next(iter(found.items()), None)


def iter_conditions(filter_: filters.Filter) -> Iterator[filters.Condition]:
    """Filter::iter_conditions's order: must, must_not, should, min_should."""
    yield from filter_.must or ()
    yield from filter_.must_not or ()
    yield from filter_.should or ()
    if filter_.min_should is not None:
        yield from filter_.min_should.conditions


def _sub_conditions_count(condition: filters.Condition) -> int:
    if isinstance(condition, filters.NestedCondition):
        return total_conditions_count(condition.filter)
    if isinstance(condition, filters.Filter):
        return total_conditions_count(condition)
    return 1


def _size_estimation(condition: filters.Condition) -> int:
    if isinstance(condition, filters.FieldCondition):
        if isinstance(condition.match, filters.MatchAny):
            return len(condition.match.any)
        if isinstance(condition.match, filters.MatchExcept):
            return len(condition.match.except_)
        return 0
    if isinstance(condition, filters.HasIdCondition):
        return len(condition.has_id)
    if isinstance(condition, filters.NestedCondition):
        return max_condition_input_size(condition.filter)
    if isinstance(condition, filters.Filter):
        return max_condition_input_size(condition)
    return 0


def _find_unindexed(
    condition: filters.Condition,
    prefix: PayloadPath | None,
    indexes: IndexSchemas,
    found: dict[PayloadPath, list[str]],
) -> None:
    """`Extractor::update_from_condition`: record the condition's key if no index serves it."""
    if isinstance(condition, filters.Filter):
        for inner in iter_conditions(condition):
            _find_unindexed(inner, prefix, indexes, found)
        return
    if isinstance(condition, filters.NestedCondition):
        nested_prefix = _extended(prefix, condition.key.array_key())
        for inner in iter_conditions(condition.filter):
            _find_unindexed(inner, nested_prefix, indexes, found)
        return
    if isinstance(condition, filters.IsEmptyCondition | filters.IsNullCondition):
        key, required = condition.key, list(ALL_CAPABILITIES)
    elif isinstance(condition, filters.FieldCondition):
        key, required = condition.key, _required_capabilities(condition)
    else:
        return  # has_id, has_vector, slice: no payload index involved
    if not required:
        return  # `any: []` / `except: []` match regardless of the field's type
    _require(_extended(prefix, key), required, indexes, found)


def _require(
    key: PayloadPath,
    required: list[str],
    indexes: IndexSchemas,
    found: dict[PayloadPath, list[str]],
) -> None:
    """`needs_index`: record `key` unless its index has one of the `required` capabilities."""
    index = indexes.get(key)
    if index is not None and not set(required).isdisjoint(_capabilities(*index)):
        return
    found.setdefault(key, []).extend(SCHEMA_OF_CAPABILITY[c] for c in required)


def _required_capabilities(condition: filters.FieldCondition) -> list[str]:
    """`infer_index_from_field_condition`: the index kinds, any of which serves it."""
    required: list[str] = []
    match = condition.match
    if isinstance(match, filters.MatchValue):
        required += _match_value_capabilities(match.value)
    elif isinstance(match, filters.MatchText | filters.MatchTextAny):
        required.append("text")
    elif isinstance(match, filters.MatchPhrase):
        required.append("text_phrase")
    elif isinstance(match, filters.MatchPrefix):
        required.append("keyword_prefix")
    elif isinstance(match, filters.MatchAny | filters.MatchExcept):
        values = match.any if isinstance(match, filters.MatchAny) else match.except_
        required += _match_any_capabilities(values)
    if isinstance(condition.range, filters.DatetimeRange):
        required.append("datetime_range")
    elif condition.range is not None:
        required += ["float_range", "int_range"]
    geo = (condition.geo_bounding_box, condition.geo_radius, condition.geo_polygon)
    if any(shape is not None for shape in geo):
        required.append("geo")
    checks = (condition.values_count, condition.is_empty, condition.is_null)
    if any(check is not None for check in checks):
        required += ALL_CAPABILITIES
    return required


def _match_value_capabilities(value: str | int | bool) -> list[str]:
    if isinstance(value, bool):
        return ["bool_match"]
    if isinstance(value, int):
        return ["int_match"]
    return ["uuid_match", "keyword_match"] if _is_uuid(value) else ["keyword_match"]


def _match_any_capabilities(values: frozenset[str] | frozenset[int]) -> list[str]:
    if not values:
        return []
    if all(isinstance(value, str) for value in values):
        is_all_uuids = all(_is_uuid(str(value)) for value in values)
        return ["uuid_match", "keyword_match"] if is_all_uuids else ["keyword_match"]
    return ["int_match"]


def _capabilities(schema_type: str, params: dict[str, Any] | None) -> set[str]:
    """`schema_capabilities`: what an index of this schema can serve."""
    params = params or {}
    if schema_type == "keyword":
        return {"keyword_match", "keyword_prefix"} if params.get("prefix") else {"keyword_match"}
    if schema_type == "integer":
        capabilities = set()
        if params.get("lookup", True) is not False:
            capabilities.add("int_match")
        if params.get("range", True) is not False:
            capabilities.add("int_range")
        return capabilities
    if schema_type == "text":
        return {"text", "text_phrase"} if params.get("phrase_matching") else {"text"}
    return {
        "uuid": {"uuid_match", "uuid_range"},
        "bool": {"bool_match"},
        "float": {"float_range"},
        "geo": {"geo"},
        "datetime": {"datetime_range"},
    }.get(schema_type, set())


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _extended(prefix: PayloadPath | None, key: PayloadPath) -> PayloadPath:
    return key if prefix is None else prefix.extend_steps(*key.steps)


def has_tenant_condition(filter_: filters.Filter | None, indexes: IndexSchemas) -> bool:
    """Whether a condition of the filter (top level; a sub-filter by its first key) targets a
    field whose index is a tenant index (`is_tenant: true`)."""
    if filter_ is None:
        return False
    for condition in iter_conditions(filter_):
        key = _targeted_key(condition)
        index = None if key is None else indexes.get(key)
        if index is not None and (index[1] or {}).get("is_tenant") is True:
            return True
    return False


def _targeted_key(condition: filters.Condition) -> PayloadPath | None:
    if isinstance(condition, filters.FieldCondition | filters.IsEmptyCondition):
        return condition.key
    if isinstance(condition, filters.IsNullCondition):
        return condition.key
    if isinstance(condition, filters.NestedCondition):
        return condition.key.array_key()
    if isinstance(condition, filters.Filter):
        keys = (_targeted_key(inner) for inner in iter_conditions(condition))
        return next((key for key in keys if key is not None), None)
    return None


def one_unindexed_expression_key(
    expression: formulas.Expression, indexes: IndexSchemas
) -> tuple[PayloadPath, list[str]] | None:
    """A payload key of a formula expression without a suitable index, with the schemas that
    would serve it (Qdrant's `one_unindexed_expression_key`); None when all have one."""
    found: dict[PayloadPath, list[str]] = {}
    _find_unindexed_in_expression(expression, indexes, found)
    return next(iter(found.items()), None)


def _find_unindexed_in_expression(
    expression: formulas.Expression, indexes: IndexSchemas, found: dict[PayloadPath, list[str]]
) -> None:
    """`Extractor::update_from_expression`: a payload variable needs a numeric index, a geo
    distance a geo index, a datetime key a datetime index, a condition what it needs."""
    if isinstance(expression, formulas.Variable):
        try:
            variable = formulas.parse_variable(expression.name)
        except ValueError:
            return  # compiling the formula refuses it
        if isinstance(variable, PayloadPath):
            _require(variable, ["int_match", "int_range", "float_range"], indexes, found)
    elif isinstance(expression, formulas.ConditionTerm):
        _find_unindexed(expression.condition, None, indexes, found)
    elif isinstance(expression, formulas.GeoDistance):
        _require(expression.to, ["geo"], indexes, found)
    elif isinstance(expression, formulas.DatetimeKey):
        _require(expression.key, ["datetime_range"], indexes, found)
    for inner in _sub_expressions(expression):
        _find_unindexed_in_expression(inner, indexes, found)


def _sub_expressions(expression: formulas.Expression) -> tuple[formulas.Expression, ...]:
    if isinstance(expression, formulas.Mult):
        return expression.factors
    if isinstance(expression, formulas.Sum):
        return expression.terms
    if isinstance(expression, formulas.Unary):
        return (expression.operand,)
    if isinstance(expression, formulas.Div):
        return (expression.left, expression.right)
    if isinstance(expression, formulas.Pow):
        return (expression.base, expression.exponent)
    if isinstance(expression, formulas.Decay):
        target = () if expression.target is None else (expression.target,)
        return (expression.x, *target)
    return ()
