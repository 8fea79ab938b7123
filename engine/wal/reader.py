"""Reading a live WAL for followers: durable records from an op id on, in bounded reads,
each resuming where the previous one stopped.

Owns: reading the segments of a log the writer is still appending to, from any op id, and
the positions (segment, batch offset) where reads stopped, so that the next read from that
op id seeks there. Without them a follower reading 256 ops at a time read and re-checked its
whole segment (up to 128 MiB) from the start on every read: catching up on a backlog cost
O(segment) per batch.
Not here: the format and its parser (engine/wal/format.py), appending and truncating (engine/wal/log.py).

Only records up to the caller's durable op id are returned: bytes after the last fdatasync
may be a batch still being written, and a batch that does not parse (yet) ends the read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import CorruptionError
from engine.wal.format import parse_batch

READ_CHUNK_BYTES = 1 << 20  # read a segment this much at a time from the resume offset
POSITIONS_MAX = 64  # remembered resume positions (one per follower is what is needed)


@dataclass(frozen=True)
class SegmentRef:
    first_op_id: int
    path: Path


@dataclass(frozen=True)
class _Position:
    segment_first_op_id: int
    batch_first_op_id: int
    offset: int  # where the batch holding the next op id starts


class LiveReader:
    """Bounded reads of durable records; safe from several threads at once."""

    def __init__(self) -> None:
        self._positions: OrderedDict[int, _Position] = OrderedDict()  # next op id -> where
        self._lock = threading.Lock()

    def read(
        self,
        segments: list[SegmentRef],
        from_op_id: int,
        durable_op_id: int,
        count_max: int,
        bytes_max: int,
    ) -> list[tuple[int, bytes]]:
        """(op_id, body) from from_op_id on, in order, up to durable_op_id: at most
        count_max records and, past the first, bytes_max of bodies. `segments` in op order,
        the first starting at or below from_op_id. Raises FileNotFoundError if a segment is
        truncated away meanwhile (the caller lists the segments again)."""
        start = max(i for i, s in enumerate(segments) if s.first_op_id <= from_op_id)
        position = self._take(from_op_id)
        found: list[tuple[int, bytes]] = []
        found_bytes = 0
        end: _Position | None = None
        for segment in segments[start:]:
            offset, batch_first_op_id = 0, segment.first_op_id
            if position is not None and position.segment_first_op_id == segment.first_op_id:
                offset, batch_first_op_id = position.offset, position.batch_first_op_id
            for batch_offset, first, records, next_offset in _batches(
                segment.path, offset, batch_first_op_id
            ):
                for op_id, body in records:
                    if op_id < from_op_id:
                        continue
                    is_full = found and (
                        len(found) >= count_max or found_bytes + len(body) > bytes_max
                    )
                    if op_id > durable_op_id or is_full:
                        self._remember(op_id, _Position(segment.first_op_id, first, batch_offset))
                        return found
                    found.append((op_id, body))
                    found_bytes += len(body)
                end = _Position(segment.first_op_id, first + len(records), next_offset)
        if found and end is not None and end.batch_first_op_id == found[-1][0] + 1:
            self._remember(end.batch_first_op_id, end)  # where the next batch will be written
        return found

    def _take(self, op_id: int) -> _Position | None:
        with self._lock:
            return self._positions.pop(op_id, None)

    def _remember(self, op_id: int, position: _Position) -> None:
        with self._lock:
            self._positions[op_id] = position
            while len(self._positions) > POSITIONS_MAX:
                self._positions.popitem(last=False)


def _batches(
    path: Path, offset: int, first_op_id: int
) -> Iterator[tuple[int, int, list[tuple[int, bytes]], int]]:
    """(offset, first op id, records, next offset) of each batch of the segment at `path`
    from `offset` (where the batch holding `first_op_id` starts), until the bytes end or
    stop parsing (a batch being written)."""
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read(READ_CHUNK_BYTES)
        base, position, expected_op_id = offset, 0, first_op_id
        while True:
            batch = parse_batch(data, position)
            if batch is None:
                more = file.read(max(READ_CHUNK_BYTES, len(data) - position))
                if not more:
                    return
                data = data[position:] + more
                base, position = base + position, 0
                continue
            batch_first_op_id, records, next_position = batch
            if batch_first_op_id != expected_op_id:
                raise CorruptionError(
                    f"WAL segment {path} at offset {base + position}: expected op "
                    f"{expected_op_id}, found {batch_first_op_id}"
                )
            yield base + position, batch_first_op_id, records, base + next_position
            expected_op_id += len(records)
            position = next_position
