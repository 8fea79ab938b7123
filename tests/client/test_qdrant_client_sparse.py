"""Sparse vectors through qdrant-client, compared with its local mode.

A collection with one dense and two sparse vectors (one with `modifier: idf`) gets the same
points on a real Keel server and in `QdrantClient(":memory:")`; retrieve, sparse queries
(plain, idf, filtered) and hybrid dense + sparse prefetch with RRF fusion must give the same
ids in the same order and scores within 1e-4.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")
EXACT = models.SearchParams(exact=True)


def random_sparse(rng: np.random.Generator) -> models.SparseVector:
    count = int(rng.integers(1, 8))
    indices = rng.choice(40, size=count, replace=False)
    values = rng.uniform(0.1, 2.0, size=count)  # no ties: their order is not compared
    return models.SparseVector(indices=indices.tolist(), values=values.tolist())


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QdrantClient, ...]]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_sparse") / "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keel = QdrantClient(url=server.url, timeout=30)
    oracle = QdrantClient(":memory:")
    rng = np.random.default_rng(5)
    points = []
    for i in range(80):
        vector: dict = {"text": random_sparse(rng)}
        if i % 5:
            vector["dense"] = rng.normal(size=4).tolist()
        if i % 3:
            vector["bm"] = random_sparse(rng)
        points.append(models.PointStruct(id=i, vector=vector, payload={"n": i % 4}))
    for client in (keel, oracle):
        client.create_collection(
            "s",
            vectors_config={"dense": models.VectorParams(size=4, distance=models.Distance.DOT)},
            sparse_vectors_config={
                "text": models.SparseVectorParams(),
                "bm": models.SparseVectorParams(modifier=models.Modifier.IDF),
            },
        )
        client.upsert("s", points, wait=True)
    yield keel, oracle
    keel.close()
    oracle.close()
    assert server.terminate() == 0


def compare(clients, **kwargs) -> None:
    answers = [
        [(p.id, p.score) for p in client.query_points("s", **kwargs).points] for client in clients
    ]
    keel, oracle = answers
    assert [item[0] for item in keel] == [item[0] for item in oracle]
    np.testing.assert_allclose(
        [item[1] for item in keel], [item[1] for item in oracle], rtol=1e-4, atol=1e-4
    )


def test_retrieve_gives_the_same_vectors(clients):
    keel, oracle = (client.retrieve("s", list(range(10)), with_vectors=True) for client in clients)
    for mine, theirs in zip(keel, oracle, strict=True):
        assert mine.id == theirs.id
        assert set(mine.vector) == set(theirs.vector)
        for name in ("text", "bm"):
            if name in theirs.vector:
                assert mine.vector[name].indices == theirs.vector[name].indices
                np.testing.assert_allclose(mine.vector[name].values, theirs.vector[name].values)


@pytest.mark.parametrize("using", ["text", "bm"])
def test_sparse_query(clients, using):
    rng = np.random.default_rng(17)
    for _ in range(5):
        compare(clients, query=random_sparse(rng), using=using, limit=7)


def test_filtered_sparse_query(clients):
    query = models.SparseVector(indices=list(range(0, 40, 3)), values=[1.0] * 14)
    condition = models.FieldCondition(key="n", match=models.MatchValue(value=1))
    compare(clients, query=query, using="text", query_filter=models.Filter(must=[condition]))


def test_hybrid_prefetch_with_rrf(clients):
    rng = np.random.default_rng(23)
    for _ in range(5):
        compare(
            clients,
            prefetch=[
                models.Prefetch(
                    query=rng.normal(size=4).tolist(), using="dense", limit=15, params=EXACT
                ),
                models.Prefetch(query=random_sparse(rng), using="text", limit=15),
                models.Prefetch(query=random_sparse(rng), using="bm", limit=15),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=10,
        )


def test_sparse_query_rescoring_a_dense_prefetch(clients):
    rng = np.random.default_rng(29)
    for _ in range(3):
        compare(
            clients,
            prefetch=models.Prefetch(
                query=rng.normal(size=4).tolist(), using="dense", limit=30, params=EXACT
            ),
            query=random_sparse(rng),
            using="text",
            limit=8,
        )


@pytest.mark.parametrize("strategy", ["average_vector", "best_score", "sum_scores"])
def test_sparse_recommend(clients, strategy):
    query = models.RecommendQuery(
        recommend=models.RecommendInput(
            positive=[1, random_sparse(np.random.default_rng(3))],
            negative=[2],
            strategy=models.RecommendStrategy(strategy),
        )
    )
    compare(clients, query=query, using="text", limit=5)


def test_sparse_recommend_average_with_idf(clients):
    query = models.RecommendQuery(recommend=models.RecommendInput(positive=[4, 7], negative=[5]))
    compare(clients, query=query, using="bm", limit=6)


def test_sparse_discover(clients):
    """A point with no index in common with the target scores rank + 0.5: ties, whose
    order is not compared (the full answers are compared as sorted (score, id) lists)."""
    pairs = [models.ContextPair(positive=1, negative=2), models.ContextPair(positive=3, negative=4)]
    query = models.DiscoverQuery(discover=models.DiscoverInput(target=6, context=pairs))
    compare(clients, query=query, using="text", limit=4)
    answers = [
        sorted(
            (round(p.score, 4), p.id)
            for p in client.query_points("s", query=query, using="text", limit=100).points
        )
        for client in clients
    ]
    assert answers[0] == answers[1] and len(answers[0]) == 75


def test_sparse_context_and_mmr(clients):
    """Context scores tie at 0 inside the zone: compared as sorted (score, id) lists."""
    pairs = [models.ContextPair(positive=1, negative=2)]
    answers = [
        sorted(
            (round(p.score, 4), p.id)
            for p in client.query_points(
                "s", query=models.ContextQuery(context=pairs), using="text", limit=100
            ).points
        )
        for client in clients
    ]
    assert answers[0] == answers[1] and len(answers[0]) == 78
    mmr = models.NearestQuery(nearest=3, mmr=models.Mmr(diversity=0.6, candidates_limit=20))
    compare(clients, query=mmr, using="text", limit=6)


def test_sparse_distance_matrix(clients):
    red = models.Filter(must=[models.FieldCondition(key="n", match=models.MatchValue(value=1))])
    answers = [
        client.search_matrix_offsets("s", query_filter=red, sample=80, limit=2, using="text")
        for client in clients
    ]
    assert answers[0].ids == answers[1].ids and len(answers[0].ids) == 20
    keel = sorted(zip(answers[0].offsets_row, answers[0].offsets_col, answers[0].scores))
    oracle = sorted(zip(answers[1].offsets_row, answers[1].offsets_col, answers[1].scores))
    assert [pair[:2] for pair in keel] == [pair[:2] for pair in oracle]
    np.testing.assert_allclose([p[2] for p in keel], [p[2] for p in oracle], atol=1e-4)
