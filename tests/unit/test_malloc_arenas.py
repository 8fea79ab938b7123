"""server/malloc_arenas.py: glibc takes the arena cap; an operator's MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import platform

import pytest

from server.malloc_arenas import limit_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_cap(monkeypatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_arenas(8)  # this test process's own threads are unaffected by 8 arenas


def test_the_environment_wins(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not limit_arenas()
