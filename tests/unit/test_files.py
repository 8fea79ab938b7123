"""engine.files: the recorded event of each operation, fault injection, and that the rest of
the engine changes files only through it."""

from __future__ import annotations

import ast
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import files
from engine.files import (
    Create,
    Fdatasync,
    Fsync,
    FsyncDir,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
)
from engine.wal.format import frame_batch
from engine.wal.log import Wal

ENGINE_DIR = Path(__file__).resolve().parents[2] / "engine"
# Calls that change files. Outside files.py only the storage lock may use them (files.py's
# docstring says why): flock state and a pid for humans, never data.
MUTATING_CALLS = {
    ("os", name)
    for name in [
        "open",
        "write",
        "pwrite",
        "writev",
        "ftruncate",
        "truncate",
        "fsync",
        "fdatasync",
        "rename",
        "replace",
        "unlink",
        "remove",
        "rmdir",
        "mkdir",
        "makedirs",
        "link",
        "symlink",
    ]
} | {("shutil", name) for name in ["rmtree", "move", "copy", "copy2", "copyfile", "copytree"]}
MUTATING_METHODS = {"unlink", "mkdir", "rmdir", "touch", "write_bytes", "write_text", "rename"}
ALLOWED = {("catalog.py", "lock_storage")}


@pytest.fixture
def recorder() -> Iterator[files.Recorder]:
    recorder = files.Recorder()
    files.install_recorder(recorder)
    try:
        yield recorder
    finally:
        files.install_recorder(None)


def test_creating_a_file_durably_records_create_write_fsync_and_directory_fsync(
    tmp_path: Path, recorder: files.Recorder
) -> None:
    path = tmp_path / "f"
    files.create_file_durably(path, b"hello")
    assert recorder.events == [
        Create(str(path)),
        Write(str(path), 0, b"hello"),
        Fsync(str(path)),
        FsyncDir(str(tmp_path)),
    ]
    assert path.read_bytes() == b"hello"


def test_atomic_replace_records_temp_file_rename_and_directory_fsync(
    tmp_path: Path, recorder: files.Recorder
) -> None:
    path = tmp_path / "meta.json"
    temp = str(tmp_path / ".meta.json.tmp")
    files.write_file_atomic(path, b"1")
    (tmp_path / ".meta.json.tmp").write_bytes(b"left by a crash")
    files.write_file_atomic(path, b"22")
    assert recorder.events == [
        Create(temp),
        Write(temp, 0, b"1"),
        Fsync(temp),
        Rename(temp, str(path)),
        FsyncDir(str(tmp_path)),
        Truncate(temp, 0),  # O_TRUNC of the leftover temp file
        Write(temp, 0, b"22"),
        Fsync(temp),
        Rename(temp, str(path)),
        FsyncDir(str(tmp_path)),
    ]
    assert path.read_bytes() == b"22"


def test_names_and_directories_are_recorded(tmp_path: Path, recorder: files.Recorder) -> None:
    files.make_directories(tmp_path / "a" / "b")
    files.create_file_durably(tmp_path / "a" / "b" / "f")
    files.rename_durably(tmp_path / "a" / "b", tmp_path / "c")
    files.remove_tree(tmp_path / "c")
    files.create_file_durably(tmp_path / "g")
    files.unlink_durably(tmp_path / "g")
    a, b, c, f, g = (str(tmp_path / p) for p in ("a", "a/b", "c", "a/b/f", "g"))
    assert recorder.events == [
        Mkdir(a),
        FsyncDir(str(tmp_path)),
        Mkdir(b),
        FsyncDir(a),
        Create(f),
        Fsync(f),
        FsyncDir(b),
        Rename(b, c),
        FsyncDir(str(tmp_path)),  # the target's directory, then the source's
        FsyncDir(a),
        Unlink(str(tmp_path / "c" / "f")),
        Rmdir(c),
        Create(g),
        Fsync(g),
        FsyncDir(str(tmp_path)),
        Unlink(g),
        FsyncDir(str(tmp_path)),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_a_file_written_by_a_library_is_one_create_and_one_write(
    tmp_path: Path, recorder: files.Recorder
) -> None:
    path = tmp_path / "graph.bin"
    files.save_by_library(path, lambda name: Path(name).write_bytes(b"\x01" * 1500))
    files.fsync_file(path)
    assert recorder.events == [
        Create(str(path)),
        Write(str(path), 0, b"\x01" * 1500),
        Fsync(str(path)),
    ]


async def test_a_wal_append_is_one_write_at_the_end_and_one_fdatasync(
    tmp_path: Path, recorder: files.Recorder
) -> None:
    Wal.create(tmp_path / "wal")
    segment = str(tmp_path / "wal" / f"{0:020d}.wal")
    wal = Wal(tmp_path / "wal", "test", 1 << 20, fsync_slow_s=1.0)
    wal.open()
    wal.start()
    del recorder.events[:]
    await wal.append(b"a")[1]
    await wal.append(b"bc")[1]
    await wal.close()
    first = frame_batch(0, [b"a"])
    assert recorder.events == [
        Write(segment, 0, first),
        Fdatasync(segment),
        Write(segment, len(first), frame_batch(1, [b"bc"])),
        Fdatasync(segment),
    ]


def test_a_fault_stops_the_operation_before_it_runs(tmp_path: Path) -> None:
    def no_space(event: files.FileEvent) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    recorder = files.Recorder(fault=no_space)
    files.install_recorder(recorder)
    try:
        with pytest.raises(OSError, match="No space left"):
            files.create_file_durably(tmp_path / "f", b"x")
    finally:
        files.install_recorder(None)
    assert not (tmp_path / "f").exists()
    assert recorder.events == []


def test_without_a_recorder_nothing_is_recorded(tmp_path: Path) -> None:
    recorder = files.Recorder()
    files.install_recorder(recorder)
    files.install_recorder(None)
    files.create_file_durably(tmp_path / "f", b"x")
    assert recorder.events == []
    assert files._recorder is None


def test_the_engine_changes_files_only_through_engine_files() -> None:
    """A file change that bypasses files.py is invisible to the crash-state tests."""
    offenders = []
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        if path.name == "files.py":
            continue
        for function, call in _calls(ast.parse(path.read_text())):
            target = call.func
            if not isinstance(target, ast.Attribute):
                is_mutating = isinstance(target, ast.Name) and target.id == "open"
            elif isinstance(target.value, ast.Name):
                module_call = (target.value.id, target.attr)
                is_mutating = module_call in MUTATING_CALLS or (
                    target.value.id not in ("os", "shutil") and target.attr in MUTATING_METHODS
                )
            else:
                is_mutating = target.attr in MUTATING_METHODS
            if is_mutating and (path.name, function) not in ALLOWED:
                offenders.append(f"{path.name}:{call.lineno} in {function}()")
    assert offenders == []


def _calls(tree: ast.Module) -> Iterator[tuple[str, ast.Call]]:
    """(name of the innermost enclosing function or "<module>", call) for every call."""

    def visit(node: ast.AST, function: str) -> Iterator[tuple[str, ast.Call]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                yield function, child
            yield from visit(child, function)

    return visit(tree, "<module>")
