"""A collection's config update is atomic and durable: config.json is old or new, never a mix.

Method: record the file operations of `Collection.write_config` with engine.files' recorder
and build every crash state the persistence model allows (tests/recovery/crash_states.py:
kill -9 at each point, and power losses that drop, tear or reorder unsynced work); each must
hold a config.json that parses to the old or the new config, and the new one once the update
returned. Also through the Catalog: a change that raises writes nothing, one that succeeds is
what a reopened catalog reads.
"""

from __future__ import annotations

import errno
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine import files
from engine.catalog import Catalog
from engine.collection import CONFIG_FILE_NAME, Collection, graph_changes, is_graphed
from engine.errors import BadRequest
from engine.limits import EngineSettings
from engine.ops import (
    CollectionConfig,
    DeletePoints,
    Distance,
    HnswSettings,
    SearchRequest,
    VectorConfig,
)
from tests.recovery.crash_states import (
    Chooser,
    CrashModel,
    Reordered,
    Snapshot,
    SyncedOnly,
    Torn,
)
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

OLD = CollectionConfig(
    vectors={"": VectorConfig(size=4, distance=Distance.DOT)}, echo={"metadata": {"a": 1}}
)
NEW = replace(OLD, hnsw=HnswSettings(m=8, ef_construct=64), echo={"metadata": {"b": "x" * 2000}})


def read_config(tree: dict[str, bytes | None]) -> CollectionConfig:
    return CollectionConfig.from_json_dict(json.loads(tree[f"c/{CONFIG_FILE_NAME}"] or b""))


def test_every_crash_state_of_a_config_write_holds_the_old_or_the_new_config(tmp_path: Path):
    Collection.create_layout(tmp_path / "c", OLD)
    snapshot = Snapshot.take(tmp_path)
    recorder = files.Recorder()
    files.install_recorder(recorder)
    try:
        Collection.write_config(tmp_path / "c", NEW)
    finally:
        files.install_recorder(None)
    model = CrashModel(snapshot, recorder.events)
    rng = random.Random(4)
    seen = []
    for point in range(model.event_count + 1):
        choosers = [Chooser(), SyncedOnly(), *(Torn(rng) for _ in range(20))]
        choosers += [Reordered(rng) for _ in range(20)]
        for chooser in choosers:
            config = read_config(model.state(point, chooser).tree)
            assert config in (OLD, NEW), (point, chooser.kind)
            seen.append(config)
    assert OLD in seen  # the generated states start before the rename...
    assert NEW in seen  # ...and reach past it
    # Once write_config returned, even a power loss keeps the new config.
    assert read_config(model.state(model.event_count, SyncedOnly()).tree) == NEW


def test_a_failed_rename_leaves_the_old_config(tmp_path: Path):
    Collection.create_layout(tmp_path / "c", OLD)

    def rename_fails(event: files.FileEvent) -> None:
        if isinstance(event, files.Rename):
            raise OSError(errno.EIO, "I/O error")

    files.install_recorder(files.Recorder(fault=rename_fails))
    try:
        with pytest.raises(OSError, match="I/O error"):
            Collection.write_config(tmp_path / "c", NEW)
    finally:
        files.install_recorder(None)
    data = (tmp_path / "c" / CONFIG_FILE_NAME).read_bytes()
    assert CollectionConfig.from_json_dict(json.loads(data)) == OLD


async def test_catalog_update_is_all_or_nothing_and_read_back_after_reopen(tmp_path: Path):
    catalog = Catalog(tmp_path, EngineSettings())
    await catalog.open()
    try:
        await catalog.create("c", OLD)

        def bad_change(config: CollectionConfig) -> CollectionConfig:
            raise BadRequest("no")

        with pytest.raises(BadRequest):
            await catalog.update_config("c", bad_change)
        too_big_m = replace(OLD, hnsw=HnswSettings(m=10_000))
        with pytest.raises(BadRequest, match="hnsw m"):
            await catalog.update_config("c", lambda config: too_big_m)
        assert catalog.get("c").config == OLD
        await catalog.update_config("c", lambda config: NEW)
        assert catalog.get("c").config == NEW
    finally:
        await catalog.close()
    reopened = Catalog(tmp_path, EngineSettings())
    await reopened.open()
    try:
        assert reopened.get("c").config == NEW
    finally:
        await reopened.close()


async def test_a_graph_turned_off_and_on_again_is_rebuilt_from_lmdb(tmp_path: Path):
    """m -> 0 drops the graph at the next start, and its checkpoint with it: changes made while
    it was off (deletes, whose dead labels are then purged) would be missing from that old
    checkpoint. m back above 0 rebuilds the graph from LMDB at the next start."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=4))
    rng = np.random.default_rng(3)
    update = catalog.get("c").update
    await update(upsert(list(range(60)), rng.normal(size=(60, 4))), wait=True, timeout_s=None)
    await catalog.update_config("c", lambda config: replace(config, hnsw=HnswSettings(m=0)))
    await catalog.close()  # checkpoints the graph, which is still on until the restart

    catalog = await open_catalog(tmp_path, checkpoint_every_ops=1)
    collection = catalog.get("c")
    assert collection.stats().indexed_vectors_count == 0
    assert not list((collection.directory / "index").glob("v-*"))
    await collection.update(DeletePoints(list(range(10, 30))), wait=True, timeout_s=None)
    await collection.update(upsert([100], rng.normal(size=(1, 4))), wait=True, timeout_s=None)
    await catalog.update_config("c", lambda config: replace(config, hnsw=HnswSettings(m=16)))
    await catalog.close()

    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    live_ids = sorted(set(range(60)) - set(range(10, 30)) | {100})
    await collection.wait_indexed()
    assert collection.stats().indexed_vectors_count == len(live_ids)
    query = np.ones(4, np.float32)
    graph_hits = await collection.search(SearchRequest("", query, limit=100, hnsw_ef=400))
    assert sorted(hit.id for hit in graph_hits) == live_ids
    await catalog.close()


def with_indexing_threshold(config: CollectionConfig, threshold_kb: int) -> CollectionConfig:
    """`config` as a create or PATCH with `optimizers_config.indexing_threshold` leaves it."""
    optimizers = {**config.echo.get("optimizers_config", {}), "indexing_threshold": threshold_kb}
    return replace(config, echo={**config.echo, "optimizers_config": optimizers})


def test_indexing_threshold_zero_turns_every_graph_off():
    """Qdrant's indexing_threshold 0 disables indexing; any other value leaves Keel's one
    segment indexed, as before."""
    config = CollectionConfig(
        vectors={"a": VectorConfig(4, Distance.DOT), "b": VectorConfig(4, Distance.DOT)}
    )
    off = with_indexing_threshold(config, 0)
    assert graph_changes(config, off) == (["a", "b"], [])
    assert graph_changes(off, with_indexing_threshold(off, 10)) == ([], ["a", "b"])
    assert graph_changes(config, with_indexing_threshold(config, 10)) == ([], [])
    assert [is_graphed(off, name) for name in off.vectors] == [False, False]


async def test_a_collection_made_with_indexing_off_never_builds_a_graph(tmp_path: Path):
    """Created with indexing_threshold 0: no graph, exact search, indexed_vectors_count 0,
    no checkpoint written (every op would checkpoint a graph), and the same after a restart,
    which reads the setting from config.json. Turning indexing on builds the graph from LMDB;
    off again drops it at once."""
    catalog = await open_catalog(tmp_path, checkpoint_every_ops=1)
    await catalog.create("c", with_indexing_threshold(single_vector_config(dim=4), 0))
    rng = np.random.default_rng(5)
    update = catalog.get("c").update
    await update(upsert(list(range(40)), rng.normal(size=(40, 4))), wait=True, timeout_s=None)
    query = np.ones(4, np.float32)
    collection = catalog.get("c")
    exact = await collection.search(SearchRequest("", query, limit=40, is_exact=True))
    assert collection.stats().indexed_vectors_count == 0
    assert await collection.search(SearchRequest("", query, limit=40)) == exact
    await catalog.close()
    assert not list((tmp_path / "collections" / "c" / "index").glob("v-*"))

    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    assert collection.stats().indexed_vectors_count == 0
    assert await collection.search(SearchRequest("", query, limit=40)) == exact
    await catalog.update_config("c", lambda config: with_indexing_threshold(config, 10))
    await collection.wait_indexed()
    assert collection.stats().indexed_vectors_count == 40
    await catalog.update_config("c", lambda config: with_indexing_threshold(config, 0))
    assert collection.stats().indexed_vectors_count == 0
    await catalog.close()
