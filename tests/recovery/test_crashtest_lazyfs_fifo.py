"""`keel crashtest --power-loss`: the clear-cache handshake with LazyFS never loses an answer.

Method: a stand-in for the `lazyfs` binary (a separate process, no FUSE, no cache) speaks
LazyFS's FIFO protocol and answers each `lazyfs::clear-cache` the instant it reads it, in
one of two ways:

- `main`: as LazyFS 0.3 and main do (lazyfs/src/main.cpp, `fht_worker`): the completion
  FIFO opened O_WRONLY once, before the first command, and one `write` per answer, which
  fails (EPIPE) when no reader has the FIFO open at that moment;
- `per_answer`: the completion FIFO opened O_WRONLY|O_NONBLOCK for each answer, which
  fails (ENXIO) without a reader.

Either way an answer written before the tool's reader exists is lost, and a tool that opens
its reader only after sending the command then waits forever; that is what stopped
`--power-loss` runs on a real LazyFS after a few cycles (issue 19). Many clears in a row
must each be answered, and the stand-in must never fail to deliver one. A LazyFS that
exits or stays silent must be reported as a harness failure within the deadline.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from pathlib import Path

import pytest

import tools.crashtest.lazyfs
from tools.crashtest.lazyfs import LazyFs, LazyFsFailure

CLEARS_COUNT = 60  # the old handshake lost an answer within a handful of clears
CLEAR_TIMEOUT_S = 3.0  # the stand-in answers in microseconds; this only bounds a lost answer

FAKE_LAZYFS = '''#!{python}
"""Stands in for lazyfs: the faults FIFO protocol only, answering at once."""
import errno, os, sys, tomllib
MODE, ANSWERS_MAX = {mode!r}, {answers_max!r}
config_path = sys.argv[sys.argv.index("--config-path") + 1]  # relative to the cwd, as LazyFS
config = tomllib.load(open(config_path, "rb"))["faults"]
fifo_path, done_path = config["fifo_path"], config["fifo_path_completed"]
log = open(os.path.join(os.path.dirname(fifo_path), "fake-lazyfs.log"), "a", buffering=1)
for path in (fifo_path, done_path):
    try:
        os.mkfifo(path)
    except FileExistsError:
        pass
faults = os.open(fifo_path, os.O_RDWR)
done = os.open(done_path, os.O_WRONLY) if MODE == "main" else None
answers = 0
while True:
    command = os.read(faults, 100).decode().rstrip("\\n")
    log.write(f"received {{command}}\\n")
    if command != "lazyfs::clear-cache":
        continue
    if ANSWERS_MAX is not None and answers >= ANSWERS_MAX:
        continue  # gone silent
    try:
        fd = done if MODE == "main" else os.open(done_path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"finished::clear-cache\\n")
        if MODE != "main":
            os.close(fd)
        answers += 1
        log.write("answered\\n")
    except OSError as error:
        log.write(f"failed to write to notifier fifo: {{errno.errorcode[error.errno]}}\\n")
'''


def write_fake_lazyfs(directory: Path, mode: str, answers_max: int | None = None) -> Path:
    """An executable stand-in for `lazyfs` (see FAKE_LAZYFS); its log goes beside the FIFOs."""
    path = directory / f"fake-lazyfs-{mode}"
    path.write_text(FAKE_LAZYFS.format(python=sys.executable, mode=mode, answers_max=answers_max))
    path.chmod(0o755)
    return path


def wake_a_reader_stuck_on(path: Path) -> None:
    """A handshake that lost its answer may leave a thread blocked in open() of the
    completion FIFO, which would keep the test from ending instead of failing; a writer
    that comes and goes lets it return."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        assert error.errno in (errno.ENXIO, errno.ENOENT), error  # no reader: none stuck


@pytest.fixture
def no_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in mounts nothing: the mount directory counts as mounted."""
    monkeypatch.setattr(tools.crashtest.lazyfs, "is_mounted", lambda path: path.is_dir())
    monkeypatch.setattr(tools.crashtest.lazyfs, "CLEAR_TIMEOUT_S", CLEAR_TIMEOUT_S)


@pytest.mark.parametrize("mode", ["main", "per_answer"])
def test_every_clear_cache_is_answered_even_when_lazyfs_answers_at_once(
    tmp_path: Path, mode: str, no_fuse: None
) -> None:
    lazyfs = LazyFs(write_fake_lazyfs(tmp_path, mode), tmp_path / "work")

    async def clear_many_times() -> None:
        await lazyfs.mount()
        try:
            for _ in range(CLEARS_COUNT):
                await lazyfs.lose_unsynced()
        finally:
            await lazyfs.unmount()
            wake_a_reader_stuck_on(lazyfs.done_fifo_path)

    asyncio.run(clear_many_times())
    log = (tmp_path / "work" / "fake-lazyfs.log").read_text().splitlines()
    assert [line for line in log if line.startswith("failed")] == []
    assert log.count("received lazyfs::clear-cache") == CLEARS_COUNT
    assert log.count("answered") == CLEARS_COUNT
    assert lazyfs.clear_count == CLEARS_COUNT


def test_a_silent_lazyfs_is_a_harness_failure_within_the_deadline(
    tmp_path: Path, no_fuse: None
) -> None:
    lazyfs = LazyFs(write_fake_lazyfs(tmp_path, "main", answers_max=1), tmp_path / "work")

    async def clear_twice() -> tuple[LazyFsFailure, float]:
        await lazyfs.mount()
        try:
            await lazyfs.lose_unsynced()
            started_s = asyncio.get_running_loop().time()
            with pytest.raises(LazyFsFailure) as caught:
                await lazyfs.lose_unsynced()
            return caught.value, asyncio.get_running_loop().time() - started_s
        finally:
            await lazyfs.unmount()

    error, waited_s = asyncio.run(clear_twice())
    assert f"did not answer lazyfs::clear-cache within {CLEAR_TIMEOUT_S} s" in str(error)
    assert str(lazyfs.log_path) in str(error)
    assert CLEAR_TIMEOUT_S <= waited_s < CLEAR_TIMEOUT_S + 5, waited_s
    assert lazyfs.clear_count == 1


def test_a_lazyfs_that_exits_is_a_harness_failure_at_once(tmp_path: Path, no_fuse: None) -> None:
    lazyfs = LazyFs(write_fake_lazyfs(tmp_path, "main"), tmp_path / "work")

    async def clear_after_lazyfs_died() -> LazyFsFailure:
        await lazyfs.mount()
        try:
            assert lazyfs._process is not None
            lazyfs._process.kill()
            await asyncio.to_thread(lazyfs._process.wait, CLEAR_TIMEOUT_S)
            with pytest.raises(LazyFsFailure) as caught:
                await lazyfs.lose_unsynced()
            return caught.value
        finally:
            await lazyfs.unmount()

    error = asyncio.run(clear_after_lazyfs_died())
    assert "LazyFS was killed by SIGKILL before a clear-cache was due" in str(error)
    assert lazyfs.clear_count == 0


def test_the_config_path_never_contains_what_lazyfs_takes_for_a_fuse_option(
    tmp_path: Path, no_fuse: None
) -> None:
    """LazyFS ignores a --config-path containing "-o" (any case) and aborts; a work
    directory named like /tmp/keel-crashtest-o1x2 must still mount."""
    workdir = tmp_path / "keel-crashtest-O1x2"
    lazyfs = LazyFs(write_fake_lazyfs(tmp_path, "main"), workdir)

    async def mount_and_clear() -> list[str]:
        await lazyfs.mount()
        try:
            await lazyfs.lose_unsynced()
            assert lazyfs._process is not None
            return [str(arg) for arg in lazyfs._process.args]
        finally:
            await lazyfs.unmount()

    argv = asyncio.run(mount_and_clear())
    config_arg = argv[argv.index("--config-path") + 1]
    assert "-o" not in config_arg.lower(), argv
    assert (workdir / config_arg).is_file()
    assert lazyfs.clear_count == 1
