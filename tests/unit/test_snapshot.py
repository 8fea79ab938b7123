"""engine/snapshot.py and the catalog's snapshot/restore: format, checks, exact op ids."""

from __future__ import annotations

import hashlib
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engine import snapshot
from engine.catalog import RESTORE_READY_FILE_NAME, AliasAction
from engine.errors import BadRequest, NotFound
from engine.ops import PayloadSelector, SearchRequest, VectorSelector
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

ALL = PayloadSelector(True)
WITH_VECTOR = VectorSelector(True)


async def points_of(collection, ids) -> dict:
    records = await collection.retrieve(ids, ALL, WITH_VECTOR)
    return {record.id: (record.payload, record.vectors[""].tolist()) for record in records}


async def write_points(collection, ids: list[int]) -> int:
    """Upsert each id (vector and payload derived from it); return the last op id."""
    op_id = -1
    for point_id in ids:
        op = upsert([point_id], [[point_id, 1, 0, 0]], [{"n": point_id}])
        result = await collection.update(op, wait=True, timeout_s=None)
        op_id = result.op_id
    return op_id


async def test_a_snapshot_round_trips_to_its_op_id(tmp_path: Path) -> None:
    """Snapshot after ops 0..4, write more, restore into a new name: exactly ops 0..4's
    points, an index rebuilt from LMDB (search works), and op ids continuing after 4."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    collection = catalog.get("c")
    snapshot_op_id = await write_points(collection, [1, 2, 3, 4, 5])
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await write_points(collection, [6, 7])
    path = tmp_path / "snapshots" / "c" / info.name

    assert info.name.startswith(f"c-{snapshot_op_id}-") and info.name.endswith(".snapshot")
    assert info.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (path.parent / (info.name + ".checksum")).read_text() == info.checksum
    assert snapshot.read_manifest(path).op_id == snapshot_op_id
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["manifest.json", "config.json", "lmdb/data.mdb"]

    manifest = await catalog.restore("copy", path)
    assert manifest.op_id == snapshot_op_id
    restored = catalog.get("copy")
    assert restored.config == collection.config
    assert await points_of(restored, list(range(1, 8))) == await points_of(
        collection, [1, 2, 3, 4, 5]
    )
    hits = await restored.search(SearchRequest("", np.array([5, 1, 0, 0], np.float32), limit=2))
    assert [hit.id for hit in hits] == [5, 4]
    assert await write_points(restored, [9]) == snapshot_op_id + 1
    await catalog.close()

    # And it reopens as an ordinary collection, WAL starting after the snapshot's op id.
    catalog = await open_catalog(tmp_path / "storage")
    assert await points_of(catalog.get("copy"), [5, 9]) == {
        5: ({"n": 5}, [5.0, 1.0, 0.0, 0.0]),
        9: ({"n": 9}, [9.0, 1.0, 0.0, 0.0]),
    }
    await catalog.close()


async def test_restore_replaces_an_existing_collection_and_keeps_its_aliases(
    tmp_path: Path,
) -> None:
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    await write_points(catalog.get("c"), [1, 2])
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await write_points(catalog.get("c"), [3])
    await catalog.change_aliases([AliasAction("create", "a", collection_name="c")])

    await catalog.restore("a", tmp_path / "snapshots" / "c" / info.name)

    assert catalog.names() == ["c"]
    assert sorted(await points_of(catalog.get("a"), [1, 2, 3])) == [1, 2]
    assert catalog.aliases() == [("a", "c")]
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []
    await catalog.close()


@pytest.mark.parametrize("has_sidecar", [True, False])
async def test_a_corrupt_byte_is_refused_and_nothing_changes(tmp_path: Path, has_sidecar) -> None:
    """Flip one byte inside lmdb/data.mdb: the sidecar's sha256 catches it, and without a
    sidecar the manifest's per-member sha256 does. The collection is untouched."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    await write_points(catalog.get("c"), [1, 2])
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await write_points(catalog.get("c"), [3])
    path = tmp_path / "snapshots" / "c" / info.name
    data = bytearray(path.read_bytes())
    offset = data.index(b"lmdb/data.mdb") + 2048  # inside the member's bytes
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    if not has_sidecar:
        (path.parent / (info.name + ".checksum")).unlink()

    with pytest.raises(BadRequest, match="checksum mismatch" if has_sidecar else "sha256"):
        await catalog.restore("c", path)

    assert sorted(await points_of(catalog.get("c"), [1, 2, 3])) == [1, 2, 3]
    assert list((tmp_path / "storage" / "tmp").iterdir()) == []
    await catalog.close()


async def test_an_explicit_checksum_must_match(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    path = tmp_path / "snapshots" / "c" / info.name
    mismatch = f"Snapshot checksum mismatch: expected {'0' * 64}, got {info.checksum}"
    with pytest.raises(BadRequest, match=mismatch):
        await catalog.restore("new", path, "0" * 64)
    with pytest.raises(BadRequest, match="sha256 in hex"):
        await catalog.restore("new", path, "abc")
    with pytest.raises(NotFound):
        await catalog.restore("new", path.with_name("missing.snapshot"))
    assert catalog.names() == ["c"]
    manifest = await catalog.restore("new", path, info.checksum.upper())
    assert manifest.op_id == -1  # an empty collection: nothing applied yet
    assert catalog.names() == ["c", "new"]
    await catalog.close()


async def test_a_tampered_manifest_is_refused(tmp_path: Path) -> None:
    """A tar with an extra member (a path escaping the target) is refused before use."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    source = tmp_path / "snapshots" / "c" / info.name
    bad = tmp_path / "bad.snapshot"
    with tarfile.open(source) as original, tarfile.open(bad, "w") as tar:
        for member in original.getmembers():
            tar.addfile(member, original.extractfile(member))
        evil = tarfile.TarInfo("../../evil")
        tar.addfile(evil)
    with pytest.raises(BadRequest, match="beyond"):
        await catalog.restore("x", bad)
    assert not (tmp_path / "evil").exists()
    assert catalog.names() == ["c"]
    await catalog.close()


async def test_list_and_delete(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    directory = tmp_path / "snapshots" / "c"
    [listed] = snapshot.list_snapshots(directory)
    assert (listed.name, listed.size_bytes, listed.checksum) == (
        info.name,
        info.size_bytes,
        info.checksum,
    )
    with pytest.raises(NotFound):
        snapshot.delete_snapshot(directory, "../c/" + info.name)
    assert (directory / info.name).is_file()
    snapshot.delete_snapshot(directory, info.name)
    assert snapshot.list_snapshots(directory) == []
    assert list(directory.iterdir()) == []
    with pytest.raises(NotFound):
        snapshot.delete_snapshot(directory, info.name)
    await catalog.close()


async def test_a_restore_cut_between_its_renames_is_finished_at_open(tmp_path: Path) -> None:
    """Simulate a crash after the old collection went to tmp/ and before the staged one
    came in: open() must roll the ready staged collection forward, not delete both."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    await write_points(catalog.get("c"), [1])
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await catalog.close()
    storage = tmp_path / "storage"
    staging = storage / "tmp" / "restoring-x"
    snapshot.unpack(tmp_path / "snapshots" / "c" / info.name, staging, None)
    (staging / RESTORE_READY_FILE_NAME).write_text("c")
    (storage / "collections" / "c").rename(storage / "tmp" / "replaced-x")

    catalog = await open_catalog(storage)
    assert catalog.names() == ["c"]
    assert await points_of(catalog.get("c"), [1]) == {1: ({"n": 1}, [1.0, 1.0, 0.0, 0.0])}
    assert not (storage / "collections" / "c" / RESTORE_READY_FILE_NAME).exists()
    assert list((storage / "tmp").iterdir()) == []
    await catalog.close()


def test_snapshot_names_are_checked() -> None:
    for name in ("", "a/b", "..", "../x.snapshot", ".hidden", "a\\b"):
        with pytest.raises(BadRequest):
            snapshot.check_snapshot_name(name)
    snapshot.check_snapshot_name("c-5-2024-01-02-03-04-05.snapshot")


def test_manifest_lists_sizes_and_hashes(tmp_path: Path) -> None:
    staging = tmp_path / "s" / "x"
    staging.mkdir(parents=True)
    (staging / "lmdb").mkdir()
    (staging / "lmdb" / "data.mdb").write_bytes(b"lmdb bytes")
    created_at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    info = snapshot.pack(staging, tmp_path / "s", "c", single_vector_config(), 7, created_at)
    assert info.name == "c-7-2024-01-02-03-04-05.snapshot"
    assert not staging.exists()
    with tarfile.open(tmp_path / "s" / info.name) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["op_id"] == 7
    assert manifest["created_at"] == "2024-01-02T03:04:05Z"
    assert manifest["members"][1] == {
        "name": "lmdb/data.mdb",
        "size_bytes": 10,
        "sha256": hashlib.sha256(b"lmdb bytes").hexdigest(),
    }
