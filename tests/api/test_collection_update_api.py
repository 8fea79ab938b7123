"""PATCH /collections/{name}: each diff merged as Qdrant merges it, errors, durability."""

from __future__ import annotations

import json
from pathlib import Path

from engine.catalog import Catalog
from engine.limits import EngineSettings
from tests.api.conftest import Api

COLLECTION = "/collections/{collection_name}"


async def config_of(api: Api, name: str = "c") -> dict:
    return (await api.call("GET", COLLECTION, name=name)).result["config"]


async def test_metadata_is_set_on_create_and_merged_by_patch(api: Api):
    body = {"vectors": {"size": 2, "distance": "Dot"}, "metadata": {"a": 1, "b": {"x": 1}}}
    assert (await api.call("PUT", COLLECTION, json=body)).result is True
    assert (await config_of(api))["metadata"] == {"a": 1, "b": {"x": 1}}
    patch = {"metadata": {"a": None, "b": {"y": 2}, "c": [1]}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    # One level deep: "b" is replaced whole, "a" (null) removed.
    assert (await config_of(api))["metadata"] == {"b": {"y": 2}, "c": [1]}


async def test_patch_of_a_collection_without_metadata_takes_it_as_is(api: Api):
    """Qdrant keeps null values when there was no metadata before (no merge happens)."""
    await api.create_collection("c")
    assert "metadata" not in await config_of(api)
    await api.call("PATCH", COLLECTION, json={"metadata": {"k": "v", "gone": None}})
    assert (await config_of(api))["metadata"] == {"k": "v", "gone": None}
    await api.call("PATCH", COLLECTION, json={"metadata": {"k": None, "gone": None}})
    assert (await config_of(api))["metadata"] == {}


async def test_patch_merges_hnsw_optimizers_params_and_quantization(api: Api):
    await api.create_collection("c", vectors={"size": 2, "distance": "Cosine"})
    patch = {
        "hnsw_config": {"m": 8, "full_scan_threshold": 20, "on_disk": True},
        "optimizers_config": {"indexing_threshold": 0, "max_optimization_threads": 2},
        "params": {"on_disk_payload": False, "replication_factor": 2},
        "quantization_config": {"scalar": {"type": "int8", "always_ram": True}},
    }
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    config = await config_of(api)
    assert config["hnsw_config"] == {
        "m": 8,
        "ef_construct": 100,
        "full_scan_threshold": 20,
        "max_indexing_threads": 0,
        "on_disk": True,
    }
    assert config["optimizer_config"]["indexing_threshold"] == 0
    assert config["optimizer_config"]["max_optimization_threads"] == 2
    assert config["optimizer_config"]["deleted_threshold"] == 0.2
    assert config["params"]["on_disk_payload"] is False
    assert config["params"]["replication_factor"] == 2
    assert config["quantization_config"] == {"scalar": {"type": "int8", "always_ram": True}}
    await api.call("PATCH", COLLECTION, json={"quantization_config": "Disabled"})
    assert (await config_of(api))["quantization_config"] is None
    # A later patch keeps what an earlier one set.
    await api.call("PATCH", COLLECTION, json={"hnsw_config": {"ef_construct": 64}})
    assert (await config_of(api))["hnsw_config"]["m"] == 8


async def test_patch_of_named_vector_params(api: Api):
    body = {"vectors": {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 3, "distance": "Dot"}}}
    await api.call("PUT", COLLECTION, json=body)
    patch = {"vectors": {"a": {"hnsw_config": {"m": 4}, "on_disk": True}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    vectors = (await config_of(api))["params"]["vectors"]
    assert vectors["a"] == {"size": 2, "distance": "Dot", "hnsw_config": {"m": 4}, "on_disk": True}
    assert vectors["b"] == {"size": 3, "distance": "Dot"}
    response = await api.call("PATCH", COLLECTION, json={"vectors": {"zzz": {"on_disk": True}}})
    assert (response.status, response.error) == (
        400,
        "Wrong input: Not existing vector name error: zzz",
    )


async def test_patch_errors_are_qdrants(api: Api):
    response = await api.call("PATCH", COLLECTION, json={}, name="missing")
    assert (response.status, response.error) == (
        404,
        "Not found: Collection `missing` doesn't exist!",
    )
    await api.create_collection("c")
    response = await api.call("PATCH", COLLECTION, json={"hnsw_config": {"ef_construct": 1}})
    assert response.status == 422
    assert response.error == (
        "Validation error in JSON body: [hnsw_config.ef_construct: value 1 invalid, "
        "must be 4 or larger]"
    )
    response = await api.call("PATCH", COLLECTION, json={"hnsw_config": {"m": "x"}})
    assert response.status == 400
    assert response.error.startswith("Format error in JSON body: invalid type: string")
    response = await api.call("PATCH", COLLECTION, json={"params": {"replication_factor": 0}})
    assert (response.status, response.error) == (
        400,
        "Format error in JSON body: invalid value: integer `0`, expected a nonzero u32",
    )
    response = await api.call("PATCH", COLLECTION, json={"metadata": [1]})
    assert response.status == 400
    response = await api.call("PATCH", COLLECTION, json={"hnsw_config": {"m": 100_000}})
    assert response.status == 400  # Keel's bound on m (README), nothing written
    assert (await config_of(api))["hnsw_config"]["m"] == 16


async def test_a_failing_patch_changes_nothing(api: Api):
    """All or nothing: Qdrant would keep the optimizers change before the bad vector name."""
    await api.create_collection("c")
    patch = {"optimizers_config": {"indexing_threshold": 1}, "vectors": {"nope": {}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).status == 400
    assert (await config_of(api))["optimizer_config"]["indexing_threshold"] == 10000


async def test_patched_config_is_in_config_json_and_survives_reopen(
    api: Api, catalog: Catalog, tmp_path: Path
):
    await api.create_collection("c")
    await api.call("PATCH", COLLECTION, json={"metadata": {"k": 1}, "hnsw_config": {"m": 0}})
    stored = json.loads((tmp_path / "storage" / "collections" / "c" / "config.json").read_bytes())
    assert stored["echo"]["metadata"] == {"k": 1}
    assert stored["hnsw"]["m"] == 0
    await catalog.close()
    reopened = Catalog(tmp_path / "storage", EngineSettings())
    await reopened.open()
    try:
        config = reopened.get("c").config
        assert config.echo["metadata"] == {"k": 1}
        assert config.hnsw.m == 0
    finally:
        await reopened.close()


async def test_full_scan_threshold_takes_effect_at_once(api: Api, catalog: Catalog):
    await api.create_collection("c")
    await api.call("PATCH", COLLECTION, json={"hnsw_config": {"full_scan_threshold": 12345}})
    assert catalog.get("c")._reader.config.hnsw.full_scan_threshold == 12345


async def test_patch_validates_payload_memory_and_sparse_datatype(api: Api):
    """Payload storage has no `pinned` placement and sparse vectors no `turbo4` datatype:
    422 as Qdrant's validators answer, and nothing changed."""
    body = {"vectors": {"size": 2, "distance": "Dot"}, "sparse_vectors": {"a": {}, "b": {}}}
    assert (await api.call("PUT", COLLECTION, json=body)).result is True
    before = await config_of(api)
    patch = {
        "params": {"payload": {"memory": "pinned"}},
        "optimizers_config": {"indexing_threshold": 1},
    }
    response = await api.call("PATCH", COLLECTION, json=patch)
    assert (response.status, response.error) == (
        422,
        (
            "Validation error in JSON body: [params.payload.memory: `pinned` memory placement is "
            "not supported for payload storage]"
        ),
    )
    turbo4 = {"index": {"datatype": "turbo4"}}
    response = await api.call("PATCH", COLLECTION, json={"sparse_vectors": {"b": turbo4}})
    assert (response.status, response.error) == (
        422,
        (
            "Validation error in JSON body: [sparse_vectors.?.index.datatype: sparse vectors do "
            "not support the `turbo4` datatype]"
        ),
    )
    response = await api.call(
        "PATCH", COLLECTION, json={"sparse_vectors": {"a": turbo4, "b": turbo4}}
    )
    assert response.status == 422
    assert "[sparse_vectors.?[0].index.datatype: " in response.error
    assert "; sparse_vectors.?[1].index.datatype: " in response.error
    assert await config_of(api) == before


async def test_patch_quantization_clears_the_inline_storage_warning(api: Api):
    body = {"vectors": {"size": 2, "distance": "Dot", "hnsw_config": {"inline_storage": True}}}
    assert (await api.call("PUT", COLLECTION, json=body)).result is True
    info = (await api.call("GET", COLLECTION)).result
    assert [warning["message"][:40] for warning in info["warnings"]] == [
        "The `hnsw_config.inline_storage` option "
    ]
    patch = {"vectors": {"": {"quantization_config": {"scalar": {"type": "int8"}}}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    assert "warnings" not in (await api.call("GET", COLLECTION)).result
    patch = {"vectors": {"": {"quantization_config": "Disabled"}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    assert len((await api.call("GET", COLLECTION)).result["warnings"]) == 1
