"""The crash-state generator builds exactly the states its persistence model allows.

Hand-written event lists over a snapshot (no engine involved): what each chooser keeps of an
unsynced write, a new file, a rename, an unlink, an rmdir and an LMDB commit.
"""

from __future__ import annotations

import random
from pathlib import Path

from engine.files import Create, Fdatasync, Fsync, FsyncDir, Rename, Rmdir, Unlink, Write
from tests.recovery.crash_states import (
    SECTOR_BYTES,
    Chooser,
    CrashModel,
    LmdbCommitted,
    LmdbSynced,
    Reordered,
    Snapshot,
    SyncedOnly,
    Torn,
    sample_states,
)

ROOT = Path("/storage")


def at(path: str) -> str:
    return str(ROOT / path)


def build(events: list[object], tree: dict[str, bytes | None] | None = None) -> CrashModel:
    return CrashModel(Snapshot(ROOT, tree or {}), events)


def trees(model: CrashModel, point: int, count: int = 300) -> list[dict[str, bytes | None]]:
    """Trees of many seeded power-loss states at point."""
    rng = random.Random(point)
    choosers = [SyncedOnly(), Torn(rng), Reordered(rng)]
    return [model.state(point, rng.choice(choosers)).tree for _ in range(count)]


def test_a_write_is_durable_once_fsynced_and_not_before() -> None:
    model = build(
        [Write(at("f"), 0, b"a" * 600), Fdatasync(at("f")), Write(at("f"), 600, b"b" * 600)],
        {"f": b""},
    )
    assert model.state(3, Chooser()).tree["f"] == b"a" * 600 + b"b" * 600
    assert model.state(3, SyncedOnly()).tree["f"] == b"a" * 600
    assert model.state(1, SyncedOnly()).tree["f"] == b""
    assert {tree["f"] for tree in trees(model, 2)} == {b"a" * 600}


def test_an_unsynced_append_is_torn_only_at_sector_boundaries() -> None:
    old = bytes(range(100))
    new = random.Random(1).randbytes(2_000)
    model = build([Write(at("f"), 100, new)], {"f": old})
    full = old + new
    sector_count = (len(full) + SECTOR_BYTES - 1) // SECTOR_BYTES
    seen_sector_masks = set()
    for tree in trees(model, 1, count=500):
        content = tree["f"]
        assert len(content) in (len(old), len(full))
        mask = []
        for sector in range(sector_count):
            piece = content[sector * SECTOR_BYTES : (sector + 1) * SECTOR_BYTES]
            if not piece:
                break
            old_piece = old.ljust(len(full), b"\0")[sector * SECTOR_BYTES :][: len(piece)]
            new_piece = full[sector * SECTOR_BYTES :][: len(piece)]
            # Every sector is what was there before (zeros past the old end) or the new data.
            assert piece in (old_piece, new_piece), sector
            mask.append(piece == new_piece and piece != old_piece)
        seen_sector_masks.add(tuple(mask))
    # Torn prefixes and sectors landing out of order both occur.
    assert (True, True, False, False, False) in seen_sector_masks
    assert any(mask[:2] == (False, True) for mask in seen_sector_masks)


def test_a_new_file_needs_its_directory_fsynced_not_just_itself() -> None:
    events = [Create(at("f")), Write(at("f"), 0, b"x"), Fsync(at("f")), FsyncDir(str(ROOT))]
    model = build(events)
    assert "f" not in model.state(3, SyncedOnly()).tree
    assert {("f" in tree) for tree in trees(model, 3)} == {True, False}
    assert model.state(4, SyncedOnly()).tree == {"f": b"x"}


def test_a_rename_across_directories_needs_both_fsynced() -> None:
    events = [Rename(at("a/x"), at("b/y")), FsyncDir(at("b")), FsyncDir(at("a"))]
    model = build(events, {"a": None, "a/x": b"data", "b": None})
    for point in (1, 2):
        assert model.state(point, SyncedOnly()).tree == {"a": None, "a/x": b"data", "b": None}
        assert model.state(point, Chooser()).tree == {"a": None, "b": None, "b/y": b"data"}
    assert model.state(3, SyncedOnly()).tree == {"a": None, "b": None, "b/y": b"data"}
    for tree in trees(model, 2):  # atomic: one name or the other, never both or neither
        assert ("a/x" in tree) != ("b/y" in tree)


def test_data_follows_its_inode_through_an_atomic_replace() -> None:
    events = [
        Create(at(".f.tmp")),
        FsyncDir(str(ROOT)),
        Write(at(".f.tmp"), 0, b"new"),
        Fsync(at(".f.tmp")),
        Rename(at(".f.tmp"), at("f")),
    ]
    model = build(events, {"f": b"old"})
    assert model.state(5, SyncedOnly()).tree == {".f.tmp": b"new", "f": b"old"}
    assert model.state(5, Chooser()).tree == {"f": b"new"}
    assert {tree["f"] for tree in trees(model, 5)} == {b"old", b"new"}


def test_an_unlink_or_rmdir_that_was_not_fsynced_may_not_have_happened() -> None:
    tree = {"d": None, "d/f": b"1"}
    model = build([Unlink(at("d/f")), Rmdir(at("d")), FsyncDir(str(ROOT))], tree)
    assert model.state(2, SyncedOnly()).tree == tree
    assert model.state(2, Chooser()).tree == {}
    # The rmdir is durable at point 3, but d's own unlink is not, and a directory that is
    # not empty on disk cannot have been removed: the rmdir is skipped.
    assert model.state(3, SyncedOnly()).tree == tree
    synced = build(
        [Unlink(at("d/f")), FsyncDir(at("d")), Rmdir(at("d")), FsyncDir(str(ROOT))], tree
    )
    assert synced.state(3, SyncedOnly()).tree == {"d": None}
    assert synced.state(4, SyncedOnly()).tree == {}


def test_lmdb_holds_a_commit_since_its_last_sync_or_none_before_the_first() -> None:
    lmdb = at("lmdb")
    events = [
        LmdbCommitted(lmdb, b"1"),
        LmdbCommitted(lmdb, b"2"),
        LmdbSynced(lmdb, b"2"),
        LmdbCommitted(lmdb, b"3"),
    ]
    model = build(events, {"lmdb": None})

    def data_files(point: int) -> set[bytes | None]:
        return {tree.get("lmdb/data.mdb") for tree in trees(model, point)}

    assert data_files(2) == {None, b"1", b"2"}
    assert data_files(3) == {b"2"}
    assert data_files(4) == {b"2", b"3"}
    assert model.state(4, Chooser()).tree["lmdb/data.mdb"] == b"3"


def test_samples_are_distinct_bounded_and_repeatable() -> None:
    events: list[object] = [Create(at("f")), FsyncDir(str(ROOT))]
    for index in range(20):
        events += [Write(at("f"), index * 700, bytes([index]) * 700), Fdatasync(at("f"))]
    model = build(events)

    def sample(seed: int) -> list[str]:
        states = sample_states(model, random.Random(seed), 30, persisted_count=10)
        return [state.digest() for state in states]

    digests = sample(5)
    assert len(digests) == len(set(digests)) <= 40
    assert len(digests) >= 30
    assert sample(5) == digests
