"""README.md and .ci/run: the commands they show must be the ones that work."""

from __future__ import annotations

import re

from tests.keel_process import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
SERVE_COMMAND = "pip install . && keel serve"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"


def shell_blocks(markdown: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", markdown, re.DOTALL)]


def test_readme_opens_with_the_serve_and_test_commands():
    assert shell_blocks(README)[:2] == [SERVE_COMMAND, TEST_COMMAND]
    first_block_at = README.index("```sh")
    assert "## " not in README[:first_block_at], "the commands must come before any section"


def test_ci_runs_the_readmes_test_command_verbatim():
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci_lines
    assert "set -euo pipefail" in ci_lines
