"""engine/query/universal.py `execute_many`: a batch answers exactly what each query alone answers,
whether its plain nearest queries are searched together or not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.filters.conditions import FieldCondition, Filter, MatchValue, PayloadPath
from engine.ops import CollectionConfig, Distance, NamedVectors, PayloadSelector, VectorConfig
from engine.query import plan as query_plan
from engine.query import universal as query
from engine.vectors.hnsw import VectorIndex
from tests.unit.engine_helpers import open_catalog, upsert


async def test_a_batch_answers_what_each_query_answers(tmp_path, monkeypatch) -> None:
    catalog = await open_catalog(tmp_path / "s")
    config = CollectionConfig(
        vectors={"a": VectorConfig(8, Distance.COSINE), "b": VectorConfig(8, Distance.EUCLID)}
    )
    await catalog.create("c", config)
    collection = catalog.get("c")
    rng = np.random.default_rng(9)
    ids = list(range(400))
    op = upsert(ids, rng.normal(size=(400, 8)), [{"g": i % 3} for i in ids], name="a")
    rows = np.arange(400, dtype=np.int32)
    both = {**op.vectors, "b": NamedVectors(rows, rng.normal(size=(400, 8)).astype(np.float32))}
    await collection.update(replace(op, vectors=both), wait=True, timeout_s=None)
    red = Filter(must=(FieldCondition(PayloadPath.parse("g"), match=MatchValue(1)),))

    def nearest(using: str, **node: object) -> query_plan.QueryRequest:
        vector = rng.normal(size=8).tolist()
        root = query_plan.QueryNode(
            query_plan.Nearest(vector), using, node.pop("limit", 10), **node
        )
        return query_plan.QueryRequest(root)

    requests = [nearest("a") for _ in range(6)] + [nearest("b") for _ in range(4)]
    requests += [nearest("a", limit=3, hnsw_ef=16), nearest("a", limit=3, hnsw_ef=16)]
    requests += [nearest("a", filter=red), nearest("b", is_exact=True), nearest("a", limit=1)]
    requests += [query_plan.QueryRequest(query_plan.QueryNode(query_plan.Nearest(5), "a", 4))]
    requests += [
        query_plan.QueryRequest(requests[0].root, offset=2, with_payload=PayloadSelector(True))
    ]
    reader = collection._reader
    jobs = [(request, {}) for request in requests]
    calls = []
    original = VectorIndex.search_many
    monkeypatch.setattr(
        VectorIndex,
        "search_many",
        lambda self, *args: calls.append(len(args[0])) or original(self, *args),
    )
    batched = query.execute_many(reader, jobs, "c")
    assert sorted(calls) == [2, 4, 6]  # a x6, b x4, a with ef 16 x2; the others alone
    alone = [query.execute(reader, request, {}, "c") for request in requests]
    assert batched == alone
    assert all(result.points for result in batched)
    await catalog.close()


async def test_searches_rescored_together_score_bit_for_bit_as_alone(tmp_path, monkeypatch) -> None:
    """32 dims, Cosine and Dot: a coalesced group's hits are rescored in one stacked matmul
    (Reader._rescored_together), which must give each search exactly its own scores."""
    catalog = await open_catalog(tmp_path / "s")
    config = CollectionConfig(
        vectors={"a": VectorConfig(32, Distance.COSINE), "d": VectorConfig(32, Distance.DOT)}
    )
    await catalog.create("c", config)
    collection = catalog.get("c")
    rng = np.random.default_rng(11)
    ids = list(range(500))
    op = upsert(ids, rng.normal(size=(500, 32)), name="a")
    rows = np.arange(500, dtype=np.int32)
    both = {**op.vectors, "d": NamedVectors(rows, rng.normal(size=(500, 32)).astype(np.float32))}
    await collection.update(replace(op, vectors=both), wait=True, timeout_s=None)
    requests = [
        query_plan.QueryRequest(
            query_plan.QueryNode(query_plan.Nearest(rng.normal(size=32).tolist()), using, 10)
        )
        for using in ["a"] * 12 + ["d"] * 12
    ]
    reader = collection._reader
    together = []
    original = type(reader)._rescored_together
    monkeypatch.setattr(
        type(reader),
        "_rescored_together",
        lambda self, *args: together.append(original(self, *args)) or together[-1],
    )
    batched = query.execute_many(reader, [(request, {}) for request in requests], "c")
    assert len(together) == 2 and all(result is not None for result in together)
    alone = [query.execute(reader, request, {}, "c") for request in requests]
    assert batched == alone
    assert all(len(result.points) == 10 for result in batched)
    await catalog.close()
