"""Formula and relevance feedback queries as users write them with qdrant-client
(`models.FormulaQuery`, `models.RelevanceFeedbackQuery`), against a real Keel server and
compared with qdrant-client's local mode (`QdrantClient(":memory:")`): the same ids in the
same order, scores within 1e-4. Error answers surface as qdrant-client's
`UnexpectedResponse` with Qdrant's status and text.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.keel_process import KeelProcess

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")
DISTANCES = {
    "cos": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "l2": models.Distance.EUCLID,
}
TARGET = [0.3, -0.1, 0.5, 0.2]


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QdrantClient, ...]]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_formula") / "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-compatibility warning fails the test
        keel = QdrantClient(url=server.url, timeout=30)
    oracle = QdrantClient(":memory:")
    config = {name: models.VectorParams(size=4, distance=d) for name, d in DISTANCES.items()}
    rng = np.random.default_rng(17)
    points = [
        models.PointStruct(
            id=i,
            vector={name: rng.normal(size=4).tolist() for name in DISTANCES},
            payload={
                "price": round(float(rng.uniform(0, 10)), 2),
                "color": ("red", "green", "blue")[i % 3],
                "at": f"2024-02-{1 + i % 28:02d}T12:00:00Z",
                "place": {"lon": 2.0 + i / 10, "lat": 48.0 + i / 20},
            },
        )
        for i in range(50)
    ]
    for client in (keel, oracle):
        client.create_collection("f", vectors_config=config)
        client.upsert("f", points, wait=True)
    yield keel, oracle
    keel.close()
    oracle.close()
    assert server.terminate() == 0


def both(clients, **kwargs) -> list[list[tuple]]:
    answers = []
    for client in clients:
        points = client.query_points("f", **kwargs).points
        answers.append([(point.id, point.score) for point in points])
    keel, oracle = answers
    assert [point_id for point_id, _ in keel] == [point_id for point_id, _ in oracle]
    assert [score for _, score in keel] == pytest.approx([s for _, s in oracle], abs=1e-4)
    assert keel
    return answers


PREFETCH = models.Prefetch(
    query=TARGET, using="dot", limit=30, params=models.SearchParams(exact=True)
)


def test_score_boost_with_a_condition_and_defaults(clients):
    formula = models.FormulaQuery(
        formula=models.SumExpression(
            sum=[
                "$score",
                models.MultExpression(mult=[0.1, "price"]),
                models.MultExpression(
                    mult=[
                        0.7,
                        models.FieldCondition(key="color", match=models.MatchValue(value="red")),
                    ]
                ),
            ]
        ),
        defaults={"price": 0.0},
    )
    both(clients, prefetch=PREFETCH, query=formula, limit=12)


def test_decays_geo_and_datetime(clients):
    formula = models.FormulaQuery(
        formula=models.SumExpression(
            sum=[
                models.GaussDecayExpression(
                    gauss_decay=models.DecayParamsExpression(
                        x=models.GeoDistance(
                            geo_distance=models.GeoDistanceParams(
                                origin=models.GeoPoint(lon=2.5, lat=48.5), to="place"
                            )
                        ),
                        scale=50_000,
                    )
                ),
                models.ExpDecayExpression(
                    exp_decay=models.DecayParamsExpression(
                        x=models.DatetimeKeyExpression(datetime_key="at"),
                        target=models.DatetimeExpression(datetime="2024-02-14T00:00:00Z"),
                        scale=86_400 * 5,
                        midpoint=0.4,
                    )
                ),
                models.LinDecayExpression(
                    lin_decay=models.DecayParamsExpression(x="price", target=5, scale=10)
                ),
            ]
        )
    )
    both(clients, prefetch=PREFETCH, query=formula, limit=12)


def test_arithmetic_over_two_prefetches(clients):
    prefetch = [
        PREFETCH,
        models.Prefetch(query=TARGET, using="l2", limit=20, params=models.SearchParams(exact=True)),
    ]
    formula = models.FormulaQuery(
        formula=models.SumExpression(
            sum=[
                models.DivExpression(
                    div=models.DivParams(left="$score[0]", right="price", by_zero_default=0)
                ),
                models.PowExpression(pow=models.PowParams(base="price", exponent=0.5)),
                models.NegExpression(neg=models.AbsExpression(abs="$score[1]")),
                models.LnExpression(ln=models.SumExpression(sum=["price", 1])),
                models.Log10Expression(log10=models.SumExpression(sum=["price", 1])),
                models.SqrtExpression(sqrt="price"),
                models.ExpExpression(exp=models.MultExpression(mult=["$score[0]", 0.01])),
            ]
        )
    )
    both(clients, prefetch=prefetch, query=formula, limit=15)


def test_a_missing_variable_is_a_400(clients):
    keel, _ = clients
    formula = models.FormulaQuery(formula=models.MultExpression(mult=["$score", "absent"]))
    with pytest.raises(UnexpectedResponse) as error:
        keel.query_points("f", prefetch=PREFETCH, query=formula)
    assert error.value.status_code == 400
    assert b"Expected number value for absent in the payload" in error.value.content


@pytest.mark.parametrize("using", sorted(DISTANCES))
def test_relevance_feedback(clients, using):
    query = models.RelevanceFeedbackQuery(
        relevance_feedback=models.RelevanceFeedbackInput(
            target=TARGET,
            feedback=[
                models.FeedbackItem(example=[0.5, 0.2, -0.3, 0.1], score=0.9),
                models.FeedbackItem(example=3, score=0.4),
                models.FeedbackItem(example=[-0.2, 0.4, 0.1, 0.6], score=0.05),
            ],
            strategy=models.NaiveFeedbackStrategy(
                naive=models.NaiveFeedbackStrategyParams(a=0.8, b=1.2, c=0.5)
            ),
        )
    )
    keel, _ = both(
        clients, query=query, using=using, limit=10, search_params=models.SearchParams(exact=True)
    )
    assert 3 not in {point_id for point_id, _ in keel}  # an example id is left out
