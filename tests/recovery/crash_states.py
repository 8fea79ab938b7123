"""Crash states of a recorded workload: the directory trees a power loss may leave behind.

Input: a copy of the storage directory taken before a workload (`Snapshot`) and the events
recorded while it ran: engine.files' file events (`files.Recorder`) and the LMDB states that
`record_lmdb_states` notes. `CrashModel(snapshot, events).state(point, chooser)` builds one
tree the disk may hold if the power failed once events[:point] had happened; the choosers
(`Chooser` itself keeps everything; `SyncedOnly`, `Torn`, `Reordered`) pick which unsynced
work reached the disk. `sample_states` enumerates and samples them (seeded, deduplicated,
bounded), the way ALICE (OSDI '14) and CrashMonkey (OSDI '18) generate crash states from a
recorded trace.

The persistence model, i.e. what a crash state may contain:

- Files are inodes; names are directory entries. A file's data and size are durable as of
  its last fsync/fdatasync. Writes and truncations after it are *pending*: each 512-byte
  sector holds its content after some prefix of the pending operations (sectors are atomic,
  nothing else is: one write can be torn, later writes can land before earlier ones), and the
  size is the size after some prefix. Bytes of the size that no surviving write covers are
  zeros. `torn` keeps a prefix of the pending operations and tears the next one at a sector
  boundary; `reordered` picks every sector's version and the size independently.
- Create, mkdir, rename, unlink and rmdir are each atomic. One is durable once the directory
  it changed was fsynced after it (a rename across directories: both of them); fsync of a file
  does not make its name durable. Until then it may or may not have happened, independently of
  the other pending ones (`reordered`; `torn` keeps a prefix of them, like a journal). They
  are replayed in order and one whose source is gone is skipped: a state where a file keeps its
  old name, never appeared, or still exists after its unlink.
- Data belongs to the inode, so a rename neither loses nor hardens it, and an inode no
  durable name reaches is gone.
- LMDB (`data.mdb`, written by LMDB itself, not through engine.files) is taken as crash-safe
  on its own: after a power loss it holds the state of one of its commits. Which ones: every
  commit since the last `Store.sync()` (the last one before it is durable), or none at all
  (no data.mdb) before the first sync. That is weaker than LMDB promises (with metasync off
  it loses at most its last commit), so Keel is checked not to rely on anything but sync().

What a passing run proves: for every sampled state, recovery of the workload's files under
this model (a POSIX file system that honours fsync and nothing more, plus sector atomicity)
keeps every acknowledged op and invents nothing, at every recorded point of the paths the
workloads exercise. What it does not: LMDB's own crash safety and hnswlib's file format are
trusted, not tested; a file system that breaks fsync (or tears inside a sector, or returns
garbage rather than zeros in never-written blocks) is outside the model; LMDB states between
a commit and the moment this module noted it are not generated (the harness notes each commit
right after it returns, so a noted state is never newer than the disk); only sampled states of
each point are checked, and only the interleavings the recorded runs happened to take.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine import files
from engine.store.store import Store

SECTOR_BYTES = 512
LMDB_DATA_FILE = "data.mdb"
LMDB_FILE_NAMES = frozenset({LMDB_DATA_FILE, "lock.mdb"})  # LMDB's own, never recorded
ROOT_INODE = 0


# ---- LMDB states: noted by the test harness, not by engine.files ------------------------------


@dataclass(frozen=True)
class LmdbCommitted:
    """LMDB at `path` committed; `data` is data.mdb right after the commit returned."""

    path: str
    data: bytes


@dataclass(frozen=True)
class LmdbSynced:
    """Store.sync() returned: data.mdb as of now (its last commit) is durable."""

    path: str
    data: bytes


def record_lmdb_states(recorder: files.Recorder, monkeypatch) -> None:
    """Note LMDB's state into `recorder` after every commit and sync of every Store.

    Wraps the Store methods that write LMDB (`__init__` may create it, `write_batch` and
    `purge_dead` commit, `sync` makes it durable); each runs on one thread per store, so
    data.mdb read right after it returns is exactly that commit's state.
    """

    def noting(method: Callable, event_type: type) -> Callable:
        def wrapper(self: Store, *args: object, **kwargs: object) -> object:
            result = method(self, *args, **kwargs)
            data = (Path(self.path) / LMDB_DATA_FILE).read_bytes()
            recorder.note(event_type(str(self.path), data))
            return result

        return wrapper

    for name in ("__init__", "write_batch", "purge_dead"):
        monkeypatch.setattr(Store, name, noting(getattr(Store, name), LmdbCommitted))
    monkeypatch.setattr(Store, "sync", noting(Store.sync, LmdbSynced))


# ---- the snapshot before the workload ----------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A directory tree as it was before the workload, all of it durable."""

    root: Path
    tree: dict[str, bytes | None]  # relative path -> file bytes; None for a directory

    @staticmethod
    def take(root: Path) -> Snapshot:
        tree: dict[str, bytes | None] = {}
        for path in sorted(root.rglob("*")):
            relative = str(path.relative_to(root))
            tree[relative] = None if path.is_dir() else path.read_bytes()
        return Snapshot(root, tree)


# ---- crash states -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashState:
    point: int  # events[:point] happened before the power failed
    kind: str  # which chooser built it
    tree: dict[str, bytes | None]

    def digest(self) -> str:
        hasher = hashlib.blake2b(digest_size=16)
        for path in sorted(self.tree):
            content = self.tree[path]
            hasher.update(path.encode() + (b"/" if content is None else b"=" + content) + b"\0")
        return hasher.hexdigest()

    def materialize(self, directory: Path) -> None:
        """Write the tree into `directory` (created; must not exist)."""
        directory.mkdir(parents=True)
        for path in sorted(self.tree):
            content = self.tree[path]
            target = directory / path
            if content is None:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)

    def describe(self) -> str:
        return f"crash state point={self.point} kind={self.kind} digest={self.digest()}"


class Chooser:
    """Decides which unsynced work reached the disk. This one: all of it (no power loss)."""

    kind = "everything"

    def keeps_name_ops(self, pending_count: int) -> list[bool]:
        return [True] * pending_count

    def file_content(self, versions: list[bytes]) -> bytes:
        return versions[-1]

    def lmdb_state(self, candidates: list[bytes | None]) -> bytes | None:
        return candidates[-1]


class SyncedOnly(Chooser):
    """Only what fsync made durable: every pending write, name and LMDB commit is lost."""

    kind = "synced_only"

    def keeps_name_ops(self, pending_count: int) -> list[bool]:
        return [False] * pending_count

    def file_content(self, versions: list[bytes]) -> bytes:
        return versions[0]

    def lmdb_state(self, candidates: list[bytes | None]) -> bytes | None:
        return candidates[0]


@dataclass
class Torn(Chooser):
    """A prefix of the pending work, the next piece torn at a sector boundary."""

    rng: random.Random
    kind: str = "torn"

    def keeps_name_ops(self, pending_count: int) -> list[bool]:
        kept_count = self.rng.randint(0, pending_count)
        return [index < kept_count for index in range(pending_count)]

    def file_content(self, versions: list[bytes]) -> bytes:
        # versions[j] is the file after j pending operations; keep j whole, tear op j + 1.
        whole_count = self.rng.randint(0, len(versions) - 1)
        if whole_count == len(versions) - 1:
            return versions[whole_count]
        before, after = versions[whole_count], versions[whole_count + 1]
        size_bytes = self.rng.choice([len(before), len(after)])
        changed = [
            s for s in range(_sector_count(size_bytes)) if _sector(before, s) != _sector(after, s)
        ]
        kept_count = self.rng.randint(0, len(changed))
        sector_versions = {sector: 1 for sector in changed[:kept_count]}
        return _assemble([before, after], size_bytes, sector_versions)

    def lmdb_state(self, candidates: list[bytes | None]) -> bytes | None:
        return self.rng.choice(candidates)


@dataclass
class Reordered(Chooser):
    """Any subset of the pending work, every sector and name independently."""

    rng: random.Random
    kind: str = "reordered"

    def keeps_name_ops(self, pending_count: int) -> list[bool]:
        return [self.rng.random() < 0.5 for _ in range(pending_count)]

    def file_content(self, versions: list[bytes]) -> bytes:
        size_bytes = len(self.rng.choice(versions))
        sector_versions = {
            sector: self.rng.randrange(len(versions)) for sector in range(_sector_count(size_bytes))
        }
        return _assemble(versions, size_bytes, sector_versions)

    def lmdb_state(self, candidates: list[bytes | None]) -> bytes | None:
        return self.rng.choice(candidates)


# ---- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DataOp:
    at: int  # index of the event
    ino: int
    offset: int
    data: bytes | None  # None: a truncation to size_bytes
    size_bytes: int = 0


@dataclass(frozen=True)
class _NameOp:
    at: int
    kind: str  # "link", "unlink", "rmdir", "rename"
    directory: int  # the directory changed (for a rename: the source's)
    name: str
    ino: int
    target_directory: int = -1  # rename only
    target_name: str = ""

    @property
    def directories(self) -> tuple[int, ...]:
        return (
            (self.directory,) if self.kind != "rename" else (self.directory, self.target_directory)
        )


@dataclass(frozen=True)
class _LmdbState:
    at: int
    data: bytes
    is_synced: bool


@dataclass
class _Trace:
    """The events turned into inode-level operations (paths resolved as of each event)."""

    is_directory: dict[int, bool] = field(default_factory=dict)
    base_entries: dict[int, dict[str, int]] = field(default_factory=dict)
    base_data: dict[int, bytes] = field(default_factory=dict)
    data_ops: dict[int, list[_DataOp]] = field(default_factory=dict)
    file_syncs: dict[int, list[int]] = field(default_factory=dict)
    dir_syncs: dict[int, list[int]] = field(default_factory=dict)
    name_ops: list[_NameOp] = field(default_factory=list)
    lmdb_states: dict[int, list[_LmdbState]] = field(default_factory=dict)


class CrashModel:
    """The crash states of one recorded workload (see the module docstring for the model)."""

    def __init__(self, snapshot: Snapshot, events: list[object]) -> None:
        self.root = snapshot.root
        self.event_count = len(events)
        self._trace = _Trace()
        self._entries: dict[int, dict[str, int]] = {}  # the live namespace while replaying
        self._next_ino = ROOT_INODE
        self._load_snapshot(snapshot)
        for at, event in enumerate(events):
            self._replay(at, event)

    def state(self, point: int, chooser: Chooser) -> CrashState:
        """A tree the disk may hold after a power loss once events[:point] had happened."""
        assert 0 <= point <= self.event_count, (point, self.event_count)
        entries = self._durable_entries(point, chooser)
        tree: dict[str, bytes | None] = {}
        self._walk(ROOT_INODE, "", entries, point, chooser, tree, set())
        return CrashState(point, chooser.kind, tree)

    # ---- replaying events into inode operations -------------------------------------------

    def _load_snapshot(self, snapshot: Snapshot) -> None:
        root = self._new_inode(is_directory=True)
        assert root == ROOT_INODE
        inode_of = {"": root}
        for path in sorted(snapshot.tree):
            content = snapshot.tree[path]
            parent, _, name = path.rpartition("/")
            if name == LMDB_DATA_FILE and content is not None:
                state = _LmdbState(-1, content, is_synced=True)
                self._trace.lmdb_states.setdefault(inode_of[parent], []).append(state)
                continue
            if name in LMDB_FILE_NAMES:
                continue
            ino = self._new_inode(is_directory=content is None)
            inode_of[path] = ino
            self._entries[inode_of[parent]][name] = ino
            if content is not None:
                self._trace.base_data[ino] = content
        self._trace.base_entries = {ino: dict(names) for ino, names in self._entries.items()}

    def _replay(self, at: int, event: object) -> None:
        trace = self._trace
        if isinstance(event, files.Create | files.Mkdir):
            directory, name = self._parent_of(event.path)
            assert name not in self._entries[directory], f"{event} over an existing name"
            ino = self._new_inode(is_directory=isinstance(event, files.Mkdir))
            self._entries[directory][name] = ino
            trace.name_ops.append(_NameOp(at, "link", directory, name, ino))
        elif isinstance(event, files.Write):
            ino = self._inode_of(event.path)
            trace.data_ops.setdefault(ino, []).append(_DataOp(at, ino, event.offset, event.data))
        elif isinstance(event, files.Truncate):
            ino = self._inode_of(event.path)
            op = _DataOp(at, ino, 0, None, event.size_bytes)
            trace.data_ops.setdefault(ino, []).append(op)
        elif isinstance(event, files.Fsync | files.Fdatasync):
            trace.file_syncs.setdefault(self._inode_of(event.path), []).append(at)
        elif isinstance(event, files.FsyncDir):
            trace.dir_syncs.setdefault(self._inode_of(event.path), []).append(at)
        elif isinstance(event, files.Rename):
            self._replay_rename(at, event)
        elif isinstance(event, files.Unlink | files.Rmdir):
            self._replay_removal(at, event)
        elif isinstance(event, LmdbCommitted | LmdbSynced):
            state = _LmdbState(at, event.data, isinstance(event, LmdbSynced))
            trace.lmdb_states.setdefault(self._inode_of(event.path), []).append(state)
        else:
            raise TypeError(f"unknown event {event!r}")

    def _replay_rename(self, at: int, event: files.Rename) -> None:
        directory, name = self._parent_of(event.source)
        ino = self._entries[directory].pop(name)
        target_directory, target_name = self._parent_of(event.target)
        self._entries[target_directory][target_name] = ino
        self._trace.name_ops.append(
            _NameOp(at, "rename", directory, name, ino, target_directory, target_name)
        )

    def _replay_removal(self, at: int, event: files.Unlink | files.Rmdir) -> None:
        directory, name = self._parent_of(event.path)
        if name not in self._entries[directory]:
            # LMDB's own files are not recorded; removing them (with their directory) is fine.
            assert name in LMDB_FILE_NAMES, f"{event} of a file the model never saw"
            return
        ino = self._entries[directory].pop(name)
        kind = "rmdir" if isinstance(event, files.Rmdir) else "unlink"
        self._trace.name_ops.append(_NameOp(at, kind, directory, name, ino))

    def _new_inode(self, is_directory: bool) -> int:
        ino = self._next_ino
        self._next_ino += 1
        self._trace.is_directory[ino] = is_directory
        if is_directory:
            self._entries[ino] = {}
        return ino

    def _parent_of(self, path: str) -> tuple[int, str]:
        relative = Path(path).relative_to(self.root)
        directory = self._inode_of(str(self.root / relative.parent))
        assert self._trace.is_directory[directory], path
        return directory, relative.name

    def _inode_of(self, path: str) -> int:
        ino = ROOT_INODE
        for part in Path(path).relative_to(self.root).parts:
            ino = self._entries[ino][part]
        return ino

    # ---- building one state -----------------------------------------------------------------

    def _durable_entries(self, point: int, chooser: Chooser) -> dict[int, dict[str, int]]:
        """The namespace on disk: forced name ops, plus the pending ones the chooser keeps."""
        happened = [op for op in self._trace.name_ops if op.at < point]
        pending = [op for op in happened if not self._is_forced(op, point)]
        kept = dict(zip(map(id, pending), chooser.keeps_name_ops(len(pending))))
        base = self._trace.base_entries
        entries = {
            ino: dict(base.get(ino, {}))
            for ino, is_directory in self._trace.is_directory.items()
            if is_directory
        }
        for op in happened:
            if kept.get(id(op), True):
                _apply_name_op(entries, op)
        return entries

    def _is_forced(self, op: _NameOp, point: int) -> bool:
        for directory in op.directories:
            syncs = self._trace.dir_syncs.get(directory, [])
            if not any(op.at < at < point for at in syncs):
                return False
        return True

    def _file_versions(self, ino: int, point: int) -> list[bytes]:
        """The file as last fsynced before point, then after each pending operation."""
        ops = [op for op in self._trace.data_ops.get(ino, []) if op.at < point]
        synced_at = max(
            (at for at in self._trace.file_syncs.get(ino, []) if at < point), default=-1
        )
        content = bytearray(self._trace.base_data.get(ino, b""))
        for op in ops:
            if op.at < synced_at:
                _apply_data_op(content, op)
        versions = [bytes(content)]
        for op in ops:
            if op.at > synced_at:
                _apply_data_op(content, op)
                versions.append(bytes(content))
        return versions

    def _lmdb_candidates(self, ino: int, point: int) -> list[bytes | None]:
        """data.mdb contents LMDB may have after the crash; None: no file (never synced)."""
        states = [state for state in self._trace.lmdb_states.get(ino, []) if state.at < point]
        synced = [index for index, state in enumerate(states) if state.is_synced]
        if not synced:
            return [None] + [state.data for state in states]
        return [state.data for state in states[synced[-1] :]]

    def _walk(
        self,
        ino: int,
        prefix: str,
        entries: dict[int, dict[str, int]],
        point: int,
        chooser: Chooser,
        tree: dict[str, bytes | None],
        seen: set[int],
    ) -> None:
        assert ino not in seen, f"directory cycle at {prefix}"
        seen.add(ino)
        if ino in self._trace.lmdb_states:
            data = chooser.lmdb_state(self._lmdb_candidates(ino, point))
            if data is not None:
                tree[prefix + LMDB_DATA_FILE] = data
        for name, child in sorted(entries[ino].items()):
            path = prefix + name
            if self._trace.is_directory[child]:
                tree[path] = None
                self._walk(child, path + "/", entries, point, chooser, tree, seen)
            else:
                tree[path] = chooser.file_content(self._file_versions(child, point))


def sample_states(
    model: CrashModel, rng: random.Random, power_loss_count: int, persisted_count: int
) -> Iterator[CrashState]:
    """Distinct crash states: up to persisted_count "everything reached the disk" states
    (every point when it fits, else a seeded sample, always with the last one), then up to
    power_loss_count states from the power-loss choosers, at points where some work was not
    yet durable (elsewhere a power loss leaves what a kill -9 leaves)."""
    seen: set[str] = set()
    all_points = list(range(model.event_count + 1))
    points = all_points
    if len(points) > persisted_count:
        points = sorted(rng.sample(points[:-1], persisted_count - 1) + [points[-1]])
    for point in points:
        state = model.state(point, Chooser())
        if state.digest() not in seen:
            seen.add(state.digest())
            yield state
    fragile_points = [
        point
        for point in all_points
        if model.state(point, SyncedOnly()).digest() != model.state(point, Chooser()).digest()
    ]
    produced_count = 0
    for _attempt in range(power_loss_count * 10 if fragile_points else 0):
        if produced_count >= power_loss_count:
            return
        point = rng.choice(fragile_points)
        chooser = rng.choice([SyncedOnly(), Torn(rng), Reordered(rng)])
        state = model.state(point, chooser)
        if state.digest() not in seen:
            seen.add(state.digest())
            produced_count += 1
            yield state


# ---- private helpers ----------------------------------------------------------------------------


def _apply_name_op(entries: dict[int, dict[str, int]], op: _NameOp) -> None:
    """Apply one name op to a durable namespace; skip it if its source is not there."""
    directory = entries[op.directory]
    if op.kind == "link":
        directory[op.name] = op.ino
        return
    if directory.get(op.name) != op.ino:
        return  # what it removes or moves never reached the disk
    if op.kind == "rmdir" and entries[op.ino]:
        return  # the unlinks inside it did not all reach the disk: it cannot have gone
    del directory[op.name]
    if op.kind == "rename":
        entries[op.target_directory][op.target_name] = op.ino


def _apply_data_op(content: bytearray, op: _DataOp) -> None:
    if op.data is None:
        del content[op.size_bytes :]
        content.extend(bytes(op.size_bytes - len(content)))
        return
    if len(content) < op.offset:
        content.extend(bytes(op.offset - len(content)))
    content[op.offset : op.offset + len(op.data)] = op.data


def _sector_count(size_bytes: int) -> int:
    return (size_bytes + SECTOR_BYTES - 1) // SECTOR_BYTES


def _sector(content: bytes, sector: int) -> bytes:
    return content[sector * SECTOR_BYTES : (sector + 1) * SECTOR_BYTES]


def _assemble(versions: list[bytes], size_bytes: int, sector_versions: dict[int, int]) -> bytes:
    """A file of size_bytes whose sector s comes from versions[sector_versions.get(s, 0)]."""
    content = bytearray(size_bytes)
    for sector in range(_sector_count(size_bytes)):
        start = sector * SECTOR_BYTES
        end = min(start + SECTOR_BYTES, size_bytes)
        chunk = versions[sector_versions.get(sector, 0)][start:end]
        content[start : start + len(chunk)] = chunk
    return bytes(content)
