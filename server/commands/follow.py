"""`keel follow`: tail a running Keel's WAL and replay every op on Qdrant (or another Keel),
in order, so the target catches up with a migration and stays current.

Owns: the follow loop: read durable ops from the source (`GET /keel/collections/{c}/wal`),
send each as the REST request that reproduces it (server/wire/op_requests.py renders them) with
`wait=true`, ack the new position to the source (`PUT /keel/.../followers/{name}`, which also
keeps the WAL the follower still needs), and show the lag: ops behind the source's last
durable op, and seconds since the oldest op not yet replayed was first seen.
Not here: the initial copy (server/commands/migrate.py), WAL retention (engine/wal/followers.py).

Where to start: `--state FILE` (the migration's: each collection's snapshot op id, and where
an earlier follow stopped) or `--from-op C=N` (replay ops after N). A follower whose ops were
truncated (past `storage.wal.follower_retention_mb_max`) is refused by the source with 409:
this command says so and exits 3; run `keel migrate` again. It never skips an op.

Each collection is followed in one incarnation (the source's id for one history of it: a
restore from a snapshot or a delete + create starts another). The migration's state file
records it; without one, the first registration tells it. Every read and ack names it, and
the source answers 409 once the collection is another history: this command exits 3.

`--until-caught-up` stops once the lag is 0; the follower stays registered (holding WAL on
the source for a later run) unless `--release` also removes its registration.

Aliases are not WAL ops: every ALIAS_SYNC_EVERY_S, and whenever the lag is 0, the aliases
of the followed collections are compared on both sides and the target's made equal.

Delivery is at least once: the position is acked after each read batch, so a follow killed
mid-batch sends that batch's first ops again when restarted. Replaying an op sequence from
the same starting point in order converges for Qdrant's point operations.

A payload or vector edit that names a point the target does not have is answered 404 "No
point with id N found" by Qdrant and Keel alike, after editing the points before it: the
source answered the same when it applied the op, so that answer counts as replayed.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from engine.logfmt import log_event
from server.commands import transfer
from server.commands.transfer import TransferError

log = logging.getLogger("keel.follow")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOST = 3
READ_COUNT_DEFAULT = 256
POLL_S_DEFAULT = 0.5
LAG_LOG_EVERY_S = 5.0
# transfer.call's text for an edit that met a missing id (collection.py, Qdrant's PointNotFound).
MISSING_POINT_ANSWER = re.compile(r" answered 404: Not found: No point with id \S+ found$")
ALIAS_SYNC_EVERY_S = 2.0  # aliases are compared, not replayed (they are not in the WAL)


@dataclass
class Stream:
    """One collection being followed."""

    collection_name: str
    next_op_id: int
    incarnation: str | None = None  # the source collection's history; None: not known yet
    last_op_id: int = -1  # the source's last durable op, as last seen
    # (op id, monotonic time it was first seen to exist), oldest first; for lag in seconds.
    seen: deque[tuple[int, float]] = field(default_factory=deque)

    @property
    def lag_ops(self) -> int:
        return max(self.last_op_id - (self.next_op_id - 1), 0)

    def observe(self, last_op_id: int, now_s: float) -> None:
        if last_op_id > self.last_op_id:
            self.seen.append((last_op_id, now_s))
            self.last_op_id = last_op_id

    def lag_s(self, now_s: float) -> float:
        while self.seen and self.seen[0][0] < self.next_op_id:
            self.seen.popleft()
        return now_s - self.seen[0][1] if self.seen and self.lag_ops else 0.0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.release and not args.until_caught_up:
        print("keel follow: --release needs --until-caught-up", file=sys.stderr)
        return EXIT_USAGE
    transfer.configure_logging()
    try:
        follower = Follower(args)
        transfer.check_distinct_servers(args.source, follower.source, args.to, follower.target)
        return follower.run()
    except transfer.RefusedError as error:
        print(f"keel follow: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FollowerLost as lost:
        print(f"keel follow: REFUSED: {lost}", file=sys.stderr)
        print("keel follow: the target can no longer be caught up from the WAL: run "
              "`keel migrate` again (with --overwrite), then `keel follow`", file=sys.stderr)  # fmt: skip
        return EXIT_LOST
    except TransferError as error:
        print(f"keel follow: {error}", file=sys.stderr)
        return EXIT_FAILED


class FollowerLost(Exception):
    """The source refused us: the ops we need are gone (or we were marked lost)."""


class Follower:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.source = transfer.rest_client(args.source, args.api_key)
        self.target = transfer.rest_client(args.to, args.to_api_key)
        self.state_path: Path | None = args.state
        self.state: dict[str, Any] | None = None
        if self.state_path is not None:
            self.state = transfer.load_state(self.state_path)
            if self.state is None:
                raise TransferError(f"state file {self.state_path} does not exist")
        self.name = args.name or (self.state or {}).get("follower_name")
        self.name = self.name or transfer.follower_name_for(args.to)
        self.streams = self._streams()
        if not self.streams:
            raise TransferError("nothing to follow: give --state FILE or --from-op C=N")
        self._logged_s = 0.0
        self._aliases_synced_s = -ALIAS_SYNC_EVERY_S
        self._is_terminal = sys.stderr.isatty()

    def run(self) -> int:
        for stream in self.streams:
            self._ack(stream)  # registers, or finds out at once that we are lost
        try:
            while True:
                replayed_count = sum(self._step(stream) for stream in self.streams)
                is_caught_up = all(s.lag_ops == 0 for s in self.streams)
                if is_caught_up or time.monotonic() - self._aliases_synced_s >= ALIAS_SYNC_EVERY_S:
                    self._sync_aliases()
                if self.args.until_caught_up and is_caught_up:
                    self._show(is_final=True)
                    self._finish()
                    return 0
                self._show()
                if replayed_count == 0:
                    time.sleep(self.args.poll_s)
        except KeyboardInterrupt:
            self._show(is_final=True)
            print("keel follow: stopped", file=sys.stderr)
            return 0

    def _step(self, stream: Stream) -> int:
        """Read one batch of ops for `stream` and replay it; return how many."""
        path = f"/keel/collections/{stream.collection_name}/wal"
        params = {"from_op_id": stream.next_op_id, "limit": self.args.batch, "follower": self.name}
        if stream.incarnation is not None:
            params["incarnation"] = stream.incarnation
        answer = self._source_call("GET", path, params=params)
        stream.observe(answer["last_op_id"], time.monotonic())
        records = answer["records"]
        for record in records:
            if record["op_id"] != stream.next_op_id:
                raise TransferError(
                    f"collection {stream.collection_name}: expected op {stream.next_op_id}, "
                    f"the source sent op {record['op_id']}"
                )
            self._replay(stream, record)
            stream.next_op_id += 1
        if records:
            self._ack(stream)
        return len(records)

    def _replay(self, stream: Stream, record: dict[str, Any]) -> None:
        request = record["request"]
        try:
            transfer.call(
                self.target,
                request["method"],
                request["path"],
                params={"wait": "true"},
                json=request["body"],
            )
        except TransferError as error:
            if MISSING_POINT_ANSWER.search(str(error)):
                return  # applied as on the source, which met the same missing id
            raise TransferError(
                f"replaying op {record['op_id']} of collection {stream.collection_name} on "
                f"the target failed; nothing after it was sent: {error}"
            ) from None

    def _sync_aliases(self) -> None:
        """Make the target's aliases of the followed collections the source's. Alias changes
        are not WAL operations, so they are compared, not replayed: every
        ALIAS_SYNC_EVERY_S and whenever the lag is 0, in one all-or-none request."""
        names = {stream.collection_name for stream in self.streams}
        source = {
            alias["alias_name"]: alias["collection_name"]
            for alias in self._source_call("GET", "/aliases")["aliases"]
            if alias["collection_name"] in names
        }
        target = {
            alias["alias_name"]: alias["collection_name"]
            for alias in transfer.call(self.target, "GET", "/aliases")["aliases"]
        }
        deletes = [
            alias
            for alias, collection in target.items()
            if (collection in names or alias in source) and source.get(alias) != collection
        ]
        creates = [alias for alias, collection in source.items() if target.get(alias) != collection]
        actions: list[dict[str, Any]] = [{"delete_alias": {"alias_name": a}} for a in deletes]
        actions += [
            {"create_alias": {"alias_name": alias, "collection_name": source[alias]}}
            for alias in creates
        ]
        if actions:
            transfer.call(self.target, "POST", "/collections/aliases", json={"actions": actions})
            log_event(log, logging.INFO, "aliases synced on the target", actions=len(actions))
        self._aliases_synced_s = time.monotonic()

    def _ack(self, stream: Stream) -> None:
        path = f"/keel/collections/{stream.collection_name}/followers/{self.name}"
        body: dict[str, Any] = {"next_op_id": stream.next_op_id}
        if stream.incarnation is not None:
            body["incarnation"] = stream.incarnation
        answer = self._source_call("PUT", path, json=body)
        stream.incarnation = answer["incarnation"]  # learnt here when the state had none
        if self.state is not None and self.state_path is not None:
            self.state.setdefault("follow", {})[stream.collection_name] = stream.next_op_id
            entry = self.state["collections"].get(stream.collection_name)
            if entry is not None:
                entry["incarnation"] = stream.incarnation
            transfer.save_state(self.state_path, self.state)

    def _finish(self) -> None:
        """After --until-caught-up: release the registrations, or say what they hold."""
        names = ", ".join(stream.collection_name for stream in self.streams)
        if not self.args.release:
            print(
                f"keel follow: follower {self.name!r} stays registered on {names}: the source "
                "keeps the WAL it has not replayed (up to storage.wal."
                "follower_retention_mb_max per collection) for the next `keel follow`; once "
                "you have cut over, run this command again with --release (or DELETE "
                f"/keel/collections/C/followers/{self.name})",
                file=sys.stderr,
            )
            return
        for stream in self.streams:
            path = f"/keel/collections/{stream.collection_name}/followers/{self.name}"
            self._source_call("DELETE", path)
        print(f"keel follow: follower {self.name!r} released on {names}", file=sys.stderr)

    def _source_call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.source.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise TransferError(f"{method} {self.args.source}{path} failed: {error}") from error
        if response.status_code in (409, 410):
            raise FollowerLost(transfer.error_text(response))
        if response.status_code >= 400:
            raise TransferError(
                f"{method} {path} answered {response.status_code}: {transfer.error_text(response)}"
            )
        return response.json()["result"]

    def _show(self, is_final: bool = False) -> None:
        now_s = time.monotonic()
        parts = [
            f"{s.collection_name}: next_op_id={s.next_op_id} lag_ops={s.lag_ops} "
            f"lag_s={s.lag_s(now_s):.1f}"
            for s in self.streams
        ]
        line = "follow " + "; ".join(parts)
        if self._is_terminal:
            sys.stderr.write("\r" + line + (" " * 4) + ("\n" if is_final else ""))
            sys.stderr.flush()
        elif is_final or now_s - self._logged_s >= LAG_LOG_EVERY_S:
            self._logged_s = now_s
            for stream in self.streams:
                log_event(
                    log,
                    logging.INFO,
                    "follow",
                    collection=stream.collection_name,
                    next_op_id=stream.next_op_id,
                    lag_ops=stream.lag_ops,
                    lag_s=round(stream.lag_s(now_s), 1),
                )

    def _streams(self) -> list[Stream]:
        positions: dict[str, int] = {}
        incarnations: dict[str, str | None] = {}
        if self.state is not None:
            follow = self.state.get("follow", {})
            for name, entry in self.state["collections"].items():
                positions[name] = follow.get(name, entry["op_id"] + 1)
                incarnations[name] = entry.get("incarnation")
        for text in self.args.from_op or []:
            name, _, op_id = text.rpartition("=")
            if not name or not op_id.isdigit():
                raise TransferError(f"--from-op wants COLLECTION=OP_ID, got {text!r}")
            positions[name] = int(op_id) + 1
        return [
            Stream(name, next_op_id, incarnations.get(name))
            for name, next_op_id in sorted(positions.items())
        ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keel follow",
        description="Replay every op a running Keel logs after a migration on the target, "
        "in order, continuously; show the lag.",
    )
    transfer.add_endpoint_flags(parser, "the running Keel to follow")
    parser.add_argument("--state", type=Path, metavar="FILE", help="the migration's state file")
    parser.add_argument(
        "--from-op", action="append", metavar="C=N", help="replay ops of C after op N"
    )
    parser.add_argument("--name", metavar="N", help="follower name (default from the target)")
    parser.add_argument("--batch", type=int, default=READ_COUNT_DEFAULT, metavar="N")
    parser.add_argument("--poll-s", type=float, default=POLL_S_DEFAULT, metavar="S")
    parser.add_argument(
        "--until-caught-up", action="store_true", help="exit 0 once the lag is 0 ops"
    )
    parser.add_argument(
        "--release",
        action="store_true",
        help="with --until-caught-up: remove the follower's registration on the source when "
        "done (after the cut-over), so it no longer holds WAL there",
    )
    return parser
