"""`score_threshold` is an f32 in Qdrant, compared with f32 scores.

A threshold written with more digits than an f32 holds (a score copied from an answer, or a
number just below it) rounds to an f32 first: a point whose score equals that rounded value is
not above it, so Qdrant leaves it out. Keel compared the threshold as a float64 and kept it.
Compared here with qdrant-edge-py, without tolerance, on vectors short enough that both score
them to the bit (tests/unit/test_small_vectors_exact_scores.py), on every distance.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

# The oracle is in the test extra: a missing one is an error, never a silent skip.
import qdrant_edge

from server.wire.collection_config import parse_create_collection
from server.wire.query import parse_query_request
from server.wire.schemas import parse_search
from server.wire.upsert import build_upsert, parse_upsert
from tests.unit.engine_helpers import open_catalog

POINT_COUNT = 30
DIM = 4


@pytest.fixture(scope="module", params=["Dot", "Cosine", "Euclid", "Manhattan"])
def engines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    distance = request.param
    rng = random.Random(f"threshold {distance}")
    points = [
        {"id": index, "vector": [rng.uniform(-3.0, 3.0) for _ in range(DIM)]}
        for index in range(1, POINT_COUNT + 1)
    ]
    root = tmp_path_factory.mktemp(f"threshold-{distance}")
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(root / "keel"))
    body = {"vectors": {"size": DIM, "distance": distance}}
    loop.run_until_complete(catalog.create("c", parse_create_collection(body)))
    collection = catalog.get("c")
    op = build_upsert(parse_upsert({"points": points}), collection.config)
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    params = qdrant_edge.EdgeVectorParams(
        size=DIM, distance=getattr(qdrant_edge.Distance, distance)
    )
    shard = qdrant_edge.EdgeShard.create(
        str(root / "edge"), qdrant_edge.EdgeConfig(vectors={"": params})
    )
    shard.update(
        qdrant_edge.UpdateOperation.upsert_points(
            [qdrant_edge.Point(p["id"], p["vector"], {}) for p in points]
        )
    )
    query = [rng.uniform(-3.0, 3.0) for _ in range(DIM)]
    yield loop, collection, shard, query
    shard.close()
    loop.run_until_complete(catalog.close())
    loop.close()


def boundary_thresholds(score: float) -> list[float]:
    """The f32 score itself and the float64s on either side of it (both round to it)."""
    exact = float(np.float32(score))
    return [exact, float(np.nextafter(exact, -np.inf)), float(np.nextafter(exact, np.inf))]


@pytest.mark.parametrize("is_exact", [False, True], ids=["graph", "exact"])
def test_a_threshold_rounds_to_f32_as_qdrants_does(engines: Any, is_exact: bool) -> None:
    loop, collection, shard, query = engines
    edge_query = qdrant_edge.Query.Nearest(query, "")
    all_hits = shard.query(qdrant_edge.QueryRequest(limit=POINT_COUNT, query=edge_query))
    checked = 0
    for hit in all_hits[1:-1:5]:
        for threshold in boundary_thresholds(hit.score):
            edge = shard.query(
                qdrant_edge.QueryRequest(
                    limit=POINT_COUNT,
                    query=edge_query,
                    score_threshold=threshold,
                    params=qdrant_edge.SearchParams(exact=is_exact),
                )
            )
            body = {
                "query": query,
                "limit": POINT_COUNT,
                "score_threshold": threshold,
                "params": {"exact": is_exact},
            }
            keel = loop.run_until_complete(collection.query(parse_query_request(body), {}))
            assert [p.id for p in keel.points] == [h.id for h in edge], threshold
            checked += 1
    assert checked >= 9


def test_the_legacy_search_threshold_is_an_f32_too() -> None:
    body = parse_search({"vector": [0.5, 0.5], "limit": 3, "score_threshold": 0.1})
    assert body.score_threshold == float(np.float32(0.1)) != 0.1


def test_a_threshold_beyond_f32_is_infinite_as_serdes_cast_makes_it() -> None:
    request = parse_query_request({"query": [0.5, 0.5], "score_threshold": 1e39})
    assert request.root.score_threshold == float("inf")
