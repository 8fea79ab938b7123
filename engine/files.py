"""The one place that makes file changes durable: append, fsync, atomic replace, rename, unlink.

Owns: every fsync/fdatasync/rename/unlink/truncate/mkdir the engine does outside LMDB, and the
failpoints that let recovery tests SIGKILL the process between two of those steps.
Not here: what the bytes mean (wal.py, index.py).

Tests read `fsync_count` to prove group commit shares fsyncs; crash tests name failpoints in
the KEEL_FAILPOINTS environment variable (comma separated) to die at exactly that spot.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_ARMED_FAILPOINTS = frozenset(
    name.strip() for name in os.environ.get("KEEL_FAILPOINTS", "").split(",") if name.strip()
)
_counter_lock = threading.Lock()
fsync_count = 0  # every fsync/fdatasync this process did through this module


def failpoint(name: str) -> None:
    """SIGKILL this process here if KEEL_FAILPOINTS names `name`; otherwise nothing."""
    if name in _ARMED_FAILPOINTS:
        log.warning("failpoint hit, killing process name=%s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def fdatasync(fd: int) -> float:
    """fdatasync `fd`, count it, and return the seconds it took. OSError propagates."""
    global fsync_count
    started_s = time.monotonic()
    os.fdatasync(fd)
    with _counter_lock:
        fsync_count += 1
    return time.monotonic() - started_s


def fsync_directory(path: Path) -> None:
    """Make creations, renames and deletions inside `path` durable."""
    global fsync_count
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    with _counter_lock:
        fsync_count += 1


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a short write is legal for regular files)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        assert written > 0, "os.write wrote nothing"
        view = view[written:]


def create_file_durably(path: Path, data: bytes = b"") -> None:
    """Create `path` (must not exist) holding `data`, fsynced with its directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        fdatasync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace path by data; after a crash the old or the new file exists, never a mix."""
    temp_path = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    failpoint("files.before_replace")
    os.replace(temp_path, path)
    fsync_directory(path.parent)


def fsync_file(path: Path) -> None:
    """fsync a file some library wrote (hnswlib's save_index) before it is renamed in."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_durably(source: Path, target: Path) -> None:
    """Rename and fsync the directories involved, so the rename survives power loss."""
    os.rename(source, target)
    fsync_directory(target.parent)
    if source.parent != target.parent:
        fsync_directory(source.parent)


def unlink_durably(path: Path) -> None:
    os.unlink(path)
    fsync_directory(path.parent)


def truncate_durably(path: Path, size_bytes: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory_durably(path: Path) -> None:
    path.mkdir()
    fsync_directory(path.parent)
