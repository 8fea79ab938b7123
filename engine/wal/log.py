"""Segmented write-ahead log of one collection.

Owns: the files in <collection>/wal/, the op_id sequence, group commit, recovery scans
(torn tail vs corruption), and truncation of old segments.
Not here: what an operation means (ops.py), when it is applied (applier.py).

On disk: segments of batches (engine/wal/format.py has the byte layout and the scans that tell a
torn tail from corruption).

Failures while writing. An fdatasync error closes the log for good (fsyncgate: the kernel may
have dropped the pages, and a retry can report success with the data gone). A write refused
for lack of space (ENOSPC, EDQUOT) is not fatal: the segment is cut back to its size before
the write and fsynced, so no half batch is ever replayed; the batch and every append queued
behind it fail with StorageError, their op ids are handed out again (`on_rewound` tells the
applier), and the next append is written normally once there is space.

Liveness. `batch_started_at_s` is the monotonic time the batch now being written and synced
was handed to the WAL's thread (None while idle). `stuck_writers` reads it for every log
whose writer runs in this process, so a watchdog can tell a stuck fdatasync from an idle log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine import files, limits, stats
from engine.errors import Conflict, CorruptionError, StorageError
from engine.logfmt import log_event
from engine.wal.format import (
    RECORD_HEADER,
    SEGMENT_SUFFIX,
    ScanEnd,
    frame_batch,
    op_id_from_segment_name,
    scan_batches,
    segment_name,
)
from engine.wal.reader import LiveReader, SegmentRef

log = logging.getLogger(__name__)

BROKEN_DIR_NAME = "broken"
OUT_OF_SPACE_ERRNOS = files.OUT_OF_SPACE_ERRNOS
# Logs whose writer task is running, for `stuck_writers`; weak so a log that is never
# closed (a test's) does not live on here.
_running_wals: weakref.WeakSet[Wal] = weakref.WeakSet()


def stuck_writers(in_flight_s_max: float) -> list[tuple[str, float]]:
    """(collection name, seconds in flight) of every running log of this process whose
    current batch (write + fdatasync) was handed to its thread over in_flight_s_max ago."""
    assert in_flight_s_max > 0, in_flight_s_max
    now_s = time.monotonic()
    stuck = []
    for wal in list(_running_wals):
        started_s = wal.batch_started_at_s
        if started_s is not None and now_s - started_s > in_flight_s_max:
            stuck.append((wal.name, now_s - started_s))
    return sorted(stuck)


@dataclass
class _Segment:
    first_op_id: int
    path: Path
    last_op_id: int  # first_op_id - 1 while empty


@dataclass
class _PendingAppend:
    op_id: int
    body: bytes
    durable: asyncio.Future[int]


class _BatchRefused(Exception):
    """The disk refused a batch and nothing of it is left in the log; the log stays open."""

    def __init__(self, error: StorageError) -> None:
        super().__init__(str(error))
        self.error = error


class Wal:
    """The log of one collection: recover with `open()`, then `start()` the writer task.

    `append` assigns the op id at once and returns a future that resolves when the record
    is on disk (fdatasync returned). Durability failures close the log for good.
    """

    def __init__(self, directory: Path, name: str, segment_bytes_target: int, fsync_slow_s: float):
        self.directory = directory
        self.name = name
        self._segment_bytes_target = segment_bytes_target
        self._fsync_slow_s = fsync_slow_s
        self._segments: list[_Segment] = []
        self._live_reader = LiveReader()  # followers' reads, resumed where they stopped
        self._fd: int | None = None
        self._active_bytes = 0
        self.next_op_id = 0
        self.durable_op_id = -1
        self._pending: deque[_PendingAppend] = deque()
        self._has_pending = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._is_closing = False
        self._is_closed = False  # close() returned: no writer, no executor
        self._failure: StorageError | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wal-{name}")
        self.on_durable: list = []  # callbacks(durable_op_id) run on the event loop
        # callbacks(next_op_id) run on the event loop when a refused batch gives op ids back
        self.on_rewound: list[Callable[[int], None]] = []
        self.batch_count = 0  # group commits (one write + one fdatasync each) since open
        self.record_count = 0
        self.batch_started_at_s: float | None = None  # monotonic; None while no batch in flight
        # Observed in the WAL's thread, read by metrics exporters at scrape time.
        self.fsync_latency_s = stats.Histogram(stats.LATENCY_BUCKETS_S)
        self.batch_record_count = stats.Histogram(stats.BATCH_SIZE_BUCKETS)

    @staticmethod
    def create(directory: Path, first_op_id: int = 0) -> None:
        """Lay out an empty log (one empty segment starting at `first_op_id`), durably.

        A collection restored from a snapshot of op N starts its log at N + 1, so op ids keep
        increasing after the restore."""
        assert first_op_id >= 0, first_op_id
        files.make_directory_durably(directory)
        files.create_file_durably(directory / segment_name(first_op_id))

    # ---- recovery -------------------------------------------------------------------------

    def open(self) -> None:
        """Validate every segment, cut a torn tail, and position the writer after it.

        Raises CorruptionError, naming file and offset, on anything a crash cannot explain.
        """
        paths = sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))
        if not paths:
            raise CorruptionError(f"WAL has no segment: directory={self.directory}")
        expected_first_op_id: int | None = None
        for index, path in enumerate(paths):
            first_op_id = op_id_from_segment_name(path)
            if expected_first_op_id is not None and first_op_id != expected_first_op_id:
                raise CorruptionError(
                    f"WAL segment missing or out of order: file={path} starts at op "
                    f"{first_op_id}, expected {expected_first_op_id}"
                )
            is_last = index == len(paths) - 1
            last_op_id = self._check_segment(path, first_op_id, is_last)
            self._segments.append(_Segment(first_op_id, path, last_op_id))
            expected_first_op_id = last_op_id + 1
        active = self._segments[-1]
        self.next_op_id = active.last_op_id + 1
        self.durable_op_id = self.next_op_id - 1
        self._fd = files.open_append(active.path)
        self._active_bytes = active.path.stat().st_size

    def read_records(self, after_op_id: int) -> Iterator[tuple[int, bytes]]:
        """Yield (op_id, body) of every durable record with op_id > after_op_id, in order."""
        assert self.durable_op_id == self.next_op_id - 1, "read_records is for recovery only"
        for index, segment in enumerate(self._segments):
            if segment.last_op_id <= after_op_id:
                continue
            result = scan_batches(segment.path.read_bytes(), segment.first_op_id)
            # open() cut any torn tail, so every segment now scans clean.
            assert result.end is ScanEnd.CLEAN, (segment.path, result.problem)
            for op_id, body in result.records:
                if op_id > after_op_id:
                    yield op_id, body

    @property
    def first_op_id(self) -> int:
        """The lowest op id still in the log (everything below was truncated)."""
        return self._segments[0].first_op_id

    def read_durable(
        self, from_op_id: int, count_max: int, bytes_max: int
    ) -> list[tuple[int, bytes]]:
        """(op_id, body) of durable records from from_op_id on, in order: at most count_max
        of them and, past the first, at most bytes_max of bodies. Safe while the writer
        runs (for followers): only bytes of records <= durable_op_id are trusted, and
        segments are append-only. A segment truncated away meanwhile is re-listed. Raises
        Conflict if from_op_id is below the first op id the log still holds. Blocking."""
        assert count_max >= 1, count_max
        durable_op_id = self.durable_op_id
        for _attempt in range(8):
            segments = list(self._segments)  # the writer appends, truncation pops: a copy
            if from_op_id < segments[0].first_op_id:
                raise Conflict(
                    f"WAL of collection {self.name} starts at op {segments[0].first_op_id}, "
                    f"op {from_op_id} was truncated"
                )
            refs = [SegmentRef(segment.first_op_id, segment.path) for segment in segments]
            try:
                return self._live_reader.read(refs, from_op_id, durable_op_id, count_max, bytes_max)
            except FileNotFoundError:
                continue  # truncated while we read: the next listing starts later
        raise StorageError(f"WAL of collection {self.name} kept changing while being read")

    def sealed_segment_extents(self) -> list[tuple[int, int, int]]:
        """(first_op_id, last_op_id, size_bytes) of every sealed segment, oldest first
        (what truncation could remove). Blocking: stats files."""
        return [
            (segment.first_op_id, segment.last_op_id, segment.path.stat().st_size)
            for segment in list(self._segments)[:-1]
        ]

    # ---- appending ------------------------------------------------------------------------

    def start(self) -> None:
        assert self._writer_task is None, "wal writer started twice"
        assert self._fd is not None, "wal started before open()"
        self._writer_task = asyncio.create_task(self._run_writer(), name=f"wal-writer:{self.name}")
        _running_wals.add(self)

    @property
    def appended_op_id(self) -> int:
        """The last op id handed out by `append` (-1 before the first); may not be durable."""
        return self.next_op_id - 1

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def is_failed(self) -> bool:
        return self._failure is not None

    def append(self, body: bytes) -> tuple[int, asyncio.Future[int]]:
        """Assign the next op id to `body` and queue it; the future resolves once durable.

        Raises StorageError if the write path is closed (an earlier fsync failed).
        """
        if self._failure is not None:
            raise self._failure
        assert not self._is_closing, "append after close"
        assert len(body) <= limits.RECORD_BYTES_MAX, len(body)
        op_id = self.next_op_id
        self.next_op_id += 1
        durable = asyncio.get_running_loop().create_future()
        self._pending.append(_PendingAppend(op_id, body, durable))
        self._has_pending.set()
        return op_id, durable

    async def close(self) -> None:
        """Write everything queued, stop the writer, close files. Idempotent."""
        self._is_closing = True
        self._has_pending.set()
        if self._writer_task is not None:
            await self._writer_task
            self._writer_task = None
        _running_wals.discard(self)
        self._executor.shutdown(wait=True)
        self._is_closed = True
        if self._fd is not None:
            files.close(self._fd)
            self._fd = None
        log_event(
            log,
            logging.INFO,
            "wal closed",
            collection=self.name,
            batches_written=self.batch_count,
            records_written=self.record_count,
        )

    async def truncate_below(self, op_id: int) -> int:
        """Delete sealed segments whose every record is <= op_id; return how many went.

        Works after close() too: a collection closes its log before its applier, whose last
        checkpoint then truncates. With the writer gone, any thread may remove segments.
        """
        loop = asyncio.get_running_loop()
        executor = None if self._is_closed else self._executor
        return await loop.run_in_executor(executor, self._truncate_below, op_id)

    # ---- writer task ----------------------------------------------------------------------

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_pending.wait()
            if not self._pending:
                if self._is_closing:
                    return
                self._has_pending.clear()
                continue
            batch = self._take_batch()
            data = frame_batch(batch[0].op_id, [item.body for item in batch])
            self.batch_started_at_s = time.monotonic()
            try:
                await loop.run_in_executor(self._executor, self._write_batch, data, batch)
            except _BatchRefused as refused:
                self._refuse(refused.error, batch)
                continue
            except (OSError, StorageError) as error:
                self._fail(error, batch)
                return
            finally:
                self.batch_started_at_s = None
            self.durable_op_id = batch[-1].op_id
            self.batch_count += 1
            self.record_count += len(batch)
            for item in batch:
                if not item.durable.done():
                    item.durable.set_result(item.op_id)
            for callback in self.on_durable:
                callback(self.durable_op_id)

    def _take_batch(self) -> list[_PendingAppend]:
        batch = [self._pending.popleft()]
        batch_bytes = len(batch[0].body)
        while self._pending:
            size = len(self._pending[0].body) + RECORD_HEADER.size
            if batch_bytes + size > limits.GROUP_COMMIT_BYTES_MAX:
                break
            batch.append(self._pending.popleft())
            batch_bytes += size
        assert batch[0].op_id == self.durable_op_id + 1, (batch[0].op_id, self.durable_op_id)
        return batch

    def _write_batch(self, data: bytes, batch: list[_PendingAppend]) -> None:
        """Runs in the WAL's own thread: roll if due, write, fdatasync once."""
        if self._failure is not None:
            raise self._failure
        # Seal between batches, never inside one: recovery relies on a torn batch lying
        # entirely in the last segment.
        if self._active_bytes >= self._segment_bytes_target:
            self._roll(batch[0].op_id)
        self._append(data)
        files.failpoint("wal.after_write")
        files.stall_point("wal.sync_blocks")
        try:
            took_s = files.fdatasync(self._fd)
        except OSError as error:
            # Never retry: the pages may already be gone and a second fsync can report success.
            self._failure = StorageError(
                f"fdatasync failed collection={self.name} path={self._segments[-1].path}: {error}"
            )
            raise self._failure from error
        files.failpoint("wal.after_sync")
        self._segments[-1].last_op_id = batch[-1].op_id
        self.fsync_latency_s.observe(took_s)
        self.batch_record_count.observe(len(batch))
        if took_s > self._fsync_slow_s:
            log_event(
                log,
                logging.WARNING,
                "slow fdatasync",
                collection=self.name,
                took_s=round(took_s, 3),
                records=len(batch),
                bytes=len(data),
            )

    def _append(self, data: bytes) -> None:
        """Write one batch at the end of the active segment; on ENOSPC leave no part of it."""
        assert self._fd is not None
        size_before = self._active_bytes
        try:
            files.write_all(self._fd, data)
        except OSError as error:
            if error.errno not in OUT_OF_SPACE_ERRNOS:
                raise
            # Part of the batch may be in the file. Cut it off, durably, before anyone is
            # told: a later batch must start on a boundary and these records, reported as
            # failed, must never be replayed. If cutting fails, the error closes the log.
            files.truncate_fd_durably(self._fd, size_before)
            assert self._segments[-1].path.stat().st_size == size_before, size_before
            path = self._segments[-1].path
            raise _BatchRefused(
                StorageError(
                    f"WAL write refused, nothing was logged collection={self.name} "
                    f"path={path}: {error}"
                )
            ) from error
        self._active_bytes += len(data)
        assert self._active_bytes == size_before + len(data), (self._active_bytes, len(data))

    def _roll(self, first_op_id: int) -> None:
        assert self._segments[-1].last_op_id == first_op_id - 1, (self._segments[-1], first_op_id)
        path = self.directory / segment_name(first_op_id)
        try:
            fd = files.create_append(path)
        except OSError as error:
            if error.errno not in OUT_OF_SPACE_ERRNOS:
                raise
            # O_EXCL failed, so no file exists: the next batch simply tries to roll again.
            raise _BatchRefused(
                StorageError(
                    f"WAL segment roll refused, nothing was logged collection={self.name} "
                    f"path={path}: {error}"
                )
            ) from error
        # From here a failure closes the log: the new file exists and a retry would find it.
        try:
            files.fsync(fd)  # fsync, not fdatasync: the new inode itself must be durable
            files.fsync_directory(self.directory)
        except BaseException:
            files.close(fd)
            raise
        files.failpoint("wal.after_roll")
        assert self._fd is not None
        files.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(first_op_id, path, first_op_id - 1))
        self._active_bytes = 0
        log_event(
            log,
            logging.INFO,
            "wal segment sealed",
            collection=self.name,
            next_first_op_id=first_op_id,
        )

    def _refuse(self, error: StorageError, batch: list[_PendingAppend]) -> None:
        """Fail a refused batch and everything queued behind it; reuse their op ids."""
        assert batch[0].op_id == self.durable_op_id + 1, (batch[0].op_id, self.durable_op_id)
        log_event(
            log,
            logging.WARNING,
            "wal batch refused",
            collection=self.name,
            first_op_id=batch[0].op_id,
            records=len(batch),
            queued_behind=len(self._pending),
            error=str(error),
        )
        # Queued appends hold op ids after the refused ones; they cannot be written first.
        for item in list(batch) + list(self._pending):
            if not item.durable.done():
                item.durable.set_exception(error)
        self._pending.clear()
        self.next_op_id = self.durable_op_id + 1
        for callback in self.on_rewound:
            callback(self.next_op_id)
        assert self.next_op_id == self.durable_op_id + 1, (self.next_op_id, self.durable_op_id)

    def _fail(self, error: Exception, batch: list[_PendingAppend]) -> None:
        failure = (
            error
            if isinstance(error, StorageError)
            else StorageError(f"WAL write failed collection={self.name}: {error}")
        )
        self._failure = failure
        log_event(
            log, logging.CRITICAL, "write path closed", collection=self.name, error=str(failure)
        )
        for item in list(batch) + list(self._pending):
            if not item.durable.done():
                item.durable.set_exception(failure)
        self._pending.clear()

    def _truncate_below(self, op_id: int) -> int:
        removed = 0
        # The active (last) segment is never removed: its name carries the op id sequence.
        while len(self._segments) > 1 and self._segments[0].last_op_id <= op_id:
            segment = self._segments.pop(0)
            files.unlink_durably(segment.path)
            removed += 1
        if removed:
            log_event(
                log,
                logging.INFO,
                "wal truncated",
                collection=self.name,
                segments_removed=removed,
                below_op_id=op_id,
            )
        return removed

    def _check_segment(self, path: Path, first_op_id: int, is_last: bool) -> int:
        """Scan one segment at open(); return its last op id or raise CorruptionError."""
        data = path.read_bytes()
        result = scan_batches(data, first_op_id)
        if result.end is ScanEnd.CORRUPT:
            raise CorruptionError(f"WAL corrupt: file={path} {result.problem}")
        if result.end is ScanEnd.TORN_TAIL:
            if not is_last:
                raise CorruptionError(
                    f"WAL corrupt in sealed segment: file={path} {result.problem}"
                )
            self._cut_torn_tail(path, data, result.valid_bytes)
        if result.records:
            return result.records[-1][0]
        return first_op_id - 1

    def _cut_torn_tail(self, path: Path, data: bytes, valid_bytes: int) -> None:
        broken_dir = self.directory.parent / BROKEN_DIR_NAME
        if not broken_dir.exists():
            files.make_directory_durably(broken_dir)
        copy_path = broken_dir / f"{path.name}.{valid_bytes}.{time.time_ns()}.broken"
        files.create_file_durably(copy_path, data[valid_bytes:])
        files.truncate_durably(path, valid_bytes)
        log_event(
            log,
            logging.WARNING,
            "wal torn tail truncated",
            collection=self.name,
            file=Path(path),
            offset=valid_bytes,
            bytes_cut=len(data) - valid_bytes,
            copy=Path(copy_path),
        )
