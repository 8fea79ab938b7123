"""A vector's `datatype` (float16, uint8) against qdrant-edge-py, Qdrant's engine in process.

Goal: with a datatype, Keel stores, shows and scores vectors as Qdrant 1.19 does
(engine/vectors/scores.py says how, from Qdrant's source): stored values rounded to the type;
the query preprocessed for the type and rounded to it as well; a uint8 Cosine vector kept as
given and scored by true cosine. Plain vectors and multivectors (MaxSim), on every distance
(Manhattan has no graph), through the graph search, the exact search, a prefetch's rerank,
recommend, discover, context and MMR (which Qdrant scores in float32); retrieved vectors must
be the same numbers.

Method: seeded points (values past both ends of uint8, fractions float16 rounds, a point
that uint8 makes all zeros) go into a Keel collection (through the wire parsers a request
goes through) and into an edge shard of the same config; seeded queries are asked of both
with a limit that keeps every point, so ties cannot cut differently. Scores must agree within
float32 rounding of sums taken in another order (far tighter than a float16 rounding of the
query, 1e-3 relative, which a query scored as float32 would show).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pytest

# The oracle is in the test extra: a missing one is an error, never a silent skip.
import qdrant_edge

from engine.ops import PayloadSelector, VectorSelector
from server.wire.collection_config import parse_create_collection
from server.wire.query import parse_query_request
from server.wire.upsert import build_upsert, parse_upsert
from tests.unit.engine_helpers import open_catalog

DIM = 6
POINT_COUNT = 30
QUERY_COUNT = 8
SEED = 1717
NAME = "v"
CASES = [
    (distance, datatype, is_multi)
    for distance in ("Dot", "Cosine", "Euclid", "Manhattan")
    for datatype in ("float16", "uint8")
    for is_multi in (False, True)
]
SCORE_TOLERANCE = {"rel": 1e-5, "abs": 1e-5}


@dataclass
class Engines:
    distance: str
    datatype: str
    is_multi: bool
    loop: asyncio.AbstractEventLoop
    collection: Any
    shard: Any

    def keel_query(self, body: dict[str, Any]) -> list[tuple[int, float]]:
        result = self.loop.run_until_complete(self.collection.query(parse_query_request(body), {}))
        return [(point.id, point.score) for point in result.points]

    def edge_query(self, **request: Any) -> list[tuple[int, float]]:
        hits = self.shard.query(qdrant_edge.QueryRequest(limit=POINT_COUNT, **request))
        return [(hit.id, hit.score) for hit in hits]


def random_vector(rng: random.Random, datatype: str) -> list[float]:
    if datatype == "uint8":  # below 0 and above 255 too: `x as u8` saturates
        return [round(rng.uniform(-20.0, 280.0), 2) for _ in range(DIM)]
    return [round(rng.uniform(-2.0, 2.0), 4) for _ in range(DIM)]


def random_value(rng: random.Random, datatype: str, is_multi: bool) -> Any:
    if not is_multi:
        return random_vector(rng, datatype)
    return [random_vector(rng, datatype) for _ in range(rng.randint(1, 3))]


def make_points(datatype: str, is_multi: bool) -> list[dict[str, Any]]:
    rng = random.Random(f"{SEED} points {datatype} {is_multi}")
    points = [
        {"id": index, "vector": {NAME: random_value(rng, datatype, is_multi)}}
        for index in range(1, POINT_COUNT)
    ]
    negative = [-3.5] * DIM  # all zeros as uint8: a zero vector's cosine is 0 in Qdrant
    points.append({"id": POINT_COUNT, "vector": {NAME: [negative] if is_multi else negative}})
    return points


def vector_params(distance: str, datatype: str, is_multi: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"size": DIM, "distance": distance, "datatype": datatype}
    if is_multi:
        params["multivector_config"] = {"comparator": "max_sim"}
    return params


def edge_shard(path: Any, distance: str, datatype: str, is_multi: bool) -> Any:
    extra = {}
    if is_multi:
        comparator = qdrant_edge.MultiVectorComparator.MaxSim
        extra["multivector_config"] = qdrant_edge.MultiVectorConfig(comparator)
    params = qdrant_edge.EdgeVectorParams(
        size=DIM,
        distance=getattr(qdrant_edge.Distance, distance),
        datatype=getattr(qdrant_edge.VectorStorageDatatype, datatype.capitalize()),
        **extra,
    )
    config = qdrant_edge.EdgeConfig(vectors={NAME: params})
    return qdrant_edge.EdgeShard.create(str(path), config)


@pytest.fixture(scope="module", params=CASES, ids=lambda case: "-".join(map(str, case)))
def engines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    distance, datatype, is_multi = request.param
    root = tmp_path_factory.mktemp(f"datatype-{distance}-{datatype}-{is_multi}")
    points = make_points(datatype, is_multi)
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(root / "keel"))
    body = {"vectors": {NAME: vector_params(distance, datatype, is_multi)}}
    loop.run_until_complete(catalog.create("c", parse_create_collection(body)))
    collection = catalog.get("c")
    op = build_upsert(parse_upsert({"points": points}), collection.config)
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    shard = edge_shard(root / "edge", distance, datatype, is_multi)
    edge_points = [qdrant_edge.Point(p["id"], p["vector"], {}) for p in points]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(edge_points))
    yield Engines(distance, datatype, is_multi, loop, collection, shard)
    shard.close()
    loop.run_until_complete(catalog.close())
    loop.close()


def queries(engines: Engines, label: str) -> list[Any]:
    rng = random.Random(f"{SEED} {label} {engines.distance} {engines.datatype} {engines.is_multi}")
    return [random_value(rng, engines.datatype, engines.is_multi) for _ in range(QUERY_COUNT)]


def assert_same_hits(
    request: Any, keel: list[tuple[int, float]], edge: list[tuple[int, float]]
) -> None:
    """Every point, each with edge's score, best first (equal scores in any order)."""
    assert len(keel) == len(edge) == POINT_COUNT, request
    assert dict(keel) == pytest.approx(dict(edge), **SCORE_TOLERANCE), request
    assert [s for _, s in keel] == pytest.approx([s for _, s in edge], **SCORE_TOLERANCE), request


@pytest.mark.parametrize("is_exact", [False, True], ids=["graph", "exact"])
def test_nearest_scores_agree_with_qdrant_edge(engines: Engines, is_exact: bool) -> None:
    """A nearest query (graph search or exact; a multivector is always scanned)."""
    for query in queries(engines, "nearest"):
        body = {"query": query, "using": NAME, "limit": POINT_COUNT, "params": {"exact": is_exact}}
        edge = engines.edge_query(
            query=qdrant_edge.Query.Nearest(query, NAME),
            params=qdrant_edge.SearchParams(exact=is_exact),
        )
        assert_same_hits(body, engines.keel_query(body), edge)


def test_a_prefetch_reranked_on_the_same_vector_agrees(engines: Engines) -> None:
    """The rerank scores the prefetch's candidates (every point) with the root's query."""
    for first, second in zip(queries(engines, "prefetch"), queries(engines, "root")):
        prefetch = {"query": first, "using": NAME, "limit": POINT_COUNT}
        body = {"prefetch": prefetch, "query": second, "using": NAME, "limit": POINT_COUNT}
        edge_prefetch = qdrant_edge.Prefetch(
            limit=POINT_COUNT, query=qdrant_edge.Query.Nearest(first, NAME)
        )
        edge = engines.edge_query(
            prefetches=[edge_prefetch], query=qdrant_edge.Query.Nearest(second, NAME)
        )
        assert_same_hits(body, engines.keel_query(body), edge)


def test_recommend_best_score_agrees(engines: Engines) -> None:
    """Each example is converted as a query is (Qdrant's CustomQueryScorer)."""
    examples = queries(engines, "recommend")
    for positive, negative in zip(examples[0::2], examples[1::2]):
        recommend = {"positive": [positive], "negative": [negative], "strategy": "best_score"}
        body = {"query": {"recommend": recommend}, "using": NAME, "limit": POINT_COUNT}
        edge_recommend = qdrant_edge.RecommendQuery(positives=[positive], negatives=[negative])
        edge = engines.edge_query(query=qdrant_edge.Query.RecommendBestScore(edge_recommend, NAME))
        assert_same_hits(body, engines.keel_query(body), edge)


def test_stored_vectors_read_back_as_qdrant_shows_them(engines: Engines) -> None:
    """Retrieve gives Qdrant's numbers: rounded to the type, a uint8 Cosine vector as given
    (cut to bytes, not unit length)."""
    ids = list(range(1, POINT_COUNT + 1))
    records = engines.loop.run_until_complete(
        engines.collection.retrieve(ids, PayloadSelector(False), VectorSelector(True))
    )
    keel = {record.id: record.vectors[NAME].tolist() for record in records}
    edge = {record.id: record.vector[NAME] for record in engines.shard.retrieve(ids, False, True)}
    assert keel == edge


def test_sum_scores_discover_and_context_agree(engines: Engines) -> None:
    """The other custom scores over the same similarities (examples converted as queries)."""
    examples = queries(engines, "custom")
    target, positive, negative = examples[0], examples[1], examples[2]
    pair = {"positive": positive, "negative": negative}
    edge_pair = qdrant_edge.ContextPair(positive, negative)
    cases = [
        (
            {
                "recommend": {
                    "positive": [positive],
                    "negative": [negative],
                    "strategy": "sum_scores",
                }
            },
            qdrant_edge.Query.RecommendSumScores(
                qdrant_edge.RecommendQuery(positives=[positive], negatives=[negative]), NAME
            ),
        ),
        (
            {"discover": {"target": target, "context": [pair]}},
            qdrant_edge.Query.Discover(qdrant_edge.DiscoverQuery(target, [edge_pair]), NAME),
        ),
        (
            {"context": [pair]},
            qdrant_edge.Query.Context(qdrant_edge.ContextQuery([edge_pair]), NAME),
        ),
    ]
    for query, edge_query in cases:
        body = {"query": query, "using": NAME, "limit": POINT_COUNT}
        assert_same_hits(body, engines.keel_query(body), engines.edge_query(query=edge_query))


def test_mmr_agrees(engines: Engines) -> None:
    """MMR over the nearest candidates: relevance and the candidates' pairwise similarities
    (stored vectors as queries) in the storage type; hits keep their search scores."""
    for query in queries(engines, "mmr")[:4]:
        mmr = {"diversity": 0.5, "candidates_limit": POINT_COUNT}
        body = {"query": {"nearest": query, "mmr": mmr}, "using": NAME, "limit": 10}
        edge = engines.shard.query(
            qdrant_edge.QueryRequest(limit=10, query=qdrant_edge.Mmr(query, 0.5, POINT_COUNT, NAME))
        )
        edge_hits = [(hit.id, hit.score) for hit in edge]
        keel = engines.keel_query(body)
        assert [i for i, _ in keel] == [i for i, _ in edge_hits], body
        assert [s for _, s in keel] == pytest.approx([s for _, s in edge_hits], **SCORE_TOLERANCE)
