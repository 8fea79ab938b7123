"""The web dashboard: its static files at `/dashboard`, and `GET /durability`, the one JSON
view of the write path the dashboard needs that Qdrant's API has no place for.

Owns: serving server/dashboard/ (plain HTML, CSS and JavaScript modules, shipped as package
data; no build step, nothing fetched from elsewhere), the `/durability` answer, and
`RecoveryProgress`, which follows recovery's log events so that `/durability` can show them
while the catalog is still opening.
Not here: the dashboard's behaviour (server/dashboard/*.js, which calls only Keel's public
HTTP API with the key the user typed); which paths need a key (server/auth.py: the static
files do not, as Qdrant's web UI path; `/durability` does, like any read).

`GET /durability` answers in Qdrant's envelope:

    {"result": {"ready": bool,
                "recovery": {"collections_total", "collections_opened", "collection",
                             "op_id", "last_op_id"} | null,
                "collections": [{"name", "appended_op_id", "durable_op_id", "applied_op_id",
                                 "unapplied_bytes", "unapplied_bytes_max", "checkpoint_age_s",
                                 "status", "write_path_error", "index_vectors",
                                 "wal": {"first_op_id", "bytes", "segments": [...]},
                                 "followers": [...], "follower_retention_bytes_max",
                                 "histograms": {name: {"upper_bounds", "bucket_counts",
                                                       "count", "sum", "min", "max"}}}]},
     "status": "ok", "time": s}

The numbers are the ones `/metrics` exports (CollectionMetrics), read without I/O, plus a
listing of each WAL directory (one stat per segment, in a thread). It answers during recovery
too (app.py lets it through the recovery wait), with no collections and recovery's progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.collection import Collection
from engine.errors import NotReady
from engine.logfmt import Event
from engine.stats import HistogramSnapshot
from server.api.context import catalog_of
from server.responses import ok

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
DASHBOARD_PATH = "/dashboard"
# The only files served, by suffix: anything else in the directory (or a name with a slash,
# which the route cannot match) answers 404.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
WAL_SEGMENT_SUFFIX = ".wal"  # <first_op_id:020d>.wal, engine/wal/log.py
HISTOGRAMS = (
    "wal_fsync_latency_s",
    "wal_batch_record_count",
    "apply_batch_op_count",
    "apply_batch_latency_s",
)


@dataclass(frozen=True)
class RecoveryState:
    collections_total: int = 0
    collections_opened: int = 0
    collection: str | None = None  # the one being replayed, as of its last progress event
    op_id: int | None = None
    last_op_id: int | None = None


class RecoveryProgress(logging.Handler):
    """Recovery's progress, read from the engine's own log events (the same events the
    journal and systemd's STATUS show, server/systemd.py). Events below the configured log
    level are never created: with `log.level = "WARNING"` the progress stays at zero."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.state = RecoveryState()
        self._state_lock = threading.Lock()  # replay progress is logged from recovery's thread

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, Event):
            return
        name, fields = record.msg.name, record.msg.fields
        with self._state_lock:
            if name == "recovery started":
                self.state = RecoveryState(collections_total=int(fields["collections"]))
            elif name == "replay progress":
                self.state = replace(
                    self.state,
                    collection=str(fields["collection"]),
                    op_id=int(fields["op_id"]),
                    last_op_id=int(fields["last_op_id"]),
                )
            elif name == "collection opened":
                opened = self.state.collections_opened + 1
                self.state = replace(self.state, collections_opened=opened, collection=None)


RECOVERY_KEY = web.AppKey("recovery_progress", RecoveryProgress)


async def follow_recovery(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: listen to the engine's log from startup (before run.py recovers) to
    cleanup, so a process holding several apps (the tests) never keeps a stale handler."""
    progress = RecoveryProgress()
    app[RECOVERY_KEY] = progress
    engine_log = logging.getLogger("engine")
    engine_log.addHandler(progress)
    try:
        yield
    finally:
        engine_log.removeHandler(progress)


async def index(request: web.Request) -> web.FileResponse:
    """`/dashboard` and `/dashboard/`: the page (its asset URLs are absolute)."""
    return _static_file("index.html")


async def static_file(request: web.Request) -> web.FileResponse:
    return _static_file(request.match_info["file_name"])


async def durability(request: web.Request) -> web.Response:
    """Every collection's write path: op ids, budget, histograms, WAL, followers."""
    catalog = catalog_of(request)
    progress = request.app.get(RECOVERY_KEY)
    recovery = _recovery_json(progress.state) if progress and not catalog.is_ready else None
    try:
        collections = [catalog.get(name) for name in catalog.names()]
    except NotReady:
        collections = []  # still recovering: the recovery section says how far
    loop = asyncio.get_running_loop()
    segments = await loop.run_in_executor(None, _list_segments, collections)
    result = {
        "ready": catalog.is_ready,
        "recovery": recovery,
        "collections": [
            collection_durability(collection, collection_segments)
            for collection, collection_segments in zip(collections, segments)
        ],
    }
    return ok(request, result)


ROUTES = [
    ("GET", DASHBOARD_PATH, index),
    ("GET", DASHBOARD_PATH + "/{file_name}", static_file),
    ("GET", "/durability", durability),
]


def collection_durability(
    collection: Collection, segments: list[tuple[int, int]]
) -> dict[str, Any]:
    """The durability JSON of one collection; `segments` are its WAL's (first_op_id, bytes),
    oldest first."""
    progress = collection.metrics()
    durable_op_id = progress.durable_op_id
    return {
        "name": collection.name,
        "appended_op_id": progress.appended_op_id,
        "durable_op_id": durable_op_id,
        "applied_op_id": progress.applied_op_id,
        "unapplied_bytes": progress.unapplied_bytes,
        "unapplied_bytes_max": _settings_of(collection).unapplied_bytes_max,
        "checkpoint_age_s": round(progress.checkpoint_age_s, 3),
        "status": collection.stats().status,
        "write_path_error": _write_path_error(collection),
        "index_vectors": progress.index_vector_counts,
        "wal": {
            "first_op_id": segments[0][0] if segments else None,
            "bytes": sum(size_bytes for _, size_bytes in segments),
            "segments": [
                {"first_op_id": first_op_id, "bytes": size_bytes}
                for first_op_id, size_bytes in segments
            ],
        },
        "followers": [
            {
                "name": follower.name,
                "next_op_id": follower.next_op_id,
                "lag_ops": max(0, durable_op_id + 1 - follower.next_op_id),
                "retained_bytes": _retained_bytes(segments, follower.next_op_id),
                "lost_reason": follower.lost_reason,
            }
            for follower in collection.followers.list()
        ],
        "follower_retention_bytes_max": _settings_of(collection).follower_retention_bytes_max,
        "histograms": {name: _histogram_json(getattr(progress, name)) for name in HISTOGRAMS},
    }


def _static_file(file_name: str) -> web.FileResponse:
    content_type = CONTENT_TYPES.get(Path(file_name).suffix)
    path = DASHBOARD_DIR / file_name
    # The route matches one path segment, so no "/" can be in file_name; ".." has no suffix.
    if content_type is None or "/" in file_name or not path.is_file():
        raise web.HTTPNotFound()
    # no-cache: a browser revalidates (ETag) so an upgraded Keel never runs yesterday's page.
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    return web.FileResponse(path, headers=headers)


def _recovery_json(state: RecoveryState) -> dict[str, Any]:
    return {
        "collections_total": state.collections_total,
        "collections_opened": state.collections_opened,
        "collection": state.collection,
        "op_id": state.op_id,
        "last_op_id": state.last_op_id,
    }


def _list_segments(collections: list[Collection]) -> list[list[tuple[int, int]]]:
    """Each collection's WAL segments (first_op_id, bytes), oldest first. Blocking (stat).
    A segment truncated away between the listing and its stat is left out."""
    listings = []
    for collection in collections:
        segments = []
        try:
            entries = list(os.scandir(collection.directory / "wal"))
        except FileNotFoundError:
            entries = []  # the collection was deleted meanwhile
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix != WAL_SEGMENT_SUFFIX or not stem.isdigit():
                continue
            try:
                segments.append((int(stem), entry.stat().st_size))
            except FileNotFoundError:
                continue  # truncated while listing
        listings.append(sorted(segments))
    return listings


def _retained_bytes(segments: list[tuple[int, int]], next_op_id: int) -> int:
    """WAL bytes kept for a follower needing ops from next_op_id on: every segment whose ops
    reach next_op_id (a segment ends where the next one starts; the last one is open)."""
    retained = 0
    for index, (_, size_bytes) in enumerate(segments):
        is_last = index == len(segments) - 1
        if is_last or segments[index + 1][0] > next_op_id:
            retained += size_bytes
    return retained


def _histogram_json(snapshot: HistogramSnapshot) -> dict[str, Any]:
    return {
        "upper_bounds": list(snapshot.upper_bounds),
        "bucket_counts": list(snapshot.bucket_counts),
        "count": snapshot.count,
        "sum": snapshot.sum,
        "min": snapshot.min_value,
        "max": snapshot.max_value,
    }


def _settings_of(collection: Collection) -> Any:
    return collection.settings


def _write_path_error(collection: Collection) -> str | None:
    """The error that closed the write path (what every write now answers), else None."""
    return collection.write_path_error
