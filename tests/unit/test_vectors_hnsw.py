"""The HNSW graph of one vector (engine/vectors/hnsw.py): concurrent searches each search with the
ef they asked for (hnswlib keeps one ef per index), searches with one ef still run together,
and the gate between efs starves no ef."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from engine.ops import Distance, HnswSettings, VectorConfig
from engine.vectors.hnsw import EfGate, VectorIndex
from tests.keel_process import wait_until

DIM = 16
K = 10
EF_SMALL = K  # on a sparse graph (m=4), visibly worse than EF_LARGE for every query
EF_LARGE = 400
THREAD_COUNT = 8
SEARCHES_PER_THREAD = 24


class WideWindowGraph:
    """An hnswlib.Index whose knn_query first lets the other threads run for a moment.

    In production the window between `set_ef` and hnswlib reading ef inside `knn_query` is
    a few bytecodes and a GIL release: a search loses its ef only when the OS or the GIL's
    switch interval takes its thread away right there (0 to 41 searches in 1600, a few in
    a thousand typically, with 8 threads mixing two efs on the unguarded code). Widening it
    makes every overlap a race: the unguarded code fails this test on every run (70-125 of
    192 searches with another ef), not now and then."""

    def __init__(self, graph: object) -> None:
        self._graph = graph

    def __getattr__(self, name: str) -> object:
        return getattr(self._graph, name)

    def knn_query(self, *args: object, **kwargs: object) -> object:
        time.sleep(0.001)  # not synchronisation: the race window, held open
        return self._graph.knn_query(*args, **kwargs)


@pytest.fixture(scope="module")
def index_and_queries(tmp_path_factory) -> tuple[VectorIndex, np.ndarray]:
    rng = np.random.default_rng(7)
    config = VectorConfig(size=DIM, distance=Distance.EUCLID)
    index = VectorIndex(tmp_path_factory.mktemp("index"), "", config, HnswSettings(4, 16))
    index.discard_checkpoint()
    index.add(np.arange(3000), rng.normal(size=(3000, DIM)).astype(np.float32))
    return index, rng.normal(size=(32, DIM)).astype(np.float32)


@pytest.mark.parametrize("method", ["search", "search_many"])
def test_concurrent_searches_with_different_efs_each_get_their_own(
    index_and_queries, method: str
) -> None:
    """Goal: hnswlib's ef is one per index, so a search must not run with the ef another
    thread set. Method: the answer of every query alone at EF_SMALL and at EF_LARGE, then
    THREAD_COUNT threads search the same queries at once, alternating the two efs; every
    answer must be the one that query gets alone at its ef (hnswlib is deterministic for a
    fixed graph, query and ef)."""
    index, queries = index_and_queries
    search = _searcher(index, method)
    alone = {ef: [search(query, ef) for query in queries] for ef in (EF_SMALL, EF_LARGE)}
    differing_count = sum(small != large for small, large in zip(alone[EF_SMALL], alone[EF_LARGE]))
    assert differing_count >= len(queries) // 2, differing_count  # else the test sees nothing
    wrong: list[tuple[int, int]] = []
    start = threading.Barrier(THREAD_COUNT, timeout=30)

    def run(thread_index: int) -> None:
        start.wait()
        for search_index in range(SEARCHES_PER_THREAD):
            query_index = (thread_index * 5 + search_index) % len(queries)
            ef = (EF_SMALL, EF_LARGE)[(thread_index + search_index) % 2]
            if search(queries[query_index], ef) != alone[ef][query_index]:
                wrong.append((query_index, ef))

    graph = index._graph
    index._graph = WideWindowGraph(graph)
    try:
        _run_threads([lambda i=i: run(i) for i in range(THREAD_COUNT)])
    finally:
        index._graph = graph
    assert wrong == [], f"{len(wrong)} of {THREAD_COUNT * SEARCHES_PER_THREAD} with another ef"


def test_searches_with_one_ef_run_together(index_and_queries) -> None:
    """Goal: the ef guard serialises nothing between searches that share an ef. Method:
    THREAD_COUNT threads search at EF_LARGE at once, each knn_query held open until all of
    them are inside it; they can only all get there if none waits for another."""
    index, queries = index_and_queries
    alone = [index.search(query, K, EF_LARGE).tolist() for query in queries[:THREAD_COUNT]]
    all_inside = threading.Barrier(THREAD_COUNT, timeout=30)
    graph = index._graph

    class AllInsideGraph:
        def __getattr__(self, name: str) -> object:
            return getattr(graph, name)

        def knn_query(self, *args: object, **kwargs: object) -> object:
            all_inside.wait()  # BrokenBarrierError if the searches were serialised
            return graph.knn_query(*args, **kwargs)

    answers: list[list[int] | None] = [None] * THREAD_COUNT

    def run(thread_index: int) -> None:
        answers[thread_index] = index.search(queries[thread_index], K, EF_LARGE).tolist()

    index._graph = AllInsideGraph()
    try:
        _run_threads([lambda i=i: run(i) for i in range(THREAD_COUNT)])
    finally:
        index._graph = graph
    assert answers == alone


def test_the_gate_sets_ef_once_for_searches_that_share_it() -> None:
    efs_set: list[int] = []
    gate = EfGate(efs_set.append)
    gate.enter(64)
    gate.enter(64)
    assert efs_set == [64]
    gate.leave()
    gate.leave()
    gate.enter(32)
    assert efs_set == [64, 32]


def test_a_waiting_ef_goes_before_later_searches_with_the_running_ef() -> None:
    """Goal: no starvation. While ef 64 runs, a search with ef 32 waits; a later search with
    ef 64 must then queue behind it rather than join, or a steady stream of ef 64 would
    keep ef 32 out for ever. Waiters of one ef go in together."""
    efs_set: list[int] = []
    gate = EfGate(efs_set.append)
    entered: list[str] = []
    may_leave = threading.Event()

    def search(name: str, ef: int) -> Callable[[], None]:
        def run() -> None:
            gate.enter(ef)
            entered.append(name)
            may_leave.wait(timeout=30)
            gate.leave()

        return run

    gate.enter(64)
    threads = []
    for count, (name, ef) in enumerate([("32 a", 32), ("64 later", 64), ("32 b", 32)], 1):
        threads.append(threading.Thread(target=search(name, ef)))
        threads[-1].start()
        wait_until(lambda count=count: gate.waiting_count == count)
    assert entered == []
    gate.leave()
    wait_until(lambda: len(entered) == 2)
    assert sorted(entered) == ["32 a", "32 b"]
    assert efs_set == [64, 32]
    assert gate.waiting_count == 1
    may_leave.set()
    for thread in threads:
        thread.join(timeout=30)
    assert entered[2:] == ["64 later"]
    assert efs_set == [64, 32, 64]


def _searcher(index: VectorIndex, method: str) -> Callable[[np.ndarray, int], list[int]]:
    if method == "search":
        return lambda query, ef: index.search(query, K, ef).tolist()
    # Four rows per call, as a coalesced group of searches would be.
    return lambda query, ef: index.search_many(
        np.stack([query, query + 0.5, query - 0.5, -query]), K, ef
    ).tolist()


def _run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(error)

        return run

    threads = [threading.Thread(target=guarded(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a search thread hung"
    if errors:
        raise errors[0]
