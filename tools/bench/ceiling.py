"""The ceiling of Keel's HTTP read path: Keel with an empty engine, under wrk.

Owns: `python -m tools.bench.ceiling [server args]`, which is `python -m server` with one
change made in this process only: a coalesced job of universal queries answers each with the
same 10 canned points instead of searching (`Collection._execute_queries`). Everything else
a `POST /points/query` does runs as shipped: the router, the middlewares, reading and parsing
the body, strict-mode checks, the coalescer's hop to a read thread and back, the answer's
JSON. Its QPS under wrk, beside the canned-answer floor and Keel itself, says how much of the
floor Keel could reach if its engine cost nothing: the part of the plain-search target the
engine cannot move (README, "Benchmark").
Not here: the floor (tools/bench/floor.py), the capacity runs (tools/bench/keel.py).
"""

from __future__ import annotations

import sys

from engine.collection import Collection
from engine.ops import ScoredPoint
from engine.query.plan import QueryResult

CANNED_POINTS = [ScoredPoint(i, 1, 1.0 - i / 64, None, None) for i in range(10)]


def _canned(self: Collection, jobs: list) -> list[QueryResult]:
    return [QueryResult(list(CANNED_POINTS)) for _ in jobs]


def main() -> int:
    Collection._execute_queries = _canned  # type: ignore[method-assign]
    from server.cli import main as keel_main

    return keel_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
