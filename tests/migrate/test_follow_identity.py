"""`keel follow` never resumes on another history of a collection: after the source
collection is restored from a snapshot, or deleted and created again, the follower is
refused (exit 3, "run keel migrate again") and the target is left as it was. Op ids of the
restored collection continue above every op id handed out before. `--until-caught-up`
says what its registration holds, and `--release` removes it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from qdrant_client import models

from tests.keel_process import KeelProcess
from tests.migrate.test_migrate import client_of, run_keel

COLLECTION = "docs"


def upsert(server: KeelProcess, point_id: int) -> int:
    """One point; returns the operation_id Keel answered."""
    answer = httpx.put(
        f"{server.url}/collections/{COLLECTION}/points?wait=true",
        json={"points": [{"id": point_id, "vector": [float(point_id), 1.0, 0.0, 0.0]}]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["operation_id"]


def point_ids(server: KeelProcess) -> list[int]:
    points, _ = client_of(server).scroll(COLLECTION, limit=100)
    return sorted(point.id for point in points)


def follow(source: KeelProcess, target: KeelProcess, state: Path, *extra: str):
    return run_keel(
        "follow", "--from", source.url, "--to", target.url, "--state", str(state),
        "--until-caught-up", *extra,
    )  # fmt: skip


@pytest.fixture
def migrated(tmp_path: Path) -> tuple[KeelProcess, KeelProcess, Path]:
    """Source with ops 0..2 (points 1..3), migrated to the target and followed to lag 0."""
    source = KeelProcess.start(tmp_path / "source")
    target = KeelProcess.start(tmp_path / "target")
    client_of(source).create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    assert [upsert(source, point_id) for point_id in (1, 2, 3)] == [0, 1, 2]
    state = tmp_path / "state.json"
    done = run_keel("migrate", "--from", source.url, "--to", target.url, "--state", str(state))
    assert done.returncode == 0, done.stderr
    assert json.loads(state.read_text())["collections"][COLLECTION]["incarnation"]
    followed = follow(source, target, state)
    assert followed.returncode == 0, followed.stderr
    assert point_ids(target) == [1, 2, 3]
    return source, target, state


def test_follow_after_a_restore_is_refused_and_op_ids_continue(migrated, tmp_path):
    source, target, state = migrated
    snapshot_name = client_of(source).create_snapshot(COLLECTION).name  # as of op 2
    snapshot = httpx.get(
        f"{source.url}/collections/{COLLECTION}/snapshots/{snapshot_name}", timeout=30
    ).content
    assert [upsert(source, point_id) for point_id in (4, 5, 6)] == [3, 4, 5]
    followed = follow(source, target, state)
    assert followed.returncode == 0, followed.stderr
    assert point_ids(target) == [1, 2, 3, 4, 5, 6]

    restored = httpx.post(
        f"{source.url}/collections/{COLLECTION}/snapshots/upload?wait=true",
        files={"snapshot": (snapshot_name, snapshot)},
        timeout=60,
    )
    assert restored.status_code == 200, restored.text
    assert point_ids(source) == [1, 2, 3]
    assert upsert(source, 7) == 6  # not 3: op ids 3..5 were handed out already

    followed = follow(source, target, state)
    assert followed.returncode == 3, followed.stderr
    assert "keel migrate" in followed.stderr and "restored" in followed.stderr
    assert point_ids(target) == [1, 2, 3, 4, 5, 6]  # nothing of the other history replayed


def test_follow_after_a_delete_and_create_is_refused(migrated):
    source, target, state = migrated
    client = client_of(source)
    client.delete_collection(COLLECTION)
    client.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    assert upsert(source, 9) == 3
    followed = follow(source, target, state)
    assert followed.returncode == 3, followed.stderr
    assert "keel migrate" in followed.stderr
    assert point_ids(target) == [1, 2, 3]


def followers_of(source: KeelProcess) -> list[str]:
    answer = httpx.get(f"{source.url}/keel/collections/{COLLECTION}/followers", timeout=30)
    return [follower["name"] for follower in answer.json()["result"]]


def test_until_caught_up_says_what_it_holds_and_release_removes_it(migrated):
    source, target, state = migrated
    upsert(source, 4)
    kept = follow(source, target, state)
    assert kept.returncode == 0, kept.stderr
    assert "stays registered" in kept.stderr and "--release" in kept.stderr
    assert len(followers_of(source)) == 1

    released = follow(source, target, state, "--release")
    assert released.returncode == 0, released.stderr
    assert "released" in released.stderr
    assert followers_of(source) == []
    assert point_ids(target) == [1, 2, 3, 4]

    alone = run_keel("follow", "--from", source.url, "--to", target.url, "--state", str(state),
                     "--release")  # fmt: skip
    assert alone.returncode == 2 and "--until-caught-up" in alone.stderr


def test_follow_onto_its_own_source_is_refused_before_registering(migrated):
    source, _target, _state = migrated
    refused = run_keel("follow", "--from", source.url, "--to", source.url.replace(
        "127.0.0.1", "localhost"), "--from-op", f"{COLLECTION}=2", "--until-caught-up")  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "same server" in refused.stderr
    assert len(followers_of(source)) == 1  # the migration's follower only: nothing registered
