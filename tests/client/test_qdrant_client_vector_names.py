"""qdrant-client 1.20's `create_vector_name` / `delete_vector_name` against a real Keel server:
a dense and a sparse name added to a collection with points, written and searched, shown in
`get_collection`, then deleted from every point."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantClient]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_vector_names") / "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-compatibility warning fails the test
        keel = QdrantClient(url=server.url, timeout=30)
    yield keel
    keel.close()
    assert server.terminate() == 0


def test_vector_names_through_qdrant_client(client: QdrantClient) -> None:
    vectors = {"a": models.VectorParams(size=2, distance=models.Distance.DOT)}
    client.create_collection("vn", vectors_config=vectors)
    client.upsert("vn", [models.PointStruct(id=i, vector={"a": [1.0, i]}) for i in range(5)])
    dense = models.DenseVectorNameConfig(
        dense=models.DenseVectorConfig(size=3, distance=models.Distance.COSINE)
    )
    result = client.create_vector_name("vn", "b", dense)
    assert result.status == models.UpdateStatus.COMPLETED
    sparse = models.SparseVectorNameConfig(
        sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
    )
    client.create_vector_name("vn", "s", sparse, wait=True)
    params = client.get_collection("vn").config.params
    assert params.vectors["b"] == models.VectorParams(size=3, distance=models.Distance.COSINE)
    assert params.sparse_vectors["s"].modifier == models.Modifier.IDF
    client.update_vectors(
        "vn",
        [
            models.PointVectors(
                id=2,
                vector={"b": [0.0, 0.0, 2.0], "s": models.SparseVector(indices=[4], values=[1.0])},
            )
        ],
    )
    hits = client.query_points("vn", query=[0.0, 0.0, 1.0], using="b").points
    assert [(hit.id, round(hit.score, 4)) for hit in hits] == [(2, 1.0)]
    query = models.SparseVector(indices=[4], values=[1.0])
    assert [hit.id for hit in client.query_points("vn", query=query, using="s").points] == [2]
    with pytest.raises(Exception, match="already exists as a sparse vector"):
        client.create_vector_name("vn", "s", dense)
    client.delete_vector_name("vn", "a", wait=True)
    client.delete_vector_name("vn", "s", wait=True)
    records = client.retrieve("vn", [1, 2], with_vectors=True)
    assert [record.vector for record in records] == [{}, {"b": [0.0, 0.0, 1.0]}]
    assert list(client.get_collection("vn").config.params.vectors) == ["b"]
