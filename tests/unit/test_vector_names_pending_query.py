"""A universal query naming a vector that a `PUT .../vectors/{name}` with wait=false created,
acknowledged but not applied yet.

In Qdrant the name exists once the operation is accepted, and no point has a value of it
(a write giving one is logged after the op), so a query on it finds nothing: an empty
answer, not 400 "Not existing vector name". The legacy search already answers so
(tests/unit/test_vector_names.py). Method: the applier's one thread is held busy, so the
op is durable and acknowledged and cannot be applied while the queries run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.errors import BadRequest
from engine.ops import (
    CollectionConfig,
    CreateVectorName,
    DeleteVectorName,
    Distance,
    SparseVectorConfig,
    VectorConfig,
)
from server.wire.query import parse_query_request
from tests.unit.engine_helpers import open_catalog, upsert

DOT2 = VectorConfig(2, Distance.DOT)
NAMED = CollectionConfig(vectors={"a": DOT2})


@contextmanager
def applier_held(collection: Any) -> Iterator[None]:
    release = threading.Event()
    held = collection._applier._executor.submit(release.wait)  # the applier's one thread
    try:
        yield
    finally:
        release.set()
        held.result()


async def query_ids(collection: Any, body: dict[str, Any]) -> list[Any]:
    result = await collection.query(parse_query_request(body), {})
    return [point.id for point in result.points]


@pytest.mark.parametrize(
    ("created", "query"),
    [
        (CreateVectorName("x", dense=DOT2), [1.0, 2.0]),
        (
            CreateVectorName("x", dense=VectorConfig(2, Distance.COSINE, is_multivector=True)),
            [[1.0, 2.0], [0.5, 0.5]],
        ),
        (CreateVectorName("x", sparse=SparseVectorConfig()), {"indices": [1], "values": [0.5]}),
    ],
    ids=["dense", "multivector", "sparse"],
)
async def test_a_query_on_a_name_acknowledged_but_not_applied_finds_nothing(
    tmp_path: Path, created: CreateVectorName, query: Any
) -> None:
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        await collection.update(upsert([1], [[1, 0]], name="a"), wait=True, timeout_s=None)
        with applier_held(collection):
            result = await collection.update_vector_names(created, wait=False, timeout_s=None)
            assert result.status.value == "acknowledged"
            assert "x" in collection.config.vectors or "x" in collection.config.sparse_vectors
            assert await query_ids(collection, {"query": query, "using": "x"}) == []
            # A prefetch on it adds no candidate; the other prefetch still answers.
            fused = {
                "prefetch": [{"query": query, "using": "x"}, {"query": [1, 1], "using": "a"}],
                "query": {"fusion": "rrf"},
            }
            assert await query_ids(collection, fused) == [1]
        assert await query_ids(collection, {"query": query, "using": "x"}) == []  # applied
    finally:
        await catalog.close()


async def test_a_query_on_a_pending_name_still_checks_the_dimension(tmp_path: Path) -> None:
    catalog = await open_catalog(tmp_path)
    try:
        await catalog.create("c", NAMED)
        collection = catalog.get("c")
        with applier_held(collection):
            op = CreateVectorName("x", dense=DOT2)
            await collection.update_vector_names(op, wait=False, timeout_s=None)
            with pytest.raises(BadRequest, match="expected dim: 2, got 3"):
                await query_ids(collection, {"query": [1.0, 2.0, 3.0], "using": "x"})
            with pytest.raises(BadRequest, match="Not existing vector name"):
                await query_ids(collection, {"query": [1.0, 2.0], "using": "y"})
    finally:
        await catalog.close()


async def test_a_query_on_a_name_deleted_but_not_applied_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """The reverse: Qdrant drops the name from the collection's config when it accepts the
    delete, so queries naming it answer "Not existing vector name" before the shards have
    removed the data; the legacy search answers so too (tests/unit/test_vector_names.py)."""
    catalog = await open_catalog(tmp_path)
    try:
        config = CollectionConfig(vectors={"a": DOT2, "b": DOT2})
        await catalog.create("c", config)
        collection = catalog.get("c")
        both = upsert([1], [[1.0, 0.0]], name="a")
        both.vectors["b"] = upsert([1], [[0.0, 1.0]], name="b").vectors["b"]
        await collection.update(both, wait=True, timeout_s=None)
        assert await query_ids(collection, {"query": [1, 1], "using": "b"}) == [1]
        with applier_held(collection):
            result = await collection.update_vector_names(
                DeleteVectorName("b"), wait=False, timeout_s=None
            )
            assert result.status.value == "acknowledged"
            for body in (
                {"query": [1, 1], "using": "b"},  # a plain search
                {"query": [1, 1], "using": "b", "filter": {"must": [{"has_id": [1]}]}},
                {"prefetch": [{"query": [1, 1], "using": "b"}], "query": {"fusion": "rrf"}},
            ):
                with pytest.raises(BadRequest, match="Not existing vector name error: b"):
                    await query_ids(collection, body)
            assert await query_ids(collection, {"query": [1, 1], "using": "a"}) == [1]
        with pytest.raises(BadRequest, match="Not existing vector name error: b"):
            await query_ids(collection, {"query": [1, 1], "using": "b"})  # applied
    finally:
        await catalog.close()
