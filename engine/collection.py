"""One collection: owns its WAL, LMDB store, vector indexes and applier.

Owns: the collection's directory layout, recovery (WAL validation, index catch-up, replay),
validation of operations against the config, admission with a byte budget (backpressure),
the wait/timeout contract, and reads (retrieve, search with exact rescoring).
Not here: how bytes are framed (wal.py) or stored (store.py); HTTP (server/).

Directory:
| path          | what                                              |
|---------------|---------------------------------------------------|
| config.json   | CollectionConfig (written once, at creation)       |
| wal/          | segments (wal.py)                                 |
| broken/       | bytes cut from a torn WAL tail, kept for forensics |
| lmdb/         | LMDB environment (store.py)                       |
| index/        | HNSW checkpoints (index.py)                       |
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import files, limits
from engine.applier import Applier, apply_batch
from engine.errors import BadRequest, CorruptionError, Overloaded, StorageError
from engine.index import VectorIndex, has_graph
from engine.limits import EngineSettings
from engine.locks import ReadWriteLock
from engine.ops import (
    CollectionConfig,
    DeletePoints,
    Distance,
    NamedVectors,
    Operation,
    PayloadSelector,
    PointId,
    PointRecord,
    ScoredPoint,
    SearchRequest,
    UpdateResult,
    UpdateStatus,
    UpsertPoints,
    VectorSelector,
    decode_op,
    encode_op,
    point_id_from_key,
    point_key,
)
from engine.store import Store, StoredPoint
from engine.wal import Wal

log = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.json"
EXACT_CHUNK_COUNT = 16_384  # vectors scored per numpy call in an exact search
REPLAY_BATCH_OPS = 1_000


@dataclass(frozen=True)
class CollectionStats:
    points_count: int
    indexed_vectors_count: int
    segments_count: int
    status: str  # "green", or "red" once the write path is closed


class Collection:
    """A collection on disk. `open()` recovers; then updates, reads, and `close()`."""

    def __init__(self, directory: Path, name: str, settings: EngineSettings) -> None:
        self.directory = directory
        self.name = name
        self._settings = settings
        self.config = CollectionConfig.from_json_dict(
            json.loads((directory / CONFIG_FILE_NAME).read_bytes())
        )
        self._store: Store | None = None
        self._wal: Wal | None = None
        self._indexes: dict[str, VectorIndex] = {}
        self._applier: Applier | None = None
        # Readers hold it shared across graph search + LMDB reads; the applier's commit
        # holds it exclusively, so a search sees a batch entirely or not at all.
        self._visibility_lock = ReadWriteLock()
        self._unapplied_bytes = 0
        self._budget_freed = asyncio.Event()
        self._read_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"read-{name}")

    @staticmethod
    def create_layout(directory: Path, config: CollectionConfig) -> None:
        """Lay out an empty collection in `directory` (which must not exist), durably."""
        files.make_directory_durably(directory)
        files.create_file_durably(
            directory / CONFIG_FILE_NAME, json.dumps(config.to_json_dict()).encode()
        )
        Wal.create(directory / "wal")
        files.make_directory_durably(directory / "lmdb")
        files.make_directory_durably(directory / "index")

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Recover (in a thread: it reads and writes files), then start the tasks."""
        loop = asyncio.get_running_loop()
        started_s = time.monotonic()
        replayed_count = await loop.run_in_executor(self._read_executor, self._recover)
        assert self._wal is not None and self._store is not None
        self._applier = Applier(
            self.name,
            self._wal,
            self._store,
            self._indexes,
            self._visibility_lock,
            apply_batch_ops_max=self._settings.apply_batch_ops_max,
            checkpoint_every_ops=self._settings.checkpoint_every_ops,
            checkpoint_every_s=self._settings.checkpoint_every_s,
            on_applied=self._release_budget,
        )
        self._wal.start()
        self._applier.start()
        log.info(
            "collection opened collection=%s ops_replayed=%d applied_op_id=%d took_s=%.3f",
            self.name,
            replayed_count,
            self._store.applied_op_id,
            time.monotonic() - started_s,
        )

    async def close(self) -> None:
        """Finish queued writes, checkpoint, close files. Safe to call once."""
        if self._wal is not None:
            await self._wal.close()
        if self._applier is not None:
            await self._applier.close()
        self._read_executor.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
        log.info("collection closed collection=%s", self.name)

    # ---- writes ----------------------------------------------------------------------------

    async def update(self, op: Operation, *, wait: bool, timeout_s: float | None) -> UpdateResult:
        """Log `op` durably, then (wait=True) until applied and visible to reads.

        Returns ACKNOWLEDGED once the WAL record is fsynced (wait=False), COMPLETED once
        applied, or WAIT_TIMEOUT if applying outlasted timeout_s (the op still completes).
        Raises BadRequest before anything is written, Overloaded when the unapplied budget
        stays full past its deadline, StorageError when the write path is closed.
        """
        assert self._wal is not None and self._applier is not None, "collection not open"
        started_s = time.monotonic()
        op = self._validated(op)
        body = encode_op(op)
        if len(body) > limits.RECORD_BYTES_MAX:
            raise BadRequest(f"operation is too large: {len(body)} bytes encoded")
        await self._admit(len(body))
        self._raise_if_closed()
        op_id, durable = self._wal.append(body)
        self._applier.submit(op_id, op, len(body))
        self._unapplied_bytes += len(body)
        # Never answer before the fsync, even when timeout_s would run out first.
        await asyncio.wait({durable})
        durable.result()
        if not wait:
            return UpdateResult(op_id, UpdateStatus.ACKNOWLEDGED)
        remaining_s = (
            None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started_s))
        )
        if await self._applier.wait_applied(op_id, remaining_s):
            return UpdateResult(op_id, UpdateStatus.COMPLETED)
        return UpdateResult(op_id, UpdateStatus.WAIT_TIMEOUT)

    # ---- reads -----------------------------------------------------------------------------

    async def retrieve(
        self, ids: list[PointId], with_payload: PayloadSelector, with_vector: VectorSelector
    ) -> list[PointRecord]:
        """Points with these ids that exist, in request order, without duplicates."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_executor, self._retrieve, ids, with_payload, with_vector
        )

    async def search(self, request: SearchRequest) -> list[ScoredPoint]:
        """Nearest points to request.vector, scored as Qdrant scores them."""
        vector_config = self.config.vectors.get(request.vector_name)
        if vector_config is None:
            raise BadRequest(f"Not existing vector name error: {request.vector_name}")
        if request.vector.shape != (vector_config.size,):
            raise BadRequest(
                f"Vector dimension error: expected dim: {vector_config.size}, "
                f"got {request.vector.shape[0]}"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, self._search, request)

    def stats(self) -> CollectionStats:
        assert self._store is not None
        is_failed = (
            self._wal is not None
            and self._wal.is_failed
            or (self._applier is not None and self._applier.failure is not None)
        )
        return CollectionStats(
            points_count=self._store.count_points(),
            indexed_vectors_count=sum(index.live_count for index in self._indexes.values()),
            segments_count=1,
            status="red" if is_failed else "green",
        )

    @property
    def applied_op_id(self) -> int:
        assert self._applier is not None
        return self._applier.applied_op_id

    # ---- private: recovery -----------------------------------------------------------------

    def _recover(self) -> int:
        self._store = Store(
            self.directory / "lmdb",
            list(self.config.vectors),
            self._settings.lmdb_map_bytes_initial,
        )
        self._wal = Wal(
            self.directory / "wal",
            self.name,
            self._settings.segment_bytes_target,
            self._settings.fsync_slow_s,
        )
        self._wal.open()
        applied_op_id = self._store.applied_op_id
        if self._wal.durable_op_id < applied_op_id:
            raise CorruptionError(
                f"WAL of collection {self.name} ends at op {self._wal.durable_op_id} but LMDB "
                f"has applied op {applied_op_id}: WAL segments are missing in {self._wal.directory}"
            )
        if self._wal.first_op_id > applied_op_id + 1:
            raise CorruptionError(
                f"WAL of collection {self.name} starts at op {self._wal.first_op_id} but LMDB "
                f"has applied only up to op {applied_op_id}: segments missing in "
                f"{self._wal.directory}"
            )
        self._open_indexes()
        return self._replay_wal()

    def _open_indexes(self) -> None:
        assert self._store is not None
        for name, vector_config in self.config.vectors.items():
            if not has_graph(vector_config, self.config.hnsw):
                continue
            index = VectorIndex(self.directory / "index", name, vector_config, self.config.hnsw)
            index.load_checkpoint()
            if index.checkpoint_op_id > self._store.applied_op_id:
                # LMDB lost its last transactions to a power loss; the graph is ahead of it.
                log.warning(
                    "index checkpoint ahead of lmdb, rebuilding collection=%s vector=%r",
                    self.name,
                    name,
                )
                index.discard_checkpoint()
            self._catch_up_index(name, index)
            self._indexes[name] = index

    def _catch_up_index(self, name: str, index: VectorIndex) -> None:
        """Bring a graph loaded as of its checkpoint up to LMDB's applied state."""
        assert self._store is not None
        for label, death_op_id, names in self._store.dead_labels():
            is_in_graph = label < index.checkpoint_next_label and name in names
            if is_in_graph and death_op_id > index.checkpoint_op_id:
                index.remove([label])
        added_count = 0
        dim = self.config.vectors[name].size
        for labels, matrix in self._store.iter_vectors(
            name, dim, 65_536, index.checkpoint_next_label
        ):
            index.add(labels, matrix)
            added_count += len(labels)
        log.info(
            "index caught up collection=%s vector=%r from_op_id=%d vectors_added=%d",
            self.name,
            name,
            index.checkpoint_op_id,
            added_count,
        )

    def _replay_wal(self) -> int:
        assert self._wal is not None and self._store is not None
        batch: list[tuple[int, Operation]] = []
        replayed_count = 0
        last_log_s = time.monotonic()
        for op_id, body in self._wal.read_records(self._store.applied_op_id):
            batch.append((op_id, decode_op(body)))
            if len(batch) >= REPLAY_BATCH_OPS:
                replayed_count += self._replay_batch(batch)
                batch = []
                if time.monotonic() - last_log_s > limits.REPLAY_PROGRESS_EVERY_S:
                    log.info(
                        "replay progress collection=%s op_id=%d last_op_id=%d",
                        self.name,
                        op_id,
                        self._wal.durable_op_id,
                    )
                    last_log_s = time.monotonic()
        if batch:
            replayed_count += self._replay_batch(batch)
        assert self._store.applied_op_id == self._wal.durable_op_id, (
            self._store.applied_op_id,
            self._wal.durable_op_id,
        )
        return replayed_count

    def _replay_batch(self, batch: list[tuple[int, Operation]]) -> int:
        assert self._store is not None
        apply_batch(self._store, self._indexes, self._visibility_lock, batch)
        return len(batch)

    # ---- private: writes -------------------------------------------------------------------

    def _validated(self, op: Operation) -> Operation:
        """Check op against the config; normalise Cosine vectors. Raises BadRequest."""
        if isinstance(op, DeletePoints):
            return op
        if len(op.payloads) != len(op.ids):
            raise BadRequest(
                f"number of ids and payloads must be equal ({len(op.ids)} != {len(op.payloads)})"
            )
        vectors = {}
        for name, named in op.vectors.items():
            vector_config = self.config.vectors.get(name)
            if vector_config is None:
                raise BadRequest(f"Not existing vector name error: {name}")
            matrix = named.matrix
            if matrix.ndim != 2 or matrix.shape[1] != vector_config.size:
                got = matrix.shape[-1] if matrix.ndim else 0
                suffix = "" if self.config.is_single_unnamed else f" for vector '{name}'"
                raise BadRequest(
                    f"Vector dimension error: expected dim: {vector_config.size}, got {got}{suffix}"
                )
            if not np.isfinite(matrix).all():
                raise BadRequest("vector contains a non-finite number (NaN or infinity)")
            if vector_config.distance is Distance.COSINE:
                matrix = normalize_rows(matrix)
            vectors[name] = NamedVectors(named.rows, matrix)
        return UpsertPoints(op.ids, vectors, op.payloads, op.update_mode)

    async def _admit(self, size_bytes: int) -> None:
        """Wait until the unapplied budget has room; Overloaded past the deadline."""
        budget_bytes = self._settings.unapplied_bytes_max
        if self._has_room(size_bytes, budget_bytes):
            return
        log.warning(
            "backpressure collection=%s unapplied_bytes=%d", self.name, self._unapplied_bytes
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
        assert self._wal is not None
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
        assert self._applier is not None and self._wal is not None
        if self._applier.failure is not None:
            raise self._applier.failure
        if self._wal.is_failed:
            raise StorageError(f"write path of collection {self.name} is closed")

    # ---- private: reads --------------------------------------------------------------------

    def _retrieve(
        self, ids: list[PointId], with_payload: PayloadSelector, with_vector: VectorSelector
    ) -> list[PointRecord]:
        assert self._store is not None
        keys = list(dict.fromkeys(point_key(point_id) for point_id in ids))
        points = [p for p in self._store.get_points(keys) if p is not None]
        return [
            PointRecord(
                point_id_from_key(p.key),
                self._select_payload(p, with_payload),
                self._select_vectors(p, with_vector),
            )
            for p in points
        ]

    def _search(self, request: SearchRequest) -> list[ScoredPoint]:
        distance = self.config.vectors[request.vector_name].distance
        query = request.vector.astype(np.float32)
        if distance is Distance.COSINE:
            query = normalize_rows(query.reshape(1, -1))[0]
        with self._visibility_lock.shared():
            labels, scores = self._nearest(request, query, distance)
            return self._scored_points(labels, scores, distance, request)

    def _nearest(
        self, request: SearchRequest, query: np.ndarray, distance: Distance
    ) -> tuple[list[int], np.ndarray]:
        """Best labels and their exact scores, best first; caller holds the visibility lock."""
        assert self._store is not None
        wanted_count = request.limit + request.offset
        index = self._indexes.get(request.vector_name)
        if index is None or request.is_exact:
            return self._exact_top(request.vector_name, query, distance, wanted_count)
        # The graph may hold the next batch's vectors before LMDB commits them; those are
        # dropped below, so ask for that many more.
        in_flight_count = max(0, index.live_count - self._store.count_vectors(request.vector_name))
        ef = request.hnsw_ef or max(index.ef_construct, 100)
        try:
            candidates = index.search(query, wanted_count + in_flight_count, ef)
        except RuntimeError as error:
            # hnswlib could not fill k (too many deleted nodes near the query): an exact
            # scan answers correctly, just slower.
            log.debug("hnsw search fell back to exact collection=%s error=%s", self.name, error)
            return self._exact_top(request.vector_name, query, distance, wanted_count)
        return self._rescore(request.vector_name, query, distance, candidates)

    def _exact_top(
        self, name: str, query: np.ndarray, distance: Distance, wanted_count: int
    ) -> tuple[list[int], np.ndarray]:
        assert self._store is not None
        best_labels = np.empty(0, dtype=np.uint64)
        best_scores = np.empty(0, dtype=np.float32)
        dim = self.config.vectors[name].size
        for labels, matrix in self._store.iter_vectors(name, dim, EXACT_CHUNK_COUNT):
            scores = score_matrix(matrix, query, distance)
            best_labels = np.concatenate([best_labels, labels])
            best_scores = np.concatenate([best_scores, scores])
            order = _best_order(best_scores, distance, wanted_count)
            best_labels, best_scores = best_labels[order], best_scores[order]
        return best_labels.tolist(), best_scores

    def _rescore(
        self, name: str, query: np.ndarray, distance: Distance, labels: np.ndarray
    ) -> tuple[list[int], np.ndarray]:
        assert self._store is not None
        label_list = [int(label) for label in labels]
        vectors = self._store.get_vectors(name, label_list)
        # Labels not committed to LMDB yet have no vector there: not visible, drop them.
        kept = [(label, vector) for label, vector in zip(label_list, vectors) if vector is not None]
        if not kept:
            return [], np.empty(0, dtype=np.float32)
        matrix = np.stack([vector for _, vector in kept])
        scores = score_matrix(matrix, query, distance)
        order = _best_order(scores, distance, len(kept))
        return [kept[i][0] for i in order], scores[order]

    def _scored_points(
        self, labels: list[int], scores: np.ndarray, distance: Distance, request: SearchRequest
    ) -> list[ScoredPoint]:
        assert self._store is not None
        threshold = request.score_threshold
        points = self._store.get_points_by_label(labels)
        result = []
        for point, score in zip(points, scores.tolist()):
            if point is None:
                continue
            if threshold is not None and not _passes_threshold(score, threshold, distance):
                continue
            result.append((point, score))
        result = result[request.offset : request.offset + request.limit]
        return [
            ScoredPoint(
                point_id_from_key(p.key),
                p.version,
                score,
                self._select_payload(p, request.with_payload),
                self._select_vectors(p, request.with_vector),
            )
            for p, score in result
        ]

    def _select_payload(self, point: StoredPoint, selector: PayloadSelector) -> dict | None:
        if not selector.is_enabled:
            return None
        payload = point.payload or {}
        if selector.include is not None:
            return select_keys(payload, selector.include)
        if selector.exclude is not None:
            return drop_keys(payload, selector.exclude)
        return payload

    def _select_vectors(
        self, point: StoredPoint, selector: VectorSelector
    ) -> dict[str, np.ndarray] | None:
        if not selector.is_enabled:
            return None
        assert self._store is not None
        names = [n for n in point.names if selector.names is None or n in selector.names]
        return {name: self._store.get_vectors(name, [point.label])[0] for name in names}


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit-length rows, as Qdrant stores Cosine vectors; zero rows stay zero."""
    matrix = matrix.astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    # Qdrant leaves zero vectors and ones already within 1e-6 of unit length as they are.
    is_kept = (norms == 0) | (np.abs(norms - 1.0) < 1e-6)
    return np.where(is_kept, matrix, matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


def score_matrix(matrix: np.ndarray, query: np.ndarray, distance: Distance) -> np.ndarray:
    """Qdrant's score of each row against query: similarity or distance."""
    if distance in (Distance.COSINE, Distance.DOT):
        return matrix @ query
    if distance is Distance.EUCLID:
        return np.sqrt(np.sum((matrix - query) ** 2, axis=1, dtype=np.float32))
    return np.sum(np.abs(matrix - query), axis=1, dtype=np.float32)


def select_keys(payload: dict, keys: tuple[str, ...]) -> dict:
    """Only the given keys (dotted paths reach into nested objects)."""
    result: dict = {}
    for key in keys:
        value, is_found = _lookup_path(payload, key.split("."))
        if is_found:
            _set_path(result, key.split("."), value)
    return result


def drop_keys(payload: dict, keys: tuple[str, ...]) -> dict:
    result = json.loads(json.dumps(payload))
    for key in keys:
        parts = key.split(".")
        parent, is_found = _lookup_path(result, parts[:-1])
        if is_found and isinstance(parent, dict):
            parent.pop(parts[-1], None)
    return result


def _lookup_path(payload: dict, parts: list[str]) -> tuple[object, bool]:
    value: object = payload
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def _set_path(target: dict, parts: list[str], value: object) -> None:
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _best_order(scores: np.ndarray, distance: Distance, count: int) -> np.ndarray:
    keys = -scores if distance.is_higher_better else scores
    if count < len(keys):
        part = np.argpartition(keys, count - 1)[:count]
        return part[np.argsort(keys[part], kind="stable")]
    return np.argsort(keys, kind="stable")


def _passes_threshold(score: float, threshold: float, distance: Distance) -> bool:
    # Qdrant's comparison is strict both ways (Distance::check_threshold).
    return score > threshold if distance.is_higher_better else score < threshold
