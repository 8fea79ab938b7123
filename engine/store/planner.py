"""Filter planner: which payload index lookups narrow a filter's candidate points.

Owns: turning a compiled `filters.Filter` and the collection's payload indexes into a
`payload_index.Lookup` tree, or None for "scan every point".
Not here: resolving lookups in LMDB (engine/store/payload_index.py), the final check of each candidate
(engine/query/reads.py evaluates the whole filter on every candidate), choosing exact vs graph search.

A plan selects a *superset* of the matching points, never fewer: a condition becomes a lookup
only when every point it can match holds an indexed value it selects (engine/store/payload_index.py says
why the indexes hold such a superset). So:

- `must`: the lookups of its plannable conditions, intersected (the others are left to the
  residual check). A `Filter` inside `must` is planned recursively.
- `should` (non-empty): the union of its conditions' lookups, only if every one is plannable
  (one unplannable alternative can match anything).
- `must_not`, `min_should`, `nested`, `values_count`, `is_empty`, `is_null`, text matches:
  not planned.
- `has_id` in `must`: the listed ids' keys, no index needed.

Numeric ranges are exact: a strict bound is the next f64 inward (`gt 5` looks up from
5.000000000000001), so is_exact may skip the check for them.
"""

from __future__ import annotations

import math
from typing import Any

from engine.filters import geo
from engine.filters.conditions import (
    DatetimeRange,
    FieldCondition,
    Filter,
    GeoBoundingBox,
    GeoPolygon,
    GeoRadius,
    HasIdCondition,
    MatchAny,
    MatchValue,
    Range,
)
from engine.filters.payload_path import canonical_text
from engine.ops import point_key
from engine.store import payload_index
from engine.store.payload_index import (
    AllOf,
    AnyOf,
    IndexSpec,
    KeySet,
    Lookup,
    ValueEqual,
    ValueRange,
)

Specs = dict[str, IndexSpec]
FLOAT_MIN = payload_index.encode_float(-math.inf)
FLOAT_MAX = payload_index.encode_float(math.inf)
KEYWORD_TYPES = ("keyword", "uuid")
NUMBER_TYPES = ("integer", "float")
# A latitude margin for geo radius lookups: float error in haversine, in degrees.
GEO_MARGIN_DEG = 1e-6
DEPTH_MAX = 32  # filters nest deeper than this are scanned (server caps them at 100)


def plan(filter_: Filter, specs: Specs) -> Lookup | None:
    """Lookups selecting a superset of the points `filter_` matches; None: scan everything."""
    if not specs and not _has_id_in_must(filter_):
        return None
    by_path = {canonical_text(name): spec for name, spec in specs.items()}
    return _plan_filter(filter_, by_path, 0)


def unindexed_fields(filter_: Filter, specs: Specs) -> dict[str, str]:
    """Fields the `must` conditions of `filter_` (nested `must` too) match or range on
    without a payload index, with the index type that would plan them: "keyword" for
    strings, "bool", "integer" for integers and numeric ranges. The read view builds
    such postings in memory for searches (engine/readview/__init__.py)."""
    by_path = {canonical_text(name) for name in specs}
    found: dict[str, str] = {}
    _collect_unindexed(filter_, by_path, found, 0)
    return found


def _collect_unindexed(
    filter_: Filter, by_path: set[str], found: dict[str, str], depth: int
) -> None:
    if depth > DEPTH_MAX:
        return
    for condition in filter_.must or ():
        if isinstance(condition, Filter):
            _collect_unindexed(condition, by_path, found, depth + 1)
            continue
        if not isinstance(condition, FieldCondition) or not _is_single_check(condition):
            continue
        name = str(condition.key)
        if name in by_path:
            continue
        schema_type = _type_to_plan(condition)
        if schema_type is not None:
            found.setdefault(name, schema_type)


def _type_to_plan(condition: FieldCondition) -> str | None:
    match = condition.match
    if isinstance(match, MatchValue):
        value = match.value
        if type(value) is str:
            return "keyword"
        if type(value) is bool:
            return "bool"
        return "integer" if type(value) is int else None
    if isinstance(match, MatchAny) and match.any:
        if all(type(v) is str for v in match.any):
            return "keyword"
        return "integer" if all(type(v) is int for v in match.any) else None
    if isinstance(condition.range, Range):
        return "integer"
    return None


def is_exact(filter_: Filter, specs: Specs) -> bool:
    """Whether plan(filter_, specs) selects exactly the matching points, not a superset, so
    that a read may skip checking the filter on each candidate (and reading its payload).

    Only `must` lists (nested too) of conditions whose lookup is an equality the index
    answers exactly: a keyword index and string values (its entries are the strings at the
    path, arrays flattened one level, as the filter reads them; longer strings by SHA-256),
    a bool index and a boolean, `has_id`, a numeric range on an integer or float index. Not
    integer matches (the index holds every number as f64, and 1.0 is not 1 to a match),
    datetime ranges, geo, or any other clause.
    """
    by_path = {canonical_text(name): spec for name, spec in specs.items()}
    return _is_exact_filter(filter_, by_path, 0)


def _is_exact_filter(filter_: Filter, by_path: Specs, depth: int) -> bool:
    if depth > DEPTH_MAX or filter_.should or filter_.must_not or filter_.min_should:
        return False
    if filter_.should is not None and depth > 0:
        return False  # an empty `should` inside a nested filter matches nothing
    return bool(filter_.must) and all(
        _is_exact_condition(c, by_path, depth) for c in filter_.must or ()
    )


def _is_exact_condition(condition: Any, by_path: Specs, depth: int) -> bool:
    if isinstance(condition, HasIdCondition):
        return True
    if isinstance(condition, Filter):
        return _is_exact_filter(condition, by_path, depth + 1)
    if not isinstance(condition, FieldCondition) or not _is_single_check(condition):
        return False
    spec = by_path.get(str(condition.key))
    if spec is None:
        return False
    if isinstance(condition.range, Range):
        # Numbers compare as f64 in a range, as the index holds them, and _float_bounds
        # makes the lookup's bounds exact.
        return spec.schema_type in NUMBER_TYPES
    if condition.match is None:
        return False
    match = condition.match
    if isinstance(match, MatchValue):
        value = match.value
        return (type(value) is str and spec.schema_type == "keyword") or (
            type(value) is bool and spec.schema_type == "bool"
        )
    return (
        isinstance(match, MatchAny)
        and bool(match.any)
        and spec.schema_type == "keyword"
        and all(type(v) is str for v in match.any)
    )


def _plan_filter(filter_: Filter, by_path: Specs, depth: int) -> Lookup | None:
    if depth > DEPTH_MAX:
        return None
    parts = [_plan_condition(c, by_path, depth) for c in filter_.must or ()]
    known = [part for part in parts if part is not None]
    if filter_.should:
        alternatives = [_plan_condition(c, by_path, depth) for c in filter_.should]
        if all(part is not None for part in alternatives):
            known.append(AnyOf(tuple(alternatives)))  # type: ignore[arg-type]
    if not known:
        return None
    return known[0] if len(known) == 1 else AllOf(tuple(known))


def _plan_condition(condition: Any, by_path: Specs, depth: int) -> Lookup | None:
    if isinstance(condition, HasIdCondition):
        return KeySet(frozenset(point_key(point_id) for point_id in condition.has_id))
    if isinstance(condition, Filter):
        return _plan_filter(condition, by_path, depth + 1)
    if not isinstance(condition, FieldCondition):
        return None
    spec = by_path.get(str(condition.key))
    if spec is None or not _is_single_check(condition):
        return None
    name = spec.field_name
    if condition.match is not None:
        return _plan_match(condition.match, spec)
    if isinstance(condition.range, Range) and spec.schema_type in NUMBER_TYPES:
        low, high = _float_bounds(condition.range)
        return ValueRange(name, low, high)
    if isinstance(condition.range, DatetimeRange) and spec.schema_type == "datetime":
        return ValueRange(name, *_instant_bounds(condition.range))
    has_area = condition.geo_bounding_box or condition.geo_radius or condition.geo_polygon
    if spec.schema_type != "geo" or has_area is None:
        return None
    south, north = _latitude_span(condition)
    low = payload_index.encode_float(south) + FLOAT_MIN
    high = payload_index.encode_float(north) + FLOAT_MAX
    return ValueRange(name, low, high)


def _plan_match(match: Any, spec: IndexSpec) -> Lookup | None:
    name, schema_type = spec.field_name, spec.schema_type
    if isinstance(match, MatchValue):
        value = match.value
        if type(value) is str and schema_type in KEYWORD_TYPES:
            return ValueEqual(name, payload_index.encode_keyword(value))
        if type(value) is int and schema_type in NUMBER_TYPES:
            return ValueEqual(name, payload_index.encode_float(float(value)))
        if type(value) is bool and schema_type == "bool":
            return ValueEqual(name, payload_index.encode_bool(value))
        return None
    if not isinstance(match, MatchAny) or not match.any:
        return None
    values = list(match.any)
    if all(type(v) is str for v in values) and schema_type in KEYWORD_TYPES:
        return AnyOf(tuple(ValueEqual(name, payload_index.encode_keyword(v)) for v in values))
    if all(type(v) is int for v in values) and schema_type in NUMBER_TYPES:
        return AnyOf(tuple(ValueEqual(name, payload_index.encode_float(float(v))) for v in values))
    return None


def _is_single_check(condition: FieldCondition) -> bool:
    """Exactly one of match/range/geo, and none of the checks that also match missing keys."""
    if condition.values_count is not None:
        return False
    if condition.is_empty is not None or condition.is_null is not None:
        return False
    checks = (
        condition.match,
        condition.range,
        condition.geo_bounding_box,
        condition.geo_radius,
        condition.geo_polygon,
    )
    return sum(check is not None for check in checks) == 1


def _float_bounds(bounds: Range) -> tuple[bytes, bytes]:
    """Inclusive f64 bounds selecting exactly the values the range accepts: a strict bound
    moves to the next f64 inward (`gt 5` looks up [5.000000000000001, inf])."""
    lows = [b for b in (bounds.gte,) if b is not None]
    lows += [math.nextafter(b, math.inf) for b in (bounds.gt,) if b is not None]
    highs = [b for b in (bounds.lte,) if b is not None]
    highs += [math.nextafter(b, -math.inf) for b in (bounds.lt,) if b is not None]
    low = max(lows) if lows else -math.inf
    high = min(highs) if highs else math.inf
    return payload_index.encode_float(low), payload_index.encode_float(high)


def _instant_bounds(bounds: DatetimeRange) -> tuple[bytes, bytes]:
    lows = [b for b in (bounds.gt, bounds.gte) if b is not None]
    highs = [b for b in (bounds.lt, bounds.lte) if b is not None]
    offset = payload_index.INSTANT_OFFSET
    low = max(lows) if lows else -offset
    high = min(highs) if highs else offset - 1
    # low > high is an empty range: the lookup's scan stops at its first entry.
    low, high = max(low, -offset), min(high, offset - 1)
    return payload_index.encode_instant(low), payload_index.encode_instant(high)


def _latitude_span(condition: FieldCondition) -> tuple[float, float]:
    """Latitudes (south, north) every point inside the condition's area lies between."""
    area = condition.geo_bounding_box or condition.geo_radius or condition.geo_polygon
    if isinstance(area, GeoBoundingBox):
        return area.bottom_right.lat, area.top_left.lat
    if isinstance(area, GeoRadius):
        # A point within distance d of the centre differs from it in latitude by at most d.
        span_deg = math.degrees(area.radius_m / geo.EARTH_RADIUS_M) + GEO_MARGIN_DEG
        return area.center.lat - span_deg, area.center.lat + span_deg
    assert isinstance(area, GeoPolygon), area
    latitudes = [point.lat for point in area.exterior]
    return min(latitudes), max(latitudes)


def _has_id_in_must(filter_: Filter) -> bool:
    return any(isinstance(c, HasIdCondition) for c in filter_.must or ())
