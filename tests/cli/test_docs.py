"""README.md and .ci/run: the commands they show must be the ones that work.

.ci/run is checked by running its parts: the clone step (into tmp_path, with git) and the
slow-test step (with a stand-in `python` that exits with a chosen status).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.keel_process import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
CI_SCRIPT = (REPO_ROOT / ".ci" / "run").read_text()
CI_LINES = CI_SCRIPT.splitlines()
SERVE_COMMAND = "pip install . && keel serve"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"
SLOW_COMMAND = "python -m pytest -m slow || slow_status=$?"


def shell_blocks(markdown: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", markdown, re.DOTALL)]


def ci_part(first_line_start: str, last_line_start: str) -> str:
    """The lines of .ci/run from the one starting with `first_line_start` to the next one
    starting with `last_line_start`, both included."""
    first = next(i for i, line in enumerate(CI_LINES) if line.startswith(first_line_start))
    last = next(
        i for i, line in enumerate(CI_LINES) if i >= first and line.startswith(last_line_start)
    )
    return "\n".join(["set -euo pipefail", *CI_LINES[first : last + 1]]) + "\n"


def test_readme_opens_with_the_serve_and_test_commands():
    assert shell_blocks(README)[:2] == [SERVE_COMMAND, TEST_COMMAND]
    first_block_at = README.index("```sh")
    assert "## " not in README[:first_block_at], "the commands must come before any section"


def test_ci_runs_the_readmes_test_command_verbatim_in_its_clone():
    assert "set -euo pipefail" in CI_LINES
    assert CI_LINES.index('cd "$clone_dir"') < CI_LINES.index(TEST_COMMAND)
    assert not any(line.startswith('cd "$repo_dir"') for line in CI_LINES), "not the checkout"
    assert 'clone_dir="$clone_parent/keel"' in CI_LINES
    assert 'clone_parent="$(mktemp -d)"' in CI_LINES


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_ci_clones_the_committed_head_with_nothing_beside_it(tmp_path):
    """Goal: CI tests what a `git clone` gets, in a directory of its own (CI's checkout has
    shared/ beside it, which hid issue 13). Method: run .ci/run's clone step into tmp_path."""
    clone_parent = tmp_path / "clone_parent"
    clone_parent.mkdir()
    env = {**os.environ, "repo_dir": str(REPO_ROOT), "clone_dir": str(clone_parent / "keel")}
    subprocess.run(
        ["bash", "-c", ci_part("git clone", 'echo "testing commit')],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert [path.name for path in clone_parent.iterdir()] == ["keel"]
    assert git(clone_parent / "keel", "rev-parse", "HEAD") == git(REPO_ROOT, "rev-parse", "HEAD")
    assert git(clone_parent / "keel", "status", "--porcelain") == ""
    assert (clone_parent / "keel" / "tests" / "api" / "openapi_check.py").exists()


@pytest.mark.parametrize(("pytest_status", "ci_status"), [(0, 0), (5, 0), (1, 1), (2, 2)])
def test_ci_runs_the_slow_tests_and_forgives_only_no_tests_collected(
    tmp_path, pytest_status, ci_status
):
    """pytest exits 5 when no test is collected (every slow test removed or filtered): that
    must not fail CI, any test failure must. Method: run .ci/run's slow step with a stand-in
    `python` that exits with `pytest_status`."""
    assert CI_LINES.index(TEST_COMMAND) < CI_LINES.index(SLOW_COMMAND)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_python = fake_bin / "python"
    fake_python.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\nexit {pytest_status}\n')
    fake_python.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    completed = subprocess.run(
        ["bash", "-c", ci_part("slow_status=0", "fi")],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == ci_status, completed.stderr
    assert (tmp_path / "calls").read_text() == "-m pytest -m slow\n"


def git(directory: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *arguments], check=True, capture_output=True, text=True
    ).stdout.strip()
