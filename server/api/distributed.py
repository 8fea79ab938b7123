"""Distributed-mode handlers, answered as a single-node (standalone) Qdrant answers them.

Owns: the routes of Qdrant's "Distributed" API tag: `/cluster`, `/cluster/recover`,
`/cluster/peer/{peer_id}`, `/collections/{collection_name}/cluster` and the shard key routes
under `/collections/{collection_name}/shards`. Each collection of Keel is one local shard,
id 0, in state Active, with no replicas, transfers or shard keys.
Not here: shard snapshots (server/api/snapshots.py), `/cluster/telemetry`
(server/api/not_implemented.py).

Qdrant 1.19 with cluster mode disabled (`src/actix/api/cluster_api.rs`, `shards_api.rs`,
`src/common/collections.rs`): `GET /cluster` is `{"status": "disabled"}`; every operation
that needs consensus (a collection cluster operation, creating or dropping a shard key,
`/cluster/recover`, removing a peer) answers 405 "Qdrant is running in standalone mode",
before looking the collection up; removing this node's own peer id without `force` while it
holds shards is refused with 400 first. Qdrant's standalone peer id is random per storage;
Keel's is derived from the storage id (engine/catalog.py), so it is stable too.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from engine.catalog import Catalog
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ApiError, ok
from server.wire.serde_text import invalid_type, missing_field, untagged_mismatch

SHARD_ID = 0  # the one local shard every Keel collection is
SHARD_STATE = "Active"
STANDALONE_STATUS = 405  # Qdrant maps StorageError::StandaloneMode to 405
STANDALONE_TEXT = "Qdrant is running in standalone mode"
U64_MAX = 2**64 - 1
# The keys of ClusterOperations' variants in Qdrant 1.19 (lib/collection/src/operations/
# cluster_ops.rs), the internal ones included: each variant is a struct of one of them.
CLUSTER_OPERATION_KEYS = frozenset(
    {
        "move_shard",
        "replicate_shard",
        "abort_transfer",
        "drop_replica",
        "create_sharding_key",
        "drop_sharding_key",
        "restart_transfer",
        "start_resharding",
        "finish_migrating_points",
        "commit_read_hash_ring",
        "commit_write_hash_ring",
        "finish_resharding",
        "abort_resharding",
        "replicate_points",
    }
)


async def cluster_status(request: web.Request) -> web.Response:
    return ok(request, {"status": "disabled"})


async def recover_current_peer(request: web.Request) -> web.Response:
    raise ApiError(STANDALONE_STATUS, STANDALONE_TEXT)


async def remove_peer(request: web.Request) -> web.Response:
    """Refused like Qdrant's standalone node: this peer while it holds shards (unless
    `force`), else because there is no consensus to remove a peer from."""
    peer_id = _parse_u64_path(request.match_info["peer_id"])
    catalog = catalog_of(request)
    is_forced = _parse_force(request.query.get("force", "false"))
    if not is_forced and peer_id == peer_id_of(catalog) and catalog.names():
        raise ApiError(400, f"Wrong input: Cannot remove peer {peer_id} as there are shards on it")
    raise ApiError(STANDALONE_STATUS, STANDALONE_TEXT)


async def collection_cluster_info(request: web.Request) -> web.Response:
    """CollectionClusterInfo: this peer, one local shard (id 0, Active), nothing remote."""
    name = collection_name_of(request)
    catalog = catalog_of(request)
    collection = catalog.get(name)
    local_shard = {
        "shard_id": SHARD_ID,
        "points_count": collection.stats().points_count,
        "state": SHARD_STATE,
    }
    result = {
        "peer_id": peer_id_of(catalog),
        "shard_count": 1,
        "local_shards": [local_shard],
        "remote_shards": [],
        "shard_transfers": [],
    }
    return ok(request, result)


async def update_collection_cluster(request: web.Request) -> web.Response:
    """POST .../cluster: a ClusterOperations body (an untagged enum: one of the operation
    keys), then 405, since every cluster operation needs consensus. The operation's own
    fields are not checked: Qdrant's answer to a well-formed one is the 405 anyway."""
    collection_name_of(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not CLUSTER_OPERATION_KEYS.intersection(body):
        raise untagged_mismatch("ClusterOperations")
    raise ApiError(STANDALONE_STATUS, STANDALONE_TEXT)


async def update_shard_key(request: web.Request) -> web.Response:
    """PUT .../shards (CreateShardingKey) and POST .../shards/delete (DropShardingKey): a
    body naming `shard_key`, then 405, as in update_collection_cluster."""
    collection_name_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_type(body, "a map")
    if "shard_key" not in body:
        raise missing_field("shard_key")
    raise ApiError(STANDALONE_STATUS, STANDALONE_TEXT)


async def list_shard_keys(request: web.Request) -> web.Response:
    """ShardKeysResponse: `shard_keys` only exists with custom sharding, which Keel refuses."""
    name = collection_name_of(request)
    catalog_of(request).get(name)  # 404 for a missing collection, as Qdrant
    return ok(request, {})


def peer_id_of(catalog: Catalog) -> int:
    """This node's peer id: the storage id's first 64 bits, so restarts keep it."""
    assert catalog.storage_id is not None, "peer id asked before the catalog opened"
    peer_id = uuid.UUID(catalog.storage_id).int >> 64
    assert 0 <= peer_id <= U64_MAX, peer_id
    return peer_id


def _parse_force(text: str) -> bool:
    """serde_urlencoded's bool (Rust's `bool::from_str`): exactly `true` or `false`."""
    if text not in ("true", "false"):
        message = "provided string was not `true` or `false`"
        raise ApiError(400, f"Deserialize error in query parameters: {message}")
    return text == "true"


def _parse_u64_path(text: str) -> int:
    """A u64 path parameter. Qdrant reads this one with actix's plain `web::Path`, whose
    error is a 404 (not the 400 of its validated paths), in Keel's error shape here."""
    if text.isascii() and text.isdigit() and int(text) <= U64_MAX:
        return int(text)
    raise ApiError(404, f'Path deserialize error: can not parse "{text}" to a u64')


ROUTES = [
    ("GET", "/cluster", cluster_status),
    ("POST", "/cluster/recover", recover_current_peer),
    ("DELETE", "/cluster/peer/{peer_id}", remove_peer),
    ("GET", "/collections/{collection_name}/cluster", collection_cluster_info),
    ("POST", "/collections/{collection_name}/cluster", update_collection_cluster),
    ("GET", "/collections/{collection_name}/shards", list_shard_keys),
    ("PUT", "/collections/{collection_name}/shards", update_shard_key),
    ("POST", "/collections/{collection_name}/shards/delete", update_shard_key),
]
