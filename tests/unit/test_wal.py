"""WAL framing, recovery scans (torn tail vs corruption), segment roll and truncation."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import files
from engine.errors import CorruptionError, StorageError
from engine.wal.format import BATCH_HEADER, ScanEnd, frame_batch, scan_batches
from engine.wal.log import Wal, stuck_writers

SECTOR_BYTES = 512


def make_log(batches: list[list[bytes]], first_op_id: int = 0) -> tuple[bytes, list[int]]:
    """Frame batches back to back; return the bytes and each batch's end offset."""
    data = b""
    ends = []
    op_id = first_op_id
    for bodies in batches:
        data += frame_batch(op_id, bodies)
        op_id += len(bodies)
        ends.append(len(data))
    return data, ends


bodies_strategy = st.lists(st.binary(max_size=300), min_size=1, max_size=8)


@given(batches=st.lists(bodies_strategy, min_size=1, max_size=6), first_op_id=st.integers(0, 2**40))
def test_framing_round_trips(batches: list[list[bytes]], first_op_id: int) -> None:
    data, _ = make_log(batches, first_op_id)
    result = scan_batches(data, first_op_id)
    assert result.end is ScanEnd.CLEAN
    expected = [body for bodies in batches for body in bodies]
    assert [body for _, body in result.records] == expected
    assert [op_id for op_id, _ in result.records] == list(
        range(first_op_id, first_op_id + len(expected))
    )


@given(batches=st.lists(bodies_strategy, min_size=1, max_size=5), data=st.data())
def test_a_cut_log_scans_to_an_exact_prefix_of_whole_batches(batches, data) -> None:
    log, ends = make_log(batches)
    cut = data.draw(st.integers(min_value=0, max_value=len(log)))
    result = scan_batches(log[:cut], 0)
    whole_batches = [end for end in ends if end <= cut]
    assert result.valid_bytes == (whole_batches[-1] if whole_batches else 0)
    expected = [body for bodies in batches[: len(whole_batches)] for body in bodies]
    assert [body for _, body in result.records] == expected
    assert result.end is (ScanEnd.CLEAN if cut == result.valid_bytes else ScanEnd.TORN_TAIL)


def test_torn_last_batch_at_every_byte_offset_keeps_every_earlier_batch() -> None:
    log, ends = make_log([[b"a" * 40, b"b" * 7], [b"c" * 100], [b"d" * 33, b"e" * 90, b"f"]])
    for cut in range(ends[1], len(log)):
        result = scan_batches(log[:cut], 0)
        assert result.end is (ScanEnd.CLEAN if cut == ends[1] else ScanEnd.TORN_TAIL), cut
        assert len(result.records) == 3, cut
        assert result.valid_bytes == ends[1]


def test_last_batch_with_pages_lost_in_any_order_is_a_torn_tail() -> None:
    """An unsynced write's sectors reach disk in any order: zero any subset of them."""
    rng = random.Random(7)
    prefix, _ = make_log([[b"x" * 1000]])
    last = frame_batch(1, [rng.randbytes(700) for _ in range(6)])
    sector_count = (len(last) + SECTOR_BYTES - 1) // SECTOR_BYTES
    for _ in range(200):
        damaged = bytearray(last)
        lost = rng.sample(range(sector_count), rng.randint(1, sector_count))
        for sector in lost:
            start = sector * SECTOR_BYTES
            damaged[start : start + SECTOR_BYTES] = bytes(
                len(damaged[start : start + SECTOR_BYTES])
            )
        if bytes(damaged) == last:
            continue
        result = scan_batches(prefix + bytes(damaged), 0)
        assert result.end is ScanEnd.TORN_TAIL, lost
        assert [op_id for op_id, _ in result.records] == [0]


@pytest.mark.parametrize("corrupt", ["flip_bit", "zero_sector"])
def test_damage_followed_by_a_valid_batch_is_corruption(corrupt: str) -> None:
    log, ends = make_log([[b"a" * 600], [b"b" * 600], [b"c" * 600]])
    damaged = bytearray(log)
    if corrupt == "flip_bit":
        damaged[ends[0] + 100] ^= 0x10
    else:
        damaged[ends[0] : ends[0] + SECTOR_BYTES] = bytes(SECTOR_BYTES)
    result = scan_batches(bytes(damaged), 0)
    assert result.end is ScanEnd.CORRUPT
    assert f"offset {ends[0]}" in result.problem
    assert f"valid batch at {ends[1]}" in result.problem


def test_op_id_gap_between_batches_is_corruption() -> None:
    data = frame_batch(0, [b"a"]) + frame_batch(2, [b"b"])
    result = scan_batches(data, 0)
    assert result.end is ScanEnd.CORRUPT
    assert "expected 1, found 2" in result.problem


# ---- the Wal object ---------------------------------------------------------------------


def open_wal(directory: Path, segment_bytes_target: int = 1 << 20) -> Wal:
    wal = Wal(directory, "test", segment_bytes_target, fsync_slow_s=1.0)
    wal.open()
    return wal


async def append_all(wal: Wal, bodies: list[bytes]) -> list[int]:
    pending = [wal.append(body) for body in bodies]
    return [await durable for _, durable in pending]


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


async def test_group_commit_shares_fsyncs_among_concurrent_appends(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    fsyncs_before = files.fsync_count
    op_ids = await append_all(wal, [b"x" * 100 for _ in range(500)])
    fsyncs = files.fsync_count - fsyncs_before
    await wal.close()
    assert op_ids == list(range(500))
    assert 0 < fsyncs < 50, fsyncs  # 500 appends queued at once share a handful of fsyncs


async def test_reopen_continues_op_ids_and_replays_everything(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    await append_all(wal, [b"a", b"b", b"c"])
    await wal.close()
    wal = open_wal(tmp_path / "wal")
    assert [body for _, body in wal.read_records(-1)] == [b"a", b"b", b"c"]
    assert [op_id for op_id, _ in wal.read_records(0)] == [1, 2]
    wal.start()
    assert await append_all(wal, [b"d"]) == [3]
    await wal.close()


async def test_segments_roll_and_truncate_without_losing_the_sequence(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)
    wal.start()
    for _ in range(10):
        await append_all(wal, [b"z" * 20_000])
    assert len(segment_paths(tmp_path / "wal")) >= 3
    removed = await wal.truncate_below(6)
    assert removed >= 1
    assert wal.first_op_id <= 7
    await wal.close()
    wal = open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)
    assert [op_id for op_id, _ in wal.read_records(6)] == [7, 8, 9]
    assert wal.next_op_id == 10
    await wal.close()


async def test_truncation_never_removes_the_active_segment(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    await append_all(wal, [b"a", b"b"])
    assert await wal.truncate_below(1) == 0
    await wal.close()
    wal = open_wal(tmp_path / "wal")
    assert wal.next_op_id == 2
    await wal.close()


async def test_open_cuts_a_torn_tail_and_keeps_a_copy(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    await append_all(wal, [b"a" * 50])
    await wal.close()
    segment = segment_paths(tmp_path / "wal")[-1]
    good_size = segment.stat().st_size
    torn = frame_batch(1, [b"b" * 50])[:-10]
    segment.write_bytes(segment.read_bytes() + torn)
    wal = open_wal(tmp_path / "wal")
    assert segment.stat().st_size == good_size
    assert wal.next_op_id == 1
    copies = list((tmp_path / "broken").iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == torn
    await wal.close()


async def test_damage_in_a_sealed_segment_refuses_to_open(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)
    wal.start()
    for _ in range(5):
        await append_all(wal, [b"q" * 40_000])
    await wal.close()
    sealed = segment_paths(tmp_path / "wal")[0]
    data = bytearray(sealed.read_bytes())
    data[-5] ^= 0xFF  # the end of a sealed segment: a torn tail there is impossible
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=sealed.name):
        open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)


async def test_a_missing_middle_segment_refuses_to_open(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)
    wal.start()
    for _ in range(6):
        await append_all(wal, [b"q" * 40_000])
    await wal.close()
    paths = segment_paths(tmp_path / "wal")
    assert len(paths) >= 3
    paths[1].unlink()
    with pytest.raises(CorruptionError, match="missing or out of order"):
        open_wal(tmp_path / "wal", segment_bytes_target=64 * 1024)


async def test_fdatasync_failure_closes_the_write_path_for_good(
    tmp_path: Path, monkeypatch
) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    await append_all(wal, [b"ok"])
    calls = []

    def failing_fdatasync(fd: int) -> float:
        calls.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "fdatasync", failing_fdatasync)
    _, durable = wal.append(b"lost")
    with pytest.raises(StorageError, match="fdatasync failed"):
        await durable
    monkeypatch.undo()
    with pytest.raises(StorageError):
        wal.append(b"after")  # no retry-and-pretend: the path stays closed
    assert len(calls) == 1
    await wal.close()


def test_batch_header_layout_is_twenty_bytes() -> None:
    assert BATCH_HEADER.size == 20


@settings(max_examples=30)
@given(garbage=st.binary(min_size=1, max_size=2000))
def test_garbage_after_the_last_batch_is_never_mistaken_for_data(garbage: bytes) -> None:
    log, _ = make_log([[b"a"], [b"b"]])
    result = scan_batches(log + garbage, 0)
    assert [body for _, body in result.records] == [b"a", b"b"]
    assert result.end in (ScanEnd.TORN_TAIL, ScanEnd.CLEAN)


async def test_append_queue_resolves_in_op_order_under_concurrency(tmp_path: Path) -> None:
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()

    async def one(index: int) -> int:
        op_id, durable = wal.append(str(index).encode())
        assert await durable == op_id
        return op_id

    op_ids = await asyncio.gather(*(one(i) for i in range(200)))
    await wal.close()
    assert sorted(op_ids) == list(range(200))
    reopened = open_wal(tmp_path / "wal")
    assert [body for _, body in reopened.read_records(-1)] == [str(i).encode() for i in range(200)]
    await reopened.close()


async def test_a_batch_stuck_in_fdatasync_is_reported_until_it_returns(
    tmp_path: Path, monkeypatch
) -> None:
    """The watchdog's view (stuck_writers): idle is fine, a slow sync is stuck past the
    limit, and it stops being stuck once the sync returns; a closed log is forgotten."""
    Wal.create(tmp_path / "wal")
    wal = open_wal(tmp_path / "wal")
    wal.start()
    await append_all(wal, [b"ok"])
    assert wal.batch_started_at_s is None
    assert stuck_writers(in_flight_s_max=0.001) == []
    entered, release = threading.Event(), threading.Event()
    real_fdatasync = files.fdatasync

    def blocking_fdatasync(fd: int) -> float:
        entered.set()
        assert release.wait(timeout=30), "test never released the sync"
        return real_fdatasync(fd)

    monkeypatch.setattr(files, "fdatasync", blocking_fdatasync)
    _, durable = wal.append(b"slow")
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)
    await asyncio.sleep(0.02)  # the in-flight age must pass the limit below
    [(name, in_flight_s)] = stuck_writers(in_flight_s_max=0.01)
    assert name == "test"
    assert in_flight_s > 0.01
    assert stuck_writers(in_flight_s_max=60.0) == []
    release.set()
    assert await durable == 1
    assert wal.batch_started_at_s is None
    assert stuck_writers(in_flight_s_max=0.001) == []
    await wal.close()
    wal.batch_started_at_s = 0.0  # even "stuck forever" is ignored once closed
    assert stuck_writers(in_flight_s_max=0.001) == []
