"""Every query variant Keel runs, through qdrant-client, compared with its local mode.

The same points go to a real Keel server and to `QdrantClient(":memory:")`; each query
(by id, recommend with each strategy, prefetch with RRF, DBSF and rescoring, order_by,
batches, groups, lookup_from, scroll with order_by) must give the same ids in the same order
and scores within 1e-4. Searches are exact (`SearchParams(exact=True)`) wherever the order
must match exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess

# Local mode warns that it ignores search params; it always searches exactly anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")
EXACT = models.SearchParams(exact=True)
COLORS = ("red", "green", "blue")
DISTANCES = {
    "cos": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "l2": models.Distance.EUCLID,
}


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QdrantClient, ...]]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_query") / "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-compatibility warning fails the test
        keel = QdrantClient(url=server.url, timeout=30)
    oracle = QdrantClient(":memory:")
    config = {name: models.VectorParams(size=4, distance=d) for name, d in DISTANCES.items()}
    rng = np.random.default_rng(11)
    points = [
        models.PointStruct(
            id=i,
            vector={name: rng.normal(size=4).tolist() for name in DISTANCES},
            payload={
                "n": int(rng.integers(0, 20)),
                "color": COLORS[i % 3],
                "tags": [COLORS[i % 3], COLORS[(i + 1) % 3]] if i % 4 == 0 else COLORS[i % 3],
                "at": f"2024-01-{1 + i % 28:02d}T00:00:00Z",
                "price": float(i % 7) + 0.5,
            },
        )
        for i in range(60)
    ]
    for client in (keel, oracle):
        client.create_collection("q", vectors_config=config)
        client.upsert("q", points, wait=True)
        client.create_collection("other", vectors_config=config)
        client.upsert("other", points[:5], wait=True)
    yield keel, oracle
    keel.close()
    oracle.close()
    assert server.terminate() == 0


def scored(points: list[models.ScoredPoint]) -> list[tuple]:
    return [(p.id, p.score) for p in points]


def assert_same(keel: list[tuple], oracle: list[tuple]) -> None:
    assert [item[0] for item in keel] == [item[0] for item in oracle]
    np.testing.assert_allclose(
        [item[1] for item in keel], [item[1] for item in oracle], rtol=1e-4, atol=1e-4
    )


def compare_query(clients, **kwargs) -> list[tuple]:
    answers = [scored(client.query_points("q", **kwargs).points) for client in clients]
    assert_same(*answers)
    return answers[0]


@pytest.mark.parametrize("using", list(DISTANCES))
def test_query_by_point_id_excludes_that_point(clients, using):
    hits = compare_query(clients, query=3, using=using, limit=7, search_params=EXACT)
    assert 3 not in [point_id for point_id, _ in hits] and len(hits) == 7


@pytest.mark.parametrize("using", list(DISTANCES))
@pytest.mark.parametrize("strategy", ["average_vector", "best_score", "sum_scores"])
def test_recommend_matches_local_mode(clients, using, strategy):
    query = models.RecommendQuery(
        recommend=models.RecommendInput(
            positive=[1, [0.5, -0.2, 0.1, 0.9]],
            negative=[2],
            strategy=models.RecommendStrategy(strategy),
        )
    )
    hits = compare_query(clients, query=query, using=using, limit=10, search_params=EXACT)
    assert {1, 2}.isdisjoint(point_id for point_id, _ in hits)


@pytest.mark.parametrize("using", list(DISTANCES))
def test_discover_matches_local_mode(clients, using):
    pairs = [
        models.ContextPair(positive=1, negative=2),
        models.ContextPair(positive=[0.5, -0.2, 0.1, 0.9], negative=7),
    ]
    query = models.DiscoverQuery(discover=models.DiscoverInput(target=9, context=pairs))
    hits = compare_query(clients, query=query, using=using, limit=10, search_params=EXACT)
    assert {1, 2, 7, 9}.isdisjoint(point_id for point_id, _ in hits)


@pytest.mark.parametrize("using", list(DISTANCES))
def test_context_matches_local_mode(clients, using):
    """Points inside the context zone all score 0, so ties are compared as sets."""
    pairs = [
        models.ContextPair(positive=1, negative=2),
        models.ContextPair(positive=3, negative=[0.5, -0.2, 0.1, 0.9]),
    ]
    query = models.ContextQuery(context=pairs)
    answers = [
        sorted(
            (round(p.score, 4), p.id)
            for p in client.query_points(
                "q", query=query, using=using, limit=100, search_params=EXACT
            ).points
        )
        for client in clients
    ]
    assert [point_id for _, point_id in answers[0]] == [point_id for _, point_id in answers[1]]
    np.testing.assert_allclose([s for s, _ in answers[0]], [s for s, _ in answers[1]], atol=1e-4)
    assert len(answers[0]) == 60 - 3  # every point but the three examples given by id


@pytest.mark.parametrize("using", list(DISTANCES))
@pytest.mark.parametrize("diversity", [None, 0.0, 0.7, 1.0])
def test_mmr_matches_local_mode(clients, using, diversity):
    mmr = models.Mmr(diversity=diversity, candidates_limit=25)
    query = models.NearestQuery(nearest=[0.3, -0.5, 0.8, 0.1], mmr=mmr)
    compare_query(clients, query=query, using=using, limit=8, search_params=EXACT)


def test_mmr_by_point_id_with_filter_and_offset(clients):
    query = models.NearestQuery(nearest=5, mmr=models.Mmr(diversity=0.5))
    color = models.Filter(must_not=[models.FieldCondition(key="color", match={"value": "red"})])
    hits = compare_query(
        clients, query=query, using="cos", query_filter=color, limit=6, offset=2,
        search_params=EXACT,
    )  # fmt: skip
    assert 5 not in [point_id for point_id, _ in hits]


def test_recommend_with_only_positives_and_a_filter(clients):
    query = models.RecommendQuery(recommend=models.RecommendInput(positive=[4, 5]))
    color = models.Filter(must=[models.FieldCondition(key="color", match={"value": "red"})])
    compare_query(clients, query=query, using="cos", query_filter=color, search_params=EXACT)


@pytest.mark.parametrize("fusion", [models.Fusion.RRF, models.Fusion.DBSF])
def test_fusion_of_prefetches(clients, fusion):
    prefetch = [
        models.Prefetch(query=[0.1, 0.2, 0.3, 0.4], using="cos", limit=15, params=EXACT),
        models.Prefetch(query=[0.4, -0.3, 0.2, 0.1], using="dot", limit=12, params=EXACT),
    ]
    compare_query(clients, prefetch=prefetch, query=models.FusionQuery(fusion=fusion), limit=8)


def test_rrf_with_k_and_weights(clients):
    prefetch = [
        models.Prefetch(query=7, using="cos", limit=10, params=EXACT),
        models.Prefetch(query=8, using="dot", limit=10, params=EXACT),
    ]
    query = models.RrfQuery(rrf=models.Rrf(k=5, weights=[1.0, 3.0]))
    hits = compare_query(clients, prefetch=prefetch, query=query, limit=10)
    assert {7, 8}.isdisjoint(point_id for point_id, _ in hits)


@pytest.mark.parametrize("using", ["cos", "l2"])
def test_prefetch_rescored_by_the_outer_query(clients, using):
    inner = models.Prefetch(
        prefetch=[models.Prefetch(query=[1, 0, 0, 0], using="dot", limit=30, params=EXACT)],
        query=[0.3, 0.3, -0.1, 0.2],
        using="cos",
        limit=20,
        params=EXACT,
    )
    compare_query(clients, prefetch=inner, query=[0.2, 0.1, 0.9, -0.5], using=using, limit=6)


def test_filtered_prefetch_sees_the_outer_filter(clients):
    cheap = models.Filter(must=[models.FieldCondition(key="price", range=models.Range(lt=3))])
    prefetch = models.Prefetch(query=[0.1, 0.2, 0.3, 0.4], using="dot", limit=20, params=EXACT)
    compare_query(
        clients,
        prefetch=prefetch,
        query=models.FusionQuery(fusion=models.Fusion.RRF),
        query_filter=cheap,
        limit=10,
    )


@pytest.mark.parametrize("direction", [models.Direction.ASC, models.Direction.DESC])
def test_order_by_query_and_scroll(clients, direction):
    order_by = models.OrderBy(key="price", direction=direction, start_from=2)
    keel, oracle = (
        c.query_points("q", query=models.OrderByQuery(order_by=order_by), limit=9) for c in clients
    )
    assert [(p.id, p.order_value) for p in keel.points] == [
        (p.id, p.order_value) for p in oracle.points
    ]
    assert all(p.score == 1.0 for p in keel.points)
    pages = [
        c.scroll("q", order_by=models.OrderBy(key="at", direction=direction), limit=5)
        for c in clients
    ]
    assert [(r.id, r.order_value) for r in pages[0][0]] == [
        (r.id, r.order_value) for r in pages[1][0]
    ]
    assert pages[0][1] is None


def test_query_batch(clients):
    requests = [
        models.QueryRequest(query=[0.1, 0.2, 0.3, 0.4], using="cos", limit=4, params=EXACT),
        models.QueryRequest(query=5, using="dot", limit=3, params=EXACT),
    ]
    answers = [c.query_batch_points("q", requests) for c in clients]
    for keel, oracle in zip(*answers):
        assert_same(scored(keel.points), scored(oracle.points))


@pytest.mark.parametrize("group_by", ["color", "tags"])
def test_query_groups(clients, group_by):
    answers = [
        c.query_points_groups(
            "q",
            query=[0.5, 0.5, 0.1, -0.2],
            using="cos",
            group_by=group_by,
            limit=3,
            group_size=2,
            search_params=EXACT,
        )
        for c in clients
    ]
    keel, oracle = ([(g.id, scored(g.hits)) for g in answer.groups] for answer in answers)
    assert [g[0] for g in keel] == [g[0] for g in oracle]
    for (_, keel_hits), (_, oracle_hits) in zip(keel, oracle):
        assert_same(keel_hits, oracle_hits)


def test_lookup_from_takes_vectors_from_another_collection(clients):
    compare_query(
        clients,
        query=2,
        using="cos",
        lookup_from=models.LookupLocation(collection="other", vector="dot"),
        limit=5,
        search_params=EXACT,
    )
    # Point 2 of "other" has the same vector as point 2 here: found first, not left out,
    # since only ids looked up in the queried collection are excluded.
    hits = compare_query(
        clients,
        query=2,
        using="cos",
        lookup_from=models.LookupLocation(collection="other"),
        limit=5,
        search_params=EXACT,
    )
    assert hits[0][0] == 2


def test_query_without_query_lists_points_by_id(clients):
    answers = [[p.id for p in c.query_points("q", limit=5, offset=2).points] for c in clients]
    assert answers[0] == answers[1] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("fusion", [models.Fusion.RRF, models.Fusion.DBSF])
def test_fusion_of_a_distance_and_a_similarity(clients, fusion):
    prefetch = [
        models.Prefetch(query=[0.1, 0.2, 0.3, 0.4], using="l2", limit=15, params=EXACT),
        models.Prefetch(query=[0.4, -0.3, 0.2, 0.1], using="cos", limit=12, params=EXACT),
    ]
    compare_query(clients, prefetch=prefetch, query=models.FusionQuery(fusion=fusion), limit=8)


def test_groups_with_lookup(clients):
    lookup = models.WithLookup(collection="other", with_payload=["n"], with_vectors=False)
    answers = [
        c.query_points_groups(
            "q",
            query=[0.5, 0.5, 0.1, -0.2],
            using="dot",
            group_by="n",
            limit=20,
            group_size=1,
            with_lookup=lookup,
            search_params=EXACT,
        )
        for c in clients
    ]
    keel, oracle = (
        [(g.id, g.lookup and (g.lookup.id, g.lookup.payload)) for g in answer.groups]
        for answer in answers
    )
    assert keel == oracle
    assert any(lookup is not None for _, lookup in keel)


@pytest.mark.parametrize("using", list(DISTANCES))
def test_distance_matrix_matches_local_mode(clients, using):
    """With `sample` at least the points in play the sample is all of them: deterministic."""
    answers = [
        client.search_matrix_pairs("other", sample=10, limit=2, using=using) for client in clients
    ]
    keel, oracle = [[(p.a, p.b, p.score) for p in answer.pairs] for answer in answers]
    assert [pair[:2] for pair in keel] == [pair[:2] for pair in oracle] and len(keel) == 10
    np.testing.assert_allclose([p[2] for p in keel], [p[2] for p in oracle], atol=1e-4)
    red = models.Filter(must=[models.FieldCondition(key="color", match={"value": "red"})])
    offsets = [
        client.search_matrix_offsets("q", query_filter=red, sample=60, limit=3, using=using)
        for client in clients
    ]
    assert offsets[0].ids == offsets[1].ids and len(offsets[0].ids) == 20
    assert offsets[0].offsets_row == offsets[1].offsets_row
    assert offsets[0].offsets_col == offsets[1].offsets_col
    np.testing.assert_allclose(offsets[0].scores, offsets[1].scores, atol=1e-4)


def test_sample_query_draws_distinct_matching_points(clients):
    keel = clients[0]
    red = models.Filter(must=[models.FieldCondition(key="color", match={"value": "red"})])
    points = keel.query_points(
        "q", query=models.SampleQuery(sample=models.Sample.RANDOM), query_filter=red, limit=7
    ).points
    assert len({point.id for point in points}) == 7
    assert all(point.id % 3 == 0 and point.score == 1.0 for point in points)
