"""engine/full_snapshot.py and the catalog's full snapshots: the file round-trips, a
manifest that does not add up is refused, and a restore that would mix a collection and
an alias up changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import full_snapshot
from engine.catalog import AliasAction
from engine.errors import BadRequest
from engine.ops import PayloadSelector, VectorSelector
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert

CREATED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def members(tmp_path: Path) -> list[tuple[str, int, Path]]:
    (tmp_path / "x").write_bytes(b"x" * 1000)
    (tmp_path / "y").write_bytes(b"y" * 3)
    return [("a", 7, tmp_path / "x"), ("b", -1, tmp_path / "y")]


def test_a_full_snapshot_unpacks_to_its_members_and_aliases(tmp_path: Path) -> None:
    info = full_snapshot.pack_full(tmp_path, members(tmp_path), {"al": "a"}, CREATED_AT)

    assert info.name == "full-snapshot-2026-01-02-03-04-05.snapshot"
    assert (tmp_path / (info.name + ".checksum")).read_text() == info.checksum
    manifest = full_snapshot.unpack_full(tmp_path / info.name, tmp_path / "out", info.checksum)
    assert [(e.collection_name, e.op_id) for e in manifest.collections] == [("a", 7), ("b", -1)]
    assert manifest.aliases == {"al": "a"}
    assert (tmp_path / "out" / "collections" / "0.snapshot").read_bytes() == b"x" * 1000
    assert (tmp_path / "out" / "collections" / "1.snapshot").read_bytes() == b"y" * 3


def test_a_wrong_checksum_or_manifest_is_refused(tmp_path: Path) -> None:
    info = full_snapshot.pack_full(tmp_path, members(tmp_path), {}, CREATED_AT)
    with pytest.raises(BadRequest, match="checksum mismatch"):
        full_snapshot.unpack_full(tmp_path / info.name, tmp_path / "out1", "0" * 64)
    entries = [{"collection_name": "a", "member": "collections/0.snapshot", "op_id": 1,
                "size_bytes": 1, "sha256": "0" * 64}]
    bad = {"format_version": 1, "kind": "full", "created_at": "", "collections": entries,
           "aliases": {"al": "zz"}}
    with pytest.raises(BadRequest, match="alias al names no collection"):
        full_snapshot._parse_manifest(json.dumps(bad).encode())
    with pytest.raises(BadRequest, match="not a full snapshot"):
        full_snapshot._parse_manifest(json.dumps({**bad, "kind": None}).encode())


async def test_a_collection_named_like_an_alias_here_is_refused_before_any_change(
    tmp_path: Path,
) -> None:
    storage, snapshots = tmp_path / "storage", tmp_path / "snapshots"
    catalog = await open_catalog(storage)
    await catalog.create("a", single_vector_config())
    await catalog.create("b", single_vector_config())
    info = await catalog.create_full_snapshot(snapshots)
    await catalog.delete("b")
    op = upsert([1], [[1, 1, 0, 0]])
    await catalog.get("a").update(op, wait=True, timeout_s=None)
    await catalog.change_aliases([AliasAction("create", "b", collection_name="a")])
    try:
        with pytest.raises(BadRequest, match="collection b is an alias here"):
            await catalog.restore_full(snapshots / info.name)
        assert catalog.names() == ["a"]
        records = await catalog.get("a").retrieve(
            [1], PayloadSelector(False), VectorSelector(False)
        )
        assert [record.id for record in records] == [1]
        assert list((storage / "tmp").iterdir()) == []
    finally:
        await catalog.close()
