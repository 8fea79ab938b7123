"""PATCH /collections/{name} with `sparse_vectors` (was 501): Qdrant's
`update_sparse_vectors_from_other` (lib/collection/src/config.rs) — a `modifier` given replaces
the stored one, `index` fields given replace the stored ones, an unknown name is 400."""

from __future__ import annotations

from tests.api.conftest import Api

COLLECTION = "/collections/{collection_name}"
QUERY = "/collections/{collection_name}/points/query"
POINTS = [
    {"id": 1, "vector": {"s": {"indices": [1, 2], "values": [1.0, 1.0]}}},
    {"id": 2, "vector": {"s": {"indices": [1], "values": [2.0]}}},
    {"id": 3, "vector": {"s": {"indices": [1, 3], "values": [0.5, 4.0]}}},
]


async def scores(api: Api, name: str) -> dict[int, float]:
    query = {"query": {"indices": [1, 2], "values": [1.0, 1.0]}, "using": "s", "limit": 10}
    points = (await api.call("POST", QUERY, json=query, name=name)).result["points"]
    return {point["id"]: round(point["score"], 5) for point in points}


async def test_a_patched_modifier_scores_as_a_collection_made_with_it(api: Api):
    sparse = {"s": {"index": {"datatype": "float16"}}}
    await api.create_collection("c", vectors={}, sparse_vectors=sparse)
    await api.create_collection("idf", vectors={}, sparse_vectors={"s": {"modifier": "idf"}})
    for name in ("c", "idf"):
        assert (await api.upsert({"points": POINTS}, name=name)).result["status"] == "completed"
    plain = await scores(api, "c")
    assert plain == {1: 2.0, 2: 2.0, 3: 0.5}
    patch = {"sparse_vectors": {"s": {"modifier": "idf", "index": {"full_scan_threshold": 99}}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    assert await scores(api, "c") == await scores(api, "idf") != plain
    info = (await api.call("GET", COLLECTION)).result
    assert info["config"]["params"]["sparse_vectors"] == {
        "s": {"index": {"datatype": "float16", "full_scan_threshold": 99}, "modifier": "idf"}
    }
    patch = {"sparse_vectors": {"s": {"modifier": "none"}}}
    assert (await api.call("PATCH", COLLECTION, json=patch)).result is True
    assert await scores(api, "c") == plain


async def test_bad_sparse_patches_change_nothing(api: Api):
    await api.create_collection("c", vectors={}, sparse_vectors={"s": {}})
    cases = [
        (
            {"sparse_vectors": {"x": {"modifier": "idf"}}},
            400,
            "Wrong input: Not existing vector name error: x",
        ),
        (
            {"sparse_vectors": {"s": {"modifier": "bm25"}}},
            400,
            "Format error in JSON body: unknown variant `bm25`, expected `none` or `idf`",
        ),
    ]
    for body, status, error in cases:
        response = await api.call("PATCH", COLLECTION, json=body)
        assert (response.status, response.error) == (status, error)
    info = (await api.call("GET", COLLECTION)).result
    assert info["config"]["params"]["sparse_vectors"] == {"s": {}}
