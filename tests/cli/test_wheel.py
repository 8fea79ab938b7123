"""What a plain `pip install .` installs: the wheel, not the checkout.

Built here as pip builds it for `pip install .` (build isolation) and unpacked into a directory
that is the only thing on the child's path, run from a directory that is not the checkout,
so nothing can be found by accident in the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.keel_process import REPO_ROOT

BUILD_TIMEOUT_S = 180
NOT_SOURCES = (".git", "build", "*.egg-info", "__pycache__", "storage", "snapshots", ".venv")


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy of the tracked sources: building in the checkout would reuse its build/ dir.
    source = tmp_path_factory.mktemp("source") / "keel"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--wheel-dir", str(wheel_dir), str(source)],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )
    (wheel,) = wheel_dir.glob("keel-*.whl")
    unpacked = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    return unpacked


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KEEL")}
    env["PYTHONPATH"] = str(site)  # the wheel's packages only; dependencies from the venv
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], cwd=cwd, env=env, check=False,
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_the_wheel_carries_the_crash_test_tool(unpacked_wheel: Path) -> None:
    packages = {path.name for path in unpacked_wheel.iterdir() if path.is_dir()}
    assert {"engine", "server", "keel_crashtest"} <= packages
    assert "tools" not in packages  # no generic top-level name in a user's site-packages


def test_keel_crashtest_runs_from_a_wheel_install(unpacked_wheel: Path, tmp_path: Path) -> None:
    answer = run_installed(unpacked_wheel, tmp_path, "crashtest", "--help")
    assert answer.returncode == 0, answer.stderr
    assert "--power-loss" in answer.stdout
    loaded = subprocess.run(
        [sys.executable, "-c", "import keel_crashtest, server; print(keel_crashtest.__file__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(unpacked_wheel)},
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert loaded.stdout.strip().startswith(str(unpacked_wheel)), loaded.stdout
