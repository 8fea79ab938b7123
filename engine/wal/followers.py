"""Registered WAL followers of one collection, and how far they hold the WAL back.

Owns: `<collection>/followers.json`, the durable map follower name -> next op id it needs,
and the retention decision: which op id the applier may truncate the WAL below, given the
followers and the cap `follower_retention_bytes_max` (past it a follower is marked lost,
loudly, and the WAL is truncated anyway).
Not here: reading WAL records (engine/wal/log.py `read_durable`), when truncation runs (applier.py),
HTTP (server/api/followers.py), the follower itself (server/commands/follow.py).

A follower (`keel follow`, or `keel migrate` right before it takes its snapshot) registers
the next op id it needs and acks its progress by registering again. While it is behind,
segments holding ops >= its next_op_id are kept. A lost follower stays in the file, lost,
until it is deleted: its acks are refused, so it can never skip ops without knowing.

On disk (JSON, replaced atomically with files.write_file_atomic):

| field                           | what                                                  |
|---------------------------------|-------------------------------------------------------|
| format_version                  | 1                                                     |
| followers.<name>.next_op_id     | the lowest op id the follower still needs             |
| followers.<name>.lost_reason    | null, or why the WAL it needed was truncated          |
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from engine import files
from engine.errors import BadRequest, Conflict, CorruptionError

log = logging.getLogger(__name__)

FILE_NAME = "followers.json"
FORMAT_VERSION = 1
FOLLOWERS_MAX = 64  # each one may hold up to the retention cap of WAL back
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
REMIGRATE_HINT = "run `keel migrate` again to copy the collection, then `keel follow`"


@dataclass(frozen=True)
class Follower:
    name: str
    next_op_id: int
    lost_reason: str | None = None

    @property
    def is_lost(self) -> bool:
        return self.lost_reason is not None


@dataclass(frozen=True)
class SegmentExtent:
    """A sealed WAL segment, as retention sees it."""

    first_op_id: int
    last_op_id: int
    size_bytes: int


class FollowerRegistry:
    """The followers of one collection; every change is durable before it returns.

    Called from the event loop's executor (registration) and from the applier's thread
    (retention); a lock keeps the two from interleaving a read-modify-write.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._lock = threading.Lock()
        self._followers: dict[str, Follower] = self._load()

    def list(self) -> list[Follower]:
        with self._lock:
            return sorted(self._followers.values(), key=lambda follower: follower.name)

    def get(self, name: str) -> Follower | None:
        with self._lock:
            return self._followers.get(name)

    def register(self, name: str, next_op_id: int, wal_first_op_id: int) -> Follower:
        """Register `name` at next_op_id, or move it there (an ack). Durable on return.

        Raises BadRequest for a bad name, Conflict for a lost follower or one asking for ops
        the WAL no longer holds (both must re-migrate).
        """
        check_follower_name(name)
        assert next_op_id >= 0, next_op_id
        with self._lock:
            current = self._followers.get(name)
            if current is not None and current.is_lost:
                raise Conflict(
                    f"follower {name!r} is lost: {current.lost_reason}; {REMIGRATE_HINT}"
                )
            if next_op_id < wal_first_op_id:
                raise Conflict(
                    f"follower {name!r} needs op {next_op_id} but the WAL starts at op "
                    f"{wal_first_op_id} (older ops were truncated); {REMIGRATE_HINT}"
                )
            if current is None and len(self._followers) >= FOLLOWERS_MAX:
                raise BadRequest(f"a collection has at most {FOLLOWERS_MAX} followers")
            follower = Follower(name, next_op_id)
            self._save({**self._followers, name: follower})
            return follower

    def remove(self, name: str) -> bool:
        """Forget `name` (lost or not), durably; False if it was not registered."""
        with self._lock:
            if name not in self._followers:
                return False
            self._save({key: value for key, value in self._followers.items() if key != name})
            return True

    def truncation_op_id(
        self, covered_op_id: int, sealed: list[SegmentExtent], retention_bytes_max: int
    ) -> int:
        """The op id the WAL may be truncated below (inclusive), at most covered_op_id.

        Live followers lower it to their next_op_id - 1. If the segments they keep back
        (those that recovery alone would let go) exceed retention_bytes_max, the followers
        that need the oldest of them are marked lost (durably, logged as an error) until the
        rest fits. Runs in the applier's thread.
        """
        with self._lock:
            live = [f for f in self._followers.values() if not f.is_lost]
            if not live:
                return covered_op_id
            # Segments truncation would remove if nobody followed, oldest first.
            removable = [s for s in sealed if s.last_op_id <= covered_op_id]
            lost: dict[str, Follower] = {}
            while live:
                needed_op_id = min(follower.next_op_id for follower in live)
                kept = [s for s in removable if s.last_op_id >= needed_op_id]
                kept_bytes = sum(segment.size_bytes for segment in kept)
                if kept_bytes <= retention_bytes_max:
                    break
                for follower in [f for f in live if f.next_op_id == needed_op_id]:
                    reason = (
                        f"the WAL it needed from op {needed_op_id} on was truncated: followers "
                        f"held back {kept_bytes} bytes, more than storage.wal."
                        f"follower_retention_mb_max allows ({retention_bytes_max} bytes)"
                    )
                    lost[follower.name] = Follower(follower.name, follower.next_op_id, reason)
                    live.remove(follower)
            if lost:
                for follower in lost.values():
                    log.error(
                        "follower lost collection_dir=%s follower=%s next_op_id=%d reason=%s",
                        self.path.parent,
                        follower.name,
                        follower.next_op_id,
                        follower.lost_reason,
                    )
                self._save({**self._followers, **lost})
            if not live:
                return covered_op_id
            limit_op_id = min(follower.next_op_id for follower in live) - 1
            return min(covered_op_id, limit_op_id)

    # ---- private ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Follower]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_bytes())
            assert data["format_version"] == FORMAT_VERSION, data["format_version"]
            return {
                name: Follower(name, int(entry["next_op_id"]), entry.get("lost_reason"))
                for name, entry in data["followers"].items()
            }
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            raise CorruptionError(f"follower registry {self.path} is unreadable: {error}") from None

    def _save(self, followers: dict[str, Follower]) -> None:
        data = {
            "format_version": FORMAT_VERSION,
            "followers": {
                name: {"next_op_id": f.next_op_id, "lost_reason": f.lost_reason}
                for name, f in sorted(followers.items())
            },
        }
        files.write_file_atomic(self.path, json.dumps(data, indent=1).encode())
        # Only once durable: a crash before leaves the old map, which holds the WAL longer.
        self._followers = followers


def check_follower_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise BadRequest(
            f"invalid follower name {name!r}: use 1 to 128 letters, digits, '_', '.' or '-'"
        )
