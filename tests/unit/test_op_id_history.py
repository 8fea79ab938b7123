"""Op ids of a collection name never repeat: a restore, or a delete and create, continues
above every op id handed out before, under a new incarnation id (engine/catalog.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import OP_ID_FLOORS_FILE_NAME
from engine.errors import CorruptionError
from engine.ops import SearchRequest
from tests.unit.engine_helpers import open_catalog, single_vector_config
from tests.unit.test_snapshot import points_of, write_points


async def test_restoring_an_older_snapshot_continues_above_the_replaced_ops(
    tmp_path: Path,
) -> None:
    """The issue's scenario: ops 0..2, snapshot at 2, ops 3..5, restore: the next write is
    op 6 (not 3, which an earlier write already had), and it survives a restart."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    assert await write_points(catalog.get("c"), [1, 2, 3]) == 2
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    assert await write_points(catalog.get("c"), [4, 5, 6]) == 5
    before = catalog.get("c").incarnation

    manifest = await catalog.restore("c", tmp_path / "snapshots" / "c" / info.name)

    restored = catalog.get("c")
    assert manifest.op_id == 2
    assert restored.incarnation != before
    assert restored.wal_bounds() == (6, 5)  # WAL starts above the replaced history
    assert list(await points_of(restored, [1, 2, 3, 4, 5, 6])) == [1, 2, 3]
    assert await write_points(restored, [7]) == 6
    incarnation = restored.incarnation
    await catalog.close()

    catalog = await open_catalog(tmp_path / "storage")
    assert catalog.get("c").incarnation == incarnation
    assert list(await points_of(catalog.get("c"), list(range(1, 8)))) == [1, 2, 3, 7]
    query = SearchRequest("", np.array([7, 1, 0, 0], np.float32), limit=2)
    assert [hit.id for hit in await catalog.get("c").search(query)] == [7, 3]
    assert await write_points(catalog.get("c"), [8]) == 7
    await catalog.close()


async def test_a_deleted_and_recreated_collection_continues_above_the_old_ops(
    tmp_path: Path,
) -> None:
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    assert await write_points(catalog.get("c"), [1, 2, 3, 4]) == 3
    first = catalog.get("c").incarnation
    assert await catalog.delete("c")
    await catalog.close()

    catalog = await open_catalog(tmp_path / "storage")  # the floor is durable
    await catalog.create("c", single_vector_config())
    assert catalog.get("c").incarnation != first
    assert await points_of(catalog.get("c"), [1, 2, 3, 4]) == {}
    assert await write_points(catalog.get("c"), [9]) == 4
    # Other names are not affected.
    await catalog.create("d", single_vector_config())
    assert await write_points(catalog.get("d"), [1]) == 0
    await catalog.close()


async def test_a_restore_over_nothing_uses_the_floor_of_a_deleted_collection(
    tmp_path: Path,
) -> None:
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    await write_points(catalog.get("c"), [1])
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await write_points(catalog.get("c"), [2, 3, 4, 5])  # up to op 4
    await catalog.delete("c")
    await catalog.restore("c", tmp_path / "snapshots" / "c" / info.name)
    assert await write_points(catalog.get("c"), [6]) == 5
    await catalog.close()


async def test_a_restore_of_a_newer_snapshot_keeps_its_own_op_ids(tmp_path: Path) -> None:
    """A snapshot taken after everything the name handed out needs no jump."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    await write_points(catalog.get("c"), [1, 2])
    info = await catalog.create_snapshot("c", tmp_path / "snapshots")
    await catalog.restore("other", tmp_path / "snapshots" / "c" / info.name)
    assert catalog.get("other").wal_bounds() == (2, 1)
    assert await write_points(catalog.get("other"), [3]) == 2
    await catalog.close()


async def test_an_unreadable_floors_file_stops_the_open(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    catalog = await open_catalog(storage)
    await catalog.close()
    (storage / OP_ID_FLOORS_FILE_NAME).write_text(json.dumps({"c": "seven"}))
    with pytest.raises(CorruptionError, match="op id floors"):
        await open_catalog(storage)


async def test_a_collection_copied_without_its_empty_index_directory_opens_and_closes(
    tmp_path: Path,
) -> None:
    """git and some archivers drop empty directories; index/ only holds checkpoints."""
    catalog = await open_catalog(tmp_path / "storage")
    await catalog.create("c", single_vector_config())
    await catalog.close()
    (tmp_path / "storage" / "collections" / "c" / "index").rmdir()
    catalog = await open_catalog(tmp_path / "storage")
    assert await write_points(catalog.get("c"), [1]) == 0
    await catalog.close()  # checkpoints the graph into index/
    catalog = await open_catalog(tmp_path / "storage")
    assert list(await points_of(catalog.get("c"), [1])) == [1]
    await catalog.close()
