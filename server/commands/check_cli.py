"""`keel check` and `keel wal dump`: the offline tools an operator runs on stopped storage.

Owns: running engine/check/check.py (and its repair) and printing what it found; printing WAL
records. Both take the storage lock first, so they never read a directory a server is
writing, and refuse with exit 2 when a server holds it.
Not here: what is checked (engine/check/check.py, engine/check/store.py).

Exit codes of `keel check`: 0 sound (notes about crash leftovers may be printed), 1 damage
found (after `--repair`: damage left), 2 could not check (usage, storage in use or missing).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from engine.catalog import lock_storage
from engine.check import check
from engine.errors import CorruptionError, StorageLocked
from engine.filters.conditions import FILTER_TYPES, Filter
from engine.limits import EngineSettings
from engine.ops import (
    CreateFieldIndex,
    DeleteFieldIndex,
    DeletePoints,
    DeleteVectors,
    Operation,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
)
from engine.wal import format as wal_format
from engine.wal.op_codec import decode_op

EXIT_SOUND = 0
EXIT_DAMAGED = 1
EXIT_CANNOT = 2
PROGRESS_EVERY_S = 2.0
IDS_SHOWN_MAX = 5


def run_check(
    storage_path: Path,
    settings: EngineSettings,
    collection_names: list[str] | None,
    is_repair: bool,
    out: TextIO = sys.stdout,
) -> int:
    """`keel check [--repair]`; returns the exit code."""
    if not storage_path.is_dir():
        print(f"keel check: storage directory {storage_path} does not exist", file=sys.stderr)
        return EXIT_CANNOT
    try:
        lock_fd = lock_storage(storage_path)
    except StorageLocked as error:
        print(f"keel check: {error}", file=sys.stderr)
        return EXIT_CANNOT
    try:
        progress = _Progress()
        report = check.check_storage(storage_path, progress, collection_names)
        _print_report(report, out)
        if not is_repair or not report.is_damaged:
            return EXIT_DAMAGED if report.is_damaged else EXIT_SOUND
        if not report.is_repairable:
            print(
                "keel check: not repairing: damage to data Keel cannot recompute (listed "
                "above as damage); restore the collection from a snapshot",
                file=out,
            )
            return EXIT_DAMAGED
        for line in asyncio.run(check.repair(storage_path, report, settings, progress)):
            print(f"repaired: {line}", file=out)
        after = check.check_storage(storage_path, progress, collection_names)
        print("after repair:", file=out)
        _print_report(after, out)
        return EXIT_DAMAGED if after.is_damaged else EXIT_SOUND
    finally:
        os.close(lock_fd)


def run_wal_dump(
    storage_path: Path,
    collection_name: str | None,
    from_op_id: int,
    out: TextIO = sys.stdout,
) -> int:
    """`keel wal dump`: one line per record (op id, kind, ids, bytes); returns the exit code."""
    collections_dir = storage_path / "collections"
    if not collections_dir.is_dir():
        print(f"keel wal dump: {collections_dir} does not exist", file=sys.stderr)
        return EXIT_CANNOT
    names = sorted(p.name for p in collections_dir.iterdir() if p.is_dir())
    if collection_name is not None:
        if collection_name not in names:
            print(f"keel wal dump: no collection {collection_name!r}", file=sys.stderr)
            return EXIT_CANNOT
        names = [collection_name]
    try:
        lock_fd = lock_storage(storage_path)
    except StorageLocked as error:
        print(f"keel wal dump: {error}", file=sys.stderr)
        return EXIT_CANNOT
    exit_code = EXIT_SOUND
    try:
        for name in names:
            for line in _dump_lines(collections_dir / name / "wal", name, from_op_id):
                print(line, file=out)
                exit_code = EXIT_DAMAGED if line.startswith("!") else exit_code
    finally:
        os.close(lock_fd)
    return exit_code


def describe_op(op: Operation) -> str:
    """kind and the op's main arguments, never payload values (they may be private)."""
    if isinstance(op, UpsertPoints):
        names = _names([*op.vectors, *op.sparse])
        return f"upsert {_ids(op.ids)} vectors={names} mode={op.update_mode.value}"
    if isinstance(op, DeletePoints):
        return f"delete {_selection(op.ids, op.filter)}"
    if isinstance(op, UpdatePayload):
        key = f" key={op.key}" if op.key else ""
        return f"payload_{op.mode.value} {_selection(op.ids, op.filter)}{key}"
    if isinstance(op, UpdateVectors):
        return (
            f"update_vectors {_ids(op.ids)} vectors={','.join(sorted([*op.vectors, *op.sparse]))}"
        )
    if isinstance(op, DeleteVectors):
        return f"delete_vectors {_selection(op.ids, op.filter)} vectors={_names(op.names)}"
    if isinstance(op, CreateFieldIndex):
        return f"create_index field={op.field_name} type={op.schema_type}"
    assert isinstance(op, DeleteFieldIndex), type(op)
    return f"delete_index field={op.field_name}"


def _dump_lines(directory: Path, name: str, from_op_id: int) -> Iterator[str]:
    """A line per record with op id >= from_op_id; lines of damage start with `!`."""
    try:
        segments = wal_format.list_segments(directory)
    except CorruptionError as error:
        yield f"! collection={name} {error}"
        return
    for position, (first_op_id, path) in enumerate(segments):
        next_first = segments[position + 1][0] if position + 1 < len(segments) else None
        if next_first is not None and next_first <= from_op_id:
            continue
        result = wal_format.scan_batches(path.read_bytes(), first_op_id)
        for op_id, body in result.records:
            if op_id < from_op_id:
                continue
            try:
                text = describe_op(decode_op(body, FILTER_TYPES))
            except CorruptionError as error:
                text = f"undecodable: {error}"
            yield f"collection={name} op_id={op_id} bytes={len(body)} {text}"
        if result.end is not wal_format.ScanEnd.CLEAN:
            yield f"! collection={name} file={path} {result.end.value}: {result.problem}"


def _ids(ids: list[object]) -> str:
    shown = ",".join(str(point_id) for point_id in ids[:IDS_SHOWN_MAX])
    more = f",+{len(ids) - IDS_SHOWN_MAX}" if len(ids) > IDS_SHOWN_MAX else ""
    return f"points={len(ids)} ids={shown}{more}"


def _names(names: list[str]) -> str:
    """Vector names, the unnamed one shown as `(unnamed)`."""
    return ",".join(sorted(name or "(unnamed)" for name in names)) or "-"


def _selection(ids: list[object] | None, filter_: Filter | None) -> str:
    return "by filter" if filter_ is not None else _ids(ids or [])


def _print_report(report: check.CheckReport, out: TextIO) -> None:
    for finding in report.findings:
        where = f"collection={finding.collection_name} " if finding.collection_name else ""
        print(f"{finding.severity.value}: {where}{finding.text}", file=out)
    verdict = "DAMAGED" if report.is_damaged else "OK"
    if report.is_repairable:
        verdict += " (repairable: run with --repair)"
    print(
        f"{verdict}: collections={report.collections_count} points={report.points_count} "
        f"wal_records={report.wal_records_count} "
        f"index_vectors={report.index_vectors_count}",
        file=out,
    )


class _Progress:
    """Progress lines on stderr, at most one every PROGRESS_EVERY_S (large stores)."""

    def __init__(self) -> None:
        self._last_s = 0.0

    def __call__(self, message: str) -> None:
        now_s = time.monotonic()
        if (
            message.startswith(("checking", "repairing"))
            or now_s - self._last_s >= PROGRESS_EVERY_S
        ):
            print(f"keel check: {message}", file=sys.stderr)
            self._last_s = now_s
