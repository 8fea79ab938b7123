"""service.enable_tls with tls.cert / tls.key: HTTPS on the same port, refused when broken."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trustme

from tests.cli.test_cli import run_keel
from tests.keel_process import KeelProcess, wait_until


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, as PEM files."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for pem in server_cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_path), append=True)
    server_cert.private_key_pem.write_to_path(str(key_path))
    return ca, cert_path, key_path


def tls_env(cert_path: Path, key_path: Path) -> dict[str, str]:
    return {
        "KEEL__SERVICE__ENABLE_TLS": "true",
        "KEEL__TLS__CERT": str(cert_path),
        "KEEL__TLS__KEY": str(key_path),
    }


def test_the_server_answers_https_and_not_plain_http(tmp_path, certificate) -> None:
    ca, cert_path, key_path = certificate
    server = KeelProcess.spawn(tmp_path / "storage", extra_env=tls_env(cert_path, key_path))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    https_url = f"https://127.0.0.1:{server.port}"

    def ready() -> bool | None:
        assert server.is_running(), server.log_text()
        try:
            with urllib.request.urlopen(f"{https_url}/readyz", context=client_context) as answer:
                return answer.status == 200 or None
        except (urllib.error.URLError, ConnectionError):
            return None

    try:
        wait_until(ready, timeout_s=30)
        with urllib.request.urlopen(f"{https_url}/collections", context=client_context) as answer:
            assert json.loads(answer.read())["result"] == {"collections": []}
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz", timeout=5)
        assert "scheme=https" in server.log_text()
    finally:
        assert server.terminate() == 0


def test_tls_without_a_certificate_fails_start_up_naming_the_key(tmp_path) -> None:
    result = run_keel(
        "serve", "--storage", str(tmp_path / "s"), env={"KEEL__SERVICE__ENABLE_TLS": "true"}
    )
    assert result.returncode == 2
    assert "tls.cert" in result.stderr and "must be set when service.enable_tls" in result.stderr


def test_a_key_that_does_not_match_fails_start_up(tmp_path, certificate) -> None:
    _, cert_path, _ = certificate
    other_key = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    result = run_keel("config", env=tls_env(cert_path, other_key))
    assert result.returncode == 2
    assert "do not load as a PEM certificate chain and its private key" in result.stderr
