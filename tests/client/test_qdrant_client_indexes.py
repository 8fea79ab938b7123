"""qdrant-client's payload index calls against a real Keel server: create (type name and
params object), `payload_schema` parsed by the client's models, filtered reads, delete."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from qdrant_client import QdrantClient, models

from tests.keel_process import KeelProcess


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantClient]:
    server = KeelProcess.start(tmp_path_factory.mktemp("client_indexes") / "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a version-compatibility warning fails the test
        keel = QdrantClient(url=server.url, timeout=30)
    yield keel
    keel.close()
    assert server.terminate() == 0


def test_payload_indexes_through_qdrant_client(client: QdrantClient) -> None:
    vectors = models.VectorParams(size=2, distance=models.Distance.DOT)
    client.create_collection("idx", vectors_config=vectors)
    points = [
        models.PointStruct(id=i, vector=[1.0, i], payload={"color": ["red", "blue"][i % 2], "n": i})
        for i in range(20)
    ]
    client.upsert("idx", points, wait=True)
    result = client.create_payload_index("idx", "color", models.PayloadSchemaType.KEYWORD)
    assert result.status == models.UpdateStatus.COMPLETED
    params = models.IntegerIndexParams(
        type=models.IntegerIndexType.INTEGER, lookup=True, range=True
    )
    client.create_payload_index("idx", "n", field_schema=params, wait=True)
    schema = client.get_collection("idx").payload_schema
    assert schema["color"].data_type == models.PayloadSchemaType.KEYWORD
    assert schema["color"].points == 20
    assert schema["n"].params == params
    is_red = models.FieldCondition(key="color", match=models.MatchValue(value="red"))
    small = models.FieldCondition(key="n", range=models.Range(lt=6))
    count = client.count("idx", count_filter=models.Filter(must=[is_red, small])).count
    assert count == 3
    client.delete_payload_index("idx", "color", wait=True)
    assert list(client.get_collection("idx").payload_schema) == ["n"]
