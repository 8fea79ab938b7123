"""The dashboard ships in the wheel: `pip install .` serves /dashboard with no checkout.

Built as tests/cli/test_wheel.py builds it (a copy of the sources, `pip wheel --no-deps`),
then compared with server/dashboard/: every file the page is made of must be in the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from server.api.dashboard import CONTENT_TYPES, DASHBOARD_DIR
from tests.keel_process import REPO_ROOT

BUILD_TIMEOUT_S = 180
NOT_SOURCES = (".git", "build", "*.egg-info", "__pycache__", "storage", "snapshots", ".venv")


def test_the_wheel_carries_every_dashboard_file(tmp_path: Path) -> None:
    source = tmp_path / "keel"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--wheel-dir", str(tmp_path / "wheel"), str(source)],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("keel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("server/dashboard/")}
    page_files = {
        f"server/dashboard/{path.name}"
        for path in DASHBOARD_DIR.iterdir()
        if path.suffix in CONTENT_TYPES
    }
    assert "server/dashboard/index.html" in page_files
    assert shipped == page_files
