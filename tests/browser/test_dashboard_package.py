"""The dashboard ships in the wheel: after `pip install .` Keel serves /dashboard with no
checkout around.

Built as tests/cli/test_wheel.py builds it (a copy of the sources, `pip wheel --no-deps`),
then compared with server/dashboard/, and served by a Keel run from the unpacked wheel alone
(its dependencies from this environment), from a directory that is not the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from server.api.dashboard import CONTENT_TYPES, DASHBOARD_DIR
from tests.keel_process import REPO_ROOT, free_port, wait_until

BUILD_TIMEOUT_S = 180
NOT_SOURCES = (".git", "build", "*.egg-info", "__pycache__", "storage", "snapshots", ".venv")


def test_the_wheel_carries_and_serves_every_dashboard_file(tmp_path: Path) -> None:
    source = tmp_path / "keel"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--wheel-dir", str(tmp_path / "wheel"), str(source)],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("keel-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("server/dashboard/")}
        archive.extractall(site)
    page_files = {
        f"server/dashboard/{path.name}"
        for path in DASHBOARD_DIR.iterdir()
        if path.suffix in CONTENT_TYPES
    }
    assert "server/dashboard/index.html" in page_files
    assert shipped == page_files

    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEEL")}
    env["PYTHONPATH"] = str(site)  # the wheel's packages only
    work_dir = tmp_path / "elsewhere"
    work_dir.mkdir()
    command = [sys.executable, "-m", "server.cli", "serve", "--storage", "storage",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(tmp_path / "keel.log", "wb") as log_file:
        server = subprocess.Popen(
            command, cwd=work_dir, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        try:
            page = wait_until(lambda: _get(f"http://127.0.0.1:{port}/dashboard/"), 60)
        except AssertionError:
            raise AssertionError((tmp_path / "keel.log").read_text(errors="replace")) from None
        assert b'<script type="module" src="/dashboard/app.js">' in page
        assert _get(f"http://127.0.0.1:{port}/dashboard/durability.js")
    finally:
        server.kill()
        server.wait(timeout=60)


def _get(url: str) -> bytes | None:
    """The body of a 200 answer, or None while nothing (or an error) answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read() if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
