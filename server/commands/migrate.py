"""`keel migrate`: copy collections of a running Keel to Qdrant (or another Keel), as of one
op id per collection, resumably, and verify the copy.

Owns: the migration steps and their order, the resume logic, verification.
Not here: REST helpers, state file I/O, progress (server/commands/transfer.py); tailing the WAL afterwards
(server/commands/follow.py).

Steps, per collection:
1. Register the follower (`PUT /keel/collections/{c}/followers/{name}` with `next_op_id`
   null: the source's next op not yet applied). From now on no op above the source's
   applied op id can be truncated from its WAL while the follower is live.
2. Take a snapshot (`POST /collections/{c}/snapshots`), download it next to the state file
   and delete it on the source. The snapshot is one LMDB read transaction: every point as of
   its op id S, which is in its manifest. S >= the applied op id at step 1, so every op
   after S is still in the WAL. Then ack the follower at S + 1: `keel follow` starts there.
3. Unpack the snapshot locally and open its LMDB read-only through engine/store/store.py.
4. On the target: create the collection from the snapshot's config (its CreateCollection
   echo), create the payload indexes, upload the points in key order, in batches, with
   `--parallel` batches in flight; the state file records the last key of the longest run
   of acknowledged batches, so a rerun resumes after it with the same snapshot.
5. Verify: the target's exact count equals the snapshot's, and a sample of points has equal
   payloads and vectors (within FLOAT_RTOL); payload index types match. Exit 1 if not.
Then aliases of the migrated collections are copied (aliases are not in the WAL: `follow`
keeps them equal by comparing both sides, not by replaying).
The op id of each collection is printed at the end: `keel follow --from-op C=S` replays
every op after it.

Before any of this, the migration refuses (exit 2, nothing changed) when source and target
are one server, and when a collection to create exists on the target, unless `--overwrite`
and each deletion is confirmed (transfer.confirm_deletions). A collection this migration
created itself (the state file says so) is not in the way: a rerun replaces or resumes it.

The target is written with qdrant-client. The snapshot and /keel/ endpoints of the source
are reached with httpx (qdrant-client's own HTTP library).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx

from engine import files, limits, snapshot
from engine.logfmt import log_event
from engine.ops import CollectionConfig, point_id_from_key
from engine.store.store import Store, StoredPoint
from server.commands import transfer
from server.commands.transfer import RefusedError, TransferError

log = logging.getLogger("keel.migrate")

EXIT_MISMATCH = 1
EXIT_USAGE = 2  # bad flags, or refused before anything was changed
BATCH_POINTS_DEFAULT = 256
BATCH_POINTS_MAX = 10_000
PARALLEL_MAX = 32
SAMPLE_POINTS_DEFAULT = 1_000
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
# Failpoint for tests: SIGKILL this process after that many acknowledged batches. Refused
# (exit 2, nothing changed) unless KEEL_TEST_FAULTS=1 is set too (engine/files.py).
FAIL_AFTER_BATCHES_ENV = "KEEL_MIGRATE_KILL_AFTER_BATCHES"


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    transfer.configure_logging()
    if not 1 <= args.batch_size <= BATCH_POINTS_MAX or not 1 <= args.parallel <= PARALLEL_MAX:
        print(
            f"keel migrate: --batch-size 1..{BATCH_POINTS_MAX}, --parallel 1..{PARALLEL_MAX}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    state_path = args.state or transfer.default_state_path(args.to)
    try:
        return Migration(args, state_path).run()
    except RefusedError as error:
        # Nothing to resume: the same command would be refused the same way.
        print(f"keel migrate: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TransferError as error:
        print(f"keel migrate: {error}", file=sys.stderr)
        print(f"keel migrate: run the same command again to resume ({state_path})", file=sys.stderr)
        return EXIT_MISMATCH
    except KeyboardInterrupt:
        print(f"\nkeel migrate: interrupted; rerun to resume ({state_path})", file=sys.stderr)
        return 130


def _kill_after_batches() -> int:
    """The test-only KEEL_MIGRATE_KILL_AFTER_BATCHES (0: never), logged as a WARNING when set;
    RefusedError when it is set without KEEL_TEST_FAULTS=1."""
    try:
        value = files.fault_setting(FAIL_AFTER_BATCHES_ENV)
    except files.FaultsNotEnabled as error:
        raise RefusedError(str(error)) from None
    if not value:
        return 0
    log_event(
        log,
        logging.WARNING,
        "failpoint armed",
        name=FAIL_AFTER_BATCHES_ENV,
        batches=value,
        enabled_by=files.TEST_FAULTS_VARIABLE,
        effect="this process kills itself after that many acknowledged batches",
    )
    return int(value)


class Migration:
    def __init__(self, args: argparse.Namespace, state_path: Path) -> None:
        self.args = args
        self.state_path = state_path
        self.work_dir = state_path.with_name(state_path.name + ".d")
        self.source = transfer.rest_client(args.source, args.api_key)
        self.target_rest = transfer.rest_client(args.to, args.to_api_key)
        self.target = transfer.qdrant_client(args.to, args.to_api_key)
        self.deletable: set[str] = set()
        self.follower_name = args.name or transfer.follower_name_for(args.to)
        self.state = transfer.load_state(state_path) or {
            "format_version": transfer.STATE_FORMAT_VERSION,
            "source": args.source,
            "target": args.to,
            "follower_name": self.follower_name,
            "collections": {},
        }
        if self.state["target"] != args.to or self.state["source"] != args.source:
            raise RefusedError(
                f"state file {state_path} is for {self.state['source']} -> "
                f"{self.state['target']}; use another --state"
            )
        self.follower_name = self.state["follower_name"]
        self._batches_acked = 0
        self._acked: set[int] = set()
        self._kill_after = _kill_after_batches()

    def run(self) -> int:
        args = self.args
        transfer.check_distinct_servers(args.source, self.source, args.to, self.target_rest)
        names = self.args.collection or [c["name"] for c in _source_collections(self.source)]
        transfer.source_collection_infos(self.source, names)
        in_the_way = {
            name: transfer.points_count(self.target_rest, name)
            for name in names
            if self._will_create(name) and self.target.collection_exists(name)
        }
        self.deletable = transfer.confirm_deletions(
            "migrate", self.args.to, in_the_way, self.args, transfer.terminal_prompt()
        )
        files.make_directories(self.work_dir)
        problems: list[str] = []
        for name in names:
            problems += self.migrate_collection(name)
        self.copy_aliases(names)
        for name in names:
            entry = self.state["collections"][name]
            print(f"collection {name}: op_id={entry['op_id']} points={entry['points_count']}")
        follow = " ".join(f"--from-op {n}={self.state['collections'][n]['op_id']}" for n in names)
        print(
            f"keel migrate: done; keep the target current with: keel follow --to {self.args.to} "
            f"--state {self.state_path}  (or {follow})"
        )
        for problem in problems:
            print(f"keel migrate: MISMATCH {problem}", file=sys.stderr)
        return EXIT_MISMATCH if problems else 0

    def _will_create(self, name: str) -> bool:
        """True if migrate_collection will create `name` on the target and finds it in the
        way if it exists there (it is not one this migration started creating itself)."""
        entry = self.state["collections"].get(name)
        if entry is None or not Path(entry["snapshot_file"]).is_file():
            return True  # a new snapshot: a new entry, with nothing created yet
        return not entry.get("is_created") and not entry.get("is_creating")

    # ---- one collection --------------------------------------------------------------------

    def migrate_collection(self, name: str) -> list[str]:
        entry = self.state["collections"].get(name)
        if entry is None or not Path(entry["snapshot_file"]).is_file():
            entry = self.take_snapshot(name)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as unpack_dir:
            manifest, config = snapshot.unpack(
                Path(entry["snapshot_file"]), Path(unpack_dir) / name, None
            )
            assert manifest.op_id == entry["op_id"], (manifest.op_id, entry["op_id"])
            store = Store(
                Path(unpack_dir) / name / "lmdb",
                list(config.vectors),
                limits.LMDB_MAP_BYTES_INITIAL,
                tuple(config.sparse_vectors),
                config.multivector_dims(),
            )
            try:
                entry["points_count"] = store.count_points()
                self._save()
                if not entry.get("is_created"):
                    self.create_on_target(name, config, store)
                    entry["is_created"] = True
                    self._save()
                if not entry.get("is_copied"):
                    self.copy_points(name, entry, config, store)
                    entry["is_copied"] = True
                    self._save()
                return self.verify(name, config, store, entry)
            finally:
                store.close()

    def take_snapshot(self, name: str) -> dict[str, Any]:
        follower_path = f"/keel/collections/{name}/followers/{self.follower_name}"
        transfer.call(self.source, "DELETE", follower_path)  # a fresh start, even if lost
        registration = transfer.call(self.source, "PUT", follower_path, json={"next_op_id": None})
        # The history the snapshot is of: `keel follow` refuses to resume on another one.
        incarnation = registration["incarnation"]
        description = transfer.call(self.source, "POST", f"/collections/{name}/snapshots")
        snapshot_name = description["name"]
        path = self.work_dir / snapshot_name
        _download(self.source, f"/collections/{name}/snapshots/{snapshot_name}", path)
        transfer.call(self.source, "DELETE", f"/collections/{name}/snapshots/{snapshot_name}")
        op_id = snapshot.read_manifest(path).op_id
        position = {"next_op_id": op_id + 1, "incarnation": incarnation}
        transfer.call(self.source, "PUT", follower_path, json=position)
        entry = {
            "snapshot_file": str(path),
            "snapshot_name": snapshot_name,
            "op_id": op_id,
            "incarnation": incarnation,
        }
        self.state["collections"][name] = entry
        self._save()
        log_event(log, logging.INFO, "snapshot taken", collection=name, op_id=op_id, file=path)
        return entry

    def create_on_target(self, name: str, config: CollectionConfig, store: Store) -> None:
        from qdrant_client import models

        entry = self.state["collections"][name]
        # A rerun after a crash between creating and recording it finds our own collection.
        is_ours = entry.get("is_creating", False)
        if self.target.collection_exists(name):
            if not (is_ours or name in self.deletable):  # created since run() looked
                raise TransferError(f"collection {name} appeared on the target meanwhile")
            self.target.delete_collection(name)
            log_event(log, logging.INFO, "collection deleted on target", collection=name)
        entry["is_creating"] = True
        self._save()
        body = transfer.create_collection_body(config)
        self.target.http.collections_api.create_collection(
            collection_name=name, create_collection=models.CreateCollection.model_validate(body)
        )
        for spec in store.index_specs.values():
            index_body = transfer.create_index_body(spec.field_name, spec.schema_type, spec.params)
            self.target.http.indexes_api.create_field_index(
                collection_name=name,
                wait=True,
                create_field_index=models.CreateFieldIndex.model_validate(index_body),
            )
        log_event(
            log, logging.INFO, "collection created on target", collection=name,
            indexes=len(store.index_specs),
        )  # fmt: skip

    def copy_points(
        self, name: str, entry: dict[str, Any], config: CollectionConfig, store: Store
    ) -> None:
        progress = transfer.Progress(
            "migrate", name, entry["points_count"], entry.get("points_done", 0)
        )
        start_key = bytes.fromhex(entry["last_key"]) if entry.get("last_key") else None
        batches = transfer.chunks(_points_after(store, start_key), self.args.batch_size)
        in_flight: dict[Future[None], int] = {}
        finished: dict[int, tuple[bytes, int]] = {}  # batch number -> (last key, count)
        next_to_record = 0
        with ThreadPoolExecutor(max_workers=self.args.parallel) as pool:
            for number, batch in enumerate(batches):
                structs = _point_structs(store, config, batch)
                future = pool.submit(self._upsert, name, structs)
                in_flight[future] = number
                finished_meta = (batch[-1].key, len(batch))
                finished[number] = finished_meta
                if len(in_flight) >= 2 * self.args.parallel:  # bounded memory
                    next_to_record = self._drain(
                        in_flight, finished, next_to_record, entry, progress, FIRST_COMPLETED
                    )
            while in_flight:
                next_to_record = self._drain(
                    in_flight, finished, next_to_record, entry, progress, FIRST_COMPLETED
                )
        progress.finish()

    def _drain(
        self,
        in_flight: dict[Future[None], int],
        finished: dict[int, tuple[bytes, int]],
        next_to_record: int,
        entry: dict[str, Any],
        progress: transfer.Progress,
        return_when: str,
    ) -> int:
        done, _ = wait(list(in_flight), return_when=return_when)
        acked: set[int] = set()
        for future in done:
            future.result()  # raises the first failed batch
            acked.add(in_flight.pop(future))
        self._acked |= acked
        # Record only the longest run of acknowledged batches: a rerun redoes nothing done.
        while next_to_record in self._acked:
            last_key, count = finished.pop(next_to_record)
            self._acked.discard(next_to_record)
            entry["last_key"] = last_key.hex()
            entry["points_done"] = entry.get("points_done", 0) + count
            next_to_record += 1
            progress.advance(count)
            self._save()
            self._batches_acked += 1
            if self._kill_after and self._batches_acked >= self._kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return next_to_record

    def _upsert(self, name: str, structs: list[Any]) -> None:
        self.target.upsert(collection_name=name, points=structs, wait=True)

    # ---- verification and aliases ----------------------------------------------------------

    def verify(
        self, name: str, config: CollectionConfig, store: Store, entry: dict[str, Any]
    ) -> list[str]:
        problems = []
        target_count = self.target.count(collection_name=name, exact=True).count
        if target_count != entry["points_count"]:
            problems.append(
                f"collection {name}: target has {target_count} points, the snapshot of op "
                f"{entry['op_id']} has {entry['points_count']}"
            )
        wanted = transfer.sample_indexes(entry["points_count"], self.args.sample)
        sample = [p for i, p in enumerate(store.iter_points(None)) if i in wanted]
        for batch in transfer.chunks(sample, 256):
            expected = {p.key: _point_content(store, config, p) for p in batch}
            ids = [transfer.point_id_json(point_id_from_key(p.key)) for p in batch]
            records = self.target.retrieve(name, ids=ids, with_payload=True, with_vectors=True)
            by_id = {str(record.id): record for record in records}
            for point, point_id in zip(batch, ids):
                actual = by_id.get(str(point_id))
                problems += transfer.point_differences(point_id, expected[point.key], actual)
        schema = self.target.get_collection(name).payload_schema
        for spec in store.index_specs.values():
            info = schema.get(spec.field_name)
            data_type = getattr(getattr(info, "data_type", None), "value", None)
            if data_type != spec.schema_type:
                problems.append(
                    f"collection {name}: payload index {spec.field_name!r} is {data_type}"
                )
        log_event(
            log, logging.INFO, "verified", collection=name, points=target_count,
            sampled=len(sample), problems=len(problems),
        )  # fmt: skip
        return problems

    def copy_aliases(self, names: list[str]) -> None:
        from qdrant_client import models

        aliases = transfer.call(self.source, "GET", "/aliases")["aliases"]
        existing = {a.alias_name: a.collection_name for a in self.target.get_aliases().aliases}
        actions: list[Any] = []
        for alias in aliases:
            alias_name, collection_name = alias["alias_name"], alias["collection_name"]
            if collection_name not in names or existing.get(alias_name) == collection_name:
                continue
            if alias_name in existing:
                actions.append(
                    models.DeleteAliasOperation(
                        delete_alias=models.DeleteAlias(alias_name=alias_name)
                    )
                )
            actions.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(
                        alias_name=alias_name, collection_name=collection_name
                    )
                )
            )
        if actions:
            self.target.update_collection_aliases(change_aliases_operations=actions)
        created_count = sum(1 for a in actions if isinstance(a, models.CreateAliasOperation))
        log_event(log, logging.INFO, "aliases copied", count=created_count)

    def _save(self) -> None:
        transfer.save_state(self.state_path, self.state)


# ---- private helpers -----------------------------------------------------------------------


def _source_collections(source: httpx.Client) -> list[dict[str, Any]]:
    return transfer.call(source, "GET", "/collections")["collections"]


def _download(source: httpx.Client, path: str, target: Path) -> None:
    """Stream a file to `target` (fsynced, renamed in), never holding it in memory."""
    temp_path = target.with_name(f".{target.name}.tmp")
    if temp_path.exists():
        files.remove_tree(temp_path)
    fd = files.create_append(temp_path)
    try:
        with source.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise TransferError(
                    f"GET {path} answered {response.status_code}: {transfer.error_text(response)}"
                )
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                files.write_all(fd, chunk)
        files.fsync(fd)
    finally:
        files.close(fd)
    files.rename_durably(temp_path, target)


def _points_after(store: Store, start_key: bytes | None) -> Iterator[StoredPoint]:
    for point in store.iter_points(start_key):
        if start_key is not None and point.key == start_key:
            continue  # already copied: start_key is the last key done
        yield point


def _point_content(
    store: Store, config: CollectionConfig, point: StoredPoint
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, tuple[list[int], list[float]]]]:
    dense = {}
    for name in config.vectors:
        [vector] = store.get_vectors(name, [point.label])
        if vector is not None:
            dense[name] = vector
    sparse = {}
    for name in config.sparse_vectors:
        [vector] = store.get_sparse(name, [point.label])
        if vector is not None:
            sparse[name] = (vector.indices.tolist(), vector.values.astype("float32").tolist())
    return point.payload, dense, sparse


def _point_structs(store: Store, config: CollectionConfig, points: list[StoredPoint]) -> list[Any]:
    from qdrant_client import models

    structs = []
    for point in points:
        payload, dense, sparse = _point_content(store, config, point)
        structs.append(
            models.PointStruct(
                id=transfer.point_id_json(point_id_from_key(point.key)),
                vector=transfer.point_vector(dense, sparse, config.is_single_unnamed),
                payload=payload,
            )
        )
    return structs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keel migrate",
        description="Copy collections of a running Keel to Qdrant or another Keel, as of one "
        "op id each (a snapshot), resumably; verify; print the op ids for `keel follow`.",
    )
    transfer.add_endpoint_flags(parser, "the running Keel to copy from")
    parser.add_argument("--collection", action="append", metavar="C", help="only C (repeatable)")
    parser.add_argument("--state", type=Path, metavar="FILE", help="resume state file")
    parser.add_argument("--name", metavar="N", help="follower name (default from the target)")
    parser.add_argument("--batch-size", type=int, default=BATCH_POINTS_DEFAULT, metavar="N")
    parser.add_argument("--parallel", type=int, default=2, metavar="N", help="batches in flight")
    parser.add_argument("--sample", type=int, default=SAMPLE_POINTS_DEFAULT, metavar="N",
                        help="points compared on both sides when verifying")  # fmt: skip
    transfer.add_overwrite_flags(parser)
    return parser
