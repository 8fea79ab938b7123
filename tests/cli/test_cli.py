"""The `keel` command line, run as a subprocess the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from server.version import KEEL_VERSION
from tests.keel_process import REPO_ROOT, free_port

CLI_TIMEOUT_S = 60


def run_keel(
    *args: str, env: dict[str, str] | None = None, module: str = "server.cli", python_flags=()
) -> subprocess.CompletedProcess:
    """`python -m server.cli ARGS` (== the `keel` script) from this checkout, in a clean env."""
    child_env = {name: value for name, value in os.environ.items() if not name.startswith("KEEL")}
    child_env["PYTHONPATH"] = str(REPO_ROOT)
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, *python_flags, "-m", module, *args],
        env=child_env,
        check=False,  # the tests assert on the exit code
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def test_version_prints_keels_version():
    result = run_keel("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"keel {KEEL_VERSION}"


def test_version_is_the_packages_version():
    with open(REPO_ROOT / "pyproject.toml", "rb") as pyproject_file:
        pyproject = tomllib.load(pyproject_file)
    assert pyproject["project"]["scripts"]["keel"] == "server.cli:main"
    assert pyproject["project"]["dynamic"] == ["version"]
    version_attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert version_attr == "server.version.KEEL_VERSION"
    assert KEEL_VERSION == "0.1.0"


def test_installed_keel_script_prints_the_version_when_present():
    """After `pip install .` the console script sits beside the interpreter."""
    script = Path(sys.executable).parent / "keel"
    if not script.exists():
        # Running from a checkout without installing Keel; the module form is tested above.
        return
    result = subprocess.run([str(script), "--version"], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == f"keel {KEEL_VERSION}"


def test_python_m_server_is_keel_serve():
    result = run_keel("--help", module="server")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: keel serve")
    assert "--storage DIR" in result.stdout


def test_no_command_prints_usage_and_fails():
    result = run_keel()
    assert result.returncode == 2
    assert "serve" in result.stderr
    assert "config" in result.stderr


def test_config_command_prints_effective_config_with_precedence(tmp_path):
    config_path = tmp_path / "keel.toml"
    config_path.write_text(
        '[service]\nhttp_port = 7001\nhost = "0.0.0.0"\n[storage]\nstorage_path = "/file"\n'
    )
    env = {
        "KEEL__SERVICE__HTTP_PORT": "7002",
        "KEEL__STORAGE__STORAGE_PATH": "/env",
        "KEEL__SERVICE__API_KEY": "top-secret",
    }
    result = run_keel("config", "--config", str(config_path), "--port", "7003", env=env)
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    assert effective["service"] == {
        "host": "0.0.0.0",
        "http_port": 7003,
        "max_request_size_mb": 32,
        "api_key": "********",
        "read_only_api_key": "",
        "unsafe_allow_public_without_api_key": False,
        "metrics_require_api_key": True,
        "recovery_wait_s": 60.0,
        "enable_snapshot_url_recovery": True,
        "enable_tls": False,
    }
    assert "top-secret" not in result.stdout  # secrets are masked
    assert effective["storage"]["storage_path"] == "/env"
    assert effective["storage"]["wal"]["segment_mb_target"] == 128


def test_unknown_setting_fails_with_the_key_and_exit_code_2(tmp_path):
    config_path = tmp_path / "keel.toml"
    config_path.write_text("[service]\nport = 7000\n")
    for command in ("config", "serve"):
        result = run_keel(command, "--config", str(config_path))
        assert result.returncode == 2
        assert "unknown setting service.port" in result.stderr
        assert str(config_path) in result.stderr


def test_serve_refuses_to_run_under_python_optimize(tmp_path):
    result = run_keel(
        "serve", "--storage", str(tmp_path / "storage"), "--port", str(free_port()),
        python_flags=("-O",),
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to start under python -O" in result.stderr
    assert not (tmp_path / "storage").exists()
