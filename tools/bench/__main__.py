"""`python -m tools.bench`: run every phase, print the table, write results.json and bench.png.

Phases, in order (each can be left out with --skip NAME[,NAME...]):
  fsync     the disk's fdatasync-per-op ceiling, in the output directory's file system
  hnswlib   raw hnswlib in process (M=16, ef_construct=100)
  edge      qdrant-edge-py in process
  chroma    Chroma's server in its own virtualenv (installed on first use)
  floor     a bare aiohttp server with a canned search answer, same client as Keel
  keel      everything Keel (or, one by one: wait-true, small, ingest, search, batch, filtered,
            replay; search, batch and filtered read what ingest wrote, so skipping ingest skips
            them too)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from tests.keel_process import free_port
from tools.bench import baselines, chroma, keel, report
from tools.bench.client import encode, run_load, search_ids
from tools.bench.data import Dataset, make_dataset
from tools.bench.floor import FloorProcess

EFS = [16, 32, 64, 128, 256]
CONCURRENCIES = [1, 8, 32]
PHASES = ("fsync", "hnswlib", "edge", "chroma", "floor", "keel", "wait-true", "small", "ingest",
          "search", "batch", "filtered", "replay")  # fmt: skip
QUICK = {"vectors": 2_000, "dim": 32, "queries": 100, "seconds": 0.4, "replay_ops": 5_000}
CHROMA_CLIENTS = 8


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - set(PHASES)
    if unknown:
        print(f"bench: unknown --skip {sorted(unknown)}; phases: {', '.join(PHASES)}")
        return 2
    if "edge" not in skip and importlib.util.find_spec("qdrant_edge") is None:
        # Qdrant's own engine is the bar Keel is measured against: no silent skip.
        print("bench: qdrant-edge-py is missing: pip install -e '.[bench]' (or --skip edge)")
        return 2
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if not has_matplotlib:
        print("bench: matplotlib is missing, so no plot will be drawn; install it with "
              "`pip install -e '.[bench]'` (the table and JSON are still written)")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    started_s = time.perf_counter()
    _say(f"data: {args.vectors} x {args.dim}, {args.queries} queries, exact top-10")
    dataset = make_dataset(args.vectors, args.dim, args.queries)
    config = {key: getattr(args, key) for key in ("vectors", "dim", "queries", "seconds",
                                                  "replay_ops", "quick")}  # fmt: skip
    results: dict = {"config": {**config, "efs": EFS, "concurrencies": CONCURRENCIES,
                                "skip": sorted(skip)}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=args.out) as temp:
        run_phases(Path(temp), dataset, args, skip, results)
    results["took_s"] = round(time.perf_counter() - started_s, 1)
    found = report.targets(results)
    print(report.format_table(results, found))
    json_path = args.out / "results.json"
    report.write_json(results, found, json_path)
    print(f"\nJSON: {json_path}")
    if has_matplotlib:
        plot_path = args.out / "bench.png"
        report.plot(results, plot_path)
        print(f"plot: {plot_path}")
    else:
        print("plot: not drawn (matplotlib is missing: pip install -e '.[bench]')")
    return 0


def run_phases(temp_dir: Path, dataset: Dataset, args, skip: set[str], results: dict) -> None:
    seconds = args.seconds
    if "fsync" not in skip:
        _say("fsync ceiling")
        results["fsync_ceiling"] = baselines.fsync_ceiling(temp_dir, min(seconds, 5.0))
    if "hnswlib" not in skip:
        _say("raw hnswlib")
        results["hnswlib"] = baselines.raw_hnswlib(dataset, EFS, seconds, temp_dir)
    if "edge" not in skip:
        _say("qdrant-edge")
        results["qdrant_edge"] = baselines.qdrant_edge(dataset, EFS, seconds, temp_dir)
    if "chroma" not in skip:
        _say("chroma server")
        results["chroma"] = _chroma(dataset, temp_dir, seconds)
    if "floor" not in skip:
        _say("HTTP floor")
        results["http_floor"] = asyncio.run(_floor(dataset, seconds))
    if "keel" not in skip:
        results["keel"] = run_keel(temp_dir, dataset, args, skip)


def run_keel(temp_dir: Path, dataset: Dataset, args, skip: set[str]) -> dict:
    """Every Keel phase; each group on its own server so one's memory or WAL is not
    another's. The main server holds the wait=false ingest and answers every read phase."""
    seconds, out = args.seconds, {}
    if "wait-true" not in skip:
        _say("keel: ingest wait=true")
        server = keel.start(temp_dir / "keel-wait-true")
        out["ingest_wait_true"] = asyncio.run(keel.ingest(server.url, dataset, is_wait=True))
        server.terminate()
    if "small" not in skip:
        _say("keel: 1-point requests, 64 clients")
        server = keel.start(temp_dir / "keel-small")
        out["small_requests"] = asyncio.run(keel.small_requests(server, dataset.dim, seconds))
    if "ingest" not in skip:
        run_keel_main(temp_dir, dataset, args, skip, out)
    if "replay" not in skip:
        _say(f"keel: restart with {args.replay_ops} ops in the WAL")
        out["replay"] = asyncio.run(keel.replay(temp_dir / "keel-replay", args.replay_ops))
    return out


def run_keel_main(temp_dir: Path, dataset: Dataset, args, skip: set[str], out: dict) -> None:
    """The main server: the wait=false ingest, then every read phase on its data."""
    seconds = args.seconds
    _say("keel: ingest wait=false")
    server = keel.start(temp_dir / "keel-main")
    idle = keel.memory(server)
    out["ingest_wait_false"] = asyncio.run(keel.ingest(server.url, dataset, is_wait=False))
    out["memory_after_ingest"] = keel.memory(server)
    try:
        if "search" not in skip:
            _say("keel: search")
            plan = keel.SearchPlan(EFS, CONCURRENCIES, seconds)
            out["search"] = asyncio.run(keel.search(server.url, dataset, plan))
        if "batch" not in skip:
            _say("keel: query/batch")
            out["query_batch"] = asyncio.run(keel.query_batch(server.url, dataset, EFS, seconds))
        if "filtered" not in skip:
            _say("keel: filtered search")
            ef = int(report.chosen_ef(out.get("search", {}).get("8", {})) or 64)
            out["filtered"] = asyncio.run(keel.filtered(server.url, dataset, ef, seconds))
        out["memory"] = {**keel.memory(server), "idle_peak_rss_bytes": idle["peak_rss_bytes"]}
    finally:
        server.terminate()


async def _floor(dataset: Dataset, seconds: float) -> dict:
    floor = FloorProcess.start(free_port())
    try:
        bodies = [encode({"vector": q, "limit": 10, "params": {"hnsw_ef": 64}})
                  for q in dataset.queries]  # fmt: skip
        results = {}
        for clients in CONCURRENCIES:
            load = await run_load(f"{floor.url}/collections/bench/points/search", bodies,
                                  clients, seconds=seconds, parse=search_ids)  # fmt: skip
            results[str(clients)] = {**load.summary(), "qps": round(load.requests_per_s, 1)}
        return results
    finally:
        floor.stop()


def _chroma(dataset: Dataset, temp_dir: Path, seconds: float) -> dict:
    try:
        return chroma.run(dataset, temp_dir, free_port(), seconds, CHROMA_CLIENTS)
    except chroma.ChromaUnavailable as error:
        print(f"bench: chroma skipped: {error}", flush=True)
        return {"skipped": str(error)}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed phase")
    parser.add_argument("--replay-ops", type=int, default=1_000_000,
                        help="ops in the WAL at the restart (about 1.5 min at 1M)")  # fmt: skip
    parser.add_argument("--skip", default="", help=f"comma-separated: {','.join(PHASES)}")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
