"""An index checkpoint older than LMDB catches up exactly: born labels added, dead removed.
The catch-up runs after the open, in the applier: until it ends, reads score exactly, the
collection is "yellow", writes are acknowledged and applied after it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.applier import Applier
from engine.errors import CorruptionError
from engine.ops import DeletePoints, SearchRequest, UpdateStatus
from engine.store.store import Store
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

NEVER_S = 86_400.0


async def test_graph_from_an_old_checkpoint_catches_up_with_lmdb(
    tmp_path: Path, monkeypatch
) -> None:
    catalog = await open_catalog(tmp_path, checkpoint_every_ops=10**8, checkpoint_every_s=NEVER_S)
    await catalog.create("c", single_vector_config(dim=4))
    collection = catalog.get("c")
    rng = np.random.default_rng(5)
    await collection.update(
        upsert(list(range(100)), rng.normal(size=(100, 4))), wait=True, timeout_s=None
    )
    loop = asyncio.get_running_loop()
    checkpoint_op_id = await loop.run_in_executor(None, collection._applier._checkpoint)
    assert checkpoint_op_id == 0
    # After the checkpoint: overwrite some, delete some, add new ones, re-add a deleted one.
    await collection.update(
        upsert(list(range(20)), rng.normal(size=(20, 4))), wait=True, timeout_s=None
    )
    await collection.update(DeletePoints(list(range(20, 40))), wait=True, timeout_s=None)
    await collection.update(
        upsert(list(range(100, 130)) + [25], rng.normal(size=(31, 4))), wait=True, timeout_s=None
    )
    # Close without the final checkpoint, as a crash after the last commit would leave it.
    monkeypatch.setattr(collection._applier, "_checkpoint", lambda: checkpoint_op_id)
    await catalog.close()

    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    live_ids = sorted(set(range(130)) - set(range(20, 40)) | {25})
    assert collection.stats().points_count == len(live_ids)
    await collection.wait_indexed()
    assert collection.stats().indexed_vectors_count == len(live_ids)
    query = np.ones(4, np.float32)
    graph_hits = await collection.search(SearchRequest("", query, limit=200, hnsw_ef=400))
    exact_hits = await collection.search(SearchRequest("", query, limit=200, is_exact=True))
    assert sorted(hit.id for hit in graph_hits) == live_ids
    assert [(h.id, h.score) for h in graph_hits] == [(h.id, h.score) for h in exact_hits]
    await catalog.close()


async def test_replaying_an_applied_batch_changes_nothing(tmp_path: Path) -> None:
    """Replay skips op ids at or below applied_op_id, so replay twice == replay once."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=4))
    await catalog.close()
    store = Store(tmp_path / "collections" / "c" / "lmdb", [""], 64 * 1024 * 1024)
    records = [(0, upsert([1, 2], np.eye(2, 4), [{"a": 1}, None])), (1, DeletePoints([2]))]
    first = store.write_batch(records)
    labels_after_first = store.next_label
    second = store.write_batch(records)
    assert first.points_written == 3
    assert second.points_written == 0
    assert store.next_label == labels_after_first
    assert store.applied_op_id == 1
    [one, two] = store.get_points(
        [b"\x00" + (1).to_bytes(8, "big"), b"\x00" + (2).to_bytes(8, "big")]
    )
    assert one.payload == {"a": 1} and two is None
    store.close()
    # LMDB now claims ops the WAL never logged: opening must refuse, naming the directory.
    with pytest.raises(CorruptionError, match="WAL segments are missing"):
        await open_catalog(tmp_path)


def hold_catch_up(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make every catch-up wait for `release`; `started` is set when one begins."""
    started, release = threading.Event(), threading.Event()
    catch_up = Applier._catch_up

    def held(self: Applier, name: str) -> int | None:
        started.set()
        assert release.wait(30), "test never released the catch-up"
        return catch_up(self, name)

    monkeypatch.setattr(Applier, "_catch_up", held)
    return started, release


async def wait_started(started: threading.Event) -> None:
    assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)


async def write_and_drop_checkpoints(path: Path, count: int) -> np.ndarray:
    catalog = await open_catalog(path)
    await catalog.create("c", single_vector_config(dim=4))
    matrix = np.random.default_rng(7).normal(size=(count, 4))
    await catalog.get("c").update(upsert(list(range(count)), matrix), wait=True, timeout_s=None)
    await catalog.close()
    for file in (path / "collections" / "c" / "index").iterdir():
        file.unlink()
    return matrix


async def test_reads_are_exact_and_writes_wait_while_the_graph_catches_up(
    tmp_path: Path, monkeypatch
) -> None:
    await write_and_drop_checkpoints(tmp_path, 300)
    started, release = hold_catch_up(monkeypatch)
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    await wait_started(started)
    assert collection.stats().status == "yellow"
    assert collection.stats().indexed_vectors_count == 0
    query = np.ones(4, np.float32)
    during = await collection.search(SearchRequest("", query, limit=20))
    exact = await collection.search(SearchRequest("", query, limit=20, is_exact=True))
    assert [(h.id, h.score) for h in during] == [(h.id, h.score) for h in exact]
    acknowledged = await collection.update(DeletePoints([0, 1]), wait=False, timeout_s=None)
    assert acknowledged.status == UpdateStatus.ACKNOWLEDGED
    timed_out = await collection.update(DeletePoints([2]), wait=True, timeout_s=0.2)
    assert timed_out.status == UpdateStatus.WAIT_TIMEOUT  # applied only after the catch-up
    release.set()
    await collection.wait_indexed()
    await collection.update(DeletePoints([3]), wait=True, timeout_s=None)
    stats = collection.stats()
    assert (stats.status, stats.points_count, stats.indexed_vectors_count) == ("green", 296, 296)
    graph_hits = await collection.search(SearchRequest("", query, limit=300, hnsw_ef=400))
    assert sorted(hit.id for hit in graph_hits) == list(range(4, 300))
    await catalog.close()


async def test_a_close_during_the_catch_up_stops_it_and_the_next_open_finishes_it(
    tmp_path: Path, monkeypatch
) -> None:
    await write_and_drop_checkpoints(tmp_path, 200)
    started, release = hold_catch_up(monkeypatch)
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    await collection.update(DeletePoints(list(range(50))), wait=False, timeout_s=None)
    await wait_started(started)
    closing = asyncio.create_task(catalog.close())
    await asyncio.sleep(0.1)
    release.set()
    await closing
    # The graph was not caught up, so no checkpoint of it was written; the delete was applied.
    assert not list((tmp_path / "collections" / "c" / "index").glob("*.hnsw"))
    monkeypatch.undo()
    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    await collection.wait_indexed()
    assert collection.stats().indexed_vectors_count == 150
    hits = await collection.search(
        SearchRequest("", np.ones(4, np.float32), limit=200, hnsw_ef=400)
    )
    assert sorted(hit.id for hit in hits) == list(range(50, 200))
    await catalog.close()


async def test_a_long_catch_up_is_checkpointed_at_once(tmp_path: Path) -> None:
    await write_and_drop_checkpoints(tmp_path, 120)
    catalog = await open_catalog(tmp_path, checkpoint_every_ops=100, checkpoint_every_s=NEVER_S)
    collection = catalog.get("c")
    await collection.wait_indexed()
    index_dir = tmp_path / "collections" / "c" / "index"
    await wait_for(lambda: list(index_dir.glob("*.hnsw")))
    await catalog.close()


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)
