"""The set of collections in a storage directory: lock, recovery of each, create and delete.

Owns: `<storage>/.lock`,
`<storage>/.stopped-cleanly` (present only from a clean close to the next open, so a start
can tell that it follows a crash), `<storage>/storage_id` (a random UUID written once, when the
directory is first opened: the storage's identity, which `/telemetry` reports as its `id`),
`<storage>/collections/<name>/` (one Collection each),
`<storage>/aliases.json` (alias -> collection name, replaced atomically) and `<storage>/tmp/`, where a collection is built before it is renamed into place and where a
deleted one is renamed before it is removed. A crash leaves the old or the new state, never
half a collection; leftovers in tmp/ are removed at the next open.
Also: taking a snapshot of a collection and restoring one (the file format is snapshot.py's);
`<storage>/op_id_floors.json`, for each name whose collection was deleted or replaced, the
last op id that collection handed out: a collection created or restored under that name
hands out op ids above it only, so op ids of a name never repeat (clients use them as
versions) and a restored history can never be mistaken for the one it replaced.
A restore stages the whole new collection in tmp/, opens it once there to prove it sound,
marks it ready (`RESTORE_READY_FILE_NAME` holding the collection name), then renames the old
collection into tmp/ and the staged one into collections/. A crash between those two renames
would leave no collection; open() rolls a ready staged collection forward into its empty
place instead of removing it, so a crash leaves the old or the new collection.
Not here: anything inside a collection (collection.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine import files, full_snapshot, limits, snapshot
from engine.collection import Collection
from engine.errors import (
    BadRequest,
    Conflict,
    CorruptionError,
    NotFound,
    NotReady,
    StorageLocked,
)
from engine.limits import EngineSettings
from engine.logfmt import log_event
from engine.ops import CollectionConfig

log = logging.getLogger(__name__)

LOCK_FILE_NAME = ".lock"
RESTORE_READY_FILE_NAME = ".restore-ready"
ALIASES_FILE_NAME = "aliases.json"
OP_ID_FLOORS_FILE_NAME = "op_id_floors.json"
STORAGE_ID_FILE_NAME = "storage_id"
# Qdrant's validate_collection_name (lib/common/common/src/validation.rs). Other control
# characters, a newline included, are allowed as in Qdrant; logs escape them (logfmt.py).
_FORBIDDEN_NAME_CHARACTERS = set('<>:"/\\|?*\0\x1f')
# Written by close() once every collection is closed and checkpointed, removed by open():
# a storage that has collections but no marker was not closed by the last process using it.
STOPPED_CLEANLY_FILE_NAME = ".stopped-cleanly"


def lock_storage(storage_path: Path) -> int:
    """Take the storage directory's exclusive lock (one Keel process per storage, the
    server or an offline tool); returns the fd holding it. Raises StorageLocked."""
    storage_path = Path(storage_path).absolute()  # the message names absolute paths
    path = storage_path / LOCK_FILE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageLocked(
            f"storage directory {storage_path} is in use by another Keel process "
            f"(lock file {path} is held); stop it or choose another --storage"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


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


@dataclass(frozen=True)
class AliasAction:
    """One of Qdrant's alias actions: create (alias -> collection), delete, rename."""

    kind: str  # "create", "delete" or "rename"
    alias_name: str
    collection_name: str | None = None  # create
    new_alias_name: str | None = None  # rename


def _apply_alias_action(
    aliases: dict[str, str], action: AliasAction, collections: dict[str, Collection]
) -> None:
    if action.kind == "create":
        assert action.collection_name is not None
        if action.collection_name not in collections:
            raise NotFound(f"Collection `{action.collection_name}` doesn't exist!")
        if action.alias_name in collections:
            raise Conflict(f"Collection `{action.alias_name}` already exists!")
        check_collection_name(action.alias_name)
        aliases[action.alias_name] = action.collection_name
    elif action.kind == "delete":
        if aliases.pop(action.alias_name, None) is None:
            raise NotFound(f"Alias {action.alias_name} does not exists!")
    else:
        assert action.kind == "rename" and action.new_alias_name is not None, action
        if action.alias_name not in aliases:
            raise NotFound(f"Alias {action.alias_name} does not exists!")
        if action.new_alias_name in collections:
            raise Conflict(f"Collection `{action.new_alias_name}` already exists!")
        check_collection_name(action.new_alias_name)
        aliases[action.new_alias_name] = aliases.pop(action.alias_name)


class Catalog:
    """Every collection of one storage directory. Only one process may open it."""

    def __init__(self, storage_path: Path, settings: EngineSettings) -> None:
        self.storage_path = Path(storage_path).absolute()  # logs name absolute paths
        self._settings = settings.validated()
        self._collections: dict[str, Collection] = {}
        self._aliases: dict[str, str] = {}  # alias -> collection name
        # name -> last op id handed out by a deleted or replaced collection of that name
        self._op_id_floors: dict[str, int] = {}
        self._lock_fd: int | None = None
        self.storage_id: str | None = None  # set by open(), under the lock
        self._create_lock = asyncio.Lock()  # create/delete one at a time
        self.is_ready = False
        # Set when open() has finished, ready or failed: what wait_ready waits for.
        self._open_finished = asyncio.Event()

    async def open(self, lock_fd: int | None = None) -> None:
        """Lock the directory, clean tmp/, and recover every collection (logged).

        `lock_fd`: the storage lock, already taken by the caller with lock_storage (the
        server takes it before it binds its port); the catalog owns and closes it from here.
        Whether it succeeds or raises, it wakes every `wait_ready` caller when it returns.
        """
        try:
            await self._open(lock_fd)
        finally:
            # A failed open wakes the waiters too: they answer NotReady at once rather than
            # hold a request for their whole bound while the process stops.
            self._open_finished.set()
        assert self.is_ready, "open() returned without becoming ready"

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for open() to finish; True if the catalog is ready then.

        False at once after open() failed or close() began, and after `timeout_s` while
        recovery still runs. Only the waiting is cancelled on timeout, never recovery.
        """
        assert timeout_s >= 0, timeout_s
        if not self._open_finished.is_set() and timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._open_finished.wait()
        return self.is_ready

    async def _open(self, lock_fd: int | None) -> None:
        files.make_directories(self.storage_path)
        if lock_fd is None:
            self._take_lock()
        else:
            self._lock_fd = lock_fd
        is_new_storage = not (self.storage_path / "collections").exists()
        was_stopped_cleanly = self._take_stopped_cleanly_marker()
        self.storage_id = self._load_or_create_storage_id()
        for directory_name in ("collections", "tmp"):
            if not (self.storage_path / directory_name).exists():
                files.make_directory_durably(self.storage_path / directory_name)
        self._clean_tmp()
        self._aliases = self._load_aliases()
        self._op_id_floors = self._load_op_id_floors()
        started_s = time.monotonic()
        names = sorted(p.name for p in (self.storage_path / "collections").iterdir() if p.is_dir())
        log_event(
            log,
            logging.INFO,
            "recovery started",
            storage=self.storage_path,
            collections=len(names),
        )
        for name in names:
            directory = self.storage_path / "collections" / name
            collection = await Collection.open(directory, name, self._settings)
            self._collections[name] = collection
        self._drop_dangling_aliases()
        self.is_ready = True
        log_event(
            log,
            logging.INFO,
            "recovery finished",
            storage=self.storage_path,
            collections=len(names),
            took_s=round(time.monotonic() - started_s, 3),
        )
        if not is_new_storage and not was_stopped_cleanly:
            self._log_unclean_shutdown()

    async def close(self) -> None:
        """Finish every collection's queued writes, checkpoint, release the lock."""
        was_open = self.is_ready
        self.is_ready = False
        is_clean = was_open
        for collection in self._collections.values():
            await collection.close()
            is_clean = is_clean and not collection.is_write_path_failed
        self._collections.clear()
        if is_clean:
            marker = self.storage_path / STOPPED_CLEANLY_FILE_NAME
            await asyncio.get_running_loop().run_in_executor(
                None, files.write_file_atomic, marker, b""
            )
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def names(self) -> list[str]:
        self._require_ready()
        return sorted(self._collections)

    def exists(self, name: str) -> bool:
        """True for a collection's name or an alias of one."""
        self._require_ready()
        return name in self._collections or name in self._aliases

    def get(self, name: str) -> Collection:
        """The collection called `name`, or the one the alias `name` points at."""
        self._require_ready()
        collection = self._collections.get(name) or self._collections.get(
            self._aliases.get(name, "")
        )
        if collection is None:
            raise NotFound(f"Collection `{name}` doesn't exist!")
        return collection

    def aliases(self, collection_name: str | None = None) -> list[tuple[str, str]]:
        """(alias, collection) pairs, all or of one collection (which must exist)."""
        self._require_ready()
        if collection_name is not None:
            self.get(collection_name)
        return sorted(
            (alias, target)
            for alias, target in self._aliases.items()
            if collection_name is None or target == collection_name
        )

    async def change_aliases(self, actions: list[AliasAction]) -> None:
        """Apply create/delete/rename actions in order, all or none, durably.

        Raises NotFound for a missing collection or alias, Conflict for an alias named like
        a collection; then nothing changes.
        """
        self._require_ready()
        async with self._create_lock:
            aliases = dict(self._aliases)
            for action in actions:
                _apply_alias_action(aliases, action, self._collections)
            await asyncio.get_running_loop().run_in_executor(None, self._save_aliases, aliases)
            self._aliases = aliases

    async def create(self, name: str, config: CollectionConfig) -> None:
        """Create durably: built in tmp/, fsynced, renamed into collections/."""
        self._require_ready()
        check_collection_name(name)
        check_collection_config(config)
        async with self._create_lock:
            if name in self._collections:
                raise Conflict(f"Collection `{name}` already exists!")
            self._check_room_for(name)
            # Qdrant checks the alias after the limit, and calls it wrong input (400), not 409.
            if name in self._aliases:
                raise BadRequest(
                    f"Can't create collection with name {name}. "
                    "Alias with the same name already exists"
                )
            loop = asyncio.get_running_loop()
            target = self.storage_path / "collections" / name
            op_id_floor = self._op_id_floors.get(name, -1)
            await loop.run_in_executor(None, self._build, target, config, op_id_floor)
            collection = await Collection.open(target, name, self._settings)
            self._collections[name] = collection
        log_event(log, logging.INFO, "collection created", collection=name)

    async def update_config(
        self, name: str, change: Callable[[CollectionConfig], CollectionConfig]
    ) -> None:
        """Replace a collection's config by `change(current config)`, durably and atomically.

        `change` may raise (BadRequest...) and then nothing changes. Updates are serialised
        with create/delete, so two updates never merge into the same old config. Raises
        NotFound for an unknown collection or alias.
        """
        self._require_ready()
        async with self._create_lock:
            collection = self.get(name)
            config = change(collection.config)
            check_collection_config(config)
            await collection.update_config(config)

    async def delete(self, name: str) -> bool:
        """Delete durably (renamed out of collections/ first); False if it did not exist."""
        self._require_ready()
        async with self._create_lock:
            collection = self._collections.pop(name, None)
            if collection is None:
                return False
            await collection.close()
            loop = asyncio.get_running_loop()
            # Before the collection goes: a crash in between leaves it, and a floor it is at.
            await loop.run_in_executor(
                None, self._raise_op_id_floor, name, collection.appended_op_id
            )
            tombstone = self.storage_path / "tmp" / f"deleted-{uuid.uuid4().hex}"
            await loop.run_in_executor(None, files.rename_durably, collection.directory, tombstone)
            # Qdrant drops a deleted collection's aliases with it. After the rename: a crash
            # in between leaves aliases to a missing collection, which open() drops.
            aliases = {a: c for a, c in self._aliases.items() if c != name}
            if aliases != self._aliases:
                await loop.run_in_executor(None, self._save_aliases, aliases)
                self._aliases = aliases
            await loop.run_in_executor(None, files.remove_tree, tombstone)
        log_event(log, logging.INFO, "collection deleted", collection=name)
        return True

    async def create_snapshot(self, name: str, snapshots_path: Path) -> snapshot.SnapshotInfo:
        """Write a snapshot of collection (or alias) `name` into `snapshots_path`/<collection>/.

        It holds the collection as of one op id (LMDB's applied_op_id in the read transaction
        the copy uses) while writes go on. Serialised with create/delete/restore, so the
        collection cannot be closed under the copy and config.json is the current config.
        """
        self._require_ready()
        loop = asyncio.get_running_loop()
        async with self._create_lock:
            collection = self.get(name)
            directory = snapshots_path / collection.name
            staging = await loop.run_in_executor(None, snapshot.prepare_staging, directory)
            op_id, config = await collection.copy_lmdb_with_config(staging / "lmdb")
            created_at = datetime.now(UTC)
            return await loop.run_in_executor(
                None, snapshot.pack, staging, directory, collection.name, config, op_id, created_at
            )

    def new_upload_path(self) -> Path:
        """A fresh path in tmp/ for an uploaded snapshot; the next open() removes leftovers."""
        self._require_ready()
        return self.storage_path / "tmp" / f"upload-{uuid.uuid4().hex}.snapshot"

    async def restore(
        self, name: str, snapshot_path: Path, expected_checksum: str | None = None
    ) -> snapshot.Manifest:
        """Replace collection (or alias) `name` by the snapshot at `snapshot_path`, or create
        it; aliases keep pointing at it. Durable when it returns.

        Everything is verified and the new collection is built and opened once in tmp/
        before the old one is touched: NotFound (no such file) or BadRequest (checksum,
        manifest or config wrong) leave the catalog as it was.
        """
        self._require_ready()
        check_collection_name(name)
        loop = asyncio.get_running_loop()
        async with self._create_lock:
            target_name = self._aliases.get(name, name)
            self._check_room_for(target_name)
            staging = self.storage_path / "tmp" / f"restoring-{uuid.uuid4().hex}"
            try:
                manifest = await self._stage_restore(
                    staging, target_name, snapshot_path, expected_checksum
                )
            except BaseException:
                if staging.exists():
                    await loop.run_in_executor(None, files.remove_tree, staging)
                raise
            old = self._collections.pop(target_name, None)
            if old is not None:
                await old.close()
            target = self.storage_path / "collections" / target_name
            old_last_op_id = old.appended_op_id if old is not None else -1
            try:
                op_id_floor = await loop.run_in_executor(
                    None, self._continue_history, staging, target_name, manifest, old_last_op_id
                )
            except BaseException:
                await loop.run_in_executor(None, files.remove_tree, staging)
                if old is not None:  # untouched: serve it again
                    reopened = await Collection.open(target, target_name, self._settings)
                    self._collections[target_name] = reopened
                raise
            tombstone = self.storage_path / "tmp" / f"replaced-{uuid.uuid4().hex}"
            await loop.run_in_executor(None, _swap_in, staging, target, old is not None, tombstone)
            collection = await Collection.open(target, target_name, self._settings)
            self._collections[target_name] = collection
            if old is not None:
                await loop.run_in_executor(None, files.remove_tree, tombstone)
        log_event(
            log,
            logging.INFO,
            "collection restored",
            collection=target_name,
            op_id=manifest.op_id,
            snapshot=Path(snapshot_path),
            replaced=old is not None,
            next_op_id=max(op_id_floor, manifest.op_id) + 1,
            incarnation=collection.incarnation,
        )
        return manifest

    async def create_full_snapshot(self, snapshots_path: Path) -> snapshot.SnapshotInfo:
        """Write a full snapshot (full_snapshot.py) into `snapshots_path`: every collection,
        each as of one op id while its writes go on, and the aliases. Creates, deletes,
        restores and alias changes wait until it is written, so the collections and aliases
        are those of one moment. The collection snapshots are staged in
        `snapshots_path`/.full-snapshot-creating-<hex>/ and removed once packed."""
        self._require_ready()
        loop = asyncio.get_running_loop()
        async with self._create_lock:
            full_staging = await loop.run_in_executor(
                None, full_snapshot.prepare_staging, snapshots_path, uuid.uuid4().hex
            )
            try:
                taken = []
                for index, name in enumerate(sorted(self._collections)):
                    path, op_id = await self._stage_collection_snapshot(name, full_staging, index)
                    taken.append((name, op_id, path))
                created_at = datetime.now(UTC)
                aliases = dict(self._aliases)
                return await loop.run_in_executor(
                    None, full_snapshot.pack_full, snapshots_path, taken, aliases, created_at
                )
            finally:
                await loop.run_in_executor(None, files.remove_tree, full_staging)

    async def restore_full(
        self, snapshot_path: Path, expected_checksum: str | None = None
    ) -> full_snapshot.FullManifest:
        """Restore every collection of the full snapshot at `snapshot_path` (each replaced or
        created by `restore`: op ids continue above earlier ones, new incarnations) and set
        its aliases. Collections and aliases the snapshot does not name stay as they are (as
        Qdrant's `--storage-snapshot --force-snapshot` leaves them).

        Before anything changes: the whole file and every member are verified against their
        checksums, and a name clash (a collection of the snapshot named like an alias here,
        an alias of it named like a collection here) is refused: NotFound or BadRequest, and
        the catalog is as it was. A failure after that (the disk filling up, say) leaves the
        collections restored so far restored; running the restore again finishes it.
        """
        self._require_ready()
        loop = asyncio.get_running_loop()
        staging = self.storage_path / "tmp" / f"full-restoring-{uuid.uuid4().hex}"
        try:
            manifest = await loop.run_in_executor(
                None, full_snapshot.unpack_full, snapshot_path, staging, expected_checksum
            )
            self._check_full_restore(manifest)
            for entry in manifest.collections:
                await self.restore(entry.collection_name, staging / entry.member)
            async with self._create_lock:
                aliases = {**self._aliases, **manifest.aliases}
                assert all(target in self._collections for target in aliases.values()), aliases
                await loop.run_in_executor(None, self._save_aliases, aliases)
                self._aliases = aliases
        finally:
            if staging.exists():
                await loop.run_in_executor(None, files.remove_tree, staging)
        log_event(
            log,
            logging.INFO,
            "full snapshot restored",
            snapshot=Path(snapshot_path),
            collections=len(manifest.collections),
            aliases=len(manifest.aliases),
        )
        return manifest

    # ---- private ---------------------------------------------------------------------------

    async def _stage_collection_snapshot(
        self, name: str, full_staging: Path, index: int
    ) -> tuple[Path, int]:
        """Snapshot collection `name` into `full_staging`/<index>/; (its file, its op id).
        The caller holds the create lock."""
        loop = asyncio.get_running_loop()
        collection = self._collections[name]
        directory = full_staging / str(index)
        staging = await loop.run_in_executor(None, snapshot.prepare_staging, directory)
        op_id, config = await collection.copy_lmdb_with_config(staging / "lmdb")
        created_at = datetime.now(UTC)
        info = await loop.run_in_executor(
            None, snapshot.pack, staging, directory, name, config, op_id, created_at
        )
        assert (directory / info.name).is_file(), (directory, info.name)
        return directory / info.name, op_id

    def _check_full_restore(self, manifest: full_snapshot.FullManifest) -> None:
        """BadRequest if restoring `manifest` would mix up a collection and an alias here."""
        for entry in manifest.collections:
            check_collection_name(entry.collection_name)
            if entry.collection_name in self._aliases:
                raise BadRequest(
                    f"full snapshot collection {entry.collection_name} is an alias here; "
                    "delete the alias first"
                )
        for alias in manifest.aliases:
            check_collection_name(alias)
            if alias in self._collections:
                raise BadRequest(f"full snapshot alias {alias} is a collection here")
        new_names = {e.collection_name for e in manifest.collections} - set(self._collections)
        if len(self._collections) + len(new_names) > limits.COLLECTIONS_MAX:
            raise BadRequest(f"restoring would exceed {limits.COLLECTIONS_MAX} collections")

    async def _stage_restore(
        self, staging: Path, name: str, snapshot_path: Path, expected_checksum: str | None
    ) -> snapshot.Manifest:
        """Unpack into `staging` and open and close it there (WAL vs LMDB checks, index
        rebuild and checkpoint; it gets a new incarnation id). Not yet ready to roll
        forward: _continue_history marks it so."""
        loop = asyncio.get_running_loop()
        manifest, config = await loop.run_in_executor(
            None, snapshot.unpack, snapshot_path, staging, expected_checksum
        )
        check_collection_config(config)
        try:
            staged = await Collection.open(staging, name, self._settings)
        except CorruptionError as error:
            raise BadRequest(f"snapshot {snapshot_path.name} does not open: {error}") from None
        await staged.close()
        return manifest

    def _continue_history(
        self, staging: Path, name: str, manifest: snapshot.Manifest, old_last_op_id: int
    ) -> int:
        """Record the replaced collection's last op id as `name`'s floor, make the staged
        collection hand out op ids above it, then mark the staging ready to roll forward.
        Returns the floor (-1: none)."""
        op_id_floor = self._raise_op_id_floor(name, old_last_op_id)
        if op_id_floor > manifest.op_id:
            Collection.continue_op_ids_above(staging, op_id_floor)
        files.create_file_durably(staging / RESTORE_READY_FILE_NAME, name.encode())
        return op_id_floor

    def _raise_op_id_floor(self, name: str, last_op_id: int) -> int:
        """Make `name`'s floor at least last_op_id, durably; returns the floor."""
        floor = max(self._op_id_floors.get(name, -1), last_op_id)
        if floor != self._op_id_floors.get(name, -1):
            floors = {**self._op_id_floors, name: floor}
            data = json.dumps(floors, sort_keys=True).encode()
            files.write_file_atomic(self.storage_path / OP_ID_FLOORS_FILE_NAME, data)
            self._op_id_floors = floors
        return floor

    def _load_op_id_floors(self) -> dict[str, int]:
        path = self.storage_path / OP_ID_FLOORS_FILE_NAME
        if not path.exists():
            return {}
        try:
            floors = json.loads(path.read_bytes())
        except ValueError as error:
            raise CorruptionError(f"op id floors file is not JSON: {path}: {error}") from error
        if not isinstance(floors, dict) or not all(type(v) is int for v in floors.values()):
            raise CorruptionError(f"op id floors file is not a map of op ids: {path}")
        return floors

    def _check_room_for(self, name: str) -> None:
        """BadRequest if a new collection `name` would pass COLLECTIONS_MAX."""
        if name not in self._collections and len(self._collections) >= limits.COLLECTIONS_MAX:
            raise BadRequest(
                f"Keel holds at most {limits.COLLECTIONS_MAX} collections; delete one first"
            )

    def _require_ready(self) -> None:
        if not self.is_ready:
            raise NotReady("storage is not open: recovery has not finished")

    def _take_lock(self) -> None:
        self._lock_fd = lock_storage(self.storage_path)

    def _take_stopped_cleanly_marker(self) -> bool:
        """Whether the last process closed this storage cleanly; removes the marker durably,
        before recovery writes anything, so a crash from here on is seen at the next open."""
        marker = self.storage_path / STOPPED_CLEANLY_FILE_NAME
        if not marker.exists():
            return False
        files.unlink_durably(marker)
        assert not marker.exists(), marker
        return True

    def _log_unclean_shutdown(self) -> None:
        """One WARNING for the whole storage: the last run was killed, crashed or lost
        power. Nothing acknowledged is lost (it is in the WAL); the counts say what recovery
        redid. Graphs behind LMDB catch up afterwards, logged per vector."""
        replayed = {
            name: collection.ops_replayed_count
            for name, collection in self._collections.items()
            if collection.ops_replayed_count
        }
        log_event(
            log,
            logging.WARNING,
            "unclean shutdown: the last run was not stopped cleanly",
            storage=self.storage_path,
            ops_replayed=sum(replayed.values()),
            collections_replayed=len(replayed),
            collections=len(self._collections),
        )

    def _load_or_create_storage_id(self) -> str:
        """The storage's UUID; written once, the first time the directory is opened. A copy
        of the directory keeps it: remove the file in the copy to give that one its own."""
        path = self.storage_path / STORAGE_ID_FILE_NAME
        if not path.exists():
            files.write_file_atomic(path, f"{uuid.uuid4()}\n".encode())
            log_event(log, logging.INFO, "storage id created", path=path)
        text = path.read_text(errors="replace").strip()
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise CorruptionError(
                f"storage id file does not hold a UUID: {path}; remove it and the storage "
                "gets a new id"
            ) from None

    def _load_aliases(self) -> dict[str, str]:
        path = self.storage_path / ALIASES_FILE_NAME
        if not path.exists():
            return {}
        try:
            aliases = json.loads(path.read_bytes())
        except ValueError as error:
            raise CorruptionError(f"aliases file is not JSON: {path}: {error}") from error
        if not isinstance(aliases, dict):
            raise CorruptionError(f"aliases file is not a JSON object: {path}")
        return aliases

    def _drop_dangling_aliases(self) -> None:
        """Aliases of a collection whose delete was interrupted after its rename."""
        aliases = {a: c for a, c in self._aliases.items() if c in self._collections}
        if aliases != self._aliases:
            log_event(
                log,
                logging.INFO,
                "dropping aliases of a deleted collection",
                count=len(self._aliases) - len(aliases),
            )
            self._save_aliases(aliases)
            self._aliases = aliases

    def _save_aliases(self, aliases: dict[str, str]) -> None:
        data = json.dumps(aliases, sort_keys=True).encode()
        files.write_file_atomic(self.storage_path / ALIASES_FILE_NAME, data)

    def _clean_tmp(self) -> None:
        for leftover in (self.storage_path / "tmp").iterdir():
            if self._roll_restore_forward(leftover):
                continue
            log_event(
                log,
                logging.INFO,
                "removing leftover from an interrupted create/delete",
                path=leftover,
            )
            files.remove_tree(leftover)
        files.fsync_directory(self.storage_path / "tmp")

    def _roll_restore_forward(self, leftover: Path) -> bool:
        """Finish a restore interrupted between its two renames; True if it did."""
        marker = leftover / RESTORE_READY_FILE_NAME
        if not marker.is_file():
            return False
        target = self.storage_path / "collections" / marker.read_text()
        if target.exists():
            return False  # the old collection is still in place: drop the staged one
        log_event(
            log,
            logging.WARNING,
            "finishing an interrupted restore",
            collection=target.name,
            path=leftover,
        )
        files.rename_durably(leftover, target)
        files.unlink_durably(target / RESTORE_READY_FILE_NAME)
        return True

    def _build(self, target: Path, config: CollectionConfig, op_id_floor: int) -> None:
        staging = self.storage_path / "tmp" / f"creating-{uuid.uuid4().hex}"
        Collection.create_layout(staging, config)
        if op_id_floor >= 0:
            Collection.continue_op_ids_above(staging, op_id_floor)
        files.failpoint("catalog.before_create_rename")
        files.rename_durably(staging, target)


def _swap_in(staging: Path, target: Path, has_old: bool, tombstone: Path) -> None:
    """Move the old collection (if any) into tmp/, then the staged one into its place."""
    assert (staging / RESTORE_READY_FILE_NAME).is_file(), f"staged restore not ready: {staging}"
    assert target.exists() == has_old, (target, has_old)
    if has_old:
        files.rename_durably(target, tombstone)
        # A crash here leaves no collection at `target`; open() rolls `staging` forward.
        files.failpoint("catalog.restore_between_renames")
    files.rename_durably(staging, target)
    files.unlink_durably(target / RESTORE_READY_FILE_NAME)
    assert not staging.exists(), staging
