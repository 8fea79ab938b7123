"""The in-memory HNSW graph (hnswlib) of one named vector, and its checkpoints on disk.

Owns: files `<collection>/index/v-<hex name>.*`, adding and removing labels, ANN search
(each with the ef it asks for: `EfGate`), resizing, and checkpoint save/load. Labels are the
store's (see engine/store/store.py).
Not here: scores as Qdrant reports them (collection.py rescores hits exactly from LMDB),
catching up with LMDB after a restart (collection.py drives it with store data).

On disk, per vector name:
| file                          | content                                                 |
|-------------------------------|---------------------------------------------------------|
| v-<hex>.<op_id>.hnsw          | hnswlib `save_index` output as of op_id                 |
| v-<hex>.json                  | {"op_id", "next_label", "file", "crc32", "bytes", "dim"} |

The JSON file is replaced atomically after the data file it names is durable, so a crash
leaves either the old or the new checkpoint. A missing or damaged checkpoint is rebuilt from
the vectors in LMDB.

Manhattan (L1) has no hnswlib space, and m = 0 means "no graph" in Qdrant: such a vector
has no graph here, and is searched exactly.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import hnswlib
import numpy as np

from engine import files, limits
from engine.locks import ReadWriteLock
from engine.logfmt import log_event
from engine.ops import Distance, HnswSettings, VectorConfig
from engine.vectors.scores import is_raw_cosine, normalize_rows

log = logging.getLogger(__name__)

_SPACE_BY_DISTANCE = {Distance.COSINE: "ip", Distance.DOT: "ip", Distance.EUCLID: "l2"}
# hnswlib's saveIndex: 6 size_t, int maxlevel, uint32 entry point, 3 size_t, double mult,
# size_t ef_construction; then count * size_data_per_element bytes of level 0; then per
# element a uint32 byte count and that many bytes of upper-level links.
_HNSW_HEADER = struct.Struct("<6QiI3QdQ")


class CheckpointNotWritten(Exception):
    """A checkpoint could not be written for lack of space; the previous one still stands
    and the WAL still covers everything after it, so this is not a failure of the store."""


def is_complete_hnsw_file(data: bytes) -> bool:
    """Whether `data` is a whole hnswlib index file. hnswlib writes through an unchecked
    std::ofstream, so a full disk leaves a short file behind without any error."""
    if len(data) < _HNSW_HEADER.size:
        return False
    header = _HNSW_HEADER.unpack_from(data, 0)
    count, bytes_per_element = header[2], header[3]
    position = _HNSW_HEADER.size + count * bytes_per_element
    for _ in range(count):
        if position + 4 > len(data):
            return False
        (links_bytes,) = struct.unpack_from("<I", data, position)
        position += 4 + links_bytes
    return position == len(data)


def has_graph(config: VectorConfig, hnsw: HnswSettings) -> bool:
    """False for Manhattan (no hnswlib space), for m == 0 (Qdrant: "no HNSW graph") and for
    a multivector (hnswlib has no MaxSim; engine/query/multivector.py scores it exactly)."""
    m = hnsw.m if config.hnsw_m is None else config.hnsw_m
    return config.distance in _SPACE_BY_DISTANCE and m > 0 and not config.is_multivector


def advance_checkpoints(directory: Path, from_op_id: int, to_op_id: int) -> None:
    """Say of every checkpoint in `directory` that covers exactly op `from_op_id` that it
    covers op `to_op_id` (no op exists in between: see Collection.continue_op_ids_above).
    A checkpoint at another op id is left alone: recovery replays or rebuilds it."""
    for meta_path in sorted(directory.glob("v-*.json")):
        meta = json.loads(meta_path.read_bytes())
        if meta["op_id"] == from_op_id:
            meta["op_id"] = to_op_id
            files.write_file_atomic(meta_path, json.dumps(meta).encode())


def remove_checkpoint(directory: Path, name: str) -> bool:
    """Delete the checkpoint of vector `name`'s graph (metadata first, then data files), so
    that a graph made later is rebuilt from LMDB; True if there was one. For a vector whose
    graph is off (m = 0 after a config update): while off, nothing keeps that checkpoint
    current, and the dead labels it would need are purged."""
    file_stem = "v-" + name.encode().hex()
    meta_path = directory / f"{file_stem}.json"
    data_paths = sorted(directory.glob(f"{file_stem}.*.hnsw"))
    if not meta_path.exists() and not data_paths:
        return False
    if meta_path.exists():
        files.unlink_durably(meta_path)
    for path in data_paths:
        files.unlink_durably(path)
    return True


class VectorIndex:
    """HNSW graph of one vector name. Mutations come from the applier thread only."""

    def __init__(self, directory: Path, name: str, config: VectorConfig, hnsw: HnswSettings):
        assert has_graph(config, hnsw), f"{config.distance} has no HNSW graph"
        self.directory = directory
        self.name = name
        self.dim = config.size
        self.m = hnsw.m if config.hnsw_m is None else config.hnsw_m
        self.ef_construct = config.hnsw_ef_construct or hnsw.ef_construct
        self._space = _SPACE_BY_DISTANCE[config.distance]
        # A uint8 Cosine vector is stored as given (engine/vectors/scores.py); hnswlib's
        # inner product needs it unit length, as the query (`query_form`) already is.
        self._is_unit_on_add = is_raw_cosine(config)
        self._file_stem = "v-" + name.encode().hex()
        self._lock = ReadWriteLock()  # exclusive around resize_index and save_index
        self._ef_gate = EfGate(self._set_ef)
        self._graph: hnswlib.Index | None = None
        self.live_count = 0
        # Vectors added for a batch whose LMDB commit has not happened yet: a search asks
        # hnswlib for that many more, since LMDB does not know those labels yet.
        self.pending_count = 0
        self.checkpoint_op_id = -1  # op id the last checkpoint covers; -1: none
        self.checkpoint_next_label = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def load_checkpoint(self) -> bool:
        """Load the last checkpoint; False (and an empty graph) if there is none usable."""
        meta_path = self.directory / f"{self._file_stem}.json"
        if not meta_path.exists():
            self._init_empty()
            return False
        try:
            meta = json.loads(meta_path.read_bytes())
            data_path = self.directory / meta["file"]
            data = data_path.read_bytes()
            if zlib.crc32(data) != meta["crc32"] or len(data) != meta["bytes"]:
                raise ValueError("checksum mismatch")
            if meta["dim"] != self.dim:
                raise ValueError(f"dimension {meta['dim']} != {self.dim}")
            # A graph built with other settings (a PATCH changed them, and the process died
            # before the new graph's first checkpoint) is rebuilt with the config's. A
            # checkpoint written before these were recorded is taken as it is.
            built = (meta.get("m", self.m), meta.get("ef_construct", self.ef_construct))
            if built != (self.m, self.ef_construct):
                raise ValueError(
                    f"built with m={built[0]} ef_construct={built[1]}, the config says "
                    f"m={self.m} ef_construct={self.ef_construct}"
                )
            graph = hnswlib.Index(space=self._space, dim=self.dim)
            graph.load_index(str(data_path), max_elements=0, allow_replace_deleted=True)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            log_event(
                log,
                logging.WARNING,
                "index checkpoint unusable, rebuilding",
                collection_dir=self.directory.parent,
                vector=self.name,
                error=str(error),
            )
            self._init_empty()
            return False
        self._graph = graph
        self.live_count = meta["live_count"]
        self.checkpoint_op_id = meta["op_id"]
        self.checkpoint_next_label = meta["next_label"]
        return True

    def discard_checkpoint(self) -> None:
        """Start from an empty graph (the checkpoint is ahead of LMDB after a power loss)."""
        self._init_empty()

    def save_checkpoint(self, op_id: int, next_label: int) -> None:
        """Write the graph as of op_id durably, then point the JSON file at it."""
        assert self._graph is not None
        assert op_id >= self.checkpoint_op_id, (op_id, self.checkpoint_op_id)
        data_name = f"{self._file_stem}.{op_id}.hnsw"
        temp_path = self.directory / f".{data_name}.tmp"
        try:
            with self._lock.exclusive():
                files.save_by_library(temp_path, self._graph.save_index)
            data = temp_path.read_bytes()
            if not is_complete_hnsw_file(data):
                raise CheckpointNotWritten(f"hnswlib wrote a short file {temp_path} (disk full?)")
            files.fsync_file(temp_path)
        except OSError as error:
            if error.errno not in files.OUT_OF_SPACE_ERRNOS:
                raise
            self._drop_temp(temp_path)
            raise CheckpointNotWritten(f"no space for {temp_path}: {error}") from error
        except CheckpointNotWritten:
            self._drop_temp(temp_path)
            raise
        files.rename_durably(temp_path, self.directory / data_name)
        files.failpoint("index.before_meta")
        meta = {
            "op_id": op_id,
            "next_label": next_label,
            "file": data_name,
            "crc32": zlib.crc32(data),
            "bytes": len(data),
            "dim": self.dim,
            "live_count": self.live_count,
            "m": self.m,
            "ef_construct": self.ef_construct,
        }
        try:
            files.write_file_atomic(
                self.directory / f"{self._file_stem}.json", json.dumps(meta).encode()
            )
        except OSError as error:
            # The old JSON still names the old data file, which is still there; the new
            # data file is removed with the other stale ones by the next checkpoint.
            if error.errno not in files.OUT_OF_SPACE_ERRNOS:
                raise
            raise CheckpointNotWritten(f"no space for the checkpoint's JSON: {error}") from error
        self.checkpoint_op_id = op_id
        self.checkpoint_next_label = next_label
        self._remove_stale_files(keep=data_name)

    # ---- mutation (applier thread) ---------------------------------------------------------

    def add(self, labels: list[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under fresh labels (never seen by this graph before)."""
        assert self._graph is not None
        assert vectors.shape == (len(labels), self.dim), (vectors.shape, len(labels), self.dim)
        if len(labels) == 0:
            return
        if self._is_unit_on_add:
            vectors = normalize_rows(vectors)
        self._reserve(len(labels))
        # Every core (-1): measured on 2 cores, 100k x 128 ingested by 8 clients, one thread
        # indexed ~8.6k points/s against ~12.5k for two or three (the loop keeps answering:
        # add_items releases the GIL).
        self._graph.add_items(
            vectors, np.asarray(labels, dtype=np.uint64), num_threads=-1, replace_deleted=True
        )
        self.live_count += len(labels)

    def remove(self, labels: list[int]) -> None:
        assert self._graph is not None
        for label in labels:
            self._graph.mark_deleted(label)
        self.live_count -= len(labels)
        assert self.live_count >= 0, self.live_count

    # ---- reading (any thread) --------------------------------------------------------------

    def search_ef(self, hnsw_ef: int | None) -> int:
        """The ef a search asks for: the request's `hnsw_ef`, else max(ef_construct, 100)."""
        return hnsw_ef or max(self.ef_construct, 100)

    def search(
        self, vector: np.ndarray, k: int, ef: int, label_filter: Callable[[int], bool] | None = None
    ) -> np.ndarray:
        """Labels of up to k nearest live vectors (among those `label_filter` accepts), found
        with ef max(ef, k) whatever other threads search with. RuntimeError if hnswlib can't
        fill k."""
        assert self._graph is not None
        k = min(k, self.live_count)
        if k <= 0:
            return np.empty(0, dtype=np.uint64)
        ef = max(ef, k)
        self._ef_gate.enter(ef)
        try:
            with self._lock.shared():
                assert self._graph.ef == ef, (self._graph.ef, ef)
                labels, _ = self._graph.knn_query(
                    vector.reshape(1, -1), k=k, num_threads=1, filter=label_filter
                )
        finally:
            self._ef_gate.leave()
        return labels[0]

    def search_many(self, matrix: np.ndarray, k: int, ef: int) -> np.ndarray:
        """Labels of the k nearest live vectors of each row, one row per query, in one
        hnswlib call on the calling thread, with ef max(ef, k). RuntimeError if hnswlib can't
        fill k for some row."""
        assert self._graph is not None
        k = min(k, self.live_count)
        if k <= 0:
            return np.empty((len(matrix), 0), dtype=np.uint64)
        ef = max(ef, k)
        self._ef_gate.enter(ef)
        try:
            with self._lock.shared():
                assert self._graph.ef == ef, (self._graph.ef, ef)
                # One thread: the read pool already runs a search per core. hnswlib's own
                # threads on top left the event loop's thread (holding the GIL) preempted,
                # and every other thread waiting on it: query/batch x100 under 8 clients
                # 68-77 -> 84-100 requests/s, plain queries +12 % (wrk, A/B).
                labels, _ = self._graph.knn_query(matrix, k=k, num_threads=1)
        finally:
            self._ef_gate.leave()
        return labels

    # ---- private ---------------------------------------------------------------------------

    def _init_empty(self) -> None:
        graph = hnswlib.Index(space=self._space, dim=self.dim)
        graph.init_index(
            max_elements=limits.INDEX_CAPACITY_INITIAL,
            M=self.m,
            ef_construction=self.ef_construct,
            random_seed=100,
            allow_replace_deleted=True,
        )
        self._graph = graph
        self.live_count = 0
        self.checkpoint_op_id = -1
        self.checkpoint_next_label = 0

    def _set_ef(self, ef: int) -> None:
        assert self._graph is not None
        self._graph.set_ef(ef)

    def _reserve(self, extra_count: int) -> None:
        assert self._graph is not None
        needed = self._graph.get_current_count() + extra_count
        capacity = self._graph.get_max_elements()
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        with self._lock.exclusive():
            self._graph.resize_index(capacity)
        log_event(log, logging.DEBUG, "index resized", vector=self.name, capacity=capacity)

    def _drop_temp(self, temp_path: Path) -> None:
        if temp_path.exists():
            files.unlink_durably(temp_path)

    def _remove_stale_files(self, keep: str) -> None:
        stale = [p for p in self.directory.glob(f"{self._file_stem}.*.hnsw") if p.name != keep]
        # A crash between save_index and its rename leaves the temp file behind.
        stale += list(self.directory.glob(f".{self._file_stem}.*.hnsw.tmp"))
        for path in stale:
            files.unlink_durably(path)


class EfGate:
    """Lets any number of searches with one ef run together, and a search with another ef
    only once they have all finished: hnswlib keeps ef on the index (`set_ef`), not on the
    query, and `knn_query` releases the GIL, so two searches with different efs running at
    once would each search with whichever ef was set last.

    The gate sets the ef (`set_ef`) when it opens for it, before any search with it runs.
    Fair: once a search waits for another ef, new searches with the running ef queue behind
    it, so a steady stream of one ef can't starve another; when the running searches have
    finished, every waiting search with the oldest waiter's ef goes in together. Adding
    vectors needs no gate: `add_items` uses ef_construction, never ef, and `save_index`
    does not save ef. Searches pass the gate before taking VectorIndex's lock, so a search
    waiting for its ef holds no share of that lock and never holds up `resize_index`.
    """

    def __init__(self, set_ef: Callable[[int], None]) -> None:
        self._set_ef = set_ef
        self._condition = threading.Condition(threading.Lock())  # not reentrant: cheaper
        self._running_ef = 0  # the ef set on the index; meaningful while _running_count > 0
        self._running_count = 0
        # Oldest first; bounded by the threads that search (each waits in at most one gate).
        self._waiters: list[_Waiter] = []

    @property
    def waiting_count(self) -> int:
        with self._condition:
            return len(self._waiters)

    def enter(self, ef: int) -> None:
        """Return once the index's ef is `ef`; it stays so until every search that entered
        has called `leave`. (Two methods, not a context manager: a generator-based one costs
        about 1 us more per search, measured: 2.0 us against 0.9-1.2 us.)"""
        assert ef >= 1, ef
        with self._condition:
            if self._waiters or (self._running_count > 0 and self._running_ef != ef):
                waiter = _Waiter(ef)
                self._waiters.append(waiter)
                while not waiter.is_admitted:
                    self._condition.wait()
            else:
                if self._running_count == 0:
                    self._open(ef)
                self._running_count += 1
            assert self._running_ef == ef, (self._running_ef, ef)

    def leave(self) -> None:
        with self._condition:
            self._running_count -= 1
            assert self._running_count >= 0, self._running_count
            if self._running_count == 0 and self._waiters:
                self._admit_oldest_ef()
                self._condition.notify_all()

    def _admit_oldest_ef(self) -> None:
        ef = self._waiters[0].ef
        self._open(ef)
        admitted = [waiter for waiter in self._waiters if waiter.ef == ef]
        self._waiters = [waiter for waiter in self._waiters if waiter.ef != ef]
        for waiter in admitted:
            waiter.is_admitted = True
        self._running_count += len(admitted)

    def _open(self, ef: int) -> None:
        assert self._running_count == 0, self._running_count
        self._set_ef(ef)
        self._running_ef = ef


class _Waiter:
    __slots__ = ("ef", "is_admitted")

    def __init__(self, ef: int) -> None:
        self.ef = ef
        self.is_admitted = False
