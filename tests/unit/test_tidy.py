"""Checks over Keel's own source, the way TigerBeetle runs a tidy pass."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parents[2] / "engine"


def test_engine_never_imports_the_http_side() -> None:
    for path in ENGINE_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root not in {"aiohttp", "server"}, f"{path.name} imports {root}"


def test_engine_has_no_bare_except_or_silent_pass() -> None:
    for path in ENGINE_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                assert node.type is not None, f"bare except in {path.name}:{node.lineno}"
                is_silent = len(node.body) == 1 and isinstance(node.body[0], ast.Pass)
                assert not is_silent, f"swallowed exception in {path.name}:{node.lineno}"
