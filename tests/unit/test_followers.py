"""engine/wal/followers.py: the durable registry, retention under a cap; engine/wal/log.py
`read_durable`, the live read a follower is served from."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import BadRequest, Conflict
from engine.wal.followers import FollowerRegistry, SegmentExtent
from engine.wal.log import Wal

MIB = 1024 * 1024


def segments(*extents: tuple[int, int, int]) -> list[SegmentExtent]:
    return [SegmentExtent(*extent) for extent in extents]


def test_registration_is_durable_and_acks_move_it(tmp_path: Path) -> None:
    registry = FollowerRegistry(tmp_path)
    registry.register("f1", 10, wal_first_op_id=0)
    registry.register("f1", 25, wal_first_op_id=0)
    reloaded = FollowerRegistry(tmp_path)
    assert [(f.name, f.next_op_id, f.is_lost) for f in reloaded.list()] == [("f1", 25, False)]
    assert reloaded.remove("f1")
    assert not FollowerRegistry(tmp_path).list()


def test_bad_names_and_truncated_op_ids_are_refused(tmp_path: Path) -> None:
    registry = FollowerRegistry(tmp_path)
    with pytest.raises(BadRequest):
        registry.register("no/slash", 1, wal_first_op_id=0)
    with pytest.raises(Conflict, match="keel migrate"):
        registry.register("f1", 5, wal_first_op_id=6)


def test_a_live_follower_holds_segments_it_needs(tmp_path: Path) -> None:
    registry = FollowerRegistry(tmp_path)
    assert registry.truncation_op_id(99, segments((0, 49, MIB), (50, 99, MIB)), 0) == 99
    registry.register("f1", 30, wal_first_op_id=0)
    sealed = segments((0, 49, MIB), (50, 99, MIB))
    assert registry.truncation_op_id(99, sealed, 2 * MIB) == 29
    assert registry.truncation_op_id(20, sealed, 2 * MIB) == 20  # recovery needs more


def test_past_the_cap_the_follower_is_lost_loudly_and_refused(tmp_path: Path, caplog) -> None:
    registry = FollowerRegistry(tmp_path)
    registry.register("slow", 10, wal_first_op_id=0)
    registry.register("fast", 120, wal_first_op_id=0)
    sealed = segments((0, 49, MIB), (50, 99, MIB), (100, 149, MIB))
    assert registry.truncation_op_id(149, sealed, MIB) == 119  # only `fast` is left
    assert "follower lost" in caplog.text
    lost = FollowerRegistry(tmp_path).get("slow")
    assert lost is not None and lost.is_lost
    assert "follower_retention_mb_max" in lost.lost_reason
    with pytest.raises(Conflict, match="keel migrate"):
        registry.register("slow", 150, wal_first_op_id=0)
    registry.remove("slow")
    registry.register("slow", 150, wal_first_op_id=0)  # a fresh migration may register again


async def test_read_durable_reads_a_live_log_across_segments(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = Wal(tmp_path / "wal", "test", 64 * 1024, fsync_slow_s=1.0)
    wal.open()
    wal.start()
    bodies = [bytes([i % 256]) * 1000 for i in range(300)]
    for body in bodies:
        _, durable = wal.append(body)
        await durable
    assert len(list((tmp_path / "wal").glob("*.wal"))) > 2
    records = wal.read_durable(5, count_max=1000, bytes_max=1 << 30)
    assert [op_id for op_id, _ in records] == list(range(5, 300))
    assert [body for _, body in records] == bodies[5:]
    assert len(wal.read_durable(0, count_max=7, bytes_max=1 << 30)) == 7
    assert len(wal.read_durable(0, count_max=100, bytes_max=2500)) == 2
    assert wal.read_durable(300, count_max=10, bytes_max=1 << 30) == []
    extents = wal.sealed_segment_extents()
    await wal.truncate_below(extents[0][1])
    with pytest.raises(Conflict):
        wal.read_durable(0, count_max=10, bytes_max=1 << 30)
    await wal.close()
