"""The server under test: a command started on the scratch storage, killed, restarted.

Owns: the command template (`{storage}`, `{port}`, `{host}`), the process group each start
runs in, readiness (`GET /readyz` answers 200), SIGKILL and SIGTERM, and the log files.
Not here: what is sent to the server or checked (workload.py, verify.py).

By default the command is this checkout's Keel, `python -m server`, with the checkout on
PYTHONPATH so that its code runs even when another Keel is installed. A user's command runs
as given (split like a shell would, no shell involved) in a new session: SIGKILL and
SIGTERM go to its whole process group, so a wrapper script and the server it starts die
together, and a stop is over when the whole group is gone. The exit code reported is the
command's own process's, so a wrapper should `exec` the server. A server that leaves the
group, or runs elsewhere (a container), is out of reach.
Environment variables are passed through unchanged: `KEEL__...` settings apply.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMMAND = "{python} -m server --storage {storage} --host {host} --port {port}"
HOST = "127.0.0.1"
REQUIRED_PLACEHOLDERS = ("{storage}", "{port}")
EXIT_TIMEOUT_S = 30.0  # a SIGKILLed process is gone in milliseconds; SIGTERM drains first
POLL_INTERVAL_S = 0.02
PORT_ATTEMPTS_MAX = 3  # a free port can be taken between our probe and the server's bind
LOG_TAIL_LINES = 30


class StartFailed(Exception):
    """The server exited, or did not answer /readyz 200, within the deadline."""


@dataclass
class ServerCommand:
    """A command template; `argv` fills in the placeholders."""

    template: str
    is_default: bool

    @classmethod
    def parse(cls, template: str | None) -> ServerCommand:
        """The default command, or the user's; ValueError naming a missing placeholder."""
        if template is None:
            return cls(DEFAULT_COMMAND, is_default=True)
        missing = [name for name in REQUIRED_PLACEHOLDERS if name not in template]
        if missing:
            raise ValueError(f"--command must contain {' and '.join(missing)}: {template!r}")
        if not shlex.split(template):
            raise ValueError("--command is empty")
        return cls(template, is_default=False)

    def argv(self, storage_dir: Path, port: int) -> list[str]:
        values = {
            "{python}": sys.executable,
            "{storage}": str(storage_dir),
            "{port}": str(port),
            "{host}": HOST,
        }
        tokens = shlex.split(self.template)
        for placeholder, value in values.items():
            tokens = [token.replace(placeholder, value) for token in tokens]
        return tokens

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.is_default:
            # Run this checkout's Keel even when another one is installed.
            paths = [str(REPO_ROOT), env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        return env


class ServerProcess:
    """One start of the server: its process (group leader), port and log file."""

    def __init__(self, popen: subprocess.Popen, port: int, log_path: Path) -> None:
        self.popen = popen
        self.port = port
        self.log_path = log_path
        self.url = f"http://{HOST}:{port}"
        self.listening_s: float | None = None  # from spawn to the first HTTP answer
        self.ready_s: float | None = None  # from spawn to /readyz 200

    async def kill(self) -> int:
        """SIGKILL the process group (a crash: nothing flushed) and return the exit code of
        the command's own process once its group is gone (or EXIT_TIMEOUT_S passed)."""
        self._signal_group(signal.SIGKILL)
        exit_code = await self._wait_leader(EXIT_TIMEOUT_S)
        try:
            await self._wait_group(EXIT_TIMEOUT_S)
        except TimeoutError:
            pass  # SIGKILLed members that linger are zombies nobody reaps: they hold nothing
        return exit_code

    async def terminate(self, timeout_s: float) -> int:
        """SIGTERM the process group (a clean stop) and return the exit code of the command's
        own process once its group is gone; SIGKILL if that takes more than timeout_s."""
        self._signal_group(signal.SIGTERM)
        try:
            exit_code = await self._wait_leader(timeout_s)
            # A server started by a wrapper still holds the storage until it exits.
            await self._wait_group(timeout_s)
        except TimeoutError:
            return await self.kill()
        return exit_code

    async def _wait_leader(self, timeout_s: float) -> int:
        """The exit code (negative: the signal) of the command's own process."""
        try:
            return await asyncio.to_thread(self.popen.wait, timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"server pid={self.popen.pid} still running") from None

    async def _wait_group(self, timeout_s: float) -> None:
        deadline_s = time.monotonic() + timeout_s
        while _is_group_alive(self.popen.pid):
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"process group {self.popen.pid} still running")
            await asyncio.sleep(POLL_INTERVAL_S)

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"(log unreadable: {error})"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _signal_group(self, signal_number: int) -> None:
        try:
            os.killpg(self.popen.pid, signal_number)
        except ProcessLookupError:
            pass  # already gone, with its whole group: nothing left to signal


async def start_server(
    command: ServerCommand,
    storage_dir: Path,
    log_dir: Path,
    label: str,
    ready_timeout_s: float,
) -> ServerProcess:
    """Start the server and return once /readyz answers 200; StartFailed with the log's
    tail otherwise. A start that exits at once is retried on another port, in case
    another process took the port first."""
    for attempt in range(1, PORT_ATTEMPTS_MAX + 1):
        server = spawn_server(command, storage_dir, log_dir / f"server-{label}-{attempt}.log")
        try:
            if await wait_answering(server, ready_timeout_s, is_ready_needed=True):
                return server
        except TimeoutError:
            await server.kill()
            raise StartFailed(
                f"server not ready within {ready_timeout_s} s (log {server.log_path}):\n"
                f"{server.log_tail()}"
            ) from None
        await server.kill()  # the leader is gone; anything it started goes with its group
        if attempt == PORT_ATTEMPTS_MAX:
            raise StartFailed(
                f"server exited with code {server.popen.returncode} before it was ready "
                f"(log {server.log_path}):\n{server.log_tail()}"
            )
    raise AssertionError("unreachable")


def _is_group_alive(group_id: int) -> bool:
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member exists that we may not signal
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def spawn_server(command: ServerCommand, storage_dir: Path, log_path: Path) -> ServerProcess:
    """Start the server on a free port and return at once, ready or not."""
    port = free_port()
    argv = command.argv(storage_dir, port)
    with open(log_path, "wb") as log_file:
        try:
            popen = subprocess.Popen(
                argv,
                cwd=storage_dir.parent,
                env=command.env(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
        except OSError as error:
            raise StartFailed(f"cannot run {argv[0]!r}: {error}") from None
    return ServerProcess(popen, port, log_path)


async def wait_answering(server: ServerProcess, timeout_s: float, is_ready_needed: bool) -> bool:
    """Poll /readyz until it answers 200 (or, without `is_ready_needed`, anything at all:
    Keel listens before it recovers, answering 503 meanwhile). False if the process exits
    first; TimeoutError after timeout_s. Records `listening_s` and `ready_s`."""
    started_s = time.monotonic()
    deadline_s = started_s + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
        while server.is_running():
            try:
                async with session.get(f"{server.url}/readyz") as response:
                    status = response.status
            except (aiohttp.ClientError, OSError):
                status = None  # not listening yet: poll again until the deadline
            if status is not None and server.listening_s is None:
                server.listening_s = time.monotonic() - started_s
            if status == 200:
                server.ready_s = time.monotonic() - started_s
            if status == 200 or (status is not None and not is_ready_needed):
                return True
            if time.monotonic() > deadline_s:
                raise TimeoutError
            await asyncio.sleep(POLL_INTERVAL_S)
    return False
