"""Collection CRUD through HTTP: create (validation, 409), info, list, exists, delete."""

from __future__ import annotations

import pytest
from qdrant_client.http import models

from tests.api.conftest import Api

COLLECTION = "/collections/{collection_name}"
COLLECTIONS = "/collections"
EXISTS = "/collections/{collection_name}/exists"


async def test_collection_lifecycle(api: Api):
    assert (await api.call("GET", COLLECTIONS)).result == {"collections": []}
    assert (await api.call("GET", EXISTS, name="c")).result == {"exists": False}
    await api.create_collection("c")
    await api.create_collection("b")
    assert (await api.call("GET", COLLECTIONS)).result == {
        "collections": [{"name": "b"}, {"name": "c"}]
    }
    assert (await api.call("GET", EXISTS, name="c")).result == {"exists": True}
    assert (await api.call("DELETE", COLLECTION, name="c")).result is True
    assert (await api.call("DELETE", COLLECTION, name="c")).result is False
    assert (await api.call("GET", EXISTS, name="c")).result == {"exists": False}
    response = await api.call("GET", COLLECTION, name="c")
    assert (response.status, response.error) == (404, "Not found: Collection `c` doesn't exist!")


async def test_creating_an_existing_collection_is_409(api: Api):
    await api.create_collection("c")
    response = await api.call("PUT", COLLECTION, json={"vectors": {"size": 2, "distance": "Dot"}})
    assert (response.status, response.error) == (409, "Wrong input: Collection `c` already exists!")


async def test_creating_a_collection_named_like_an_alias_is_400(api: Api):
    await api.create_collection("c")
    aliases = {"actions": [{"create_alias": {"collection_name": "c", "alias_name": "a"}}]}
    assert (await api.call("POST", "/collections/aliases", json=aliases)).result is True
    body = {"vectors": {"size": 2, "distance": "Dot"}}
    response = await api.call("PUT", COLLECTION, name="a", json=body)
    assert response.status == 400
    assert response.error == (
        "Wrong input: Can't create collection with name a. Alias with the same name already exists"
    )


async def test_collection_info_matches_qdrants_defaults(api: Api):
    await api.create_collection("c", vectors={"size": 4, "distance": "Cosine"})
    await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}, query={"wait": "true"})
    info = (await api.call("GET", COLLECTION, name="c")).result
    assert info == {
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": info["indexed_vectors_count"],
        "points_count": 1,
        "segments_count": info["segments_count"],
        "config": {
            "params": {
                "vectors": {"size": 4, "distance": "Cosine"},
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": True,
            },
            "hnsw_config": {
                "m": 16,
                "ef_construct": 100,
                "full_scan_threshold": 10000,
                "max_indexing_threads": 0,
                "on_disk": False,
            },
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "max_segment_size": None,
                "memmap_threshold": None,
                "indexing_threshold": 10000,
                "flush_interval_sec": 5,
                "max_optimization_threads": None,
                "prevent_unoptimized": None,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1},
            "quantization_config": None,
        },
        "payload_schema": {},
        "update_queue": {"length": 0},  # the upsert waited: nothing is queued
    }
    parsed = models.CollectionInfo.model_validate(info)
    assert parsed.config.params.vectors.size == 4


async def test_accepted_options_are_echoed(api: Api):
    body = {
        "vectors": {
            "text": {
                "size": 8,
                "distance": "Euclid",
                "on_disk": True,
                "hnsw_config": {"m": 8},
                "datatype": "float16",
            },
            "image": {
                "size": 2,
                "distance": "Manhattan",
                "quantization_config": {"scalar": {"type": "int8", "quantile": 0.99}},
            },
        },
        "shard_number": 2,
        "replication_factor": 1,
        "on_disk_payload": False,
        "hnsw_config": {"m": 32, "ef_construct": 64, "payload_m": 8},
        "optimizers_config": {"indexing_threshold": 0, "max_optimization_threads": "auto"},
        "wal_config": {"wal_capacity_mb": 64},
        "quantization_config": {"binary": {"always_ram": True}},
        "sparse_vectors": {},
        "metadata": {"owner": "team-a"},
        "init_from": None,
    }
    await api.create_collection("c", **body)
    info = (await api.call("GET", COLLECTION, name="c")).result
    config = info["config"]
    assert config["params"]["vectors"] == {
        "image": {
            "size": 2,
            "distance": "Manhattan",
            "quantization_config": {"scalar": {"type": "int8", "quantile": 0.99}},
        },
        "text": {
            "size": 8,
            "distance": "Euclid",
            "hnsw_config": {"m": 8},
            "on_disk": True,
            "datatype": "float16",
        },
    }
    assert config["params"]["shard_number"] == 2
    assert config["params"]["on_disk_payload"] is False
    assert config["hnsw_config"]["m"] == 32
    assert config["hnsw_config"]["ef_construct"] == 64
    assert config["hnsw_config"]["payload_m"] == 8
    assert config["optimizer_config"]["indexing_threshold"] == 0
    assert config["optimizer_config"]["max_optimization_threads"] is None
    assert config["wal_config"]["wal_capacity_mb"] == 64
    assert config["quantization_config"] == {"binary": {"always_ram": True}}
    assert config["metadata"] == {"owner": "team-a"}
    models.CollectionInfo.model_validate(info)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (
            {"vectors": {"size": 65537, "distance": "Dot"}},
            422,
            (
                "Validation error in JSON body: [vectors.size: value 65537 invalid, must be from 1 to "
                "65536]"
            ),
        ),
        (
            {"vectors": {"size": 0, "distance": "Dot"}},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "VectorsConfig"
            ),
        ),
        (
            {"vectors": {"size": 4, "distance": "cosine"}},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "VectorsConfig"
            ),
        ),
        (
            {"vectors": {"a": {"size": 70000, "distance": "Dot"}}},
            422,
            (
                "Validation error in JSON body: [vectors.?.size: value 70000 invalid, must be from 1 "
                "to 65536]"
            ),
        ),
        (
            {"vectors": {"size": 4, "distance": "Dot"}, "hnsw_config": {"ef_construct": 2}},
            422,
            (
                "Validation error in JSON body: [hnsw_config.ef_construct: value 2 invalid, must be 4 "
                "or larger]"
            ),
        ),
        (
            {"vectors": {"size": 4, "distance": "Dot", "hnsw_config": {"full_scan_threshold": 1}}},
            422,
            (
                "Validation error in JSON body: [vectors.hnsw_config.full_scan_threshold: value 1 "
                "invalid, must be 10 or larger]"
            ),
        ),
        (
            {"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 0},
            422,
            "Validation error in JSON body: [shard_number: value 0 invalid, must be 1 or larger]",
        ),
        (
            {
                "vectors": {"size": 4, "distance": "Dot"},
                "optimizers_config": {"deleted_threshold": 2},
            },
            422,
            (
                "Validation error in JSON body: [optimizers_config.deleted_threshold: value 2.0 "
                "invalid, must be from 0.0 to 1.0]"
            ),
        ),
        (
            {"vectors": {"size": 4, "distance": "Dot"}, "hnsw_config": {"m": "x"}},
            400,
            'Format error in JSON body: invalid type: string "x", expected usize',
        ),
        (
            {"vectors": {"a/b": {"size": 4, "distance": "Dot"}}},
            400,
            'Wrong input: Invalid dense vector name `a/b`: vector name cannot contain "/" char',
        ),
        (
            {"vectors": {"size": 4, "distance": "Dot"}, "sparse_vectors": {"s": {"modifier": "x"}}},
            400,
            "Format error in JSON body: unknown variant `x`, expected `none` or `idf`",
        ),
        (
            {
                "vectors": {
                    "size": 4,
                    "distance": "Dot",
                    "multivector_config": {"comparator": "sum_sim"},
                }
            },
            400,
            "Format error in JSON body: data did not match any variant of untagged enum VectorsConfig",
        ),
        (
            [],
            400,
            "Format error in JSON body: invalid type: sequence, expected struct CreateCollection",
        ),
        (
            {
                "vectors": {"a": {"size": 4, "distance": "Dot"}},
                "sparse_vectors": {"a": {}, "c/": {}, "b/": {}},
            },
            400,
            'Wrong input: Invalid sparse vector name `b/`: vector name cannot contain "/" char',
        ),
        (
            {"vectors": {"a": {"size": 4, "distance": "Dot"}}, "sparse_vectors": {"": {}}},
            400,
            "Wrong input: Sparse vector name cannot be empty",
        ),
        (
            {"vectors": {"size": 4, "distance": "Dot"}, "payload": {"memory": "pinned"}},
            422,
            (
                "Validation error in JSON body: [payload.memory: `pinned` memory placement is "
                "not supported for payload storage]"
            ),
        ),
        (
            {
                "sparse_vectors": {
                    "a": {"index": {"datatype": "float16"}},
                    "b": {"index": {"datatype": "turbo4"}},
                }
            },
            422,
            (
                "Validation error in JSON body: [sparse_vectors[1].index.datatype: sparse "
                "vectors do not support the `turbo4` datatype]"
            ),
        ),
    ],
)
async def test_invalid_collection_configs_create_nothing(api: Api, body, status, message):
    response = await api.call("PUT", COLLECTION, json=body)
    assert (response.status, response.error) == (status, message)
    assert (await api.call("GET", EXISTS, name="c")).result == {"exists": False}


@pytest.mark.parametrize(
    "name, reason",
    [
        ("a:b", 'collection name cannot contain ":" char'),
        ("a%2Fb", 'collection name cannot contain "/" char'),
        ("a%5Cb", 'collection name cannot contain "\\" char'),
        ("a%00b", 'collection name cannot contain "\\u0000" char'),
    ],
)
async def test_bad_names_are_rejected_before_the_engine(api: Api, name, reason):
    body = {"vectors": {"size": 4, "distance": "Dot"}}
    response = await api.call("PUT", COLLECTION, json=body, name=name)
    assert response.status == 422
    expected = f"Validation error in path parameters: [collection_name: {reason}]"
    assert response.error == expected.replace("\\u0000", "\0")
    assert (await api.call("GET", COLLECTIONS)).result == {"collections": []}


async def test_create_collection_timeout_parameter(api: Api):
    body = {"vectors": {"size": 4, "distance": "Dot"}}
    response = await api.call("PUT", COLLECTION, json=body, query={"timeout": "0"})
    assert (response.status, response.error) == (
        422,
        "Validation error in query parameters: [timeout: value 0 invalid, must be 1 or larger]",
    )
    response = await api.call("PUT", COLLECTION, json=body, query={"timeout": "30"})
    assert response.result is True


async def test_trailing_slashes_are_ignored_as_by_qdrant(api: Api):
    response = await api.client.get("/collections/")
    assert response.status == 200
    assert (await response.json())["result"] == {"collections": []}


INLINE = {"hnsw_config": {"inline_storage": True}}
SCALAR = {"scalar": {"type": "int8"}}
MAX_SIM = {"comparator": "max_sim"}
NO_QUANTIZATION = (
    "The `hnsw_config.inline_storage` option for vector '{}' requires quantization to be "
    "enabled. This option will be ignored."
)
MULTIVECTOR = (
    "The `hnsw_config.inline_storage` option for vector '{}' is not compatible with "
    "multivectors. This option will be ignored."
)


@pytest.mark.parametrize(
    "body, messages",
    [
        ({"vectors": {"size": 4, "distance": "Dot"}}, []),
        ({"vectors": {"size": 4, "distance": "Dot", **INLINE}}, [NO_QUANTIZATION.format("")]),
        ({"vectors": {"size": 4, "distance": "Dot", **INLINE, "quantization_config": SCALAR}}, []),
        ({"vectors": {"size": 4, "distance": "Dot"}, **INLINE, "quantization_config": SCALAR}, []),
        (
            {
                "vectors": {
                    "v": {"size": 4, "distance": "Dot", "multivector_config": MAX_SIM},
                    "u": {"size": 4, "distance": "Dot", "quantization_config": SCALAR},
                    "t": {"size": 4, "distance": "Dot", "hnsw_config": {"inline_storage": False}},
                },
                "quantization_config": None,
                **INLINE,
            },
            [MULTIVECTOR.format("v")],  # u has quantization, t turns inline_storage off
        ),
        (
            {
                "vectors": {
                    "b": {"size": 4, "distance": "Dot", **INLINE},
                    "a": {"size": 4, "distance": "Dot", **INLINE},
                }
            },
            [NO_QUANTIZATION.format("a"), NO_QUANTIZATION.format("b")],
        ),
    ],
)
async def test_collection_info_warns_of_ignored_inline_storage(api: Api, body, messages):
    """Qdrant's `get_warnings`: `inline_storage` (the collection's hnsw_config with the
    vector's over it) without any quantization, or on a multivector, is reported right after
    `optimizer_status`, one message per vector in name order; no `warnings` when none."""
    assert (await api.call("PUT", COLLECTION, json=body)).result is True
    info = (await api.call("GET", COLLECTION, name="c")).result
    if not messages:
        assert "warnings" not in info
        return
    assert list(info)[:3] == ["status", "optimizer_status", "warnings"]
    assert info["warnings"] == [{"message": message} for message in messages]


async def test_indexing_threshold_zero_leaves_vectors_unindexed(api: Api):
    """Qdrant's test_disable_indexing: indexing_threshold 0 builds no graph (0 indexed);
    a small non-zero threshold indexes the collection."""
    for name, threshold_kb in (("off", 0), ("on", 10)):
        body = {
            "vectors": {"size": 4, "distance": "Dot"},
            "optimizers_config": {"indexing_threshold": threshold_kb},
        }
        assert (await api.call("PUT", COLLECTION, name=name, json=body)).result is True
        points = [{"id": i, "vector": [i, 1, 2, 3]} for i in range(20)]
        await api.upsert({"points": points}, name=name, query={"wait": "true"})
    off = (await api.call("GET", COLLECTION, name="off")).result
    assert (off["points_count"], off["indexed_vectors_count"]) == (20, 0)
    on = (await api.call("GET", COLLECTION, name="on")).result
    assert (on["points_count"], on["indexed_vectors_count"]) == (20, 20)
    search = {"query": [1, 0, 0, 0], "limit": 3}
    response = await api.call(
        "POST", "/collections/{collection_name}/points/query", name="off", json=search
    )
    assert [point["id"] for point in response.result["points"]] == [19, 18, 17]
