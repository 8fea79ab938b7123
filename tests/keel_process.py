"""A real Keel server in a subprocess, for tests that need one (client, recovery, CLI).

`KeelProcess.start(storage_dir)` runs `python -m server --storage DIR --port P` from this
checkout, with stderr in a log file, and returns once `/readyz` answers 200. Every process
started here is registered, and conftest.py's autouse fixture SIGKILLs any still running
when a test ends, so a failing test never leaks a server.

Synchronisation is by polling a condition against a deadline (`wait_until`), never by sleeping
a fixed time (STYLE.md section 9).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0  # recovery of a big WAL can take a while; a healthy start takes ~1 s
EXIT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.02
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
PORT_ATTEMPTS_MAX = 3  # a free port can be taken between our probe and the server's bind

_log_numbers = itertools.count(1)
_running: list[KeelProcess] = []


def wait_until(predicate: Callable[[], T], timeout_s: float = 10.0) -> T:
    """Poll `predicate` until it returns something truthy and return that; AssertionError
    naming the predicate if it is still falsy after `timeout_s`."""
    deadline_s = time.monotonic() + timeout_s
    while not (result := predicate()):
        if time.monotonic() > deadline_s:
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"{name} not true within {timeout_s} s")
        time.sleep(POLL_INTERVAL_S)
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class KeelProcess:
    """One `python -m server` subprocess and its log file."""

    def __init__(self, popen: subprocess.Popen, port: int, storage_dir: Path, log_path: Path):
        self.popen = popen
        self.port = port
        self.storage_dir = storage_dir
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def start(
        cls,
        storage_dir: Path,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout_s: float = READY_TIMEOUT_S,
        module: str = "server",
    ) -> KeelProcess:
        """Start a server on `storage_dir` and return once `/readyz` answers 200 (`module`:
        what `python -m` runs, `server` or a wrapper of it such as tools/bench/ceiling.py).

        With `port=None` a free port is picked (and re-picked if another process takes it
        first). Raises AssertionError with the server's log if it exits or is not ready
        within `ready_timeout_s`.
        """
        for attempt in range(1, PORT_ATTEMPTS_MAX + 1):
            server = cls.spawn(storage_dir, port, extra_env, extra_args, module)
            try:
                if server.wait_ready(ready_timeout_s):
                    return server
            except AssertionError:
                server.kill_9()
                raise AssertionError(
                    f"keel not ready within {ready_timeout_s} s log={server.log_path}:\n"
                    f"{server.log_text()}"
                ) from None
            is_port_taken = "cannot listen" in server.log_text()
            if port is None and is_port_taken and attempt < PORT_ATTEMPTS_MAX:
                server.kill_9()  # already exited; this reaps and unregisters it
                continue
            server.kill_9()
            raise AssertionError(
                f"keel did not become ready exit_code={server.popen.returncode} "
                f"log={server.log_path}:\n{server.log_text()}"
            )
        raise AssertionError("unreachable")

    @classmethod
    def spawn(
        cls,
        storage_dir: Path,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        module: str = "server",
    ) -> KeelProcess:
        """Start a server and return at once, ready or not (for tests of failed starts)."""
        storage_dir = Path(storage_dir).resolve()
        port = free_port() if port is None else port
        log_path = storage_dir.parent / f"keel-{storage_dir.name}-{next(_log_numbers)}.log"
        command = [
            sys.executable, "-m", module,
            "--storage", str(storage_dir), "--host", "127.0.0.1", "--port", str(port),
            *extra_args,
        ]  # fmt: skip
        with open(log_path, "wb") as log_file:
            popen = subprocess.Popen(
                command,
                cwd=storage_dir.parent,
                env=_child_env(extra_env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = cls(popen, port, storage_dir, log_path)
        _running.append(server)
        return server

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """True once `/readyz` answers 200; False if the process exits first.
        AssertionError if neither happens within `timeout_s`."""

        def ready_or_exited() -> str | None:
            if self.popen.poll() is not None:
                return "exited"
            return "ready" if self.readyz_status() == 200 else None

        return wait_until(ready_or_exited, timeout_s) == "ready"

    def readyz_status(self) -> int | None:
        """The HTTP status of GET /readyz, or None if nothing answers yet."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def wait_exit(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """Wait for the process to exit and return its exit code (negative: killed by signal)."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"keel did not exit within {timeout_s} s; log:\n{self.log_text()}"
            ) from None

    def kill_9(self) -> int:
        """SIGKILL the server (a crash: nothing is flushed) and return its exit code."""
        if self.is_running():
            self.popen.send_signal(signal.SIGKILL)
        code = self.wait_exit()
        self._forget()
        return code

    def terminate(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """SIGTERM the server (a clean stop), wait for it to exit, return the exit code."""
        if self.is_running():
            self.popen.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout_s)
        self._forget()
        return code

    def log_text(self) -> str:
        """Everything the server wrote to stderr/stdout so far."""
        return self.log_path.read_text(errors="replace")

    def _forget(self) -> None:
        if self in _running:
            _running.remove(self)


def running_servers() -> list[KeelProcess]:
    """Servers started here and not yet stopped through kill_9()/terminate()."""
    return list(_running)


def kill_started_since(earlier: list[KeelProcess]) -> list[KeelProcess]:
    """SIGKILL every registered server that is not in `earlier`; return them."""
    leftovers = [server for server in _running if server not in earlier]
    for server in leftovers:
        server.kill_9()
    return leftovers


def kill_all_running() -> list[KeelProcess]:
    """SIGKILL every server started here that is still registered; return them."""
    return kill_started_since([])


def _child_env(extra_env: Mapping[str, str] | None) -> dict[str, str]:
    # The parent's KEEL__ settings must not leak into a test's server; a test passes its own.
    # Nor may systemd's variables, when the tests themselves run under systemd: a test's
    # server would notify (and ping the watchdog of) the unit running the tests.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KEEL__") and name not in SYSTEMD_VARIABLES
    }
    # Run this checkout's code even when another Keel is installed in the environment.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    return env
