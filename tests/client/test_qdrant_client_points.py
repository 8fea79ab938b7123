"""qdrant-client's point calls against a real Keel server, compared with its local mode.

Payload writes (set, overwrite, delete keys, clear), vector writes (update, delete), delete by
filter, conditional upsert, scroll paging, count, batch_update_points and filtered queries:
every call is made against Keel and against `QdrantClient(":memory:")`, and the collections
must end up the same (ids, payloads, vectors) and answer the same.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess

COLORS = ("red", "green", "blue")
IS_RED = models.Filter(
    must=[models.FieldCondition(key="color", match=models.MatchValue(value="red"))]
)
SMALL_N = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(lt=10))])
N_BELOW_3 = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(lt=3))])


@pytest.fixture(scope="module")
def keel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_points") / "storage")
    yield server.url
    assert server.terminate() == 0


@pytest.fixture
def clients(keel_url: str) -> Iterator[tuple[QdrantClient, QdrantClient]]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-compatibility warning fails the test
        keel = QdrantClient(url=keel_url, timeout=30)
    oracle = QdrantClient(":memory:")
    yield keel, oracle
    keel.close()
    oracle.close()


def point_id(i: int) -> int | str:
    return i if i % 5 else str(uuid.UUID(int=i + 1000))


def make_points(count: int, named: bool) -> list[models.PointStruct]:
    rng = np.random.default_rng(7)
    points = []
    for i in range(count):
        text, image = rng.normal(size=4).tolist(), rng.normal(size=4).tolist()
        vector = {"text": text, "image": image} if named else text
        payload = {"n": i, "color": COLORS[i % 3], "meta": {"a": i, "b": "x"}}
        points.append(models.PointStruct(id=point_id(i), vector=vector, payload=payload))
    return points


def create(clients, name: str, count: int = 30, named: bool = False) -> None:
    if named:
        config = {
            "text": models.VectorParams(size=4, distance=models.Distance.COSINE),
            "image": models.VectorParams(size=4, distance=models.Distance.DOT),
        }
    else:
        config = models.VectorParams(size=4, distance=models.Distance.DOT)
    for client in clients:
        assert client.create_collection(name, vectors_config=config)
        client.upsert(name, make_points(count, named), wait=True)


def both(clients, call) -> list:
    """`call(client)` on Keel and on the oracle; the two answers."""
    return [call(client) for client in clients]


def state(client: QdrantClient, name: str) -> list[tuple]:
    records, offset = client.scroll(name, limit=1000, with_payload=True, with_vectors=True)
    assert offset is None
    return [(record.id, record.payload, record.vector) for record in records]


def assert_same_state(clients, name: str) -> None:
    mine, theirs = (state(client, name) for client in clients)
    assert [(i, p) for i, p, _ in mine] == [(i, p) for i, p, _ in theirs]
    for (_, _, my_vector), (_, _, their_vector) in zip(mine, theirs):
        if isinstance(their_vector, dict):
            assert isinstance(my_vector, dict) and set(my_vector) == set(their_vector)
            for vector_name, values in their_vector.items():
                np.testing.assert_allclose(my_vector[vector_name], values, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(my_vector, their_vector, rtol=1e-5, atol=1e-6)


def test_payload_writes_agree_with_local_mode(clients) -> None:
    create(clients, "payload")
    calls = [
        lambda c: c.set_payload("payload", {"tag": "x", "n": -1}, points=[1, 2, point_id(5)]),
        lambda c: c.set_payload("payload", {"red": True}, points=IS_RED),
        lambda c: c.set_payload("payload", {"c": 3}, points=[3, 4], key="meta"),
        lambda c: c.overwrite_payload("payload", {"only": 1}, points=[6, 7]),
        lambda c: c.overwrite_payload("payload", {"small": True}, points=SMALL_N),
        lambda c: c.delete_payload("payload", ["meta.b", "color"], points=[8, 9, 11]),
        lambda c: c.delete_payload("payload", ["tag"], points=models.FilterSelector(filter=IS_RED)),
        lambda c: c.clear_payload("payload", points_selector=[12, 13]),
        lambda c: c.clear_payload("payload", points_selector=models.FilterSelector(filter=SMALL_N)),
    ]
    for call in calls:
        statuses = [call(client).status for client in clients]
        assert statuses == [models.UpdateStatus.COMPLETED] * 2
        assert_same_state(clients, "payload")
    clients[0].delete_collection("payload")


def test_vector_writes_and_delete_by_filter_agree_with_local_mode(clients) -> None:
    create(clients, "vectors", named=True)
    calls = [
        lambda c: c.update_vectors(
            "vectors",
            points=[
                models.PointVectors(id=1, vector={"image": [1, 2, 3, 4]}),
                models.PointVectors(id=point_id(10), vector={"text": [4, 3, 2, 1]}),
            ],
        ),
        lambda c: c.update_vectors(
            "vectors",
            points=[models.PointVectors(id=i, vector={"text": [1, 1, 1, 1]}) for i in (2, 3, 4)],
            update_filter=IS_RED,
        ),
        lambda c: c.delete_vectors("vectors", vectors=["image"], points=[2, 3]),
        lambda c: c.delete_vectors(
            "vectors", vectors=["text"], points=models.FilterSelector(filter=SMALL_N)
        ),
        lambda c: c.delete("vectors", points_selector=models.FilterSelector(filter=IS_RED)),
    ]
    for call in calls:
        statuses = [call(client).status for client in clients]
        assert statuses == [models.UpdateStatus.COMPLETED] * 2
        assert_same_state(clients, "vectors")
    clients[0].delete_collection("vectors")


def test_conditional_upsert_agrees_with_local_mode(clients) -> None:
    create(clients, "conditional", count=10)
    new_points = [
        models.PointStruct(id=i, vector=[1, 1, 1, 1], payload={"n": 100 + i}) for i in (1, 2, 3, 40)
    ]
    for client in clients:
        client.upsert("conditional", new_points, update_filter=IS_RED, wait=True)
    assert_same_state(clients, "conditional")
    clients[0].delete_collection("conditional")


def test_scroll_pages_and_count_agree_with_local_mode(clients) -> None:
    create(clients, "scroll", count=37)
    for scroll_filter in (None, IS_RED):
        pages = []
        for client in clients:
            seen, offset = [], None
            while True:
                records, offset = client.scroll(
                    "scroll", scroll_filter=scroll_filter, limit=7, offset=offset
                )
                seen.append([(record.id, record.payload) for record in records])
                if offset is None:
                    break
            pages.append(seen)
        assert pages[0] == pages[1]
        counts = [c.count("scroll", count_filter=scroll_filter).count for c in clients]
        assert counts[0] == counts[1] == sum(len(page) for page in pages[0])
    records = both(
        clients,
        lambda c: c.scroll("scroll", limit=3, offset=point_id(10), with_payload=["n"])[0],
    )
    assert [(r.id, r.payload) for r in records[0]] == [(r.id, r.payload) for r in records[1]]
    clients[0].delete_collection("scroll")


def test_batch_update_points_agrees_with_local_mode(clients) -> None:
    create(clients, "batch", count=12, named=True)
    operations = [
        models.UpsertOperation(
            upsert=models.PointsList(
                points=[models.PointStruct(id=50, vector={"text": [1, 0, 0, 0]}, payload={"n": 50})]
            )
        ),
        models.DeleteOperation(delete=models.PointIdsList(points=[1])),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"s": 1}, filter=IS_RED)),
        models.OverwritePayloadOperation(
            overwrite_payload=models.SetPayload(payload={"o": 1}, points=[2])
        ),
        models.DeletePayloadOperation(
            delete_payload=models.DeletePayload(keys=["meta"], points=[3, 4])
        ),
        models.ClearPayloadOperation(clear_payload=models.PointIdsList(points=[6])),
        models.UpdateVectorsOperation(
            update_vectors=models.UpdateVectors(
                points=[models.PointVectors(id=7, vector={"image": [0, 0, 0, 1]})]
            )
        ),
        models.DeleteVectorsOperation(
            delete_vectors=models.DeleteVectors(points=[8], vector=["text"])
        ),
        models.DeleteOperation(delete=models.FilterSelector(filter=N_BELOW_3)),
    ]
    results = both(clients, lambda c: c.batch_update_points("batch", operations, wait=True))
    keel_results = results[0]
    assert [result.status for result in keel_results] == [models.UpdateStatus.COMPLETED] * 9
    op_ids = [result.operation_id for result in keel_results]
    assert op_ids == list(range(op_ids[0], op_ids[0] + 9))
    assert_same_state(clients, "batch")
    clients[0].delete_collection("batch")


def test_filtered_query_points_agrees_with_local_mode(clients) -> None:
    create(clients, "query", count=40, named=True)
    rng = np.random.default_rng(3)
    for query_filter in (IS_RED, SMALL_N, models.Filter(must_not=[IS_RED])):
        query = rng.normal(size=4).tolist()
        hits = [
            client.query_points(
                "query", query, using="text", query_filter=query_filter, with_payload=True
            ).points
            for client in clients
        ]
        assert len(hits[0]) == 10  # the default limit
        assert [(h.id, h.payload) for h in hits[0]] == [(h.id, h.payload) for h in hits[1]]
        np.testing.assert_allclose(
            [h.score for h in hits[0]], [h.score for h in hits[1]], rtol=1e-4, atol=1e-5
        )
    clients[0].delete_collection("query")
