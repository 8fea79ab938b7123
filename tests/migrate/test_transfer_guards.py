"""What `keel import` and `keel migrate` refuse before they change anything: a target that is
their own source (same URL, another name for it, or another address of the same server),
and `--overwrite` of a collection nobody confirmed; a refusal says one thing to do. Also the
commands' log lines, in the server's format."""

from __future__ import annotations

import argparse
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server.commands import transfer
from tests.keel_process import REPO_ROOT, KeelProcess
from tests.migrate.test_migrate import (
    CLI_TIMEOUT_S,
    COLLECTION,
    assert_identical,
    client_of,
    create_source_data,
    run_keel,
)

POINTS = 80  # create_source_data adds 20 UUID ids
DEFAULT_URL = "http://127.0.0.1:6333"
SERVER_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) keel\.\S+ "
)


class Relay:
    """A TCP relay from a port of its own to `port`: the same server behind another URL, as
    a second host name or a proxy would make it."""

    def __init__(self, port: int) -> None:
        self.upstream_port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass  # the other direction closed both
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def run_keel_on_a_terminal(*args: str, answer: str) -> tuple[int, str]:
    """Run `keel ARGS` with stdin and stderr on a pseudo-terminal, type `answer` at the
    deletion prompt; (exit code, everything it wrote to the terminal)."""
    main_fd, child_fd = os.openpty()
    command = [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main())"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    child = subprocess.Popen(
        [*command, *args], cwd=REPO_ROOT, env=env, stdin=child_fd, stdout=subprocess.DEVNULL,
        stderr=child_fd,
    )  # fmt: skip
    os.close(child_fd)
    output = b""
    is_answered = False
    deadline_s = time.monotonic() + CLI_TIMEOUT_S
    try:
        while time.monotonic() < deadline_s:
            readable, _, _ = select.select([main_fd], [], [], 0.1)
            if readable:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not is_answered and b"Type its name to delete it: " in output:
                os.write(main_fd, answer.encode() + b"\n")
                is_answered = True
        assert is_answered, output.decode(errors="replace")
        return child.wait(timeout=CLI_TIMEOUT_S), output.decode(errors="replace")
    finally:
        os.close(main_fd)
        if child.poll() is None:
            child.kill()


def points_count(server: KeelProcess) -> int:
    return client_of(server).count(COLLECTION, exact=True).count


@pytest.fixture
def server(tmp_path: Path) -> KeelProcess:
    server = KeelProcess.start(tmp_path / "source")
    create_source_data(client_of(server), POINTS)
    return server


@pytest.fixture
def servers(tmp_path: Path) -> tuple[KeelProcess, KeelProcess]:
    """A source with data and a target whose `docs` holds other points."""
    source = KeelProcess.start(tmp_path / "source")
    target = KeelProcess.start(tmp_path / "target")
    create_source_data(client_of(source), POINTS, seed=1)
    create_source_data(client_of(target), 30, seed=2)
    return source, target


# ---- the target is the source -------------------------------------------------------------


def test_import_without_to_from_the_default_port_refuses_and_deletes_nothing(tmp_path):
    """The reported case: `keel import --from http://127.0.0.1:6333 --collection docs
    --overwrite`, where `--to` defaults to the same server, deleted `docs` and exited 0."""
    try:
        with socket.create_server(("127.0.0.1", 6333)):
            pass
    except OSError:
        pytest.skip("port 6333 is in use here: the default --to cannot be this test's server")
    server = KeelProcess.start(tmp_path / "storage", port=6333)
    create_source_data(client_of(server), POINTS)
    imported = run_keel("import", "--from", DEFAULT_URL, "--collection", COLLECTION, "--overwrite")
    assert imported.returncode == 2, imported.stderr
    assert "same server" in imported.stderr
    assert "nothing was changed" in imported.stderr
    assert points_count(server) == POINTS + 20


@pytest.mark.parametrize("command", ["import", "migrate"])
def test_another_name_of_the_source_is_the_same_server(server, tmp_path, command):
    """`localhost` and `127.0.0.1` are one host: refused by the URLs alone."""
    other_name = server.url.replace("127.0.0.1", "localhost")
    extra = ("--state", str(tmp_path / "state.json")) if command == "migrate" else ()
    result = run_keel(
        command, "--from", server.url, "--to", other_name, "--overwrite",
        "--confirm-delete", COLLECTION, *extra,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "same server" in result.stderr
    assert points_count(server) == POINTS + 20
    assert not (tmp_path / "state.json.d").exists()  # migrate took no snapshot


@pytest.mark.parametrize("command", ["import", "migrate"])
def test_the_source_behind_another_address_is_refused_by_its_telemetry_id(
    server, tmp_path, command
):
    """Different URLs, one server (a relay in between): the ids in /telemetry are equal."""
    relay = Relay(server.port)
    try:
        extra = ("--state", str(tmp_path / "state.json")) if command == "migrate" else ()
        result = run_keel(
            command, "--from", server.url, "--to", relay.url, "--overwrite",
            "--confirm-delete", COLLECTION, *extra,
        )  # fmt: skip
    finally:
        relay.close()
    assert result.returncode == 2, result.stderr
    assert "same server" in result.stderr
    assert "telemetry id" in result.stderr
    assert points_count(server) == POINTS + 20


# ---- --overwrite needs a confirmation -------------------------------------------------------


@pytest.mark.parametrize("command", ["import", "migrate"])
def test_overwrite_without_confirmation_names_what_it_would_delete_and_keeps_it(
    servers, tmp_path, command
):
    source, target = servers
    extra = ("--state", str(tmp_path / "state.json")) if command == "migrate" else ()
    refused = run_keel(command, "--from", source.url, "--to", target.url, "--overwrite", *extra)
    assert refused.returncode == 2, refused.stderr
    assert f"{COLLECTION} (50 points)" in refused.stderr
    assert f"--confirm-delete {COLLECTION}" in refused.stderr
    assert "resume" not in refused.stderr
    assert points_count(target) == 50
    wrong = run_keel(
        command, "--from", source.url, "--to", target.url, "--overwrite",
        "--confirm-delete", "doc", *extra,
    )  # fmt: skip
    assert wrong.returncode == 2, wrong.stderr
    assert points_count(target) == 50
    confirmed = run_keel(
        command, "--from", source.url, "--to", target.url, "--overwrite",
        "--confirm-delete", COLLECTION, *extra,
    )  # fmt: skip
    assert confirmed.returncode == 0, confirmed.stderr
    assert "will delete on target collection=docs points=50" in confirmed.stderr
    assert_identical(client_of(source), client_of(target))


def test_on_a_terminal_overwrite_asks_for_the_name_and_deletes_only_on_it(servers):
    source, target = servers
    args = ("import", "--from", source.url, "--to", target.url, "--overwrite")
    code, output = run_keel_on_a_terminal(*args, answer="y")
    assert code == 2, output
    assert f"deletes collection '{COLLECTION}' on {target.url}, which holds 50 points" in output
    assert "not confirmed; nothing was changed" in output
    assert points_count(target) == 50
    code, output = run_keel_on_a_terminal(*args, answer=COLLECTION)
    assert code == 0, output
    assert_identical(client_of(source), client_of(target))


def test_migrate_onto_an_existing_collection_says_only_to_pass_overwrite(servers, tmp_path):
    """It used to add "run the same command again to resume", which can never succeed."""
    source, target = servers
    state = tmp_path / "state.json"
    refused = run_keel("migrate", "--from", source.url, "--to", target.url, "--state", str(state))
    assert refused.returncode == 2, refused.stderr
    messages = [line for line in refused.stderr.splitlines() if line.startswith("keel migrate:")]
    assert len(messages) == 1, refused.stderr
    assert "--overwrite" in messages[0]
    assert "resume" not in refused.stderr
    assert points_count(target) == 50


def test_a_typing_on_the_terminal_must_match_the_name():
    counts = {"docs": 50}
    args = argparse.Namespace(overwrite=True, confirm_delete=[])
    prompts: list[str] = []

    def answer(text: str):
        def ask(prompt: str) -> str:
            prompts.append(prompt)
            return text

        return ask

    for wrong in ("\n", "y\n", "yes\n", "doc\n"):
        with pytest.raises(transfer.RefusedError, match="not confirmed"):
            transfer.confirm_deletions("import", "http://t", counts, args, answer(wrong))
    assert "holds 50 points" in prompts[0]
    assert transfer.confirm_deletions("import", "http://t", counts, args, answer("docs\n")) == {
        "docs"
    }
    with pytest.raises(transfer.RefusedError, match="--confirm-delete docs"):
        transfer.confirm_deletions("import", "http://t", counts, args, None)
    confirmed = argparse.Namespace(overwrite=True, confirm_delete=["docs"])
    assert transfer.confirm_deletions("import", "http://t", counts, confirmed, None) == {"docs"}
    without_overwrite = argparse.Namespace(overwrite=False, confirm_delete=["docs"])
    with pytest.raises(transfer.RefusedError, match="pass --overwrite"):
        transfer.confirm_deletions("import", "http://t", counts, without_overwrite, answer("docs"))


def test_a_missing_source_collection_is_refused_before_the_target_is_touched(servers):
    source, target = servers
    result = run_keel(
        "import", "--from", source.url, "--to", target.url, "--collection", COLLECTION,
        "--collection", "typo", "--overwrite", "--confirm-delete", COLLECTION,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "no collection typo on the source" in result.stderr
    assert points_count(target) == 50


# ---- logging ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["import", "migrate"])
def test_transfer_commands_log_in_the_servers_format(servers, tmp_path, command):
    source, target = servers
    client_of(target).delete_collection(COLLECTION)
    extra = ("--state", str(tmp_path / "state.json")) if command == "migrate" else ()
    result = run_keel(command, "--from", source.url, "--to", target.url, *extra)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    distinct = [line for line in lines if " servers are distinct source_id=" in line]
    copied = [line for line in lines if f" points copied command={command} collection=docs" in line]
    assert len(distinct) == 1, result.stderr
    assert len(copied) == 1, result.stderr
    for line in distinct + copied:
        assert SERVER_LOG_LINE.match(line), line
    assert f"points_done={POINTS + 20} points_total={POINTS + 20}" in copied[0]
