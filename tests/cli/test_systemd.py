"""systemd integration: sd_notify over a real unix datagram socket, and tools/keel.service.

The server tests bind an AF_UNIX SOCK_DGRAM socket (a path, or an abstract name), pass it to
a real `keel` subprocess as NOTIFY_SOCKET, and read what systemd would read.
"""

from __future__ import annotations

import configparser
import json
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.logfmt import log_event
from server.run import SHUTDOWN_GRACE_S
from server.systemd import Notifier, RecoveryStatus, watchdog_timeout_s
from tests.keel_process import REPO_ROOT, KeelProcess, wait_until

UNIT_PATH = REPO_ROOT / "tools" / "keel.service"
WATCHDOG_USEC = 400_000  # pings every 0.2 s; a batch in flight for 0.4 s is stuck
RECEIVE_TIMEOUT_S = 0.05


class NotifyListener:
    """A bound datagram socket standing in for systemd; keeps every message it received."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as NOTIFY_SOCKET spells it
        self.messages: list[str] = []
        sock.settimeout(RECEIVE_TIMEOUT_S)

    def receive_available(self) -> list[str]:
        """Read until the socket has nothing for RECEIVE_TIMEOUT_S; return everything so far."""
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.messages

    def wait_for(self, line: str, timeout_s: float = 20.0) -> int:
        """Index of the first message holding `line` as one of its lines."""

        def received() -> int | None:
            for index, message in enumerate(self.receive_available()):
                if line in message.split("\n"):
                    return index + 1  # + 1: index 0 must be truthy for wait_until
            return None

        received.__name__ = f"received {line!r}"
        return wait_until(received, timeout_s) - 1

    def lines(self, start: int = 0) -> list[str]:
        return [line for message in self.messages[start:] for line in message.split("\n")]


@pytest.fixture
def path_listener() -> Iterator[NotifyListener]:
    # A short directory of its own: a unix socket path is limited to 108 bytes.
    directory = tempfile.mkdtemp(prefix="keel-sd-")
    path = f"{directory}/notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        yield NotifyListener(sock, path)
    shutil.rmtree(directory)


@pytest.fixture
def abstract_listener() -> Iterator[NotifyListener]:
    name = f"keel-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        yield NotifyListener(sock, f"@{name}")


def test_ready_status_and_stopping_arrive_in_order(tmp_path, path_listener):
    server = KeelProcess.start(tmp_path / "storage", extra_env=_env(path_listener))
    ready_index = path_listener.wait_for("READY=1")
    assert server.terminate() == 0
    stopping_index = path_listener.wait_for("STOPPING=1")
    assert ready_index < stopping_index
    lines = path_listener.lines()
    assert "STATUS=recovering collections=0/0" in lines[: lines.index("READY=1")]
    ready_message = path_listener.messages[ready_index].split("\n")
    assert f"STATUS=serving port={server.port} collections=0" in ready_message
    assert any(line.startswith("STATUS=stopping") for line in path_listener.lines(stopping_index))
    assert "WATCHDOG=1" not in path_listener.lines(), "no WATCHDOG_USEC, no pings"


def test_recovery_reports_each_collection_before_ready(tmp_path, path_listener):
    """Restart on storage with two collections: STATUS counts them, then READY=1."""
    server = KeelProcess.start(tmp_path / "storage")
    for name in ("alpha", "beta"):
        _put_json(f"{server.url}/collections/{name}", {"vectors": {"size": 2, "distance": "Dot"}})
    assert server.terminate() == 0
    server = KeelProcess.start(tmp_path / "storage", extra_env=_env(path_listener))
    path_listener.wait_for("READY=1")
    lines = path_listener.lines()
    ready_at = lines.index("READY=1")
    assert lines.index("STATUS=recovering collections=0/2") < ready_at
    assert "STATUS=recovering collections=1/2 last=alpha ops_replayed=0" in lines[:ready_at]
    assert "STATUS=recovering collections=2/2 last=beta ops_replayed=0" in lines[:ready_at]
    assert f"STATUS=serving port={server.port} collections=2" in lines[ready_at:]
    assert server.terminate() == 0


def test_abstract_socket_name_receives_ready(tmp_path, abstract_listener):
    server = KeelProcess.start(tmp_path / "storage", extra_env=_env(abstract_listener))
    abstract_listener.wait_for("READY=1")
    assert server.terminate() == 0
    abstract_listener.wait_for("STOPPING=1")


def test_watchdog_pings_at_half_the_timeout(tmp_path, path_listener):
    env = {**_env(path_listener), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    server = KeelProcess.start(tmp_path / "storage", extra_env=env)
    ready_index = path_listener.wait_for("READY=1")
    wait_until(
        lambda: path_listener.receive_available() and _pings_after(path_listener, ready_index) >= 3
    )
    assert "watchdog on timeout_s=0.4 ping_every_s=0.2" in server.log_text()
    assert server.terminate() == 0


def test_watchdog_for_another_pid_is_not_ours(tmp_path, path_listener):
    """WATCHDOG_PID names a parent (pid 1 here): the variables are not meant for Keel."""
    env = {**_env(path_listener), "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": "1"}
    server = KeelProcess.start(tmp_path / "storage", extra_env=env)
    path_listener.wait_for("READY=1")
    assert server.terminate() == 0
    path_listener.wait_for("STOPPING=1")
    assert "WATCHDOG=1" not in path_listener.lines()
    assert "watchdog off reason=other_pid watchdog_pid=1" in server.log_text()


def test_watchdog_stops_when_a_wal_writer_is_stuck(tmp_path, path_listener):
    """An fdatasync that never returns (failpoint wal.sync_blocks) stops the pings while
    the event loop keeps answering HTTP: the watchdog checks the writers, not just the loop."""
    env = {
        **_env(path_listener),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "KEEL_FAILPOINTS": "wal.sync_blocks",
        "KEEL_TEST_FAULTS": "1",
    }
    server = KeelProcess.start(tmp_path / "storage", extra_env=env)
    ready_index = path_listener.wait_for("READY=1")
    wait_until(
        lambda: path_listener.receive_available() and _pings_after(path_listener, ready_index) >= 2
    )
    _put_json(f"{server.url}/collections/c", {"vectors": {"size": 2, "distance": "Dot"}})
    upsert = threading.Thread(
        target=_put_json_expecting_timeout,
        args=(
            f"{server.url}/collections/c/points?wait=false",
            {"points": [{"id": 1, "vector": [1, 0]}]},
        ),
        daemon=True,
    )
    upsert.start()
    wait_until(lambda: "watchdog withheld reason=wal_writer_stuck writers=c:" in server.log_text())
    path_listener.receive_available()
    withheld_from = len(path_listener.messages)
    # Several ping intervals with no ping, while the loop still serves requests.
    deadline_s = time.monotonic() + 5 * WATCHDOG_USEC / 1_000_000
    while time.monotonic() < deadline_s:
        assert server.readyz_status() == 200
        path_listener.receive_available()
    assert "WATCHDOG=1" not in path_listener.lines(withheld_from)
    assert any(line.startswith("STATUS=wal writer stuck: c:") for line in path_listener.lines())
    assert server.kill_9() == -9


def test_notifier_without_socket_does_nothing():
    notifier = Notifier.from_environment({})
    assert not notifier.is_enabled
    assert notifier.send("READY=1") is False


def test_notifier_logs_a_failed_send_once_and_never_raises(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="server.systemd"):
        assert notifier.send("READY=1") is False
        assert notifier.send("STATUS=still nobody") is False
    assert [record.getMessage().split()[0:2] for record in caplog.records] == [["notify", "failed"]]
    notifier.close()


def test_notifier_ignores_a_relative_socket_path(caplog):
    with caplog.at_level(logging.WARNING, logger="server.systemd"):
        notifier = Notifier("relative/notify")
    assert not notifier.is_enabled
    assert "notify socket ignored reason=not_absolute_or_abstract" in caplog.text


def test_status_is_one_short_line(path_listener):
    notifier = Notifier(path_listener.address)
    assert notifier.status("cannot open storage:\nline two " + "x" * 500)
    [message] = path_listener.receive_available()
    assert message.startswith("STATUS=cannot open storage: line two xxx")
    assert "\n" not in message
    assert len(message) == len("STATUS=") + 200
    notifier.close()


def test_recovery_status_reads_replay_progress_events(path_listener, caplog):
    engine_log = logging.getLogger("engine.collection")
    handler = RecoveryStatus(Notifier(path_listener.address))
    engine_log.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="engine"):
            log_event(
                engine_log,
                logging.INFO,
                "replay progress",
                collection="c",
                op_id=500,
                last_op_id=2000,
            )
    finally:
        engine_log.removeHandler(handler)
    messages = path_listener.receive_available()
    assert messages == ["STATUS=recovering collection=c replayed_op_id=500/2000 collections=0/0"]


@pytest.mark.parametrize(
    ("environ", "timeout_s"),
    [
        ({}, 0.0),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 0.0),
        ({"WATCHDOG_USEC": "soon"}, 0.0),
        ({"WATCHDOG_USEC": "0"}, 0.0),
    ],
)
def test_watchdog_timeout_follows_sd_watchdog_enabled(environ, timeout_s):
    assert watchdog_timeout_s(environ, pid=4242) == timeout_s


# ---- tools/keel.service ------------------------------------------------------------------


def test_unit_file_parses_and_has_the_required_hardened_keys():
    unit = _read_unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["User"] == "keel"
    assert service["StateDirectory"] == "keel"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 65536
    assert _seconds(service["WatchdogSec"]) > 0
    # In-flight requests get SHUTDOWN_GRACE_S, then the catalog checkpoints.
    assert _seconds(service["TimeoutStopSec"]) >= SHUTDOWN_GRACE_S + 5 * 60
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_file_storage_is_inside_the_writable_state_directory():
    service = _read_unit()["Service"]
    state_dir = f"/var/lib/{service['StateDirectory']}"
    assert service["ReadWritePaths"] == state_dir
    exec_start = service["ExecStart"].split()
    assert exec_start[1] == "serve"
    storage = Path(exec_start[exec_start.index("--storage") + 1])
    assert storage.is_relative_to(state_dir)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    """Unknown keys and bad values fail `verify`; ExecStart points at /bin/true here
    because /opt/keel is not installed on a test machine."""
    text = UNIT_PATH.read_text().replace("ExecStart=/opt/keel/venv/bin/keel", "ExecStart=/bin/true")
    (tmp_path / "keel.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "keel.service")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr


# ---- helpers -----------------------------------------------------------------------------


def _env(listener: NotifyListener) -> dict[str, str]:
    return {"NOTIFY_SOCKET": listener.address}


def _pings_after(listener: NotifyListener, index: int) -> int:
    return listener.lines(index).count("WATCHDOG=1")


def _put_json(url: str, body: object) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="PUT",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _put_json_expecting_timeout(url: str, body: object) -> None:
    """The upsert whose fdatasync never returns; its client gives up, the server is killed."""
    try:
        _put_json(url, body)
    except (TimeoutError, urllib.error.URLError, ConnectionError):
        return


def _read_unit() -> configparser.ConfigParser:
    # strict: a key given twice in a section would be an error (systemd would merge it).
    unit = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT_PATH.read_text())
    return unit


def _seconds(value: str) -> float:
    units = {"s": 1, "min": 60, "h": 3600, "ms": 0.001}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)
