"""POST /points/query with `{"formula": ...}`: answers, batches, groups and error bodies.

Scores are checked against qdrant-edge-py in tests/unit/test_query_formula.py; here the HTTP
side: what answers 200 (and validates against Qdrant's schema), what answers 400 / 422 with
which text (Qdrant 1.19: `rest/validate.rs`, `shard/src/query/formula.rs`,
`formula_scorer.rs`), and that nothing is half-answered.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

QUERY = "/collections/{collection_name}/points/query"
QUERY_BATCH = "/collections/{collection_name}/points/query/batch"
QUERY_GROUPS = "/collections/{collection_name}/points/query/groups"
EXPECTING = "Format error in JSON body: Expected some form of vector, id, or a type of query"
PREFETCH = {"query": [0.2, 0.1, 0.9, 0.7], "limit": 10}
POINTS = [
    {"id": 1, "vector": [0.05, 0.61, 0.76, 0.74], "payload": {"city": "Berlin", "price": 3}},
    {"id": 2, "vector": [0.19, 0.81, 0.75, 0.11], "payload": {"city": "London", "price": 1.5}},
    {"id": 3, "vector": [0.36, 0.55, 0.47, 0.94], "payload": {"city": "Paris"}},
    {
        "id": 4,
        "vector": [0.18, 0.01, 0.85, 0.80],
        "payload": {"city": "Berlin", "price": [7], "when": "2024-05-01T00:00:00Z"},
    },
]


@pytest.fixture
async def shop(api: Api) -> Api:
    await api.create_collection(vectors={"size": 4, "distance": "Dot"})
    await api.upsert({"points": POINTS})
    return api


async def nearest_scores(api: Api) -> dict[int, float]:
    body = {"query": PREFETCH["query"], "limit": 10}
    points = (await api.call("POST", QUERY, json=body)).result["points"]
    return {point["id"]: point["score"] for point in points}


async def test_score_boost_by_payload_and_condition(shop: Api):
    scores = await nearest_scores(shop)
    formula = {
        "sum": [
            "$score",
            {"mult": [0.5, "price"]},
            {"mult": [2, {"key": "city", "match": {"value": "Berlin"}}]},
        ]
    }
    body = {
        "prefetch": PREFETCH,
        "query": {"formula": formula, "defaults": {"price": 0}},
        "with_payload": ["city"],
    }
    points = (await shop.call("POST", QUERY, json=body)).result["points"]
    prices = {1: 3, 2: 1.5, 3: 0, 4: 7}
    expected = {
        point_id: score + 0.5 * prices[point_id] + (2 if point_id in (1, 4) else 0)
        for point_id, score in scores.items()
    }
    assert [point["id"] for point in points] == sorted(expected, key=lambda i: -expected[i])
    for point in points:
        assert point["score"] == pytest.approx(expected[point["id"]], rel=1e-6)
        assert set(point) == {"id", "version", "score", "payload"}


async def test_threshold_limit_offset_and_a_formula_in_a_prefetch(shop: Api):
    # The inner formula keeps the three priced points; the outer one reverses them.
    inner = {"prefetch": PREFETCH, "query": {"formula": "price"}, "score_threshold": 1.5}
    body = {
        "prefetch": inner,
        "query": {"formula": {"neg": "$score"}},
        "limit": 1,
        "offset": 1,
    }
    with_missing_price = await shop.call("POST", QUERY, json=body)
    assert with_missing_price.status == 400  # point 3 has no price and there is no default
    assert with_missing_price.error == (
        "Wrong input: Expected number value for price in the payload and/or in the formula "
        "defaults. Error: No value found in a payload nor defaults"
    )
    inner["query"] = {"formula": "price", "defaults": {"price": 1}}
    points = (await shop.call("POST", QUERY, json=body)).result["points"]
    # Inner: 4 -> 7, 1 -> 3, 2 -> 1.5 (3 -> 1 falls under 1.5); outer: -1.5, -3, -7.
    assert [(p["id"], p["score"]) for p in points] == [(1, -3.0)]


async def test_batch_and_groups(shop: Api):
    formula = {"query": {"formula": {"sum": ["$score", 1]}}, "prefetch": PREFETCH, "limit": 2}
    batch = await shop.call("POST", QUERY_BATCH, json={"searches": [formula, formula]})
    first, second = batch.result
    assert first == second and len(first["points"]) == 2
    groups_body = {**formula, "group_by": "city", "group_size": 1}
    groups = (await shop.call("POST", QUERY_GROUPS, json=groups_body)).result["groups"]
    assert [group["id"] for group in groups] == ["Berlin", "Paris"]


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        (
            {"formula": {"sum": ["$score", "$scores"]}},
            400,
            (
                "Wrong input: Validation failed: failed to parse variable ID $scores: "
                "Invalid reserved word: $scores"
            ),
        ),
        (
            {"formula": {"lin_decay": {"x": "price", "midpoint": -0.5}}},
            400,
            (
                "Wrong input: Validation failed: Linear decay midpoint should be in the range "
                "[0.0, 1.0], got -0.5."
            ),
        ),
        (
            {"formula": {"div": {"left": 1, "right": "price"}}, "defaults": {}},
            400,
            (
                "Wrong input: Expected number value for price in the payload and/or in the formula "
                "defaults. Error: No value found in a payload nor defaults"
            ),
        ),
        (
            {
                "formula": {"div": {"left": 1, "right": {"sum": ["price", -3]}}},
                "defaults": {"price": 3},
            },
            400,
            "Wrong input: The expression 1/0 = inf produced a non-finite number",
        ),
        (
            {"formula": "price", "defaults": {"$nope": 1, "$score": "high"}},
            422,
            (
                "Validation error in JSON body: [internal.query.defaults: Invalid reserved word: "
                "$nope; internal.query.defaults: Validation error: Score default must be a number "
                "[{}]]"
            ),
        ),
        (
            {"formula": {"mult": [1, {"key": "city"}]}},
            422,
            (
                "Validation error in JSON body: [internal.query.mult[1].__all__: At least one field "
                "condition must be specified]"
            ),
        ),
        ({"formula": {"mult": 1}}, 400, EXPECTING),
        ({"formula": [1, 2]}, 400, EXPECTING),
        (
            {"formula": {"geo_distance": {"origin": {"lon": 200, "lat": 0}, "to": "g"}}},
            400,
            EXPECTING,
        ),
        ({"formula": "price", "defaults": None}, 400, EXPECTING),
        ({"formula": {"datetime_key": "a..b"}}, 400, EXPECTING),
    ],
)
async def test_formula_errors(shop: Api, query, status, error):
    response = await shop.call("POST", QUERY, json={"prefetch": PREFETCH, "query": query})
    assert (response.status, response.error) == (status, error)


async def test_formula_without_prefetch_and_in_a_missing_collection(shop: Api):
    body = {"query": {"formula": "$score"}}
    response = await shop.call("POST", QUERY, json=body)
    assert (response.status, response.error) == (
        400,
        "Wrong input: Validation failed: cannot apply Formula without prefetches",
    )
    missing = await shop.call("POST", QUERY, json=body, name="nope")
    assert missing.status == 404


async def test_datetime_and_geo_terms(shop: Api):
    formula = {
        "sum": [
            {"mult": [1e-6, {"datetime_key": "when"}]},
            {"mult": [1e-3, {"geo_distance": {"origin": {"lon": 13.4, "lat": 52.5}, "to": "g"}}]},
        ]
    }
    defaults = {"when": "2024-01-01", "g": {"lon": 13.4, "lat": 52.5}}
    body = {"prefetch": PREFETCH, "query": {"formula": formula, "defaults": defaults}}
    points = (await shop.call("POST", QUERY, json=body)).result["points"]
    january, may = 1704067200, 1714521600  # 2024-01-01 and 2024-05-01, seconds
    assert {p["id"]: p["score"] for p in points} == pytest.approx(
        {1: january * 1e-6, 2: january * 1e-6, 3: january * 1e-6, 4: may * 1e-6}
    )


async def test_an_indexed_variable_reads_the_index(shop: Api):
    """Qdrant's test_query_formula: `price: null` under a float index is no value (the
    default), not a value that is not a number; without the index it is one (400)."""
    point = {"id": 5, "vector": [0.3, 0.2, 0.1, 0.4], "payload": {"price": None}}
    await shop.upsert({"points": [point]}, query={"wait": "true"})
    body = {
        "prefetch": PREFETCH,
        "query": {"formula": {"sum": ["$score", "price"]}, "defaults": {"price": 0.5}},
    }
    response = await shop.call("POST", QUERY, json=body)
    assert response.status == 400
    assert response.error == (
        "Wrong input: Expected number value for price in the payload and/or in the formula "
        "defaults. Error: Value is not a number"
    )
    index = {"field_name": "price", "field_schema": "float"}
    path = "/collections/{collection_name}/index"
    assert (await shop.call("PUT", path, json=index, query={"wait": "true"})).status == 200
    scores = await nearest_scores(shop)
    points = (await shop.call("POST", QUERY, json=body)).result["points"]
    assert {point["id"]: point["score"] for point in points}[5] == pytest.approx(scores[5] + 0.5)
