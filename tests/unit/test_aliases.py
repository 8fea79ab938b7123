"""Aliases: create, delete, rename all-or-none, resolution, persistence, cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import AliasAction
from engine.errors import BadRequest, Conflict, NotFound
from tests.unit.engine_helpers import open_catalog, single_vector_config


async def test_aliases_resolve_persist_and_go_with_their_collection(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    await catalog.create("d", single_vector_config())
    await catalog.change_aliases(
        [
            AliasAction("create", "a", collection_name="c"),
            AliasAction("create", "b", collection_name="c"),
        ]
    )
    assert catalog.get("a") is catalog.get("c")
    assert catalog.exists("a")
    await catalog.change_aliases(
        [
            AliasAction("rename", "b", new_alias_name="b2"),
            AliasAction("create", "a", collection_name="d"),
        ]
    )
    assert catalog.aliases() == [("a", "d"), ("b2", "c")]
    assert catalog.aliases("c") == [("b2", "c")]
    await catalog.close()

    catalog = await open_catalog(tmp_path)
    assert catalog.aliases() == [("a", "d"), ("b2", "c")]
    assert await catalog.delete("c")
    assert catalog.aliases() == [("a", "d")]
    with pytest.raises(NotFound, match="Collection `b2` doesn't exist!"):
        catalog.get("b2")
    await catalog.close()


async def test_a_failing_action_changes_nothing(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    with pytest.raises(NotFound, match="Alias nope does not exists!"):
        await catalog.change_aliases(
            [AliasAction("create", "a", collection_name="c"), AliasAction("delete", "nope")]
        )
    assert catalog.aliases() == []
    with pytest.raises(NotFound, match="Collection `x` doesn't exist!"):
        await catalog.change_aliases([AliasAction("create", "a", collection_name="x")])
    with pytest.raises(Conflict):
        await catalog.change_aliases([AliasAction("create", "c", collection_name="c")])
    await catalog.change_aliases([AliasAction("create", "a", collection_name="c")])
    with pytest.raises(BadRequest, match="Alias with the same name already exists"):
        await catalog.create("a", single_vector_config())
    await catalog.close()


async def test_aliases_of_a_collection_gone_before_their_cleanup_are_dropped(tmp_path) -> None:
    """A crash between a delete's rename and its alias cleanup leaves a dangling alias."""
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config())
    await catalog.change_aliases([AliasAction("create", "a", collection_name="c")])
    await catalog.close()
    (tmp_path / "collections" / "c").rename(tmp_path / "tmp" / "deleted-x")  # as a crash
    catalog = await open_catalog(tmp_path)
    assert catalog.aliases() == []
    assert not (tmp_path / "tmp" / "deleted-x").exists()
    await catalog.close()
