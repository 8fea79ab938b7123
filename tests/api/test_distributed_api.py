"""Cluster and shard key routes, answered as a standalone Qdrant 1.19 answers them.

Every answer is checked against Qdrant's spec (conftest.Api).
"""

from __future__ import annotations

from engine.catalog import Catalog
from server.api.distributed import peer_id_of
from tests.api.conftest import Api

CLUSTER = "/collections/{collection_name}/cluster"
SHARDS = "/collections/{collection_name}/shards"
STANDALONE_TEXT = "Qdrant is running in standalone mode"


async def test_cluster_mode_is_disabled(api: Api) -> None:
    assert (await api.call("GET", "/cluster")).result == {"status": "disabled"}


async def test_a_collection_is_one_active_local_shard(api: Api, catalog: Catalog) -> None:
    await api.create_collection()
    await api.upsert({"points": [{"id": i, "vector": [1.0, 0.0, 0.0, 0.0]} for i in range(3)]})
    result = (await api.call("GET", CLUSTER)).result
    assert result == {
        "peer_id": peer_id_of(catalog),
        "shard_count": 1,
        "local_shards": [{"shard_id": 0, "points_count": 3, "state": "Active"}],
        "remote_shards": [],
        "shard_transfers": [],
    }
    assert (await api.call("GET", CLUSTER, name="missing")).status == 404


async def test_the_peer_id_is_derived_from_the_storage_id(catalog: Catalog) -> None:
    peer_id = peer_id_of(catalog)
    assert 0 <= peer_id < 2**64
    assert peer_id == int(catalog.storage_id.replace("-", "")[:16], 16)


async def test_cluster_operations_need_consensus(api: Api) -> None:
    """405 with Qdrant's standalone text for a well-formed operation, even on a collection
    that does not exist (Qdrant checks for consensus before looking it up); a body that is
    no operation is a format error first."""
    move = {"move_shard": {"shard_id": 0, "from_peer_id": 1, "to_peer_id": 2}}
    for name in ("c", "missing"):
        response = await api.call("POST", CLUSTER, json=move, name=name)
        assert (response.status, response.error) == (405, STANDALONE_TEXT)
    response = await api.call("POST", CLUSTER, json={"move": {}})
    assert response.status == 400
    assert "did not match any variant of untagged enum ClusterOperations" in response.error


async def test_shard_keys_need_consensus_and_there_are_none(api: Api) -> None:
    await api.create_collection()
    assert (await api.call("GET", SHARDS)).result == {}
    create = await api.call("PUT", SHARDS, json={"shard_key": "tenant"})
    assert (create.status, create.error) == (405, STANDALONE_TEXT)
    drop = await api.call("POST", SHARDS + "/delete", json={"shard_key": "tenant"})
    assert (drop.status, drop.error) == (405, STANDALONE_TEXT)
    assert (await api.call("PUT", SHARDS, json={})).error.endswith("missing field `shard_key`")


async def test_peer_removal_and_recovery_need_consensus(api: Api, catalog: Catalog) -> None:
    recover = await api.call("POST", "/cluster/recover")
    assert (recover.status, recover.error) == (405, STANDALONE_TEXT)
    other = await api.call("DELETE", f"/cluster/peer/{peer_id_of(catalog) ^ 1}")
    assert (other.status, other.error) == (405, STANDALONE_TEXT)
    await api.create_collection()
    this_peer = await api.call("DELETE", f"/cluster/peer/{peer_id_of(catalog)}")
    assert this_peer.status == 400
    assert this_peer.error == (
        f"Wrong input: Cannot remove peer {peer_id_of(catalog)} as there are shards on it"
    )
    forced = await api.call("DELETE", f"/cluster/peer/{peer_id_of(catalog)}", query="force=true")
    assert forced.status == 405
    not_bool = await api.call("DELETE", "/cluster/peer/1", query="force=yes")
    assert (not_bool.status, not_bool.error) == (
        400,
        "Deserialize error in query parameters: provided string was not `true` or `false`",
    )
    bad = await api.call("DELETE", "/cluster/peer/x")
    assert (bad.status, bad.error) == (
        404,
        'Path deserialize error: can not parse "x" to a u64',
    )
