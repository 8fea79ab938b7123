"""Fixtures shared by every test directory.

Real-server helpers live in tests/keel_process.py (`KeelProcess`, `wait_until`); this file
makes sure no server outlives the test (or the fixture scope) that started it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.keel_process import kill_all_running, kill_started_since, running_servers


@pytest.fixture(autouse=True)
def _kill_keel_servers_left_by_the_test() -> Iterator[None]:
    """SIGKILL every KeelProcess the test itself left running, even when it failed.

    Servers of module- or session-scoped fixtures were started before this fixture (pytest
    sets up wider scopes first), so they are spared; their fixtures stop them.
    """
    already_running = running_servers()
    yield
    kill_started_since(already_running)


@pytest.fixture(autouse=True, scope="session")
def _kill_every_keel_server_at_the_end() -> Iterator[None]:
    """Last resort for a wider-scoped fixture that forgot to stop its server."""
    yield
    kill_all_running()
