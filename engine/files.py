"""The one place that changes files: create, append, fsync, truncate, rename, unlink, mkdir.

Owns: every file mutation the engine does outside LMDB (the WAL's segments, index checkpoints,
collection directories, create/delete renames), the failpoints that let recovery tests
SIGKILL the process between two of those steps (or stall a thread there for good), and a
test-only recording hook.
Not here: what the bytes mean (engine/wal/log.py, engine/vectors/hnsw.py). LMDB's own files (engine/store/store.py): LMDB is
crash-safe by itself, Keel replays the WAL from LMDB's applied_op_id and syncs LMDB before
relying on it. The storage lock file (catalog.py) holds flock state and a pid for humans,
never data, so it is written directly.

Every write the engine does appends: a descriptor opened here is only ever written at its
end, which is how a recorded Write knows its offset.

Recording (tests only). With a `Recorder` installed (`install_recorder`), each operation below
appends one event to `recorder.events` once it has completed. The recorder's lock is held
across the operation and its append, so the list is the order the operations happened in,
across threads. With none installed an operation costs one `is None` test.

| event                     | recorded once                                              |
|---------------------------|------------------------------------------------------------|
| Create(path)              | a new, empty regular file exists at path (O_CREAT)         |
| Write(path, offset, data) | data was written at offset (it is in the page cache)       |
| Truncate(path, size_bytes)| the file's size was set (also O_TRUNC of an existing file) |
| Fsync(path)               | fsync(2) of the file returned                              |
| Fdatasync(path)           | fdatasync(2) of the file returned                          |
| FsyncDir(path)            | fsync(2) of the directory returned: its entries are durable|
| Rename(source, target)    | rename(2) returned (target replaced if it existed)         |
| Unlink(path), Rmdir(path) | the entry was removed                                      |
| Mkdir(path)               | the directory was created                                  |

A library that writes a whole file by itself (hnswlib's save_index) is recorded as Create (or
Truncate to 0 when the file existed) and one Write of everything it wrote.
`Recorder.fault`, when set, is called with each event *before* its operation runs and may
raise OSError: that is how tests inject ENOSPC and EIO here.

Failpoints (tests only). `KEEL_FAILPOINTS=name,name` arms the named `failpoint`s and
`stall_point`s, and only when `KEEL_TEST_FAULTS=1` is set as well: a failpoint SIGKILLs the
process, so a variable left behind in a production environment must not arm one by itself.
Without the switch they stay inert, and `keel serve` refuses to start (`requested_failpoints`
raises FaultsNotEnabled) rather than run with a setting it ignores. Other test-only fault
settings (`KEEL_MIGRATE_KILL_AFTER_BATCHES`) go through `fault_setting` for the same rule.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
# A write refused for one of these reasons changed nothing that cutting it off cannot undo.
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

FAILPOINTS_VARIABLE = "KEEL_FAILPOINTS"
# The test-only switch: no fault setting is honoured unless this is exactly "1".
TEST_FAULTS_VARIABLE = "KEEL_TEST_FAULTS"
# How long a stalled thread sleeps between checks; it never leaves (stall_point).
STALL_SLEEP_S = 3600.0
_counter_lock = threading.Lock()
fsync_count = 0  # every fsync/fdatasync this process did through this module
_paths_by_fd: dict[int, str] = {}  # descriptors opened here, so events can name their file


# ---- recorded events (tests only) ----------------------------------------------------------


@dataclass(frozen=True)
class Create:
    path: str


@dataclass(frozen=True)
class Write:
    path: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Truncate:
    path: str
    size_bytes: int


@dataclass(frozen=True)
class Fsync:
    path: str


@dataclass(frozen=True)
class Fdatasync:
    path: str


@dataclass(frozen=True)
class FsyncDir:
    path: str


@dataclass(frozen=True)
class Rename:
    source: str
    target: str


@dataclass(frozen=True)
class Unlink:
    path: str


@dataclass(frozen=True)
class Rmdir:
    path: str


@dataclass(frozen=True)
class Mkdir:
    path: str


FileEvent = (
    Create | Write | Truncate | Fsync | Fdatasync | FsyncDir | Rename | Unlink | Rmdir | Mkdir
)


class Recorder:
    """Test hook: the engine's file operations, in the order they completed.

    `events` may also hold events a test adds itself with `note` (e.g. LMDB commits);
    `fault(event)` runs before each operation and may raise OSError to inject a failure.
    """

    def __init__(self, fault: Callable[[FileEvent], None] | None = None) -> None:
        self.events: list[object] = []
        self.fault = fault
        # Reentrant: a fault function may itself call this module.
        self.lock = threading.RLock()

    def note(self, event: object) -> int:
        """Append an event of the test's own; return its index."""
        with self.lock:
            self.events.append(event)
            return len(self.events) - 1

    def mark(self) -> int:
        """How many events so far: a crash at this point keeps exactly events[:mark]."""
        with self.lock:
            return len(self.events)


_recorder: Recorder | None = None


def install_recorder(recorder: Recorder | None) -> None:
    """Record every file operation into `recorder` from now on; None stops recording."""
    global _recorder
    _recorder = recorder


def _observed(describe: Callable[[], FileEvent], operation: Callable[[], T]) -> T:
    """Run operation; with a recorder, describe it (before it runs) and record it after."""
    recorder = _recorder
    if recorder is None:
        return operation()
    with recorder.lock:
        event = describe()
        if recorder.fault is not None:
            recorder.fault(event)
        result = operation()
        recorder.events.append(event)
        return result


# ---- failpoints ------------------------------------------------------------------------------


class FaultsNotEnabled(Exception):
    """A test-only fault setting is present without KEEL_TEST_FAULTS=1."""


def fault_setting(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of the test-only fault setting `variable` in `environ` (default: this
    process's environment); "" when unset or empty.

    Raises FaultsNotEnabled when it is set but KEEL_TEST_FAULTS is not "1".
    """
    environ = os.environ if environ is None else environ
    value = environ.get(variable, "").strip()
    if value and environ.get(TEST_FAULTS_VARIABLE) != "1":
        raise FaultsNotEnabled(
            f"{variable}={value!r} is a test-only fault setting (it makes the process kill or "
            f"stall itself) and is refused without {TEST_FAULTS_VARIABLE}=1; unset {variable}"
        )
    return value


def requested_failpoints(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The failpoints KEEL_FAILPOINTS names (comma-separated); FaultsNotEnabled without the
    test-only switch. Entry points call it at start to refuse, and to log each one armed."""
    environ = os.environ if environ is None else environ
    names = environ.get(FAILPOINTS_VARIABLE, "").split(",")
    failpoints = frozenset(name.strip() for name in names if name.strip())
    if failpoints:
        fault_setting(FAILPOINTS_VARIABLE, environ)  # FaultsNotEnabled without the switch
    return failpoints


def _armed_at_import() -> frozenset[str]:
    # Never raises: importing the engine must not fail. Without the switch nothing is armed,
    # and the entry point that started the process refuses through requested_failpoints.
    try:
        return requested_failpoints()
    except FaultsNotEnabled:
        return frozenset()


_ARMED_FAILPOINTS = _armed_at_import()


def failpoint(name: str) -> None:
    """SIGKILL this process here if KEEL_FAILPOINTS names `name` (and KEEL_TEST_FAULTS=1);
    otherwise nothing."""
    if name in _ARMED_FAILPOINTS:
        log.warning("failpoint hit, killing process name=%s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def stall_point(name: str) -> None:
    """Block the calling thread for good if KEEL_FAILPOINTS names `name` (and
    KEEL_TEST_FAULTS=1); otherwise nothing.

    Stands in for a disk that stops answering (an fdatasync that never returns), so a test
    can check that the systemd watchdog stops pinging. The process is expected to be killed.
    """
    if name in _ARMED_FAILPOINTS:
        log.warning("failpoint hit, blocking thread name=%s", name)
        while True:
            time.sleep(STALL_SLEEP_S)


# ---- descriptors -----------------------------------------------------------------------------


def open_append(path: Path) -> int:
    """Open an existing file to append to it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    _paths_by_fd[fd] = str(path)
    return fd


def create_append(path: Path) -> int:
    """Create `path` (must not exist; on failure nothing was created) and open it to append.

    Not durable until the file and its directory are fsynced.
    """
    fd = _observed(
        lambda: Create(str(path)),
        lambda: os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644),
    )
    _paths_by_fd[fd] = str(path)
    return fd


def close(fd: int) -> None:
    _paths_by_fd.pop(fd, None)
    os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Append data: os.write until every byte is written (a short write is legal)."""
    view = memoryview(data)
    while view:
        written = _write_once(fd, view)
        assert written > 0, "os.write wrote nothing"
        view = view[written:]


def fdatasync(fd: int) -> float:
    """fdatasync `fd`, count it, and return the seconds it took. OSError propagates."""
    global fsync_count
    started_s = time.monotonic()
    _observed(lambda: Fdatasync(_path_of(fd)), lambda: os.fdatasync(fd))
    with _counter_lock:
        fsync_count += 1
    return time.monotonic() - started_s


def fsync(fd: int) -> None:
    """fsync `fd` (data and every piece of metadata, e.g. a new file's inode)."""
    global fsync_count
    _observed(lambda: Fsync(_path_of(fd)), lambda: os.fsync(fd))
    with _counter_lock:
        fsync_count += 1


def truncate_fd_durably(fd: int, size_bytes: int) -> None:
    """Set the size of an open file and fsync it."""
    _observed(lambda: Truncate(_path_of(fd), size_bytes), lambda: os.ftruncate(fd, size_bytes))
    fsync(fd)


# ---- whole files -----------------------------------------------------------------------------


def create_file_durably(path: Path, data: bytes = b"") -> None:
    """Create `path` (must not exist) holding `data`, fsynced with its directory."""
    fd = _observed(
        lambda: Create(str(path)),
        lambda: os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644),
    )
    _paths_by_fd[fd] = str(path)
    try:
        write_all(fd, data)
        fsync(fd)
    finally:
        close(fd)
    fsync_directory(path.parent)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace path by data; after a crash the old or the new file exists, never a mix."""
    temp_path = path.with_name(f".{path.name}.tmp")
    fd = _observed(
        lambda: _create_or_empty(temp_path),
        lambda: os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    )
    _paths_by_fd[fd] = str(temp_path)
    try:
        write_all(fd, data)
        fsync(fd)
    finally:
        close(fd)
    failpoint("files.before_replace")
    _observed(lambda: Rename(str(temp_path), str(path)), lambda: os.replace(temp_path, path))
    fsync_directory(path.parent)


def save_by_library(path: Path, save: Callable[[str], object]) -> None:
    """Let a library write the whole file `path` (e.g. hnswlib's save_index). Not durable:
    fsync_file it, then rename it into place."""
    recorder = _recorder
    if recorder is None:
        save(str(path))
        return
    with recorder.lock:
        created = _create_or_empty(path)
        if recorder.fault is not None:
            recorder.fault(created)
        try:
            save(str(path))
        finally:
            # Even a failed save may have left part of the file behind.
            if path.exists():
                recorder.events.append(created)
                recorder.events.append(Write(str(path), 0, path.read_bytes()))


def fsync_file(path: Path) -> None:
    """fsync a file some library wrote (hnswlib's save_index) before it is renamed in."""
    fd = os.open(path, os.O_RDONLY)
    _paths_by_fd[fd] = str(path)
    try:
        fsync(fd)
    finally:
        close(fd)


def truncate_durably(path: Path, size_bytes: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    _paths_by_fd[fd] = str(path)
    try:
        truncate_fd_durably(fd, size_bytes)
    finally:
        close(fd)


# ---- directories and names -------------------------------------------------------------------


def fsync_directory(path: Path) -> None:
    """Make creations, renames and deletions inside `path` durable."""
    global fsync_count
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _observed(lambda: FsyncDir(str(path)), lambda: os.fsync(fd))
    finally:
        os.close(fd)
    with _counter_lock:
        fsync_count += 1


def rename_durably(source: Path, target: Path) -> None:
    """Rename and fsync the directories involved, so the rename survives power loss."""
    _observed(lambda: Rename(str(source), str(target)), lambda: os.rename(source, target))
    fsync_directory(target.parent)
    if source.parent != target.parent:
        fsync_directory(source.parent)


def unlink_durably(path: Path) -> None:
    _observed(lambda: Unlink(str(path)), lambda: os.unlink(path))
    fsync_directory(path.parent)


def make_directory_durably(path: Path) -> None:
    """Create directory `path` (must not exist) and fsync its parent."""
    _observed(lambda: Mkdir(str(path)), lambda: os.mkdir(path))
    fsync_directory(path.parent)


def make_directories(path: Path) -> None:
    """Create `path` and any missing parents, each made durable; nothing if it exists."""
    if path.is_dir():
        return
    make_directories(path.parent)
    make_directory_durably(path)


def remove_tree(path: Path) -> None:
    """Remove a file or a directory tree, deepest entries first. Not durable until the
    parent of `path` is fsynced; a crash may leave any part of the tree behind."""
    if path.is_dir() and not path.is_symlink():
        for child in list(path.iterdir()):
            remove_tree(child)
        _observed(lambda: Rmdir(str(path)), lambda: os.rmdir(path))
    else:
        _observed(lambda: Unlink(str(path)), lambda: os.unlink(path))


# ---- private ---------------------------------------------------------------------------------


def _write_once(fd: int, view: memoryview) -> int:
    recorder = _recorder
    if recorder is None:
        return os.write(fd, view)
    with recorder.lock:
        # Every write appends (see the module docstring), so the offset is the file's size.
        event = Write(_path_of(fd), os.fstat(fd).st_size, bytes(view))
        if recorder.fault is not None:
            recorder.fault(event)
        written = os.write(fd, view)
        recorder.events.append(replace(event, data=event.data[:written]))
        return written


def _path_of(fd: int) -> str:
    path = _paths_by_fd.get(fd)
    assert path is not None, f"descriptor {fd} was not opened through engine.files"
    return path


def _create_or_empty(path: Path) -> FileEvent:
    """The event of an open with O_CREAT | O_TRUNC: a new file, or an existing one emptied."""
    return Truncate(str(path), 0) if path.exists() else Create(str(path))
