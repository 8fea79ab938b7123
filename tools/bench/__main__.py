"""`python -m tools.bench`: run every phase, print the table, write results.json and bench.png.

Phases, in order (each can be left out with --skip NAME[,NAME...]):
  fsync     the disk's fdatasync-per-op ceiling, in the output directory's file system
  hnswlib   raw hnswlib in process (M=16, ef_construct=100); fixes the ef of every comparison:
            the smallest of 16..256 reaching recall@10 0.95 here (64 if hnswlib is skipped)
  edge      qdrant-edge-py in process, with the selectivity sweep at that ef
  chroma    Chroma's server in its own virtualenv (installed on first use)
  floor     a bare aiohttp server on uvloop with canned answers, under wrk
  keel      everything Keel (or, one by one: wait-true, small, ingest, search, batch, capacity,
            sweep, replay; search, batch, capacity and sweep read what ingest wrote, so
            skipping ingest skips them too)

floor, capacity and sweep are driven by wrk (1 thread, 8 connections); without wrk they are
skipped with that reason printed (`apt-get install wrk`).
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
from tools.bench import baselines, chroma, keel, multivector, plot, report, sweep, wrk
from tools.bench.data import Dataset, make_dataset
from tools.bench.floor import FloorProcess

EFS = [16, 32, 64, 128, 256]
DEFAULT_EF = 64  # the fixed ef when hnswlib, which chooses it, is skipped
CONCURRENCIES = [1, 8, 32]
PHASES = ("fsync", "hnswlib", "edge", "chroma", "floor", "keel", "wait-true", "small", "ingest",
          "search", "batch", "capacity", "sweep", "multivector", "replay")  # fmt: skip
WRK_PHASES = ("floor", "capacity", "sweep")
QUICK = {"vectors": 2_000, "dim": 32, "queries": 100, "seconds": 0.4, "replay_ops": 5_000}
CHROMA_CLIENTS = 8  # the same concurrency as Keel's ingest and wrk's connections


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
    skipped_because = {}
    if not set(WRK_PHASES) <= skip:
        try:
            wrk.require()
        except wrk.WrkUnavailable as error:
            print(f"bench: {error}; skipping {', '.join(WRK_PHASES)}, which it drives")
            skipped_because = {phase: str(error) for phase in WRK_PHASES if phase not in skip}
            skip |= set(WRK_PHASES)
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
    config |= {"efs": EFS, "concurrencies": CONCURRENCIES, "skip": sorted(skip),
               "skipped_because": skipped_because}  # fmt: skip
    results: dict = {"config": config}
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
        plot.plot(results, plot_path)
        print(f"plot: {plot_path}")
    else:
        print("plot: not drawn (matplotlib is missing: pip install -e '.[bench]')")
    return 0


def run_phases(temp_dir: Path, dataset: Dataset, args, skip: set[str], results: dict) -> None:
    seconds = args.seconds
    if "fsync" not in skip:
        _say("fsync ceiling")
        results["fsync_ceiling"] = baselines.fsync_ceiling(temp_dir, min(seconds, 5.0))
    ef = {"hnsw_ef": DEFAULT_EF, "source": "default: hnswlib skipped"}
    if "hnswlib" not in skip:
        _say("raw hnswlib")
        results["hnswlib"] = baselines.raw_hnswlib(dataset, EFS, seconds, temp_dir)
        ef = report.fixed_ef(results["hnswlib"]) or {
            "hnsw_ef": max(EFS),
            "source": "no ef reached recall 0.95 on hnswlib: the largest",
        }
    results["fixed_ef"] = ef
    _say(f"every comparison at hnsw_ef {ef['hnsw_ef']} ({ef['source']})")
    if "edge" not in skip:
        _say("qdrant-edge, and its selectivity sweep")
        results["qdrant_edge"] = baselines.qdrant_edge(dataset, EFS, seconds, temp_dir,
                                                       ef["hnsw_ef"])  # fmt: skip
    if "chroma" not in skip:
        _say("chroma server")
        results["chroma"] = _chroma(dataset, temp_dir, seconds)
    if "floor" not in skip:
        _say("HTTP floor under wrk")
        results["http_floor"] = _floor(dataset, ef["hnsw_ef"], seconds, temp_dir / "wrk")
    if "keel" not in skip:
        results["keel"] = run_keel(temp_dir, dataset, args, skip, ef["hnsw_ef"])


def run_keel(temp_dir: Path, dataset: Dataset, args, skip: set[str], ef: int) -> dict:
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
        run_keel_main(temp_dir, dataset, args, skip, out, ef)
    if "replay" not in skip:
        _say(f"keel: restart with {args.replay_ops} ops in the WAL")
        out["replay"] = asyncio.run(keel.replay(temp_dir / "keel-replay", args.replay_ops))
    return out


def run_keel_main(
    temp_dir: Path, dataset: Dataset, args, skip: set[str], out: dict, ef: int
) -> None:
    """The main server: the wait=false ingest, then every read phase on its data, then
    1-point upserts (into their own collection) under wrk."""
    seconds, work_dir = args.seconds, temp_dir / "wrk"
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
        if not {"capacity", "sweep"} <= skip:
            # Both need Keel's unfiltered QPS under wrk: the floor's and the sweep's reference.
            _say(f"keel: /points/query under wrk, hnsw_ef {ef}")
            bodies = keel.query_bodies(dataset, ef)
            query = keel.wrk_query(server.url, bodies, dataset.truth, seconds, work_dir)
            out["capacity"] = {"hnsw_ef": ef, "query": asyncio.run(query)}
        if "sweep" not in skip:
            _say("keel: selectivity sweep under wrk")
            out["sweep"] = asyncio.run(sweep.run(server.url, dataset, ef, seconds, work_dir))
        if "multivector" not in skip:
            _say("keel: multivector MaxSim, full scan and prefetch rerank")
            out["multivector"] = asyncio.run(multivector.run(server.url, dataset, seconds))
        out["memory"] = {**keel.memory(server), "idle_peak_rss_bytes": idle["peak_rss_bytes"]}
        if "capacity" not in skip:
            _say("keel: 1-point upserts under wrk")
            upserts = keel.wrk_upserts(server.url, dataset.dim, seconds, work_dir)
            out["capacity"]["upsert"] = asyncio.run(upserts)
    finally:
        server.terminate()
    if "capacity" not in skip:
        _say("keel with an empty engine: /points/query under wrk")
        ceiling = keel.wrk_ceiling(temp_dir / "keel-ceiling", dataset, ef, seconds, work_dir)
        out["capacity"]["ceiling"] = asyncio.run(ceiling)


def _floor(dataset: Dataset, ef: int, seconds: float, work_dir: Path) -> dict:
    """The canned-answer server under wrk with exactly Keel's bodies."""
    floor = FloorProcess.start(free_port())
    try:
        query = wrk.WrkRun(f"{floor.url}/collections/{keel.COLLECTION}/points/query", "POST",
                           keel.query_bodies(dataset, ef), seconds)  # fmt: skip
        upsert = wrk.WrkRun(f"{floor.url}/collections/{keel.UPSERT_COLLECTION}/points?wait=false",
                            "PUT", keel.upsert_bodies(dataset.dim), seconds)  # fmt: skip
        rows = {"query": wrk.run(query, work_dir), "upsert": wrk.run(upsert, work_dir)}
        return {name: {**row, "qps": row["ok_requests_per_s"]} for name, row in rows.items()}
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
