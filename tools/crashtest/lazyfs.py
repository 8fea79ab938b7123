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

LazyFS is not on PyPI or in Debian; it is built from source (C++17, FUSE 3). Keel's own
tests run this module against a stand-in program (tests/recovery/test_crashtest_tool.py)
that speaks the same FIFO protocol but caches nothing: that checks the orchestration, not
LazyFS.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

MOUNT_TIMEOUT_S = 15.0
CLEAR_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CACHE_SIZE = "2gb"  # LazyFS holds unsynced data here; more than a run writes between kills
INSTALL_HELP = (
    "--power-loss needs LazyFS, a FUSE file system that keeps writes until they are fsynced "
    "(https://github.com/dsrhaslab/lazyfs). Install FUSE 3 and a compiler "
    "(`apt install fuse3 libfuse3-dev cmake g++`), then build it: `git clone "
    "https://github.com/dsrhaslab/lazyfs && cd lazyfs && (cd libs/libpcache && ./build.sh) && "
    "(cd lazyfs && ./build.sh)`, and pass `--lazyfs lazyfs/lazyfs/build/lazyfs` or put that "
    "binary on PATH. /dev/fuse must exist and be usable by this user."
)


class LazyFsMissing(Exception):
    """LazyFS or FUSE is not available here; the message says how to get it."""


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

    async def mount(self) -> None:
        """Start LazyFS in the foreground of a child process; return once mounted."""
        for directory in (self.mount_dir, self.root_dir, self.log_path.parent):
            directory.mkdir(parents=True, exist_ok=True)
        config_path = self.mount_dir.parent / "lazyfs.toml"
        config_path.write_text(self._config())
        os.mkfifo(self.done_fifo_path)  # LazyFS creates the faults FIFO; this one is ours
        self._process = self._start(config_path)
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

    def _start(self, config_path: Path) -> subprocess.Popen[bytes]:
        command = [
            str(self.binary),
            str(self.mount_dir),
            "--config-path",
            str(config_path),
            "-o",
            "modules=subdir",
            "-o",
            f"subdir={self.root_dir}",
            "-f",
        ]
        with open(self.output_path, "ab") as log_file:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )

    async def lose_unsynced(self) -> None:
        """Drop every write not yet fsynced, as a power cut would; wait until it is done."""
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(None, self._clear_cache), CLEAR_TIMEOUT_S)
        self.clear_count += 1

    async def unmount(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._fusermount)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.get_running_loop().run_in_executor(None, process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()

    def _fusermount(self) -> None:
        fusermount = _which("fusermount3") or _which("fusermount")
        if fusermount is not None and is_mounted(self.mount_dir):
            subprocess.run(
                [str(fusermount), "-u", str(self.mount_dir)],
                check=False,
                capture_output=True,
                timeout=STOP_TIMEOUT_S,
            )

    def _clear_cache(self) -> None:
        # Opening the completion FIFO for reading blocks until LazyFS opens it to answer,
        # so it is opened only after the command is written.
        with open(self.fifo_path, "w") as faults:
            faults.write("lazyfs::clear-cache\n")
        with open(self.done_fifo_path) as done:
            done.readline()

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
