"""A config update that changes a vector's graph takes effect at once (issue 17, part 5):
`m` = 0 (collection-wide or the vector's own `hnsw_config`) drops the graph and the vector is
searched exactly; `m` back above 0, or another `m` / `ef_construct`, builds a graph from LMDB
with the new settings, while writes go on around it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.collection import graph_changes
from engine.ops import (
    CollectionConfig,
    Distance,
    HnswSettings,
    NamedVectors,
    SearchRequest,
    UpsertPoints,
    VectorConfig,
)
from engine.vectors.hnsw import VectorIndex
from tests.unit.engine_helpers import open_catalog, upsert

CONFIG = CollectionConfig(
    vectors={"a": VectorConfig(4, Distance.DOT), "b": VectorConfig(4, Distance.DOT)},
    hnsw=HnswSettings(m=8, ef_construct=32),
)


def with_vector(config: CollectionConfig, name: str, **changes: object) -> CollectionConfig:
    return replace(
        config, vectors={**config.vectors, name: replace(config.vectors[name], **changes)}
    )


def test_graph_changes_name_what_goes_and_what_is_built():
    assert graph_changes(CONFIG, CONFIG) == ([], [])
    assert graph_changes(CONFIG, with_vector(CONFIG, "a", hnsw_m=0)) == (["a"], [])
    off = with_vector(CONFIG, "a", hnsw_m=0)
    assert graph_changes(off, CONFIG) == ([], ["a"])
    assert graph_changes(CONFIG, with_vector(CONFIG, "b", hnsw_ef_construct=64)) == ([], ["b"])
    assert graph_changes(CONFIG, with_vector(CONFIG, "b", hnsw_ef_construct=32)) == ([], [])
    collection_off = replace(CONFIG, hnsw=HnswSettings(m=0, ef_construct=32))
    assert graph_changes(CONFIG, collection_off) == (["a", "b"], [])
    # The vector's own m wins over the collection's.
    assert graph_changes(off, replace(off, hnsw=HnswSettings(m=0, ef_construct=32))) == (["b"], [])


async def test_m_zero_drops_the_graph_at_once_and_m_back_builds_it(tmp_path: Path):
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", CONFIG)
        collection = catalog.get("c")
        rng = np.random.default_rng(7)
        matrix = rng.normal(size=(50, 4)).astype(np.float32)
        rows = np.arange(50, dtype=np.int32)
        both = {"a": NamedVectors(rows, matrix), "b": NamedVectors(rows, matrix)}
        op = UpsertPoints(list(range(50)), both, [None] * 50)
        await collection.update(op, wait=True, timeout_s=None)
        query = np.ones(4, np.float32)
        exact = await collection.search(SearchRequest("a", query, limit=50, is_exact=True))
        assert collection.metrics().index_vector_counts == {"a": 50, "b": 50}

        await catalog.update_config("c", lambda config: with_vector(config, "a", hnsw_m=0))
        assert collection.metrics().index_vector_counts == {"b": 50}  # before any restart
        assert await collection.search(SearchRequest("a", query, limit=50)) == exact
        await collection.update(upsert([60], [[5, 5, 5, 5]], name="a"), wait=True, timeout_s=None)
        [best] = await collection.search(SearchRequest("a", query, limit=1))
        assert best.id == 60

        await catalog.update_config("c", lambda config: with_vector(config, "a", hnsw_m=16))
        await collection.update(upsert([61], [[9, 9, 9, 9]], name="a"), wait=True, timeout_s=None)
        await collection.wait_indexed()
        assert collection.metrics().index_vector_counts == {"a": 52, "b": 50}
        hits = await collection.search(SearchRequest("a", query, limit=2, hnsw_ef=200))
        assert [hit.id for hit in hits] == [61, 60]
        assert collection.stats().status == "green"
    finally:
        await catalog.close()


async def test_other_graph_settings_rebuild_the_graph_and_drop_its_old_checkpoint(
    tmp_path: Path,
):
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", CONFIG)
    collection = catalog.get("c")
    op = upsert(list(range(30)), np.eye(30, 4, dtype=np.float32) + 0.1, name="b")
    await collection.update(op, wait=True, timeout_s=None)
    await catalog.close()  # writes b's checkpoint, built with ef_construct 32
    index_directory = tmp_path / "collections" / "c" / "index"
    meta_path = index_directory / ("v-" + b"b".hex() + ".json")
    assert meta_path.exists()

    catalog = await open_catalog(tmp_path)
    try:
        collection = catalog.get("c")
        await collection.wait_indexed()
        await catalog.update_config("c", lambda c: with_vector(c, "b", hnsw_ef_construct=64))
        await collection.wait_indexed()
        # A start before the new graph's first checkpoint builds from LMDB, not the old file.
        assert not meta_path.exists()
        assert collection.metrics().index_vector_counts == {"a": 0, "b": 30}
        query = np.array([1, 0, 0, 0], np.float32)
        [best] = await collection.search(SearchRequest("b", query, limit=1))
        assert best.id == 0
    finally:
        await catalog.close()
    assert meta_path.exists()  # the close checkpoints the new graph


def test_a_checkpoint_built_with_other_settings_is_not_loaded(tmp_path: Path):
    """Whatever the timing of a crash after a PATCH, a start never uses a graph built with
    the old m / ef_construct: the checkpoint says what it was built with."""
    built = VectorIndex(tmp_path, "v", VectorConfig(2, Distance.DOT), HnswSettings(ef_construct=32))
    built.load_checkpoint()
    built.add([0, 1], np.array([[1, 0], [0, 1]], np.float32))
    built.save_checkpoint(5, 2)
    same = VectorIndex(tmp_path, "v", VectorConfig(2, Distance.DOT), HnswSettings(ef_construct=32))
    assert same.load_checkpoint()
    assert same.checkpoint_op_id == 5
    for vector, hnsw in [
        (VectorConfig(2, Distance.DOT, hnsw_ef_construct=64), HnswSettings(ef_construct=32)),
        (VectorConfig(2, Distance.DOT), HnswSettings(m=8, ef_construct=32)),
    ]:
        other = VectorIndex(tmp_path, "v", vector, hnsw)
        assert not other.load_checkpoint()
        assert (other.checkpoint_op_id, other.live_count) == (-1, 0)
