"""engine.filters.conditions, condition by condition, with the edge cases Qdrant 1.19 decides.

Expected results are Qdrant 1.19's, read in its source (see engine/filters/conditions.py); where
qdrant-edge-py 0.9 (newer) answers differently the test says so. Random congruence with the
engines is in test_filter_congruence.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.filters.conditions import (
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
    compile_filter,
    matches,
    referenced_keys,
)
from engine.filters.instants import INSTANT_KEY_SPAN, instant_key
from engine.filters.siphash import point_id_slice_hash

MISSING = object()  # a payload without the key


def path(text: str) -> PayloadPath:
    return PayloadPath.parse(text)


def field(key: str, **checks: Any) -> FieldCondition:
    return FieldCondition(key=path(key), **checks)


def passes(condition: Condition, value: Any) -> bool:
    """Whether a point whose payload is `{"x": value}` passes `must: [condition]`."""
    return passes_payload(condition, {} if value is MISSING else {"x": value})


def passes_payload(
    condition: Condition, payload: dict, point_id: Any = 1, vector_names: tuple = ("",)
) -> bool:
    return matches(Filter(must=(condition,)), point_id, payload, vector_names)


def instant(text: str) -> int:
    key = instant_key(text)
    assert key is not None, text
    return key


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "steps", "canonical"),
    [
        ("a", ("a",), "a"),
        ("a.b.c", ("a", "b", "c"), "a.b.c"),
        ("a[]", ("a", None), "a[]"),
        ("a[].b[0]", ("a", None, "b", 0), "a[].b[0]"),
        ('"a.b".c', ("a.b", "c"), '"a.b".c'),
        ('"plain"', ("plain",), "plain"),
        ("größe-1_x", ("größe-1_x",), "größe-1_x"),
        ('a."x[]"', ("a", "x[]"), 'a."x[]"'),
    ],
)
def test_paths_parse_and_print_canonically(text: str, steps: tuple, canonical: str) -> None:
    parsed = PayloadPath.parse(text)
    assert parsed.steps == steps
    assert str(parsed) == canonical


@pytest.mark.parametrize(
    "text", ["", "a.", ".a", "a..b", "a[", "a[x]", "a b", '"a', '"a\\"b"', "[]"]
)
def test_malformed_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PayloadPath.parse(text)


@pytest.mark.parametrize(
    ("key", "payload", "values"),
    [
        ("a.b", {"a": {"b": 1}}, [1]),
        ("a.b", {"a": [{"b": 1}]}, []),  # a key step never descends into an array
        ("a[].b", {"a": [{"b": 1}, {"c": 2}, {"b": [3]}]}, [1, [3]]),
        ("a[].b[]", {"a": [{"b": [1, 2]}, {"b": 3}]}, [1, 2]),
        ("a[]", {"a": None}, []),
        ("a", {"a": None}, [None]),
        ("a[]", {"a": [None, None]}, [None, None]),
        ("a[1]", {"a": [5, 6]}, [6]),
        ("a[2]", {"a": [5, 6]}, []),
        ("a", {}, []),
    ],
)
def test_a_path_selects_values_like_qdrant(key: str, payload: dict, values: list) -> None:
    assert path(key).values(payload) == values


# --- match ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "payload", "expected"),
    [
        ("red", "red", True),
        ("red", "Red", False),
        ("red", ["blue", "red"], True),
        ("red", [["red"]], False),  # only one level of arrays is flattened
        ("red", None, False),
        ("red", MISSING, False),
        (1, 1, True),
        (1, 1.0, False),  # a float payload is not the integer 1
        (1, True, False),
        (True, 1, False),
        (True, True, True),
        (False, [True, False], True),
        (0, False, False),
        (7, 2**63, False),  # outside i64, Qdrant's `as_i64` fails
        (-3, -3, True),
    ],
)
def test_match_value_is_exact_and_typed(value: Any, payload: Any, expected: bool) -> None:
    assert passes(field("x", match=MatchValue(value)), payload) is expected


def test_match_any_needs_one_listed_value_of_the_same_type() -> None:
    keywords = field("x", match=MatchAny(frozenset({"a", "b"})))
    integers = field("x", match=MatchAny(frozenset({1, 2})))
    assert passes(keywords, "b")
    assert passes(keywords, ["z", "a"])
    assert not passes(keywords, "c")
    assert passes(integers, 2)
    assert not passes(integers, 2.0)
    assert not passes(integers, True)
    assert not passes(integers, "1")
    assert not passes(field("x", match=MatchAny(frozenset())), "a")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("b", True),
        ("a", False),
        (["a", "b"], True),  # one value outside the list is enough
        (["a"], False),
        ([], False),  # no value at all
        (None, False),  # null is absence, not a different value
        (MISSING, False),
        (True, True),
        (1.5, True),
        ([["a"]], True),  # an array inside the array is a value that differs
        ({}, True),
    ],
)
def test_match_except_needs_one_value_outside_the_list(payload: Any, expected: bool) -> None:
    assert passes(field("x", match=MatchExcept(frozenset({"a"}))), payload) is expected


def test_match_except_on_integers_counts_floats_as_different() -> None:
    condition = field("x", match=MatchExcept(frozenset({1})))
    assert passes(condition, 1.0)
    assert passes(condition, "1")
    assert not passes(condition, 1)


def test_text_match_is_a_substring_test_without_a_text_index() -> None:
    """Qdrant 1.19 unindexed: `contains` (qdrant-edge 0.9 tokenizes and lowercases)."""
    assert passes(field("x", match=MatchText("ell")), "hello world")
    assert not passes(field("x", match=MatchText("Hello")), "hello world")
    assert passes(field("x", match=MatchText("")), "anything")
    assert not passes(field("x", match=MatchText("1")), 1)
    assert passes(field("x", match=MatchPhrase("o w")), ["x", "hello world"])
    assert not passes(field("x", match=MatchPhrase("world hello")), "hello world")


def test_text_any_needs_one_whitespace_separated_token_as_substring() -> None:
    assert passes(field("x", match=MatchTextAny("zzz orl")), "hello world")
    assert not passes(field("x", match=MatchTextAny("zzz yyy")), "hello world")
    assert not passes(field("x", match=MatchTextAny("   ")), "hello world")  # no tokens
    # U+001F is not Unicode whitespace (Rust's split_whitespace), so it stays in the token.
    assert not passes(field("x", match=MatchTextAny("ab\x1fzz")), "ab")


def test_prefix_match_is_case_sensitive_and_keyword_only() -> None:
    assert passes(field("x", match=MatchPrefix("re")), "red")
    assert passes(field("x", match=MatchPrefix("")), "")
    assert not passes(field("x", match=MatchPrefix("Re")), "red")
    assert not passes(field("x", match=MatchPrefix("")), 1)


# --- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "payload", "expected"),
    [
        (Range(gte=1.0, lte=2.0), 1, True),
        (Range(gte=1.0, lte=2.0), 2.0, True),
        (Range(gt=1.0, lt=2.0), 1, False),
        (Range(gt=1.0, lt=2.0), 1.5, True),
        (Range(gte=0.0), True, False),  # a bool is not a number
        (Range(gte=0.0), "5", False),
        (Range(gte=0.0), None, False),
        (Range(gte=0.0), MISSING, False),
        (Range(lt=0.0), [5, -1], True),
        (Range(lte=0.0), -0.0, True),
        (Range(), 3, True),  # no bounds: any number
        (Range(), "3", False),
        # Integers are compared as f64: 2**53 + 1 rounds to 2**53.
        (Range(lte=float(2**53)), 2**53 + 1, True),
    ],
)
def test_range_compares_numbers_as_f64(bounds: Range, payload: Any, expected: bool) -> None:
    assert passes(field("x", range=bounds), payload) is expected


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("2024-01-01T10:00:00+00:00", "2024-01-01T10:00:00Z"),
        ("2024-01-01T11:00:00+01:00", "2024-01-01T10:00:00Z"),
        ("2024-01-01T11:00:00+0100", "2024-01-01T10:00:00Z"),
        ("2024-01-01T11:00:00+01", "2024-01-01T10:00:00Z"),
        ("2024-01-01T05:00:00-05:00", "2024-01-01T10:00:00Z"),
        ("2024-01-01t10:00:00z", "2024-01-01T10:00:00Z"),
        ("2024-01-01 10:00:00 UTC", "2024-01-01T10:00:00Z"),
        ("2024-01-01T10:00:00", "2024-01-01T10:00:00Z"),  # naive is UTC
        ("2024-01-01 10:00:00", "2024-01-01T10:00:00Z"),
        ("2024-01-01T10:00", "2024-01-01T10:00:00Z"),
        ("2024-1-1T10:0:0Z", "2024-01-01T10:00:00Z"),
        (" 2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("2024-01-01", "2024-01-01T00:00:00Z"),
        ("2024-01-01T10:00:00.5Z", "2024-01-01T10:00:00.500000000Z"),
        ("2024-01-01T10:00:00.1234567891Z", "2024-01-01T10:00:00.123456789Z"),
    ],
)
def test_datetimes_are_read_as_instants(text: str, same_as: str) -> None:
    assert instant(text) == instant(same_as)


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30",
        "2024-01-01T24:00:00Z",
        "2024-01-01T10:00Z",  # an offset needs seconds
        "2024-01-01Z",
        "2024-01-01T10:00:00.Z",
        "2024-01-01T10:00:00+25:00",
        "yesterday",
        "",
        "2024-01-01T10:00:00Zjunk",
    ],
)
def test_strings_that_are_no_datetime_are_refused(text: str) -> None:
    assert instant_key(text) is None


def test_instant_keys_order_like_chrono_including_leap_seconds() -> None:
    keys = [
        instant("2024-01-01T10:00:59.999999999Z"),
        instant("2024-01-01T10:00:60Z"),
        instant("2024-01-01T10:00:60.5Z"),
        instant("2024-01-01T10:01:00Z"),
    ]
    assert keys == sorted(keys)
    assert len(set(keys)) == 4
    assert instant("1970-01-01T00:00:01Z") == INSTANT_KEY_SPAN


def test_datetime_range_matches_instants_with_and_without_zone() -> None:
    day = field(
        "x",
        range=DatetimeRange(
            gte=instant("2024-01-01T00:00:00Z"), lt=instant("2024-01-02T00:00:00+00:00")
        ),
    )
    assert passes(day, "2024-01-01T12:00:00")
    assert passes(day, "2024-01-01T23:30:00-00:29")
    assert not passes(day, "2024-01-01T23:30:00-01:00")  # 00:30 the next day in UTC
    assert passes(day, "2024-01-01")
    assert not passes(day, "2024-01-02")
    assert passes(day, ["not a date", "2024-01-01T01:00:00Z"])
    assert not passes(day, "not a date")
    assert not passes(day, 20240101)


def test_datetime_range_keeps_nanoseconds() -> None:
    """1.19 compares chrono DateTimes (ns); qdrant-edge 0.9 cuts both sides to microseconds."""
    after = field("x", range=DatetimeRange(gt=instant("2024-01-01T00:00:00.123456788Z")))
    assert passes(after, "2024-01-01T00:00:00.123456789Z")


# --- counts, emptiness, null -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "count"),
    [(MISSING, 0), (None, 0), ("a", 1), ({}, 1), ([], 0), ([1, 2, 3], 3), ([[1, 2]], 1)],
)
def test_values_count_counts_the_selected_value(payload: Any, count: int) -> None:
    assert passes(field("x", values_count=ValuesCount(gte=count, lte=count)), payload)
    assert not passes(field("x", values_count=ValuesCount(gt=count)), payload)


def test_values_count_through_an_array_path_counts_each_element() -> None:
    payload = {"a": [{"b": [1, 2]}, {"b": 3}]}
    assert passes_payload(field("a[].b", values_count=ValuesCount(gte=2)), payload)
    assert not passes_payload(field("a[].b", values_count=ValuesCount(gte=3)), payload)
    assert passes_payload(field("a[].b[]", values_count=ValuesCount(lte=1)), payload)


@pytest.mark.parametrize(
    ("payload", "is_empty", "is_null"),
    [
        (MISSING, True, False),
        (None, True, True),
        ([], True, False),
        ([None], False, False),  # 1.19: an array holding null is neither (edge 0.9: null)
        ([[]], False, False),
        ("", False, False),
        (0, False, False),
        ({}, False, False),
    ],
)
def test_is_empty_and_is_null_conditions(payload: Any, is_empty: bool, is_null: bool) -> None:
    assert passes(IsEmptyCondition(key=path("x")), payload) is is_empty
    assert passes(IsNullCondition(key=path("x")), payload) is is_null


def test_is_empty_needs_every_selected_value_empty_and_is_null_any_null() -> None:
    payload = {"a": [{"b": None}, {"b": 1}, {"c": 2}]}
    assert not passes_payload(IsEmptyCondition(key=path("a[].b")), payload)
    assert passes_payload(IsNullCondition(key=path("a[].b")), payload)
    assert passes_payload(IsEmptyCondition(key=path("a[].c[]")), {"a": [{"c": []}, {"c": None}]})


@pytest.mark.parametrize(
    ("payload", "empty_true", "empty_false", "null_true", "null_false"),
    [
        (MISSING, True, False, False, True),
        (None, True, False, True, False),
        ([], True, False, False, True),
        ([None], False, True, True, False),
        ([1], False, True, False, True),
        ("a", False, True, False, True),
    ],
)
def test_field_forms_of_is_empty_and_is_null(
    payload: Any, empty_true: bool, empty_false: bool, null_true: bool, null_false: bool
) -> None:
    """`{"key", "is_empty": b}` checks each selected value, unlike the `is_empty` condition."""
    assert passes(field("x", is_empty=True), payload) is empty_true
    assert passes(field("x", is_empty=False), payload) is empty_false
    assert passes(field("x", is_null=True), payload) is null_true
    assert passes(field("x", is_null=False), payload) is null_false


def test_field_form_of_is_empty_matches_if_any_selected_value_is_empty() -> None:
    payload = {"a": [{"b": None}, {"b": 1}]}
    assert passes_payload(field("a[].b", is_empty=True), payload)
    assert passes_payload(field("a[].b", is_empty=False), payload)
    assert not passes_payload(IsEmptyCondition(key=path("a[].b")), payload)


def test_several_checks_in_one_field_condition_follow_qdrants_precedence() -> None:
    either = field("x", match=MatchValue("a"), range=Range(gt=5.0))
    assert passes(either, "a")
    assert passes(either, 6)
    assert not passes(either, 5)
    counted = field("x", match=MatchValue("zzz"), values_count=ValuesCount(gte=2))
    assert passes(counted, ["a", "b"])  # values_count alone decides
    assert not passes(field("x", is_null=True, match=MatchValue("a")), "a")


# --- geo ----------------------------------------------------------------------------------------

UNIT_BOX = GeoBoundingBox(top_left=GeoPoint(lon=0.0, lat=1.0), bottom_right=GeoPoint(1.0, 0.0))
SQUARE = (GeoPoint(0, 0), GeoPoint(4, 0), GeoPoint(4, 4), GeoPoint(0, 4), GeoPoint(0, 0))
HOLE = (GeoPoint(1, 1), GeoPoint(3, 1), GeoPoint(3, 3), GeoPoint(1, 3), GeoPoint(1, 1))


def geo(lon: float, lat: float) -> dict[str, float]:
    return {"lon": lon, "lat": lat}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (geo(0.5, 0.5), True),
        (geo(0.0, 0.5), False),  # the edges are outside
        (geo(0.5, 1.0), False),
        (geo(1.5, 0.5), False),
        ([geo(5, 5), geo(0.5, 0.5)], True),
        ({"lon": 0.5}, False),
        ({"lon": "0.5", "lat": 0.5}, False),
        ({"lon": True, "lat": 0.5}, False),
        ({"lon": 1, "lat": 0, "other": 1}, False),
        ("0.5,0.5", False),
    ],
)
def test_geo_bounding_box_is_open(payload: Any, expected: bool) -> None:
    assert passes(field("x", geo_bounding_box=UNIT_BOX), payload) is expected


def test_geo_bounding_box_across_the_antimeridian() -> None:
    box = GeoBoundingBox(top_left=GeoPoint(170.0, 10.0), bottom_right=GeoPoint(-170.0, -10.0))
    assert passes(field("x", geo_bounding_box=box), geo(179.0, 0.0))
    assert passes(field("x", geo_bounding_box=box), geo(-175.0, 0.0))
    assert not passes(field("x", geo_bounding_box=box), geo(0.0, 0.0))


def test_geo_radius_uses_haversine_on_the_mean_earth_radius() -> None:
    berlin = GeoPoint(lon=13.404954, lat=52.520008)
    potsdam = geo(13.064473, 52.390569)  # 27.19 km away
    assert passes(field("x", geo_radius=GeoRadius(center=berlin, radius_m=27_200.0)), potsdam)
    assert not passes(field("x", geo_radius=GeoRadius(center=berlin, radius_m=27_100.0)), potsdam)
    assert not passes(
        field("x", geo_radius=GeoRadius(center=berlin, radius_m=0.0)), geo(13.404954, 52.520008)
    )


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (geo(0.5, 0.5), True),
        (geo(2, 2), False),  # in the hole
        (geo(1, 2), False),  # on the hole's edge
        (geo(0, 2), False),  # on the exterior's edge
        (geo(4, 4), False),  # a vertex
        (geo(3.5, 3.9), True),
        (geo(5, 2), False),
    ],
)
def test_geo_polygon_is_strictly_inside_and_outside_its_holes(point: Any, expected: bool) -> None:
    polygon = GeoPolygon(exterior=SQUARE, interiors=(HOLE,))
    assert passes(field("x", geo_polygon=polygon), point) is expected


def test_geo_polygon_closes_a_ring_that_is_open_by_less_than_epsilon() -> None:
    almost_closed = (*SQUARE[:-1], GeoPoint(0, 1e-17))
    assert passes(field("x", geo_polygon=GeoPolygon(exterior=almost_closed)), geo(2, 2))


def test_geo_polygon_decides_points_near_an_edge_exactly() -> None:
    triangle = (GeoPoint(0, 0), GeoPoint(0.3, 0.1), GeoPoint(0, 0.2), GeoPoint(0, 0))
    on_edge = geo(0.15, 0.05)  # 0.15 / 0.3 == 0.05 / 0.1 in floats: the edge
    assert not passes(field("x", geo_polygon=GeoPolygon(exterior=triangle)), on_edge)
    assert passes(field("x", geo_polygon=GeoPolygon(exterior=triangle)), geo(0.15, 0.0500001))


# --- ids, vectors, slices -------------------------------------------------------------------------


def test_has_id_knows_integers_and_uuids_apart() -> None:
    some_uuid = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
    condition = HasIdCondition(has_id=frozenset({1, some_uuid}))
    assert passes_payload(condition, {}, point_id=1)
    assert passes_payload(condition, {}, point_id=uuid.UUID("550E8400E29B41D4A716446655440000"))
    assert not passes_payload(condition, {}, point_id=uuid.UUID(int=1))
    assert not passes_payload(condition, {}, point_id=2)
    assert not passes_payload(HasIdCondition(has_id=frozenset()), {}, point_id=1)


def test_has_vector_looks_at_the_points_vector_names() -> None:
    assert passes_payload(HasVectorCondition("image"), {}, vector_names=("text", "image"))
    assert not passes_payload(HasVectorCondition("image"), {}, vector_names=("text",))
    assert passes_payload(HasVectorCondition(""), {}, vector_names=("",))


def test_slices_partition_the_ids() -> None:
    ids = [*range(50), *(uuid.UUID(int=i * 7919) for i in range(50))]
    for total in (1, 2, 3, 7):
        owners = [
            [
                index
                for index in range(total)
                if passes_payload(SliceCondition(total, index), {}, point_id=i)
            ]
            for i in ids
        ]
        assert all(len(slice_indexes) == 1 for slice_indexes in owners), total


def test_slice_hash_is_siphash_2_4_of_the_id_bytes() -> None:
    """Known values of SipHash-2-4 with a zero key (checked against qdrant-client's and Qdrant's)."""
    assert point_id_slice_hash(1) == 9224715256000962398
    assert point_id_slice_hash(uuid.UUID(int=5)) == 851554771135233611


# --- nested and boolean structure -----------------------------------------------------------------

ORDERS = {
    "orders": [
        {"item": "apple", "count": 1},
        {"item": "pear", "count": 5},
        "not an object",
    ]
}


def test_nested_requires_one_element_to_match_the_whole_filter() -> None:
    both = Filter(
        must=(field("item", match=MatchValue("apple")), field("count", range=Range(gte=5.0)))
    )
    flat = Filter(
        must=(
            field("orders[].item", match=MatchValue("apple")),
            field("orders[].count", range=Range(gte=5.0)),
        )
    )
    assert not passes_payload(NestedCondition(key=path("orders"), filter=both), ORDERS)
    assert passes_payload(
        NestedCondition(
            key=path("orders[]"), filter=Filter(must=(field("count", range=Range(gte=5.0)),))
        ),
        ORDERS,
    )
    assert matches(flat, 1, ORDERS, ())


def test_nested_on_an_object_or_missing_key_matches_nothing() -> None:
    anything = NestedCondition(key=path("x"), filter=Filter())
    assert passes(anything, [{}])
    assert not passes(anything, {"a": 1})  # an object, not an array of them
    assert not passes(anything, [1, "a"])
    assert not passes(anything, MISSING)


def test_inside_nested_ids_vectors_slices_and_empty_should_never_match() -> None:
    """Qdrant evaluates nested objects with `check_filter`, without id tracker or vectors."""
    payload = [{"a": 1}]
    for inner in (
        HasIdCondition(has_id=frozenset({1})),
        HasVectorCondition(""),
        SliceCondition(total=1, index=0),
    ):
        assert not passes(NestedCondition(key=path("x"), filter=Filter(must=(inner,))), payload)
    empty_should = Filter(should=())
    assert not passes(NestedCondition(key=path("x"), filter=empty_should), payload)
    assert passes(NestedCondition(key=path("x"), filter=Filter(should=None)), payload)
    assert matches(empty_should, 1, {}, ())  # at the top an empty should is no constraint
    assert passes(empty_should, payload)  # and so in a sub-filter


def test_nested_inside_nested() -> None:
    payload = {"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": [{"c": 3}]}]}
    inner = NestedCondition(key=path("b"), filter=Filter(must=(field("c", match=MatchValue(3)),)))
    assert passes_payload(NestedCondition(key=path("a"), filter=Filter(must=(inner,))), payload)


def test_must_should_must_not_and_min_should() -> None:
    red, big, round_ = (
        field("color", match=MatchValue("red")),
        field("size", range=Range(gt=10.0)),
        field("shape", match=MatchValue("round")),
    )
    payload = {"color": "red", "size": 3, "shape": "round"}
    assert matches(Filter(must=(red, round_)), 1, payload, ())
    assert not matches(Filter(must=(red, big)), 1, payload, ())
    assert matches(Filter(should=(big, red)), 1, payload, ())
    assert not matches(Filter(should=(big,)), 1, payload, ())
    assert not matches(Filter(must_not=(big, red)), 1, payload, ())
    assert matches(Filter(min_should=MinShould((red, big, round_), 2)), 1, payload, ())
    assert not matches(Filter(min_should=MinShould((red, big, round_), 3)), 1, payload, ())
    assert not matches(Filter(min_should=MinShould((), 1)), 1, payload, ())
    assert matches(Filter(), 1, payload, ())
    assert matches(Filter(must=(Filter(should=(big, round_)),)), 1, payload, ())


def test_a_missing_payload_is_an_empty_one() -> None:
    condition = Filter(
        must=(IsEmptyCondition(key=path("a")),), must_not=(field("a", match=MatchValue(1)),)
    )
    assert matches(condition, 1, None, ())
    assert compile_filter(condition)(1, {}, ())


def test_compiled_and_cached_forms_agree() -> None:
    condition = Filter(should=(field("a", match=MatchValue(1)), HasIdCondition(frozenset({7}))))
    checker = compile_filter(condition)
    for point_id, payload in [(1, {"a": 1}), (7, {}), (2, {"a": [2]}), (3, {})]:
        assert checker(point_id, payload, ()) == matches(condition, point_id, payload, ())
    assert condition == Filter(should=condition.should)  # the cache is not part of the value


def test_referenced_keys_lists_every_payload_key_read() -> None:
    condition = Filter(
        must=(field("a.b", match=MatchValue(1)), HasIdCondition(frozenset({1}))),
        should=(IsNullCondition(key=path('"x.y"')),),
        must_not=(
            NestedCondition(
                key=path("items"),
                filter=Filter(
                    must=(field("price", range=Range(gt=1.0)), IsEmptyCondition(path("tags[]")))
                ),
            ),
        ),
        min_should=MinShould((Filter(must=(field("c", values_count=ValuesCount(gt=1)),)),), 1),
    )
    assert referenced_keys(condition) == {
        "a.b",
        '"x.y"',
        "items[]",
        "items[].price",
        "items[].tags[]",
        "c",
    }
