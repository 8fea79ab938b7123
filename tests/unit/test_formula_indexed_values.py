"""A formula variable on an indexed field reads what the index holds, not the payload
(engine/query/formula_values.py), checked against qdrant-edge-py, Qdrant's engine in process.

Method: each case is one field holding one odd value in one point (the other points lack
the field and take the default), with a payload index of some type or none. The same
formula over all points runs in Keel and in an edge shard with the same points and indexes;
both must fail (edge reports any evaluation error as a cancellation, so only that both fail
is compared) or both return the same scores. A value the index does not hold counts as no
value, so the default; read from the payload it is a value, often not a number.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge

from engine.errors import BadRequest
from engine.filters.payload_path import PayloadPath
from engine.ops import CollectionConfig, CreateFieldIndex, Distance, VectorConfig
from engine.query import formula_values
from engine.store.payload_index import IndexSpec
from server.wire.query import parse_query_request
from tests.unit.engine_helpers import open_catalog, upsert

E = qdrant_edge.Expression
DIM = 2
POINT_COUNT = 6
VECTOR = [1.0, 0.5]
UUID_TEXT = "6F9619FF-8B86-D011-B42D-00CF4FC964FF"
BERLIN = {"lon": 13.4, "lat": 52.5}
EDGE_SCHEMAS = {
    "keyword": qdrant_edge.PayloadSchemaType.Keyword,
    "integer": qdrant_edge.PayloadSchemaType.Integer,
    "float": qdrant_edge.PayloadSchemaType.Float,
    "datetime": qdrant_edge.PayloadSchemaType.Datetime,
    "uuid": qdrant_edge.PayloadSchemaType.Uuid,
    "bool": qdrant_edge.PayloadSchemaType.Bool,
    "geo": qdrant_edge.PayloadSchemaType.Geo,
    "text": qdrant_edge.PayloadSchemaType.Text,
}

# (index type or None, index params, what the formula reads the field as, the odd value)
NUMBER_VALUES = [
    None,
    "text",
    True,
    3,
    3.0,
    3.5,
    [1.5],
    [2, 2],
    [2, 2.5],
    [None, 4],
    ["x", 4],
    [],
    {"lon": 1, "lat": 2},
]
CASES: list[tuple[str | None, dict | None, str, Any]] = [
    *((schema, None, "number", value) for schema in (None, "float") for value in NUMBER_VALUES),
    *(
        (schema, None, "number", value)
        for schema in ("integer", "keyword", "bool", "text")
        for value in (None, 3, 3.0, 3.5, [2, 2], "7", True)
    ),
    ("integer", {"lookup": False, "range": True}, "number", [2, 2]),
    ("integer", {"lookup": False, "range": True}, "number", 3.0),
    *(
        (schema, None, "datetime", value)
        for schema in (None, "datetime", "keyword")
        for value in ("2024-05-01T10:00:00Z", "not a date", 5, None, ["2024-05-01", "never"])
    ),
    *(
        (schema, None, "datetime", value)
        for schema in (None, "datetime")
        for value in (["2024-05-01", "2024-05-01"], "2024-05-01T10:00:00.123456789Z")
    ),
    *(
        (schema, None, "number", value)
        for schema in (None, "uuid")
        for value in (UUID_TEXT, "not a uuid", 5)
    ),
    *(
        (schema, None, "geo", value)
        for schema in (None, "geo")
        for value in (
            BERLIN,
            {"lon": 200, "lat": 0},
            {"lon": "x", "lat": 1},
            [BERLIN, BERLIN],
            [BERLIN, None],
            None,
            5,
            [13.0, 52.0],
        )
    ),
]
DEFAULTS = {"number": 0.25, "datetime": "2020-01-01T00:00:00Z", "geo": {"lon": 2.35, "lat": 48.85}}


def field_of(index: int) -> str:
    return f"x{index}"


def point_of(index: int) -> int:
    return index % POINT_COUNT + 1


def formula_json(kind: str, field: str) -> dict[str, Any]:
    if kind == "number":
        term: Any = field
    elif kind == "datetime":
        term = {"mult": [1e-9, {"datetime_key": field}]}
    else:
        term = {"mult": [1e-6, {"geo_distance": {"origin": BERLIN, "to": field}}]}
    return {"sum": ["$score", term]}


def edge_expression(kind: str, field: str) -> Any:
    if kind == "number":
        term = E.Variable(field)
    elif kind == "datetime":
        term = E.Mult([E.Constant(1e-9), E.DatetimeKey(field)])
    else:
        origin = qdrant_edge.GeoPoint(lon=BERLIN["lon"], lat=BERLIN["lat"])
        term = E.Mult([E.Constant(1e-6), E.GeoDistance(origin, field)])
    return E.Sum([E.Variable("$score"), term])


def point_vectors() -> list[list[float]]:
    return [[0.1 * i, 1.0 - 0.1 * i] for i in range(1, POINT_COUNT + 1)]


def payloads() -> list[dict[str, Any]]:
    by_point: list[dict[str, Any]] = [{} for _ in range(POINT_COUNT)]
    for index, (_, _, _, value) in enumerate(CASES):
        by_point[point_of(index) - 1][field_of(index)] = value
    return by_point


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("formula_indexed")
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(root / "keel"))
    config = CollectionConfig(vectors={"v": VectorConfig(DIM, Distance.DOT)})
    loop.run_until_complete(catalog.create("c", config))
    collection = catalog.get("c")
    ids = list(range(1, POINT_COUNT + 1))
    op = upsert(ids, point_vectors(), payloads(), name="v")
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    for index, (schema, params, _, _) in enumerate(CASES):
        if schema is not None:
            op = CreateFieldIndex(field_of(index), schema, params)
            loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    shard = edge_shard(root / "edge", ids)
    yield loop, collection, shard
    shard.close()
    loop.run_until_complete(catalog.close())
    loop.close()


def edge_shard(path: Path, ids: list[int]) -> Any:
    params = {"v": qdrant_edge.EdgeVectorParams(size=DIM, distance=qdrant_edge.Distance.Dot)}
    shard = qdrant_edge.EdgeShard.create(str(path), qdrant_edge.EdgeConfig(vectors=params))
    points = [
        qdrant_edge.Point(i, {"v": vector}, payload)
        for i, vector, payload in zip(ids, point_vectors(), payloads())
    ]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
    for index, (schema, params, _, _) in enumerate(CASES):
        if schema is None:
            continue
        if params is not None:
            field_schema: Any = qdrant_edge.IntegerIndexParams(**params)
        else:
            field_schema = EDGE_SCHEMAS[schema]
        shard.update(qdrant_edge.UpdateOperation.create_field_index(field_of(index), field_schema))
    return shard


def keel_scores(engines, kind: str, field: str) -> list[tuple[int, float]] | BadRequest:
    loop, collection, _ = engines
    body = {
        "prefetch": {"query": VECTOR, "using": "v", "limit": POINT_COUNT},
        "query": {"formula": formula_json(kind, field), "defaults": {field: DEFAULTS[kind]}},
        "limit": POINT_COUNT,
    }
    try:
        result = loop.run_until_complete(collection.query(parse_query_request(body), {}))
    except BadRequest as error:
        return error
    return sorted((point.id, point.score) for point in result.points)


def edge_scores(engines, kind: str, field: str) -> list[tuple[int, float]] | Exception:
    prefetch = qdrant_edge.Prefetch(limit=POINT_COUNT, query=qdrant_edge.Query.Nearest(VECTOR, "v"))
    request = qdrant_edge.QueryRequest(
        limit=POINT_COUNT,
        prefetches=[prefetch],
        query=qdrant_edge.Formula(edge_expression(kind, field), {field: DEFAULTS[kind]}),
    )
    try:
        points = engines[2].query(request)
    except Exception as error:  # noqa: BLE001 (qdrant_edge raises bare Exceptions)
        return error
    return sorted((point.id, point.score) for point in points)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}-{c[2]}-{c[3]!r}" for c in CASES])
def test_a_variable_reads_the_index_of_its_field_as_qdrant(engines, index):
    _, _, kind, _ = CASES[index]
    keel = keel_scores(engines, kind, field_of(index))
    edge = edge_scores(engines, kind, field_of(index))
    if isinstance(edge, Exception):
        assert isinstance(keel, BadRequest), (keel, edge)
        return
    assert not isinstance(keel, BadRequest), (keel, edge)
    assert [point_id for point_id, _ in keel] == [point_id for point_id, _ in edge]
    assert [score for _, score in keel] == pytest.approx([s for _, s in edge], rel=1e-6)


def test_no_value_in_the_index_and_no_default_is_qdrants_error(engines):
    """An indexed `null` is no value (Qdrant: "No value found in a payload nor defaults");
    the same `null` unindexed is a value that is not a number. Edge reports both as a
    cancellation, so the texts are checked against formula_scorer.rs."""
    loop, collection, _ = engines
    texts = {}
    for schema in ("float", None):
        index = CASES.index((schema, None, "number", None))
        field = field_of(index)
        only_point = {"must": [{"has_id": [point_of(index)]}]}
        body = {
            "prefetch": {"query": VECTOR, "using": "v", "filter": only_point},
            "query": {"formula": field, "defaults": {}},
        }
        with pytest.raises(BadRequest) as error:
            loop.run_until_complete(collection.query(parse_query_request(body), {}))
        texts[schema] = str(error.value).replace(field, "x")
    assert texts == {
        "float": "Expected number value for x in the payload and/or in the formula defaults. "
        "Error: No value found in a payload nor defaults",
        None: "Expected number value for x in the payload and/or in the formula defaults. "
        "Error: Value is not a number",
    }


def test_index_values_by_type():
    """What each index type gives back for a few payloads (formula_values's table)."""
    cases = [
        ("keyword", None, ["a", 5, "a", None, "b"], ["a", "b"]),
        ("integer", None, [3, 3.0, 3.5, "3", 2**63, True], [3, 2**63 - 1]),
        ("integer", {"lookup": False, "range": True}, [3, 3.0], [3, 3]),
        ("float", None, [1, 1, 2.5, None, "1", False], [1.0, 1.0, 2.5]),
        ("datetime", None, ["2024-01-01", "nope", 7], ["2024-01-01"]),
        ("uuid", None, [UUID_TEXT, UUID_TEXT.lower(), "x"], [UUID_TEXT.lower()]),
        ("bool", None, [False, True, False, 1], [True, False]),
        ("geo", None, [BERLIN, {"lon": 0, "lat": 91}, BERLIN], [BERLIN, BERLIN]),
        ("text", None, [5, "t"], [5, "t"]),
    ]
    path = PayloadPath.parse("f")
    for schema, params, values, expected in cases:
        indexed = formula_values.indexed_fields({"f": IndexSpec("f", schema, params)})
        read = formula_values.values_reader(path, indexed)
        assert read({"f": values}) == expected, schema
    unindexed = formula_values.values_reader(path, {})
    assert unindexed({"f": [None, [1]]}) == [None, [1]]
    assert formula_values.values_reader(PayloadPath.parse("f[]"), {})({"f": [[1], 2]}) == [[1], 2]


def test_an_index_on_another_path_is_not_read():
    indexed = formula_values.indexed_fields({"a.b": IndexSpec("a.b", "float", None)})
    assert formula_values.values_reader(PayloadPath.parse("a.b"), indexed)({"a": {"b": "s"}}) == []
    reader = formula_values.values_reader(PayloadPath.parse("a"), indexed)
    assert reader({"a": {"b": "s"}}) == [{"b": "s"}]
