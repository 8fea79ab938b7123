"""Vector-name ops in the engine: their config effect, WAL encoding, and recovery agreeing with
LMDB whatever config.json and the index checkpoints a crash left behind."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.check.check import check_storage
from engine.collection import CONFIG_FILE_NAME, read_config
from engine.errors import BadRequest
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    CreateVectorName,
    DeleteVectorName,
    Distance,
    SearchRequest,
    SparseModifier,
    SparseVectorConfig,
    VectorConfig,
    VectorSelector,
    config_after,
    reconcile_vector_names,
)
from engine.wal.op_codec import decode_op, encode_op
from tests.unit.engine_helpers import open_catalog, upsert

DOT2 = VectorConfig(2, Distance.DOT)
NAMED = CollectionConfig(vectors={"a": DOT2})


def test_config_after_adds_and_removes_names_with_their_echo():
    created = config_after(NAMED, CreateVectorName("b", dense=DOT2, echo={"datatype": "uint8"}))
    assert list(created.vectors) == ["a", "b"]
    assert created.echo["vectors"]["b"] == {"datatype": "uint8"}
    assert config_after(created, CreateVectorName("b", dense=VectorConfig(9, Distance.DOT))) is (
        created  # an existing name is kept as it is
    )
    sparse = config_after(created, CreateVectorName("s", sparse=SparseVectorConfig()))
    assert list(sparse.sparse_vectors) == ["s"]
    deleted = config_after(sparse, DeleteVectorName("a"))
    assert list(deleted.vectors) == ["b"]
    assert config_after(deleted, DeleteVectorName("zzz")) is deleted
    unnamed = CollectionConfig(vectors={UNNAMED_VECTOR: DOT2})
    assert config_after(unnamed, CreateVectorName("x", dense=DOT2)).echo["is_single_form"] is False


def test_reconcile_takes_names_from_the_truth_and_tuning_from_the_config():
    tuned = CollectionConfig(vectors={"a": VectorConfig(2, Distance.DOT, hnsw_m=0)})
    truth = config_after(NAMED, CreateVectorName("b", dense=DOT2))
    reconciled = reconcile_vector_names(tuned, truth)
    assert reconciled.vectors == {"a": VectorConfig(2, Distance.DOT, hnsw_m=0), "b": DOT2}
    resized = CollectionConfig(vectors={"a": VectorConfig(5, Distance.DOT)})
    assert reconcile_vector_names(resized, NAMED).vectors == {"a": DOT2}
    assert reconcile_vector_names(NAMED, NAMED) is NAMED


@pytest.mark.parametrize(
    "op",
    [
        CreateVectorName(
            "b",
            dense=VectorConfig(2, Distance.DOT, datatype="float16"),
            echo={"datatype": "float16"},
        ),
        CreateVectorName("m", dense=VectorConfig(3, Distance.COSINE, is_multivector=True)),
        CreateVectorName("s", sparse=SparseVectorConfig(SparseModifier.IDF), echo={"x": 1}),
        DeleteVectorName("b"),
    ],
)
def test_vector_name_ops_round_trip_through_the_wal_codec(op):
    assert decode_op(encode_op(op)) == op


async def test_a_conflicting_name_is_refused_before_it_is_logged(tmp_path: Path):
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        appended = collection.appended_op_id
        with pytest.raises(BadRequest, match="already exists with a different configuration"):
            await collection.update_vector_names(
                CreateVectorName("a", dense=VectorConfig(3, Distance.DOT)),
                wait=True,
                timeout_s=None,
            )
        assert collection.appended_op_id == appended
    finally:
        await catalog.close()


async def test_a_stale_config_json_is_brought_in_step_with_lmdb(tmp_path: Path):
    """A crash between a vector-name op's LMDB commit and config.json: simulated by putting
    the old config.json back after a clean close."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", NAMED)
    collection = catalog.get("c")
    await collection.update(upsert([1, 2], [[1, 0], [0, 1]], name="a"), wait=True, timeout_s=None)
    config_path = collection.directory / CONFIG_FILE_NAME
    old_config = config_path.read_bytes()
    op = CreateVectorName("b", dense=VectorConfig(3, Distance.DOT))
    await collection.update_vector_names(op, wait=True, timeout_s=None)
    await collection.update_vector_names(DeleteVectorName("a"), wait=True, timeout_s=None)
    await catalog.close()
    config_path.write_bytes(old_config)

    catalog = await open_catalog(tmp_path)
    try:
        collection = catalog.get("c")
        assert list(collection.config.vectors) == ["b"]
        assert b'"a"' not in config_path.read_bytes()
        [record] = await collection.retrieve([1], *_all_vectors())
        assert record.vectors == {}
    finally:
        await catalog.close()
    config_path.write_bytes(old_config)  # stale again: `keel check` reads LMDB's names
    report = check_storage(tmp_path, lambda _text: None)
    assert report.findings == []
    assert report.points_count == 2


async def test_a_name_made_again_never_uses_the_old_names_graph(tmp_path: Path):
    """The checkpoint of a deleted vector's graph, left on disk (a crash before its removal),
    must not come back with a new vector of the same name."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", NAMED)
    collection = catalog.get("c")
    await collection.update(upsert([1, 2], [[1, 0], [0, 1]], name="a"), wait=True, timeout_s=None)
    await catalog.close()  # checkpoints the graph of `a`
    index_directory = tmp_path / "collections" / "c" / "index"
    kept = {path.name: path.read_bytes() for path in index_directory.iterdir()}
    assert kept, "the close wrote a checkpoint"

    catalog = await open_catalog(tmp_path)
    collection = catalog.get("c")
    await collection.update_vector_names(DeleteVectorName("a"), wait=True, timeout_s=None)
    await collection.update_vector_names(
        CreateVectorName("a", dense=DOT2), wait=True, timeout_s=None
    )
    await catalog.close()
    for name, data in kept.items():
        (index_directory / name).write_bytes(data)  # the old graph's files, put back

    catalog = await open_catalog(tmp_path)
    try:
        collection = catalog.get("c")
        await collection.wait_indexed()
        assert collection.metrics().index_vector_counts == {"a": 0}  # the old graph had 2
        request = SearchRequest("a", np.array([1, 1], dtype=np.float32), limit=5)
        assert await collection.search(request) == []
        await collection.update(upsert([3], [[2, 2]], name="a"), wait=True, timeout_s=None)
        assert [hit.id for hit in await collection.search(request)] == [3]
    finally:
        await catalog.close()


def _all_vectors() -> tuple:
    from engine.ops import PayloadSelector

    return PayloadSelector(False), VectorSelector(True)


async def test_a_snapshot_restores_the_vector_names_it_was_taken_with(tmp_path: Path):
    catalog = await open_catalog(tmp_path / "storage")
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        await collection.update(upsert([1], [[1, 0]], name="a"), wait=True, timeout_s=None)
        op = CreateVectorName("s", sparse=SparseVectorConfig(SparseModifier.IDF))
        await collection.update_vector_names(op, wait=True, timeout_s=None)
        await collection.update_vector_names(DeleteVectorName("a"), wait=True, timeout_s=None)
        info = await catalog.create_snapshot("c", tmp_path / "snapshots")
        await catalog.delete("c")
        await catalog.restore("c", tmp_path / "snapshots" / "c" / info.name)
        restored = catalog.get("c")
        assert list(restored.config.vectors) == []
        assert list(restored.config.sparse_vectors) == ["s"]
        [record] = await restored.retrieve([1], *_all_vectors())
        assert record.vectors == {}
    finally:
        await catalog.close()


async def test_a_patch_and_a_vector_name_op_at_once_both_reach_config_json(tmp_path: Path):
    """Whatever order their config.json writes take, neither undoes the other: the PATCH's
    tuning and the new name are both there, in memory, on disk and after a reopen."""
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        for round_index in range(6):
            op = CreateVectorName(f"v{round_index}", dense=DOT2)
            ef = 40 + round_index

            def tune(config: CollectionConfig, ef: int = ef) -> CollectionConfig:
                vectors = {
                    **config.vectors,
                    "a": replace(config.vectors["a"], hnsw_ef_construct=ef),
                }
                return replace(config, vectors=vectors)

            create = collection.update_vector_names(op, wait=round_index % 2 == 0, timeout_s=None)
            patch = catalog.update_config("c", tune)
            pair = (create, patch) if round_index % 3 else (patch, create)
            await asyncio.gather(*pair)
            written = read_config(collection.directory)
            for config in (collection.config, written):
                assert f"v{round_index}" in config.vectors
                assert config.vectors["a"].hnsw_ef_construct == ef
    finally:
        await catalog.close()
    catalog = await open_catalog(tmp_path)
    try:
        config = catalog.get("c").config
        assert sorted(config.vectors) == ["a", "v0", "v1", "v2", "v3", "v4", "v5"]
        assert config.vectors["a"].hnsw_ef_construct == 45
    finally:
        await catalog.close()


async def test_a_snapshot_between_a_vector_name_op_and_its_apply_keeps_the_copys_names(
    tmp_path: Path,
):
    """The snapshot's config has the vector names of its LMDB copy, not those of an op
    acknowledged but not applied when the copy was taken (the applier's thread is held)."""
    catalog = await open_catalog(tmp_path / "storage")
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        await collection.update(upsert([1], [[1, 0]], name="a"), wait=True, timeout_s=None)
        release = threading.Event()
        held = collection._applier._executor.submit(release.wait)  # the applier's one thread
        try:
            op = DeleteVectorName("a")
            result = await collection.update_vector_names(op, wait=False, timeout_s=None)
            assert result.status.value == "acknowledged"
            assert list(collection.config.vectors) == []
            info = await catalog.create_snapshot("c", tmp_path / "snapshots")
        finally:
            release.set()
            held.result()
        await catalog.restore("r", tmp_path / "snapshots" / "c" / info.name)
        restored = catalog.get("r")
        assert list(restored.config.vectors) == ["a"]  # as of the copy's op id
        await restored.update(upsert([1], [[0, 1]], name="a"), wait=True, timeout_s=None)
        [record] = await restored.retrieve([1], *_all_vectors())
        assert record.vectors["a"].tolist() == [0.0, 1.0]
        assert not restored.is_write_path_failed
    finally:
        await catalog.close()


async def test_a_name_acknowledged_but_not_applied_is_searched_as_empty(tmp_path: Path):
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        await collection.update(upsert([1], [[1, 0]], name="a"), wait=True, timeout_s=None)
        release = threading.Event()
        held = collection._applier._executor.submit(release.wait)  # the applier's one thread
        try:
            op = CreateVectorName("x", dense=DOT2)
            await collection.update_vector_names(op, wait=False, timeout_s=None)
            request = SearchRequest("x", np.ones(2, np.float32))
            assert await collection.search(request) == []
            assert collection.vector_counts() == {"a": 1, "x": 0}
            [record] = await collection.retrieve([1], *_all_vectors())
            assert list(record.vectors) == ["a"]
        finally:
            release.set()
            held.result()
        await collection.update(upsert([2], [[3, 4]], name="x"), wait=True, timeout_s=None)
        assert [hit.id for hit in await collection.search(request)] == [2]
    finally:
        await catalog.close()
