"""Formula and relevance feedback queries (engine/query/formula.py, engine/query/feedback.py)
against qdrant-edge-py, Qdrant's own engine in process.

The same points go into a Keel collection and an edge shard; each query is written once as
the JSON a client sends (parsed by server/wire/query.py, run by engine/query/universal.py)
and once with qdrant_edge's classes; both must return the same ids with the same scores.

Errors: compile-time errors (a bad variable, decay parameters, a datetime constant) must
read as qdrant-edge-py's, which carries Qdrant's text. Errors while evaluating a point (a
payload value missing without default, division by zero, ...) are reported by
qdrant-edge-py 0.9 as `Operation cancelled: process cancelled by service` (the stop flag the
failing point sets wins there); for those the oracle must fail too, and Keel's text is
checked against Qdrant 1.19's source (`formula_scorer.rs`, `operation_error.rs`).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The oracle is in the test extra: a missing one is an error, never a silent skip.
import qdrant_edge

from engine.errors import BadRequest, NotFound
from engine.ops import (
    CollectionConfig,
    Distance,
    NamedVectors,
    SparseColumn,
    SparseVectorConfig,
    VectorConfig,
)
from engine.query import formula as formulas
from server.wire.query import parse_query_request
from tests.unit.engine_helpers import open_catalog, upsert

E = qdrant_edge.Expression
DIM = 4
POINT_COUNT = 40
VECTOR = [0.3, -0.2, 0.5, 0.1]
DISTANCES = {"dot": Distance.DOT, "cos": Distance.COSINE, "l2": Distance.EUCLID}
EDGE_DISTANCES = {
    "dot": qdrant_edge.Distance.Dot,
    "cos": qdrant_edge.Distance.Cosine,
    "l2": qdrant_edge.Distance.Euclid,
}
DECAY_KINDS = {
    "lin": qdrant_edge.DecayKind.Lin,
    "exp": qdrant_edge.DecayKind.Exp,
    "gauss": qdrant_edge.DecayKind.Gauss,
}


def point_vector(index: int) -> list[float]:
    # Distinct (no ties to cut), seeded, not normalised: cosine and dot disagree.
    rng = random.Random(index)
    return [round(rng.uniform(-1.0, 1.0), 4) for _ in range(DIM)]


def point_sparse(index: int) -> tuple[list[int], list[float]]:
    rng = random.Random(-index)
    indices = sorted(rng.sample(range(12), rng.randint(1, 4)))
    return indices, [round(rng.uniform(-1.0, 1.0), 3) for _ in indices]


def sparse_column(ids: list[int]) -> SparseColumn:
    pairs = [point_sparse(i) for i in ids]
    offsets = np.cumsum([0] + [len(indices) for indices, _ in pairs]).astype(np.int64)
    return SparseColumn(
        rows=np.arange(len(ids), dtype=np.int32),
        offsets=offsets,
        indices=np.array([i for indices, _ in pairs for i in indices], np.uint32),
        values=np.array([v for _, values in pairs for v in values], np.float32),
    )


def point_payload(index: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "tag": ["red", "green", "blue"][index % 3],
        "when": f"2024-0{1 + index % 9}-{10 + index % 17}T0{index % 10}:30:00Z",
        "place": {"lon": 13.0 + index * 0.1, "lat": 52.0 - index * 0.05},
        "rank": index,
    }
    if index % 4:
        payload["price"] = round(0.37 * index - 3.1, 3)
    if index % 5 == 0:
        payload["one"] = [2.5]  # an array of one value counts as that value
    return payload


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """A Keel collection and an edge shard with the same points, shared by the module."""
    root = tmp_path_factory.mktemp("formula")
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(root / "keel"))
    config = CollectionConfig(
        vectors={name: VectorConfig(DIM, d) for name, d in DISTANCES.items()},
        sparse_vectors={"sp": SparseVectorConfig()},
    )
    loop.run_until_complete(catalog.create("c", config))
    collection = catalog.get("c")
    ids = list(range(1, POINT_COUNT + 1))
    vectors = [point_vector(i) for i in ids]
    op = upsert(ids, vectors, [point_payload(i) for i in ids], name="dot")
    rows = op.vectors["dot"].rows
    op.vectors.update(
        {name: NamedVectors(rows, op.vectors["dot"].matrix) for name in ("cos", "l2")}
    )
    op = replace(op, sparse={"sp": sparse_column(ids)})
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    shard = edge_shard(root / "edge", ids, vectors)
    yield loop, collection, shard
    shard.close()
    loop.run_until_complete(catalog.close())
    loop.close()


def edge_shard(path: Path, ids: list[int], vectors: list[list[float]]) -> Any:
    params = {
        name: qdrant_edge.EdgeVectorParams(size=DIM, distance=distance)
        for name, distance in EDGE_DISTANCES.items()
    }
    sparse_params = {"sp": qdrant_edge.EdgeSparseVectorParams()}
    config = qdrant_edge.EdgeConfig(vectors=params, sparse_vectors=sparse_params)
    shard = qdrant_edge.EdgeShard.create(str(path), config)
    points = [
        qdrant_edge.Point(
            i,
            {
                **{name: vector for name in DISTANCES},
                "sp": qdrant_edge.SparseVector(*point_sparse(i)),
            },
            point_payload(i),
        )
        for i, vector in zip(ids, vectors)
    ]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
    return shard


def keel_query(engines, body: dict[str, Any]) -> list[tuple[Any, float]]:
    loop, collection, _ = engines
    result = loop.run_until_complete(collection.query(parse_query_request(body), {}))
    return [(point.id, point.score) for point in result.points]


def edge_query(engines, request: Any) -> list[tuple[Any, float]]:
    return [(point.id, point.score) for point in engines[2].query(request)]


def assert_same(keel: list[tuple[Any, float]], edge: list[tuple[Any, float]]) -> None:
    assert [score for _, score in keel] == pytest.approx([score for _, score in edge], rel=1e-5)
    # Ties may come in either order, and the limit may cut a tie anywhere: each point must
    # have its score in the oracle's answer, except those tied with the lowest score kept.
    edge_scores = dict(edge)
    lowest = edge[-1][1] if edge else None
    for point_id, score in keel:
        if score != pytest.approx(lowest, rel=1e-5):
            assert edge_scores.get(point_id) == pytest.approx(score, rel=1e-5), (point_id, edge)


def formula_body(formula: Any, defaults: dict | None = None, **extra: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"formula": formula}
    if defaults is not None:
        query["defaults"] = defaults
    prefetch = extra.pop("prefetch", {"query": VECTOR, "using": "dot", "limit": 25})
    return {"prefetch": prefetch, "query": query, "limit": 15, **extra}


def edge_formula_request(expression: Any, defaults: dict | None = None, **extra: Any) -> Any:
    prefetches = extra.pop(
        "prefetches",
        [qdrant_edge.Prefetch(limit=25, query=qdrant_edge.Query.Nearest(VECTOR, "dot"))],
    )
    return qdrant_edge.QueryRequest(
        limit=15, prefetches=prefetches, query=qdrant_edge.Formula(expression, defaults), **extra
    )


# Each case: the formula's JSON, its defaults, and the same formula with edge's classes.
CASES = {
    "score_boost": (
        {"sum": ["$score", {"mult": [0.4, "price"]}]},
        {"price": 0.0},
        lambda: E.Sum([E.Variable("$score"), E.Mult([E.Constant(0.4), E.Variable("price")])]),
    ),
    "fast_sigmoid": (
        {"div": {"left": "price", "right": {"sum": [1.0, {"abs": "price"}]}}},
        {"price": 0.25},
        lambda: E.Div(
            E.Variable("price"), E.Sum([E.Constant(1.0), E.Abs(E.Variable("price"))]), None
        ),
    ),
    "condition_boost": (
        {"sum": ["$score", {"mult": [0.5, {"key": "tag", "match": {"value": "red"}}]}]},
        None,
        lambda: E.Sum(
            [
                E.Variable("$score"),
                E.Mult(
                    [
                        E.Constant(0.5),
                        E.Condition(
                            qdrant_edge.FieldCondition("tag", match=qdrant_edge.MatchValue("red"))
                        ),
                    ]
                ),
            ]
        ),
    ),
    "by_zero_default": (
        {"div": {"left": 1, "right": {"sum": ["rank", -7]}, "by_zero_default": 9.5}},
        None,
        lambda: E.Div(E.Constant(1), E.Sum([E.Variable("rank"), E.Constant(-7)]), 9.5),
    ),
    "arithmetic": (
        {
            "sum": [
                {"neg": {"sqrt": "rank"}},
                {"pow": {"base": "rank", "exponent": 0.5}},
                {"ln": {"sum": ["rank", 1]}},
                {"log10": {"sum": ["rank", 1]}},
                {"exp": {"mult": ["$score", 0.1]}},
            ]
        },
        None,
        lambda: E.Sum(
            [
                E.Neg(E.Sqrt(E.Variable("rank"))),
                E.Pow(E.Variable("rank"), E.Constant(0.5)),
                E.Ln(E.Sum([E.Variable("rank"), E.Constant(1)])),
                E.Log10(E.Sum([E.Variable("rank"), E.Constant(1)])),
                E.Exp(E.Mult([E.Variable("$score"), E.Constant(0.1)])),
            ]
        ),
    ),
    "decays": (
        {
            "sum": [
                {"lin_decay": {"x": "rank", "target": 10, "scale": 20, "midpoint": 0.3}},
                {"exp_decay": {"x": "rank", "scale": 7}},
                {"gauss_decay": {"x": "$score", "target": 1.0, "midpoint": 0.2}},
            ]
        },
        None,
        lambda: E.Sum(
            [
                E.Decay(DECAY_KINDS["lin"], E.Variable("rank"), E.Constant(10), 0.3, 20.0),
                E.Decay(DECAY_KINDS["exp"], E.Variable("rank"), None, None, 7.0),
                E.Decay(DECAY_KINDS["gauss"], E.Variable("$score"), E.Constant(1.0), 0.2, None),
            ]
        ),
    ),
    "geo_and_datetime": (
        {
            "sum": [
                {
                    "mult": [
                        0.001,
                        {"geo_distance": {"origin": {"lon": 13.4, "lat": 52.5}, "to": "place"}},
                    ]
                },
                {
                    "mult": [
                        1e-7,
                        {"sum": [{"datetime_key": "when"}, {"neg": {"datetime": "2024-03-01"}}]},
                    ]
                },
            ]
        },
        None,
        lambda: E.Sum(
            [
                E.Mult(
                    [
                        E.Constant(0.001),
                        E.GeoDistance(qdrant_edge.GeoPoint(lon=13.4, lat=52.5), "place"),
                    ]
                ),
                E.Mult(
                    [
                        E.Constant(1e-7),
                        E.Sum([E.DatetimeKey("when"), E.Neg(E.Datetime("2024-03-01"))]),
                    ]
                ),
            ]
        ),
    ),
    "defaults_for_scores_and_arrays": (
        {"sum": ["$score[1]", "$score[0]", "one", "missing"]},
        {"$score[1]": 0.75, "one": -1, "missing": 3},
        lambda: E.Sum(
            [
                E.Variable("$score[1]"),
                E.Variable("$score[0]"),
                E.Variable("one"),
                E.Variable("missing"),
            ]
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_formula_scores_match_qdrant(engines, name):
    formula, defaults, edge_expression = CASES[name]
    keel = keel_query(engines, formula_body(formula, defaults))
    edge = edge_query(engines, edge_formula_request(edge_expression(), defaults))
    assert len(keel) == 15
    assert_same(keel, edge)


def test_formula_over_two_prefetches_and_a_threshold(engines):
    # `$score[1]` is the second prefetch's score; a point only in one list gets 0 for the other.
    formula = {"sum": ["$score[0]", {"mult": [2, "$score[1]"]}]}
    prefetch = [
        {"query": VECTOR, "using": "cos", "limit": 12},
        {"query": [-0.1, 0.4, 0.2, -0.3], "using": "l2", "limit": 12},
    ]
    keel = keel_query(engines, formula_body(formula, prefetch=prefetch, score_threshold=-2.0))
    edge_prefetches = [
        qdrant_edge.Prefetch(limit=12, query=qdrant_edge.Query.Nearest(VECTOR, "cos")),
        qdrant_edge.Prefetch(
            limit=12, query=qdrant_edge.Query.Nearest([-0.1, 0.4, 0.2, -0.3], "l2")
        ),
    ]
    expression = E.Sum([E.Variable("$score[0]"), E.Mult([E.Constant(2), E.Variable("$score[1]")])])
    edge = edge_query(
        engines,
        edge_formula_request(expression, prefetches=edge_prefetches, score_threshold=-2.0),
    )
    assert keel and all(score >= -2.0 for _, score in keel)
    assert_same(keel, edge)


@pytest.mark.parametrize(
    ("formula", "edge_expression"),
    [
        ("$nope", lambda: E.Variable("$nope")),
        ("$score[]", lambda: E.Variable("$score[]")),
        ({"lin_decay": {"x": "rank", "midpoint": 1.5}}, None),
        ({"exp_decay": {"x": "rank", "midpoint": 1.0}}, None),
        ({"gauss_decay": {"x": "rank", "scale": 0}}, None),
        ({"datetime": "not a date"}, lambda: E.Datetime("not a date")),
        ({"datetime": "2024-13-01"}, lambda: E.Datetime("2024-13-01")),
        ({"datetime": "2024-01-01Tjunk"}, lambda: E.Datetime("2024-01-01Tjunk")),
    ],
)
def test_compile_errors_read_as_qdrant(engines, formula, edge_expression):
    with pytest.raises(BadRequest) as keel_error:
        keel_query(engines, formula_body(formula))
    if edge_expression is None:  # the decay checks, with edge's Decay arguments
        decay = next(iter(formula.values()))
        kind = next(iter(formula))

        def expression() -> Any:
            return E.Decay(
                DECAY_KINDS[kind.removesuffix("_decay")],
                E.Variable("rank"),
                None,
                decay.get("midpoint"),
                None if decay.get("scale") is None else float(decay["scale"]),
            )

    else:
        expression = edge_expression
    with pytest.raises(Exception) as edge_error:
        edge_query(engines, edge_formula_request(expression()))
    assert str(edge_error.value) == f"failed to parse formula: {keel_error.value}"


def variable_error(expected: str, key: str, detail: str) -> str:
    return (
        f"Expected {expected} value for {key} in the payload and/or in the formula defaults. "
        f"Error: {detail}"
    )


def non_finite(expression: str) -> str:
    return f"The expression {expression} produced a non-finite number"


@pytest.mark.parametrize(
    ("formula", "defaults", "message"),
    [
        (
            "absent",
            None,
            variable_error("number", "absent", "No value found in a payload nor defaults"),
        ),
        (
            "tag",
            None,
            variable_error("number", "tag", "Value is not a number"),
        ),
        (
            "rank",
            {"rank": 1},
            None,  # a payload value wins over its default: no error
        ),
        (
            {"div": {"left": 1, "right": 0}},
            None,
            "The expression 1/0 = inf produced a non-finite number",
        ),
        ({"sqrt": -3}, None, "The expression √-3 = NaN produced a non-finite number"),
        ({"ln": 0}, None, "The expression ln(0) = -inf produced a non-finite number"),
        ({"log10": -1}, None, "The expression log10(-1) = NaN produced a non-finite number"),
        (
            {"pow": {"base": -1, "exponent": 0.5}},
            None,
            "The expression -1^0.5 = NaN produced a non-finite number",
        ),
        ({"exp": 1000}, None, "The expression exp(1000) = inf produced a non-finite number"),
        (
            {"pow": {"base": 10, "exponent": 39}},
            None,
            non_finite("1000000000000000000000000000000000000000 as f32 = inf"),
        ),
        (
            {"geo_distance": {"origin": {"lon": 0, "lat": 0}, "to": "absent"}},
            {"absent": "x"},  # a default is converted as a payload value is
            variable_error(
                "geo point", "absent", 'invalid type: string "x", expected struct GeoPointShadow'
            ),
        ),
        (
            {"datetime_key": "rank"},
            None,
            variable_error("datetime", "rank", "Value is not a string"),
        ),
        (
            {"datetime_key": "tag"},
            None,
            variable_error("datetime", "tag", "input contains invalid characters"),
        ),
    ],
)
def test_evaluation_errors(engines, formula, defaults, message):
    body = formula_body(formula, defaults)
    if message is None:
        assert len(keel_query(engines, body)) == 15
        return
    with pytest.raises(BadRequest) as keel_error:
        keel_query(engines, body)
    assert str(keel_error.value) == message


def test_shortcuts_skip_what_they_do_not_evaluate(engines):
    # `mult` stops at a 0 factor and `div` at a 0 numerator: the missing key is never read.
    formula = {"sum": [{"mult": [0, "absent"]}, {"div": {"left": 0, "right": "absent"}}, 1]}
    assert {score for _, score in keel_query(engines, formula_body(formula))} == {1.0}


def test_formula_needs_prefetches(engines):
    body = {"query": {"formula": "$score"}}
    with pytest.raises(BadRequest, match="cannot apply Formula without prefetches"):
        keel_query(engines, body)


def test_variables_parse_as_qdrant():
    assert formulas.parse_variable("$score") == formulas.ScoreOf(0)
    assert formulas.parse_variable("$score[2]") == formulas.ScoreOf(2)
    assert str(formulas.parse_variable("a.b[0]")) == "a.b[0]"
    for text, message in [
        ("$score.x", "Invalid reserved variable: $score.x"),
        ("$score[1][2]", "Invalid reserved variable: $score[1][2]"),
        ("$other", "Invalid reserved word: $other"),
        ("", "Invalid payload variable: "),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("$", r"\$")):
            formulas.parse_variable(text)


def test_rust_display_of_numbers():
    assert formulas.rust_display(1.0) == "1"
    assert formulas.rust_display(-0.5) == "-0.5"
    assert formulas.rust_display(1e20) == "100000000000000000000"
    assert formulas.rust_display(1e-7) == "0.0000001"
    assert formulas.rust_display(float("nan")) == "NaN"
    assert formulas.rust_display(float("-inf")) == "-inf"


# ---- relevance feedback ---------------------------------------------------------------------

FEEDBACK_EXAMPLES = [
    ([0.5, 0.1, -0.2, 0.3], 0.9),
    ([-0.4, 0.2, 0.6, 0.0], 0.35),
    ([0.1, -0.5, 0.2, 0.8], 0.35),  # equal scores: no pair between these two
    ([0.0, 0.3, 0.3, -0.6], 0.1),
]


@pytest.mark.parametrize("using", sorted(DISTANCES))
@pytest.mark.parametrize("coefficients", [(1.0, 1.5, 0.7), (0.2, 0.0, -1.3), (1.0, 100.0, 100.0)])
def test_relevance_feedback_matches_qdrant(engines, using, coefficients):
    a, b, c = coefficients
    body = {
        "query": {
            "relevance_feedback": {
                "target": VECTOR,
                "feedback": [{"example": e, "score": s} for e, s in FEEDBACK_EXAMPLES],
                "strategy": {"naive": {"a": a, "b": b, "c": c}},
            }
        },
        "using": using,
        "limit": 12,
    }
    keel = keel_query(engines, body)
    query = qdrant_edge.FeedbackNaiveQuery(
        VECTOR,
        [qdrant_edge.FeedbackItem(e, s) for e, s in FEEDBACK_EXAMPLES],
        qdrant_edge.NaiveFeedbackStrategy(a, b, c),
    )
    request = qdrant_edge.QueryRequest(
        limit=12, query=qdrant_edge.Query.FeedbackNaive(query, using)
    )
    assert len(keel) == 12
    assert_same(keel, edge_query(engines, request))


def test_sparse_relevance_feedback_matches_qdrant(engines):
    target = {"indices": [1, 4, 7], "values": [0.5, -0.25, 1.0]}
    examples = [
        ({"indices": [4, 9], "values": [1.0, 0.5]}, 0.8),
        ({"indices": [1, 2, 7], "values": [-0.5, 0.3, 0.2]}, 0.3),
        ({"indices": [0, 11], "values": [0.9, 0.9]}, 0.1),
    ]
    body = {
        "query": {
            "relevance_feedback": {
                "target": target,
                "feedback": [{"example": e, "score": s} for e, s in examples],
                "strategy": {"naive": {"a": 0.6, "b": 1.1, "c": 0.9}},
            }
        },
        "using": "sp",
        "limit": 20,
    }
    keel = keel_query(engines, body)

    def edge_sparse(vector: dict) -> Any:
        return qdrant_edge.SparseVector(vector["indices"], vector["values"])

    query = qdrant_edge.FeedbackNaiveQuery(
        edge_sparse(target),
        [qdrant_edge.FeedbackItem(edge_sparse(e), s) for e, s in examples],
        qdrant_edge.NaiveFeedbackStrategy(0.6, 1.1, 0.9),
    )
    request = qdrant_edge.QueryRequest(limit=20, query=qdrant_edge.Query.FeedbackNaive(query, "sp"))
    assert len(keel) == 20
    assert_same(keel, edge_query(engines, request))


def test_relevance_feedback_with_one_example_is_the_nearest_query_scaled(engines):
    # No pair can form: the score is a * similarity (Qdrant's own test_feedback_pair_requirement).
    feedback = {
        "target": VECTOR,
        "feedback": [{"example": 3, "score": 0.85}],
        "strategy": {"naive": {"a": 1.0, "b": 100.0, "c": 100.0}},
    }
    keel = keel_query(engines, {"query": {"relevance_feedback": feedback}, "using": "dot"})
    nearest = keel_query(engines, {"query": VECTOR, "using": "dot", "limit": 11})
    # The example's point id is left out of the results, as every example id.
    expected = [hit for hit in nearest if hit[0] != 3][:10]
    assert [score for _, score in keel] == pytest.approx([score for _, score in expected])
    assert {point_id for point_id, _ in keel} == {point_id for point_id, _ in expected}


def test_relevance_feedback_by_missing_id_is_not_found(engines):
    feedback = {
        "target": VECTOR,
        "feedback": [{"example": 10_000, "score": 0.85}],
        "strategy": {"naive": {"a": 0.12, "b": 1.25, "c": 0.99}},
    }
    with pytest.raises(NotFound, match="No point with id 10000 found"):
        keel_query(engines, {"query": {"relevance_feedback": feedback}, "using": "dot"})


# ---- random formulas ------------------------------------------------------------------------

RANDOM_FORMULA_COUNT = 150
LEAVES = ["$score", "rank", "price", "one", 0, 1, 2.5, -0.75, 1e-3]
UNARY = ("neg", "abs", "sqrt", "exp", "log10", "ln")


def random_formula(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.15:
            return {"key": "tag", "match": {"value": rng.choice(["red", "blue"])}}
        if rng.random() < 0.1:
            return {"key": "rank", "range": {"gte": rng.choice([5, 20])}}
        if rng.random() < 0.1:
            origin = {"lon": rng.choice([13.4, -70.0]), "lat": rng.choice([52.5, 10.0])}
            return {"geo_distance": {"origin": origin, "to": "place"}}
        if rng.random() < 0.1:
            return {"sum": [{"datetime_key": "when"}, {"neg": {"datetime": "2024-04-01"}}]}
        return rng.choice(LEAVES)
    kind = rng.choice(("sum", "mult", "div", "pow", "decay", *UNARY))
    if kind in ("sum", "mult"):
        return {kind: [random_formula(rng, depth - 1) for _ in range(rng.randint(1, 3))]}
    if kind in UNARY:
        return {kind: random_formula(rng, depth - 1)}
    if kind == "div":
        div = {"left": random_formula(rng, depth - 1), "right": random_formula(rng, depth - 1)}
        if rng.random() < 0.5:
            div["by_zero_default"] = rng.choice([0, 4.5])
        return {"div": div}
    if kind == "pow":
        return {"pow": {"base": random_formula(rng, depth - 1), "exponent": rng.choice([2, 0.5])}}
    decay = {"x": random_formula(rng, depth - 1)}
    for name, values in (("target", [3, -1.5]), ("scale", [0.5, 10]), ("midpoint", [0.2, 0.9])):
        if rng.random() < 0.5:
            decay[name] = rng.choice(values)
    return {rng.choice(("lin_decay", "exp_decay", "gauss_decay")): decay}


def to_edge_expression(data: Any) -> Any:
    """The JSON of random_formula as qdrant_edge's Expression."""
    if type(data) in (int, float):
        return E.Constant(float(data))
    if type(data) is str:
        return E.Variable(data)
    if "key" in data:
        if "match" in data:
            check = {"match": qdrant_edge.MatchValue(data["match"]["value"])}
        else:
            check = {"range": qdrant_edge.RangeFloat(gte=float(data["range"]["gte"]))}
        return E.Condition(qdrant_edge.FieldCondition(data["key"], **check))
    [(kind, value)] = data.items()
    if kind == "geo_distance":
        origin = qdrant_edge.GeoPoint(lon=value["origin"]["lon"], lat=value["origin"]["lat"])
        return E.GeoDistance(origin, value["to"])
    if kind == "datetime_key":
        return E.DatetimeKey(value)
    if kind == "datetime":
        return E.Datetime(value)
    if kind in ("sum", "mult"):
        terms = [to_edge_expression(item) for item in value]
        return E.Sum(terms) if kind == "sum" else E.Mult(terms)
    if kind in UNARY:
        unary = {"neg": E.Neg, "abs": E.Abs, "sqrt": E.Sqrt, "exp": E.Exp}
        unary |= {"log10": E.Log10, "ln": E.Ln}
        return unary[kind](to_edge_expression(value))
    if kind == "div":
        by_zero = value.get("by_zero_default")
        return E.Div(
            to_edge_expression(value["left"]),
            to_edge_expression(value["right"]),
            None if by_zero is None else float(by_zero),
        )
    if kind == "pow":
        return E.Pow(to_edge_expression(value["base"]), to_edge_expression(value["exponent"]))
    target = value.get("target")
    return E.Decay(
        DECAY_KINDS[kind.removesuffix("_decay")],
        to_edge_expression(value["x"]),
        None if target is None else to_edge_expression(target),
        None if value.get("midpoint") is None else float(value["midpoint"]),
        None if value.get("scale") is None else float(value["scale"]),
    )


def test_random_formulas_match_qdrant(engines):
    """Scores equal where both answer; where one fails, both fail (edge words evaluation
    errors differently, see the module docstring)."""
    rng = random.Random(20_260_517)
    defaults = {"price": 1.25}
    answered = 0
    for _ in range(RANDOM_FORMULA_COUNT):
        formula = random_formula(rng, depth=3)
        try:
            keel: Any = keel_query(engines, formula_body(formula, defaults))
        except BadRequest as error:
            keel = error
        try:
            edge: Any = edge_query(
                engines, edge_formula_request(to_edge_expression(formula), defaults)
            )
        except Exception as error:  # noqa: BLE001 (qdrant_edge raises bare Exceptions)
            edge = error
        assert isinstance(keel, BadRequest) == isinstance(edge, Exception), (formula, keel, edge)
        if not isinstance(keel, BadRequest):
            answered += 1
            assert_same(keel, edge)
    # Both outcomes are exercised: most formulas answer, some fail to evaluate.
    assert RANDOM_FORMULA_COUNT // 2 < answered < RANDOM_FORMULA_COUNT, answered


def test_random_relevance_feedback_matches_qdrant(engines):
    rng = random.Random(20_260_518)
    for _ in range(30):
        using = rng.choice(sorted(DISTANCES))
        target = [round(rng.uniform(-1, 1), 3) for _ in range(DIM)]
        examples = [
            ([round(rng.uniform(-1, 1), 3) for _ in range(DIM)], rng.choice([0.0, 0.2, 0.5, 1.0]))
            for _ in range(rng.randint(1, 5))
        ]
        a, b, c = rng.uniform(-1, 2), rng.choice([0.0, 0.5, 1.0, 2.5]), rng.uniform(-2, 2)
        body = {
            "query": {
                "relevance_feedback": {
                    "target": target,
                    "feedback": [{"example": e, "score": s} for e, s in examples],
                    "strategy": {"naive": {"a": a, "b": b, "c": c}},
                }
            },
            "using": using,
            "limit": 8,
        }
        query = qdrant_edge.FeedbackNaiveQuery(
            target,
            [qdrant_edge.FeedbackItem(e, s) for e, s in examples],
            qdrant_edge.NaiveFeedbackStrategy(a, b, c),
        )
        request = qdrant_edge.QueryRequest(
            limit=8, query=qdrant_edge.Query.FeedbackNaive(query, using)
        )
        assert_same(keel_query(engines, body), edge_query(engines, request))
