"""Background task of one collection: durable WAL records -> LMDB + hnswlib, then waiters.

Owns: the queue of acknowledged-but-unapplied operations (in op order), applying them in
batches (one LMDB transaction and one `add_items` per vector name per batch), resolving
`wait=true` waiters once their op is visible to reads, periodic checkpoints followed by
WAL truncation, and, first of all, catching graphs loaded from checkpoints up with LMDB.

Recovery replays the WAL into LMDB only; the graphs catch up here, after the collection is
open, so a restart is ready as soon as LMDB is. Until a graph is caught up and made visible,
reads of its vector score exactly from LMDB (the path a collection without a graph takes):
answers are exact, only slower, and collection info says "yellow" as Qdrant's does while
an index is built.
Not here: the WAL's group commit (engine/wal/log.py), admission and backpressure (collection.py).

Apply failures are fatal for the collection's write path: an index that silently drifts from
the log is worse than a write path that is closed and says so.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import numpy as np

from engine import files, limits, stats
from engine.errors import StorageError
from engine.locks import ReadWriteLock
from engine.logfmt import log_event
from engine.ops import Operation, PointId, is_schema_op
from engine.readview import PreparedBatch, ReadView
from engine.store.mutations import CompileFilter
from engine.store.store import IndexDelta, Store
from engine.vectors.hnsw import CheckpointNotWritten, VectorIndex, remove_checkpoint
from engine.wal.followers import FollowerRegistry, SegmentExtent
from engine.wal.log import Wal

log = logging.getLogger(__name__)

CATCH_UP_CHUNK_COUNT = 65_536  # vectors read from LMDB per add_items call in a catch-up


def add_to_indexes(indexes: dict[str, VectorIndex], delta: IndexDelta) -> None:
    """Put a batch's new vectors into the graphs (before its LMDB commit)."""
    for name, index in indexes.items():
        added = delta.added_labels.get(name)
        if added:
            index.add(added, np.stack(delta.added_vectors[name]).astype(np.float32, copy=False))
            index.pending_count += len(added)


def remove_from_indexes(indexes: dict[str, VectorIndex], delta: IndexDelta) -> None:
    """Take a batch's replaced or deleted vectors out of the graphs (with its LMDB commit)."""
    for name, index in indexes.items():
        index.pending_count = 0  # the batch's new vectors are committed now
        removed = delta.removed_labels.get(name)
        if removed:
            index.remove(removed)


def apply_batch(
    store: Store,
    indexes: dict[str, VectorIndex],
    visibility_lock: ReadWriteLock,
    compile_filter: CompileFilter,
    records: list[tuple[int, Operation]],
    read_view: ReadView | None = None,
    on_schema_committed: Callable[[IndexDelta], None] | None = None,
) -> IndexDelta:
    """Apply records to LMDB, the graphs and the read view so that readers see all of it
    or none of it. A vector-name op comes alone; `on_schema_committed` (inside the commit's
    exclusive section) then makes or drops its graph and read-view cache.

    Readers hold `visibility_lock` shared across their graph search and LMDB read; new
    labels enter the graphs before the commit but mean nothing to a reader until LMDB maps
    them to a point.
    """
    prepared: list[PreparedBatch] = []

    def before_commit(delta: IndexDelta) -> None:
        add_to_indexes(indexes, delta)
        if read_view is not None:
            prepared.append(read_view.prepare(delta))

    def with_commit(delta: IndexDelta) -> None:
        if delta.schema_op is not None:
            if on_schema_committed is not None:
                on_schema_committed(delta)
            return
        if read_view is not None:
            read_view.apply(delta, prepared[-1], store)
        remove_from_indexes(indexes, delta)

    return store.write_batch(
        records,
        compile_filter=compile_filter,
        on_prepared=before_commit,
        on_committed=with_commit,
        commit_lock=visibility_lock,
    )


@dataclass(frozen=True, slots=True)
class Unapplied:
    """One op in the applier's queue: logged (maybe not yet durable), not yet applied."""

    op_id: int
    op: Operation
    size_bytes: int  # its share of the unapplied byte budget, released once applied


@dataclass
class Outcome:
    """What applying one op met, for the caller waiting for it."""

    missing_point_id: PointId | None = None  # the first missing id of an id-listed edit


class Applier:
    """Applies durable records in op order; `applied_op_id` is what reads can see."""

    def __init__(
        self,
        name: str,
        wal: Wal,
        store: Store,
        indexes: dict[str, VectorIndex],
        visibility_lock: ReadWriteLock,
        compile_filter: CompileFilter,
        apply_batch_ops_max: int,
        checkpoint_every_ops: int,
        checkpoint_every_s: float,
        on_applied: Callable[[int], None],
        followers: FollowerRegistry | None = None,
        follower_retention_bytes_max: int = 0,
        lagging_indexes: dict[str, VectorIndex] | None = None,
        read_view: ReadView | None = None,
        on_schema_committed: Callable[[IndexDelta], None] | None = None,
    ) -> None:
        self.name = name
        self._on_schema_committed = on_schema_committed
        self._read_view = read_view
        # Graphs as of their checkpoints, behind LMDB: caught up before any new op is
        # applied, then moved into `indexes` (which reads see).
        self.lagging_indexes = dict(lagging_indexes or {})
        self._catch_up_ended = asyncio.Event()
        # Registered followers hold WAL segments back from truncation, up to the cap.
        self._followers = followers
        self._follower_retention_bytes_max = follower_retention_bytes_max
        self._wal = wal
        self._store = store
        self._indexes = indexes
        self._visibility_lock = visibility_lock
        self._compile_filter = compile_filter
        self._apply_batch_ops_max = apply_batch_ops_max
        self._checkpoint_every_ops = checkpoint_every_ops
        self._checkpoint_every_s = checkpoint_every_s
        self._on_applied = on_applied  # releases backpressure budget; runs on the loop
        self.applied_op_id = store.applied_op_id
        self._unapplied: deque[Unapplied] = deque()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by op_id
        # Outcomes of the ops whose caller waits for them: added right after submit, removed
        # by that caller when its wait ends (or here, for ops the WAL refused), so it holds
        # at most the ops of the updates being waited for.
        self._outcomes: dict[int, Outcome] = {}
        self._waiter_sequence = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._is_closing = False
        self.failure: StorageError | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"apply-{name}")
        self._checkpointed_op_id = self.applied_op_id
        self._checkpointed_at_s = time.monotonic()
        # Observed in the applier's thread, read by metrics exporters at scrape time.
        self.batch_op_count = stats.Histogram(stats.BATCH_SIZE_BUCKETS)
        self.batch_latency_s = stats.Histogram(stats.LATENCY_BUCKETS_S)

    def start(self) -> None:
        assert self._task is None, "applier started twice"
        self._task = asyncio.create_task(self._run(), name=f"applier:{self.name}")

    @property
    def checkpoint_age_s(self) -> float:
        """Seconds since the last checkpoint this process wrote, or since the applier was
        created (right after recovery) if it has written none yet."""
        return time.monotonic() - self._checkpointed_at_s

    def submit(self, op_id: int, op: Operation, size_bytes: int) -> None:
        """Queue an op just appended to the WAL; it is applied once durable."""
        assert not self._unapplied or self._unapplied[-1].op_id == op_id - 1, op_id
        assert op_id > self.applied_op_id, (op_id, self.applied_op_id)
        self._unapplied.append(Unapplied(op_id, op, size_bytes))

    def want_outcome(self, op_id: int) -> Outcome:
        """The Outcome the apply of op_id fills in; call right after `submit`, before any
        await, so the apply cannot come first. Release it with `forget_outcome`."""
        assert op_id > self.applied_op_id, (op_id, self.applied_op_id)
        assert op_id not in self._outcomes, op_id
        outcome = self._outcomes[op_id] = Outcome()
        return outcome

    def forget_outcome(self, op_id: int, outcome: Outcome) -> None:
        # The identity check: a refused op's id is handed out again, maybe already wanted.
        if self._outcomes.get(op_id) is outcome:
            del self._outcomes[op_id]

    def wake(self, durable_op_id: int) -> None:
        """The WAL made ops durable up to durable_op_id: apply them. Registered on
        `Wal.on_durable` by engine/collection.py `Collection.__init__`."""
        assert durable_op_id <= self._wal.durable_op_id, (durable_op_id, self._wal.durable_op_id)
        self._wake.set()

    def drop_refused(self, next_op_id: int) -> None:
        """The WAL refused a batch (disk full): forget the ops from next_op_id on, which
        were never durable and whose op ids the WAL hands out again; free their budget.
        Registered on `Wal.on_rewound` by engine/collection.py `Collection.__init__`."""
        assert next_op_id > self.applied_op_id, (next_op_id, self.applied_op_id)
        dropped_bytes = 0
        while self._unapplied and self._unapplied[-1].op_id >= next_op_id:
            dropped_bytes += self._unapplied.pop().size_bytes
        for op_id in [op_id for op_id in self._outcomes if op_id >= next_op_id]:
            del self._outcomes[op_id]
        if dropped_bytes:
            self._on_applied(dropped_bytes)

    async def wait_applied(self, op_id: int, timeout_s: float | None) -> bool:
        """True once op_id is applied, False on timeout. Never cancels the operation."""
        if self.failure is not None:
            raise self.failure
        if op_id <= self.applied_op_id:
            return True
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (op_id, next(self._waiter_sequence), waiter))
        done, _ = await asyncio.wait({waiter}, timeout=timeout_s)
        if waiter not in done:
            return False
        waiter.result()  # raises the write path's failure, if that is what woke us
        return True

    async def wait_caught_up(self) -> None:
        """Until no graph lags LMDB (or the catch-up stopped: raises the failure, if any)."""
        await self._catch_up_ended.wait()
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        """Apply everything durable, checkpoint, stop. The WAL must be closed first."""
        self._is_closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.failure is None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint)
        self._executor.shutdown(wait=True)

    # ---- graphs switched by a config update -------------------------------------------------

    async def drop_graph(self, name: str) -> None:
        """Stop using vector `name`'s graph (its m became 0): reads score it exactly from
        then on. Runs in the applier's thread, between batches; the checkpoint goes too, so
        that no later start loads it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._drop_graph, name)

    def rebuild_graph(self, index: VectorIndex) -> asyncio.Future[int | None]:
        """Build `index` (empty) from LMDB in the applier's thread, between batches (writes
        wait meanwhile), and then let reads use it instead of the graph the vector had, if
        any; until then reads use that one, or score exactly. The caller keeps the future and
        awaits it (Collection.close does, after this applier is closed)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._rebuild_graph, index)
        future.add_done_callback(self._fail_if_raised)  # on the loop, as _run's failures
        return future

    def _fail_if_raised(self, future: asyncio.Future[int | None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._fail(future.exception())  # type: ignore[arg-type]

    def _drop_graph(self, name: str) -> None:
        with self._visibility_lock.exclusive():
            self._indexes.pop(name, None)
            self.lagging_indexes.pop(name, None)
        remove_checkpoint(self._store.path.parent / "index", name)

    def _rebuild_graph(self, index: VectorIndex) -> int | None:
        if self.failure is not None or self._is_closing:
            return None
        assert index.live_count == 0, "a rebuild starts from an empty graph"
        # The old graph's checkpoint was built with the old settings: a start before the new
        # graph's first checkpoint must build from LMDB, not load it.
        remove_checkpoint(index.directory, index.name)
        self.lagging_indexes[index.name] = index
        return self._catch_up(index.name)  # a failure closes the write path (_fail_if_raised)

    # ---- the task --------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            added_count = 0
            for name in list(self.lagging_indexes):
                added = await loop.run_in_executor(self._executor, self._catch_up, name)
                if added is None:
                    break
                added_count += added
        except Exception as error:  # noqa: BLE001 - any failure closes the write path
            self._fail(error)
            return
        finally:
            self._catch_up_ended.set()
        if added_count >= self._checkpoint_every_ops:
            # A long catch-up (a big replay, a lost checkpoint): keep the next restart short.
            await self._checkpoint_and_truncate(loop)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._take_durable_batch():
                try:
                    missing = await loop.run_in_executor(self._executor, self._apply, batch)
                except Exception as error:  # noqa: BLE001 - any failure closes the write path
                    self._fail(error)
                    return
                self._finish(batch, missing)
                if self._is_checkpoint_due():
                    await self._checkpoint_and_truncate(loop)
                if self.failure is not None:
                    return
            if self._is_closing and not self._unapplied:
                return
            if self._is_closing and self._wal.is_failed:
                return

    def _catch_up(self, name: str) -> int | None:
        """Bring a graph loaded as of its checkpoint up to LMDB's applied state, make it
        visible, and return how many vectors it took. None if the collection began closing
        first: the graph stays lagging, is not checkpointed, and the next open catches up
        from the same checkpoint."""
        index = self.lagging_indexes[name]
        started_s = time.monotonic()
        for label, death_op_id, names in self._store.dead_labels():
            is_in_graph = label < index.checkpoint_next_label and name in names
            if is_in_graph and death_op_id > index.checkpoint_op_id:
                index.remove([label])
        added_count = 0
        chunks = self._store.iter_vectors(
            name, index.dim, CATCH_UP_CHUNK_COUNT, index.checkpoint_next_label
        )
        with closing(chunks):
            for labels, matrix in chunks:
                if self._is_closing:
                    log_event(
                        log,
                        logging.INFO,
                        "index catch-up stopped by close",
                        collection=self.name,
                        vector=name,
                    )
                    return None
                index.add(labels, matrix)
                added_count += len(labels)
                files.failpoint("applier.catch_up_after_add")
        with self._visibility_lock.exclusive():
            self._indexes[name] = index
            del self.lagging_indexes[name]
        # After a clean stop every graph is checkpointed and this adds nothing: say that
        # only at DEBUG, or every start prints a line per vector of every collection.
        log_event(
            log,
            logging.INFO if added_count else logging.DEBUG,
            "index caught up",
            collection=self.name,
            vector=name,
            from_op_id=index.checkpoint_op_id,
            vectors_added=added_count,
            took_s=round(time.monotonic() - started_s, 3),
        )
        return added_count

    def _take_durable_batch(self) -> list[Unapplied]:
        durable_op_id = self._wal.durable_op_id
        batch: list[Unapplied] = []
        batch_bytes = 0
        while self._unapplied and self._unapplied[0].op_id <= durable_op_id:
            size_bytes = self._unapplied[0].size_bytes
            if batch and is_schema_op(batch[-1].op):
                break  # a vector-name op changes what later ops write to: alone in its batch
            if batch and (
                is_schema_op(self._unapplied[0].op)
                or len(batch) >= self._apply_batch_ops_max
                or batch_bytes + size_bytes > limits.APPLY_BATCH_BYTES_MAX
            ):
                break
            batch.append(self._unapplied.popleft())
            batch_bytes += size_bytes
        return batch

    def _apply(self, batch: list[Unapplied]) -> dict[int, PointId]:
        """Apply a batch; returns op_id -> first missing id, for the ops that met one."""
        first_op_id, last_op_id = batch[0].op_id, batch[-1].op_id
        assert first_op_id == self.applied_op_id + 1, (first_op_id, self.applied_op_id)
        assert last_op_id <= self._wal.durable_op_id, "applying a record not yet durable"
        records = [(entry.op_id, entry.op) for entry in batch]
        started_s = time.monotonic()
        delta = apply_batch(
            self._store,
            self._indexes,
            self._visibility_lock,
            self._compile_filter,
            records,
            self._read_view,
            self._on_schema_committed,
        )
        assert self._store.applied_op_id == last_op_id, (self._store.applied_op_id, last_op_id)
        assert set(delta.missing_point_ids) <= {op_id for op_id, _ in records}, "foreign op_id"
        self.batch_latency_s.observe(time.monotonic() - started_s)
        self.batch_op_count.observe(len(batch))
        return delta.missing_point_ids

    def _finish(self, batch: list[Unapplied], missing: dict[int, PointId]) -> None:
        # Outcomes before waiters: a woken caller reads its op's outcome at once.
        for op_id, point_id in missing.items():
            outcome = self._outcomes.get(op_id)
            if outcome is not None:
                outcome.missing_point_id = point_id
        self.applied_op_id = batch[-1].op_id
        while self._waiters and self._waiters[0][0] <= self.applied_op_id:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
        self._on_applied(sum(entry.size_bytes for entry in batch))

    def _is_checkpoint_due(self) -> bool:
        ops_since = self.applied_op_id - self._checkpointed_op_id
        if ops_since <= 0:
            return False
        elapsed_s = time.monotonic() - self._checkpointed_at_s
        return ops_since >= self._checkpoint_every_ops or elapsed_s >= self._checkpoint_every_s

    async def _checkpoint_and_truncate(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            covered_op_id = await loop.run_in_executor(self._executor, self._checkpoint)
            truncate_op_id = await loop.run_in_executor(
                self._executor, self._retained_op_id, covered_op_id
            )
            await self._wal.truncate_below(truncate_op_id)
        except Exception as error:  # noqa: BLE001 - lmdb.Error too: any failure closes the path
            self._fail(error)

    def _retained_op_id(self, covered_op_id: int) -> int:
        """The op id to truncate below: covered_op_id, lowered for live followers."""
        if self._followers is None:
            return covered_op_id
        sealed = [SegmentExtent(*extent) for extent in self._wal.sealed_segment_extents()]
        truncate_op_id = self._followers.truncation_op_id(
            covered_op_id, sealed, self._follower_retention_bytes_max
        )
        assert truncate_op_id <= covered_op_id, (truncate_op_id, covered_op_id)
        return truncate_op_id

    def _checkpoint(self) -> int:
        """Sync LMDB, save every graph as of applied_op_id; return the op id all cover."""
        applied_op_id = self._store.applied_op_id
        # LMDB runs with metasync=False: make it durable before anything relies on it.
        self._store.sync()
        for index in self._indexes.values():
            if index.checkpoint_op_id < applied_op_id:
                try:
                    index.save_checkpoint(applied_op_id, self._store.next_label)
                except CheckpointNotWritten as skipped:
                    # Not fatal: the old checkpoint and the WAL after it (kept: covered_op_id
                    # below counts the old one) still hold everything. Retried next time.
                    log_event(
                        log,
                        logging.WARNING,
                        "index checkpoint skipped",
                        collection=self.name,
                        vector=index.name,
                        reason=str(skipped),
                    )
        # A lagging graph's checkpoint still counts: its catch-up needs the dead labels
        # that died after it.
        all_indexes = [*self._indexes.values(), *self.lagging_indexes.values()]
        covered_op_id = min([applied_op_id] + [i.checkpoint_op_id for i in all_indexes])
        self._store.purge_dead(covered_op_id)
        self._checkpointed_op_id = applied_op_id
        self._checkpointed_at_s = time.monotonic()
        log_event(
            log, logging.INFO, "checkpoint written", collection=self.name, op_id=applied_op_id
        )
        return covered_op_id

    def _fail(self, error: Exception) -> None:
        self.failure = (
            error
            if isinstance(error, StorageError)
            else StorageError(f"applying to storage failed collection={self.name}: {error!r}")
        )
        log_event(
            log,
            logging.CRITICAL,
            "write path closed",
            collection=self.name,
            error=str(self.failure),
            exc_info=error,
        )
        for _, _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(self.failure)
        self._waiters.clear()
