"""Full-storage snapshots: one tar file holding every collection's snapshot and the aliases.

Owns: the full snapshot file format; writing one (staged, fsynced, renamed in, then its
`.checksum` sidecar); verifying one and unpacking its collection snapshots into a directory.
Not here: each collection's snapshot (snapshot.py, whose files are the members), taking them
all and restoring them (catalog.py `create_full_snapshot`, `restore_full`), HTTP
(server/api/snapshots.py), the command line (server/commands/snapshot_cli.py).

Files directly in `<snapshots_path>/` (collection snapshots live one directory down):

| name                                              | what                                  |
|---------------------------------------------------|---------------------------------------|
| `full-snapshot-<Y-m-d-H-M-S>.snapshot`            | a full snapshot (below); time in UTC, Qdrant's name |
| `<snapshot name>.checksum`                        | sha256 of the whole file, 64 lowercase hex digits (Qdrant's sidecar) |
| `.full-snapshot-creating-<hex>/`, `.<name>.tmp`   | one being written; the next full snapshot removes them |

A full snapshot file is an uncompressed POSIX tar (pax format): first `manifest.json`, then
one member per collection, `collections/<index>.snapshot` (index 0, 1, ... in manifest
order), each a collection snapshot file exactly as snapshot.py writes it.

`manifest.json`: `{"format_version": 1, "kind": "full", "created_at"` (RFC 3339 UTC)`,
"collections": [{"collection_name", "member", "op_id", "size_bytes", "sha256"}],
"aliases": {alias: collection_name}}`. Each collection is as of its own op id (taken one
after another, with creates, deletes and alias changes held off meanwhile), so the set of
collections and the aliases are those of one moment.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tarfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import files, limits, snapshot
from engine.errors import BadRequest, NotFound
from engine.logfmt import log_event

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = "full"
NAME_PREFIX = "full-snapshot-"  # Qdrant's FULL_SNAPSHOT_FILE_NAME, then "-<time>"
CREATING_PREFIX = ".full-snapshot-creating-"
MANIFEST_MEMBER = "manifest.json"
_NAME_TIME_FORMAT = "%Y-%m-%d-%H-%M-%S"


@dataclass(frozen=True)
class CollectionEntry:
    """One collection in a full snapshot."""

    collection_name: str
    member: str  # `collections/<index>.snapshot`
    op_id: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class FullManifest:
    created_at: str
    collections: list[CollectionEntry]
    aliases: dict[str, str]  # alias -> collection name


def full_snapshot_name(created_at: datetime) -> str:
    """`full-snapshot-<YYYY-MM-DD-HH-MM-SS>.snapshot`, as Qdrant names them."""
    return f"{NAME_PREFIX}{created_at.strftime(_NAME_TIME_FORMAT)}{snapshot.SNAPSHOT_SUFFIX}"


def member_name(index: int) -> str:
    return f"collections/{index}{snapshot.SNAPSHOT_SUFFIX}"


def prepare_staging(directory: Path, token: str) -> Path:
    """Create `directory` if needed, remove what an interrupted full snapshot left there,
    and return a new empty staging directory in it. The caller serialises full snapshots."""
    files.make_directories(directory)
    for leftover in directory.iterdir():
        if leftover.name.startswith(CREATING_PREFIX) or _is_temp_full_snapshot(leftover.name):
            log_event(log, logging.INFO, "removing leftover of a full snapshot", path=leftover)
            files.remove_tree(leftover)
    staging = directory / f"{CREATING_PREFIX}{token}"
    files.make_directory_durably(staging)
    return staging


def pack_full(
    directory: Path,
    collection_snapshots: list[tuple[str, int, Path]],
    aliases: dict[str, str],
    created_at: datetime,
) -> snapshot.SnapshotInfo:
    """Write a full snapshot of `collection_snapshots` ((collection name, op id, snapshot
    file)) and `aliases` into `directory`, durably: under a temp name, fsynced, renamed
    (over a full snapshot of the same second, as Qdrant does), then the sidecar.
    Blocking: run it in a thread."""
    assert len(collection_snapshots) <= limits.COLLECTIONS_MAX, len(collection_snapshots)
    for alias, target in aliases.items():
        assert any(target == name for name, _, _ in collection_snapshots), (alias, target)
    entries = [
        CollectionEntry(name, member_name(index), op_id, path.stat().st_size,
                        snapshot.sha256_of_file(path))
        for index, (name, op_id, path) in enumerate(collection_snapshots)
    ]
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "collections": [dataclasses.asdict(entry) for entry in entries],
        "aliases": dict(sorted(aliases.items())),
    }
    name = full_snapshot_name(created_at)
    temp_path = directory / f".{name}.tmp"
    paths = [path for _, _, path in collection_snapshots]
    checksum = _write_tar(temp_path, manifest, entries, paths, created_at)
    files.rename_durably(temp_path, directory / name)
    files.write_file_atomic(directory / (name + snapshot.CHECKSUM_SUFFIX), checksum.encode())
    size_bytes = (directory / name).stat().st_size
    log_event(
        log,
        logging.INFO,
        "full snapshot created",
        name=name,
        collections=len(entries),
        aliases=len(aliases),
        bytes=size_bytes,
    )
    return snapshot.SnapshotInfo(name, size_bytes, created_at.replace(tzinfo=None), checksum)


def unpack_full(
    snapshot_path: Path, target: Path, expected_checksum: str | None
) -> FullManifest:
    """Verify the full snapshot at `snapshot_path` and extract its collection snapshots into
    `target` (which must not exist) under their member names.

    Checks before anything is trusted: the whole file's sha256 against `expected_checksum`
    and the `.checksum` sidecar (each when present), the manifest, and each member's name,
    size and sha256. Raises NotFound if the file is missing, BadRequest on any mismatch;
    `target` may then be half-built and is the caller's to remove. Blocking.
    """
    if not snapshot_path.is_file():
        raise NotFound(f"Snapshot file {snapshot_path} does not exist")
    snapshot.check_whole_file(snapshot_path, expected_checksum)
    files.make_directory_durably(target)
    files.make_directory_durably(target / "collections")
    try:
        with (
            snapshot_path.open("rb") as snapshot_file,
            tarfile.open(fileobj=snapshot_file, mode="r|") as tar,
        ):
            data = snapshot.read_small_member(tar, tar.next(), MANIFEST_MEMBER)
            manifest = _parse_manifest(data)
            for entry in manifest.collections:
                _extract_entry(tar, entry, target)
            if tar.next() is not None:
                raise BadRequest("full snapshot has members beyond those its manifest lists")
    except (tarfile.TarError, EOFError) as error:
        raise BadRequest(
            f"snapshot {snapshot_path.name} is not a valid tar file: {error}"
        ) from None
    files.fsync_directory(target / "collections")
    return manifest


# ---- private -------------------------------------------------------------------------------


def _write_tar(
    temp_path: Path,
    manifest: dict[str, Any],
    entries: list[CollectionEntry],
    paths: list[Path],
    created_at: datetime,
) -> str:
    """Write the tar to temp_path and fsync it; return its sha256 hex."""
    if temp_path.exists():
        files.remove_tree(temp_path)
    fd = files.create_append(temp_path)
    try:
        writer = snapshot.HashingWriter(fd)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            manifest_bytes = json.dumps(manifest, indent=1).encode()
            info = snapshot.tar_info(MANIFEST_MEMBER, len(manifest_bytes), created_at)
            tar.addfile(info, io.BytesIO(manifest_bytes))
            for entry, path in zip(entries, paths, strict=True):
                with path.open("rb") as member_file:
                    info = snapshot.tar_info(entry.member, entry.size_bytes, created_at)
                    tar.addfile(info, member_file)
        files.fsync(fd)
    finally:
        files.close(fd)
    return writer.sha256.hexdigest()


def _extract_entry(tar: tarfile.TarFile, entry: CollectionEntry, target: Path) -> None:
    member = tar.next()
    if member is None or member.name != entry.member or not member.isreg():
        raise BadRequest(f"full snapshot member {entry.member} missing or out of order")
    if member.size != entry.size_bytes:
        raise BadRequest(
            f"full snapshot member {entry.member} is {member.size} bytes, "
            f"manifest says {entry.size_bytes}"
        )
    actual = snapshot.extract_to_file(tar, member, target / entry.member)
    if actual != entry.sha256:
        raise BadRequest(
            f"full snapshot member {entry.member} sha256 is {actual}, "
            f"manifest says {entry.sha256}"
        )


def _parse_manifest(data: bytes) -> FullManifest:
    try:
        manifest = json.loads(data)
        if manifest.get("kind") != KIND:
            raise BadRequest("not a full snapshot (a collection snapshot?): restore it with "
                             "`keel snapshot restore --collection NAME`")
        if manifest["format_version"] != FORMAT_VERSION:
            raise BadRequest(
                f"full snapshot format version {manifest['format_version']!r} "
                f"is not {FORMAT_VERSION}"
            )
        entries = [
            CollectionEntry(
                str(item["collection_name"]),
                str(item["member"]),
                int(item["op_id"]),
                int(item["size_bytes"]),
                str(item["sha256"]),
            )
            for item in manifest["collections"]
        ]
        aliases = {str(alias): str(target) for alias, target in manifest["aliases"].items()}
        created_at = str(manifest["created_at"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise BadRequest(f"full snapshot manifest is malformed: {error!r}") from None
    _check_entries(entries, aliases)
    return FullManifest(created_at, entries, aliases)


def _check_entries(entries: list[CollectionEntry], aliases: dict[str, str]) -> None:
    """BadRequest unless members are named by index and names and aliases are consistent."""
    if len(entries) > limits.COLLECTIONS_MAX:
        raise BadRequest(f"full snapshot lists {len(entries)} collections, more than allowed")
    names = [entry.collection_name for entry in entries]
    if len(set(names)) != len(names):
        raise BadRequest("full snapshot manifest lists a collection twice")
    for index, entry in enumerate(entries):
        if entry.member != member_name(index):
            raise BadRequest(f"full snapshot member {entry.member!r} is not {member_name(index)}")
    for alias, target in aliases.items():
        if target not in names:
            raise BadRequest(f"full snapshot alias {alias} names no collection of it: {target}")
        if alias in names:
            raise BadRequest(f"full snapshot alias {alias} is also a collection's name")


def _is_temp_full_snapshot(name: str) -> bool:
    return name.startswith(f".{NAME_PREFIX}") and name.endswith(".tmp")
