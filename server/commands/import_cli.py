"""`keel import`: copy collections from a Qdrant server (or another Keel) into a running Keel.

Owns: reading a source's collection info, payload schema, aliases and points over its REST
API (qdrant-client's scroll, with vectors and payloads), and recreating them in Keel.
Not here: REST helpers, progress and the guards (server/commands/transfer.py); the way out (server/commands/migrate.py,
server/commands/follow.py).

Before anything is written the import refuses (exit 2) when source and target are one server
(`--to` defaults to 127.0.0.1:6333, a local Qdrant's port too), when a collection to import
is missing on the source, and when collections exist in Keel unless `--overwrite` and each
deletion is confirmed (transfer.confirm_deletions).

NOT consistent under writes: the source is scrolled page by page while it may change, so a
point written during the import may be copied in its old or its new state, or missed.
Stop writes to the source (or accept that) before importing; Qdrant has no WAL tail to
follow afterwards. Verification compares the point counts at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from engine.logfmt import log_event
from server.commands import transfer
from server.commands.transfer import RefusedError, TransferError

log = logging.getLogger("keel.import")

EXIT_FAILED = 1
EXIT_REFUSED = 2
BATCH_POINTS_DEFAULT = 256
# Collection info fields -> CreateCollection fields (GET shows `optimizer_config`).
CONFIG_SECTIONS = {
    "hnsw_config": "hnsw_config",
    "optimizer_config": "optimizers_config",
    "wal_config": "wal_config",
    "quantization_config": "quantization_config",
}
PARAM_FIELDS = ("shard_number", "replication_factor", "write_consistency_factor", "on_disk_payload")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    transfer.configure_logging()
    try:
        return Import(args).run()
    except RefusedError as error:
        print(f"keel import: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except TransferError as error:
        print(f"keel import: {error}", file=sys.stderr)
        return EXIT_FAILED


class Import:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.source_rest = transfer.rest_client(args.source, args.api_key)
        self.source = transfer.qdrant_client(args.source, args.api_key)
        self.target_rest = transfer.rest_client(args.to, args.to_api_key)
        self.target = transfer.qdrant_client(args.to, args.to_api_key)
        self.deletable: set[str] = set()

    def run(self) -> int:
        transfer.check_distinct_servers(
            self.args.source, self.source_rest, self.args.to, self.target_rest
        )
        names = self.args.collection or [
            c["name"] for c in transfer.call(self.source_rest, "GET", "/collections")["collections"]
        ]
        infos = transfer.source_collection_infos(self.source_rest, names)
        existing = {
            name: transfer.points_count(self.target_rest, name)
            for name in names
            if self.target.collection_exists(name)
        }
        self.deletable = transfer.confirm_deletions(
            "import", self.args.to, existing, self.args, transfer.terminal_prompt()
        )
        problems = []
        for name in names:
            problems += self.import_collection(name, infos[name])
        self.copy_aliases(names)
        for problem in problems:
            print(f"keel import: MISMATCH {problem}", file=sys.stderr)
        return EXIT_FAILED if problems else 0

    def import_collection(self, name: str, info: dict[str, Any]) -> list[str]:
        if self.target.collection_exists(name):
            if name not in self.deletable:  # created in Keel since run() looked
                raise TransferError(f"collection {name} appeared in Keel during the import")
            transfer.call(self.target_rest, "DELETE", f"/collections/{name}")
            log_event(log, logging.INFO, "collection deleted on target", collection=name)
        transfer.call(self.target_rest, "PUT", f"/collections/{name}", json=create_body(info))
        for field_name, schema in (info.get("payload_schema") or {}).items():
            field_schema = schema.get("params") or schema["data_type"]
            body = {"field_name": field_name, "field_schema": field_schema}
            transfer.call(
                self.target_rest,
                "PUT",
                f"/collections/{name}/index",
                params={"wait": "true"},
                json=body,
            )
        total_count = self.source.count(name, exact=True).count
        progress = transfer.Progress("import", name, total_count)
        offset = None
        while True:
            records, offset = self.source.scroll(
                name,
                limit=self.args.batch_size,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            if records:
                self.target.upsert(name, points=[_point_struct(r) for r in records], wait=True)
                progress.advance(len(records))
            if offset is None:
                break
        progress.finish()
        source_count = self.source.count(name, exact=True).count
        target_count = self.target.count(name, exact=True).count
        if source_count != target_count:
            return [f"collection {name}: source has {source_count} points, Keel {target_count}"]
        return []

    def copy_aliases(self, names: list[str]) -> None:
        aliases = transfer.call(self.source_rest, "GET", "/aliases")["aliases"]
        actions = [
            {
                "create_alias": {
                    "alias_name": a["alias_name"],
                    "collection_name": a["collection_name"],
                }
            }
            for a in aliases
            if a["collection_name"] in names
        ]
        if actions:
            transfer.call(
                self.target_rest, "POST", "/collections/aliases", json={"actions": actions}
            )


def create_body(info: dict[str, Any]) -> dict[str, Any]:
    """A CreateCollection body from a source's CollectionInfo (nulls left out)."""
    config = info["config"]
    params = config["params"]
    body: dict[str, Any] = {"vectors": params.get("vectors", {})}
    if params.get("sparse_vectors"):
        body["sparse_vectors"] = params["sparse_vectors"]
    for field_name in PARAM_FIELDS:
        if params.get(field_name) is not None:
            body[field_name] = params[field_name]
    for info_key, body_key in CONFIG_SECTIONS.items():
        section = config.get(info_key)
        if isinstance(section, dict):
            section = {key: value for key, value in section.items() if value is not None}
        if section:
            body[body_key] = section
    return body


def _point_struct(record: Any) -> Any:
    from qdrant_client import models

    return models.PointStruct(id=record.id, vector=record.vector or {}, payload=record.payload)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keel import",
        description="Copy collections from Qdrant (or another Keel) into a running Keel. Not "
        "consistent while the source is written to.",
    )
    parser.add_argument("--from", dest="source", required=True, metavar="URL", help="source URL")
    parser.add_argument("--api-key", metavar="K", help="API key of the source")
    parser.add_argument(
        "--to", default="http://127.0.0.1:6333", metavar="URL",
        help="the running Keel to import into (default http://127.0.0.1:6333)",
    )  # fmt: skip
    parser.add_argument("--to-api-key", metavar="K", help="API key of the Keel")
    parser.add_argument("--collection", action="append", metavar="C", help="only C (repeatable)")
    parser.add_argument("--batch-size", type=int, default=BATCH_POINTS_DEFAULT, metavar="N")
    transfer.add_overwrite_flags(parser)
    return parser
