"""Qdrant's JSON filter -> engine.filters.conditions objects, with Qdrant's error texts.

Owns: which filter JSON Qdrant 1.19 accepts and the exact text of the 400/422 it answers for
the rest: format errors (`FormatError`, 400 `Format error in JSON body: ...`) and validation
errors (`ValidationError`, 422 `Validation error in JSON body: [...]`).
Not here: what a filter means (engine/filters/conditions.py), where a filter sits in a request body.

How Qdrant reads a filter (`lib/segment/src/types.rs`, `common/utils.rs` `MaybeOneOrMany`):

- `Filter` denies unknown fields; `must`/`should`/`must_not` take null, one condition or a list.
- `Condition` has a hand-written Deserialize. An object with a `key` is a `FieldCondition`,
  read through `serde_value`, so its errors read `Invalid type <x>. Expected <y>` and
  `Missing field <f>`, and its fields are visited in sorted order (serde_value's BTreeMap).
  Anything else tries the untagged variants is_empty, is_null, has_id, has_vector, slice,
  nested, filter in that order; when none fits, every inner error is replaced by the enum's
  `expecting` text (CONDITION_EXPECTING), also for a bad field condition deep inside a nested
  or sub-filter.
- Unknown fields are ignored everywhere except in `Filter` (so `{"key": "a", "matc": ...}`
  is a field condition with no check: 422 `At least one field condition must be specified`).
- Validation (422) runs after the whole body parsed: a field condition with no check, a slice
  index >= total, `min_should.min_count` < 1. Paths are validator's (`filter.must[0].__all__`).

Deliberately not reproduced: serde's acceptance of a struct written as a JSON array (Qdrant
takes `"center": [lon, lat]`, `"match": ["x"]`, even `[{"key": "a"}]` as an is_empty condition);
Keel answers those with the format error of the surrounding shape.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from engine.errors import FormatError
from engine.filters.conditions import (
    I64_MAX,
    I64_MIN,
    U64_MAX,
    Condition,
    DatetimeRange,
    FieldCondition,
    Filter,
    GeoBoundingBox,
    GeoPoint,
    GeoPolygon,
    GeoRadius,
    HasIdCondition,
    HasVectorCondition,
    IsEmptyCondition,
    IsNullCondition,
    Match,
    MatchAny,
    MatchExcept,
    MatchPhrase,
    MatchPrefix,
    MatchText,
    MatchTextAny,
    MatchValue,
    MinShould,
    NestedCondition,
    PayloadPath,
    Range,
    SliceCondition,
    ValuesCount,
    instant_key,
)
from engine.limits import FILTER_JSON_DEPTH_MAX
from engine.ops import PointId
from server.wire.serde_text import (
    invalid_type,
    missing_field,
    rust_debug_str,
    rust_f64_display,
    validation_errors,
)

FieldErrors = list[tuple[str, str]]  # (validation path, message), as validator reports them
FILTER_FIELDS = ("should", "min_should", "must", "must_not")
RANGE_BOUNDS = ("gt", "gte", "lt", "lte")  # sorted: the order serde_value visits them in
CONDITION_EXPECTING = (
    "Expected some form of condition, which can be a field condition (like "
    '{"key": ..., "match": ... }), or some other mentioned in the documentation: '
    "https://qdrant.tech/documentation/concepts/filtering/#filtering-conditions"
)
NO_FIELD_CHECK = "At least one field condition must be specified"
# Filters parsed without error, by their JSON with sorted keys (the parse reads keys in an
# order of its own, and ints, floats and bools stay distinct in JSON): applications send the
# same few filters (a tenant's, a category's) again and again, and parsing one took about
# 14 us of the event loop per request (py-spy under wrk, issue 15). The filters are frozen
# values, safe to share; `path` only names fields in errors, so a result without any is the
# same whatever the path. Bounded: past PARSED_FILTERS_MAX all are forgotten.
PARSED_FILTERS_MAX = 1024
PARSED_FILTER_BYTES_MAX = 4096
_parsed_filters: dict[bytes, Filter] = {}
# JSON nesting allowed inside a filter. Qdrant's serde_json stops a whole body at depth 128;
# Keel bounds the filter itself so evaluation (recursive) is bounded too.
U32_MAX = 2**32 - 1
F64_EPSILON = 2.0**-52
UUID_HYPHENATED = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
UUID_SIMPLE = re.compile(r"[0-9a-fA-F]{32}")


def parse_filter(data: object, path: str = "filter") -> Filter | None:
    """A filter from its JSON (None for null), or FormatError / ValidationError as Qdrant.

    `path` is the filter's place in the body for validation messages (`filter`,
    `internal.filter`, ...). A request body with other fields to validate should use
    `parse_filter_collecting` and report all validation errors together.
    """
    errors: FieldErrors = []
    parsed = parse_filter_collecting(data, path, errors)
    if errors:
        raise validation_errors(errors)
    return parsed


def parse_filter_collecting(data: object, path: str, errors: FieldErrors) -> Filter | None:
    """As parse_filter, but validation errors are appended to `errors` instead of raised."""
    if data is None:
        return None
    key = _remembered_key(data)
    parsed = _parsed_filters.get(key) if key is not None else None
    if parsed is not None:
        return parsed
    if _json_depth(data) > FILTER_JSON_DEPTH_MAX:
        raise FormatError("recursion limit exceeded")
    errors_before = len(errors)
    parsed = _parse_filter(data, path, errors)
    if key is not None and len(errors) == errors_before:
        if len(_parsed_filters) >= PARSED_FILTERS_MAX:
            _parsed_filters.clear()
        _parsed_filters[key] = parsed
    return parsed


def _remembered_key(data: object) -> bytes | None:
    """The filter's JSON with sorted keys, what `_parsed_filters` knows it by; None when it
    is too long to keep or orjson can't write it (an integer past 64 bits)."""
    try:
        key = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return key if len(key) <= PARSED_FILTER_BYTES_MAX else None


# --- Filter, clauses, conditions (serde_json's wording) -------------------------------------


def _parse_filter(data: Any, path: str, errors: FieldErrors) -> Filter:
    if type(data) is not dict:
        raise invalid_type(data, "struct Filter")
    clauses: dict[str, Any] = {}
    for name, value in data.items():
        if name == "min_should":
            clauses[name] = _parse_min_should(value, f"{path}.min_should", errors)
        elif name in FILTER_FIELDS:
            clauses[name] = _parse_clause(value, f"{path}.{name}", errors)
        else:
            expected = ", ".join(f"`{known}`" for known in FILTER_FIELDS)
            raise FormatError(f"unknown field `{name}`, expected one of {expected}")
    return Filter(**clauses)


def _parse_clause(value: Any, path: str, errors: FieldErrors) -> tuple[Condition, ...] | None:
    """`MaybeOneOrMany`: null, one condition, or a list of them."""
    if value is None:
        return None
    if type(value) is dict:
        return (_parse_condition(value, f"{path}[0]", errors),)
    if type(value) is not list:
        raise invalid_type(value, "null, array or map")
    return tuple(_parse_condition(item, f"{path}[{i}]", errors) for i, item in enumerate(value))


def _parse_min_should(value: Any, path: str, errors: FieldErrors) -> MinShould | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise invalid_type(value, "struct MinShould")
    conditions: tuple[Condition, ...] | None = None
    min_count: int | None = None
    for name, item in value.items():
        if name == "conditions":
            if type(item) is not list:
                raise invalid_type(item, "a sequence")
            conditions = tuple(
                _parse_condition(c, f"{path}.conditions[{i}]", errors) for i, c in enumerate(item)
            )
        elif name == "min_count":
            min_count = _parse_usize(item)
    if conditions is None:
        raise missing_field("conditions")
    if min_count is None:
        raise missing_field("min_count")
    if min_count < 1:
        errors.append((f"{path}.min_count", "min_count must be greater than 0"))
    return MinShould(conditions=conditions, min_count=min_count)


def _parse_condition(value: Any, path: str, errors: FieldErrors) -> Condition:
    if type(value) is dict and "key" in value:
        return _parse_field_condition(value, path, errors)
    for parse_variant in UNTAGGED_VARIANTS:
        errors_before = len(errors)
        try:
            return parse_variant(value, path, errors)
        except FormatError:
            # serde tries the next variant; validation errors of the failed try go too.
            del errors[errors_before:]
    raise FormatError(CONDITION_EXPECTING)


def _variant_is_empty(value: Any, path: str, errors: FieldErrors) -> Condition:
    return IsEmptyCondition(key=_payload_field(_member(value, "is_empty")))


def _variant_is_null(value: Any, path: str, errors: FieldErrors) -> Condition:
    return IsNullCondition(key=_payload_field(_member(value, "is_null")))


def _variant_has_id(value: Any, path: str, errors: FieldErrors) -> Condition:
    ids = _member(value, "has_id")
    if type(ids) is not list:
        raise FormatError("has_id is not a list")
    return HasIdCondition(has_id=frozenset(_parse_point_id(item) for item in ids))


def _variant_has_vector(value: Any, path: str, errors: FieldErrors) -> Condition:
    name = _member(value, "has_vector")
    if type(name) is not str:
        raise FormatError("has_vector is not a string")
    return HasVectorCondition(has_vector=name)


def _variant_slice(value: Any, path: str, errors: FieldErrors) -> Condition:
    fields = _member(value, "slice")
    total, index = _member(fields, "total"), _member(fields, "index")
    if not (_is_u32(total) and _is_u32(index) and total >= 1):
        raise FormatError("slice is not {total: NonZeroU32, index: u32}")
    if index >= total:
        message = "Slice index must be less than the total number of slices"
        errors.append((f"{path}.__all__", message))
    return SliceCondition(total=total, index=index)


def _variant_nested(value: Any, path: str, errors: FieldErrors) -> Condition:
    nested = _member(value, "nested")
    key = _member(nested, "key")
    if type(key) is not str:
        raise FormatError("nested.key is not a string")
    inner = _parse_filter(_member(nested, "filter"), f"{path}.nested.filter", errors)
    return NestedCondition(key=_parse_path(key), filter=inner)


def _variant_filter(value: Any, path: str, errors: FieldErrors) -> Condition:
    return _parse_filter(value, path, errors)


UNTAGGED_VARIANTS: tuple[Callable[[Any, str, FieldErrors], Condition], ...] = (
    _variant_is_empty,
    _variant_is_null,
    _variant_has_id,
    _variant_has_vector,
    _variant_slice,
    _variant_nested,
    _variant_filter,
)


# --- FieldCondition (serde_value's wording) --------------------------------------------------


def _parse_field_condition(data: dict[str, Any], path: str, errors: FieldErrors) -> Condition:
    if type(data["key"]) is not str:
        raise FormatError("Filter condition 'key' must be a string")
    checks: dict[str, Any] = {}
    for name in sorted(data):  # serde_value holds a map as a BTreeMap: sorted keys
        value = data[name]
        if name == "key":
            key = _parse_path(value)
        elif name in FIELD_CHECK_PARSERS and value is not None:
            checks[name] = FIELD_CHECK_PARSERS[name](value)
    if not checks:
        errors.append((f"{path}.__all__", NO_FIELD_CHECK))
    return FieldCondition(key=key, **checks)


def _parse_match(value: Any) -> Match:
    """`MatchInterface`, untagged: the first variant whose field is present and well-typed."""
    if type(value) is dict:
        if "value" in value:
            keyword = value["value"]
            if type(keyword) is str or type(keyword) is bool or _is_i64(keyword):
                return MatchValue(value=keyword)
        for name, variant in TEXT_MATCHES:
            if type(value.get(name)) is str:
                return variant(value[name])
        for name, variant in LIST_MATCHES:
            values = _any_variants(value.get(name))
            if values is not None:
                return variant(values)
    raise FormatError("data did not match any variant of untagged enum MatchInterface")


TEXT_MATCHES: tuple[tuple[str, Callable[[str], Match]], ...] = (
    ("text", MatchText),
    ("text_any", MatchTextAny),
    ("phrase", MatchPhrase),
    ("prefix", MatchPrefix),
)
LIST_MATCHES: tuple[tuple[str, Callable[[Any], Match]], ...] = (
    ("any", MatchAny),
    ("except", MatchExcept),
)


def _any_variants(value: Any) -> frozenset[str] | frozenset[int] | None:
    """`AnyVariants`: a list of keywords, or of i64 integers (an empty list is keywords)."""
    if type(value) is not list:
        return None
    if all(type(item) is str for item in value):
        return frozenset(value)
    if all(_is_i64(item) for item in value):
        return frozenset(value)
    return None


def _parse_range(value: Any) -> Range | DatetimeRange:
    """`RangeInterface`: a datetime range if any bound is a string, else a number range."""
    if type(value) is dict and any(type(value.get(name)) is str for name in RANGE_BOUNDS):
        bounds = {name: _datetime_bound(value[name]) for name in RANGE_BOUNDS if name in value}
        return DatetimeRange(**bounds)
    if type(value) is dict and all(
        value.get(name) is None or _is_number(value[name]) for name in RANGE_BOUNDS
    ):
        numbers = {name: value.get(name) for name in RANGE_BOUNDS}
        return Range(**{name: None if n is None else float(n) for name, n in numbers.items()})
    raise FormatError("data did not match any variant of untagged enum RangeInterfaceUntagged")


def _datetime_bound(value: Any) -> int | None:
    # serde_json reads the bounds here (from_value), so its wording, not serde_value's.
    if value is None:
        return None
    if type(value) is not str:
        raise invalid_type(value, "a string")
    key = instant_key(value)
    if key is None:
        raise FormatError(
            f"'{value}' does not match accepted datetime format (RFC3339). "
            "Example: 2014-01-01T00:00:00Z"
        )
    return key


def _parse_bounding_box(value: Any) -> GeoBoundingBox:
    readers = {"top_left": _parse_geo_point, "bottom_right": _parse_geo_point}
    return GeoBoundingBox(**_read_struct(value, "GeoBoundingBox", readers, tuple(readers)))


def _parse_radius(value: Any) -> GeoRadius:
    readers = {"center": _parse_geo_point, "radius": _parse_f64}
    fields = _read_struct(value, "GeoRadius", readers, tuple(readers))
    return GeoRadius(center=fields["center"], radius_m=fields["radius"])


def _parse_polygon(value: Any) -> GeoPolygon:
    """`GeoPolygon` via `GeoPolygonShadow`: lines of >= 4 points, first == last (±epsilon)."""
    readers = {"exterior": _parse_line, "interiors": _parse_lines}
    fields = _read_struct(value, "GeoPolygonShadow", readers, ("exterior",))
    interiors = fields.get("interiors") or ()
    for line in (fields["exterior"], *interiors):
        _check_closed_line(line)
    return GeoPolygon(exterior=fields["exterior"], interiors=interiors)


def _parse_lines(value: Any) -> tuple[tuple[GeoPoint, ...], ...] | None:
    if value is None:
        return None
    return tuple(_parse_line(line) for line in _sequence(value))


def _parse_line(value: Any) -> tuple[GeoPoint, ...]:
    readers = {"points": lambda points: tuple(_parse_geo_point(p) for p in _sequence(points))}
    return _read_struct(value, "GeoLineString", readers, ("points",))["points"]


def _check_closed_line(line: tuple[GeoPoint, ...]) -> None:
    if len(line) <= 3:
        raise FormatError(
            f"Validation failed: polygon invalid, the size must be at least 4, got {len(line)}"
        )
    first, last = line[0], line[-1]
    if abs(first.lat - last.lat) > F64_EPSILON or abs(first.lon - last.lon) > F64_EPSILON:
        raise FormatError(
            "Validation failed: polygon invalid, the first and the last points should be the "
            "same to form a closed line"
        )


def _parse_geo_point(value: Any) -> GeoPoint:
    """`GeoPoint` via `GeoPointShadow`, then the coordinate range check."""
    readers = {"lon": _parse_f64, "lat": _parse_f64}
    fields = _read_struct(value, "GeoPointShadow", readers, tuple(readers))
    lon, lat = fields["lon"], fields["lat"]
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise FormatError(
            f"Wrong format of GeoPoint payload: expected `lat` = {rust_f64_display(lat)} "
            f"within [-90;90] and `lon` = {rust_f64_display(lon)} within [-180;180]"
        )
    return GeoPoint(lon=lon, lat=lat)


def _parse_values_count(value: Any) -> ValuesCount:
    readers = dict.fromkeys(RANGE_BOUNDS, _parse_value_usize)
    return ValuesCount(**_read_struct(value, "ValuesCount", readers, ()))


def _parse_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _value_invalid_type(value, "a boolean")
    return value


FIELD_CHECK_PARSERS: dict[str, Callable[[Any], Any]] = {
    "match": _parse_match,
    "range": _parse_range,
    "geo_bounding_box": _parse_bounding_box,
    "geo_radius": _parse_radius,
    "geo_polygon": _parse_polygon,
    "values_count": _parse_values_count,
    "is_empty": _parse_bool,
    "is_null": _parse_bool,
}


# --- small readers ---------------------------------------------------------------------------


def _read_struct(
    value: Any,
    struct_name: str,
    readers: dict[str, Callable[[Any], Any]],
    required: tuple[str, ...],
) -> dict[str, Any]:
    """A struct read through serde_value: known fields in sorted order, then missing ones."""
    if type(value) is not dict:
        raise _value_invalid_type(value, f"struct {struct_name}")
    fields = {name: readers[name](value[name]) for name in sorted(value) if name in readers}
    for name in required:  # serde checks these after reading the map, in declaration order
        if name not in fields:
            raise FormatError(f"Missing field {name}")
    return fields


def _sequence(value: Any) -> list[Any]:
    if type(value) is not list:
        raise _value_invalid_type(value, "a sequence")
    return value


def _parse_f64(value: Any) -> float:
    if not _is_number(value):
        raise _value_invalid_type(value, "f64")
    return float(value)


def _parse_value_usize(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is int and value < 0:
        raise FormatError(f"Invalid value {_serde_unexpected(value)}. Expected usize")
    if type(value) is not int:
        raise _value_invalid_type(value, "usize")
    return value


def _parse_usize(value: Any) -> int:
    """serde_json's usize (MinShould.min_count)."""
    if type(value) is not int:
        raise invalid_type(value, "usize")
    if value < 0:
        raise FormatError(f"invalid value: integer `{value}`, expected usize")
    return value


def _parse_path(text: str) -> PayloadPath:
    try:
        return PayloadPath.parse(text)
    except ValueError:
        raise FormatError(f"Invalid json path: '{text}'") from None


def _payload_field(value: Any) -> PayloadPath:
    key = _member(value, "key")
    if type(key) is not str:
        raise FormatError("key is not a string")
    return _parse_path(key)


def _member(value: Any, name: str) -> Any:
    """A required field of an untagged variant; its absence only means 'not this variant'."""
    if type(value) is not dict or name not in value:
        raise FormatError(f"no field {name}")
    return value[name]


def _parse_point_id(value: Any) -> PointId:
    """`ExtendedPointId`: a u64 or a UUID string in a form the `uuid` crate parses."""
    if type(value) is int and 0 <= value <= U64_MAX:
        return value
    if type(value) is str:
        if UUID_SIMPLE.fullmatch(value) or UUID_HYPHENATED.fullmatch(value):
            return uuid.UUID(value)
        if value.startswith("{") and value.endswith("}"):
            wrapped = value[1:-1]
        else:
            wrapped = value.removeprefix("urn:uuid:")
        # Braces and the URN prefix only go around the hyphenated form.
        if wrapped != value and UUID_HYPHENATED.fullmatch(wrapped):
            return uuid.UUID(wrapped)
    raise FormatError("not a point id")


def _value_invalid_type(value: Any, expected: str) -> FormatError:
    """serde_value's DeserializerError::InvalidType, as its Display writes it."""
    return FormatError(f"Invalid type {_serde_unexpected(value)}. Expected {expected}")


def _serde_unexpected(value: Any) -> str:
    """serde's `Unexpected` Display for a serde_value (null is `unit value` there)."""
    if value is None:
        return "unit value"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        text = rust_f64_display(value)
        return f"floating point `{text if '.' in text else text + '.0'}`"
    if isinstance(value, str):
        return f"string {rust_debug_str(value)}"
    return "sequence" if isinstance(value, list) else "map"


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _is_i64(value: Any) -> bool:
    return type(value) is int and I64_MIN <= value <= I64_MAX


def _is_u32(value: Any) -> bool:
    return type(value) is int and 0 <= value <= U32_MAX


def _json_depth(value: Any) -> int:
    """Nesting depth of a JSON value, iteratively (a deep value must not hit Python's limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > FILTER_JSON_DEPTH_MAX:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest
