"""Multivectors (late interaction, MaxSim) through HTTP.

Covers creating a collection with `multivector_config` (echoed as Qdrant 1.19 echoes it),
upserts in every body form, retrieve/scroll returning matrices, vector updates and deletes,
Qdrant's errors for bad matrices (and that nothing is written then), and `query` with a matrix:
every distance, a plain vector as a one-row matrix, filters, `using`, `score_threshold`,
limit/offset, with_vector, and a dense prefetch reranked by MaxSim. Scores are compared with
qdrant-edge (Qdrant's engine in process) on the same points. Recommend, discover, context,
relevance feedback and mmr score over MaxSim, compared with qdrant-edge too; the distance
matrix scores samples by MaxSim.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge

from tests.api.conftest import Api

INFO = "/collections/{collection_name}"
QUERY = "/collections/{collection_name}/points/query"
UPDATE = "/collections/{collection_name}/points/vectors"
DELETE = "/collections/{collection_name}/points/vectors/delete"
MAX_SIM = {"comparator": "max_sim"}
DIM = 4
DISTANCES = ("Cosine", "Dot", "Euclid", "Manhattan")


def matrix(rng: random.Random, rows: int) -> list[list[float]]:
    return [[round(rng.uniform(-1, 1), 3) for _ in range(DIM)] for _ in range(rows)]


def points_of(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "vector": {
                "mv": matrix(rng, rng.randint(1, 5)),
                "dense": matrix(rng, 1)[0],
            },
            "payload": {"group": i % 3},
        }
        for i in range(1, count + 1)
    ]


async def create_named(api: Api, distance: str) -> None:
    vectors = {
        "mv": {"size": DIM, "distance": distance, "multivector_config": MAX_SIM},
        "dense": {"size": DIM, "distance": "Dot"},
    }
    await api.create_collection(vectors=vectors)


def edge_shard(path: Path, distance: str, points: list[dict[str, Any]]) -> Any:
    """The oracle: the same collection and points in qdrant-edge."""
    multi = qdrant_edge.MultiVectorConfig(qdrant_edge.MultiVectorComparator.MaxSim)
    vectors = {
        "mv": qdrant_edge.EdgeVectorParams(
            size=DIM, distance=getattr(qdrant_edge.Distance, distance), multivector_config=multi
        ),
        "dense": qdrant_edge.EdgeVectorParams(size=DIM, distance=qdrant_edge.Distance.Dot),
    }
    shard = qdrant_edge.EdgeShard.create(str(path), qdrant_edge.EdgeConfig(vectors=vectors))
    edge_points = [qdrant_edge.Point(p["id"], p["vector"], p["payload"]) for p in points]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(edge_points))
    return shard


def assert_same_hits(keel: list[dict[str, Any]], edge: list[Any]) -> None:
    assert [hit["id"] for hit in keel] == [hit.id for hit in edge]
    for hit, expected in zip(keel, edge):
        assert hit["score"] == pytest.approx(expected.score, rel=1e-4, abs=1e-4)


# ---- collections ---------------------------------------------------------------------------


async def test_collection_info_echoes_the_multivector_config(api: Api):
    vectors = {"size": DIM, "distance": "Cosine", "multivector_config": MAX_SIM}
    await api.create_collection(vectors=vectors)
    info = (await api.call("GET", INFO)).result
    assert info["config"]["params"]["vectors"] == vectors


async def test_named_multivector_config_is_echoed_after_its_other_fields(api: Api):
    await create_named(api, "Dot")
    info = (await api.call("GET", INFO)).result
    assert info["config"]["params"]["vectors"]["mv"] == {
        "size": DIM,
        "distance": "Dot",
        "multivector_config": MAX_SIM,
    }
    assert info["config"]["params"]["vectors"]["dense"] == {"size": DIM, "distance": "Dot"}


@pytest.mark.parametrize("config", [{"comparator": "min_sim"}, {}, "max_sim"])
async def test_a_bad_multivector_config_is_refused(api: Api, config: Any):
    body = {"vectors": {"size": DIM, "distance": "Dot", "multivector_config": config}}
    response = await api.call("PUT", INFO, json=body)
    assert response.status == 400
    # VectorsConfig is an untagged enum: serde reports no variant, not the inner error.
    assert "did not match any variant of untagged enum VectorsConfig" in response.error
    assert (await api.call("GET", INFO)).status == 404


# ---- writes --------------------------------------------------------------------------------


async def test_every_upsert_form_stores_the_matrix(api: Api):
    await create_named(api, "Dot")
    first = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]]
    second = [[0.0, 1.0, 0.0, 0.0]]
    points = [{"id": 1, "vector": {"mv": first, "dense": [1, 0, 0, 0]}}]
    assert (await api.upsert({"points": points})).status == 200
    batch = {"ids": [2], "vectors": {"mv": [second], "dense": [[0, 1, 0, 0]]}}
    assert (await api.upsert({"batch": batch})).status == 200
    records = {r["id"]: r["vector"] for r in await api.retrieve([1, 2], with_vector=True)}
    assert records[1]["mv"] == first
    assert records[2]["mv"] == second
    scrolled = {p["id"]: p["vector"]["mv"] for p in await api.scroll_all()}
    assert scrolled == {1: first, 2: second}


async def test_unnamed_multivector_in_list_and_batch_forms(api: Api):
    vectors = {"size": 2, "distance": "Cosine", "multivector_config": MAX_SIM}
    await api.create_collection(vectors=vectors)
    assert (await api.upsert({"points": [{"id": 1, "vector": [[3, 4], [0, 2]]}]})).status == 200
    assert (await api.upsert({"batch": {"ids": [2], "vectors": [[[0, 5]]]}})).status == 200
    records = {r["id"]: r["vector"] for r in await api.retrieve([1, 2], with_vector=True)}
    # Cosine rows are stored unit length, as Qdrant returns them.
    assert records[1] == [[pytest.approx(0.6), pytest.approx(0.8)], [0.0, 1.0]]
    assert records[2] == [[0.0, 1.0]]


async def test_a_plain_vector_is_stored_as_a_matrix_of_one_row(api: Api):
    await create_named(api, "Dot")
    await api.upsert({"points": [{"id": 1, "vector": {"mv": [1, 2, 3, 4]}}]})
    [record] = await api.retrieve([1], with_vector=True)
    assert record["vector"] == {"mv": [[1.0, 2.0, 3.0, 4.0]]}


@pytest.mark.parametrize(
    ("vector", "status", "message"),
    [
        ({"mv": [[1, 2, 3, 4], [1, 2]]}, 422, "found vector with dimension 2"),
        ({"mv": [[1, 2, 3, 4], []]}, 422, "all vectors must be non-empty"),
        ({"mv": []}, 422, "dense vector must not be empty"),
        ({"mv": [[1, 2, 3], [4, 5, 6]]}, 400, "expected dim: 4, got 3 for vector 'mv'"),
        ({"mv": [[1, 2, 3, 4], [1e39, 0, 0, 0]]}, 400, "not a finite float32"),
        ({"dense": [[1, 2, 3, 4]]}, 400, "Conversion between multi and regular vectors failed"),
    ],
)
async def test_bad_matrices_are_refused_and_write_nothing(
    api: Api, vector: Any, status: int, message: str
):
    await create_named(api, "Dot")
    response = await api.upsert({"points": [{"id": 1, "vector": vector}]})
    assert response.status == status
    assert message in response.error
    assert await api.points_count() == 0
    batch = {"ids": [1], "vectors": {name: [value] for name, value in vector.items()}}
    response = await api.upsert({"batch": batch})
    assert response.status == status
    assert await api.points_count() == 0


async def test_update_and_delete_a_multivector(api: Api):
    await create_named(api, "Dot")
    await api.upsert(
        {"points": [{"id": 1, "vector": {"mv": [[1, 0, 0, 0]], "dense": [1, 0, 0, 0]}}]}
    )
    new = [[0.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0]]
    body = {"points": [{"id": 1, "vector": {"mv": new}}]}
    assert (await api.call("PUT", UPDATE, json=body)).status == 200
    [record] = await api.retrieve([1], with_vector=True)
    assert record["vector"] == {"mv": new, "dense": [1.0, 0.0, 0.0, 0.0]}
    bad = {"points": [{"id": 1, "vector": {"mv": [[1, 2]]}}]}
    assert (await api.call("PUT", UPDATE, json=bad)).status == 400
    assert (await api.retrieve([1], with_vector=True))[0]["vector"]["mv"] == new
    body = {"points": [1], "vector": ["mv"]}
    assert (await api.call("POST", DELETE, json=body)).status == 200
    [record] = await api.retrieve([1], with_vector=True)
    assert record["vector"] == {"dense": [1.0, 0.0, 0.0, 0.0]}


# ---- query ---------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES)
async def test_maxsim_over_all_points_matches_qdrant(api: Api, tmp_path: Path, distance: str):
    points = points_of(7, 40)
    await create_named(api, distance)
    assert (await api.upsert({"points": points})).status == 200
    shard = edge_shard(tmp_path / "edge", distance, points)
    rng = random.Random(distance)
    for _ in range(5):
        query = matrix(rng, rng.randint(1, 4))
        body = {"query": query, "using": "mv", "limit": 10}
        hits = (await api.call("POST", QUERY, json=body)).result["points"]
        expected = shard.query(
            qdrant_edge.QueryRequest(limit=10, query=qdrant_edge.Query.Nearest(query, "mv"))
        )
        assert_same_hits(hits, expected)


@pytest.mark.parametrize("distance", ("Cosine", "Euclid"))
async def test_a_plain_vector_queries_a_multivector_as_one_row(
    api: Api, tmp_path: Path, distance: str
):
    points = points_of(8, 30)
    await create_named(api, distance)
    await api.upsert({"points": points})
    shard = edge_shard(tmp_path / "edge", distance, points)
    query = [0.3, -0.2, 0.9, 0.1]
    hits = (await api.call("POST", QUERY, json={"query": query, "using": "mv"})).result["points"]
    expected = shard.query(
        qdrant_edge.QueryRequest(limit=10, query=qdrant_edge.Query.Nearest(query, "mv"))
    )
    assert_same_hits(hits, expected)


@pytest.mark.parametrize("distance", ("Dot", "Manhattan"))
async def test_filter_threshold_offset_and_vectors(api: Api, tmp_path: Path, distance: str):
    points = points_of(9, 40)
    await create_named(api, distance)
    await api.upsert({"points": points})
    shard = edge_shard(tmp_path / "edge", distance, points)
    query = [[0.5, 0.5, -0.5, 0.1], [0.0, 1.0, 0.2, -0.3]]
    group_filter = {"must": [{"key": "group", "match": {"value": 1}}]}
    everything = (
        await api.call("POST", QUERY, json={"query": query, "using": "mv", "limit": 100})
    ).result["points"]
    threshold = everything[len(everything) // 2]["score"]
    body = {
        "query": query,
        "using": "mv",
        "filter": group_filter,
        "score_threshold": threshold,
        "limit": 3,
        "offset": 1,
        "with_vector": ["mv"],
        "with_payload": True,
    }
    hits = (await api.call("POST", QUERY, json=body)).result["points"]
    edge_filter = qdrant_edge.Filter(
        must=[qdrant_edge.FieldCondition("group", match=qdrant_edge.MatchValue(1))]
    )
    expected = shard.query(
        qdrant_edge.QueryRequest(
            limit=3,
            offset=1,
            query=qdrant_edge.Query.Nearest(query, "mv"),
            filter=edge_filter,
            score_threshold=threshold,
        )
    )
    assert hits, "the threshold left nothing: the test would prove nothing"
    assert_same_hits(hits, expected)
    by_id = {p["id"]: p for p in points}
    for hit in hits:
        assert hit["payload"] == {"group": 1}
        assert hit["vector"]["mv"] == [
            [pytest.approx(x) for x in row] for row in by_id[hit["id"]]["vector"]["mv"]
        ]


async def test_dense_prefetch_reranked_by_maxsim_matches_qdrant(api: Api, tmp_path: Path):
    points = points_of(10, 60)
    await create_named(api, "Cosine")
    await api.upsert({"points": points})
    shard = edge_shard(tmp_path / "edge", "Cosine", points)
    dense_query = [0.2, 0.7, -0.1, 0.4]
    query = [[0.1, 0.9, 0.0, 0.3], [0.6, -0.2, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0]]
    body = {
        "prefetch": {"query": dense_query, "using": "dense", "limit": 20},
        "query": query,
        "using": "mv",
        "limit": 5,
    }
    hits = (await api.call("POST", QUERY, json=body)).result["points"]
    expected = shard.query(
        qdrant_edge.QueryRequest(
            limit=5,
            prefetches=[
                qdrant_edge.Prefetch(
                    limit=20, query=qdrant_edge.Query.Nearest(dense_query, "dense")
                )
            ],
            query=qdrant_edge.Query.Nearest(query, "mv"),
        )
    )
    assert_same_hits(hits, expected)
    # The rerank saw only the prefetch's candidates: the whole collection ranks differently.
    dense_ids = {
        hit["id"]
        for hit in (
            await api.call(
                "POST", QUERY, json={"query": dense_query, "using": "dense", "limit": 20}
            )
        ).result["points"]
    }
    assert {hit["id"] for hit in hits} <= dense_ids


async def test_query_by_point_id_uses_its_stored_matrix(api: Api, tmp_path: Path):
    points = points_of(11, 20)
    await create_named(api, "Dot")
    await api.upsert({"points": points})
    by_id = (await api.call("POST", QUERY, json={"query": 3, "using": "mv"})).result["points"]
    by_matrix_body = {"query": points[2]["vector"]["mv"], "using": "mv", "limit": 11}
    by_matrix = (await api.call("POST", QUERY, json=by_matrix_body)).result["points"]
    # The example point itself is left out, as Qdrant does.
    assert by_id == [hit for hit in by_matrix if hit["id"] != 3][:10]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": [[1, 0, 0, 0]], "using": "dense"}, 400, "multi and regular vectors failed"),
        ({"query": [[1, 0, 0]], "using": "mv"}, 400, "expected dim: 4, got 3"),
        ({"query": [[1, 0, 0, 0], [1]], "using": "mv"}, 422, "found vector with dimension 1"),
        (
            {"query": {"recommend": {"positive": [[[1, 0, 0, 0]], [1, 0, 0, 0]]}}, "using": "mv"},
            400,
            "Can't average vectors with different types",
        ),
    ],
)
async def test_query_errors(api: Api, body: Any, status: int, message: str):
    await create_named(api, "Dot")
    await api.upsert({"points": points_of(12, 3)})
    response = await api.call("POST", QUERY, json=body)
    assert response.status == status
    assert message in response.error


async def test_legacy_search_on_a_multivector_scores_one_row_by_maxsim(api: Api):
    await create_named(api, "Dot")
    await api.upsert({"points": points_of(13, 20)})
    vector = [1, 0.5, 0, -1]
    body = {"vector": {"name": "mv", "vector": vector}, "limit": 3, "offset": 1}
    response = await api.call("POST", "/collections/{collection_name}/points/search", json=body)
    query = {"query": vector, "using": "mv", "limit": 3, "offset": 1}
    assert response.result == (await api.call("POST", QUERY, json=query)).result["points"]
    assert len(response.result) == 3


async def test_distance_matrix_scores_samples_by_maxsim(api: Api):
    """Each sampled point's neighbours among the sample are what a query by its id, limited
    to the sample, answers: MaxSim with its stored matrix, Qdrant's reported scores."""
    await create_named(api, "Euclid")
    await api.upsert({"points": points_of(14, 12)})
    body = {"sample": 6, "limit": 3, "using": "mv"}
    path = "/collections/{collection_name}/points/search/matrix/pairs"
    pairs = (await api.call("POST", path, json=body)).result["pairs"]
    sample = sorted({pair["a"] for pair in pairs} | {pair["b"] for pair in pairs})
    assert len(sample) == 6
    for point_id in sample:
        query = {
            "query": point_id,
            "using": "mv",
            "limit": 3,
            "filter": {"must": [{"has_id": sample}]},
        }
        hits = (await api.call("POST", QUERY, json=query)).result["points"]
        mine = [(pair["b"], pair["score"]) for pair in pairs if pair["a"] == point_id]
        assert mine == [(hit["id"], pytest.approx(hit["score"])) for hit in hits]


async def test_groups_by_maxsim(api: Api):
    await create_named(api, "Dot")
    points = points_of(15, 30)
    await api.upsert({"points": points})
    body = {"query": [[1, 0, 0, 0], [0, 1, 0, 0]], "using": "mv", "group_by": "group", "limit": 3}
    groups = (await api.call("POST", QUERY + "/groups", json=body)).result["groups"]
    ranked = (await api.call("POST", QUERY, json={**body, "group_by": None, "limit": 100})).result[
        "points"
    ]
    best_of_group: dict[int, float] = {}
    for hit in ranked:
        group = hit["id"] % 3
        best_of_group.setdefault(group, hit["score"])
    assert {g["id"]: g["hits"][0]["score"] for g in groups} == best_of_group


def custom_cases(rng: random.Random, stored: dict[int, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(Keel's query body, qdrant-edge's Query) pairs scored over MaxSim, examples as
    matrices, plain vectors (one row) and point ids (edge takes their stored matrices)."""
    a, b, c, d = (matrix(rng, rng.randint(1, 3)) for _ in range(4))
    plain = matrix(rng, 1)[0]
    q = qdrant_edge
    feedback = [(a, 0.9), (b, 0.1), (plain, 0.5)]
    return [
        (
            {"recommend": {"positive": [a, 3], "negative": [b], "strategy": "best_score"}},
            q.Query.RecommendBestScore(q.RecommendQuery([a, stored[3]], [b]), "mv"),
            {3},
        ),
        (
            {"recommend": {"positive": [a, plain], "negative": [4], "strategy": "sum_scores"}},
            q.Query.RecommendSumScores(q.RecommendQuery([a, plain], [stored[4]]), "mv"),
            {4},
        ),
        (
            {"discover": {"target": c, "context": [{"positive": a, "negative": b}]}},
            q.Query.Discover(q.DiscoverQuery(c, [q.ContextPair(a, b)]), "mv"),
            set(),
        ),
        (
            {"context": [{"positive": a, "negative": b}, {"positive": d, "negative": 5}]},
            q.Query.Context(
                q.ContextQuery([q.ContextPair(a, b), q.ContextPair(d, stored[5])]), "mv"
            ),
            {5},
        ),
        (
            {
                "relevance_feedback": {
                    "target": c,
                    "feedback": [{"example": e, "score": s} for e, s in feedback],
                    "strategy": {"naive": {"a": 1.0, "b": 0.5, "c": 0.7}},
                }
            },
            q.Query.FeedbackNaive(
                q.FeedbackNaiveQuery(
                    c,
                    [q.FeedbackItem(e, s) for e, s in feedback],
                    q.NaiveFeedbackStrategy(1.0, 0.5, 0.7),
                ),
                "mv",
            ),
            set(),
        ),
    ]


@pytest.mark.parametrize("distance", DISTANCES)
async def test_custom_scores_over_maxsim_match_qdrant(api: Api, tmp_path: Path, distance: str):
    points = points_of(16, 40)
    await create_named(api, distance)
    await api.upsert({"points": points})
    shard = edge_shard(tmp_path / "edge", distance, points)
    stored = {p["id"]: p["vector"]["mv"] for p in points}
    for body_query, edge_query, ids in custom_cases(random.Random(distance), stored):
        body = {"query": body_query, "using": "mv", "limit": 10}
        hits = (await api.call("POST", QUERY, json=body)).result["points"]
        edge_hits = shard.query(qdrant_edge.QueryRequest(limit=40, query=edge_query))
        # Qdrant leaves the example ids out (a must_not has_id above the shard).
        expected = [hit for hit in edge_hits if hit.id not in ids][:10]
        assert len(hits) == 10
        assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-4)
        # Equal scores (a context query scores many points 0) may come in another order.
        edge_score = {hit.id: hit.score for hit in edge_hits}
        for hit in hits:
            assert hit["score"] == pytest.approx(edge_score[hit["id"]], abs=1e-4)


async def test_recommend_average_concatenates_matrices_and_negates_negatives(api: Api):
    """Qdrant's avg_vector_for_recommendation on multivectors: the positives' rows, then the
    negatives' rows negated, searched as one nearest matrix (so reported as a nearest)."""
    await create_named(api, "Euclid")
    await api.upsert({"points": points_of(17, 30)})
    a, b = [[0.1, 0.2, 0.3, 0.4]], [[0.5, -0.5, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
    negative = [[0.3, 0.3, -0.2, 0.1]]
    body = {"query": {"recommend": {"positive": [a, b], "negative": [negative]}}, "using": "mv"}
    hits = (await api.call("POST", QUERY, json=body)).result["points"]
    concatenated = a + b + [[-x for x in row] for row in negative]
    nearest = {"query": concatenated, "using": "mv"}
    assert hits == (await api.call("POST", QUERY, json=nearest)).result["points"]
    assert len(hits) == 10


@pytest.mark.parametrize("distance", DISTANCES)
async def test_mmr_over_maxsim_matches_qdrant(api: Api, tmp_path: Path, distance: str):
    """MMR on a multivector: relevance and the candidates' similarities by MaxSim (not
    symmetric: Qdrant scores a candidate as the query against a picked point)."""
    points = points_of(18, 40)
    await create_named(api, distance)
    await api.upsert({"points": points})
    shard = edge_shard(tmp_path / "edge", distance, points)
    rng = random.Random(distance)
    for diversity in (0.3, 0.8):
        query = matrix(rng, 3)
        mmr = {"diversity": diversity, "candidates_limit": 20}
        body = {"query": {"nearest": query, "mmr": mmr}, "using": "mv", "limit": 8}
        hits = (await api.call("POST", QUERY, json=body)).result["points"]
        edge_mmr = qdrant_edge.Mmr(query, 1.0 - diversity, 20, "mv")
        expected = shard.query(qdrant_edge.QueryRequest(limit=8, query=edge_mmr))
        assert len(hits) == 8
        assert_same_hits(hits, expected)
