"""Vectors of fewer than 16 dimensions score and normalise as Qdrant's do, to the bit.

Qdrant computes them with a plain loop (each term in f32, summed left to right in f32), longer
ones with SIMD; Keel does the same below 16 (engine/vectors/scores.py, SCALAR_DIMS_MAX), so a
small collection — the size of Qdrant's docs examples and of its own tests — answers exactly
the scores and stored vectors Qdrant's engine does: compared here with qdrant-edge-py without
any tolerance, through the graph search, the exact search and a prefetch's rerank, with
values of many digits (where a different summation order shows in the last bit).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

# The oracle is in the test extra: a missing one is an error, never a silent skip.
import qdrant_edge

from engine.ops import PayloadSelector, VectorSelector
from server.wire.collection_config import parse_create_collection
from server.wire.query import parse_query_request
from server.wire.upsert import build_upsert, parse_upsert
from tests.unit.engine_helpers import open_catalog

POINT_COUNT = 40
QUERY_COUNT = 12
NAME = "v"
CASES = [
    (distance, dim)
    for distance in ("Dot", "Cosine", "Euclid", "Manhattan")
    for dim in (3, 4, 9, 15)
]


def random_vector(rng: random.Random, dim: int) -> list[float]:
    return [rng.uniform(-3.0, 3.0) for _ in range(dim)]


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"{case[0]}-{case[1]}")
def engines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    distance, dim = request.param
    rng = random.Random(f"small {distance} {dim}")
    points = [
        {"id": index, "vector": {NAME: random_vector(rng, dim)}}
        for index in range(1, POINT_COUNT + 1)
    ]
    points[0]["vector"][NAME] = [1e-5] * dim  # squared length under f32 epsilon: kept as is
    root = tmp_path_factory.mktemp(f"small-{distance}-{dim}")
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(root / "keel"))
    body = {"vectors": {NAME: {"size": dim, "distance": distance}}}
    loop.run_until_complete(catalog.create("c", parse_create_collection(body)))
    collection = catalog.get("c")
    op = build_upsert(parse_upsert({"points": points}), collection.config)
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    params = qdrant_edge.EdgeVectorParams(
        size=dim, distance=getattr(qdrant_edge.Distance, distance)
    )
    shard = qdrant_edge.EdgeShard.create(
        str(root / "edge"), qdrant_edge.EdgeConfig(vectors={NAME: params})
    )
    shard.update(
        qdrant_edge.UpdateOperation.upsert_points(
            [qdrant_edge.Point(p["id"], p["vector"], {}) for p in points]
        )
    )
    queries = [random_vector(rng, dim) for _ in range(QUERY_COUNT)]
    yield loop, collection, shard, queries
    shard.close()
    loop.run_until_complete(catalog.close())
    loop.close()


def f32(pairs: list[tuple[int, float]]) -> dict[int, np.float32]:
    return {point_id: np.float32(score) for point_id, score in pairs}


def keel_scores(loop: Any, collection: Any, body: dict[str, Any]) -> dict[int, np.float32]:
    result = loop.run_until_complete(collection.query(parse_query_request(body), {}))
    return f32([(point.id, point.score) for point in result.points])


def edge_scores(shard: Any, **request: Any) -> dict[int, np.float32]:
    hits = shard.query(qdrant_edge.QueryRequest(limit=POINT_COUNT, **request))
    return f32([(hit.id, hit.score) for hit in hits])


@pytest.mark.parametrize("is_exact", [False, True], ids=["graph", "exact"])
def test_scores_are_qdrants_to_the_bit(engines: Any, is_exact: bool) -> None:
    loop, collection, shard, queries = engines
    for query in queries:
        body = {"query": query, "using": NAME, "limit": POINT_COUNT, "params": {"exact": is_exact}}
        keel = keel_scores(loop, collection, body)
        edge = edge_scores(
            shard,
            query=qdrant_edge.Query.Nearest(query, NAME),
            params=qdrant_edge.SearchParams(exact=is_exact),
        )
        assert keel == edge, query


def test_a_prefetch_rerank_is_qdrants_to_the_bit(engines: Any) -> None:
    loop, collection, shard, queries = engines
    for first, second in zip(queries[0::2], queries[1::2]):
        prefetch = {"query": first, "using": NAME, "limit": POINT_COUNT}
        body = {"prefetch": prefetch, "query": second, "using": NAME, "limit": POINT_COUNT}
        edge_prefetch = qdrant_edge.Prefetch(
            limit=POINT_COUNT, query=qdrant_edge.Query.Nearest(first, NAME)
        )
        edge = edge_scores(
            shard, prefetches=[edge_prefetch], query=qdrant_edge.Query.Nearest(second, NAME)
        )
        assert keel_scores(loop, collection, body) == edge


def test_stored_vectors_are_qdrants_to_the_bit(engines: Any) -> None:
    """Cosine ones normalised as Qdrant's `cosine_preprocess` does (a tiny one kept)."""
    loop, collection, shard, _ = engines
    ids = list(range(1, POINT_COUNT + 1))
    records = loop.run_until_complete(
        collection.retrieve(ids, PayloadSelector(False), VectorSelector(True))
    )
    keel = {record.id: record.vectors[NAME].astype(np.float32).tolist() for record in records}
    edge = {
        record.id: np.asarray(record.vector[NAME], dtype=np.float32).tolist()
        for record in shard.retrieve(ids, False, True)
    }
    assert keel == edge


@pytest.mark.parametrize("distance", ["Dot", "Cosine", "Euclid", "Manhattan"])
def test_maxsim_of_small_rows_is_qdrants_to_the_bit(tmp_path: Any, distance: str) -> None:
    """MaxSim compares every query row with every stored row by the same scalar loop."""
    dim, rng = 5, random.Random(f"small maxsim {distance}")
    points = [
        {"id": index, "vector": {NAME: [random_vector(rng, dim) for _ in range(index % 3 + 1)]}}
        for index in range(1, 21)
    ]
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(tmp_path / "keel"))
    multi = {"comparator": "max_sim"}
    body = {"vectors": {NAME: {"size": dim, "distance": distance, "multivector_config": multi}}}
    loop.run_until_complete(catalog.create("c", parse_create_collection(body)))
    collection = catalog.get("c")
    op = build_upsert(parse_upsert({"points": points}), collection.config)
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    params = qdrant_edge.EdgeVectorParams(
        size=dim,
        distance=getattr(qdrant_edge.Distance, distance),
        multivector_config=qdrant_edge.MultiVectorConfig(qdrant_edge.MultiVectorComparator.MaxSim),
    )
    shard = qdrant_edge.EdgeShard.create(
        str(tmp_path / "edge"), qdrant_edge.EdgeConfig(vectors={NAME: params})
    )
    shard.update(
        qdrant_edge.UpdateOperation.upsert_points(
            [qdrant_edge.Point(p["id"], p["vector"], {}) for p in points]
        )
    )
    try:
        for _ in range(6):
            query = [random_vector(rng, dim) for _ in range(rng.randint(1, 3))]
            keel = keel_scores(loop, collection, {"query": query, "using": NAME, "limit": 20})
            edge = edge_scores(shard, query=qdrant_edge.Query.Nearest(query, NAME))
            assert keel == edge, query
    finally:
        shard.close()
        loop.run_until_complete(catalog.close())
        loop.close()
