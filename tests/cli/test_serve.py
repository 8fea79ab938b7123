"""`keel serve` as a process: ready, clean stop on SIGTERM, refusing what it can't do."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from server.version import KEEL_VERSION
from tests.keel_process import KeelProcess, free_port, wait_until

# CPU the process spends after logging "stopped", as a share of the CPU it spent up to then.
# Measured with 100 points: 0.15-0.27 when the interpreter's final garbage collections walked
# the whole heap, 0.03-0.06 once server/cli.py freezes the heap first.
EXIT_CPU_SHARE_MAX = 0.12


def test_readyz_answers_200_once_started(tmp_path):
    server = KeelProcess.start(tmp_path / "storage")
    assert server.readyz_status() == 200
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
        assert response.status == 200
    log_text = server.log_text()
    assert f"listening host=127.0.0.1 port={server.port}" in log_text
    assert f"keel_version={KEEL_VERSION}" in log_text
    # Listening comes before recovery, so /readyz can answer 503 while the WAL replays.
    assert log_text.index(" listening ") < log_text.index(" recovery started ")


def test_sigterm_stops_cleanly_with_exit_code_0(tmp_path):
    server = KeelProcess.start(tmp_path / "storage")
    assert server.terminate() == 0
    log_lines = server.log_text().splitlines()
    assert any(" stopping signal=SIGTERM" in line for line in log_lines)
    assert " stopped " in log_lines[-1] + " "
    assert not any("Traceback" in line for line in log_lines)


def test_sigterm_exits_promptly_after_stopped(tmp_path):
    """After "stopped" the storage is closed and only interpreter teardown is left; it must
    not walk the whole heap again (it took 0.15-0.7 s of wall time, more under load).

    Method: CPU time rather than wall time, so a loaded machine cannot fail it, and relative
    to the CPU the same process spent starting and serving, so a slower machine cannot
    either. The process's CPU is read from /proc when the "stopped" line appears and from
    its rusage once reaped; reading late can only make the share smaller.
    """
    server = KeelProcess.start(tmp_path / "storage")
    _send_json(server.url, "PUT", "/collections/c", {"vectors": {"size": 4, "distance": "Dot"}})
    points = [{"id": i, "vector": [i, 1, 0, 0], "payload": {"n": i}} for i in range(100)]
    _send_json(server.url, "PUT", "/collections/c/points?wait=true", {"points": points})
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server.popen.send_signal(signal.SIGTERM)
    cpu_at_stopped_s = wait_until(
        lambda: " stopped " in server.log_text() and _process_cpu_s(server.popen.pid)
    )
    stopped_seen_s = time.monotonic()
    assert server.wait_exit() == 0, server.log_text()
    exit_after_stopped_s = time.monotonic() - stopped_seen_s
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_total_s = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    cpu_after_stopped_s = cpu_total_s - cpu_at_stopped_s
    assert cpu_after_stopped_s < EXIT_CPU_SHARE_MAX * cpu_at_stopped_s, (
        f"cpu_after_stopped_s={cpu_after_stopped_s:.3f} cpu_at_stopped_s={cpu_at_stopped_s:.3f}"
        f" exit_after_stopped_s={exit_after_stopped_s:.3f}"
    )


def test_restart_after_sigterm_opens_the_same_storage(tmp_path):
    """A clean stop releases the storage lock, so the next server starts on it at once."""
    assert KeelProcess.start(tmp_path / "storage").terminate() == 0
    server = KeelProcess.start(tmp_path / "storage")
    assert server.readyz_status() == 200


def test_restart_after_kill_9_opens_the_same_storage(tmp_path):
    """The storage lock is an flock: the kernel releases it when the process dies."""
    assert KeelProcess.start(tmp_path / "storage").kill_9() == -9
    server = KeelProcess.start(tmp_path / "storage")
    assert server.readyz_status() == 200


def test_second_server_on_the_same_storage_refuses_without_ever_listening(tmp_path):
    """The storage lock is taken before the port is bound: a second server on a locked
    storage fails with one clear line and never announces (or answers on) its port."""
    first = KeelProcess.start(tmp_path / "storage")
    second = KeelProcess.spawn(tmp_path / "storage")
    assert second.wait_exit() == 1
    second_log = second.log_text()
    assert "cannot open storage error_type=StorageLocked" in second_log
    assert "in use by another Keel process" in second_log
    assert " listening " not in second_log
    assert first.readyz_status() == 200  # the first one is untouched


def test_failpoints_without_the_test_switch_refuse_to_start(tmp_path):
    """KEEL_FAILPOINTS left in a production environment: a clear error, exit 1, no port."""
    env = {"KEEL_FAILPOINTS": "wal.after_write"}
    server = KeelProcess.spawn(tmp_path / "storage", extra_env=env)
    assert server.wait_exit() == 1
    log_text = server.log_text()
    assert "ERROR" in log_text and "test-only fault setting" in log_text
    assert "KEEL_FAILPOINTS='wal.after_write'" in log_text
    assert "KEEL_TEST_FAULTS=1" in log_text
    assert " listening " not in log_text
    assert not (tmp_path / "storage").exists()  # refused before touching anything


def test_each_armed_failpoint_is_logged_at_start(tmp_path):
    env = {"KEEL_FAILPOINTS": "wal.after_write, index.before_meta", "KEEL_TEST_FAULTS": "1"}
    server = KeelProcess.start(tmp_path / "storage", extra_env=env)
    warnings = [line for line in server.log_text().splitlines() if "failpoint armed" in line]
    assert len(warnings) == 2, warnings
    assert all(" WARNING " in line for line in warnings)
    assert "name=index.before_meta" in warnings[0] and "name=wal.after_write" in warnings[1]
    assert server.terminate() == 0


def test_port_in_use_fails_with_a_clear_message(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = KeelProcess.spawn(tmp_path / "storage", port=port)
        assert server.wait_exit() == 1
    assert f"cannot listen host=127.0.0.1 port={port}" in server.log_text()


def test_env_settings_reach_the_server(tmp_path):
    port = free_port()
    server = KeelProcess.start(
        tmp_path / "storage", extra_env={"KEEL__LOG__FORMAT": "json"}, port=port
    )
    entries = [json.loads(line) for line in server.log_text().splitlines()]
    listening = [entry for entry in entries if entry["event"] == "listening"]
    assert len(listening) == 1, entries
    assert listening[0]["port"] == port
    assert listening[0]["level"] == "INFO"


def test_a_public_address_without_an_api_key_is_refused(tmp_path):
    server = KeelProcess.spawn(tmp_path / "storage", extra_args=["--host", "0.0.0.0"])
    assert server.wait_exit() == 1
    assert "refusing to listen on a non-loopback address without an API key" in server.log_text()


def test_an_api_key_from_the_environment_protects_the_server(tmp_path):
    env = {"KEEL__SERVICE__API_KEY": "s3cret"}
    server = KeelProcess.start(tmp_path / "storage", extra_env=env)
    request = urllib.request.Request(f"{server.url}/collections")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401
    request.add_header("api-key", "s3cret")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["result"] == {"collections": []}
    assert server.terminate() == 0


def test_metrics_can_be_left_open_beside_an_api_key(tmp_path):
    """service.metrics_require_api_key=false reaches the app: /metrics answers without a
    key while every other read still needs one."""
    env = {"KEEL__SERVICE__API_KEY": "s3cret", "KEEL__SERVICE__METRICS_REQUIRE_API_KEY": "false"}
    server = KeelProcess.start(tmp_path / "storage", extra_env=env)
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "keel_ready 1.0" in response.read().decode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/collections", timeout=5)
    assert refused.value.code == 401
    assert server.terminate() == 0


def test_slow_clients_do_not_hold_up_others(tmp_path):
    """Hostile input: connections that send nothing, or a body a few bytes at a time, while
    other clients are served; the slow body is answered once it has all arrived."""
    server = KeelProcess.start(tmp_path / "storage")
    body = json.dumps({"vectors": {"size": 2, "distance": "Dot"}}).encode()
    request = urllib.request.Request(f"{server.url}/collections/c", data=body, method="PUT")
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=5).read()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    upsert = json.dumps({"points": [{"id": 1, "vector": [1, 2]}]}).encode()
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    slow.sendall(
        b"PUT /collections/c/points?wait=true HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(upsert)).encode()
        + b"\r\n\r\n"
        + upsert[:5]
    )
    for _ in range(5):  # others are answered meanwhile, promptly
        with urllib.request.urlopen(f"{server.url}/collections/c", timeout=5) as answer:
            assert json.loads(answer.read())["result"]["points_count"] == 0
    for byte in upsert[5:]:
        slow.sendall(bytes([byte]))
    answer = slow.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    for connection in [*idle, slow]:
        connection.close()
    with urllib.request.urlopen(f"{server.url}/collections/c", timeout=5) as answer:
        assert json.loads(answer.read())["result"]["points_count"] == 1
    assert server.terminate() == 0


def _send_json(url: str, method: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a running (or exited, not yet reaped) process."""
    with open(f"/proc/{pid}/stat") as stat_file:
        fields = stat_file.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted from 1 with the pid and (comm) as 1 and 2.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_locked_storage_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    """Logs name absolute paths: `--storage storage` is ambiguous in a journal."""
    from engine.catalog import lock_storage
    from engine.errors import StorageLocked

    monkeypatch.chdir(tmp_path)
    (tmp_path / "storage").mkdir()
    fd = lock_storage(Path("storage"))
    try:
        with pytest.raises(StorageLocked) as refused:
            lock_storage(Path("storage"))
    finally:
        os.close(fd)
    assert f"storage directory {tmp_path / 'storage'} is in use" in str(refused.value)
