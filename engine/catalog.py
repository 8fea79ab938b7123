"""The set of collections in a storage directory: lock, recovery of each, create and delete.

Owns: `<storage>/.lock`, `<storage>/collections/<name>/` (one Collection each) and
`<storage>/tmp/`, where a collection is built before it is renamed into place and where a
deleted one is renamed before it is removed. A crash leaves the old or the new state, never
half a collection; leftovers in tmp/ are removed at the next open.
Not here: anything inside a collection (collection.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from engine import files, limits
from engine.collection import Collection
from engine.errors import BadRequest, Conflict, NotFound, NotReady, StorageLocked
from engine.limits import EngineSettings
from engine.ops import CollectionConfig

log = logging.getLogger(__name__)

LOCK_FILE_NAME = ".lock"
_FORBIDDEN_NAME_CHARACTERS = set('<>:"/\\|?*\0')


def check_collection_name(name: str) -> None:
    """Raise BadRequest for a name that could escape the storage directory or be invalid."""
    if not name or len(name.encode()) > limits.COLLECTION_NAME_BYTES_MAX:
        raise BadRequest(f"collection name must be 1 to {limits.COLLECTION_NAME_BYTES_MAX} bytes")
    if name in (".", "..") or any(ch in _FORBIDDEN_NAME_CHARACTERS for ch in name):
        raise BadRequest(f"collection name {name!r} contains a forbidden character or is . or ..")


def check_collection_config(config: CollectionConfig) -> None:
    """Raise BadRequest for a config the engine cannot honour safely."""
    if len(config.vectors) > limits.VECTOR_NAMES_MAX:  # none is fine: payload-only points
        raise BadRequest(f"a collection has at most {limits.VECTOR_NAMES_MAX} named vectors")
    for name, vector in config.vectors.items():
        if not 1 <= vector.size <= limits.VECTOR_DIM_MAX:
            raise BadRequest(f"vector {name!r} size must be from 1 to {limits.VECTOR_DIM_MAX}")
        m = config.hnsw.m if vector.hnsw_m is None else vector.hnsw_m
        ef_construct = vector.hnsw_ef_construct or config.hnsw.ef_construct
        if not 0 <= m <= limits.HNSW_M_MAX:
            raise BadRequest(f"hnsw m must be from 0 to {limits.HNSW_M_MAX}, got {m}")
        if not 4 <= ef_construct <= limits.HNSW_EF_CONSTRUCT_MAX:
            raise BadRequest(
                f"hnsw ef_construct must be from 4 to {limits.HNSW_EF_CONSTRUCT_MAX}, "
                f"got {ef_construct}"
            )


class Catalog:
    """Every collection of one storage directory. Only one process may open it."""

    def __init__(self, storage_path: Path, settings: EngineSettings) -> None:
        self.storage_path = Path(storage_path)
        self._settings = settings.validated()
        self._collections: dict[str, Collection] = {}
        self._lock_fd: int | None = None
        self._create_lock = asyncio.Lock()  # create/delete one at a time
        self.is_ready = False

    async def open(self) -> None:
        """Lock the directory, clean tmp/, and recover every collection (logged)."""
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        for directory_name in ("collections", "tmp"):
            if not (self.storage_path / directory_name).exists():
                files.make_directory_durably(self.storage_path / directory_name)
        self._clean_tmp()
        started_s = time.monotonic()
        names = sorted(p.name for p in (self.storage_path / "collections").iterdir() if p.is_dir())
        log.info("recovery started storage=%s collections=%d", self.storage_path, len(names))
        for name in names:
            collection = Collection(self.storage_path / "collections" / name, name, self._settings)
            await collection.open()
            self._collections[name] = collection
        self.is_ready = True
        log.info(
            "recovery finished storage=%s collections=%d took_s=%.3f",
            self.storage_path,
            len(names),
            time.monotonic() - started_s,
        )

    async def close(self) -> None:
        """Finish every collection's queued writes, checkpoint, release the lock."""
        self.is_ready = False
        for collection in self._collections.values():
            await collection.close()
        self._collections.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def names(self) -> list[str]:
        self._require_ready()
        return sorted(self._collections)

    def exists(self, name: str) -> bool:
        self._require_ready()
        return name in self._collections

    def get(self, name: str) -> Collection:
        self._require_ready()
        collection = self._collections.get(name)
        if collection is None:
            raise NotFound(f"Collection `{name}` doesn't exist!")
        return collection

    async def create(self, name: str, config: CollectionConfig) -> None:
        """Create durably: built in tmp/, fsynced, renamed into collections/."""
        self._require_ready()
        check_collection_name(name)
        check_collection_config(config)
        async with self._create_lock:
            if name in self._collections:
                raise Conflict(f"Collection `{name}` already exists!")
            loop = asyncio.get_running_loop()
            target = self.storage_path / "collections" / name
            await loop.run_in_executor(None, self._build, target, config)
            collection = Collection(target, name, self._settings)
            await collection.open()
            self._collections[name] = collection
        log.info("collection created collection=%s", name)

    async def delete(self, name: str) -> bool:
        """Delete durably (renamed out of collections/ first); False if it did not exist."""
        self._require_ready()
        async with self._create_lock:
            collection = self._collections.pop(name, None)
            if collection is None:
                return False
            await collection.close()
            tombstone = self.storage_path / "tmp" / f"deleted-{uuid.uuid4().hex}"
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, files.rename_durably, collection.directory, tombstone)
            await loop.run_in_executor(None, shutil.rmtree, tombstone)
        log.info("collection deleted collection=%s", name)
        return True

    # ---- private ---------------------------------------------------------------------------

    def _require_ready(self) -> None:
        if not self.is_ready:
            raise NotReady("storage is not open: recovery has not finished")

    def _take_lock(self) -> None:
        path = self.storage_path / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageLocked(
                f"storage directory {self.storage_path} is in use by another Keel process "
                f"(lock file {path} is held); stop it or choose another --storage"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _clean_tmp(self) -> None:
        for leftover in (self.storage_path / "tmp").iterdir():
            log.info("removing leftover from an interrupted create/delete path=%s", leftover)
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        files.fsync_directory(self.storage_path / "tmp")

    def _build(self, target: Path, config: CollectionConfig) -> None:
        staging = self.storage_path / "tmp" / f"creating-{uuid.uuid4().hex}"
        Collection.create_layout(staging, config)
        files.failpoint("catalog.before_create_rename")
        files.rename_durably(staging, target)
