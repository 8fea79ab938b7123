"""`keel snapshot create|list|restore` on a stopped server's storage, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
