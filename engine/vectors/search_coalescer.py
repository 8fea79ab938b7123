"""Concurrent searches of one collection, coalesced into read-pool jobs.

Owns: the queue of searches waiting for a read thread. At most `jobs_max` jobs run at once;
a search arriving while one may still start runs at once, alone (no added latency when the
server is idle), and searches arriving while all run wait and go together in the next job:
one thread hop for all of them, and their graph searches in one `knn_query` when they share
vector, k and ef (Reader.search_many).
Not here: what a search does (engine/query/reads.py), validating it (collection.py).

Measured (tools/bench, 8 clients, `POST /points/search`): see the README's benchmark section.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")
Waiting = tuple[Any, "asyncio.Future[Any]"]


class SearchCoalescer(Generic[Request, Result]):
    """Runs `search_many` in `executor` over the searches that queued up meanwhile. Any
    request type: a SearchRequest (Reader.search_many) or a universal query's job
    (Collection._execute_queries); `search_many` gives each request its result or error."""

    def __init__(
        self,
        search_many: Callable[[list[Request]], list[Result | Exception]],
        executor: Executor,
        jobs_max: int,
        batch_max: int,
    ) -> None:
        assert jobs_max >= 1 and batch_max >= 1, (jobs_max, batch_max)
        self._search_many = search_many
        self._executor = executor
        self._jobs_max = jobs_max
        self._batch_max = batch_max
        self._waiting: list[Waiting] = []
        self._running_count = 0

    async def search(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((request, future))
        if self._running_count < self._jobs_max:
            self._start(loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._waiting[: self._batch_max]
        del self._waiting[: self._batch_max]
        try:
            job = loop.run_in_executor(self._executor, self._search_many, [r for r, _ in batch])
        except RuntimeError as error:  # the pool is shut down: the collection is closing
            _settle(batch, error=error)
            return
        self._running_count += 1
        job.add_done_callback(lambda done: self._finish(loop, batch, done))

    def _finish(
        self, loop: asyncio.AbstractEventLoop, batch: list[Waiting], job: asyncio.Future
    ) -> None:
        self._running_count -= 1
        if job.cancelled():
            _settle(batch, error=asyncio.CancelledError())
        elif job.exception() is not None:
            _settle(batch, error=job.exception())
        else:
            _settle(batch, results=job.result())
        if self._waiting and self._running_count < self._jobs_max:
            self._start(loop)


def _settle(
    batch: list[Waiting],
    *,
    results: list[Any] | None = None,
    error: BaseException | None = None,
) -> None:
    """Hand each waiting search its result, its own error, or the job's error. A waiter
    already done (its request was cancelled: the client went away) is skipped."""
    for position, (_, future) in enumerate(batch):
        if future.done():
            continue
        outcome = error if results is None else results[position]
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
