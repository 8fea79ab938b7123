"""A vector's `datatype` changes what is stored as Qdrant's storage changes it
(lib/segment/src/data_types/primitive.rs): uint8 values truncated toward zero into [0, 255]
(`x as u8`), float16 rounded to the nearest half (`f16::from_f32`). The uint8 multivector
case is Qdrant's own tests/openapi/test_multi_vector_uint8.py."""

from __future__ import annotations

import numpy as np

from tests.api.conftest import Api

SCROLL = "/collections/{collection_name}/points/scroll"


async def vectors_by_id(api: Api) -> dict[int, dict]:
    body = {"limit": 10, "with_vector": True}
    points = (await api.call("POST", SCROLL, json=body)).result["points"]
    return {point["id"]: point["vector"] for point in points}


async def test_a_uint8_multivector_is_stored_truncated(api: Api):
    vectors = {
        "my-multivec": {
            "size": 4,
            "distance": "Dot",
            "datatype": "uint8",
            "multivector_config": {"comparator": "max_sim"},
        }
    }
    await api.create_collection(vectors=vectors)
    matrix = [[1.05, 1.61, 1.76, 1.74], [2.05, 2.61, 2.76, 2.74], [3.05, 3.61, 3.76, 3.74]]
    await api.upsert({"points": [{"id": 1, "vector": {"my-multivec": matrix}}]})
    assert (await vectors_by_id(api))[1] == {"my-multivec": [[1] * 4, [2] * 4, [3] * 4]}


async def test_uint8_and_float16_dense_vectors_are_stored_rounded(api: Api):
    vectors = {
        "bytes": {"size": 4, "distance": "Euclid", "datatype": "uint8"},
        "halves": {"size": 3, "distance": "Dot", "datatype": "float16"},
        "floats": {"size": 3, "distance": "Dot", "datatype": "float32"},
    }
    await api.create_collection(vectors=vectors)
    third = [0.1, 1 / 3, 12345.678]
    points = [
        {"id": 1, "vector": {"bytes": [-3.5, 0.99, 254.9, 300], "halves": third, "floats": third}}
    ]
    await api.upsert({"points": points})
    stored = (await vectors_by_id(api))[1]
    assert stored["bytes"] == [0.0, 0.0, 254.0, 255.0]
    # Compared as float32: the answer writes each value's shortest float32 form.
    halves = np.asarray(stored["halves"], np.float32)
    assert halves.tolist() == np.asarray(third, np.float16).astype(np.float32).tolist()
    assert halves.tolist() != np.asarray(third, np.float32).tolist()
    floats = np.asarray(stored["floats"], np.float32)
    assert floats.tolist() == np.asarray(third, np.float32).tolist()
    update = {"points": [{"id": 1, "vector": {"bytes": [7.7, 7.7, 7.7, 7.7]}}]}
    assert (
        await api.call("PUT", "/collections/{collection_name}/points/vectors", json=update)
    ).result
    assert (await vectors_by_id(api))[1]["bytes"] == [7.0, 7.0, 7.0, 7.0]
    query = {"query": [7, 7, 7, 7], "using": "bytes"}
    hits = await api.call("POST", "/collections/{collection_name}/points/query", json=query)
    assert [(p["id"], p["score"]) for p in hits.result["points"]] == [(1, 0.0)]
