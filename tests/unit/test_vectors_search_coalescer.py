"""Concurrent searches coalesced into read-pool jobs (engine/vectors/search_coalescer.py): each
search gets exactly what it would alone, its own error, and nothing waits for ever."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.errors import BadRequest
from engine.filters.conditions import FieldCondition, Filter, MatchValue, PayloadPath
from engine.ops import PayloadSelector, SearchRequest
from engine.vectors.search_coalescer import SearchCoalescer
from tests.unit.engine_helpers import open_catalog, single_vector_config, upsert


def request(vector_seed: int, **fields: object) -> SearchRequest:
    vector = np.random.default_rng(vector_seed).normal(size=4).astype(np.float32)
    return SearchRequest("", vector, **fields)


async def test_concurrent_searches_answer_what_each_answers_alone(tmp_path) -> None:
    catalog = await open_catalog(tmp_path)
    await catalog.create("c", single_vector_config(dim=4))
    collection = catalog.get("c")
    ids = list(range(500))
    matrix = np.random.default_rng(1).normal(size=(500, 4))
    payloads = [{"g": i % 4} for i in ids]
    await collection.update(upsert(ids, matrix, payloads), wait=True, timeout_s=None)
    reader = collection._reader
    batch_sizes: list[int] = []
    search_many = reader.search_many

    def counted(requests: list[SearchRequest]) -> list:
        batch_sizes.append(len(requests))
        return search_many(requests)

    collection._search_coalescer._search_many = counted
    g1 = Filter(must=(FieldCondition(PayloadPath.parse("g"), match=MatchValue(1)),))
    requests = [request(seed) for seed in range(12)]
    requests += [request(seed, limit=3, hnsw_ef=16) for seed in range(12, 16)]
    requests += [request(seed, filter=g1, with_payload=PayloadSelector(True)) for seed in (16, 17)]
    requests += [request(18, is_exact=True), request(19, offset=5, score_threshold=0.1)]
    answers = await asyncio.gather(*(collection.search(r) for r in requests))
    assert answers == [reader.search(r) for r in requests]
    assert max(batch_sizes) > 1, batch_sizes  # some searches did go together
    assert sum(batch_sizes) == len(requests)
    await catalog.close()


async def test_an_error_reaches_only_its_own_search() -> None:
    def search_many(requests: list[SearchRequest]) -> list:
        return [BadRequest("bad") if r.limit == 13 else [r.limit] for r in requests]

    with ThreadPoolExecutor(1) as executor:
        coalescer = SearchCoalescer(search_many, executor, jobs_max=1, batch_max=64)
        results = await asyncio.gather(
            *(coalescer.search(request(i, limit=limit)) for i, limit in enumerate([1, 13, 2])),
            return_exceptions=True,
        )
    assert results[0] == [1] and results[2] == [2]
    assert isinstance(results[1], BadRequest)


async def test_a_failed_job_fails_its_searches_and_the_next_job_still_runs() -> None:
    release = threading.Event()
    calls: list[int] = []

    def search_many(requests: list[SearchRequest]) -> list:
        calls.append(len(requests))
        if len(calls) == 1:
            assert release.wait(10)
            raise OSError("disk")
        return [[r.limit] for r in requests]

    with ThreadPoolExecutor(1) as executor:
        coalescer = SearchCoalescer(search_many, executor, jobs_max=1, batch_max=2)
        first = asyncio.ensure_future(coalescer.search(request(0, limit=1)))
        await asyncio.sleep(0.05)  # the first job is running; these three wait
        waiting = [asyncio.ensure_future(coalescer.search(request(i, limit=i))) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        waiting[0].cancel()  # its client went away: skipped, never set twice
        release.set()
        with pytest.raises(OSError):
            await first
        assert [await w for w in waiting[1:]] == [[3], [4]]
    assert calls == [1, 2, 1]
