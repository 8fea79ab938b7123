"""The HTTP floor: a bare aiohttp server that answers every search with a canned 10-hit answer.

Owns: that server (run as `python -m tools.bench.floor --port P`, a separate process like
Keel) and starting/stopping it. Driven by client.py exactly like Keel, its requests/s is the
most any aiohttp server in Python can answer with this client on this machine: the ceiling
for Keel's single-vector search.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
CANNED_ANSWER = (
    b'{"result":['
    + b",".join(
        b'{"id":%d,"version":0,"score":0.9%d,"payload":null,"vector":null}' % (i, 9 - i)
        for i in range(10)
    )
    + b'],"status":"ok","time":0.0001}'
)


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


async def search(request: web.Request) -> web.Response:
    # Read the body like a real handler must, then answer without looking at it.
    await request.read()
    return web.Response(body=CANNED_ANSWER, content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="all shards are ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_route("POST", "/collections/{collection_name}/points/search", search)
    app.router.add_route("GET", "/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
