"""The HTTP floor: a bare aiohttp server that answers every request with a canned answer.

Owns: that server (run as `python -m tools.bench.floor --port P`, a separate process like
Keel) and starting/stopping it. It answers `/points/search` and `/points/query` with a canned
10-hit answer and `PUT /points` with a canned `acknowledged`, after reading the body as a real
handler must. Driven by the same load generator as Keel (wrk), its requests/s is the most an
aiohttp server in Python answers on this machine: the ceiling for Keel's searches and
1-point upserts.

It runs on uvloop, the event loop `python -m server` runs on (server/cli.py), so the two
servers differ by what their handlers do, not by their loop.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import uvloop
from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
CANNED_HITS = b",".join(
    b'{"id":%d,"version":0,"score":0.9%d,"payload":null,"vector":null}' % (i, 9 - i)
    for i in range(10)
)
CANNED_SEARCH = b'{"result":[' + CANNED_HITS + b'],"status":"ok","time":0.0001}'
CANNED_QUERY = b'{"result":{"points":[' + CANNED_HITS + b']},"status":"ok","time":0.0001}'
CANNED_UPSERT = b'{"result":{"operation_id":0,"status":"acknowledged"},"status":"ok","time":0.0001}'


class FloorProcess:
    """The floor server subprocess."""

    def __init__(self, popen: subprocess.Popen, port: int):
        self.popen = popen
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, port: int) -> FloorProcess:
        """Start the floor server on `port` and return once it answers."""
        command = [sys.executable, "-m", "tools.bench.floor", "--port", str(port)]
        popen = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
        floor = cls(popen, port)
        deadline_s = time.monotonic() + READY_TIMEOUT_S
        while not floor._is_ready():
            if popen.poll() is not None or time.monotonic() > deadline_s:
                floor.stop()
                raise RuntimeError(f"HTTP floor server did not start exit={popen.returncode}")
            time.sleep(0.05)
        return floor

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        self.popen.wait(timeout=30)

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


def canned(answer: bytes):
    """A handler that reads the body like a real one must, then answers `answer` unread."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    return handler


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="all shards are ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=32 * 1024 * 1024)
    points = "/collections/{collection_name}/points"
    app.router.add_route("POST", f"{points}/search", canned(CANNED_SEARCH))
    app.router.add_route("POST", f"{points}/query", canned(CANNED_QUERY))
    app.router.add_route("PUT", points, canned(CANNED_UPSERT))
    app.router.add_route("GET", "/readyz", ready)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(app, args.port))


async def _serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()  # until SIGTERM ends the process
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
