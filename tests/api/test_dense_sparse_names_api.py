"""A collection whose dense and sparse vectors share a name is refused as Qdrant refuses it
(CreateCollectionOperation::new, lib/storage/src/content_manager/collection_meta_ops.rs)."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

COLLECTION = "/collections/{collection_name}"
DENSE = {"size": 2, "distance": "Euclid"}


@pytest.mark.parametrize(
    "vectors, sparse_vectors, duplicate",
    [
        ({"image": DENSE}, {"image": {}}, "image"),
        # Of several, the first in dense name order (Qdrant's BTreeMap), whatever the sparse order.
        ({"b": DENSE, "z": DENSE, "a": DENSE}, {"z": {}, "b": {}, "c": {}}, "b"),
    ],
)
async def test_a_name_both_dense_and_sparse_is_400_naming_it(
    api: Api, vectors: dict, sparse_vectors: dict, duplicate: str
) -> None:
    body = {"vectors": vectors, "sparse_vectors": sparse_vectors}
    response = await api.call("PUT", COLLECTION, json=body)
    message = "Dense and sparse vector names must be unique - duplicate found with"
    assert (response.status, response.error) == (400, f"Wrong input: {message} '{duplicate}'")
    assert (await api.call("GET", COLLECTION)).status == 404
