"""Filter JSON -> engine objects, and the status and text Qdrant 1.19 answers for bad filters.

Texts were read in Qdrant's source and the serde crates it builds with (server/wire/filters.py
names them); `answer` runs each error through server.app's mapping, so the assertions are on
what a client would see (status, `status.error`), without serde's ` at line L column C`.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.errors import KeelError
from engine.filters.conditions import (
    DatetimeRange,
    FieldCondition,
    Filter,
    GeoPoint,
    HasIdCondition,
    HasVectorCondition,
    IsEmptyCondition,
    IsNullCondition,
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
)
from engine.filters.instants import instant_key
from server.app import describe_error
from server.wire.filters import (
    CONDITION_EXPECTING,
    FILTER_JSON_DEPTH_MAX,
    PARSED_FILTERS_MAX,
    parse_filter,
    parse_filter_collecting,
)

FORMAT = "Format error in JSON body: "
VALIDATION = "Validation error in JSON body: "
UUID_TEXT = "550e8400-e29b-41d4-a716-446655440000"


def answer(data: Any, path: str = "filter") -> tuple[int, str]:
    """(status, error text) Keel answers for a body whose filter is `data`."""
    try:
        parse_filter(data, path)
    except KeelError as error:
        return describe_error(error)
    raise AssertionError(f"{data!r} parsed without error")


def must(*conditions: Any) -> dict[str, Any]:
    return {"must": list(conditions)}


def key_path(text: str) -> PayloadPath:
    return PayloadPath.parse(text)


# --- accepted shapes -------------------------------------------------------------------------


def test_null_is_no_filter_and_empty_clauses_are_kept() -> None:
    assert parse_filter(None) is None
    assert parse_filter({}) == Filter()
    assert parse_filter({"must": None, "should": [], "must_not": []}) == Filter(
        should=(), must_not=()
    )


def test_a_clause_is_one_condition_or_a_list() -> None:
    condition = {"key": "city", "match": {"value": "Berlin"}}
    expected = (FieldCondition(key=key_path("city"), match=MatchValue("Berlin")),)
    for clause in ("must", "should", "must_not"):
        assert getattr(parse_filter({clause: condition}), clause) == expected
        assert getattr(parse_filter({clause: [condition]}), clause) == expected


@pytest.mark.parametrize(
    ("match", "parsed"),
    [
        ({"value": "red"}, MatchValue("red")),
        ({"value": -7}, MatchValue(-7)),
        ({"value": True}, MatchValue(True)),
        ({"text": "good cheap"}, MatchText("good cheap")),
        ({"text_any": "good cheap"}, MatchTextAny("good cheap")),
        ({"phrase": "good cheap"}, MatchPhrase("good cheap")),
        ({"prefix": "go"}, MatchPrefix("go")),
        ({"any": ["a", "b", "a"]}, MatchAny(frozenset({"a", "b"}))),
        ({"any": [1, 2]}, MatchAny(frozenset({1, 2}))),
        ({"any": []}, MatchAny(frozenset())),
        ({"except": [3]}, MatchExcept(frozenset({3}))),
        # Untagged: the first variant that fits wins, unknown fields are ignored.
        ({"value": 1.5, "text": "x"}, MatchText("x")),
        ({"value": "v", "any": ["a"], "extra": 1}, MatchValue("v")),
    ],
)
def test_match_forms(match: dict[str, Any], parsed: Any) -> None:
    assert parse_filter(must({"key": "x", "match": match})) == Filter(
        must=(FieldCondition(key=key_path("x"), match=parsed),)
    )


def test_ranges_of_numbers_and_of_datetimes() -> None:
    numbers = parse_filter(must({"key": "x", "range": {"gt": 1, "lte": 2.5, "lt": None}}))
    assert numbers == Filter(must=(FieldCondition(key_path("x"), range=Range(gt=1.0, lte=2.5)),))
    instants = parse_filter(must({"key": "x", "range": {"gte": "2024-01-01", "lt": None}}))
    start = instant_key("2024-01-01T00:00:00Z")
    assert instants == Filter(must=(FieldCondition(key_path("x"), range=DatetimeRange(gte=start)),))


def test_every_other_condition_kind() -> None:
    parsed = parse_filter(
        {
            "should": [
                {"is_empty": {"key": "a"}},
                {"is_null": {"key": "a.b"}},
                {
                    "has_id": [
                        1,
                        UUID_TEXT,
                        "550E8400E29B41D4A716446655440000",
                        f"urn:uuid:{UUID_TEXT}",
                        f"{{{UUID_TEXT}}}",
                    ]
                },
                {"has_vector": "image"},
                {"slice": {"total": 3, "index": 2}},
                {
                    "nested": {
                        "key": "items",
                        "filter": {"must": {"key": "n", "values_count": {"gt": 1}}},
                    }
                },
                {"must_not": {"key": "b", "is_null": True}},
                {},
            ],
            "min_should": {"conditions": [{"has_vector": ""}], "min_count": 1},
        }
    )
    assert parsed == Filter(
        should=(
            IsEmptyCondition(key_path("a")),
            IsNullCondition(key_path("a.b")),
            HasIdCondition(frozenset({1, uuid.UUID(UUID_TEXT)})),
            HasVectorCondition("image"),
            SliceCondition(total=3, index=2),
            NestedCondition(
                key=key_path("items"),
                filter=Filter(
                    must=(FieldCondition(key_path("n"), values_count=ValuesCount(gt=1)),)
                ),
            ),
            Filter(must_not=(FieldCondition(key_path("b"), is_null=True),)),
            Filter(),
        ),
        min_should=MinShould(conditions=(HasVectorCondition(""),), min_count=1),
    )


def test_geo_conditions_and_unknown_fields_in_a_condition() -> None:
    parsed = parse_filter(
        must(
            {
                "key": "where",
                "geo_radius": {"center": {"lon": 13.4, "lat": 52.5, "alt": 9}, "radius": 1000},
                "comment": "ignored, as Qdrant ignores it",
            }
        )
    )
    assert parsed is not None and parsed.must is not None
    condition = parsed.must[0]
    assert isinstance(condition, FieldCondition)
    assert condition.geo_radius is not None
    assert condition.geo_radius.center == GeoPoint(lon=13.4, lat=52.5)
    assert condition.geo_radius.radius_m == 1000.0


def test_an_untagged_condition_takes_the_first_variant_that_fits() -> None:
    parsed = parse_filter(must({"has_id": [1], "must": [{"has_vector": "a"}]}))
    assert parsed == Filter(must=(HasIdCondition(frozenset({1})),))


# --- 400: format errors ------------------------------------------------------------------------

FORMAT_CASES: list[tuple[Any, str]] = [
    ([], "invalid type: sequence, expected struct Filter"),
    ("x", 'invalid type: string "x", expected struct Filter'),
    (
        {"must": [], "filter": {}},
        "unknown field `filter`, expected one of `should`, `min_should`, `must`, `must_not`",
    ),
    ({"must": "x"}, 'invalid type: string "x", expected null, array or map'),
    ({"should": 1.5}, "invalid type: floating point `1.5`, expected null, array or map"),
    ({"must": [{"foo": 1}]}, CONDITION_EXPECTING),
    ({"must": ["key"]}, CONDITION_EXPECTING),
    ({"must": [{"has_id": ["not-an-id"]}]}, CONDITION_EXPECTING),
    ({"must": [{"has_id": [-1]}]}, CONDITION_EXPECTING),
    ({"must": [{"has_id": [1.0]}]}, CONDITION_EXPECTING),
    ({"must": [{"has_id": ["{550E8400E29B41D4A716446655440000}"]}]}, CONDITION_EXPECTING),
    ({"must": [{"has_id": 1}]}, CONDITION_EXPECTING),
    ({"must": [{"is_empty": {"key": "a..b"}}]}, CONDITION_EXPECTING),
    ({"must": [{"slice": {"total": 0, "index": 0}}]}, CONDITION_EXPECTING),
    ({"must": [{"must": [], "nope": 1}]}, CONDITION_EXPECTING),
    # Inside a sub-filter or a nested filter, a precise error turns into the generic one.
    ({"must": [{"must": [{"key": "a", "match": {"value": []}}]}]}, CONDITION_EXPECTING),
    (
        {"must": [{"nested": {"key": "a", "filter": {"must": {"key": 1}}}}]},
        CONDITION_EXPECTING,
    ),
    ({"must": [{"key": 5, "match": {"value": 1}}]}, "Filter condition 'key' must be a string"),
    ({"must": [{"key": None}]}, "Filter condition 'key' must be a string"),
    ({"must": [{"key": "a b", "match": {"value": 1}}]}, "Invalid json path: 'a b'"),
    ({"must": [{"key": "", "is_empty": True}]}, "Invalid json path: ''"),
]

MATCH_MISMATCH = "data did not match any variant of untagged enum MatchInterface"
RANGE_MISMATCH = "data did not match any variant of untagged enum RangeInterfaceUntagged"
FIELD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"match": {"value": 1.5}}, MATCH_MISMATCH),
    ({"match": {"value": None}}, MATCH_MISMATCH),
    ({"match": {"value": 2**63}}, MATCH_MISMATCH),  # outside i64
    ({"match": {"any": ["a", 1]}}, MATCH_MISMATCH),
    ({"match": {"any": [True]}}, MATCH_MISMATCH),
    ({"match": {"except": "a"}}, MATCH_MISMATCH),
    ({"match": {"values": 1}}, MATCH_MISMATCH),
    ({"match": "red"}, MATCH_MISMATCH),
    ({"range": {"gt": True}}, RANGE_MISMATCH),
    ({"range": [1, 2]}, RANGE_MISMATCH),
    (
        {"range": {"gt": "yesterday"}},
        (
            "'yesterday' does not match accepted datetime format (RFC3339). "
            "Example: 2014-01-01T00:00:00Z"
        ),
    ),
    ({"range": {"gt": "2024-01-01", "lt": 5}}, "invalid type: integer `5`, expected a string"),
    ({"values_count": {"gt": -1}}, "Invalid value integer `-1`. Expected usize"),
    ({"values_count": {"gt": 1.5}}, "Invalid type floating point `1.5`. Expected usize"),
    ({"values_count": {"gt": 2.0}}, "Invalid type floating point `2.0`. Expected usize"),
    ({"values_count": 3}, "Invalid type integer `3`. Expected struct ValuesCount"),
    ({"is_empty": "yes"}, 'Invalid type string "yes". Expected a boolean'),
    ({"is_null": 1}, "Invalid type integer `1`. Expected a boolean"),
    (
        {"geo_radius": {"center": {"lon": 0, "lat": 100}, "radius": 5}},
        (
            "Wrong format of GeoPoint payload: expected `lat` = 100 within [-90;90] "
            "and `lon` = 0 within [-180;180]"
        ),
    ),
    (
        {"geo_radius": {"center": {"lon": -180.5, "lat": 1.5}, "radius": 5}},
        (
            "Wrong format of GeoPoint payload: expected `lat` = 1.5 within [-90;90] "
            "and `lon` = -180.5 within [-180;180]"
        ),
    ),
    ({"geo_radius": {"center": {"lon": 0}, "radius": 5}}, "Missing field lat"),
    ({"geo_radius": {"center": {"lon": 0, "lat": 0}}}, "Missing field radius"),
    (
        {"geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": "5"}},
        'Invalid type string "5". Expected f64',
    ),
    (
        {"geo_radius": {"center": None, "radius": 5}},
        "Invalid type unit value. Expected struct GeoPointShadow",
    ),
    ({"geo_bounding_box": {"top_left": {"lon": 0, "lat": 0}}}, "Missing field bottom_right"),
    # serde_value visits fields sorted: bottom_right's error comes before top_left's.
    (
        {"geo_bounding_box": {"top_left": {"lon": "x"}, "bottom_right": {"lat": "y"}}},
        'Invalid type string "y". Expected f64',
    ),
    (
        {"geo_polygon": {"exterior": {"points": [{"lon": 0, "lat": 0}] * 3}}},
        "Validation failed: polygon invalid, the size must be at least 4, got 3",
    ),
    (
        {
            "geo_polygon": {
                "exterior": {
                    "points": [
                        {"lon": 0, "lat": 0},
                        {"lon": 1, "lat": 0},
                        {"lon": 1, "lat": 1},
                        {"lon": 0, "lat": 1},
                    ]
                }
            }
        },
        (
            "Validation failed: polygon invalid, the first and the last points should be the same "
            "to form a closed line"
        ),
    ),
    ({"geo_polygon": {"exterior": {"points": {}}}}, "Invalid type map. Expected a sequence"),
    ({"geo_polygon": {"interiors": []}}, "Missing field exterior"),
    # Sorted again: `match` is read before `range`, `is_empty` before `key`.
    ({"range": {"gt": True}, "match": {"value": None}}, MATCH_MISMATCH),
    ({"is_empty": 1, "match": {"value": 1}}, "Invalid type integer `1`. Expected a boolean"),
]


@pytest.mark.parametrize(("data", "text"), FORMAT_CASES)
def test_bad_filters_are_format_errors(data: Any, text: str) -> None:
    assert answer(data) == (400, FORMAT + text)


@pytest.mark.parametrize(("checks", "text"), FIELD_CASES)
def test_bad_field_conditions_are_format_errors_worded_by_serde_value(
    checks: dict[str, Any], text: str
) -> None:
    assert answer(must({"key": "x", **checks})) == (400, FORMAT + text)


def test_a_bad_key_path_is_reported_in_sorted_field_order() -> None:
    assert answer(must({"key": "a b", "match": {"value": 1.5}})) == (
        400,
        FORMAT + "Invalid json path: 'a b'",
    )
    assert answer(must({"key": "a b", "is_null": "x"})) == (
        400,
        FORMAT + 'Invalid type string "x". Expected a boolean',
    )


@pytest.mark.parametrize(
    ("min_should", "text"),
    [
        ([], "invalid type: sequence, expected struct MinShould"),
        ({"min_count": 1}, "missing field `conditions`"),
        ({"conditions": []}, "missing field `min_count`"),
        ({"conditions": {}, "min_count": 1}, "invalid type: map, expected a sequence"),
        ({"conditions": [], "min_count": -1}, "invalid value: integer `-1`, expected usize"),
        ({"conditions": [], "min_count": "1"}, 'invalid type: string "1", expected usize'),
    ],
)
def test_bad_min_should(min_should: Any, text: str) -> None:
    assert answer({"min_should": min_should}) == (400, FORMAT + text)


def test_a_too_deep_filter_is_refused_before_parsing() -> None:
    deep: dict[str, Any] = {}
    for _ in range(FILTER_JSON_DEPTH_MAX):
        deep = {"must": [deep]}
    assert answer(deep) == (400, FORMAT + "recursion limit exceeded")
    shallow: dict[str, Any] = {}
    for _ in range(FILTER_JSON_DEPTH_MAX // 2 - 1):
        shallow = {"must": [shallow]}
    assert parse_filter(shallow) is not None


# --- 422: validation errors -------------------------------------------------------------------

NO_CHECK = "At least one field condition must be specified"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (must({"key": "a"}), f"filter.must[0].__all__: {NO_CHECK}"),
        (must({"key": "a", "matc": {"value": 1}}), f"filter.must[0].__all__: {NO_CHECK}"),
        (must({"key": "a", "match": None}), f"filter.must[0].__all__: {NO_CHECK}"),
        ({"should": {"key": "a"}}, f"filter.should[0].__all__: {NO_CHECK}"),
        (
            must({"has_id": [1]}, {"must_not": [{"is_null": {"key": "b"}}, {"key": "c"}]}),
            f"filter.must[1].must_not[1].__all__: {NO_CHECK}",
        ),
        (
            must({"nested": {"key": "a", "filter": {"should": [{"key": "b"}]}}}),
            f"filter.must[0].nested.filter.should[0].__all__: {NO_CHECK}",
        ),
        (
            {"min_should": {"conditions": [{"has_id": []}, {"key": "b"}], "min_count": 1}},
            f"filter.min_should.conditions[1].__all__: {NO_CHECK}",
        ),
        (
            {"min_should": {"conditions": [], "min_count": 0}},
            "filter.min_should.min_count: min_count must be greater than 0",
        ),
        (
            must({"slice": {"total": 2, "index": 2}}),
            "filter.must[0].__all__: Slice index must be less than the total number of slices",
        ),
        (
            {"must": {"key": "a"}, "must_not": {"key": "b"}},
            f"filter.must[0].__all__: {NO_CHECK}; filter.must_not[0].__all__: {NO_CHECK}",
        ),
    ],
)
def test_validation_errors_name_the_condition(data: Any, text: str) -> None:
    assert answer(data) == (422, f"{VALIDATION}[{text}]")


def test_validation_paths_start_at_the_given_place_in_the_body() -> None:
    assert answer(must({"key": "a"}), path="internal.filter") == (
        422,
        f"{VALIDATION}[internal.filter.must[0].__all__: {NO_CHECK}]",
    )


def test_a_format_error_wins_over_validation_errors() -> None:
    data = {"must": [{"key": "a"}], "should": [{"bogus": 1}]}
    assert answer(data) == (400, FORMAT + CONDITION_EXPECTING)


def test_a_failed_variant_leaves_no_validation_error_behind() -> None:
    """{"nested": ...} with a bad key fails as nested after its filter was validated."""
    data = must({"nested": {"key": "a b", "filter": {"must": {"key": "c"}}}})
    assert answer(data) == (400, FORMAT + CONDITION_EXPECTING)


def test_collecting_returns_the_filter_and_the_validation_errors() -> None:
    errors: list[tuple[str, str]] = []
    parsed = parse_filter_collecting(must({"key": "a"}), "filter", errors)
    assert parsed == Filter(must=(FieldCondition(key=key_path("a")),))
    assert errors == [("filter.must[0].__all__", NO_CHECK)]


# --- parsed filters are remembered -------------------------------------------------------------


def test_a_filter_parsed_again_is_the_remembered_one_whatever_its_key_order() -> None:
    data = {"must": [{"match": {"value": "x"}, "key": "a"}], "should": {"has_id": [1]}}
    first = parse_filter(data)
    reordered = {"should": {"has_id": [1]}, "must": [{"key": "a", "match": {"value": "x"}}]}
    assert parse_filter(reordered) is first
    assert first == Filter(
        must=(FieldCondition(key=key_path("a"), match=MatchValue(value="x")),),
        should=(HasIdCondition(has_id=frozenset({1})),),
    )


def test_remembered_filters_keep_ints_floats_and_bools_apart() -> None:
    parsed = [parse_filter(must({"key": "a", "match": {"value": value}})) for value in (1, True)]
    parsed += [parse_filter(must({"key": "a", "range": {"gt": value}})) for value in (1, 1.5)]
    assert [p.must[0].match for p in parsed[:2]] == [MatchValue(value=1), MatchValue(value=True)]
    # 1 == True in Python: the types tell whether the second parse was the first's.
    assert type(parsed[0].must[0].match.value) is int  # type: ignore[union-attr]
    assert type(parsed[1].must[0].match.value) is bool  # type: ignore[union-attr]
    assert answer(must({"key": "a", "match": {"value": 1.0}}))[0] == 400  # not an i64
    assert parsed[2].must[0].range != parsed[3].must[0].range


def test_a_filter_with_validation_errors_is_never_remembered() -> None:
    """Its errors name where it sits in the body, so each parse reports them afresh."""
    for path in ("filter", "prefetch.filter", "filter"):
        assert answer(must({"key": "a"}), path=path) == (
            422,
            f"{VALIDATION}[{path}.must[0].__all__: {NO_CHECK}]",
        )


def test_past_the_bound_filters_are_forgotten_and_still_parsed_right() -> None:
    for number in range(PARSED_FILTERS_MAX + 5):
        parsed = parse_filter(must({"key": "n", "match": {"value": number}}))
        assert parsed.must[0].match == MatchValue(value=number)  # type: ignore[union-attr]
    big = must({"has_id": list(range(2_000))})  # longer than a remembered key may be
    assert parse_filter(big) is not parse_filter(big)
