"""engine/wal/reader.py: a follower reading a live log in small steps gets every durable
record once, in order, across segments and batches cut anywhere, and each step resumes
where the last stopped instead of reading its segment from the start."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.errors import CorruptionError
from engine.wal import reader as wal_reader
from engine.wal.format import frame_batch, parse_batch
from engine.wal.log import Wal
from engine.wal.reader import LiveReader, SegmentRef


async def write_log(directory: Path, bodies: list[bytes], segment_bytes: int) -> Wal:
    Wal.create(directory)
    wal = Wal(directory, "test", segment_bytes, fsync_slow_s=1.0)
    wal.open()
    wal.start()
    # Several appends before awaiting: batches of several records, cut by the reads below.
    for start in range(0, len(bodies), 7):
        futures = [wal.append(body)[1] for body in bodies[start : start + 7]]
        for future in futures:
            await future
    return wal


def batches_in(directory: Path) -> int:
    count = 0
    for path in directory.glob("*.wal"):
        data, offset = path.read_bytes(), 0
        while (batch := parse_batch(data, offset)) is not None:
            count, offset = count + 1, batch[2]
    return count


def count_batches_parsed(monkeypatch) -> list[int]:
    parsed: list[int] = []
    parse = wal_reader.parse_batch

    def counting(data: bytes, offset: int):
        batch = parse(data, offset)
        if batch is not None:
            parsed.append(len(batch[1]))
        return batch

    monkeypatch.setattr(wal_reader, "parse_batch", counting)
    return parsed


async def test_small_steps_read_everything_once_and_resume_where_they_stopped(
    tmp_path: Path, monkeypatch
) -> None:
    rng = random.Random(3)
    bodies = [bytes([i % 256]) * rng.randrange(1, 3000) for i in range(400)]
    wal = await write_log(tmp_path / "wal", bodies, segment_bytes=256 * 1024)
    assert len(list((tmp_path / "wal").glob("*.wal"))) > 1
    batch_count = batches_in(tmp_path / "wal")
    parsed = count_batches_parsed(monkeypatch)
    got: list[tuple[int, bytes]] = []
    step_count = 0
    while len(got) < len(bodies):
        step = wal.read_durable(len(got), count_max=rng.randrange(1, 9), bytes_max=1 << 30)
        assert step and step[0][0] == len(got)
        got += step
        step_count += 1
    assert got == list(enumerate(bodies))
    assert wal.read_durable(len(bodies), count_max=5, bytes_max=1 << 30) == []
    # Each step parsed from where the last stopped: every batch once, plus about two per
    # step (the one it resumes in, the one it stops in), not its segment from the start.
    assert step_count > 60
    assert len(parsed) <= batch_count + 2 * step_count + 2, (len(parsed), step_count)
    await wal.close()


async def test_a_read_at_the_end_resumes_once_more_is_written(tmp_path: Path) -> None:
    wal = await write_log(tmp_path / "wal", [b"a" * 10] * 20, segment_bytes=1 << 20)
    assert len(wal.read_durable(0, count_max=100, bytes_max=1 << 30)) == 20
    for body in (b"b", b"c"):
        await wal.append(body)[1]
    assert wal.read_durable(20, count_max=100, bytes_max=1 << 30) == [(20, b"b"), (21, b"c")]
    await wal.close()


def test_a_batch_out_of_sequence_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / f"{0:020d}.wal"
    path.write_bytes(frame_batch(0, [b"x", b"y"]) + frame_batch(5, [b"z"]))
    with pytest.raises(CorruptionError, match="expected op 2, found 5"):
        LiveReader().read([SegmentRef(0, path)], 0, 10, count_max=10, bytes_max=1 << 30)


def test_bytes_past_the_durable_op_are_not_returned(tmp_path: Path) -> None:
    path = tmp_path / f"{0:020d}.wal"
    half_written = frame_batch(3, [b"later"])[:-2]
    path.write_bytes(frame_batch(0, [b"a", b"b", b"c"]) + half_written)
    reader = LiveReader()
    records = reader.read([SegmentRef(0, path)], 1, 2, count_max=10, bytes_max=1 << 30)
    assert records == [(1, b"b"), (2, b"c")]
    assert reader.read([SegmentRef(0, path)], 3, 3, count_max=10, bytes_max=1 << 30) == []
