"""Power loss for the crash test: the storage on LazyFS, its unsynced writes dropped at a kill.

Owns: finding the `lazyfs` binary (or saying how to get it), mounting it over a root
directory, `lose_unsynced()` (LazyFS's `lazyfs::clear-cache` fault, waited for through its
completion FIFO), and unmounting.
Not here: when kills happen (runner.py).

LazyFS (github.com/dsrhaslab/lazyfs) is a FUSE file system with its own page cache that
writes data to the file system below only on fsync/fdatasync. Killing the server and then
clearing that cache leaves the storage exactly as a power cut would: everything fsynced is
there, nothing else. `keel crashtest --power-loss` does that after every kill, including
the kills during recovery.

The FIFO protocol, as LazyFS 0.3 / main (lazyfs/src/main.cpp, `fht_worker`) speaks it:
its faults thread opens the faults FIFO O_RDWR and the completion FIFO O_WRONLY (blocking
until a reader exists), once, then loops: `read(faults, 100 bytes)` is one command;
after clearing the cache it `write`s "finished::clear-cache\n" to the completion FIFO. If
no reader has that FIFO open at that moment, the write fails (EPIPE), LazyFS logs "failed
to write to notifier fifo" and the answer is gone for good. So the reader must exist
before the command is sent: this module opens the completion FIFO for reading (and one
writer of its own, so the reader never sees end-of-file) before LazyFS starts and keeps
both open until the unmount; a clear drains nothing stale, writes the command, then polls
for the answer against a deadline. The same holds for a LazyFS that would open the FIFO
O_WRONLY|O_NONBLOCK per answer (that open fails with ENXIO without a reader).
One command at a time: LazyFS takes whatever one read returns as one command.

LazyFS is not on PyPI or in Debian; it is built from source (C++17, FUSE 3; see
tools/build-lazyfs.sh). Keel's own tests run this module against stand-ins that speak the
same FIFO protocol but cache nothing (tests/recovery/test_crashtest_tool.py,
tests/recovery/test_crashtest_lazyfs_fifo.py), and, when a real LazyFS is built, against it
(tests/recovery/test_crashtest_power_loss_lazyfs.py, slow).
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

MOUNT_TIMEOUT_S = 15.0
CLEAR_TIMEOUT_S = 30.0  # clearing takes milliseconds; this only bounds a LazyFS that hangs
CLEAR_POLL_S = 0.2  # how often a clear that waits checks that LazyFS is still running
CLEAR_COMMAND = b"lazyfs::clear-cache\n"
CLEAR_ANSWER = b"finished::clear-cache\n"
ANSWER_BYTES_MAX = 4096  # answers are one short line; more than this is not LazyFS talking
CONFIG_NAME = "lazyfs.toml"  # relative, see _start
STOP_TIMEOUT_S = 10.0
CACHE_SIZE = "2gb"  # LazyFS holds unsynced data here; more than a run writes between kills
INSTALL_HELP = (
    "--power-loss needs LazyFS, a FUSE file system that keeps writes until they are fsynced "
    "(https://github.com/dsrhaslab/lazyfs), built from source. On Debian or Ubuntu, "
    "tools/build-lazyfs.sh in Keel's source tree installs the packages it needs with apt "
    "(cmake g++ fuse3 libfuse3-dev libtoml11-dev libspdlog-dev libfmt-dev), clones and "
    "builds it into /tmp/lazyfs/lazyfs; pass that path with --lazyfs or put the binary on "
    "PATH. /dev/fuse must exist and be usable by this user."
)


class LazyFsMissing(Exception):
    """LazyFS or FUSE is not available here; the message says how to get it."""


class LazyFsFailure(Exception):
    """LazyFS did not do what it was told mid-run (no answer, exited): the harness failed,
    which says nothing about the server under test."""


def find_lazyfs(binary: Path | None) -> Path:
    """The lazyfs binary to use; LazyFsMissing (with install help) if there is none."""
    found = binary if binary is not None else _which("lazyfs")
    if found is None or not found.is_file() or not os.access(found, os.X_OK):
        where = f"{binary} is not an executable file" if binary else "no `lazyfs` on PATH"
        raise LazyFsMissing(f"{where}. {INSTALL_HELP}")
    if not Path("/dev/fuse").exists():
        raise LazyFsMissing(f"/dev/fuse does not exist on this machine. {INSTALL_HELP}")
    return found


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


class LazyFs:
    """One LazyFS mount: `mount_dir` shows `root_dir` through LazyFS's cache."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.mount_dir = workdir / "lazyfs-mount"
        self.root_dir = workdir / "lazyfs-root"
        self.fifo_path = workdir / "lazyfs-faults.fifo"
        self.done_fifo_path = workdir / "lazyfs-done.fifo"
        self.log_path = workdir / "logs" / "lazyfs.log"  # LazyFS's own log (`logfile`)
        self.output_path = workdir / "logs" / "lazyfs-output.log"  # its stdout and stderr
        self.clear_count = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._done_fd: int | None = None  # our reader of the completion FIFO
        self._done_keep_fd: int | None = None  # our writer: the reader never sees EOF

    async def mount(self) -> None:
        """Start LazyFS in the foreground of a child process; return once mounted."""
        for directory in (self.mount_dir, self.root_dir, self.log_path.parent):
            directory.mkdir(parents=True, exist_ok=True)
        (self.mount_dir.parent / CONFIG_NAME).write_text(self._config())
        os.mkfifo(self.done_fifo_path)  # LazyFS creates the faults FIFO; this one is ours
        # The reader first, before LazyFS can answer anything (see the module docstring).
        self._done_fd = os.open(self.done_fifo_path, os.O_RDONLY | os.O_NONBLOCK)
        self._done_keep_fd = os.open(self.done_fifo_path, os.O_WRONLY | os.O_NONBLOCK)
        self._process = self._start()
        deadline_s = time.monotonic() + MOUNT_TIMEOUT_S
        while not (is_mounted(self.mount_dir) and self.fifo_path.exists()):
            if self._process.poll() is not None:
                raise LazyFsMissing(
                    f"lazyfs exited with code {self._process.returncode} before mounting; "
                    f"its output: {self.output_path}. {INSTALL_HELP}"
                )
            if time.monotonic() > deadline_s:
                await self.unmount()
                raise LazyFsMissing(f"lazyfs did not mount within {MOUNT_TIMEOUT_S} s")
            await asyncio.sleep(0.05)

    def _start(self) -> subprocess.Popen[bytes]:
        # LazyFS ignores a --config-path containing "-o" in any case (`strcasestr` in
        # main.cpp takes it for a FUSE option) and then aborts on config/default.toml; a
        # work directory like /tmp/keel-crashtest-o1x2 would hit that. A relative name from
        # the work directory cannot.
        assert "-o" not in CONFIG_NAME.lower(), CONFIG_NAME
        command = [
            str(self.binary),
            str(self.mount_dir),
            "--config-path",
            CONFIG_NAME,
            "-o",
            "modules=subdir",
            "-o",
            f"subdir={self.root_dir}",
            "-f",
            # Single-threaded FUSE: LazyFS's cache looks items up without its lock
            # (Cache::has_content_cached, called unlocked from lazyfs.cpp), so concurrent
            # requests race an insert's rehash; a 100-cycle run died of that SIGSEGV in
            # unordered_map::find. One request at a time changes no power-loss semantics.
            "-s",
        ]
        with open(self.output_path, "ab") as log_file:
            return subprocess.Popen(
                command,
                cwd=self.mount_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    async def lose_unsynced(self) -> None:
        """Drop every write not yet fsynced, as a power cut would; return once LazyFS says
        it is done. LazyFsFailure if it does not say so within CLEAR_TIMEOUT_S or exits;
        the thread that waits ends by that deadline either way."""
        await asyncio.to_thread(self._clear_cache, time.monotonic() + CLEAR_TIMEOUT_S)
        self.clear_count += 1

    async def unmount(self) -> None:
        """Unmount, stop LazyFS and close our FIFO ends; bounded even if LazyFS hangs."""
        is_unmounted = await asyncio.to_thread(self._fusermount, "-u")
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        if not is_unmounted:
            # A LazyFS that hung could not answer the unmount; with it gone, detach lazily.
            await asyncio.to_thread(self._fusermount, "-uz")
        for fd in (self._done_fd, self._done_keep_fd):
            if fd is not None:
                os.close(fd)
        self._done_fd = self._done_keep_fd = None

    def _fusermount(self, flags: str) -> bool:
        """Run `fusermount3 <flags>` on the mount; False if it is still mounted after."""
        fusermount = _which("fusermount3") or _which("fusermount")
        if fusermount is not None and is_mounted(self.mount_dir):
            try:
                subprocess.run(
                    [str(fusermount), flags, str(self.mount_dir)],
                    check=False,
                    capture_output=True,
                    timeout=STOP_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired:
                return False
        return not is_mounted(self.mount_dir)

    def _clear_cache(self, deadline_s: float) -> None:
        assert self._done_fd is not None, "clear-cache before mount"
        self.check_running("a clear-cache was due")  # LazyFS may have died under the load
        stale = self._read_available()
        if stale:
            raise LazyFsFailure(f"LazyFS sent {stale!r}, answering no command of ours")
        self._send(CLEAR_COMMAND)
        answer = b""
        while not answer.endswith(b"\n"):
            self.check_running("it answered lazyfs::clear-cache")
            if time.monotonic() > deadline_s:
                raise LazyFsFailure(
                    f"LazyFS did not answer lazyfs::clear-cache within {CLEAR_TIMEOUT_S} s "
                    f"(its log: {self.log_path})"
                )
            readable, _, _ = select.select([self._done_fd], [], [], CLEAR_POLL_S)
            if readable:
                answer += self._read_available()
            if len(answer) > ANSWER_BYTES_MAX:
                raise LazyFsFailure(f"LazyFS answered {answer[:100]!r}... to lazyfs::clear-cache")
        if answer != CLEAR_ANSWER:
            raise LazyFsFailure(f"LazyFS answered {answer!r} to lazyfs::clear-cache")

    def _send(self, command: bytes) -> None:
        """Write one command to the faults FIFO; never blocks (LazyFS holds it open)."""
        try:
            fd = os.open(self.fifo_path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            # ENXIO: nobody has the FIFO open for reading, so LazyFS is gone or going.
            self.check_running(f"sending {command!r}")
            raise LazyFsFailure(f"cannot send {command!r} to LazyFS: {error}") from error
        try:
            written_bytes = os.write(fd, command)
        finally:
            os.close(fd)
        # Under PIPE_BUF bytes: written whole or not at all; LazyFS reads it in one read.
        assert written_bytes == len(command), (written_bytes, command)

    def _read_available(self) -> bytes:
        assert self._done_fd is not None
        try:
            return os.read(self._done_fd, ANSWER_BYTES_MAX)
        except BlockingIOError:
            return b""

    def check_running(self, doing: str) -> None:
        """LazyFsFailure if LazyFS is no longer running; `doing` names what it missed."""
        if self._process is None or self._process.poll() is not None:
            code = None if self._process is None else self._process.returncode
            how = f"exited with code {code}"
            if code is not None and code < 0:
                how = f"was killed by {signal.Signals(-code).name}"  # SIGSEGV: a LazyFS bug
            raise LazyFsFailure(f"LazyFS {how} before {doing} (its output: {self.output_path})")

    def _config(self) -> str:
        return (
            "[faults]\n"
            f'fifo_path="{self.fifo_path}"\n'
            f'fifo_path_completed="{self.done_fifo_path}"\n'
            "[cache]\n"
            "apply_eviction=false\n"
            "[cache.simple]\n"
            f'custom_size="{CACHE_SIZE}"\n'
            "blocks_per_page=1\n"
            "[filesystem]\n"
            "log_all_operations=false\n"
            f'logfile="{self.log_path}"\n'
        )


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return None if found is None else Path(found)
