"""`keel snapshot create|list|restore|restore-full`: snapshots of a stopped server's storage.

Owns: the offline snapshot commands, their flags, output and exit codes.
Not here: the snapshot format and checks (engine/snapshot.py), taking and restoring one
(engine/catalog.py), the HTTP endpoints (server/api/snapshots.py).

Every action opens the storage the way `keel serve` does: it takes the lock (a running
server holds it: exit 1, naming the HTTP call to use instead) and recovers every collection
first. `list` too, so that a missing storage or collection is an error rather than an empty
list, an alias lists its collection's snapshots, and the list never disagrees with a server
that may be writing a snapshot. `create` and `list` refuse a storage directory that does
not exist rather than create an empty one; `restore` may seed a new storage.

`restore-full FILE` restores a full-storage snapshot (`POST /snapshots`,
engine/full_snapshot.py): every collection in it is replaced or created as `restore` does
one, and its aliases are set; collections and aliases it does not name stay. Qdrant too
restores full snapshots only at startup (`--storage-snapshot`), never over HTTP. The file
and each collection in it are checked against their sha256 first: a bad file changes
nothing.

Settings come from --config / KEEL__ variables like `keel serve`'s; --storage and
--snapshots override them. With neither --snapshots nor storage.snapshots_path, snapshots
live in `snapshots` beside the storage directory (server/config.py), where the server
puts them too, whichever directory either runs from.

Output: `create`, `restore` and `restore-full` print one result line; `list` prints one
line per snapshot (name, bytes, sha256, tab-separated) and nothing else on stdout; when
there is none it says so on stderr.

Exit codes: 0 done, 1 failed (no storage, storage locked, no such collection, snapshot
refused), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import snapshot
from engine.catalog import Catalog
from engine.errors import KeelError, StorageLocked
from server.config import ConfigError, Settings, load_settings
from server.logs import configure_logging

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# What to do instead against a running server, by action.
HTTP_EQUIVALENT = {
    "create": "POST /collections/{collection}/snapshots",
    "list": "GET /collections/{collection}/snapshots",
    "restore": "POST /collections/{collection}/snapshots/upload",
}


def main(argv: Sequence[str]) -> int:
    """Run `keel snapshot ARGV`; return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on bad usage, 0 after --help
        return int(exit_.code or 0)
    try:
        settings = _settings(args)
    except ConfigError as error:
        print(f"keel snapshot: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    # Engine INFO lines (recovery per collection) would drown the one result line.
    configure_logging("WARNING", settings.log_format)
    if args.action not in ("restore", "restore-full") and not settings.storage_path.is_dir():
        print(
            f"keel snapshot {args.action}: no storage directory at {settings.storage_path} "
            "(--storage, or storage.storage_path in --config)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        return asyncio.run(_run_on_storage(args, settings))
    except StorageLocked as error:
        if args.action == "restore-full":
            hint = "stop the server first (full snapshots are restored offline only)"
        else:
            http = HTTP_EQUIVALENT[args.action].format(collection=args.collection)
            hint = f"against a running server use {http}"
        print(f"keel snapshot {args.action}: {error}; {hint}", file=sys.stderr)
        return EXIT_FAILED
    except (KeelError, OSError) as error:
        print(f"keel snapshot {args.action}: {error}", file=sys.stderr)
        return EXIT_FAILED


async def _run_on_storage(args: argparse.Namespace, settings: Settings) -> int:
    catalog = Catalog(settings.storage_path, settings.engine)
    await catalog.open()  # StorageLocked while a server (or another keel) holds the storage
    try:
        if args.action == "create":
            info = await catalog.create_snapshot(args.collection, settings.snapshots_path)
            path = settings.snapshots_path / args.collection / info.name
            print(f"created {path} bytes={info.size_bytes} sha256={info.checksum}")
        elif args.action == "list":
            # NotFound for an unknown name; an alias lists its collection's snapshots.
            collection_name = catalog.get(args.collection).name
            _print_list(settings.snapshots_path / collection_name, args.collection)
        elif args.action == "restore":
            manifest = await catalog.restore(args.collection, args.file, args.checksum)
            print(f"restored collection={args.collection} op_id={manifest.op_id}")
        else:
            assert args.action == "restore-full", args.action
            full = await catalog.restore_full(args.file, args.checksum)
            print(f"restored collections={len(full.collections)} aliases={len(full.aliases)}")
    finally:
        await catalog.close()
    return EXIT_OK


def _print_list(directory: Path, collection_name: str) -> None:
    infos = snapshot.list_snapshots(directory)
    for info in infos:
        print(f"{info.name}\t{info.size_bytes}\t{info.checksum or '-'}")
    if not infos:
        print(f"no snapshots of collection {collection_name} in {directory}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[tuple[str, ...], Any] = {}
    if args.storage is not None:
        overrides[("storage", "storage_path")] = args.storage
    if args.snapshots is not None:
        overrides[("storage", "snapshots_path")] = args.snapshots
    return load_settings(args.config, overrides=overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keel snapshot",
        description="Snapshots of a stopped Keel (the server must not be running "
        "on this storage; use the HTTP API against a running one).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="snapshot a collection into the snapshots dir")
    listing = actions.add_parser("list", help="list a collection's snapshots")
    restore = actions.add_parser("restore", help="replace or create a collection from FILE")
    restore.add_argument("file", type=Path, metavar="FILE", help="a .snapshot file")
    restore.add_argument("--checksum", metavar="SHA256", help="expected sha256 of FILE")
    restore_full = actions.add_parser(
        "restore-full", help="restore every collection and alias of a full snapshot FILE"
    )
    restore_full.add_argument("file", type=Path, metavar="FILE", help="a full-snapshot file")
    restore_full.add_argument("--checksum", metavar="SHA256", help="expected sha256 of FILE")
    for action in (create, listing, restore):
        action.add_argument("--collection", required=True, metavar="C", help="collection name")
    for action in (create, listing, restore, restore_full):
        action.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
        action.add_argument("--storage", metavar="DIR", help="storage directory")
        action.add_argument("--snapshots", metavar="DIR", help="snapshots directory")
    return parser
