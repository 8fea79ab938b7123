"""The selectivity sweep on Keel: filtered `/points/query` under wrk, with and without an index.

Owns: creating the integer payload index on `sel` (timed), and for every selectivity of
data.SELECTIVITIES a `sel < t` filter on the indexed field and the same filter on
`sel_plain` (no index): QPS and latency under wrk (8 connections, the fixed ef), recall@10 of
the same bodies against brute force over the matching points. The ratio the issue's targets
take is filtered QPS / Keel's unfiltered QPS under the same wrk settings, measured just before
by keel.wrk_query and again after the sweep (the machine's speed drifts over the ~2 minutes
between; report.py takes their mean). Not here: qdrant-edge's side of the sweep (baselines.edge_sweep), the
targets (report.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tools.bench import keel, wrk
from tools.bench.client import request_json
from tools.bench.data import (
    INDEXED_FIELD,
    PLAIN_FIELD,
    SELECTIVITIES,
    Dataset,
    filter_condition,
    filtered_truth,
)

KINDS = (("indexed", INDEXED_FIELD), ("plain", PLAIN_FIELD))


async def run(url: str, dataset: Dataset, ef: int, seconds: float, work_dir: Path) -> dict:
    """Index `sel`, then every selectivity x {indexed, plain}; rows keyed "1%" -> kind."""
    started_s = time.perf_counter()
    body = {"field_name": INDEXED_FIELD, "field_schema": "integer"}
    await request_json("PUT", f"{url}/collections/{keel.COLLECTION}/index?wait=true", body)
    out: dict = {"hnsw_ef": ef, "payload_index_build_s": round(time.perf_counter() - started_s, 3)}
    for selectivity in SELECTIVITIES:
        truth = filtered_truth(dataset, selectivity)
        out[selectivity] = {}
        for kind, field_name in KINDS:
            condition = filter_condition(selectivity, field_name)
            bodies = keel.query_bodies(dataset, ef, condition)
            row = await keel.wrk_query(url, bodies, truth, seconds, work_dir)
            out[selectivity][kind] = {**row, "filter": condition}
    unfiltered = wrk.WrkRun(
        f"{url}/collections/{keel.COLLECTION}/points/query", "POST",
        keel.query_bodies(dataset, ef), seconds,
    )  # fmt: skip
    row = await asyncio.to_thread(wrk.run, unfiltered, work_dir)
    out["unfiltered_after"] = {**row, "qps": row["ok_requests_per_s"]}
    return out
