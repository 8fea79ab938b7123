"""`keel check [--repair]` and `keel wal dump`, run as a user runs them (a subprocess)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.catalog import lock_storage
from tests.cli.test_cli import run_keel
from tests.keel_process import KeelProcess
from tests.unit.test_check import build_storage, collection_dir, flip_everywhere


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    build_storage(tmp_path / "storage")
    return tmp_path / "storage"


def test_check_exits_0_on_sound_storage(storage: Path) -> None:
    result = run_keel("check", "--storage", str(storage))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("OK: collections=1 points=48")


def test_check_exits_1_naming_a_flipped_payload_byte(storage: Path) -> None:
    flip_everywhere(collection_dir(storage) / "lmdb" / "data.mdb", b"marker-0042", 9)
    result = run_keel("check", "--storage", str(storage))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "damage: collection=c" in result.stdout and "point 42" in result.stdout
    # --repair cannot recompute a payload: it says so and still exits 1.
    result = run_keel("check", "--storage", str(storage), "--repair")
    assert result.returncode == 1
    assert "not repairing" in result.stdout


def test_check_repair_rebuilds_a_damaged_index_checkpoint(storage: Path) -> None:
    index_file = next((collection_dir(storage) / "index").glob("*.hnsw"))
    data = bytearray(index_file.read_bytes())
    data[100] ^= 0x04
    index_file.write_bytes(bytes(data))
    result = run_keel("check", "--storage", str(storage))
    assert result.returncode == 1 and "repairable" in result.stdout
    result = run_keel("check", "--storage", str(storage), "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repaired: c: vector indexes rebuilt" in result.stdout
    assert run_keel("check", "--storage", str(storage)).returncode == 0


def test_check_refuses_storage_a_server_holds(storage: Path) -> None:
    lock_fd = lock_storage(storage)  # what a running server holds
    try:
        result = run_keel("check", "--storage", str(storage))
    finally:
        os.close(lock_fd)
    assert result.returncode == 2
    assert "in use by another Keel process" in result.stderr


def test_check_on_a_missing_directory_exits_2(tmp_path: Path) -> None:
    result = run_keel("check", "--storage", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_wal_dump_prints_one_line_per_record_from_an_op(storage: Path) -> None:
    result = run_keel("wal", "dump", "--storage", str(storage), "--from", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    upsert_line = (
        "collection=c op_id=5 bytes=518 upsert points=10 ids=40,41,42,43,44,+5 "
        "vectors=(unnamed),sp mode=upsert"
    )
    assert lines == [upsert_line, "collection=c op_id=6 bytes=20 delete points=2 ids=3,4"]
    assert "marker" not in result.stdout  # payload values are never printed


def test_wal_dump_flags_damage(storage: Path) -> None:
    segment = next((collection_dir(storage) / "wal").glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[30] ^= 0x01
    segment.write_bytes(bytes(data))
    result = run_keel("wal", "dump", "--storage", str(storage), "--collection", "c")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].startswith("! collection=c file=")


def test_a_server_refusing_corrupt_storage_points_at_keel_check(storage: Path) -> None:
    segment = next((collection_dir(storage) / "wal").glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[30] ^= 0x01
    segment.write_bytes(bytes(data))
    server = KeelProcess.spawn(storage)
    assert server.wait_exit() == 1
    assert f'command="keel check --storage {storage}"' in server.log_text()
