"""`keel follow` carries vector-name ops: a name added and one deleted on the source after a
migration reach the target through the follower's requests (server/wire/op_requests.py), in
op order with the point writes around them."""

from __future__ import annotations

from pathlib import Path

from qdrant_client import models

from tests.keel_process import KeelProcess
from tests.migrate.test_migrate import client_of, run_keel


def test_follow_carries_created_and_deleted_vector_names(tmp_path: Path):
    source = KeelProcess.start(tmp_path / "source")
    target = KeelProcess.start(tmp_path / "target")
    source_client, target_client = client_of(source), client_of(target)
    vectors = {"a": models.VectorParams(size=2, distance=models.Distance.DOT)}
    source_client.create_collection("vn", vectors_config=vectors)
    points = [models.PointStruct(id=i, vector={"a": [1.0, float(i)]}) for i in range(10)]
    source_client.upsert("vn", points, wait=True)
    state = tmp_path / "state.json"
    migrated = run_keel("migrate", "--from", source.url, "--to", target.url, "--state", str(state))
    assert migrated.returncode == 0, migrated.stderr

    dense = models.DenseVectorNameConfig(
        dense=models.DenseVectorConfig(size=3, distance=models.Distance.COSINE, datatype="float16")
    )
    source_client.create_vector_name("vn", "b", dense, wait=True)
    source_client.update_vectors(
        "vn", [models.PointVectors(id=3, vector={"b": [1.0, 2.0, 2.0]})], wait=True
    )
    sparse = models.SparseVectorNameConfig(
        sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
    )
    source_client.create_vector_name("vn", "s", sparse, wait=True)
    source_client.delete_vector_name("vn", "a", wait=True)
    followed = run_keel(
        "follow", "--from", source.url, "--to", target.url, "--state", str(state),
        "--until-caught-up",
    )  # fmt: skip
    assert followed.returncode == 0, followed.stderr

    source_params = source_client.get_collection("vn").config.params
    target_params = target_client.get_collection("vn").config.params
    assert target_params.vectors == source_params.vectors
    assert list(target_params.vectors) == ["b"]
    assert target_params.sparse_vectors == source_params.sparse_vectors
    read = {"collection_name": "vn", "limit": 100, "with_vectors": True}
    source_points = source_client.scroll(**read)[0]
    target_points = target_client.scroll(**read)[0]
    assert [(p.id, p.vector) for p in target_points] == [(p.id, p.vector) for p in source_points]
    assert target_points[3].vector == {"b": [0.33325195, 0.6665039, 0.6665039]}
    for server in (source, target):
        assert server.terminate() == 0
