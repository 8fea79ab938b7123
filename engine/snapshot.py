"""Collection snapshots: one tar file holding a collection as of one op id.

Owns: the snapshot file format; writing a snapshot file (staged, fsynced, renamed in) and its
`.checksum` sidecar; listing, finding and deleting the snapshots of one collection; verifying
a snapshot and unpacking it into a new collection directory; receiving an uploaded one.
Not here: taking the LMDB copy in one read transaction (engine/store/store.py `copy_snapshot`, reached
through `Collection.copy_lmdb`), swapping a restored collection in (catalog.py `restore`),
HTTP (server/api/snapshots.py).

Files in `<snapshots_path>/<collection>/`:

| name                                        | what                                          |
|---------------------------------------------|-----------------------------------------------|
| `<collection>-<op_id>-<Y-m-d-H-M-S>.snapshot` | a snapshot (below); time in UTC               |
| `<snapshot name>.checksum`                  | sha256 of the whole snapshot file, 64 lowercase hex digits, no newline (Qdrant's sidecar) |
| `.creating-<hex>/`, `.<snapshot name>.tmp`  | a snapshot being written; a crash leaves them, the next snapshot of the collection removes them |

A snapshot file is an uncompressed POSIX tar (pax format) of exactly three regular files,
in this order:

| member          | what                                                                  |
|-----------------|-----------------------------------------------------------------------|
| `manifest.json` | `{"format_version": 1, "collection_name", "op_id", "created_at"` (RFC 3339 UTC) `, "members": [{"name", "size_bytes", "sha256"}]}` for the two below |
| `config.json`   | the CollectionConfig JSON, as collection.py writes `config.json`     |
| `lmdb/data.mdb` | compact copy of the collection's LMDB environment, whose applied_op_id is `op_id` |

The HNSW graphs are not in it: a restored collection rebuilds them from the vectors in LMDB
when it opens (no checkpoint in index/). Nor is the WAL: a restored collection gets an empty
log whose first segment starts at `op_id + 1`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import files, limits
from engine.collection import CONFIG_FILE_NAME
from engine.errors import BadRequest, NotFound
from engine.ops import CollectionConfig
from engine.wal.log import Wal

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SNAPSHOT_SUFFIX = ".snapshot"
CHECKSUM_SUFFIX = ".checksum"
MANIFEST_MEMBER = "manifest.json"
CONFIG_MEMBER = "config.json"
LMDB_MEMBER = "lmdb/data.mdb"
DATA_MEMBERS = (CONFIG_MEMBER, LMDB_MEMBER)
CREATING_PREFIX = ".creating-"
CHUNK_BYTES = 1024 * 1024  # read/write granularity when copying and hashing files
_NAME_TIME_FORMAT = "%Y-%m-%d-%H-%M-%S"
_SHA256_HEX_DIGITS = 64


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot file, as Qdrant's SnapshotDescription shows it."""

    name: str
    size_bytes: int
    created_at: datetime  # UTC; the file's mtime when listed
    checksum: str | None  # sha256 hex from the sidecar; None if the sidecar is missing


@dataclass(frozen=True)
class Manifest:
    collection_name: str
    op_id: int
    created_at: str
    members: dict[str, tuple[int, str]]  # member name -> (size_bytes, sha256 hex)


# ---- names ---------------------------------------------------------------------------------


def snapshot_name(collection_name: str, op_id: int, created_at: datetime) -> str:
    """`<collection>-<op_id>-<YYYY-MM-DD-HH-MM-SS>.snapshot` (Qdrant puts its peer id where
    Keel puts the op id, so a user can see which op a snapshot covers)."""
    return f"{collection_name}-{op_id}-{created_at.strftime(_NAME_TIME_FORMAT)}{SNAPSHOT_SUFFIX}"


def check_snapshot_name(name: str) -> None:
    """BadRequest for a name that could leave the collection's snapshot directory."""
    if not name or "/" in name or "\\" in name or "\0" in name or ".." in name:
        raise BadRequest(f"invalid snapshot name {name!r}: it must not contain '/' or '..'")
    if name.startswith("."):
        raise BadRequest(f"invalid snapshot name {name!r}: it must not start with '.'")


def check_checksum(checksum: str) -> None:
    """BadRequest unless `checksum` is a sha256 in hex."""
    if len(checksum) != _SHA256_HEX_DIGITS or any(
        c not in "0123456789abcdefABCDEF" for c in checksum
    ):
        raise BadRequest(f"checksum must be a sha256 in hex (64 digits), got {checksum!r}")


# ---- creating ------------------------------------------------------------------------------


def prepare_staging(directory: Path) -> Path:
    """Create `directory` if needed, remove what an interrupted snapshot left there, and
    return a new empty staging directory inside it, with an empty `lmdb/` for the copy.

    The caller serialises snapshots of one collection (catalog.py holds its lock), so
    anything staged here already is a leftover.
    """
    files.make_directories(directory)
    for leftover in directory.iterdir():
        if leftover.name.startswith(CREATING_PREFIX) or is_temp_snapshot(leftover.name):
            log.info("removing leftover of an interrupted snapshot path=%s", leftover)
            files.remove_tree(leftover)
    staging = directory / f"{CREATING_PREFIX}{uuid.uuid4().hex}"
    files.make_directory_durably(staging)
    files.make_directory_durably(staging / "lmdb")
    return staging


def pack(
    staging: Path,
    directory: Path,
    collection_name: str,
    config: CollectionConfig,
    op_id: int,
    created_at: datetime,
) -> SnapshotInfo:
    """Turn `staging` (holding lmdb/data.mdb, copied as of `op_id`) into a snapshot file in
    `directory`, durably: written under a temp name, fsynced, renamed, then the sidecar.
    Removes `staging`. Blocking: run it in a thread."""
    lmdb_path = staging / LMDB_MEMBER
    assert lmdb_path.is_file(), f"no LMDB copy in {staging}"
    config_bytes = json.dumps(config.to_json_dict()).encode()
    members = [
        _member_entry(CONFIG_MEMBER, len(config_bytes), hashlib.sha256(config_bytes).hexdigest()),
        _member_entry(LMDB_MEMBER, lmdb_path.stat().st_size, sha256_of_file(lmdb_path)),
    ]
    manifest = {
        "format_version": FORMAT_VERSION,
        "collection_name": collection_name,
        "op_id": op_id,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "members": members,
    }
    name = snapshot_name(collection_name, op_id, created_at)
    temp_path = directory / f".{name}.tmp"
    checksum = _write_tar(temp_path, manifest, config_bytes, lmdb_path, created_at)
    assert temp_path.stat().st_size > 0, temp_path
    files.rename_durably(temp_path, directory / name)
    files.write_file_atomic(directory / (name + CHECKSUM_SUFFIX), checksum.encode())
    files.remove_tree(staging)
    files.fsync_directory(directory)
    size_bytes = (directory / name).stat().st_size
    log.info(
        "snapshot created collection=%s op_id=%d name=%s bytes=%d",
        collection_name,
        op_id,
        name,
        size_bytes,
    )
    return SnapshotInfo(name, size_bytes, created_at.replace(tzinfo=None), checksum)


# ---- listing, finding, deleting -----------------------------------------------------------


def list_snapshots(directory: Path) -> list[SnapshotInfo]:
    """Every snapshot in `directory` (none if it does not exist), by name."""
    if not directory.is_dir():
        return []
    return [
        snapshot_info(path)
        for path in sorted(directory.iterdir())
        if path.name.endswith(SNAPSHOT_SUFFIX) and not path.name.startswith(".") and path.is_file()
    ]


def find_snapshot(directory: Path, name: str) -> Path:
    """The path of snapshot `name` in `directory`; NotFound unless it is a file there.

    A name that could leave `directory` (`/`, `..`) or names one of Keel's own files (a
    leading `.`) is not found either, never opened: Qdrant answers such names with the same
    404 (`lib/collection/src/common/snapshots_manager.rs`, `get_snapshot_path`), whether they
    came plain or with encoded slashes (`..%2F..%2Fetc%2Fpasswd`, decoded by the router).
    """
    try:
        check_snapshot_name(name)
    except BadRequest:
        raise NotFound(f"Snapshot {name} not found") from None
    path = directory / name
    if not path.is_file():
        raise NotFound(f"Snapshot {name} not found")
    return path


def delete_snapshot(directory: Path, name: str) -> None:
    """Remove snapshot `name` and its sidecar durably; NotFound if it does not exist."""
    path = find_snapshot(directory, name)
    files.unlink_durably(path)
    # After the snapshot: a crash in between leaves a sidecar alone, which listing ignores.
    sidecar = directory / (name + CHECKSUM_SUFFIX)
    if sidecar.exists():
        files.unlink_durably(sidecar)
    log.info("snapshot deleted name=%s directory=%s", name, directory)


def read_manifest(path: Path) -> Manifest:
    """The manifest of the snapshot at `path` (first member); BadRequest if unreadable."""
    try:
        with (
            path.open("rb") as snapshot_file,
            tarfile.open(fileobj=snapshot_file, mode="r|") as tar,
        ):
            member = tar.next()
            return _parse_manifest(read_small_member(tar, member, MANIFEST_MEMBER))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise BadRequest(f"snapshot {path.name} is not a readable tar file: {error}") from None


# ---- restoring -----------------------------------------------------------------------------


def unpack(
    snapshot_path: Path, target: Path, expected_checksum: str | None
) -> tuple[Manifest, CollectionConfig]:
    """Verify the snapshot at `snapshot_path` and lay it out as a collection in `target`
    (which must not exist), durably: config.json, lmdb/data.mdb, an empty index/ and a WAL
    starting at op_id + 1.

    Checks, before anything is trusted: the whole file's sha256 against `expected_checksum`
    and against the `.checksum` sidecar beside it (each when present), the manifest, and each
    member's size and sha256. Raises NotFound if the file is missing, BadRequest on any
    mismatch; `target` may then be half-built and is the caller's to remove.
    """
    if not snapshot_path.is_file():
        raise NotFound(f"Snapshot file {snapshot_path} does not exist")
    check_whole_file(snapshot_path, expected_checksum)
    files.make_directory_durably(target)
    files.make_directory_durably(target / "lmdb")
    try:
        with (
            snapshot_path.open("rb") as snapshot_file,
            tarfile.open(fileobj=snapshot_file, mode="r|") as tar,
        ):
            manifest, config_bytes = _extract_members(tar, target)
    except (tarfile.TarError, EOFError) as error:
        raise BadRequest(
            f"snapshot {snapshot_path.name} is not a valid tar file: {error}"
        ) from None
    files.fsync_directory(target / "lmdb")
    config = _parse_config(config_bytes)
    files.create_file_durably(target / CONFIG_FILE_NAME, config_bytes)
    files.make_directory_durably(target / "index")
    Wal.create(target / "wal", first_op_id=manifest.op_id + 1)
    assert (target / LMDB_MEMBER).stat().st_size == manifest.members[LMDB_MEMBER][0], target
    return manifest, config


class SnapshotUpload:
    """A snapshot arriving in chunks (an HTTP upload or download), written to a new file at
    `path`.

    Not durable: it is read back and verified at once, and only what `unpack` writes must
    survive a crash. Bounded by limits.SNAPSHOT_BYTES_MAX. Blocking methods: call them in a
    thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size_bytes = 0
        self._fd: int | None = files.create_append(path)
        self._sha256 = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        assert self._fd is not None, "write after finish"
        if self.size_bytes + len(chunk) > limits.SNAPSHOT_BYTES_MAX:
            raise BadRequest(f"snapshot file exceeds {limits.SNAPSHOT_BYTES_MAX} bytes")
        files.write_all(self._fd, chunk)
        self._sha256.update(chunk)
        self.size_bytes += len(chunk)

    @property
    def sha256(self) -> str:
        """The sha256 hex of every byte written, once the file is closed."""
        assert self._fd is None, f"sha256 of {self.path} asked before close"
        return self._sha256.hexdigest()

    def close(self) -> None:
        if self._fd is not None:
            files.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close and remove the file (idempotent)."""
        self.close()
        if self.path.exists():
            files.remove_tree(self.path)


# ---- private -------------------------------------------------------------------------------


class HashingWriter(io.RawIOBase):
    """A write-only file over an engine.files descriptor that hashes what passes through."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        files.write_all(self.fd, view)
        self.sha256.update(view)
        return len(view)


def _write_tar(
    temp_path: Path,
    manifest: dict[str, Any],
    config_bytes: bytes,
    lmdb_path: Path,
    created_at: datetime,
) -> str:
    """Write the tar to temp_path and fsync it; return its sha256 hex."""
    if temp_path.exists():
        files.remove_tree(temp_path)
    fd = files.create_append(temp_path)
    try:
        writer = HashingWriter(fd)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            manifest_bytes = json.dumps(manifest, indent=1).encode()
            for name, data in ((MANIFEST_MEMBER, manifest_bytes), (CONFIG_MEMBER, config_bytes)):
                tar.addfile(tar_info(name, len(data), created_at), io.BytesIO(data))
            with lmdb_path.open("rb") as lmdb_file:
                size_bytes = lmdb_path.stat().st_size
                tar.addfile(tar_info(LMDB_MEMBER, size_bytes, created_at), lmdb_file)
        files.fsync(fd)
    finally:
        files.close(fd)
    return writer.sha256.hexdigest()


def tar_info(name: str, size_bytes: int, created_at: datetime) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size_bytes
    info.mode = 0o644
    info.mtime = int(created_at.timestamp())
    return info


def _member_entry(name: str, size_bytes: int, sha256: str) -> dict[str, Any]:
    return {"name": name, "size_bytes": size_bytes, "sha256": sha256}


def check_whole_file(snapshot_path: Path, expected_checksum: str | None) -> None:
    """BadRequest unless the file's sha256 is `expected_checksum` (when given) and what its
    `.checksum` sidecar says (when there is one)."""
    if expected_checksum is not None:
        check_checksum(expected_checksum)
    sidecar = snapshot_path.with_name(snapshot_path.name + CHECKSUM_SUFFIX)
    sidecar_checksum = None
    if sidecar.is_file():
        sidecar_checksum = sidecar.read_text(errors="replace").strip()
    if expected_checksum is None and sidecar_checksum is None:
        return  # the manifest's per-member hashes are still checked
    actual = sha256_of_file(snapshot_path)
    if expected_checksum is not None and expected_checksum.lower() != actual:
        # Qdrant's words (lib/storage/src/content_manager/snapshots/recover.rs).
        raise BadRequest(f"Snapshot checksum mismatch: expected {expected_checksum}, got {actual}")
    if sidecar_checksum is not None and sidecar_checksum != actual:
        raise BadRequest(
            f"snapshot {snapshot_path.name} checksum mismatch: sha256 is {actual}, "
            f"its sidecar {sidecar.name} says {sidecar_checksum}"
        )


def _extract_members(tar: tarfile.TarFile, target: Path) -> tuple[Manifest, bytes]:
    """Read the manifest, then each member it lists, checking names, sizes and hashes."""
    manifest = _parse_manifest(read_small_member(tar, tar.next(), MANIFEST_MEMBER))
    config_bytes = b""
    for name in DATA_MEMBERS:
        member = tar.next()
        size_bytes, sha256 = manifest.members[name]
        if member is None or member.name != name or not member.isreg():
            raise BadRequest(f"snapshot member {name} missing or out of order")
        if member.size != size_bytes:
            raise BadRequest(
                f"snapshot member {name} is {member.size} bytes, manifest says {size_bytes}"
            )
        if name == CONFIG_MEMBER:
            config_bytes = read_small_member(tar, member, CONFIG_MEMBER)
            actual = hashlib.sha256(config_bytes).hexdigest()
        else:
            actual = extract_to_file(tar, member, target / LMDB_MEMBER)
        if actual != sha256:
            raise BadRequest(f"snapshot member {name} sha256 is {actual}, manifest says {sha256}")
    if tar.next() is not None:
        raise BadRequest("snapshot has members beyond those its manifest lists")
    return manifest, config_bytes


def read_small_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None, name: str) -> bytes:
    if member is None or member.name != name or not member.isreg():
        raise BadRequest(f"snapshot member {name} missing or out of order")
    if member.size > limits.SNAPSHOT_SMALL_MEMBER_BYTES_MAX:
        raise BadRequest(f"snapshot member {name} is too large: {member.size} bytes")
    source = tar.extractfile(member)
    assert source is not None, member
    return source.read()


def extract_to_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> str:
    """Copy a member into a new file at path, fsynced; return the sha256 hex of its bytes."""
    source = tar.extractfile(member)
    assert source is not None, member
    sha256 = hashlib.sha256()
    fd = files.create_append(path)
    try:
        while chunk := source.read(CHUNK_BYTES):
            sha256.update(chunk)
            files.write_all(fd, chunk)
        files.fsync(fd)
    finally:
        files.close(fd)
    return sha256.hexdigest()


def _parse_manifest(data: bytes) -> Manifest:
    try:
        manifest = json.loads(data)
        if manifest["format_version"] != FORMAT_VERSION:
            raise BadRequest(
                f"snapshot format version {manifest['format_version']!r} is not {FORMAT_VERSION}"
            )
        members = {
            entry["name"]: (int(entry["size_bytes"]), str(entry["sha256"]))
            for entry in manifest["members"]
        }
        op_id = manifest["op_id"]
        collection_name = manifest["collection_name"]
        created_at = manifest["created_at"]
    except (ValueError, KeyError, TypeError) as error:
        raise BadRequest(f"snapshot manifest is malformed: {error!r}") from None
    if sorted(members) != sorted(DATA_MEMBERS):
        raise BadRequest(
            f"snapshot manifest lists {sorted(members)}, expected {sorted(DATA_MEMBERS)}"
        )
    if type(op_id) is not int or op_id < -1:
        raise BadRequest(f"snapshot manifest op_id {op_id!r} is not an op id")
    return Manifest(str(collection_name), op_id, str(created_at), members)


def _parse_config(data: bytes) -> CollectionConfig:
    try:
        return CollectionConfig.from_json_dict(json.loads(data))
    except (ValueError, KeyError, TypeError) as error:
        raise BadRequest(f"snapshot config.json is not a collection config: {error!r}") from None


def sha256_of_file(path: Path) -> str:
    sha256 = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            sha256.update(chunk)
    return sha256.hexdigest()


def snapshot_info(path: Path) -> SnapshotInfo:
    stat = path.stat()
    sidecar = path.with_name(path.name + CHECKSUM_SUFFIX)
    checksum = sidecar.read_text(errors="replace").strip() if sidecar.is_file() else None
    created_at = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
    return SnapshotInfo(path.name, stat.st_size, created_at, checksum)


def is_temp_snapshot(name: str) -> bool:
    return name.startswith(".") and name.endswith(SNAPSHOT_SUFFIX + ".tmp")
