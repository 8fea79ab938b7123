"""The report: targets as ratios measured in one run, a table on stdout, JSON, a PNG plot.

Owns: the issue's targets and how each ratio is taken from the results, the table's layout,
writing results.json and bench.png. Not here: measuring anything.

A target is reported PASS or MISS, never asserted: the machine may be shared and noisy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RECALL_TARGET = 0.95
HEADLINE_CLIENTS = "8"  # the concurrency at which single-vector search meets its target


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
        _small_vs_fsync(results),
        _replay(results),
        _rss(results),
    ]


def write_json(results: dict, found: list[Target], path: Path) -> None:
    document = {**results, "targets": {t.name: t.as_json() for t in found}}
    path.write_text(json.dumps(document, indent=2, default=str))


def format_table(results: dict, found: list[Target]) -> str:
    """The table printed on stdout: config, per-system numbers, then the targets."""
    lines = [f"config: {json.dumps(results['config'])}", ""]
    lines += _baseline_lines(results) + [""] + _keel_lines(results) + [""]
    lines.append(f"{'target':<58} {'measured':>10} {'bound':>8}  verdict")
    for target in found:
        value = "-" if target.value is None else f"{target.value:.2f}"
        bound = f"{'>=' if target.is_min else '<='}{target.bound:g}"
        lines.append(f"{target.goal:<58} {value:>10} {bound:>8}  {target.verdict}")
        lines.append(f"    {target.detail}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """bench.png: recall@10 vs QPS per system (left), search latency percentiles (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    for label, points in _recall_curves(results).items():
        if points:
            qps, recall = zip(*points)
            left.plot(qps, recall, marker="o", label=label)
    floor = results.get("http_floor") or {}
    for clients, row in floor.items():
        left.axvline(row["qps"], linestyle=":", color="grey")
        left.text(row["qps"], 0.02, f" HTTP floor c={clients}", rotation=90, color="grey",
                  fontsize=7, transform=left.get_xaxis_transform())  # fmt: skip
    left.set_xscale("log")
    left.set_xlabel("queries/s (log)")
    left.set_ylabel("recall@10")
    left.set_title("recall vs throughput (points: hnsw_ef 16..256)")
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.3)
    labels, p50, p90, p99 = _latency_bars(results)
    positions = range(len(labels))
    right.bar([p - 0.25 for p in positions], p50, width=0.25, label="p50")
    right.bar(list(positions), p90, width=0.25, label="p90")
    right.bar([p + 0.25 for p in positions], p99, width=0.25, label="p99")
    right.set_xticks(list(positions), labels, rotation=30, ha="right", fontsize=8)
    right.set_ylabel("latency ms")
    right.set_title("single-vector search latency (Keel at the ef meeting recall 0.95)")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def chosen_ef(by_ef: dict) -> str | None:
    """The ef with the highest QPS among those with recall >= 0.95 (None if none)."""
    passing = [(row["qps"], ef) for ef, row in by_ef.items() if (row.get("recall") or 0) >= 0.95]
    return max(passing)[1] if passing else None


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
    search = _get(results, "keel", "search", HEADLINE_CLIENTS)
    floor = _get(results, "http_floor", HEADLINE_CLIENTS)
    value, detail = None, "skipped"
    if search and floor:
        ef = chosen_ef(search)
        if ef is None:
            value, detail = 0.0, "no hnsw_ef reached recall@10 >= 0.95"
        else:
            value = search[ef]["qps"] / floor["qps"]
            detail = (f"{HEADLINE_CLIENTS} clients, hnsw_ef={ef} recall "
                      f"{search[ef]['recall']:.3f}: Keel {search[ef]['qps']:.0f} q/s vs "
                      f"floor {floor['qps']:.0f} q/s")  # fmt: skip
    return Target("search_vs_floor", "search QPS at recall>=0.95 / HTTP floor QPS",
                  True, 0.9, value, detail)  # fmt: skip


def _batch_vs_hnswlib(results: dict) -> Target:
    batch, raw = _get(results, "keel", "query_batch"), results.get("hnswlib")
    value, detail = None, "skipped"
    if batch and raw:
        ef = chosen_ef(batch)
        if ef is None:
            value, detail = 0.0, "no hnsw_ef reached recall@10 >= 0.95"
        else:
            raw_row = raw["by_ef"][ef]["batched"]
            value = batch[ef]["qps"] / raw_row["qps"]
            detail = (f"hnsw_ef={ef}: Keel query/batch {batch[ef]['qps']:.0f} q/s (recall "
                      f"{batch[ef]['recall']:.3f}) vs hnswlib batch {raw_row['qps']:.0f} q/s "
                      f"(recall {raw_row['recall']:.3f})")  # fmt: skip
    return Target("batch_vs_hnswlib", "query/batch (100 per request) / raw hnswlib batch",
                  True, 0.7, value, detail)  # fmt: skip


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
                  f"+ index {raw['index_bytes'] / 2**20:.0f} MiB (hnswlib's saved index)")  # fmt: skip
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
        lines.append(f"  chroma add (batches of 1000)  {chroma['add_points_per_s']:>10.0f} "
                     f"points/s; query {chroma['query_qps']:.0f} q/s ({chroma['query_clients']} "
                     f"clients, ef_search 100) recall {chroma['query_recall']:.3f} p50 "
                     f"{chroma['query_latency_ms_p50']} ms p99 "
                     f"{chroma['query_latency_ms_p99']} ms")  # fmt: skip
    elif chroma:
        lines.append(f"  chroma: skipped: {chroma.get('skipped')}")
    for clients, row in (results.get("http_floor") or {}).items():
        lines.append(f"  HTTP floor, {clients:>2} clients        {row['qps']:>10.0f} q/s "
                     f"p50 {row['latency_ms_p50']} ms p99 {row['latency_ms_p99']} ms")  # fmt: skip
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
    if flt := keel.get("filtered"):
        for selectivity in ("1%", "50%"):
            row = flt[selectivity]
            lines.append(f"  filtered {selectivity:>3} (keyword index), ef {flt['hnsw_ef']}, "
                         f"8 clients {row['qps']:>7.0f} q/s recall {row['recall']:.3f} "
                         f"p99 {row['latency_ms_p99']} ms")  # fmt: skip
    if memory := keel.get("memory"):
        lines.append(f"  peak RSS {(memory['peak_rss_bytes'] or 0) / 2**20:.0f} MiB; idle server "
                     f"{(memory.get('idle_peak_rss_bytes') or 0) / 2**20:.0f} MiB")  # fmt: skip
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


def _recall_curves(results: dict) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {}
    for system in ("hnswlib", "qdrant_edge"):
        for mode in ("single", "batched"):
            rows = (_get(results, system, "by_ef") or {}).values()
            curves[f"{system} {mode}"] = [(r[mode]["qps"], r[mode]["recall"]) for r in rows]
    for clients, by_ef in (_get(results, "keel", "search") or {}).items():
        curves[f"keel search c={clients}"] = [(r["qps"], r["recall"]) for r in by_ef.values()]
    batch = _get(results, "keel", "query_batch") or {}
    curves["keel query/batch x100"] = [(r["qps"], r["recall"]) for r in batch.values()]
    chroma = results.get("chroma") or {}
    if "query_qps" in chroma:
        curves["chroma c=8 (ef 100)"] = [(chroma["query_qps"], chroma["query_recall"])]
    return curves


def _latency_bars(results: dict) -> tuple[list[str], list, list, list]:
    labels, p50, p90, p99 = [], [], [], []
    for clients, by_ef in (_get(results, "keel", "search") or {}).items():
        ef = chosen_ef(by_ef) or next(iter(by_ef))
        row = by_ef[ef]
        labels.append(f"keel c={clients} ef={ef}")
        p50.append(row["latency_ms_p50"])
        p90.append(row["latency_ms_p90"])
        p99.append(row["latency_ms_p99"])
    for clients, row in (results.get("http_floor") or {}).items():
        labels.append(f"floor c={clients}")
        p50.append(row["latency_ms_p50"])
        p90.append(row["latency_ms_p90"])
        p99.append(row["latency_ms_p99"])
    return labels, p50, p90, p99


def _cell(row: dict | None) -> str:
    return f"{'-':>18}" if not row else f"{row['qps']:>10.0f} {row['recall']:>7.3f}"


def _get(tree: dict, *keys: str):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree
