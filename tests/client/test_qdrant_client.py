"""qdrant-client, unchanged, against a real Keel server: the answers match its local mode.

The oracle is qdrant-client's own in-process implementation (`QdrantClient(":memory:")`):
every call is made against both, and ids, payloads, vectors and scores must agree.
"""

from __future__ import annotations

import uuid
import warnings

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess


@pytest.fixture(scope="module")
def keel_url(tmp_path_factory: pytest.TempPathFactory):
    server = KeelProcess.start(tmp_path_factory.mktemp("client") / "storage")
    yield server.url
    assert server.terminate() == 0


def clients(keel_url: str) -> tuple[QdrantClient, QdrantClient]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-compatibility warning fails the test
        keel = QdrantClient(url=keel_url, timeout=30)
    return keel, QdrantClient(":memory:")


@pytest.mark.parametrize(
    "distance",
    [
        models.Distance.COSINE,
        models.Distance.DOT,
        models.Distance.EUCLID,
        models.Distance.MANHATTAN,
    ],
)
def test_create_upsert_retrieve_and_search_agree_with_local_mode(keel_url: str, distance) -> None:
    keel, oracle = clients(keel_url)
    name = f"client_{distance.value.lower()}"
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(60, 16)).astype(np.float32)
    points = [
        models.PointStruct(
            id=i if i % 3 else str(uuid.UUID(int=i + 1)),
            vector=vectors[i].tolist(),
            payload={"i": i, "tag": f"t{i % 4}"},
        )
        for i in range(60)
    ]
    statuses = []
    for client in (keel, oracle):
        assert client.create_collection(
            name, vectors_config=models.VectorParams(size=16, distance=distance)
        )
        statuses.append(client.upsert(name, points[:30], wait=True).status)
        statuses.append(client.upsert(name, points[30:], wait=False).status)
    assert statuses[:2] == [models.UpdateStatus.COMPLETED, models.UpdateStatus.ACKNOWLEDGED]
    assert statuses[2] == models.UpdateStatus.COMPLETED
    keel.upsert(name, points[:1], wait=True)  # a wait=true after wait=false: all applied
    oracle.upsert(name, points[:1], wait=True)

    ids = [points[i].id for i in (0, 5, 31, 59)]
    keel_records = keel.retrieve(name, ids, with_vectors=True)
    oracle_records = oracle.retrieve(name, ids, with_vectors=True)
    assert [(r.id, r.payload) for r in keel_records] == [(r.id, r.payload) for r in oracle_records]
    for mine, theirs in zip(keel_records, oracle_records):
        np.testing.assert_allclose(mine.vector, theirs.vector, rtol=1e-5, atol=1e-6)

    query = rng.normal(size=16).tolist()
    keel_hits = keel.query_points(name, query=query, limit=5, with_payload=True).points
    oracle_hits = oracle.query_points(name, query=query, limit=5, with_payload=True).points
    assert [h.id for h in keel_hits] == [h.id for h in oracle_hits]
    np.testing.assert_allclose(
        [h.score for h in keel_hits], [h.score for h in oracle_hits], rtol=1e-4, atol=1e-5
    )
    assert [h.payload for h in keel_hits] == [h.payload for h in oracle_hits]
    assert keel.get_collection(name).points_count == 60
    assert keel.collection_exists(name)
    assert keel.delete_collection(name)
    assert not keel.collection_exists(name)


def test_named_vectors_and_delete_points(keel_url: str) -> None:
    keel, oracle = clients(keel_url)
    config = {
        "text": models.VectorParams(size=4, distance=models.Distance.DOT),
        "image": models.VectorParams(size=4, distance=models.Distance.DOT),
    }
    points = [
        models.PointStruct(
            id=1,
            vector={"text": [0.1, 0.2, 0.3, 0.4], "image": [0.5, 0.6, 0.7, 0.8]},
            payload={"a": 1},
        ),
        models.PointStruct(id=2, vector={"text": [0.4, 0.3, 0.2, 0.1]}, payload={"a": 2}),
    ]
    for client in (keel, oracle):
        client.create_collection("named", vectors_config=config)
        client.upsert("named", points, wait=True)
        client.delete("named", points_selector=models.PointIdsList(points=[1]), wait=True)
    for client in (keel, oracle):
        hits = client.query_points(
            "named", query=[1, 1, 1, 1], using="text", with_vectors=True
        ).points
        assert [h.id for h in hits] == [2]
        assert set(hits[0].vector) == {"text"}
    assert keel.get_collection("named").points_count == 1
    keel.delete_collection("named")


def test_aliases_through_qdrant_client_agree_with_local_mode(keel_url: str) -> None:
    keel, oracle = clients(keel_url)
    actions = [
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name="aliased", alias_name="current")
        ),
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name="aliased", alias_name="old")
        ),
    ]
    for client in (keel, oracle):
        client.create_collection(
            "aliased", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
        )
        assert client.update_collection_aliases(change_aliases_operations=actions)
        client.upsert("current", [models.PointStruct(id=1, vector=[1, 0])], wait=True)
        client.update_collection_aliases(
            change_aliases_operations=[
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name="old"))
            ]
        )
    listed = [
        sorted((a.alias_name, a.collection_name) for a in client.get_aliases().aliases)
        for client in (keel, oracle)
    ]
    assert listed[0] == listed[1] == [("current", "aliased")]
    assert [r.id for r in keel.retrieve("current", [1])] == [1]
    keel.delete_collection("aliased")
    assert keel.get_aliases().aliases == []
