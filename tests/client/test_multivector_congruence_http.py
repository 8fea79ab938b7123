"""Filtered multivector queries through qdrant-client against a real Keel server, with
qdrant-edge-py (Qdrant's engine in process) as the oracle.

Goal: matrices and filters on the wire — a multivector collection created over HTTP, points
with matrices and payloads upserted through the WAL, and queries whose `query` is a matrix
with a filter, a threshold and an offset, or a filtered dense prefetch reranked by MaxSim —
answer what Qdrant's engine answers for the same points. Method: the seeded points and
filters of tests/unit/test_multivector_congruence.py (which covers every distance and more
filters in process, and says which filter pairs Qdrant 1.19 merges differently) go to both;
ids and scores must agree as they must there.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import qdrant_edge
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess
from tests.unit.test_filter_congruence import SEED, normalize_id
from tests.unit.test_multivector_congruence import (
    DENSE,
    DIM,
    MULTI,
    PREFETCH_LIMIT,
    describe,
    disagreement,
    edge_shard,
    is_or_merged_by_qdrant,
    make_points,
    random_matrix,
    sampled_filters,
)

FILTER_COUNT = 24
DISTANCES = ("Cosine", "Euclid")


@pytest.fixture(scope="module")
def keel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantClient]:
    server = KeelProcess.start(tmp_path_factory.mktemp("multivector") / "storage")
    client = QdrantClient(url=server.url, timeout=60)
    yield client
    client.close()
    assert server.terminate() == 0


@pytest.fixture(scope="module", params=DISTANCES)
def engines(
    request: pytest.FixtureRequest, keel: QdrantClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[QdrantClient, str, Any]]:
    """Keel's client, the collection's name, and an edge shard with the same points."""
    distance = request.param
    collection_name = f"multivector_{distance.lower()}"
    multi = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
    vectors_config = {
        DENSE: models.VectorParams(size=DIM, distance=models.Distance.DOT),
        MULTI: models.VectorParams(
            size=DIM, distance=models.Distance(distance), multivector_config=multi
        ),
    }
    keel.create_collection(collection_name, vectors_config=vectors_config)
    points = make_points()
    keel.upsert(collection_name, [models.PointStruct(**point) for point in points], wait=True)
    shard = edge_shard(tmp_path_factory.mktemp(f"edge-{distance}"), distance, points)
    yield keel, collection_name, shard
    shard.close()


@pytest.fixture(scope="module")
def filters() -> list[tuple[models.Filter, dict[str, Any], Any]]:
    """(the client's Filter, its JSON, edge's filter) for the first sampled filters."""
    pairs = sampled_filters()[:FILTER_COUNT]
    return [(models.Filter.model_validate(data), data, edge) for data, edge in pairs]


def test_filtered_maxsim_with_threshold_and_offset_over_http(engines, filters) -> None:
    """A matrix query with a filter; every other one with a threshold (between two scores of
    the unfiltered ranking) and a page past the first hits."""
    keel, collection_name, shard = engines
    rng = random.Random(f"{SEED} http {collection_name}")
    mismatches = []
    for index, (query_filter, data, edge_filter) in enumerate(filters):
        query = random_matrix(rng, rng.randint(1, 4))
        nearest = qdrant_edge.Query.Nearest(query, MULTI)
        page: dict[str, Any] = {"limit": 10}
        if index % 2:
            ranking = [
                hit.score for hit in shard.query(qdrant_edge.QueryRequest(200, query=nearest))
            ]
            cut = rng.randrange(len(ranking) // 4, len(ranking) - 1)
            page = {
                "limit": 6,
                "offset": 2,
                "score_threshold": (ranking[cut] + ranking[cut + 1]) / 2,
            }
        hits = keel.query_points(
            collection_name, query=query, using=MULTI, query_filter=query_filter, **page
        ).points
        expected = shard.query(qdrant_edge.QueryRequest(query=nearest, filter=edge_filter, **page))
        mismatches.extend(
            disagreement({"filter": data, **page}, pairs_of(hits), pairs_of(expected))
        )
    assert not mismatches, describe(mismatches)


def test_filtered_prefetch_reranked_by_maxsim_over_http(engines, filters) -> None:
    """An exact dense prefetch filtered by one random filter, reranked by MaxSim under the
    root filter (the next one), skipping the pairs Qdrant 1.19 ORs (qdrant#10594)."""
    keel, collection_name, shard = engines
    rng = random.Random(f"{SEED} http prefetch {collection_name}")
    mismatches = []
    compared_count = 0
    for index, (query_filter, data, edge_filter) in enumerate(filters):
        root_filter, root_data, root_edge = filters[(index + 1) % len(filters)]
        dense, query = random_matrix(rng, 1)[0], random_matrix(rng, rng.randint(1, 4))
        if is_or_merged_by_qdrant(root_data, data):
            continue
        prefetch = models.Prefetch(
            query=dense,
            using=DENSE,
            filter=query_filter,
            limit=PREFETCH_LIMIT,
            params=models.SearchParams(exact=True),
        )
        hits = keel.query_points(
            collection_name,
            prefetch=prefetch,
            query=query,
            using=MULTI,
            query_filter=root_filter,
            limit=10,
        ).points
        edge_prefetch = qdrant_edge.Prefetch(
            limit=PREFETCH_LIMIT,
            query=qdrant_edge.Query.Nearest(dense, DENSE),
            params=qdrant_edge.SearchParams(exact=True),
            filter=edge_filter,
        )
        expected = shard.query(
            qdrant_edge.QueryRequest(
                limit=10,
                prefetches=[edge_prefetch],
                query=qdrant_edge.Query.Nearest(query, MULTI),
                filter=root_edge,
            )
        )
        request = {"prefetch filter": data, "filter": root_data}
        mismatches.extend(disagreement(request, pairs_of(hits), pairs_of(expected)))
        compared_count += 1
    assert not mismatches, describe(mismatches)
    assert compared_count > FILTER_COUNT // 2, compared_count


def test_filtered_count_over_http(engines, filters) -> None:
    keel, collection_name, shard = engines
    mismatches = []
    for query_filter, data, edge_filter in filters:
        count = keel.count(collection_name, count_filter=query_filter, exact=True).count
        expected = shard.count(qdrant_edge.CountRequest(filter=edge_filter))
        if count != expected:
            mismatches.append((data, count, expected))
    assert not mismatches, mismatches[:3]


def pairs_of(hits: list[Any]) -> list[tuple[Any, float]]:
    return [(normalize_id(hit.id), hit.score) for hit in hits]
