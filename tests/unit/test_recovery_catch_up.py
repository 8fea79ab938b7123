"""An index checkpoint older than LMDB catches up exactly: born labels added, dead removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.errors import CorruptionError
from engine.ops import DeletePoints, SearchRequest
from engine.store import Store
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
    first = store.apply_batch(records)
    labels_after_first = store.next_label
    second = store.apply_batch(records)
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
