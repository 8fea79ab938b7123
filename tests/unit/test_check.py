"""engine/check/check.py, engine/check/store.py and engine/store/checksum.py: every kind of damage is found, derived
damage is repaired, and a damaged LMDB value is refused at read time instead of served."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import lmdb
import numpy as np
import pytest

from engine.check import check
from engine.errors import CorruptionError
from engine.limits import EngineSettings
from engine.ops import (
    CollectionConfig,
    CreateFieldIndex,
    DeletePoints,
    Distance,
    SparseColumn,
    SparseVector,
    SparseVectorConfig,
    UpsertPoints,
    VectorConfig,
)
from engine.store.checksum import is_intact, seal, unseal
from tests.unit.engine_helpers import open_catalog, upsert

POINTS_PER_OP = 10
OPS_COUNT = 5


def build_storage(path: Path) -> None:
    """One collection: a cosine graph, a sparse vector, a keyword index, two deletes."""

    async def main() -> None:
        catalog = await open_catalog(path)
        config = CollectionConfig(
            vectors={"": VectorConfig(4, Distance.COSINE)},
            sparse_vectors={"sp": SparseVectorConfig()},
        )
        await catalog.create("c", config)
        collection = catalog.get("c")
        await collection.update(CreateFieldIndex("color", "keyword"), wait=True, timeout_s=None)
        rng = np.random.default_rng(7)
        sparse = SparseColumn.from_vectors(
            [0, 1],
            [
                SparseVector(np.array([1, 5], np.uint32), np.array([0.5, 0.25], np.float32)),
                SparseVector(np.array([2], np.uint32), np.array([1.0], np.float32)),
            ],
        )
        for op_index in range(OPS_COUNT):
            ids = list(range(op_index * POINTS_PER_OP, (op_index + 1) * POINTS_PER_OP))
            payloads = [{"color": f"marker-{point_id:04d}"} for point_id in ids]
            op = upsert(ids, rng.random((POINTS_PER_OP, 4)), payloads)
            op = UpsertPoints(op.ids, op.vectors, op.payloads, sparse={"sp": sparse})
            await collection.update(op, wait=True, timeout_s=None)
        await collection.update(DeletePoints([3, 4]), wait=True, timeout_s=None)
        await catalog.close()

    asyncio.run(main())


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    build_storage(tmp_path / "storage")
    return tmp_path / "storage"


def collection_dir(storage: Path) -> Path:
    return storage / "collections" / "c"


def run_check(storage: Path) -> check.CheckReport:
    return check.check_storage(storage, lambda message: None)


def severities(report: check.CheckReport) -> set[check.Severity]:
    return {finding.severity for finding in report.findings}


def flip_everywhere(path: Path, needle: bytes, offset_in_needle: int = 0) -> int:
    """Flip one bit of every copy of `needle` in the file (LMDB keeps stale copies in free
    pages, so flipping each one is the only way to be sure the live copy is hit)."""
    data = bytearray(path.read_bytes())
    count = 0
    start = data.find(needle)
    while start != -1:
        data[start + offset_in_needle] ^= 0x01
        count += 1
        start = data.find(needle, start + 1)
    path.write_bytes(bytes(data))
    return count


def lmdb_write(storage: Path, change) -> None:
    """Change the LMDB environment directly, as a bug (not a disk) would."""
    env = lmdb.open(str(collection_dir(storage) / "lmdb"), max_dbs=16)
    with env.begin(write=True) as txn:
        change(env, txn)
    env.close()


# ---- engine/store/checksum.py -------------------------------------------------------------------------


def test_seal_round_trips_and_any_flipped_bit_is_refused() -> None:
    value = b"payload bytes"
    sealed = seal(value)
    assert unseal(sealed, "points", b"k") == value and is_intact(sealed)
    for position in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x10
        assert not is_intact(bytes(damaged))
        with pytest.raises(CorruptionError, match="database=points key=6b"):
            unseal(bytes(damaged), "points", b"k")
    assert not is_intact(b"abc")


# ---- a sound storage ---------------------------------------------------------------------


def test_a_sound_storage_checks_clean(storage: Path) -> None:
    report = run_check(storage)
    assert report.findings == []
    assert not report.is_damaged
    assert report.points_count == OPS_COUNT * POINTS_PER_OP - 2
    assert report.wal_records_count == OPS_COUNT + 2
    assert report.index_vectors_count == OPS_COUNT * POINTS_PER_OP - 2


# ---- damage that loses data --------------------------------------------------------------


def test_a_flipped_byte_in_a_payload_is_damage_and_refused_at_read(storage: Path) -> None:
    assert flip_everywhere(collection_dir(storage) / "lmdb" / "data.mdb", b"marker-0017", 8)
    report = run_check(storage)
    assert report.is_damaged and not report.is_repairable
    texts = [f.text for f in report.findings if f.severity is check.Severity.DAMAGE]
    assert any("database=points" in text and "point 17" in text for text in texts), texts

    async def read_point() -> None:
        catalog = await open_catalog(storage)
        try:
            with pytest.raises(CorruptionError, match="database=points"):
                await catalog.get("c").retrieve([17], True, True)
        finally:
            await catalog.close()

    asyncio.run(read_point())


def test_a_flipped_byte_in_a_vector_is_damage(storage: Path) -> None:
    def damage(env: lmdb.Environment, txn: lmdb.Transaction) -> None:
        db = env.open_db(b"v:", txn=txn)
        key, value = next(iter(txn.cursor(db=db)))
        broken = bytearray(value)
        broken[2] ^= 0x40
        txn.put(key, bytes(broken), db=db)

    lmdb_write(storage, damage)
    report = run_check(storage)
    assert check.Severity.DAMAGE in severities(report)
    assert any("database=v:" in f.text and "checksum" in f.text for f in report.findings)


def test_a_broken_id_map_is_damage(storage: Path) -> None:
    lmdb_write(
        storage,
        lambda env, txn: txn.delete((0).to_bytes(8, "big"), db=env.open_db(b"labels", txn=txn)),
    )
    report = run_check(storage)
    assert report.is_damaged and not report.is_repairable
    assert any("missing from labels" in f.text for f in report.findings)


def test_a_flipped_byte_in_a_sealed_wal_batch_is_damage(storage: Path) -> None:
    segment = next((collection_dir(storage) / "wal").glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[30] ^= 0x01  # inside the first batch; valid batches follow it
    segment.write_bytes(bytes(data))
    report = run_check(storage)
    assert check.Severity.DAMAGE in severities(report)
    assert any(str(segment) in f.text for f in report.findings)


def test_a_torn_wal_tail_is_only_a_note(storage: Path) -> None:
    segment = next((collection_dir(storage) / "wal").glob("*.wal"))
    with segment.open("ab") as file:
        file.write(b"\x10\x00\x00\x00half a batch")
    report = run_check(storage)
    assert severities(report) == {check.Severity.NOTE}
    assert not report.is_damaged


def test_an_old_format_store_is_refused_at_open_and_reported(storage: Path) -> None:
    lmdb_write(storage, lambda env, txn: txn.delete(b"format", db=env.open_db(b"meta", txn=txn)))
    assert any("format" in f.text for f in run_check(storage).findings)

    async def open_it() -> None:
        with pytest.raises(CorruptionError, match="format 0"):
            await open_catalog(storage)

    asyncio.run(open_it())


# ---- derived damage, and repair --------------------------------------------------------


def test_a_flipped_byte_in_an_index_checkpoint_is_repaired(storage: Path) -> None:
    index_file = next((collection_dir(storage) / "index").glob("*.hnsw"))
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    index_file.write_bytes(bytes(data))
    report = run_check(storage)
    assert report.is_repairable, report.findings
    assert any("fails its CRC" in f.text for f in report.findings)
    done = asyncio.run(check.repair(storage, report, EngineSettings(), lambda message: None))
    assert any("vector indexes rebuilt" in line for line in done)
    assert run_check(storage).findings == []


def test_an_index_checkpoint_missing_a_label_is_repaired(storage: Path) -> None:
    """A checkpoint whose CRC is right but whose graph disagrees with LMDB (a bug, not a disk
    error): the cross-check finds it."""
    import json

    import hnswlib

    index_dir = collection_dir(storage) / "index"
    meta_path = index_dir / "v-.json"
    meta = json.loads(meta_path.read_text())
    graph = hnswlib.Index(space="cosine", dim=4)
    graph.load_index(str(index_dir / meta["file"]), max_elements=0)
    graph.mark_deleted(int(graph.get_ids_list()[0]))
    graph.save_index(str(index_dir / meta["file"]))
    data = (index_dir / meta["file"]).read_bytes()
    meta.update(crc32=zlib.crc32(data), bytes=len(data))
    meta_path.write_text(json.dumps(meta))
    report = run_check(storage)
    assert report.is_repairable
    assert any("lacks 1" in f.text for f in report.findings), report.findings
    asyncio.run(check.repair(storage, report, EngineSettings(), lambda message: None))
    assert run_check(storage).findings == []


def test_missing_payload_index_and_inverted_entries_are_repaired(storage: Path) -> None:
    def damage(env: lmdb.Environment, txn: lmdb.Transaction) -> None:
        pindex = env.open_db(b"pindex", txn=txn, dupsort=True)
        cursor = txn.cursor(db=pindex)
        assert cursor.first()
        cursor.delete()
        inverted = env.open_db(b"i:sp", txn=txn)
        key, _ = next(iter(txn.cursor(db=inverted)))
        txn.delete(key, db=inverted)

    lmdb_write(storage, damage)
    report = run_check(storage)
    assert report.is_repairable
    texts = " ".join(f.text for f in report.findings)
    assert "database=pindex" in texts and "database=i:sp" in texts
    asyncio.run(check.repair(storage, report, EngineSettings(), lambda message: None))
    assert run_check(storage).findings == []


def test_repair_refuses_a_report_with_damage(storage: Path) -> None:
    flip_everywhere(collection_dir(storage) / "lmdb" / "data.mdb", b"marker-0021", 8)
    report = run_check(storage)
    with pytest.raises(AssertionError):
        asyncio.run(check.repair(storage, report, EngineSettings(), lambda message: None))
