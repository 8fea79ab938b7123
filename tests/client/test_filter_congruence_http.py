"""Random filters through qdrant-client against a real Keel server and against local mode.

Goal: the filter language end to end over HTTP — parsing, the WAL, the applier, scroll, count
and filtered search — selects what Qdrant's reference selects. Method: the seeded points and
filters of tests/unit/test_filter_congruence.py (whose docstring says which corners of the
language are left out because local mode disagrees with Qdrant 1.19) go into a Keel server
and into `QdrantClient(":memory:")`; every filter is asked of both through the same client
calls, and ids, counts and (exact) search order must agree. Filtered queries on a multivector
are in tests/client/test_multivector_congruence_http.py.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess
from tests.unit.test_filter_congruence import (
    POINT_COUNT,
    SEED,
    VECTOR_NAMES,
    Scope,
    normalize_id,
    random_filter,
    random_payload,
)

COLLECTION = "congruence_http"
SCROLL_FILTER_COUNT = 200
SEARCH_FILTER_COUNT = 60


def make_points() -> list[models.PointStruct]:
    rng = random.Random(SEED)
    structs = []
    for index in range(POINT_COUNT):
        point_id: Any = index if index % 4 else str(uuid.UUID(int=rng.getrandbits(128)))
        names = VECTOR_NAMES if rng.random() < 0.7 else VECTOR_NAMES[:1]
        # Distinct scores on "a" make the order of a filtered search unambiguous.
        vector = {name: [float(index + 1)] if name == "a" else [1.0] for name in names}
        structs.append(models.PointStruct(id=point_id, vector=vector, payload=random_payload(rng)))
    return structs


@pytest.fixture(scope="module")
def clients(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[QdrantClient, QdrantClient]]:
    server = KeelProcess.start(tmp_path_factory.mktemp("congruence") / "storage")
    keel = QdrantClient(url=server.url, timeout=60)
    local = QdrantClient(":memory:")
    params = {
        name: models.VectorParams(size=1, distance=models.Distance.DOT) for name in VECTOR_NAMES
    }
    points = make_points()
    for client in (keel, local):
        client.create_collection(COLLECTION, vectors_config=params)
        client.upsert(COLLECTION, points, wait=True)
    yield keel, local
    local.close()
    keel.close()
    assert server.terminate() == 0


def local_mode_filters(count: int) -> list[models.Filter]:
    rng = random.Random(SEED + 2)
    return [
        models.Filter.model_validate(random_filter(rng, Scope(depth=0, is_local_mode=True)))
        for _ in range(count)
    ]


def scrolled_ids(client: QdrantClient, scroll_filter: models.Filter) -> list[Any]:
    records, next_offset = client.scroll(COLLECTION, scroll_filter=scroll_filter, limit=10_000)
    assert next_offset is None
    return [normalize_id(record.id) for record in records]


def test_scroll_and_count_agree_with_local_mode(clients) -> None:
    keel, local = clients
    mismatches = []
    for scroll_filter in local_mode_filters(SCROLL_FILTER_COUNT):
        expected = sorted(map(str, scrolled_ids(local, scroll_filter)))
        got = sorted(map(str, scrolled_ids(keel, scroll_filter)))
        count = keel.count(COLLECTION, count_filter=scroll_filter, exact=True).count
        if got != expected or count != len(expected):
            mismatches.append((scroll_filter.model_dump(exclude_none=True), expected, got, count))
    assert not mismatches, mismatches[:3]


def test_filtered_exact_search_agrees_with_local_mode(clients) -> None:
    keel, local = clients
    mismatches = []
    for query_filter in local_mode_filters(SEARCH_FILTER_COUNT):
        results = []
        # Local mode is always exact; Keel is asked to be.
        for client, params in ((keel, models.SearchParams(exact=True)), (local, None)):
            hits = client.query_points(
                COLLECTION,
                query=[1.0],
                using="a",
                query_filter=query_filter,
                limit=5,
                search_params=params,
            ).points
            results.append([(normalize_id(h.id), round(h.score, 4)) for h in hits])
        if results[0] != results[1]:
            mismatches.append((query_filter.model_dump(exclude_none=True), *results))
    assert not mismatches, mismatches[:3]
