"""Congruence of engine.filters.conditions with Qdrant's two executable references.

Goal: `matches()` selects exactly the points Qdrant selects, for random payloads and random
filters of every kind. Method: seeded random points (nested objects, arrays, nulls, ints,
floats, bools, keywords, datetimes, geo points; int and UUID ids; two named vectors, some
points without the second) go into both references; each random filter (JSON, as a client
sends it) is parsed by server.wire.filters and evaluated by `matches()` on every point, and the
ids must equal what the reference returns for the same filter.

References:
- qdrant-edge-py: Qdrant's own Rust engine in process, the truth where the two disagree.
- qdrant-client's local mode (`QdrantClient(":memory:")`), Qdrant's Python reading.
Neither builds payload indexes here, and neither needs one for any condition: without an
index Qdrant checks values_count, datetime ranges and text matches against the payload.

Excluded on purpose, because both references are newer than the Qdrant 1.19 Keel follows
(qdrant-edge-py 0.9 and qdrant-client 1.20 carry post-1.19 changes; 1.19's source is
`lib/segment/src/payload_storage/condition_checker.rs`, `lib/segment/src/common/utils.rs`):
- `text`, `phrase`, `text_any` matches: 1.19 tests substrings on an unindexed field, the
  references tokenize (qdrant#10341). Covered by tests/unit/test_filters.py.
- the `is_null` condition on an array holding null: 1.19 says `[null]` is not null, the
  references say it is (qdrant#10101). Only the key `nulls` holds such arrays, and the
  generator never asks `{"is_null": {"key": "nulls"}}`; test_filters.py covers it.
- datetimes finer than a microsecond: 1.19 compares nanoseconds, qdrant-edge-py 0.9
  microseconds. The datetimes here have at most one decimal.
And filters matching a boolean value are not sent to qdrant-edge-py: its Python binding
turns `MatchValue(True)` into the integer 1 (local mode compares them).

The payloads and filters made here also drive filtered multivector (MaxSim) queries against
qdrant-edge-py: tests/unit/test_multivector_congruence.py, and over HTTP
tests/client/test_multivector_congruence_http.py.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Both oracles are in the test extra: a missing one is an error, never a silent skip.
import qdrant_client
import qdrant_edge

from engine.filters.conditions import matches
from server.wire.filters import parse_filter

models = qdrant_client.models

SEED = 20_260_511
POINT_COUNT = 160
FILTER_COUNT = 400
COLLECTION = "congruence"
VECTOR_NAMES = ("a", "b")

KEYWORDS = ["red", "green", "blue", "Red", "", "red green"]
INTS = [-3, 0, 1, 2, 7, 2**53 + 1]
FLOATS = [-1.5, 0.0, 0.5, 1.0, 2.0, 7.25]
DATETIMES = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T12:30:00+02:00",
    "2024-01-02T00:00:00.5Z",
    "2024-01-02 08:00:00",
    "2024-01-03",
    "2024-01-03T23:59:59-05:00",
    "2024-01-05T10:00:00Z",
]
DATETIME_BOUNDS = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T10:30:00Z",
    "2024-01-02T00:00:00Z",
    "2024-01-02T08:00:00+00:00",
    "2024-01-03T00:00:00Z",
    "2024-01-04T05:00:00+01:00",
]
GEO_CENTERS = [(13.40, 52.52), (2.35, 48.86), (-179.9, 0.5), (179.9, -0.5)]
TOP_KEYS = ["k", "n", "b", "d", "g", "arr", "arr[]", "nul", "nulls", "nulls[]", "missing"]
DEEP_KEYS = ["obj.k", "obj.n", "obj.arr", "obj.arr[]", "objs[].k", "objs[].n", "objs[0].k"]
DEEP_KEYS += ["objs.k", "objs[].tags", "objs[].tags[]", "objs[].g", "obj.g"]
NESTED_KEYS = ["k", "n", "tags", "tags[]", "deep.x", "g"]


@pytest.fixture(scope="module")
def points() -> list[tuple[Any, dict[str, Any] | None, tuple[str, ...]]]:
    rng = random.Random(SEED)
    result = []
    for index in range(POINT_COUNT):
        point_id: Any = index if index % 4 else uuid.UUID(int=rng.getrandbits(128))
        names = VECTOR_NAMES if rng.random() < 0.7 else VECTOR_NAMES[:1]
        result.append((point_id, random_payload(rng), names))
    return result


@pytest.fixture(scope="module")
def filters() -> list[dict[str, Any]]:
    rng = random.Random(SEED + 1)
    return [random_filter(rng, Scope(depth=0)) for _ in range(FILTER_COUNT)]


@pytest.fixture(scope="module")
def local_mode_filters() -> list[dict[str, Any]]:
    rng = random.Random(SEED + 2)
    return [random_filter(rng, Scope(depth=0, is_local_mode=True)) for _ in range(FILTER_COUNT)]


@pytest.fixture(scope="module")
def local_client(points: list) -> Iterator[Any]:
    client = qdrant_client.QdrantClient(":memory:")
    params = {
        name: models.VectorParams(size=1, distance=models.Distance.DOT) for name in VECTOR_NAMES
    }
    client.create_collection(COLLECTION, vectors_config=params)
    structs = [
        models.PointStruct(
            id=str(point_id) if isinstance(point_id, uuid.UUID) else point_id,
            vector={name: [1.0] for name in names},
            payload=payload,
        )
        for point_id, payload, names in points
    ]
    client.upsert(COLLECTION, structs, wait=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def edge_shard(points: list, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    vectors = {
        name: qdrant_edge.EdgeVectorParams(size=1, distance=qdrant_edge.Distance.Dot)
        for name in VECTOR_NAMES
    }
    path = Path(tmp_path_factory.mktemp("edge")) / "shard"
    shard = qdrant_edge.EdgeShard.create(str(path), qdrant_edge.EdgeConfig(vectors=vectors))
    edge_points = [
        qdrant_edge.Point(point_id, {name: [1.0] for name in names}, payload)
        for point_id, payload, names in points
    ]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(edge_points))
    yield shard
    shard.close()


def test_matches_agrees_with_qdrant_edge(points: list, filters: list, edge_shard: Any) -> None:
    """Qdrant's engine and Keel select the same ids for every random filter it can express."""
    mismatches = []
    compared_count = 0
    for data in filters:
        try:
            edge_filter = to_edge_filter(data)
        except InexpressibleInEdge:
            continue
        records, _ = edge_shard.scroll(qdrant_edge.ScrollRequest(limit=10_000, filter=edge_filter))
        expected = {normalize_id(record.id) for record in records}
        mismatches.extend(compare(data, points, expected))
        compared_count += 1
    assert not mismatches, describe(mismatches)
    assert compared_count > FILTER_COUNT * 3 // 4, compared_count


def geo_line(points: list[tuple[float, float]]) -> dict[str, Any]:
    return {"points": [{"lon": lon, "lat": lat} for lon, lat in points]}


# Hand-picked values at the edges of each rule (the random ones rarely land there).
EDGE_CASE_PAYLOADS: list[dict[str, Any]] = [
    {"n": 2**63},
    {"n": -0.0},
    {"n": 2**53 + 1},
    {"n": 1.0},
    {"n": True},
    {"n": 1},
    {"g": {"lon": 0.0, "lat": 0.0}},
    {"g": {"lon": 1.0, "lat": 0.5}},
    {"g": {"lon": 0.5, "lat": 0.5}},
    {"g": {"lon": 1.0, "lat": 1.0}},
    {"g": {"lon": 0.5, "lat": 0.0}},
    {"g": {"lon": 0.15, "lat": 0.05}},
    {"d": "2024-01-01T10:00"},
    {"d": "2024-01-01T10:00:00+0100"},
    {"d": "2024-01-01T10:00:00+01"},
    {"d": "2024-01-01t10:00:00z"},
    {"d": "2024-01-01 10:00:00 UTC"},
    {"d": " 2024-01-01T10:00:00Z"},
    {"d": "2024-1-1T1:2:3Z"},
    {"d": "2024-01-01T10:00:00.Z"},
    {"d": "2024-01-01T10:00:00 +01:00"},
    {"d": "2024-01-01T24:00:00Z"},
    {"d": "2024-01-01T10:00:60Z"},
    {"d": "2024-01-01T10:00:59.5Z"},
    {"x": [[1, 2], [3]]},
    {"x": []},
    {"x": None},
    {"x": {}},
    {"x": [{}]},
    {"x": "a"},
    {"a.b": 1},
    {"a": {"b": 1}},
    {"arr": [5, 6, 7]},
]
EDGE_CASE_FILTERS: list[dict[str, Any]] = [
    {"must": {"key": "n", "range": {"gte": 9.223372036854776e18}}},
    {"must": {"key": "n", "range": {"gte": 0, "lte": 0}}},
    {"must": {"key": "n", "range": {"lte": 9007199254740992}}},
    {"must": {"key": "n", "match": {"value": 1}}},
    {"must": {"key": "n", "match": {"except": [1]}}},
    {"must": {"key": "n", "match": {"any": [1]}}},
    {
        "must": {
            "key": "g",
            "geo_bounding_box": {
                "top_left": {"lon": 0, "lat": 1},
                "bottom_right": {"lon": 1, "lat": 0},
            },
        }
    },
    {
        "must": {
            "key": "g",
            "geo_polygon": {"exterior": geo_line([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)])},
        }
    },
    {"must": {"key": "g", "geo_polygon": {"exterior": geo_line([(0, 0), (2, 0), (0, 2), (0, 0)])}}},
    {
        "must": {
            "key": "g",
            "geo_polygon": {"exterior": geo_line([(0, 0), (0.3, 0.1), (0, 0.2), (0, 0)])},
        }
    },
    {"must": {"key": "g", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 55597.5}}},
    {"must": {"key": "g", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 55660}}},
    {"must": {"key": "d", "range": {"gte": "2024-01-01T09:00:00Z", "lte": "2024-01-01T10:00:00Z"}}},
    {"must": {"key": "d", "range": {"gte": "2000-01-01T00:00:00Z"}}},
    {"must": {"key": "d", "range": {"lt": "2024-01-01T10:01:00Z", "gt": "2024-01-01T10:00:59.9Z"}}},
    {"must": {"key": "x", "values_count": {"gte": 1}}},
    {"must": {"key": "x", "values_count": {"lt": 1}}},
    {"must": {"key": "x[]", "values_count": {"gt": 1}}},
    {"must": {"key": "x", "match": {"except": [1]}}},
    {"must": {"key": "x", "match": {"except": ["a"]}}},
    {"must": {"is_empty": {"key": "x"}}},
    {"must": {"is_null": {"key": "x"}}},
    {"must": {"key": "x", "is_empty": False}},
    {"must": {"key": "x", "is_null": False}},
    {"must": {"key": "x[]", "is_null": True}},
    {"must": {"key": '"a.b"', "match": {"value": 1}}},
    {"must": {"key": "a.b", "match": {"value": 1}}},
    {"must": {"key": "arr[1]", "match": {"value": 6}}},
    {"must": {"key": "arr[5]", "values_count": {"lt": 1}}},
    {"must": {"nested": {"key": "x", "filter": {}}}},
    {"must": {"nested": {"key": "x", "filter": {"must_not": {"is_empty": {"key": "zz"}}}}}},
    {"must": {"has_vector": ""}},
]


def test_edge_cases_agree_with_qdrant_edge(tmp_path: Path) -> None:
    """Boundaries, number types, datetime spellings, paths: the engine and Keel agree."""
    vectors = {"": qdrant_edge.EdgeVectorParams(size=1, distance=qdrant_edge.Distance.Dot)}
    shard = qdrant_edge.EdgeShard.create(str(tmp_path), qdrant_edge.EdgeConfig(vectors=vectors))
    points = [(i, payload, ("",)) for i, payload in enumerate(EDGE_CASE_PAYLOADS)]
    shard.update(
        qdrant_edge.UpdateOperation.upsert_points(
            [qdrant_edge.Point(i, [1.0], payload) for i, payload, _ in points]
        )
    )
    mismatches = []
    for data in EDGE_CASE_FILTERS:
        request = qdrant_edge.ScrollRequest(limit=10_000, filter=to_edge_filter(data))
        expected = {record.id for record in shard.scroll(request)[0]}
        mismatches.extend(compare(data, points, expected))
    shard.close()
    assert not mismatches, describe(mismatches)


def test_matches_agrees_with_qdrant_client_local_mode(
    points: list, local_mode_filters: list, local_client: Any
) -> None:
    """qdrant-client's local mode and Keel agree, where local mode agrees with Qdrant.

    Left out (local mode differs from qdrant-edge-py there, and Keel follows the engine):
    several checks in one field condition (Qdrant: values_count, else is_empty, else is_null,
    else any of match/range/geo; local mode: the first one set), `{"key", "is_empty"}` /
    `{"key", "is_null"}` (Qdrant: any selected value; local mode: all of them), and an empty
    `should` inside `nested` (Qdrant: matches nothing; local mode: no constraint).
    """
    mismatches = []
    for data in local_mode_filters:
        records, _ = local_client.scroll(
            COLLECTION, scroll_filter=models.Filter.model_validate(data), limit=10_000
        )
        expected = {normalize_id(record.id) for record in records}
        mismatches.extend(compare(data, points, expected))
    assert not mismatches, describe(mismatches)


def test_the_random_filters_select_neither_nothing_nor_everything(
    points: list, filters: list
) -> None:
    """Guards the generators: most filters must split the points, or congruence is vacuous."""
    splitting_count = 0
    for data in filters:
        parsed = parse_filter(data)
        assert parsed is not None
        selected = sum(matches(parsed, i, p, names) for i, p, names in points)
        splitting_count += 0 < selected < len(points)
    assert splitting_count > FILTER_COUNT * 3 // 10, splitting_count


# --- comparing -----------------------------------------------------------------------------


def compare(data: dict[str, Any], points: list, expected: set[Any]) -> list[tuple]:
    parsed = parse_filter(data)
    assert parsed is not None
    actual = {
        point_id for point_id, payload, names in points if matches(parsed, point_id, payload, names)
    }
    if actual == expected:
        return []
    by_id = {point_id: payload for point_id, payload, _ in points}
    only_keel = [(i, by_id[i]) for i in actual - expected][:3]
    only_reference = [(i, by_id[i]) for i in expected - actual][:3]
    return [(data, only_keel, only_reference)]


def describe(mismatches: list[tuple]) -> str:
    lines = [f"{len(mismatches)} filters disagree; first ones:"]
    for data, only_keel, only_reference in mismatches[:5]:
        lines.append(f"filter {data}\n  only Keel: {only_keel}\n  only reference: {only_reference}")
    return "\n".join(lines)


def normalize_id(point_id: Any) -> Any:
    return uuid.UUID(str(point_id)) if isinstance(point_id, str | uuid.UUID) else point_id


# --- random payloads -----------------------------------------------------------------------


def random_payload(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.04:
        return None
    makers = {
        "k": random_keyword_value,
        "n": random_number_value,
        "b": lambda r: r.choice([True, False, [True, False], [False], 1, None]),
        "d": lambda r: r.choice([*DATETIMES, DATETIMES[:3], "not a date", 20240101, None]),
        "g": random_geo_value,
        "arr": random_array,
        "nul": lambda r: r.choice([None, [], [[]], 0, "", {}]),
        "nulls": lambda r: r.choice([[None], [None, 1], [1, None, "red"], [[None]], [1], None]),
        "obj": random_object,
        "objs": lambda r: r.choice(
            [[random_object(r) for _ in range(r.randint(0, 3))]] * 3 + [random_object(r)]
        ),
    }
    return {key: make(rng) for key, make in makers.items() if rng.random() < 0.75}


def random_keyword_value(rng: random.Random) -> Any:
    return rng.choice([*KEYWORDS, rng.sample(KEYWORDS, 2), [], None, 1, ["red", 1]])


def random_number_value(rng: random.Random) -> Any:
    choices = [*INTS, *FLOATS, rng.sample(INTS + FLOATS, 3), True, "1", None, [[1, 2]]]
    return rng.choice(choices)


def random_geo_point(rng: random.Random) -> dict[str, float]:
    lon, lat = rng.choice(GEO_CENTERS)
    return {
        "lon": round(lon + rng.uniform(-0.3, 0.3), 5),
        "lat": round(lat + rng.uniform(-0.3, 0.3), 5),
    }


def random_geo_value(rng: random.Random) -> Any:
    point = random_geo_point(rng)
    choices = [point, point, [point, random_geo_point(rng)], {"lon": point["lon"]}, "x", None]
    return rng.choice(choices)


def random_array(rng: random.Random) -> list[Any]:
    pool = [*KEYWORDS[:3], *INTS[:4], *FLOATS[:3], True, [1, 2], {"k": "red"}]
    return rng.sample(pool, rng.randint(0, 4))


def random_object(rng: random.Random) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if rng.random() < 0.8:
        obj["k"] = rng.choice([*KEYWORDS, ["red", "blue"], None])
    if rng.random() < 0.8:
        obj["n"] = rng.choice([*INTS, *FLOATS, None])
    if rng.random() < 0.6:
        obj["tags"] = rng.sample(KEYWORDS, rng.randint(0, 3))
    if rng.random() < 0.3:
        obj["deep"] = {"x": rng.choice(INTS)}
    if rng.random() < 0.3:
        obj["g"] = random_geo_point(rng)
    if rng.random() < 0.5:
        obj["arr"] = random_array(rng)
    return obj


# --- random filters (JSON, as a client sends them) -----------------------------------------


@dataclass(frozen=True)
class Scope:
    depth: int
    is_nested: bool = False  # inside a nested condition: keys are relative to its objects
    is_local_mode: bool = False  # leave out what local mode reads differently from Qdrant

    def deeper(self, *, is_nested: bool | None = None) -> Scope:
        nested = self.is_nested if is_nested is None else is_nested
        return Scope(self.depth + 1, nested, self.is_local_mode)


def random_filter(rng: random.Random, scope: Scope) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for clause in ("must", "should", "must_not"):
        if rng.random() < 0.45:
            # Local mode reads an empty `should` as no constraint inside `nested` too.
            is_empty_allowed = clause != "should" or not (scope.is_nested and scope.is_local_mode)
            count = rng.randint(0 if is_empty_allowed else 1, 3)
            conditions = [random_condition(rng, scope) for _ in range(count)]
            is_single = len(conditions) == 1 and rng.random() < 0.3
            data[clause] = conditions[0] if is_single else conditions
    if rng.random() < 0.2:
        conditions = [random_condition(rng, scope) for _ in range(rng.randint(1, 4))]
        data["min_should"] = {
            "conditions": conditions,
            "min_count": rng.randint(1, len(conditions)),
        }
    if not data:
        data["must"] = [random_condition(rng, scope)]
    return data


def random_condition(rng: random.Random, scope: Scope) -> dict[str, Any]:
    kinds: list[Callable[[random.Random, Scope], dict[str, Any]]] = [
        random_match,
        random_match,
        random_range,
        random_datetime_range,
        random_values_count,
        random_geo,
        random_emptiness,
        random_emptiness,
        random_has_id,
        random_has_vector,
        random_slice,
    ]
    if not scope.is_local_mode:
        kinds.append(random_multi_check)
    if scope.depth < 2:
        kinds += [random_subfilter, random_nested]
    return rng.choice(kinds)(rng, scope)


def random_key(rng: random.Random, scope: Scope) -> str:
    return rng.choice(NESTED_KEYS if scope.is_nested else TOP_KEYS + DEEP_KEYS)


def random_match(rng: random.Random, scope: Scope) -> dict[str, Any]:
    kind = rng.choice(["value", "value", "any", "except", "prefix"])
    if kind == "value":
        match: dict[str, Any] = {"value": rng.choice([*KEYWORDS, *INTS, True, False])}
    elif kind == "prefix":
        match = {"prefix": rng.choice(["r", "re", "", "gr", "R"])}
    else:
        pool = KEYWORDS if rng.random() < 0.5 else INTS
        match = {kind: rng.sample(pool, rng.randint(0, 3))}
    return {"key": random_key(rng, scope), "match": match}


def random_bounds(rng: random.Random, values: list[Any]) -> dict[str, Any]:
    names = rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 2))
    return {name: rng.choice(values) for name in names}


def random_range(rng: random.Random, scope: Scope) -> dict[str, Any]:
    return {"key": random_key(rng, scope), "range": random_bounds(rng, INTS[:5] + FLOATS)}


def random_datetime_range(rng: random.Random, scope: Scope) -> dict[str, Any]:
    key = "k" if scope.is_nested else rng.choice(["d", "k", "arr"])
    return {"key": key, "range": random_bounds(rng, DATETIME_BOUNDS)}


def random_values_count(rng: random.Random, scope: Scope) -> dict[str, Any]:
    return {"key": random_key(rng, scope), "values_count": random_bounds(rng, [0, 1, 2, 3])}


def random_geo(rng: random.Random, scope: Scope) -> dict[str, Any]:
    key = "g" if scope.is_nested else rng.choice(["g", "obj.g", "objs[].g", "k"])
    lon, lat = rng.choice(GEO_CENTERS)
    kind = rng.choice(["geo_radius", "geo_bounding_box", "geo_polygon"])
    if kind == "geo_radius":
        center = {"lon": lon, "lat": lat}
        return {"key": key, kind: {"center": center, "radius": rng.choice([1e3, 2e4, 4e4])}}
    size = rng.choice([0.1, 0.25, 0.4])
    west, east = max(lon - size, -180.0), min(lon + size, 180.0)
    south, north = lat - size, lat + size
    if kind == "geo_bounding_box":
        if rng.random() < 0.3:  # across the antimeridian
            west, east = 179.7, -179.7
        top_left, bottom_right = {"lon": west, "lat": north}, {"lon": east, "lat": south}
        return {"key": key, kind: {"top_left": top_left, "bottom_right": bottom_right}}
    exterior = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    polygon: dict[str, Any] = {"exterior": geo_line(exterior)}
    if rng.random() < 0.4:
        hole = [(lon - 0.05, lat - 0.05), (lon + 0.05, lat - 0.05), (lon, lat + 0.08)]
        polygon["interiors"] = [geo_line([*hole, hole[0]])]
    return {"key": key, kind: polygon}


def random_emptiness(rng: random.Random, scope: Scope) -> dict[str, Any]:
    key = random_key(rng, scope)
    forms = ["is_empty", "is_null"]
    if not scope.is_local_mode:
        forms += ["field_is_empty", "field_is_null"]
    form = rng.choice(forms)
    if form == "is_null" and key.startswith("nulls"):
        key = "nul"  # 1.19 and the references read `[null]` differently (module docstring)
    if form.startswith("field_"):
        return {"key": key, form.removeprefix("field_"): rng.choice([True, False])}
    return {form: {"key": key}}


def random_has_id(rng: random.Random, scope: Scope) -> dict[str, Any]:
    return {"has_id": rng.sample(range(POINT_COUNT), rng.randint(0, 30))}


def random_has_vector(rng: random.Random, scope: Scope) -> dict[str, Any]:
    return {"has_vector": rng.choice(["a", "b", "c"])}


def random_slice(rng: random.Random, scope: Scope) -> dict[str, Any]:
    total = rng.randint(1, 5)
    return {"slice": {"total": total, "index": rng.randrange(total)}}


def random_multi_check(rng: random.Random, scope: Scope) -> dict[str, Any]:
    """Several checks in one field condition: Qdrant's precedence decides."""
    condition = random_match(rng, scope)
    condition["range"] = random_bounds(rng, INTS[:5] + FLOATS)
    if rng.random() < 0.5:
        condition[rng.choice(["is_empty", "is_null"])] = rng.choice([True, False])
    if rng.random() < 0.3:
        condition["values_count"] = random_bounds(rng, [0, 1, 2])
    return condition


def random_subfilter(rng: random.Random, scope: Scope) -> dict[str, Any]:
    return random_filter(rng, scope.deeper())


def random_nested(rng: random.Random, scope: Scope) -> dict[str, Any]:
    keys = ["arr", "objs[]"] if scope.is_nested else ["objs", "objs[]", "obj", "arr"]
    inner = random_filter(rng, scope.deeper(is_nested=True))
    return {"nested": {"key": rng.choice(keys), "filter": inner}}


# --- JSON -> qdrant-edge objects -----------------------------------------------------------


class InexpressibleInEdge(Exception):
    """qdrant-edge-py 0.9's MatchValue turns a Python bool into the integer 0 or 1."""


def to_edge_filter(data: dict[str, Any]) -> Any:
    clauses: dict[str, Any] = {}
    for name in ("must", "should", "must_not"):
        value = data.get(name)
        if value is not None:
            items = value if isinstance(value, list) else [value]
            clauses[name] = [to_edge_condition(item) for item in items]
    if data.get("min_should") is not None:
        conditions = [to_edge_condition(c) for c in data["min_should"]["conditions"]]
        clauses["min_should"] = qdrant_edge.MinShould(conditions, data["min_should"]["min_count"])
    return qdrant_edge.Filter(**clauses)


def to_edge_condition(data: dict[str, Any]) -> Any:
    if "key" in data:
        return to_edge_field_condition(data)
    if "is_empty" in data:
        return qdrant_edge.IsEmptyCondition(data["is_empty"]["key"])
    if "is_null" in data:
        return qdrant_edge.IsNullCondition(data["is_null"]["key"])
    if "has_id" in data:
        return qdrant_edge.HasIdCondition(set(data["has_id"]))
    if "has_vector" in data:
        return qdrant_edge.HasVectorCondition(data["has_vector"])
    if "slice" in data:
        return qdrant_edge.SliceCondition(data["slice"]["total"], data["slice"]["index"])
    if "nested" in data:
        nested = data["nested"]
        return qdrant_edge.NestedCondition(nested["key"], to_edge_filter(nested["filter"]))
    return to_edge_filter(data)


def to_edge_field_condition(data: dict[str, Any]) -> Any:
    checks: dict[str, Any] = {}
    if "match" in data:
        checks["match"] = to_edge_match(data["match"])
    if "range" in data:
        bounds = data["range"]
        if any(isinstance(value, str) for value in bounds.values()):
            checks["range"] = qdrant_edge.RangeDateTime(**bounds)
        else:
            checks["range"] = qdrant_edge.RangeFloat(**{k: float(v) for k, v in bounds.items()})
    if "values_count" in data:
        checks["values_count"] = qdrant_edge.ValuesCount(**data["values_count"])
    for name in ("geo_radius", "geo_bounding_box", "geo_polygon"):
        if name in data:
            checks[name] = to_edge_geo(name, data[name])
    for name in ("is_empty", "is_null"):
        if name in data:
            checks[name] = data[name]
    return qdrant_edge.FieldCondition(data["key"], **checks)


def to_edge_match(match: dict[str, Any]) -> Any:
    if "value" in match:
        if isinstance(match["value"], bool):
            raise InexpressibleInEdge(match)
        return qdrant_edge.MatchValue(match["value"])
    if "any" in match:
        return qdrant_edge.MatchAny(match["any"])
    if "except" in match:
        return qdrant_edge.MatchExcept(match["except"])
    return qdrant_edge.MatchPrefix(match["prefix"])


def to_edge_geo(kind: str, data: dict[str, Any]) -> Any:
    def point(value: dict[str, float]) -> Any:
        return qdrant_edge.GeoPoint(float(value["lon"]), float(value["lat"]))

    if kind == "geo_radius":
        return qdrant_edge.GeoRadius(point(data["center"]), float(data["radius"]))
    if kind == "geo_bounding_box":
        return qdrant_edge.GeoBoundingBox(point(data["top_left"]), point(data["bottom_right"]))
    interiors = [[point(p) for p in line["points"]] for line in data.get("interiors", [])]
    exterior = [point(p) for p in data["exterior"]["points"]]
    return qdrant_edge.GeoPolygon(exterior, interiors or None)
