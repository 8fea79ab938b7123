"""engine/catalog.py: waiting for recovery (`Catalog.wait_ready`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from engine.catalog import Catalog, lock_storage
from engine.errors import StorageLocked
from engine.limits import EngineSettings


async def test_wait_ready_returns_once_open_finishes(tmp_path: Path) -> None:
    """A waiter started before open() is woken by it, and learns the catalog is ready."""
    catalog = Catalog(tmp_path, EngineSettings())
    waiter = asyncio.create_task(catalog.wait_ready(timeout_s=30.0))
    await asyncio.sleep(0)  # let the waiter start waiting before open() runs
    assert not waiter.done()
    await catalog.open()
    try:
        assert await waiter is True
        assert await catalog.wait_ready(timeout_s=0.0) is True
    finally:
        await catalog.close()
    assert await catalog.wait_ready(timeout_s=30.0) is False  # closed: at once, not ready


async def test_wait_ready_gives_up_after_its_timeout(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path, EngineSettings())  # never opened: recovery never ends
    assert await catalog.wait_ready(timeout_s=0.0) is False
    assert await catalog.wait_ready(timeout_s=0.05) is False
    assert not catalog.is_ready


async def test_a_failed_open_wakes_the_waiters_as_not_ready(tmp_path: Path) -> None:
    """open() raising (the storage is locked by someone else) must not leave a waiter
    waiting out its whole timeout: it answers False as soon as open() has given up."""
    lock_fd = lock_storage(tmp_path)
    try:
        catalog = Catalog(tmp_path, EngineSettings())
        waiter = asyncio.create_task(catalog.wait_ready(timeout_s=600.0))
        await asyncio.sleep(0)
        with pytest.raises(StorageLocked):
            await catalog.open()
        assert await asyncio.wait_for(waiter, timeout=5.0) is False
    finally:
        os.close(lock_fd)
