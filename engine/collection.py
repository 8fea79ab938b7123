"""One collection: owns its WAL, LMDB store, vector indexes and applier.

Owns: the collection's directory layout, recovery (`recover`: WAL validation, checkpoint
loading, replay into LMDB; the graphs catch up afterwards, in the applier), wiring the WAL,
store, graphs, applier and readers together (`Collection.open` -> `Collection.__init__`),
validation of operations against the config, admission with a byte budget (backpressure),
the wait/timeout contract, and reads (retrieve, search with exact rescoring).
Not here: how bytes are framed (engine/wal/log.py) or stored (engine/store/store.py); HTTP (server/).

Directory:
| path          | what                                              |
|---------------|---------------------------------------------------|
| config.json   | CollectionConfig (replaced atomically on update)   |
| incarnation   | random hex id of this collection's history (below) |
| wal/          | segments (engine/wal/log.py)                      |
| broken/       | bytes cut from a torn WAL tail, kept for forensics |
| lmdb/         | LMDB environment (engine/store/store.py)          |
| index/        | HNSW checkpoints (engine/vectors/hnsw.py)         |

Incarnation: a collection restored from a snapshot, or deleted and created again under the
same name, is another history of ops than the one before it. Its op ids continue above the
old ones (the catalog's op_id_floors.json), and it gets a new incarnation id, so that a WAL
follower of the old history is refused instead of resumed (server/api/followers.py).

Vector names (Qdrant 1.19's create/delete vector name) change through the WAL like points:
`self.config` takes a vector-name op when it is appended (so later ops are validated
against it), LMDB, the graphs, the read view and the readers when it is applied (alone in
its batch). LMDB's `vector_schema` record (engine/store/store.py), written in the op's
transaction, is the truth about the names; config.json follows it after the op is durable,
and recovery puts any config.json a crash left behind back in step with it
(`ops.reconcile_vector_names`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engine import files, limits, validation
from engine.applier import Applier, apply_batch
from engine.errors import (
    BadRequest,
    Conflict,
    CorruptionError,
    NotFound,
    Overloaded,
    StorageError,
    missing_vector_name,
)
from engine.filters.conditions import FILTER_TYPES, Filter
from engine.filters.payload_path import PayloadPath
from engine.limits import EngineSettings
from engine.locks import ReadWriteLock
from engine.logfmt import log_event
from engine.ops import (
    CollectionConfig,
    CreateFieldIndex,
    CreateVectorName,
    DeleteVectorName,
    Operation,
    PayloadSelector,
    PointId,
    PointRecord,
    ScoredPoint,
    SearchRequest,
    UpdateResult,
    UpdateStatus,
    VectorSelector,
    config_after,
    is_schema_op,
    reconcile_vector_names,
)
from engine.query import plan as query_plan
from engine.query import universal as query
from engine.query.distance_matrix import DistanceMatrix, distance_matrix
from engine.query.reads import compile_filter_with_indexes
from engine.query.universal_reads import QueryReader
from engine.readview import ReadView
from engine.readview.vectors import VectorCache
from engine.stats import HistogramSnapshot
from engine.store.payload_index import IndexSpec
from engine.store.store import IndexDelta, Store
from engine.strict_mode import checks as strict_checks
from engine.strict_mode import memory, rate_limits
from engine.strict_mode.fields import IndexSchemas
from engine.vectors.hnsw import VectorIndex, advance_checkpoints, has_graph, remove_checkpoint
from engine.vectors.search_coalescer import SearchCoalescer
from engine.wal.followers import REMIGRATE_HINT, Follower, FollowerRegistry
from engine.wal.log import Wal
from engine.wal.op_codec import decode_op, encode_op

log = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.json"
INCARNATION_FILE_NAME = "incarnation"
T = TypeVar("T")
REPLAY_BATCH_OPS = 1_000
READ_THREADS = 2
# Strict mode's payload size is a scan of the payloads (engine/strict_mode/checks.py); after a
# write it is computed again at most this often (Qdrant checks a cached estimate too).
PAYLOAD_BYTES_REFRESH_S = 1.0
PAYLOAD_SCAN_CHUNK = 10_000  # points read per LMDB transaction by that scan
PAYLOAD_RESCAN_FACTOR = 10  # a scan stays fresh for at least this many times its duration
FLOAT32_BYTES = 4
StrictCheck = Callable[[CollectionConfig, IndexSchemas], None]
SEARCH_BATCH_MAX = 64  # coalesced searches per read-pool job
QueryJob = tuple[query_plan.QueryRequest, dict[str, QueryReader]]
# LMDB map size for opening a store outside the server (it grows on the next real open).
STORE_MAP_BYTES_SMALL = 1 << 20


@dataclass(frozen=True)
class CollectionStats:
    points_count: int
    indexed_vectors_count: int
    segments_count: int
    status: str  # "green", or "red" once the write path is closed
    payload_indexes: tuple[IndexSpec, ...] = ()  # as of the last applied op


@dataclass(frozen=True)
class CollectionMetrics:
    """Where the write path stands, read without I/O for metrics exporters."""

    appended_op_id: int  # last op id handed out; -1 before the first
    durable_op_id: int  # last op id fsynced in the WAL
    applied_op_id: int  # last op id visible to reads
    unapplied_bytes: int  # admission budget in use (acknowledged, not yet applied)
    checkpoint_age_s: float
    index_vector_counts: dict[str, int]  # vectors in each HNSW graph, by vector name
    wal_fsync_latency_s: HistogramSnapshot
    wal_batch_record_count: HistogramSnapshot
    apply_batch_op_count: HistogramSnapshot
    apply_batch_latency_s: HistogramSnapshot


@dataclass
class Recovered:
    """What recovery (`recover`) hands the collection: LMDB caught up with the WAL."""

    store: Store
    wal: Wal  # opened, its writer not started
    lagging_indexes: dict[str, VectorIndex]  # graphs as of their checkpoints, behind LMDB
    replayed_count: int  # WAL records applied to LMDB
    read_view: ReadView  # loaded after the replay
    config: CollectionConfig  # config.json, in step with LMDB's vector names


class Collection:
    """A collection on disk, recovered and running: `await Collection.open(...)`, then
    updates and reads, then `close()`."""

    def __init__(
        self,
        directory: Path,
        name: str,
        settings: EngineSettings,
        config: CollectionConfig,
        incarnation: str,
        followers: FollowerRegistry,
        recovered: Recovered,
        read_executor: ThreadPoolExecutor,
    ) -> None:
        """Wire what `open` recovered; use `open`, which also starts the tasks."""
        self.directory = directory
        self.name = name
        self._settings = settings
        self.config = config
        # config.json is written by PATCH (the loop's executor) and after vector-name ops.
        self._config_file_lock = threading.Lock()
        self._config_lock = asyncio.Lock()  # orders PATCH and vector-name config.json writes
        # Graphs a config update is building (Applier.rebuild_graph); awaited by close().
        self._graph_builds: list[asyncio.Future[int | None]] = []
        self.incarnation = incarnation
        self.followers = followers
        self.ops_replayed_count = recovered.replayed_count
        self._store = recovered.store
        self._wal = recovered.wal
        self._read_executor = read_executor
        self._indexes: dict[str, VectorIndex] = {}  # caught-up graphs, the ones reads use
        # Readers hold it shared across graph search + LMDB reads; the applier's commit
        # holds it exclusively, so a search sees a batch entirely or not at all.
        self._visibility_lock = ReadWriteLock()
        self._unapplied_bytes = 0
        self._budget_freed = asyncio.Event()
        self._applier = Applier(
            name,
            self._wal,
            self._store,
            self._indexes,
            self._visibility_lock,
            compile_filter_with_indexes,
            apply_batch_ops_max=settings.apply_batch_ops_max,
            checkpoint_every_ops=settings.checkpoint_every_ops,
            checkpoint_every_s=settings.checkpoint_every_s,
            on_applied=self._release_budget,
            followers=self.followers,
            follower_retention_bytes_max=settings.follower_retention_bytes_max,
            lagging_indexes=recovered.lagging_indexes,
            read_view=recovered.read_view,
            on_schema_committed=self._schema_committed,
        )
        # The WAL -> applier hand-off: every fsync wakes the applier to apply what became
        # durable; a batch the WAL refused (disk full) leaves the applier's queue.
        self._wal.on_durable.append(self._applier.wake)
        self._wal.on_rewound.append(self._applier.drop_refused)
        self.read_view = recovered.read_view
        self._reader = QueryReader(
            config, self._store, self._indexes, self._visibility_lock, recovered.read_view
        )
        self._reader.acknowledged_config = lambda: self.config
        self._search_coalescer: SearchCoalescer[SearchRequest, list[ScoredPoint]]
        self._search_coalescer = SearchCoalescer(
            self._reader.search_many, read_executor, READ_THREADS, SEARCH_BATCH_MAX
        )
        # Single universal queries coalesce the same way (their plain nearest searches go to
        # hnswlib together: universal.execute_many).
        self._query_coalescer: SearchCoalescer[QueryJob, query_plan.QueryResult]
        self._query_coalescer = SearchCoalescer(
            self._execute_queries, read_executor, READ_THREADS, SEARCH_BATCH_MAX
        )
        self.rate_limits = rate_limits.RateLimits(config.strict_mode)
        # The payload scan's result: applied op id, fresh until (monotonic s), bytes.
        self._payload_bytes_cache: tuple[int, float, int] | None = None
        self.open_took_s: float | None = None  # how long open() took (telemetry's init time)

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, directory: Path, name: str, settings: EngineSettings) -> Collection:
        """Recover the collection in `directory` (in a thread: it reads and writes files),
        then start its WAL writer and applier tasks."""
        started_s = time.monotonic()
        config = read_config(directory)
        followers = FollowerRegistry(directory)
        incarnation = read_incarnation(directory)
        read_executor = ThreadPoolExecutor(
            max_workers=READ_THREADS, thread_name_prefix=f"read-{name}"
        )
        loop = asyncio.get_running_loop()
        try:
            recovered = await loop.run_in_executor(
                read_executor, recover, directory, name, config, settings
            )
        except BaseException:
            read_executor.shutdown(wait=False)
            raise
        collection = cls(
            directory,
            name,
            settings,
            recovered.config,
            incarnation,
            followers,
            recovered,
            read_executor,
        )
        collection._wal.start()
        collection._applier.start()
        collection.open_took_s = time.monotonic() - started_s
        log_event(
            log,
            logging.INFO,
            "collection opened",
            collection=name,
            ops_replayed=recovered.replayed_count,
            applied_op_id=recovered.store.applied_op_id,
            took_s=round(collection.open_took_s, 3),
        )
        return collection

    async def close(self) -> None:
        """Finish queued writes, checkpoint, close files. Safe to call once."""
        await self._wal.close()
        await self._applier.close()
        if self._graph_builds:
            await asyncio.wait(self._graph_builds)  # done: the applier's thread has stopped
        self._read_executor.shutdown(wait=True)
        self._store.close()
        log_event(log, logging.INFO, "collection closed", collection=self.name)

    # ---- layout and config -----------------------------------------------------------------

    @staticmethod
    def create_layout(directory: Path, config: CollectionConfig) -> None:
        """Lay out an empty collection in `directory` (which must not exist), durably."""
        files.make_directory_durably(directory)
        files.create_file_durably(
            directory / CONFIG_FILE_NAME, json.dumps(config.to_json_dict()).encode()
        )
        files.create_file_durably(directory / INCARNATION_FILE_NAME, new_incarnation().encode())
        Wal.create(directory / "wal")
        files.make_directory_durably(directory / "lmdb")
        files.make_directory_durably(directory / "index")

    @staticmethod
    def continue_op_ids_above(directory: Path, op_id: int) -> None:
        """Make the closed collection in `directory` hand out op ids above `op_id` only.

        For a collection being created or restored in tmp/, under a name whose earlier
        collection handed out op ids up to `op_id`: its LMDB and index checkpoints say they
        cover `op_id` (no op exists in between) and its WAL starts at op_id + 1. Its WAL must
        hold nothing past LMDB's applied op (a fresh layout, or one closed cleanly); then
        those records are applied and dropped with the old WAL. Durable on return; a crash
        midway leaves a half-done directory in tmp/, which the next open removes.
        """
        config = read_config(directory)
        store = Store(
            directory / "lmdb",
            list(config.vectors),
            STORE_MAP_BYTES_SMALL,
            tuple(config.sparse_vectors),
            config.multivector_dims(),
        )
        try:
            applied_op_id = store.applied_op_id
            if op_id <= applied_op_id:
                return
            store.skip_op_ids_through(op_id)
        finally:
            store.close()
        advance_checkpoints(directory / "index", applied_op_id, op_id)
        files.remove_tree(directory / "wal")
        Wal.create(directory / "wal", first_op_id=op_id + 1)

    @staticmethod
    def write_config(directory: Path, config: CollectionConfig) -> None:
        """Replace `directory`/config.json by `config` atomically: after a crash the old or
        the new config is there, never a mix (temp file, fsync, rename, directory fsync)."""
        data = json.dumps(config.to_json_dict()).encode()
        assert CollectionConfig.from_json_dict(json.loads(data)) == config, "config round trip"
        files.write_file_atomic(directory / CONFIG_FILE_NAME, data)

    def _write_config_locked(self, config: CollectionConfig) -> None:
        with self._config_file_lock:
            self.write_config(self.directory, config)

    async def update_config(self, config: CollectionConfig) -> None:
        """Make `config` durable, then use it. Sizes and distances must stay; the vector
        names are the collection's as vector-name ops left them, even ones appended meanwhile.

        What takes effect at once: everything reads consult (full_scan_threshold, the echo),
        and a vector whose m became 0, or whose collection's indexing was turned off
        (is_graphed), loses its graph (searched exactly from then on). A vector whose graph
        settings (m, ef_construct, collection-wide or its own) changed, or whose graph is on
        again, gets a graph built from LMDB with them, in the applier's thread
        (writes wait meanwhile, reads use the old graph or score exactly; status "yellow").
        """
        async with self._config_lock:  # one config.json writer at a time, in this order
            for name, vector in config.vectors.items():
                if name in self.config.vectors:
                    assert vector.size == self.config.vectors[name].size, (name, vector.size)
                    assert vector.distance == self.config.vectors[name].distance, (name, vector)
            config = reconcile_vector_names(config, self.config)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._read_executor, self._write_config_locked, config)
            # A vector-name op appended during the write: its names, and it writes them.
            config = reconcile_vector_names(config, self.config)
            # A PATCH naming strict mode always makes a new object (CollectionUpdate.apply):
            # Qdrant rebuilds the rate limiters (full) on every such update, even to equal
            # values.
            if config.strict_mode is not self.config.strict_mode:
                self.rate_limits = rate_limits.RateLimits(config.strict_mode)
            old_config, self.config = self.config, config
            applied = self._store.schema_config
            self._reader.config = (
                config if applied is None else reconcile_vector_names(config, applied)
            )
        dropped, rebuilt = graph_changes(old_config, config)
        for name in dropped:
            await self._applier.drop_graph(name)
        for name in rebuilt:
            index = VectorIndex(self.directory / "index", name, config.vectors[name], config.hnsw)
            index.discard_checkpoint()  # empty: built from LMDB, not from the old checkpoint
            self._graph_builds = [build for build in self._graph_builds if not build.done()]
            self._graph_builds.append(self._applier.rebuild_graph(index))
        log_event(
            log,
            logging.INFO,
            "collection config updated",
            collection=self.name,
            graphs_dropped=len(dropped),
            graphs_rebuilt=len(rebuilt),
        )

    # ---- writes ----------------------------------------------------------------------------

    async def update_vector_names(
        self, op: CreateVectorName | DeleteVectorName, *, wait: bool, timeout_s: float | None
    ) -> UpdateResult:
        """Add or remove a vector name through the WAL, as `update` logs a point op: durable
        on ACKNOWLEDGED, applied (graph, cache, reads) on COMPLETED. Later ops are validated
        against the new names at once. BadRequest (nothing written) for a name that exists
        with another kind or space."""
        [result] = await self.update_many([op], wait=wait, timeout_s=timeout_s)
        # Durable now; config.json follows (recovery would also bring it in step with LMDB).
        # Under the lock, the config as it is then: a PATCH's config.json is never undone.
        async with self._config_lock:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._read_executor, self._write_config_locked, self.config)
        return result

    async def update(self, op: Operation, *, wait: bool, timeout_s: float | None) -> UpdateResult:
        """Log `op` durably, then (wait=True) until applied and visible to reads.

        Returns ACKNOWLEDGED once the WAL record is fsynced (wait=False), COMPLETED once
        applied, or WAIT_TIMEOUT if applying outlasted timeout_s (the op still completes).
        Raises BadRequest before anything is written, Overloaded when the unapplied budget
        stays full past its deadline, StorageError when the write path is closed, and
        (wait=True, once applied) NotFound when a payload or vector edit listing ids met one
        that does not exist: the op is logged and applied as Qdrant applies it all the same.
        """
        [result] = await self.update_many([op], wait=wait, timeout_s=timeout_s)
        return result

    async def update_many(
        self, ops: list[Operation], *, wait: bool, timeout_s: float | None
    ) -> list[UpdateResult]:
        """Several ops with consecutive op ids, applied in order (Qdrant's points/batch).

        All are validated before any is logged: one bad op writes nothing. The answer is
        as `update` gives it, for every op, once the last one is durable (and applied); with
        wait, NotFound names the first missing id of the first op that met one.
        """
        assert ops, "update_many needs at least one op"
        assert len(ops) == 1 or not any(map(is_schema_op, ops)), "a vector-name op comes alone"
        started_s = time.monotonic()
        config = self.config
        validated_ops, bodies = self._validated_bodies(ops)
        await self._admit(sum(len(body) for body in bodies))
        self._raise_if_closed()
        if self.config is not config:
            # A vector-name op was appended while this waited for room: check against the
            # names the op will be applied with (nothing awaits from here to the append).
            validated_ops, bodies = self._validated_bodies(ops)
        op_ids, durables, outcomes = [], [], []
        for op, body in zip(validated_ops, bodies):  # no await in here: ids stay consecutive
            if is_schema_op(op):
                self.config = config_after(self.config, op)
            op_id, durable = self._wal.append(body)
            self._applier.submit(op_id, op, len(body))
            if wait:
                outcomes.append(self._applier.want_outcome(op_id))
            self._unapplied_bytes += len(body)
            op_ids.append(op_id)
            durables.append(durable)
        try:
            status = await self._completion(op_ids, durables, wait, timeout_s, started_s)
        finally:
            for op_id, outcome in zip(op_ids, outcomes):
                self._applier.forget_outcome(op_id, outcome)
        missing = [o.missing_point_id for o in outcomes if o.missing_point_id is not None]
        if status is UpdateStatus.COMPLETED and missing:
            # Qdrant's answer to an id-listed edit that met a missing id: the op is logged
            # and applied (as far as engine/store/mutations.py says), and still answers 404.
            raise NotFound(f"No point with id {missing[0]} found")
        return [UpdateResult(op_id, status) for op_id in op_ids]

    async def _completion(
        self,
        op_ids: list[int],
        durables: list[asyncio.Future[int]],
        wait: bool,
        timeout_s: float | None,
        started_s: float,
    ) -> UpdateStatus:
        """The status of logged ops: ACKNOWLEDGED once durable, or (wait) COMPLETED once
        applied, WAIT_TIMEOUT if applying outlasted timeout_s."""
        # Never answer before the fsync, even when timeout_s would run out first.
        await asyncio.wait(durables)
        for durable in durables:
            durable.result()
        if not wait:
            return UpdateStatus.ACKNOWLEDGED
        elapsed_s = time.monotonic() - started_s
        remaining_s = None if timeout_s is None else max(0.0, timeout_s - elapsed_s)
        is_applied = await self._applier.wait_applied(op_ids[-1], remaining_s)
        return UpdateStatus.COMPLETED if is_applied else UpdateStatus.WAIT_TIMEOUT

    # ---- reads -----------------------------------------------------------------------------

    async def retrieve(
        self, ids: list[PointId], with_payload: PayloadSelector, with_vector: VectorSelector
    ) -> list[PointRecord]:
        """Points with these ids that exist, in request order, without duplicates."""
        return await self._read(self._reader.retrieve, ids, with_payload, with_vector)

    async def search(self, request: SearchRequest) -> list[ScoredPoint]:
        """Nearest points to request.vector (among those matching request.filter)."""
        vector_config = self.config.vectors.get(request.vector_name)
        if vector_config is None:
            raise missing_vector_name(request.vector_name)
        if request.vector.shape != (vector_config.size,):
            raise BadRequest(
                f"Vector dimension error: expected dim: {vector_config.size}, "
                f"got {request.vector.shape[0]}"
            )
        if request.vector_name not in self._store.vector_names:
            # Added by a vector-name op not applied yet: no point has a value of it (a write
            # giving one comes after the op), so nothing is near.
            return []
        return await self._search_coalescer.search(request)

    async def scroll(
        self,
        filter_: Filter | None,
        limit: int,
        offset: PointId | None,
        with_payload: PayloadSelector,
        with_vector: VectorSelector,
    ) -> tuple[list[PointRecord], PointId | None]:
        """A page of points in id order from `offset`, and where the next page starts."""
        return await self._read(
            self._reader.scroll, filter_, limit, offset, with_payload, with_vector
        )

    async def count(self, filter_: Filter | None) -> int:
        """Exact number of points matching filter_ (all points when None)."""
        return await self._read(self._reader.count, filter_)

    async def query(
        self, request: query_plan.QueryRequest, lookups: dict[str, Collection]
    ) -> query_plan.QueryResult:
        """Qdrant's universal query (engine/query/universal.py); `lookups` are the collections its
        `lookup_from`s name, opened by the caller."""
        readers = {name: other._reader for name, other in lookups.items()}
        return await self._read(query.execute, self._reader, request, readers, self.name)

    async def resolve_named_points(
        self, request: query_plan.QueryRequest, lookups: dict[str, Collection]
    ) -> None:
        """Raise Qdrant's error for a point or vector name the request names by id and that
        is missing (engine/query/universal.py `resolve_named_points`); nothing else."""
        readers = {name: other._reader for name, other in lookups.items()}
        await self._read(query.resolve_named_points, self._reader, request, readers)

    async def query_many(
        self, requests: list[tuple[query_plan.QueryRequest, dict[str, Collection]]]
    ) -> list[query_plan.QueryResult]:
        """Several queries (a batch request) in one read-pool job: one thread hop for the
        whole batch, not one per query. Raises at the first query that fails."""
        jobs = [
            (request, {name: other._reader for name, other in lookups.items()})
            for request, lookups in requests
        ]
        if len(jobs) == 1:
            return [await self._query_coalescer.search(jobs[0])]
        return await self._read(query.execute_many, self._reader, jobs, self.name)

    def _execute_queries(self, jobs: list[QueryJob]) -> list[query_plan.QueryResult | Exception]:
        """Concurrent single queries, coalesced: together when all succeed, else each on
        its own, so that one request's error is its own answer only."""
        try:
            return list(query.execute_many(self._reader, jobs, self.name))
        except Exception:  # noqa: BLE001 - each query is run again alone, below
            results: list[query_plan.QueryResult | Exception] = []
            for request, readers in jobs:
                try:
                    results.append(query.execute(self._reader, request, readers, self.name))
                except Exception as error:  # noqa: BLE001 - handed to that request's caller
                    results.append(error)
            return results

    async def distance_matrix(
        self, filter_: Filter | None, sample_count: int, limit: int, using: str
    ) -> DistanceMatrix:
        """Qdrant's search matrix (engine/query/distance_matrix.py)."""
        return await self._read(distance_matrix, self._reader, filter_, sample_count, limit, using)

    async def facet(
        self, key: PayloadPath, filter_: Filter | None, limit: int
    ) -> list[tuple[object, int]]:
        """The most frequent values at `key` among points matching filter_, with counts."""
        return await self._read(self._reader.facet, key, filter_, limit)

    async def _read(self, function: Callable[..., T], *args: object) -> T:
        """Run a Reader method in the read pool: LMDB and hnswlib calls block."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, function, *args)

    async def copy_lmdb(self, directory: Path) -> int:
        """Compact copy of the LMDB store into `directory` (must exist) as of one op id, which
        it returns; writes and reads go on meanwhile. Runs in the read pool, so close() waits
        for a copy in progress before it closes the store."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, self._store.copy_snapshot, directory)

    async def copy_lmdb_with_config(self, directory: Path) -> tuple[int, CollectionConfig]:
        """`copy_lmdb`, and the config to keep with the copy: this one, with the vector
        names the copy has (a vector-name op appended but not applied by then is not in it,
        and a restore must not open the copy with its names)."""
        loop = asyncio.get_running_loop()
        copy = self._store.copy_snapshot_with_names
        op_id, names = await loop.run_in_executor(self._read_executor, copy, directory)
        config = self.config
        return op_id, config if names is None else reconcile_vector_names(config, names)

    async def register_follower(
        self, name: str, next_op_id: int | None, incarnation: str | None = None
    ) -> Follower:
        """Register (or ack) WAL follower `name` at next_op_id; None: from the next op not
        yet applied, which no truncation can have removed (it only removes applied ops).
        Durable on return. Raises Conflict for a lost follower, a truncated op id, or an
        `incarnation` that is not this collection's (it was restored or re-created since
        the follower copied it)."""
        self.check_incarnation(incarnation)
        wal = self._wal
        if next_op_id is None:
            next_op_id = self._applier.applied_op_id + 1
        if next_op_id > wal.durable_op_id + 1:
            raise BadRequest(
                f"next_op_id {next_op_id} is past the last durable op {wal.durable_op_id}"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_executor, self.followers.register, name, next_op_id, wal.first_op_id
        )

    async def read_wal(
        self, from_op_id: int, count_max: int, bytes_max: int
    ) -> list[tuple[int, Operation]]:
        """Durable operations from from_op_id on (for followers); Conflict if truncated."""
        loop = asyncio.get_running_loop()
        records = await loop.run_in_executor(
            self._read_executor, self._wal.read_durable, from_op_id, count_max, bytes_max
        )
        return [(op_id, decode_op(body, FILTER_TYPES)) for op_id, body in records]

    def check_incarnation(self, incarnation: str | None) -> None:
        """Conflict unless `incarnation` (None: not asked) is this collection's."""
        if incarnation is not None and incarnation != self.incarnation:
            raise Conflict(
                f"collection {self.name} is not the one this follower copied: it was restored "
                f"from a snapshot, or deleted and created again, since (incarnation "
                f"{incarnation}, now {self.incarnation}); {REMIGRATE_HINT}"
            )

    @property
    def appended_op_id(self) -> int:
        """The last op id this collection handed out (-1: none); final once closed."""
        return self._wal.appended_op_id

    def wal_bounds(self) -> tuple[int, int]:
        """(first op id the WAL holds, last durable op id)."""
        return self._wal.first_op_id, self._wal.durable_op_id

    def stats(self) -> CollectionStats:
        return CollectionStats(
            points_count=self._store.count_points(),
            indexed_vectors_count=sum(index.live_count for index in self._indexes.values()),
            segments_count=1,
            status="red"
            if self.is_write_path_failed
            else "yellow"
            if self.is_indexing
            else "green",
            payload_indexes=tuple(self._store.index_specs.values()),
        )

    async def wait_indexed(self) -> None:
        """Until every graph has caught up with LMDB after the open, and every graph a config
        update started is built (reads use them then)."""
        await self._applier.wait_caught_up()
        if self._graph_builds:
            await asyncio.wait(self._graph_builds)  # never cancels a build
        if self._applier.failure is not None:
            raise self._applier.failure

    @property
    def is_write_path_failed(self) -> bool:
        """Whether the WAL or the applier stopped on an error (reads still work)."""
        return self._wal.is_failed or self._applier.failure is not None

    @property
    def write_path_error(self) -> str | None:
        """What every write answers since the write path closed; None while it is open."""
        try:
            self._raise_if_closed()
        except StorageError as closed:
            return str(closed)
        return None

    @property
    def settings(self) -> EngineSettings:
        """The engine settings this collection runs with (read-only)."""
        return self._settings

    @property
    def is_indexing(self) -> bool:
        """Whether a graph is still catching up after the open, or one a config update
        started is not built yet (reads of it score exactly, or use the old graph)."""
        return bool(self._applier.lagging_indexes) or any(
            not build.done() for build in self._graph_builds
        )

    @property
    def applied_op_id(self) -> int:
        return self._applier.applied_op_id

    def vector_counts(self) -> dict[str, int]:
        """Dense vectors stored in LMDB, by vector name (an LMDB stat each, no scan)."""
        stored = self._store.vector_names  # a vector-name op not applied yet: counts 0
        return {
            name: self._store.count_vectors(name) if name in stored else 0
            for name in self.config.vectors
        }

    def metrics(self) -> CollectionMetrics:
        """Op ids, budget and histograms of the write path; cheap (no disk access)."""
        return CollectionMetrics(
            appended_op_id=self._wal.appended_op_id,
            durable_op_id=self._wal.durable_op_id,
            applied_op_id=self._applier.applied_op_id,
            unapplied_bytes=self._unapplied_bytes,
            checkpoint_age_s=self._applier.checkpoint_age_s,
            index_vector_counts={name: index.live_count for name, index in self._indexes.items()},
            wal_fsync_latency_s=self._wal.fsync_latency_s.snapshot(),
            wal_batch_record_count=self._wal.batch_record_count.snapshot(),
            apply_batch_op_count=self._applier.batch_op_count.snapshot(),
            apply_batch_latency_s=self._applier.batch_latency_s.snapshot(),
        )

    async def payload_bytes(self) -> int:
        """The JSON size of every stored payload, as strict mode counts it (read pool: a
        scan, cached as `_payload_bytes` says); for telemetry's size estimate."""
        return await self._read(self._payload_bytes)

    # ---- strict mode (engine/strict_mode/) --------------------------------------------------

    def stored_similarity_cost(self, point_id: PointId, name: str) -> int:
        """Strict mode's read cost of a query example given by id (Reader's, on the loop:
        one point's vector, read only when the read rate limit is set)."""
        return self._reader.stored_similarity_cost(point_id, name)

    def check_read(
        self,
        check: StrictCheck | None,
        timeout_s: float | None,
        costs: Callable[[], list[int]],
    ) -> None:
        """Strict mode's checks of a read (`check`, then the timeout), then its read rate
        costs (`costs()`, computed only when there is a read limit); raises StrictModeError or
        RateLimited before the read runs. Without strict mode this costs nothing."""
        strict = self.config.strict_mode
        if not strict_checks.is_enabled(strict):
            return
        if check is not None:
            check(self.config, self.index_schemas())
        strict_checks.check_timeout(timeout_s, strict)
        if self.rate_limits.read is not None:
            self.rate_limits.consume_reads(costs())

    async def check_writes(self, ops: list[Operation], timeout_s: float | None) -> None:
        """Strict mode's checks of a write request's ops (all before any is logged), its
        timeout, then the write rate limit; raises StrictModeError or RateLimited."""
        strict = self.config.strict_mode
        if not strict_checks.is_enabled(strict):
            return
        assert strict is not None
        indexes = self.index_schemas()
        sizes = await self._read(self._sizes) if strict_checks.needs_sizes(strict) else None
        for op in ops:
            if isinstance(op, CreateFieldIndex):
                strict_checks.check_payload_index_count(len(indexes), strict)
            strict_checks.check_write(op, strict, indexes, sizes)
        is_adding = any(strict_checks.consumes_memory(op) for op in ops)
        if strict.max_resident_memory_percent is not None and is_adding:
            used_percent = memory.resident_memory_percent()
            strict_checks.check_resident_memory(used_percent, strict)
        strict_checks.check_timeout(timeout_s, strict)
        if self.rate_limits.write is not None:
            self.rate_limits.consume_writes(await self._read(self._write_costs, ops))

    def index_schemas(self) -> IndexSchemas:
        """The payload indexes as strict mode's checks see them, by field path."""
        return {
            PayloadPath.parse(spec.field_name): (spec.schema_type, spec.params)
            for spec in self._store.index_specs.values()
        }

    def _sizes(self) -> strict_checks.CollectionSizes:
        """The sizes strict mode bounds (read pool: LMDB stats, and a scan for payloads)."""
        strict = self.config.strict_mode
        assert strict is not None
        vector_bytes = sum(
            # A matrix has any number of rows: its pages' size, as Qdrant counts storage.
            self._store.vector_pages_bytes(name)
            if vector.is_multivector
            else self._store.count_vectors(name) * vector.size * FLOAT32_BYTES
            for name, vector in self.config.vectors.items()
            if name in self._store.vector_names  # a name added, not applied yet: empty
        )
        is_payload_bounded = strict.max_collection_payload_size_bytes is not None
        payload_bytes = self._payload_bytes() if is_payload_bounded else 0
        return strict_checks.CollectionSizes(
            self._store.count_points(), vector_bytes, payload_bytes
        )

    def _payload_bytes(self) -> int:
        """The JSON size of every stored payload (read pool). Scanned again only when writes
        were applied since the last scan and it is older than PAYLOAD_BYTES_REFRESH_S, or ten
        times the last scan's duration: a big collection is not rescanned back to back."""
        applied_op_id, now_s = self._applier.applied_op_id, time.monotonic()
        cached = self._payload_bytes_cache
        if cached is not None:
            cached_op_id, fresh_until_s, cached_bytes = cached
            if cached_op_id == applied_op_id or now_s < fresh_until_s:
                return cached_bytes
        total_bytes = 0
        start_key: bytes | None = None
        while True:  # in chunks, each its own read transaction: writers are not held up
            points = self._store.iter_points(start_key)
            try:
                chunk = list(itertools.islice(points, PAYLOAD_SCAN_CHUNK))
            finally:
                points.close()  # ends the chunk's read transaction now
            total_bytes += sum(_json_bytes(point.payload) for point in chunk if point.payload)
            if len(chunk) < PAYLOAD_SCAN_CHUNK:
                break
            start_key = chunk[-1].key + b"\x00"  # the next key after the last one read
        took_s = time.monotonic() - now_s
        fresh_until_s = now_s + max(PAYLOAD_BYTES_REFRESH_S, PAYLOAD_RESCAN_FACTOR * took_s)
        self._payload_bytes_cache = (applied_op_id, fresh_until_s, total_bytes)
        return total_bytes

    def _write_costs(self, ops: list[Operation]) -> list[int]:
        """Each op's write rate cost: the points it names, or its filter's expected count
        (read pool: counts through the payload indexes)."""
        total = self._store.count_points()
        indexes = self.index_schemas()
        return [rate_limits.write_cost(op, total, self._reader.count, indexes) for op in ops]

    # ---- private: writes -------------------------------------------------------------------

    def _validated(self, op: Operation) -> Operation:
        return validation.validated(op, self.config, self._store.index_specs)

    def _validated_bodies(self, ops: list[Operation]) -> tuple[list[Operation], list[bytes]]:
        validated_ops = [self._validated(op) for op in ops]
        bodies = []
        for op in validated_ops:
            body = encode_op(op)
            if len(body) > limits.RECORD_BYTES_MAX:
                raise BadRequest(f"operation is too large: {len(body)} bytes encoded")
            bodies.append(body)
        return validated_ops, bodies

    def _schema_committed(self, delta: IndexDelta) -> None:
        """A vector-name op was committed to LMDB (applier thread, visibility lock held
        exclusively): make or drop its graph and read-view cache, and let reads see the
        applied names."""
        op, applied = delta.schema_op, delta.schema_config
        assert op is not None and applied is not None, delta
        config = reconcile_vector_names(self.config, applied)
        index_directory = self.directory / "index"
        if isinstance(op, DeleteVectorName):
            self._indexes.pop(op.name, None)
            self._applier.lagging_indexes.pop(op.name, None)
            self.read_view.vectors.pop(op.name, None)
            remove_checkpoint(index_directory, op.name)  # a later graph of the name is new
        elif op.name in applied.vectors and op.name not in self.read_view.vectors:
            vector = config.vectors[op.name]
            if is_graphed(config, op.name) and op.name not in self._indexes:
                remove_checkpoint(index_directory, op.name)  # one a crash left of an old graph
                index = VectorIndex(index_directory, op.name, vector, config.hnsw)
                index.load_checkpoint()
                self._indexes[op.name] = index
            if not vector.is_multivector:
                self.read_view.vectors[op.name] = VectorCache(vector.size, 0)
        self._reader.config = config

    async def _admit(self, size_bytes: int) -> None:
        """Wait until the unapplied budget has room; Overloaded past the deadline."""
        budget_bytes = self._settings.unapplied_bytes_max
        if self._has_room(size_bytes, budget_bytes):
            return
        log_event(
            log,
            logging.WARNING,
            "backpressure",
            collection=self.name,
            unapplied_bytes=self._unapplied_bytes,
        )
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self._settings.backpressure_deadline_s
        while not self._has_room(size_bytes, budget_bytes):
            self._budget_freed.clear()
            remaining_s = deadline_s - loop.time()
            try:
                # Cancelling this wait on timeout is fine: nothing was appended yet.
                await asyncio.wait_for(self._budget_freed.wait(), timeout=max(remaining_s, 0))
            except TimeoutError:
                raise Overloaded(
                    f"write budget of collection {self.name} is exhausted", retry_after_s=1.0
                ) from None

    def _has_room(self, size_bytes: int, budget_bytes: int) -> bool:
        if self._unapplied_bytes == 0:
            return True  # one op alone always fits, however large (up to RECORD_BYTES_MAX)
        return (
            self._unapplied_bytes + size_bytes <= budget_bytes
            and self._wal.pending_count < limits.APPEND_QUEUE_MAX
        )

    def _release_budget(self, size_bytes: int) -> None:
        self._unapplied_bytes -= size_bytes
        assert self._unapplied_bytes >= 0, self._unapplied_bytes
        self._budget_freed.set()

    def _raise_if_closed(self) -> None:
        if self._applier.failure is not None:
            raise self._applier.failure
        if self._wal.is_failed:
            raise StorageError(f"write path of collection {self.name} is closed")


def _json_bytes(payload: dict[str, object]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def graph_changes(old: CollectionConfig, new: CollectionConfig) -> tuple[list[str], list[str]]:
    """(names whose graph goes, names that need a graph built) when `old` becomes `new`:
    is_graphed turned off, or turned on or built with other m / ef_construct."""
    dropped, rebuilt = [], []
    for name in new.vectors:
        if name not in old.vectors:
            continue  # a vector-name op's: its graph is made when it is applied
        was, now = is_graphed(old, name), is_graphed(new, name)
        if was and not now:
            dropped.append(name)
        elif now and (not was or _graph_params(old, name) != _graph_params(new, name)):
            rebuilt.append(name)
    return dropped, rebuilt


def is_graphed(config: CollectionConfig, name: str) -> bool:
    """Whether vector `name` has an HNSW graph: has_graph's rule, unless the collection's
    indexing is off. Qdrant's `optimizers_config.indexing_threshold` = 0 disables indexing
    (get_indexing_threshold_kb: 0 -> no segment is ever large enough), so its vectors are
    searched exactly and none counts as indexed. Any other threshold is a segment size below
    which Qdrant does not index; Keel's one segment is indexed whatever its size. The value
    is kept in config.json as the echo's, as Qdrant shows it, not on its own."""
    is_indexing_off = config.echo.get("optimizers_config", {}).get("indexing_threshold") == 0
    return has_graph(config.vectors[name], config.hnsw) and not is_indexing_off


def _graph_params(config: CollectionConfig, name: str) -> tuple[int, int]:
    """(m, ef_construct) a graph of vector `name` is built with (VectorIndex's rule)."""
    vector = config.vectors[name]
    m = config.hnsw.m if vector.hnsw_m is None else vector.hnsw_m
    return m, vector.hnsw_ef_construct or config.hnsw.ef_construct


def read_config(directory: Path) -> CollectionConfig:
    """The config.json of the collection in `directory`."""
    return CollectionConfig.from_json_dict(json.loads((directory / CONFIG_FILE_NAME).read_bytes()))


def recover(
    directory: Path, name: str, config: CollectionConfig, settings: EngineSettings
) -> Recovered:
    """Open LMDB and the WAL (torn tail cut, corruption refused), load the checkpoints, and
    replay the WAL into LMDB from its applied op. Blocks: run it in a thread."""
    # index/ holds only checkpoints, which recovery can rebuild; an empty directory is
    # what copy tools (git, some archivers) drop, so a missing one is made, not refused.
    if not (directory / "index").is_dir():
        files.make_directory_durably(directory / "index")
    store = Store(
        directory / "lmdb",
        list(config.vectors),
        settings.lmdb_map_bytes_initial,
        tuple(config.sparse_vectors),
        config.multivector_dims(),
    )
    if store.schema_config is None:
        store.schema_config = config  # no vector-name op applied yet: config.json's names hold
        store.base_config = config
    wal = Wal(directory / "wal", name, settings.segment_bytes_target, settings.fsync_slow_s)
    wal.open()
    applied_op_id = store.applied_op_id
    if wal.durable_op_id < applied_op_id:
        raise CorruptionError(
            f"WAL of collection {name} ends at op {wal.durable_op_id} but LMDB "
            f"has applied op {applied_op_id}: WAL segments are missing in {wal.directory}"
        )
    if wal.first_op_id > applied_op_id + 1:
        raise CorruptionError(
            f"WAL of collection {name} starts at op {wal.first_op_id} but LMDB "
            f"has applied only up to op {applied_op_id}: segments missing in "
            f"{wal.directory}"
        )
    applied_before_replay = store.applied_op_id
    replayed_count = replay_wal(name, wal, store)
    reconciled = reconcile_vector_names(config, store.schema_config)
    if reconciled != config:
        # A crash came between a vector-name op's LMDB commit and config.json.
        Collection.write_config(directory, reconciled)
        log_event(log, logging.INFO, "config vector names restored from lmdb", collection=name)
    lagging_indexes = open_indexes(
        directory, name, reconciled, applied_before_replay, store.created_op_ids
    )
    read_view = ReadView.load(store, reconciled)
    return Recovered(store, wal, lagging_indexes, replayed_count, read_view, reconciled)


def open_indexes(
    directory: Path,
    name: str,
    config: CollectionConfig,
    applied_op_id: int,
    created_op_ids: dict[str, int] | None = None,
) -> dict[str, VectorIndex]:
    """The graphs as of their checkpoints (a checkpoint ahead of LMDB, or older than the op
    that created its vector name, is discarded), by vector name; a vector without a graph
    loses its stale checkpoint."""
    created_op_ids = created_op_ids or {}
    indexes: dict[str, VectorIndex] = {}
    for vector_name, vector_config in config.vectors.items():
        if not is_graphed(config, vector_name):
            if remove_checkpoint(directory / "index", vector_name):
                log_event(
                    log,
                    logging.INFO,
                    "stale index checkpoint removed",
                    collection=name,
                    vector=vector_name,
                )
            continue
        index = VectorIndex(directory / "index", vector_name, vector_config, config.hnsw)
        index.load_checkpoint()
        if index.checkpoint_op_id < created_op_ids.get(vector_name, -1):
            # A graph of an earlier vector of this name (deleted, then made again).
            log_event(
                log,
                logging.INFO,
                "index checkpoint older than its vector name, rebuilding",
                collection=name,
                vector=vector_name,
            )
            index.discard_checkpoint()
        elif index.checkpoint_op_id > applied_op_id:
            # LMDB lost its last transactions to a power loss; the graph is ahead of it.
            log_event(
                log,
                logging.WARNING,
                "index checkpoint ahead of lmdb, rebuilding",
                collection=name,
                vector=vector_name,
            )
            index.discard_checkpoint()
        indexes[vector_name] = index
    return indexes


def replay_wal(name: str, wal: Wal, store: Store) -> int:
    """Apply the WAL's records past LMDB's applied op to LMDB; returns how many."""
    batch: list[tuple[int, Operation]] = []
    replayed_count = 0
    last_log_s = time.monotonic()
    for op_id, body in wal.read_records(store.applied_op_id):
        op = decode_op(body, FILTER_TYPES)
        if batch and (is_schema_op(op) or is_schema_op(batch[-1][1])):
            replayed_count += _replay_batch(store, batch)  # a vector-name op goes alone
            batch = []
        batch.append((op_id, op))
        if len(batch) >= REPLAY_BATCH_OPS:
            replayed_count += _replay_batch(store, batch)
            batch = []
            if time.monotonic() - last_log_s > limits.REPLAY_PROGRESS_EVERY_S:
                log_event(
                    log,
                    logging.INFO,
                    "replay progress",
                    collection=name,
                    op_id=op_id,
                    last_op_id=wal.durable_op_id,
                )
                last_log_s = time.monotonic()
    if batch:
        replayed_count += _replay_batch(store, batch)
    assert store.applied_op_id == wal.durable_op_id, (store.applied_op_id, wal.durable_op_id)
    return replayed_count


def _replay_batch(store: Store, batch: list[tuple[int, Operation]]) -> int:
    # LMDB only: the graphs catch up from LMDB afterwards (Applier._catch_up), each
    # vector added once however often the WAL overwrote its point. No reader exists yet,
    # so the visibility lock is one of its own.
    apply_batch(store, {}, ReadWriteLock(), compile_filter_with_indexes, batch)
    return len(batch)


def new_incarnation() -> str:
    return uuid.uuid4().hex


def read_incarnation(directory: Path) -> str:
    """The collection's incarnation id. A collection laid out before Keel had them (or a
    restore being staged) gets one now; atomically, so a crash never leaves an empty file."""
    path = directory / INCARNATION_FILE_NAME
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = new_incarnation()
        files.write_file_atomic(path, text.encode())
    if not text or len(text) > 64 or not text.isalnum():
        raise CorruptionError(f"incarnation file {path} is unreadable: {text[:80]!r}")
    return text
