"""`keel snapshot create|list|restore` on a stopped server's storage, run as a user runs it."""

from __future__ import annotations

from pathlib import Path

from engine.ops import PayloadSelector, VectorSelector
from tests.cli.test_cli import run_keel
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert


async def write(storage: Path, ids: list[int]) -> None:
    catalog = await open_catalog(storage)
    if "c" not in catalog.names():
        await catalog.create("c", single_vector_config())
    op = upsert(ids, [[i, 1, 0, 0] for i in ids], [{"n": i} for i in ids])
    await catalog.get("c").update(op, wait=True, timeout_s=None)
    await catalog.close()


async def ids_in(storage: Path) -> list[int]:
    catalog = await open_catalog(storage)
    records = await catalog.get("c").retrieve(
        list(range(10)), PayloadSelector(True), VectorSelector(False)
    )
    await catalog.close()
    return [record.id for record in records]


async def test_create_list_restore_round_trip(tmp_path: Path) -> None:
    storage, snapshots = tmp_path / "storage", tmp_path / "snapshots"
    await write(storage, [1, 2])
    flags = ["--storage", str(storage), "--snapshots", str(snapshots), "--collection", "c"]

    created = run_keel("snapshot", "create", *flags)
    assert created.returncode == 0, created.stderr
    [path] = list((snapshots / "c").glob("*.snapshot"))
    assert created.stdout.startswith(f"created {path} ")
    listed = run_keel("snapshot", "list", *flags)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\t")[0] == path.name

    await write(storage, [3])
    assert await ids_in(storage) == [1, 2, 3]
    restored = run_keel("snapshot", "restore", *flags, str(path))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.strip() == "restored collection=c op_id=0"
    assert await ids_in(storage) == [1, 2]


async def test_a_running_server_or_a_bad_file_is_refused(tmp_path: Path) -> None:
    storage, snapshots = tmp_path / "storage", tmp_path / "snapshots"
    await write(storage, [1])
    flags = ["--storage", str(storage), "--snapshots", str(snapshots), "--collection", "c"]
    bad = tmp_path / "bad.snapshot"
    bad.write_bytes(b"not a tar file")

    refused = run_keel("snapshot", "restore", *flags, str(bad))
    assert refused.returncode == 1
    assert "not a valid tar file" in refused.stderr

    catalog = await open_catalog(storage)  # holds the storage lock, like a running server
    try:
        locked = run_keel("snapshot", "create", *flags)
    finally:
        await catalog.close()
    assert locked.returncode == 1
    assert "in use by another Keel process" in locked.stderr
    assert not (snapshots / "c").exists() or list((snapshots / "c").iterdir()) == []
    assert run_keel("snapshot", "create", "--storage", str(storage)).returncode == 2
