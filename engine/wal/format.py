"""The write-ahead log's bytes: batch framing, segment names, and scanning a segment.

Owns: the on-disk format below, framing a batch, parsing one, and telling a torn tail (an
invalid last batch with nothing valid after it) from corruption.
Not here: writing, syncing and recovering a log (engine/wal/log.py).

On disk: segments named `<first_op_id:020d>.wal`; each holds whole batches. A batch is what
one group commit writes with one `os.write` and one `fdatasync`:

| field         | size | byte order    | meaning                                          |
|---------------|------|---------------|--------------------------------------------------|
| records_bytes | u32  | little-endian | bytes of records that follow the header          |
| crc32         | u32  | little-endian | zlib.crc32 of first_op_id, count and the records |
| first_op_id   | u64  | little-endian | op_id of the first record                        |
| count         | u32  | little-endian | number of records, >= 1                          |
| records       | ...  |               | `count` records, op ids consecutive              |

A record is `u32 body_bytes | u64 op_id | body` (little-endian; body is CBOR, see ops.py).

The CRC is per batch, not per record: the pages of one unsynced write may reach the disk in
any order, so a torn batch can look like "bad record, then good record". The writer never
starts a batch before the previous one's fdatasync returned and a batch never spans two
segments, so only the last batch of the last segment can be torn. Anything else invalid is
corruption, and recovery refuses to start, naming file and offset.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import limits
from engine.errors import CorruptionError

BATCH_HEADER = struct.Struct("<IIQI")
RECORD_HEADER = struct.Struct("<IQ")
SEGMENT_SUFFIX = ".wal"


class ScanEnd(enum.Enum):
    CLEAN = "clean"  # every byte belongs to a valid batch
    TORN_TAIL = "torn_tail"  # an invalid last batch with nothing valid after it
    CORRUPT = "corrupt"  # damage that a crash alone cannot explain


@dataclass(frozen=True)
class ScanResult:
    records: list[tuple[int, bytes]]  # (op_id, body) of every valid record, in order
    valid_bytes: int  # offset just past the last valid batch
    end: ScanEnd
    problem: str = ""  # what is wrong, with offsets, when end is not CLEAN


def frame_batch(first_op_id: int, bodies: list[bytes]) -> bytes:
    """One batch holding `bodies` as records first_op_id, first_op_id + 1, ..."""
    assert bodies, "a batch holds at least one record"
    parts = []
    for index, body in enumerate(bodies):
        assert len(body) <= limits.RECORD_BYTES_MAX, len(body)
        parts.append(RECORD_HEADER.pack(len(body), first_op_id + index))
        parts.append(body)
    records = b"".join(parts)
    tail = struct.pack("<QI", first_op_id, len(bodies))
    crc = zlib.crc32(records, zlib.crc32(tail))
    return BATCH_HEADER.pack(len(records), crc, first_op_id, len(bodies)) + records


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first op id, path) of every segment in `directory`, in op order; reads nothing else.
    Raises CorruptionError for a file whose name is not a segment's."""
    paths = sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))
    return [(op_id_from_segment_name(path), path) for path in paths]


def scan_batches(data: bytes, first_op_id: int) -> ScanResult:
    """Parse `data` (a segment's bytes) whose first record must be `first_op_id`."""
    records: list[tuple[int, bytes]] = []
    offset = 0
    expected_op_id = first_op_id
    while offset < len(data):
        batch = parse_batch(data, offset)
        if batch is None:
            return _classify_invalid_batch(data, offset, expected_op_id, records)
        batch_first_op_id, batch_records, next_offset = batch
        if batch_first_op_id != expected_op_id:
            problem = (
                f"op id gap at offset {offset}: expected {expected_op_id}, "
                f"found {batch_first_op_id}"
            )
            return ScanResult(records, offset, ScanEnd.CORRUPT, problem)
        records.extend(batch_records)
        expected_op_id += len(batch_records)
        offset = next_offset
    return ScanResult(records, offset, ScanEnd.CLEAN)


def segment_name(first_op_id: int) -> str:
    return f"{first_op_id:020d}{SEGMENT_SUFFIX}"


def op_id_from_segment_name(path: Path) -> int:
    stem = path.name[: -len(SEGMENT_SUFFIX)]
    if len(stem) != 20 or not stem.isdigit():
        raise CorruptionError(f"unexpected file in WAL directory: {path}")
    return int(stem)


def parse_batch(data: bytes, offset: int) -> tuple[int, list[tuple[int, bytes]], int] | None:
    """(first_op_id, records, next_offset) of a valid batch at offset, else None."""
    if len(data) - offset < BATCH_HEADER.size:
        return None
    records_bytes, crc, first_op_id, count = BATCH_HEADER.unpack_from(data, offset)
    start = offset + BATCH_HEADER.size
    end = start + records_bytes
    if count < 1 or records_bytes > limits.GROUP_COMMIT_BYTES_MAX + count * RECORD_HEADER.size:
        return None
    if end > len(data) or records_bytes < count * RECORD_HEADER.size:
        return None
    view = memoryview(data)
    if zlib.crc32(view[start:end], zlib.crc32(view[offset + 8 : start])) != crc:
        return None
    records = _split_records(view, start, end, first_op_id, count, offset)
    return first_op_id, records, end


def _split_records(
    view: memoryview, start: int, end: int, first_op_id: int, count: int, batch_offset: int
) -> list[tuple[int, bytes]]:
    # The CRC matched, so a malformed inside can only be our own bug: refuse loudly.
    records = []
    position = start
    for index in range(count):
        if end - position < RECORD_HEADER.size:
            raise CorruptionError(f"batch at offset {batch_offset} has fewer records than {count}")
        body_bytes, op_id = RECORD_HEADER.unpack_from(view, position)
        position += RECORD_HEADER.size
        if op_id != first_op_id + index or position + body_bytes > end:
            raise CorruptionError(f"batch at offset {batch_offset} has a malformed record {index}")
        records.append((op_id, bytes(view[position : position + body_bytes])))
        position += body_bytes
    if position != end:
        raise CorruptionError(f"batch at offset {batch_offset} has trailing bytes")
    return records


def _classify_invalid_batch(
    data: bytes, offset: int, expected_op_id: int, records: list[tuple[int, bytes]]
) -> ScanResult:
    """An invalid batch at offset: a torn tail, unless something valid follows it."""
    remaining_bytes = len(data) - offset
    if remaining_bytes > limits.BROKEN_TAIL_BYTES_MAX:
        problem = f"invalid batch at offset {offset} with {remaining_bytes} bytes after it"
        return ScanResult(records, offset, ScanEnd.CORRUPT, problem)
    later_offset = _find_valid_batch_after(data, offset, expected_op_id)
    if later_offset is not None:
        problem = f"invalid batch at offset {offset} followed by a valid batch at {later_offset}"
        return ScanResult(records, offset, ScanEnd.CORRUPT, problem)
    problem = f"torn batch at offset {offset}"
    return ScanResult(records, offset, ScanEnd.TORN_TAIL, problem)


def _find_valid_batch_after(data: bytes, offset: int, min_op_id: int) -> int | None:
    """Offset of any valid batch starting after `offset` with first_op_id >= min_op_id."""
    last_start = len(data) - BATCH_HEADER.size
    if last_start <= offset:
        return None
    buffer = np.frombuffer(data, dtype=np.uint8)
    max_op_id = min_op_id + len(data)  # every record takes at least one byte
    for alignment in range(8):
        # first_op_id sits 8 bytes into a header; look at every u64 of this alignment.
        count = (len(data) - alignment) // 8
        op_ids = np.frombuffer(data, dtype="<u8", count=count, offset=alignment)
        positions = np.nonzero((op_ids >= min_op_id) & (op_ids <= max_op_id))[0]
        starts = alignment + positions * 8 - 8
        starts = starts[(starts > offset) & (starts <= last_start)]
        if starts.size == 0:
            continue
        batch_counts = _u32_at(buffer, starts + 16)
        starts = starts[batch_counts >= 1]
        for start in starts.tolist():
            if parse_batch(data, start) is not None:
                return start
    return None


def _u32_at(buffer: np.ndarray, positions: np.ndarray) -> np.ndarray:
    values = np.zeros(positions.shape, dtype=np.uint64)
    for shift in range(4):
        values |= buffer[positions + shift].astype(np.uint64) << np.uint64(8 * shift)
    return values
