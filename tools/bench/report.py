"""The report: targets as ratios measured in one run, a table on stdout, JSON.

Owns: the issue's targets and how each ratio is taken from the results, the fixed ef of the
comparisons, the table's layout, writing results.json. Not here: measuring anything, the
plot (plot.py).

A target is reported PASS or MISS, never asserted: the machine may be shared and noisy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tools.bench.data import SELECTIVITIES

RECALL_TARGET = 0.95
# Filtered QPS / unfiltered QPS (both under wrk, 8 connections): every selectivity, indexed
# or not, at least FILTERED_RATIO_MIN; the two the issue singles out at least 1.0x.
FILTERED_RATIO_MIN = 0.5
FILTERED_RATIO_STRONG = {("1%", "indexed"): 1.0, ("50%", "plain"): 1.0}
KIND_LABELS = {"indexed": "with index", "plain": "no index"}


@dataclass(frozen=True)
class Target:
    name: str
    goal: str  # as the issue words it
    is_min: bool  # True: ratio >= bound passes; False: ratio <= bound passes
    bound: float
    value: float | None  # None: not measured in this run (a phase skipped)
    detail: str

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        is_met = self.value >= self.bound if self.is_min else self.value <= self.bound
        return "PASS" if is_met else "MISS"

    def as_json(self) -> dict:
        return {"goal": self.goal, "value": self.value, "bound": self.bound,
                "verdict": self.verdict, "detail": self.detail}  # fmt: skip


def targets(results: dict) -> list[Target]:
    """Every target of the issue, with its ratio from `results` (None where skipped)."""
    return [
        _ingest_vs_chroma(results),
        _indexed_vs_hnswlib(results),
        _search_vs_floor(results),
        _batch_vs_hnswlib(results),
        *_filtered(results),
        _filtered_recall(results),
        _small_vs_fsync(results),
        _replay(results),
        _rss(results),
    ]


def fixed_ef(hnswlib_results: dict) -> dict | None:
    """The ef of every comparison, fixed before Keel runs: the smallest ef whose
    one-at-a-time recall@10 on raw hnswlib reaches RECALL_TARGET (None if none does)."""
    for ef, row in sorted(hnswlib_results["by_ef"].items(), key=lambda item: int(item[0])):
        if row["single"]["recall"] >= RECALL_TARGET:
            return {"hnsw_ef": int(ef), "source": f"smallest ef with hnswlib recall@10 >= "
                    f"{RECALL_TARGET} ({row['single']['recall']:.3f})"}  # fmt: skip
    return None


def write_json(results: dict, found: list[Target], path: Path) -> None:
    document = {**results, "targets": {t.name: t.as_json() for t in found}}
    path.write_text(json.dumps(document, indent=2, default=str))


def format_table(results: dict, found: list[Target]) -> str:
    """The table printed on stdout: config, per-system numbers, then the targets."""
    lines = [f"config: {json.dumps(results['config'])}", ""]
    lines += _baseline_lines(results) + [""] + _keel_lines(results) + [""]
    lines += _wrk_lines(results) + [""] + _sweep_lines(results) + [""]
    lines += _multivector_lines(results) + [""]
    lines.append(f"{'target':<62} {'measured':>10} {'bound':>8}  verdict")
    for target in found:
        value = "-" if target.value is None else f"{target.value:.2f}"
        bound = f"{'>=' if target.is_min else '<='}{target.bound:g}"
        lines.append(f"{target.goal:<62} {value:>10} {bound:>8}  {target.verdict}")
        lines.append(f"    {target.detail}")
    return "\n".join(lines)


def _ingest_vs_chroma(results: dict) -> Target:
    keel, chroma = _get(results, "keel", "ingest_wait_false"), results.get("chroma")
    value = detail = None
    if keel and chroma and "add_points_per_s" in chroma:
        value = keel["acknowledged_points_per_s"] / chroma["add_points_per_s"]
        detail = (f"Keel wait=false {keel['acknowledged_points_per_s']:.0f} points/s vs "
                  f"Chroma add {chroma['add_points_per_s']:.0f} points/s")  # fmt: skip
    return Target("ingest_vs_chroma", "durable HTTP ingest (wait=false) / Chroma ingest",
                  True, 8.0, value, detail or "skipped")  # fmt: skip


def _indexed_vs_hnswlib(results: dict) -> Target:
    keel, raw = _get(results, "keel", "ingest_wait_false"), results.get("hnswlib")
    value = detail = None
    if keel and raw:
        value = keel["until_indexed_points_per_s"] / raw["add_items_vectors_per_s"]
        detail = (f"Keel until indexed {keel['until_indexed_points_per_s']:.0f} points/s vs "
                  f"hnswlib add_items {raw['add_items_vectors_per_s']:.0f} vectors/s")  # fmt: skip
    return Target("indexed_vs_hnswlib", "ingest until indexed / raw hnswlib add_items",
                  True, 0.9, value, detail or "skipped")  # fmt: skip


def _search_vs_floor(results: dict) -> Target:
    query = _get(results, "keel", "capacity", "query")
    floor = _get(results, "http_floor", "query")
    value, detail = None, "skipped"
    if query and floor:
        value = query["qps"] / floor["qps"]
        detail = (f"wrk 8 connections, hnsw_ef {_get(results, 'keel', 'capacity', 'hnsw_ef')}: "
                  f"Keel {query['qps']:.0f} q/s (recall {_fmt(query['recall'])}, p99 "
                  f"{query['latency_ms_p99']} ms) vs canned answer {floor['qps']:.0f} q/s "
                  f"(p99 {floor['latency_ms_p99']} ms)")  # fmt: skip
        ceiling = _get(results, "keel", "capacity", "ceiling")
        if ceiling:
            detail += (f"; Keel with an empty engine {ceiling['qps']:.0f} q/s = "
                       f"{ceiling['qps'] / floor['qps']:.2f}x: the HTTP path's own bound")  # fmt: skip
    return Target("search_vs_floor", "POST /points/query QPS (wrk) / canned-answer floor",
                  True, 0.5, value, detail)  # fmt: skip


def _batch_vs_hnswlib(results: dict) -> Target:
    batch, raw = _get(results, "keel", "query_batch"), results.get("hnswlib")
    ef = str(_get(results, "fixed_ef", "hnsw_ef"))
    value, detail = None, "skipped"
    if batch and raw and ef in batch:
        raw_row = raw["by_ef"][ef]["batched"]
        value = batch[ef]["qps"] / raw_row["qps"]
        detail = (f"hnsw_ef {ef}: Keel query/batch x100 {batch[ef]['qps']:.0f} q/s (recall "
                  f"{batch[ef]['recall']:.3f}) vs hnswlib knn_query x100 {raw_row['qps']:.0f} "
                  f"q/s (recall {raw_row['recall']:.3f})")  # fmt: skip
    return Target("batch_vs_hnswlib", "query/batch (100 per request) / hnswlib batch of 100",
                  True, 0.5, value, detail)  # fmt: skip


def _filtered(results: dict) -> list[Target]:
    """One target per selectivity and kind: filtered QPS / Keel's unfiltered QPS (wrk)."""
    sweep, reference = _get(results, "keel", "sweep"), _unfiltered_qps(results)
    edge = _get(results, "qdrant_edge", "sweep")
    found = []
    for selectivity in SELECTIVITIES:
        for kind, label in KIND_LABELS.items():
            bound = FILTERED_RATIO_STRONG.get((selectivity, kind), FILTERED_RATIO_MIN)
            row = _get(sweep or {}, selectivity, kind)
            value, detail = None, "skipped"
            if row and reference:
                value = row["qps"] / reference
                detail = (f"Keel {row['qps']:.0f} q/s vs unfiltered {reference:.0f}, recall "
                          f"{_fmt(row['recall'])}, p99 {row['latency_ms_p99']} ms")  # fmt: skip
                if row.get("has_errors") or row.get("recall_error"):
                    detail += " (errors: see the sweep's table)"
            if edge_row := _get(edge or {}, selectivity, kind):
                detail += (f"; qdrant-edge {edge_row['qps']:.0f} q/s = "
                           f"{edge_row['qps'] / edge['unfiltered']['qps']:.2f}x its unfiltered, "
                           f"recall {_fmt(edge_row['recall'])}")  # fmt: skip
            found.append(Target(f"filtered_{selectivity}_{kind}",
                                f"filtered {selectivity} {label} / unfiltered QPS (wrk)",
                                True, bound, value, detail))  # fmt: skip
    return found


def _filtered_recall(results: dict) -> Target:
    sweep = _get(results, "keel", "sweep")
    value, detail = None, "skipped"
    rows = []
    for selectivity in SELECTIVITIES:
        for kind, label in KIND_LABELS.items():
            row = _get(sweep or {}, selectivity, kind)
            if row:
                # A filter whose answers failed has recalled nothing a user could see.
                rows.append((row["recall"] or 0.0, f"{selectivity} {label}"))
    if rows:
        value, where = min(rows)
        detail = f"lowest: {where}, hnsw_ef {sweep['hnsw_ef']}"
    return Target("filtered_recall", "filtered recall@10, lowest of the sweep", True,
                  RECALL_TARGET, value, detail)  # fmt: skip


def _small_vs_fsync(results: dict) -> Target:
    small, fsync = _get(results, "keel", "small_requests"), results.get("fsync_ceiling")
    value = detail = None
    if small and fsync:
        value = small["requests_per_s"] / fsync["fsyncs_per_s"]
        detail = (f"{small['requests_per_s']:.0f} requests/s with {small['clients']} clients, "
                  f"server fsyncs/s {small['server_fsyncs_per_s']}, "
                  f"fsync ceiling {fsync['fsyncs_per_s']:.0f}/s")  # fmt: skip
    return Target("small_vs_fsync", "1-point requests, 64 clients / fsync ceiling",
                  True, 20.0, value, detail or "skipped")  # fmt: skip


def _replay(results: dict) -> Target:
    replay = _get(results, "keel", "replay")
    value = detail = None
    if replay:
        value = replay["replay_ops_per_s"]
        detail = (f"{replay['ops_replayed']} ops replayed, restart until /readyz "
                  f"{replay['restart_until_ready_s']:.2f} s (collection open "
                  f"{replay['open_took_s']:.2f} s); every point in the graph after "
                  f"{replay.get('restart_until_indexed_s') or 0:.2f} s")  # fmt: skip
    return Target("replay", "WAL replay ops/s (restart until /readyz)", True, 50_000.0,
                  value, detail or "skipped")  # fmt: skip


def _rss(results: dict) -> Target:
    memory, raw = _get(results, "keel", "memory"), results.get("hnswlib")
    value = detail = None
    if memory and raw and memory.get("peak_rss_bytes"):
        value = memory["peak_rss_bytes"] / raw["index_bytes"]
        detail = (f"peak RSS {memory['peak_rss_bytes'] / 2**20:.0f} MiB (idle server "
                  f"{(memory.get('idle_peak_rss_bytes') or 0) / 2**20:.0f} MiB) vs raw vectors "
                  f"+ index {raw['index_bytes'] / 2**20:.0f} MiB (hnswlib's saved index); read "
                  f"path in memory: {_read_cache(results)}")  # fmt: skip
    return Target("rss", "server peak RSS / (raw vectors + index bytes)", False, 1.5, value,
                  detail or "skipped")  # fmt: skip


def _baseline_lines(results: dict) -> list[str]:
    lines = ["baselines"]
    if fsync := results.get("fsync_ceiling"):
        lines.append(f"  fsync ceiling                 {fsync['fsyncs_per_s']:>10.0f} fsyncs/s")
    if raw := results.get("hnswlib"):
        lines.append(f"  hnswlib add_items             {raw['add_items_vectors_per_s']:>10.0f} "
                     "vectors/s")  # fmt: skip
    if edge := results.get("qdrant_edge"):
        lines.append(f"  qdrant-edge upsert            {edge['upsert_points_per_s']:>10.0f} "
                     f"points/s; until indexed {edge['until_indexed_points_per_s']:.0f} "
                     "points/s")  # fmt: skip
    chroma = results.get("chroma") or {}
    if "add_points_per_s" in chroma:
        lines.append(f"  chroma add (batches of 1000, {chroma['add_clients']} clients) "
                     f"{chroma['add_points_per_s']:.0f} "
                     f"points/s; query {chroma['query_qps']:.0f} q/s ({chroma['query_clients']} "
                     f"clients, ef_search 100) recall {chroma['query_recall']:.3f} p50 "
                     f"{chroma['query_latency_ms_p50']} ms p99 "
                     f"{chroma['query_latency_ms_p99']} ms")  # fmt: skip
    elif chroma:
        lines.append(f"  chroma: skipped: {chroma.get('skipped')}")
    if ef := results.get("fixed_ef"):
        lines.append(f"  every comparison at hnsw_ef {ef['hnsw_ef']}: {ef['source']}")
    lines.append("")
    lines.append(f"  {'hnsw_ef':>8} | {'hnswlib 1x1':>18} | {'hnswlib batch':>18} | "
                 f"{'edge 1x1':>18} | {'edge batch':>18}   (q/s recall@10)")  # fmt: skip
    efs = (raw or {}).get("by_ef") or (edge or {}).get("by_ef") or {}
    for ef in efs:
        cells = [_cell(_get(results, system, "by_ef", ef, mode))
                 for system in ("hnswlib", "qdrant_edge") for mode in ("single", "batched")]  # fmt: skip
        lines.append(f"  {ef:>8} | " + " | ".join(cells))
    return lines


def _keel_lines(results: dict) -> list[str]:
    keel = results.get("keel") or {}
    lines = ["keel (HTTP, separate server process)"]
    for key in ("ingest_wait_false", "ingest_wait_true"):
        if row := keel.get(key):
            lines.append(f"  ingest wait={str(row['wait']).lower():<5} 8 clients x 1000   "
                         f"acknowledged {row['acknowledged_points_per_s']:>9.0f} points/s; "
                         f"until indexed {row['until_indexed_points_per_s']:.0f} points/s")  # fmt: skip
    if row := keel.get("small_requests"):
        lines.append(f"  1 point/request, 64 clients   {row['requests_per_s']:>9.0f} requests/s; "
                     f"server fsyncs/s {row['server_fsyncs_per_s']}; "
                     f"requests/fsync {row['requests_per_fsync']}")  # fmt: skip
    if search := keel.get("search"):
        lines.append(f"  search    {'clients':>7} {'hnsw_ef':>7} {'q/s':>9} {'recall':>7} "
                     f"{'p50 ms':>8} {'p99 ms':>8}")  # fmt: skip
        for clients, by_ef in search.items():
            for ef, row in by_ef.items():
                lines.append(f"            {clients:>7} {ef:>7} {row['qps']:>9.0f} "
                             f"{row['recall']:>7.3f} {row['latency_ms_p50']:>8} "
                             f"{row['latency_ms_p99']:>8}")  # fmt: skip
    if batch := keel.get("query_batch"):
        for ef, row in batch.items():
            lines.append(f"  query/batch x100, ef {ef:>4}    {row['qps']:>9.0f} q/s recall "
                         f"{row['recall']:.3f} p50 {row['latency_ms_p50']} ms/request")  # fmt: skip
    if memory := keel.get("memory"):
        lines.append(f"  peak RSS {(memory['peak_rss_bytes'] or 0) / 2**20:.0f} MiB; idle server "
                     f"{(memory.get('idle_peak_rss_bytes') or 0) / 2**20:.0f} MiB; read path "
                     f"in memory (/metrics): {_read_cache(results)}")  # fmt: skip
    for label, key in (("after ingest", "memory_after_ingest"), ("at the end", "memory")):
        if (memory := keel.get(key)) and memory.get("rss_anon_bytes") is not None:
            lines.append(f"  RSS {label} {(memory['rss_bytes'] or 0) / 2**20:.0f} MiB: heap "
                         f"{memory['rss_anon_bytes'] / 2**20:.0f} MiB, mapped files (LMDB, "
                         f"libraries) {(memory['rss_file_bytes'] or 0) / 2**20:.0f} MiB")  # fmt: skip
    if replay := keel.get("replay"):
        lines.append(f"  restart with {replay['ops_replayed']} ops in WAL: "
                     f"{replay['restart_until_ready_s']:.2f} s until /readyz = "
                     f"{replay['replay_ops_per_s']:.0f} ops/s; until indexed "
                     f"{replay.get('restart_until_indexed_s') or 0:.2f} s")  # fmt: skip
    return lines


def _wrk_lines(results: dict) -> list[str]:
    floor, capacity = results.get("http_floor") or {}, _get(results, "keel", "capacity") or {}
    if not floor and not capacity:
        return [f"server capacity under wrk: skipped {_because(results, 'floor')}"]
    ef = _get(results, "fixed_ef", "hnsw_ef")
    lines = [
        f"server capacity under wrk (1 thread, 8 connections, pre-encoded bodies; hnsw_ef {ef})",
        f"  {'':<40} {'q/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'recall':>7}  errors",
    ]
    for label, row in (("canned-answer floor: POST /points/query", floor.get("query")),
                       ("Keel: POST /points/query", capacity.get("query")),
                       ("Keel, empty engine: POST /points/query", capacity.get("ceiling")),
                       ("canned-answer floor: PUT 1 point", floor.get("upsert")),
                       ("Keel: PUT 1 point, wait=false", capacity.get("upsert"))):  # fmt: skip
        if row:
            errors = {k: v for k, v in row["errors"].items() if v} or "none"
            if row.get("recall_error"):
                errors = f"{errors}; recall not measured: {row['recall_error'][:200]}"
            lines.append(f"  {label:<40} {row['qps']:>9.0f} {row['latency_ms_p50']:>8} "
                         f"{row['latency_ms_p90']:>8} {row['latency_ms_p99']:>8} "
                         f"{_fmt(row.get('recall')):>7}  {errors}")  # fmt: skip
    return lines


def _unfiltered_qps(results: dict) -> float | None:
    """Keel's unfiltered QPS under wrk that the sweep's ratios divide by: the mean of the
    capacity run before the sweep and the run after it (either alone if the other is
    missing), so that the machine's drift during the sweep counts half each way."""
    runs = [
        _get(results, "keel", "capacity", "query"),
        _get(results, "keel", "sweep", "unfiltered_after"),
    ]
    found = [run["qps"] for run in runs if run]
    return sum(found) / len(found) if found else None


def _sweep_lines(results: dict) -> list[str]:
    sweep, edge = _get(results, "keel", "sweep"), _get(results, "qdrant_edge", "sweep")
    if not sweep and not edge:
        return [f"selectivity sweep: skipped {_because(results, 'sweep')}"]
    query = _get(results, "keel", "capacity", "query")
    ef = (sweep or edge)["hnsw_ef"]
    lines = [
        f"selectivity sweep: `sel < t` (range), hnsw_ef {ef}; Keel under wrk (8 connections),",
        "  qdrant-edge in process (one query per call); x = QPS / the system's own unfiltered QPS",
        f"  {'':<21} {'Keel q/s':>9} {'x':>6} {'recall':>7} {'p99 ms':>8} | {'edge q/s':>9} "
        + f"{'x':>6} {'recall':>7}",
    ]
    keel_base = _unfiltered_qps(results)
    edge_base = edge["unfiltered"]["qps"] if edge else None
    lines.append(_sweep_row("unfiltered", query, keel_base, edge and edge["unfiltered"],
                            edge_base))  # fmt: skip
    if after := _get(sweep or {}, "unfiltered_after"):
        lines.append(f"  {'unfiltered, after':<21} {after['qps']:>9.0f} "
                     f"{_ratio(after['qps'], keel_base):>6}   (x: against the mean of the two)")  # fmt: skip
    for selectivity in SELECTIVITIES:
        for kind, label in KIND_LABELS.items():
            keel_row = _get(sweep or {}, selectivity, kind)
            edge_row = _get(edge or {}, selectivity, kind)
            lines.append(_sweep_row(f"{selectivity} {label}", keel_row, keel_base, edge_row,
                                    edge_base))  # fmt: skip
    if sweep:
        lines.append(f"  Keel's integer index on `sel` built in {sweep['payload_index_build_s']} s")
    for selectivity in SELECTIVITIES:
        for kind, label in KIND_LABELS.items():
            lines += _error_lines(f"{selectivity} {label}", _get(sweep or {}, selectivity, kind))
    return lines


def _multivector_lines(results: dict) -> list[str]:
    mv = _get(results, "keel", "multivector")
    if not mv:
        return [f"multivector: skipped {_because(results, 'multivector')}"]
    shape = f"{mv['points']} points x {mv['rows']} rows x {mv['dim']} dims, Dot"
    full, rerank = mv["full_scan"], mv["rerank"]
    return [
        f"multivector MaxSim ({shape}; queries of {mv['query_rows']} rows; one client)",
        f"  upsert (batches of 500, wait=true)      {mv['upsert_points_per_s']:>9} points/s",
        (
            f"  full scan, exact                        {full['qps']:>9} q/s "
            f"p50 {full['p50_ms']} ms recall@10 {full['recall']}"
        ),
        (
            f"  dense prefetch of {rerank['candidates']} + MaxSim rerank  {rerank['qps']:>9} q/s "
            f"p50 {rerank['p50_ms']} ms"
        ),
        f"  numpy, same full scan in process         {mv['numpy_full_scan_qps']:>9} q/s",
    ]


def _error_lines(label: str, row: dict | None) -> list[str]:
    """What went wrong in a wrk row: non-2xx or socket errors, or a failed recall pass."""
    if not row:
        return []
    lines = []
    if row.get("has_errors"):
        lines.append(f"  {label}: wrk errors {row['errors']}")
    if row.get("recall_error"):
        lines.append(f"  {label}: recall not measured: {row['recall_error']}")
    return lines


def _sweep_row(label: str, keel_row, keel_base, edge_row, edge_base) -> str:
    left = (f"{keel_row['qps']:>9.0f} {_ratio(keel_row['qps'], keel_base):>6} "
            f"{_fmt(keel_row['recall']):>7} {keel_row['latency_ms_p99']:>8}" if keel_row
            else f"{'-':>9} {'':>6} {'':>7} {'':>8}")  # fmt: skip
    right = (f"{edge_row['qps']:>9.0f} {_ratio(edge_row['qps'], edge_base):>6} "
             f"{_fmt(edge_row['recall']):>7}" if edge_row else f"{'-':>9}")  # fmt: skip
    return f"  {label:<21} {left} | {right}"


def _read_cache(results: dict) -> str:
    memory = _get(results, "keel", "memory") or {}
    cache_bytes = memory.get("read_cache_bytes")
    if cache_bytes is None:
        return "not reported"
    points = results["config"]["vectors"]
    return f"{cache_bytes / 2**20:.1f} MiB = {cache_bytes / points:.0f} bytes/point"


def _because(results: dict, phase: str) -> str:
    reason = results["config"].get("skipped_because", {}).get(phase)
    return f"({reason})" if reason else "(--skip)"


def _ratio(value: float, base: float | None) -> str:
    return "-" if not base else f"{value / base:.2f}"


def _fmt(recall: float | None) -> str:
    return "-" if recall is None else f"{recall:.3f}"


def _cell(row: dict | None) -> str:
    return f"{'-':>18}" if not row else f"{row['qps']:>10.0f} {row['recall']:>7.3f}"


def _get(tree: dict, *keys: str):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree
