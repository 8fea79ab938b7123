"""`keel snapshot create|list|restore` on a stopped server's storage, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.catalog import AliasAction, Catalog
from engine.ops import PayloadSelector, VectorSelector
from server.config import load_settings
from tests.cli.test_cli import CLI_TIMEOUT_S, run_keel
from tests.keel_process import REPO_ROOT
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


def run_keel_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`keel ARGS` from directory `cwd` (run_keel's cwd is the test's, often the checkout)."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEEL")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def test_snapshots_default_to_beside_the_storage_whatever_the_working_directory(
    tmp_path: Path,
) -> None:
    """The server and `keel snapshot` agree on the snapshots directory without --snapshots:
    `snapshots` next to the storage directory, not in the directory the command runs from."""
    storage, elsewhere = tmp_path / "data" / "storage", tmp_path / "elsewhere"
    await write(storage, [1])
    flags = ["--storage", str(storage), "--collection", "c"]

    created = run_keel_in(elsewhere, "snapshot", "create", *flags)
    assert created.returncode == 0, created.stderr
    [path] = list((tmp_path / "data" / "snapshots" / "c").glob("*.snapshot"))
    assert created.stdout.startswith(f"created {path} ")
    assert list(elsewhere.iterdir()) == []
    listed = run_keel_in(tmp_path, "snapshot", "list", *flags)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\t")[0] == path.name
    assert load_settings(environ={}, overrides={("storage", "storage_path"): str(storage)}) == (
        load_settings(
            environ={},
            overrides={
                ("storage", "storage_path"): str(storage),
                ("storage", "snapshots_path"): str(tmp_path / "data" / "snapshots"),
            },
        )
    )


async def test_list_fails_loudly_for_a_missing_storage_or_collection(tmp_path: Path) -> None:
    missing = run_keel("snapshot", "list", "--storage", str(tmp_path / "nope"), "--collection", "c")
    assert missing.returncode == 1
    assert f"no storage directory at {tmp_path / 'nope'}" in missing.stderr
    assert not (tmp_path / "nope").exists()  # looking must not create it

    storage = tmp_path / "storage"
    await write(storage, [1])
    unknown = run_keel("snapshot", "list", "--storage", str(storage), "--collection", "d")
    assert unknown.returncode == 1
    assert "Collection `d` doesn't exist" in unknown.stderr
    assert unknown.stdout == ""


async def test_list_is_refused_while_a_server_holds_the_storage(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    await write(storage, [1])
    catalog = await open_catalog(storage)  # holds the storage lock, like a running server
    try:
        locked = run_keel("snapshot", "list", "--storage", str(storage), "--collection", "c")
    finally:
        await catalog.close()
    assert locked.returncode == 1
    assert "in use by another Keel process" in locked.stderr
    assert "GET /collections/c/snapshots" in locked.stderr


async def test_an_empty_list_says_so(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    await write(storage, [1])
    listed = run_keel("snapshot", "list", "--storage", str(storage), "--collection", "c")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""  # stdout stays one line per snapshot, for scripts
    assert f"no snapshots of collection c in {tmp_path / 'snapshots' / 'c'}" in listed.stderr


# ---- full-storage snapshots: restore-full ---------------------------------------------------


async def write_to(catalog: Catalog, name: str, ids: list[int]) -> int:
    op = upsert(ids, [[i, 1, 0, 0] for i in ids], [{"n": i} for i in ids])
    return (await catalog.get(name).update(op, wait=True, timeout_s=None)).op_id


async def ids_of(catalog: Catalog, name: str) -> list[int]:
    records = await catalog.get(name).retrieve(
        list(range(20)), PayloadSelector(False), VectorSelector(False)
    )
    return [record.id for record in records]


async def take_full_snapshot(storage: Path, snapshots: Path) -> Path:
    """Collections a = [1, 2] and b = [5], alias al -> a; a full snapshot of them."""
    catalog = await open_catalog(storage)
    await catalog.create("a", single_vector_config())
    await catalog.create("b", single_vector_config())
    await write_to(catalog, "a", [1, 2])
    await write_to(catalog, "b", [5])
    await catalog.change_aliases([AliasAction("create", "al", collection_name="a")])
    info = await catalog.create_full_snapshot(snapshots)
    await catalog.close()
    return snapshots / info.name


async def test_restore_full_brings_back_every_collection_and_alias(tmp_path: Path) -> None:
    """Goal: a full snapshot restored offline gives the collections and aliases as of the
    snapshot, with op ids continuing above the replaced history and new incarnations.
    Method: snapshot, then write more, delete a collection and the alias, add another
    alias; restore-full with the CLI; read the storage back."""
    storage, snapshots = tmp_path / "storage", tmp_path / "snapshots"
    path = await take_full_snapshot(storage, snapshots)
    catalog = await open_catalog(storage)
    last_op_id = await write_to(catalog, "a", [3, 4])
    incarnation = catalog.get("a").incarnation
    await catalog.delete("b")
    await catalog.change_aliases(
        [AliasAction("delete", "al"), AliasAction("create", "later", collection_name="a")]
    )
    await catalog.close()

    flags = ["--storage", str(storage), "--snapshots", str(snapshots)]
    restored = run_keel("snapshot", "restore-full", *flags, str(path))

    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.strip() == "restored collections=2 aliases=1"
    catalog = await open_catalog(storage)
    try:
        assert catalog.names() == ["a", "b"]
        assert await ids_of(catalog, "a") == [1, 2]
        assert await ids_of(catalog, "b") == [5]
        assert catalog.aliases() == [("al", "a"), ("later", "a")]  # Qdrant keeps others too
        assert catalog.get("a").incarnation != incarnation
        assert await write_to(catalog, "a", [9]) > last_op_id
    finally:
        await catalog.close()
    assert list((storage / "tmp").iterdir()) == []


async def test_restore_full_of_a_damaged_file_changes_nothing(tmp_path: Path) -> None:
    """Goal: checksums are verified before anything changes. Method: flip one byte of a
    collection's data in the file (its sidecar then disagrees) and in a copy without a
    sidecar (the member's sha256 in the manifest disagrees); both are refused, as is a
    missing file, and the storage keeps its later writes and aliases."""
    storage, snapshots = tmp_path / "storage", tmp_path / "snapshots"
    path = await take_full_snapshot(storage, snapshots)
    catalog = await open_catalog(storage)
    await write_to(catalog, "a", [3])
    await catalog.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a collection's LMDB copy, most of the file
    path.write_bytes(bytes(data))
    copy = tmp_path / "copy.snapshot"
    copy.write_bytes(bytes(data))
    flags = ["--storage", str(storage), "--snapshots", str(snapshots)]

    with_sidecar = run_keel("snapshot", "restore-full", *flags, str(path))
    without_sidecar = run_keel("snapshot", "restore-full", *flags, str(copy))
    missing = run_keel("snapshot", "restore-full", *flags, str(tmp_path / "none.snapshot"))

    assert with_sidecar.returncode == 1
    assert "checksum mismatch" in with_sidecar.stderr
    assert without_sidecar.returncode == 1
    assert "sha256 is" in without_sidecar.stderr
    assert "manifest says" in without_sidecar.stderr
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    catalog = await open_catalog(storage)
    try:
        assert await ids_of(catalog, "a") == [1, 2, 3]
        assert catalog.aliases() == [("al", "a")]
    finally:
        await catalog.close()
