"""keel migrate / follow against a second Keel as the target: a migration under concurrent
writes followed to zero lag leaves both sides identical; a migration killed halfway resumes;
a follower past the WAL retention cap is refused with a clear message."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.keel_process import REPO_ROOT, KeelProcess, wait_until

COLLECTION = "docs"
ALIAS = "docs-alias"
CLI_TIMEOUT_S = 120.0


def run_keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL")}
    child_env["PYTHONPATH"] = str(REPO_ROOT)
    child_env.update(env or {})
    return subprocess.run(
        [*command, *args],
        cwd=REPO_ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,  # not a terminal: nothing is asked interactively
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def client_of(server: KeelProcess) -> QdrantClient:
    return QdrantClient(url=server.url, timeout=60, check_compatibility=False)


def random_point(point_id: Any, rng: random.Random) -> models.PointStruct:
    vector: dict[str, Any] = {
        "text": [rng.uniform(-1, 1) for _ in range(8)],
        "keywords": models.SparseVector(
            indices=sorted(rng.sample(range(100), 3)), values=[rng.random() for _ in range(3)]
        ),
    }
    if rng.random() < 0.8:
        vector["image"] = [rng.uniform(-1, 1) for _ in range(4)]
    payload = {"kind": rng.choice(["a", "b", "c"]), "n": rng.randrange(100), "tags": ["x", "y"]}
    return models.PointStruct(id=point_id, vector=vector, payload=payload)


def create_source_data(client: QdrantClient, count: int, seed: int = 1) -> None:
    client.create_collection(
        COLLECTION,
        vectors_config={
            "text": models.VectorParams(size=8, distance=models.Distance.COSINE),
            "image": models.VectorParams(size=4, distance=models.Distance.EUCLID),
        },
        sparse_vectors_config={"keywords": models.SparseVectorParams()},
        hnsw_config=models.HnswConfigDiff(m=8, ef_construct=64),
    )
    client.create_payload_index(COLLECTION, "kind", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(COLLECTION, "n", models.PayloadSchemaType.INTEGER)
    rng = random.Random(seed)
    ids: list[Any] = list(range(count)) + [
        str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20)
    ]
    for start in range(0, len(ids), 500):
        points = [random_point(point_id, rng) for point_id in ids[start : start + 500]]
        client.upsert(COLLECTION, points, wait=True)
    client.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(alias_name=ALIAS, collection_name=COLLECTION)
            )
        ]
    )


class Writer(threading.Thread):
    """Keeps upserting, deleting and setting payload until stopped."""

    def __init__(self, client: QdrantClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop_event = threading.Event()
        self.op_count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        try:
            while not self.stop_event.is_set():
                choice = rng.random()
                if choice < 0.5:
                    points = [random_point(rng.randrange(2500), rng) for _ in range(20)]
                    self.client.upsert(COLLECTION, points, wait=True)
                elif choice < 0.7:
                    ids = [rng.randrange(2500) for _ in range(5)]
                    self.client.delete(COLLECTION, models.PointIdsList(points=ids), wait=True)
                elif choice < 0.85:
                    selector = models.Filter(
                        must=[
                            models.FieldCondition(
                                key="n",
                                range=models.Range(
                                    gte=rng.randrange(100), lt=rng.randrange(100) + 3
                                ),
                            )
                        ]
                    )
                    self.client.set_payload(
                        COLLECTION, {"touched": self.op_count}, selector, wait=True
                    )
                else:
                    ids = [rng.randrange(2500) for _ in range(3)]
                    try:
                        self.client.overwrite_payload(
                            COLLECTION, {"kind": "b", "n": 5}, ids, wait=True
                        )
                    except UnexpectedResponse as error:
                        # An id not there (never written, or deleted): Qdrant's 404, after
                        # editing the others; `keel follow` replays it the same way.
                        if error.status_code != 404:
                            raise
                self.op_count += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


def everything(client: QdrantClient, name: str) -> dict[str, Any]:
    points: dict[str, Any] = {}
    offset = None
    while True:
        records, offset = client.scroll(
            name, limit=1000, offset=offset, with_payload=True, with_vectors=True
        )
        for record in records:
            points[str(record.id)] = record
        if offset is None:
            return points


def assert_identical(source: QdrantClient, target: QdrantClient) -> None:
    source_points, target_points = everything(source, COLLECTION), everything(target, COLLECTION)
    assert sorted(source_points) == sorted(target_points)
    for point_id, record in source_points.items():
        other = target_points[point_id]
        assert record.payload == other.payload, point_id
        assert set(record.vector) == set(other.vector), point_id
        for name, vector in record.vector.items():
            if isinstance(vector, list):
                np.testing.assert_allclose(vector, other.vector[name], rtol=1e-5, atol=1e-6)
            else:
                assert vector.indices == other.vector[name].indices
                np.testing.assert_allclose(vector.values, other.vector[name].values, rtol=1e-6)
    source_info, target_info = source.get_collection(COLLECTION), target.get_collection(COLLECTION)
    assert source_info.points_count == target_info.points_count
    assert {k: v.data_type for k, v in source_info.payload_schema.items()} == {
        k: v.data_type for k, v in target_info.payload_schema.items()
    }
    assert source_info.config.params == target_info.config.params
    assert source_info.config.hnsw_config == target_info.config.hnsw_config
    assert source.get_aliases() == target.get_aliases()


@pytest.fixture
def servers(tmp_path: Path) -> tuple[KeelProcess, KeelProcess]:
    source = KeelProcess.start(tmp_path / "source")
    target = KeelProcess.start(tmp_path / "target")
    return source, target


def test_migrate_under_writes_then_follow_to_zero_lag(servers, tmp_path):
    source, target = servers
    source_client, target_client = client_of(source), client_of(target)
    create_source_data(source_client, 1500)
    writer = Writer(client_of(source))
    writer.start()
    state = tmp_path / "state.json"
    wait_until(lambda: writer.op_count >= 5, 20)
    migrated = run_keel(
        "migrate", "--from", source.url, "--to", target.url, "--state", str(state),
        "--batch-size", "200", "--parallel", "3",
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    op_id = json.loads(state.read_text())["collections"][COLLECTION]["op_id"]
    assert f"op_id={op_id}" in migrated.stdout
    followed = run_keel(
        "follow",
        "--from",
        source.url,
        "--to",
        target.url,
        "--state",
        str(state),
        "--until-caught-up",
    )
    assert followed.returncode == 0, followed.stderr
    writer.stop_event.set()
    writer.join(30)
    assert writer.error is None, writer.error
    assert writer.op_count > 10
    # Aliases are not WAL ops: follow compares them and makes the target's match.
    source_client.update_collection_aliases(
        change_aliases_operations=[
            models.RenameAliasOperation(
                rename_alias=models.RenameAlias(old_alias_name=ALIAS, new_alias_name="renamed")
            ),
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(alias_name="second", collection_name=COLLECTION)
            ),
        ]
    )
    followed = run_keel(
        "follow",
        "--from",
        source.url,
        "--to",
        target.url,
        "--state",
        str(state),
        "--until-caught-up",
    )
    assert followed.returncode == 0, followed.stderr
    assert "lag_ops=0" in followed.stderr
    assert_identical(source_client, target_client)


def test_killed_migration_resumes_and_finishes(servers, tmp_path):
    source, target = servers
    source_client, target_client = client_of(source), client_of(target)
    create_source_data(source_client, 1200)
    state = tmp_path / "state.json"
    args = (
        "migrate",
        "--from",
        source.url,
        "--to",
        target.url,
        "--state",
        str(state),
        "--batch-size",
        "100",
        "--parallel",
        "1",
    )
    killed = run_keel(*args, env={"KEEL_MIGRATE_KILL_AFTER_BATCHES": "4", "KEEL_TEST_FAULTS": "1"})
    assert killed.returncode == -9, killed.stderr
    entry = json.loads(state.read_text())["collections"][COLLECTION]
    assert entry["points_done"] == 400
    assert not entry.get("is_copied")
    resumed = run_keel(*args)
    assert resumed.returncode == 0, resumed.stderr
    entry = json.loads(state.read_text())["collections"][COLLECTION]
    assert entry["points_done"] == 1220
    assert_identical(source_client, target_client)


def test_follower_past_retention_cap_is_refused(tmp_path):
    env = {
        "KEEL__STORAGE__WAL__FOLLOWER_RETENTION_MB_MAX": "1",
        "KEEL__STORAGE__WAL__SEGMENT_MB_TARGET": "1",
        "KEEL__STORAGE__PERFORMANCE__CHECKPOINT_EVERY_OPS": "20",
    }
    source = KeelProcess.start(tmp_path / "source", extra_env=env)
    target = KeelProcess.start(tmp_path / "target")
    source_client = client_of(source)
    source_client.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=256, distance=models.Distance.DOT)
    )
    state = tmp_path / "state.json"
    migrated = run_keel("migrate", "--from", source.url, "--to", target.url, "--state", str(state))
    assert migrated.returncode == 0, migrated.stderr
    rng = np.random.default_rng(3)
    for start in range(0, 6000, 100):  # ~6 MiB of WAL, past the 1 MiB cap
        vectors = rng.random((100, 256), dtype=np.float32).tolist()
        source_client.upsert(
            COLLECTION,
            models.Batch(ids=list(range(start, start + 100)), vectors=vectors),
            wait=True,
        )
    followed = run_keel(
        "follow",
        "--from",
        source.url,
        "--to",
        target.url,
        "--state",
        str(state),
        "--until-caught-up",
    )
    assert followed.returncode == 3, followed.stderr
    assert "keel migrate" in followed.stderr
    assert "lost" in followed.stderr or "truncated" in followed.stderr
    assert "follower lost" in source.log_text()


def test_import_copies_collections_from_another_server(servers):
    source, target = servers
    source_client, target_client = client_of(source), client_of(target)
    create_source_data(source_client, 700)
    imported = run_keel("import", "--from", source.url, "--to", target.url, "--batch-size", "150")
    assert imported.returncode == 0, imported.stderr
    assert_identical(source_client, target_client)
    again = run_keel("import", "--from", source.url, "--to", target.url)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr


def test_the_kill_switch_is_refused_without_the_test_faults_switch(tmp_path):
    """KEEL_MIGRATE_KILL_AFTER_BATCHES left in an environment must not arm a self-kill: the
    migration is refused (exit 2) before it contacts either server or writes any state."""
    state = tmp_path / "state.json"
    args = ("migrate", "--from", "http://127.0.0.1:9", "--to", "http://127.0.0.1:10")
    refused = run_keel(*args, "--state", str(state), env={"KEEL_MIGRATE_KILL_AFTER_BATCHES": "4"})
    assert refused.returncode == 2, refused.stderr
    assert "KEEL_MIGRATE_KILL_AFTER_BATCHES='4' is a test-only fault setting" in refused.stderr
    assert "KEEL_TEST_FAULTS=1" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_migrate_and_follow_carry_multivectors(servers, tmp_path):
    """Matrices of several rows reach the target whole, by migrate and then by follow."""
    source, target = servers
    source_client, target_client = client_of(source), client_of(target)
    source_client.create_collection(
        "mv",
        vectors_config={
            "colbert": models.VectorParams(
                size=4,
                distance=models.Distance.COSINE,
                multivector_config=models.MultiVectorConfig(
                    comparator=models.MultiVectorComparator.MAX_SIM
                ),
            )
        },
    )
    rng = random.Random(5)

    def matrix(rows: int) -> list[list[float]]:
        return [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(rows)]

    points = [models.PointStruct(id=i, vector={"colbert": matrix(1 + i % 4)}) for i in range(30)]
    source_client.upsert("mv", points, wait=True)
    state = tmp_path / "state.json"
    migrated = run_keel("migrate", "--from", source.url, "--to", target.url, "--state", str(state))
    assert migrated.returncode == 0, migrated.stderr
    source_client.upsert(
        "mv", [models.PointStruct(id=99, vector={"colbert": matrix(3)})], wait=True
    )
    followed = run_keel(
        "follow", "--from", source.url, "--to", target.url, "--state", str(state),
        "--until-caught-up",
    )  # fmt: skip
    assert followed.returncode == 0, followed.stderr
    read = {"limit": 100, "with_vectors": True, "collection_name": "mv"}
    source_points = source_client.scroll(**read)[0]
    target_points = target_client.scroll(**read)[0]
    assert len(target_points) == 31
    assert [(p.id, p.vector) for p in target_points] == [(p.id, p.vector) for p in source_points]
    query = matrix(2)
    found = [
        [(hit.id, round(hit.score, 5)) for hit in client.query_points(
            "mv", query=query, using="colbert", limit=5
        ).points]
        for client in (source_client, target_client)
    ]  # fmt: skip
    assert found[0] == found[1]
