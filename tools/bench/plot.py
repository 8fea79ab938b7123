"""bench.png: recall vs QPS per system, the selectivity sweep, and latency under wrk.

Owns: drawing the three panels from results.json's shape (matplotlib, imported only here and
only when called). Not here: any number's measurement or any target (report.py).
"""

from __future__ import annotations

from pathlib import Path

from tools.bench.data import SELECTIVITIES
from tools.bench.report import FILTERED_RATIO_MIN, KIND_LABELS


def plot(results: dict, path: Path) -> None:
    """Write the PNG: recall@10 vs queries/s (left), filtered / unfiltered QPS per selectivity
    (middle), latency percentiles under wrk (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(20, 6))
    _recall_panel(left, results)
    _sweep_panel(middle, results)
    _latency_panel(right, results)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _recall_panel(axes, results: dict) -> None:
    for label, points in _recall_curves(results).items():
        if points:
            qps, recall = zip(*points)
            axes.plot(qps, recall, marker="o", label=label)
    floor = _get(results, "http_floor", "query")
    if floor:
        axes.axvline(floor["qps"], linestyle=":", color="grey")
        axes.text(floor["qps"], 0.02, " canned-answer floor (wrk)", rotation=90, color="grey",
                  fontsize=7, transform=axes.get_xaxis_transform())  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("queries/s (log)")
    axes.set_ylabel("recall@10")
    axes.set_title("recall vs throughput (points: hnsw_ef 16..256)")
    if axes.get_legend_handles_labels()[0]:  # nothing to label when every curve was skipped
        axes.legend(fontsize=7)
    axes.grid(True, which="both", alpha=0.3)


def _sweep_panel(axes, results: dict) -> None:
    keel, edge = _get(results, "keel", "sweep"), _get(results, "qdrant_edge", "sweep")
    keel_base = (_get(results, "keel", "capacity", "query") or {}).get("qps")
    edge_base = _get(edge or {}, "unfiltered", "qps")
    series = [("Keel", keel, keel_base), ("qdrant-edge", edge, edge_base)]
    names = list(SELECTIVITIES)
    width = 0.2
    offset = -1.5
    for system, sweep, base in series:
        for kind, label in KIND_LABELS.items():
            ratios = [(_get(sweep or {}, name, kind, "qps") or 0) / base if base else 0
                      for name in names]  # fmt: skip
            axes.bar([i + offset * width for i in range(len(names))], ratios, width=width,
                     label=f"{system}, {label}")  # fmt: skip
            offset += 1
    axes.axhline(FILTERED_RATIO_MIN, linestyle="--", color="red", linewidth=0.8)
    axes.axhline(1.0, linestyle=":", color="red", linewidth=0.8)
    axes.set_xticks(range(len(names)), [f"{name} match" for name in names])
    axes.set_yscale("log")
    axes.set_ylabel("filtered QPS / own unfiltered QPS (log)")
    axes.set_title("selectivity sweep (targets: 0.5x dashed, 1.0x dotted)")
    axes.legend(fontsize=7)
    axes.grid(True, axis="y", which="both", alpha=0.3)


def _latency_panel(axes, results: dict) -> None:
    rows = [("floor query", _get(results, "http_floor", "query")),
            ("Keel query", _get(results, "keel", "capacity", "query")),
            ("floor upsert", _get(results, "http_floor", "upsert")),
            ("Keel upsert", _get(results, "keel", "capacity", "upsert"))]  # fmt: skip
    sweep = _get(results, "keel", "sweep") or {}
    for name in SELECTIVITIES:
        for kind, label in KIND_LABELS.items():
            rows.append((f"Keel {name} {label}", _get(sweep, name, kind)))
    rows = [(label, row) for label, row in rows if row]
    positions = range(len(rows))
    for shift, key in ((-0.25, "latency_ms_p50"), (0.0, "latency_ms_p90"),
                       (0.25, "latency_ms_p99")):  # fmt: skip
        axes.bar([p + shift for p in positions], [row[key] for _, row in rows], width=0.25,
                 label=key.removeprefix("latency_ms_"))  # fmt: skip
    axes.set_xticks(list(positions), [label for label, _ in rows], rotation=40, ha="right",
                    fontsize=7)  # fmt: skip
    axes.set_yscale("log")
    axes.set_ylabel("latency ms (log)")
    axes.set_title("latency under wrk, 8 connections")
    axes.legend()


def _recall_curves(results: dict) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {}
    for system in ("hnswlib", "qdrant_edge"):
        for mode in ("single", "batched"):
            rows = (_get(results, system, "by_ef") or {}).values()
            curves[f"{system} {mode}"] = [(r[mode]["qps"], r[mode]["recall"]) for r in rows]
    for clients, by_ef in (_get(results, "keel", "search") or {}).items():
        curves[f"keel search c={clients} (aiohttp client)"] = [
            (r["qps"], r["recall"]) for r in by_ef.values()
        ]
    batch = _get(results, "keel", "query_batch") or {}
    curves["keel query/batch x100"] = [(r["qps"], r["recall"]) for r in batch.values()]
    query = _get(results, "keel", "capacity", "query")
    if query:
        curves["keel /points/query (wrk)"] = [(query["qps"], query["recall"])]
    chroma = results.get("chroma") or {}
    if "query_qps" in chroma:
        curves["chroma c=8 (ef 100)"] = [(chroma["query_qps"], chroma["query_recall"])]
    return curves


def _get(tree, *keys):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree
