"""A vector's `datatype` changes what is stored as Qdrant's storage changes it
(lib/segment/src/data_types/primitive.rs): uint8 values truncated toward zero into [0, 255]
(`x as u8`), float16 rounded to the nearest half (`f16::from_f32`); a query is converted the
same way before it is scored (query_scorer/metric_query_scorer.rs), and a uint8 Cosine
vector is kept as given and scored by true cosine. The uint8 multivector case is Qdrant's own
tests/openapi/test_multi_vector_uint8.py; tests/unit/test_datatype_congruence.py compares
every distance and datatype with qdrant-edge-py."""

from __future__ import annotations

import numpy as np
import pytest

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


QUERY = "/collections/{collection_name}/points/query"


async def scores_by_id(api: Api, body: dict) -> dict[int, np.float32]:
    """Scores as float32: the answer writes each one's shortest float32 form."""
    points = (await api.call("POST", QUERY, json=body)).result["points"]
    return {point["id"]: np.float32(point["score"]) for point in points}


async def test_a_uint8_cosine_vector_is_kept_as_given_and_scored_by_true_cosine(api: Api):
    """Qdrant's `metric_uint/simple_cosine.rs`: no unit length for uint8, stored or queried;
    both cut to bytes, then dot / sqrt(|a|^2 |b|^2), 0 for a zero vector."""
    await api.create_collection(vectors={"size": 4, "distance": "Cosine", "datatype": "uint8"})
    points = [{"id": 1, "vector": [3.7, 10.2, 0.5, 255.9]}, {"id": 2, "vector": [-1.0] * 4}]
    await api.upsert({"points": points})
    assert (await vectors_by_id(api)) == {1: [3.0, 10.0, 0.0, 255.0], 2: [0.0] * 4}
    for params in ({"exact": False}, {"exact": True}):
        body = {"query": [1.9, 2.5, 300.0, -4.0], "params": params}
        scores = await scores_by_id(api, body)
        # As bytes: the query is [1, 2, 255, 0]; 23 = 1 * 3 + 2 * 10. Keel divides unit
        # rows, not the sums, so the last bit of the float32 may differ from Qdrant's.
        assert scores[1] == pytest.approx(23 / np.sqrt(65030 * 65134), rel=1e-6)
        assert scores[2] == 0.0


async def test_a_float16_query_is_rounded_to_halves_before_scoring(api: Api):
    """Qdrant's MetricQueryScorer converts the query to the storage type: 0.1 becomes the
    half 0.0999755859375, and a Cosine query is made unit length first."""
    vectors = {
        "dot": {"size": 2, "distance": "Dot", "datatype": "float16"},
        "cos": {"size": 2, "distance": "Cosine", "datatype": "float16"},
    }
    await api.create_collection(vectors=vectors)
    await api.upsert({"points": [{"id": 1, "vector": {"dot": [1.0, 0.0], "cos": [1.0, 0.0]}}]})
    dot = await scores_by_id(api, {"query": [0.1, 0.0], "using": "dot"})
    assert dot == {1: np.float32(0.0999755859375)}
    cos = await scores_by_id(api, {"query": [1.0, 2.0], "using": "cos"})
    unit_half = np.float16(1.0 / np.sqrt(np.float32(5.0)))  # 0.44726..., as a half
    assert cos == {1: np.float32(unit_half)}


async def test_the_distance_matrix_scores_uint8_cosine_by_true_cosine(api: Api):
    """The matrix searches with each sampled point's vector as a query (Qdrant's
    distance_matrix.rs), so the pair scores by the cosine of the bytes, both ways."""
    await api.create_collection(vectors={"size": 4, "distance": "Cosine", "datatype": "uint8"})
    points = [
        {"id": 1, "vector": [3.7, 10.2, 0.5, 255.9]},
        {"id": 2, "vector": [1.9, 2.5, 300, -4]},
    ]
    await api.upsert({"points": points})
    pairs_path = "/collections/{collection_name}/points/search/matrix/pairs"
    pairs = (await api.call("POST", pairs_path, json={"sample": 2, "limit": 1})).result["pairs"]
    assert sorted((pair["a"], pair["b"]) for pair in pairs) == [(1, 2), (2, 1)]
    for pair in pairs:  # the bytes: [3, 10, 0, 255] and [1, 2, 255, 0]
        assert pair["score"] == pytest.approx(23 / np.sqrt(65030 * 65134), rel=1e-6)
