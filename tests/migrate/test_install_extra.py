"""`keel migrate`, `keel follow` and `keel import` need qdrant-client, which only the
`migrate` extra installs: without it each says in one line how to install it, exit 2. The
test hides qdrant-client behind a module of that name that fails to import."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.keel_process import REPO_ROOT, KeelProcess
from tests.migrate.test_migrate import run_keel


def python_path_without_qdrant_client(tmp_path: Path) -> str:
    """A PYTHONPATH under which `import qdrant_client` fails as if it were not installed."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "qdrant_client.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'qdrant_client'\", name='qdrant_client')\n"
    )
    return f"{shim}:{REPO_ROOT}"


@pytest.mark.parametrize("command", ["migrate", "follow", "import"])
def test_without_qdrant_client_one_line_says_how_to_install_it(tmp_path, command):
    result = run_keel(
        command, "--from", "http://127.0.0.1:9", "--to", "http://127.0.0.1:9",
        env={"PYTHONPATH": python_path_without_qdrant_client(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'keel[migrate]'" in result.stderr
    assert f"keel {command}: needs the migrate extra (qdrant-client and httpx)" in result.stderr


def test_the_server_runs_without_qdrant_client(tmp_path):
    server = KeelProcess.start(
        tmp_path / "storage", extra_env={"PYTHONPATH": python_path_without_qdrant_client(tmp_path)}
    )
    answer = httpx.put(
        f"{server.url}/collections/c", json={"vectors": {"size": 2, "distance": "Dot"}}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert "qdrant_client" not in server.log_text()
