"""qdrant-client's update_collection (metadata) and facet against Keel and its local mode.

Every call is made against a real Keel server and against `QdrantClient(":memory:")`; the
collection metadata after each update, and each facet answer, must be the same.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess

VECTORS = models.VectorParams(size=2, distance=models.Distance.DOT)


@pytest.fixture(scope="module")
def keel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_config") / "storage")
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


def test_metadata_on_create_and_update_matches_local_mode(clients):
    updates = [
        {"b": {"x": 1}, "c": [1, 2]},
        {"a": None, "b": {"y": 2}},
        {"d": "text"},
    ]
    seen = []
    for client in clients:
        if client.collection_exists("meta"):
            client.delete_collection("meta")
        client.create_collection("meta", vectors_config=VECTORS, metadata={"a": 1, "b": 2})
        states = [client.get_collection("meta").config.metadata]
        for update in updates:
            assert client.update_collection("meta", metadata=update) is True
            states.append(client.get_collection("meta").config.metadata)
        seen.append(states)
    keel_states, oracle_states = seen
    assert keel_states == oracle_states
    assert keel_states[-1] == {"b": {"y": 2}, "c": [1, 2], "d": "text"}


def test_facet_matches_local_mode(clients):
    payloads = [
        {"city": "Berlin", "n": 1, "tags": ["a", "b", "a"]},
        {"city": "Paris", "n": 2, "tags": ["b"]},
        {"city": "Paris", "n": 1},
        {"city": "Rome", "n": 3, "tags": []},
        {"city": "Berlin", "n": 1, "flag": True},
        {"city": "Athens", "n": 2, "flag": False},
        {"n": 4, "flag": True},
    ]
    points = [
        models.PointStruct(id=i, vector=[1.0, float(i)], payload=payload)
        for i, payload in enumerate(payloads, 1)
    ]
    requests = [
        {"key": "city"},
        {"key": "city", "limit": 2},
        {"key": "n"},
        {"key": "tags"},
        {"key": "flag"},
        {"key": "missing"},
        {
            "key": "city",
            "facet_filter": models.Filter(
                must=[models.FieldCondition(key="n", match=models.MatchValue(value=1))]
            ),
        },
    ]
    answers = []
    for client in clients:
        if client.collection_exists("facets"):
            client.delete_collection("facets")
        client.create_collection("facets", vectors_config=VECTORS)
        client.upsert("facets", points=points, wait=True)
        answers.append(
            [
                [(hit.value, hit.count) for hit in client.facet("facets", **request).hits]
                for request in requests
            ]
        )
    keel_answers, oracle_answers = answers
    assert keel_answers == oracle_answers
    assert keel_answers[0] == [("Berlin", 2), ("Paris", 2), ("Athens", 1), ("Rome", 1)]


def test_update_collection_options_through_the_client(clients):
    """Local mode ignores these options (it has no optimizers or HNSW), so only Keel's info
    is checked: the client sends them, Keel stores them, the client parses the answer."""
    keel, _ = clients
    if keel.collection_exists("opts"):
        keel.delete_collection("opts")
    keel.create_collection("opts", vectors_config=VECTORS)
    assert keel.update_collection(
        "opts",
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
        hnsw_config=models.HnswConfigDiff(m=8, full_scan_threshold=20),
        collection_params=models.CollectionParamsDiff(on_disk_payload=False),
        quantization_config=models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8)
        ),
        vectors_config={"": models.VectorParamsDiff(on_disk=True)},
    )
    config = keel.get_collection("opts").config
    assert config.optimizer_config.indexing_threshold == 0
    assert (config.hnsw_config.m, config.hnsw_config.full_scan_threshold) == (8, 20)
    assert config.params.on_disk_payload is False
    assert config.params.vectors.on_disk is True
    assert config.quantization_config.scalar.type == models.ScalarType.INT8
    keel.update_collection("opts", quantization_config=models.Disabled.DISABLED)
    assert keel.get_collection("opts").config.quantization_config is None
