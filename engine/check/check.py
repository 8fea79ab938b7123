"""`keel check`: verify a stopped storage directory end to end, and repair what is derived.

Owns: the offline check of every collection — config, WAL framing, CRCs and record decoding,
the LMDB store (engine/check/store.py), that WAL and LMDB meet (no op missing between them), and
that each HNSW checkpoint holds exactly the labels LMDB says it must, with the same vectors —
and `repair`, which rebuilds what can be recomputed: index checkpoints and the derived LMDB
databases (payload indexes, sparse inverted indexes).
Not here: the command line (server/commands/check_cli.py), starting a server.

Findings come in three severities. DAMAGE: something Keel wrote is not what it wrote, and
data may be lost (a CRC failure in a sealed WAL segment or an LMDB value, a missing
segment, a broken id map). REPAIRABLE: derived data disagrees with the data it derives from
(`--repair` rebuilds it from LMDB). NOTE: what a crash leaves and startup handles by design
(a torn WAL tail, an index checkpoint ahead of LMDB after a power loss).
"""

from __future__ import annotations

import enum
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hnswlib
import lmdb
import numpy as np

from engine.check.store import StoreFacts, StoreView
from engine.collection import Collection
from engine.errors import CorruptionError
from engine.filters.conditions import FILTER_TYPES
from engine.limits import EngineSettings
from engine.ops import CollectionConfig, Distance
from engine.store.store import STORE_FORMAT, Store
from engine.vectors.hnsw import has_graph, remove_checkpoint
from engine.wal import format as wal_format
from engine.wal.op_codec import decode_op

VECTOR_TOLERANCE = 1e-4  # hnswlib keeps float32 copies; cosine ones normalised
LABELS_COMPARED_PER_CHUNK = 10_000

Progress = Callable[[str], None]


class Severity(enum.Enum):
    DAMAGE = "damage"
    REPAIRABLE = "repairable"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    collection_name: str  # "" for the storage directory itself
    severity: Severity
    text: str  # names the file, database or key


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    collections_count: int = 0
    points_count: int = 0
    wal_records_count: int = 0
    index_vectors_count: int = 0

    @property
    def is_damaged(self) -> bool:
        return any(f.severity is not Severity.NOTE for f in self.findings)

    @property
    def is_repairable(self) -> bool:
        """Something is wrong, and all of it is derived data `repair` rebuilds."""
        return self.is_damaged and all(f.severity is not Severity.DAMAGE for f in self.findings)


def check_storage(
    storage_path: Path, progress: Progress, collection_names: list[str] | None = None
) -> CheckReport:
    """Check every collection (or the named ones) of a storage nobody else has open."""
    report = CheckReport()
    collections_dir = storage_path / "collections"
    if not collections_dir.is_dir():
        report.findings.append(
            Finding("", Severity.DAMAGE, f"{collections_dir} is missing: not a Keel storage")
        )
        return report
    present = sorted(p.name for p in collections_dir.iterdir() if p.is_dir())
    names = present if collection_names is None else collection_names
    for name in names:
        if name not in present:
            report.findings.append(Finding(name, Severity.DAMAGE, "no such collection"))
            continue
        progress(f"checking collection {name}")
        _check_collection(collections_dir / name, name, report, progress)
        report.collections_count += 1
    _check_aliases(storage_path, present, report)
    return report


async def repair(
    storage_path: Path, report: CheckReport, settings: EngineSettings, progress: Progress
) -> list[str]:
    """Rebuild the derived data of each collection `report` found REPAIRABLE problems in:
    the payload and sparse inverted indexes from LMDB's sealed values, then every HNSW graph
    from LMDB (its checkpoints removed, the collection opened — which replays the WAL and
    builds the graphs — and closed, which writes fresh checkpoints). Returns what it did.
    Refuses (AssertionError) a report with DAMAGE: rebuilding from damaged data spreads it."""
    assert report.is_repairable, "repair runs only on a report whose problems are all derived"
    names = sorted(
        {f.collection_name for f in report.findings if f.severity is Severity.REPAIRABLE}
    )
    done = []
    for name in names:
        directory = storage_path / "collections" / name
        progress(f"repairing collection {name}")
        config = CollectionConfig.from_json_dict(
            json.loads((directory / "config.json").read_bytes())
        )
        for vector_name in config.vectors:
            if remove_checkpoint(directory / "index", vector_name):
                done.append(f"{name}: index checkpoint of vector {vector_name!r} removed")
        store = Store(
            directory / "lmdb",
            list(config.vectors),
            settings.lmdb_map_bytes_initial,
            tuple(config.sparse_vectors),
            config.multivector_dims(),
        )
        try:
            store.rebuild_derived()
        finally:
            store.close()
        done.append(f"{name}: payload indexes and sparse inverted indexes rebuilt from LMDB")
        collection = await Collection.open(directory, name, settings)
        try:
            await collection.wait_indexed()
        finally:
            await collection.close()
        done.append(f"{name}: vector indexes rebuilt from LMDB and checkpointed")
    return done


def _check_collection(directory: Path, name: str, report: CheckReport, progress: Progress) -> None:
    def add(severity: Severity, text: str) -> None:
        report.findings.append(Finding(name, severity, text))

    config_path = directory / "config.json"
    try:
        config = CollectionConfig.from_json_dict(json.loads(config_path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        add(Severity.DAMAGE, f"{config_path} unreadable: {error}")
        return
    wal_range = _check_wal(directory / "wal", add, report)
    try:
        with StoreView(directory / "lmdb", config) as view:
            config = view.config  # with LMDB's vector names
            store_check = view.check(progress)
            facts = store_check.facts
            severity = Severity.REPAIRABLE if store_check.is_derived_only else Severity.DAMAGE
            for problem in store_check.problems:
                add(severity, f"{directory / 'lmdb'}: {problem}")
            is_empty = facts.store_format == -1 and facts.applied_op_id == -1
            if facts.store_format != STORE_FORMAT and not is_empty:
                add(
                    Severity.DAMAGE,
                    f"{directory / 'lmdb'}: store format {max(facts.store_format, 0)}, "
                    f"this Keel reads format {STORE_FORMAT}",
                )
            report.points_count += facts.points_count
            _check_wal_meets_store(wal_range, facts, directory, add)
            for vector_name, vector_config in config.vectors.items():
                if has_graph(vector_config, config.hnsw):
                    _check_checkpoint(
                        directory / "index", vector_name, config, view, facts, add, report
                    )
    except lmdb.Error as error:
        add(Severity.DAMAGE, f"{directory / 'lmdb'}: LMDB cannot read it: {error}")
    except CorruptionError as error:  # the vector_schema record fails its checksum
        add(Severity.DAMAGE, f"{directory / 'lmdb'}: {error}")


def _check_wal(
    directory: Path, add: Callable[[Severity, str], None], report: CheckReport
) -> tuple[int, int] | None:
    """(first op id, last op id) the WAL holds; None if it cannot be read."""
    try:
        segments = wal_format.list_segments(directory)
    except (CorruptionError, OSError) as error:
        add(Severity.DAMAGE, f"{directory}: {error}")
        return None
    if not segments:
        add(Severity.DAMAGE, f"{directory}: no WAL segment")
        return None
    expected_op_id = segments[0][0]
    for position, (first_op_id, path) in enumerate(segments):
        if first_op_id != expected_op_id:
            add(Severity.DAMAGE, f"{path}: starts at op {first_op_id}, expected {expected_op_id}")
        result = wal_format.scan_batches(path.read_bytes(), first_op_id)
        is_last = position == len(segments) - 1
        if result.end is wal_format.ScanEnd.CORRUPT or (
            result.end is wal_format.ScanEnd.TORN_TAIL and not is_last
        ):
            add(Severity.DAMAGE, f"{path}: {result.problem}")
        elif result.end is wal_format.ScanEnd.TORN_TAIL:
            add(Severity.NOTE, f"{path}: torn tail, cut at start: {result.problem}")
        for op_id, body in result.records:
            try:
                decode_op(body, FILTER_TYPES)
            except CorruptionError as error:
                add(Severity.DAMAGE, f"{path}: record op {op_id} does not decode: {error}")
        report.wal_records_count += len(result.records)
        expected_op_id = result.records[-1][0] + 1 if result.records else first_op_id
    return segments[0][0], expected_op_id - 1


def _check_wal_meets_store(
    wal_range: tuple[int, int] | None,
    facts: StoreFacts,
    directory: Path,
    add: Callable[[Severity, str], None],
) -> None:
    """Replay needs every op after LMDB's applied op in the WAL, and no op id lost."""
    if wal_range is None:
        return
    first_op_id, last_op_id = wal_range
    if first_op_id > facts.applied_op_id + 1:
        add(
            Severity.DAMAGE,
            f"{directory / 'wal'}: starts at op {first_op_id} but LMDB applied only up to op "
            f"{facts.applied_op_id}: operations in between are lost",
        )
    if last_op_id < facts.applied_op_id:
        add(
            Severity.DAMAGE,
            f"{directory / 'wal'}: ends at op {last_op_id} but LMDB applied op "
            f"{facts.applied_op_id}: the WAL's tail is missing",
        )


def _check_checkpoint(
    directory: Path,
    name: str,
    config: CollectionConfig,
    view: StoreView,
    facts: StoreFacts,
    add: Callable[[Severity, str], None],
    report: CheckReport,
) -> None:
    """One vector's HNSW checkpoint: file CRC, then labels and vectors against LMDB."""
    meta_path = directory / f"v-{name.encode().hex()}.json"
    if not meta_path.exists():
        return  # none yet: startup builds the graph from LMDB
    try:
        meta = json.loads(meta_path.read_bytes())
        data = (directory / meta["file"]).read_bytes()
        if zlib.crc32(data) != meta["crc32"] or len(data) != meta["bytes"]:
            raise ValueError(f"{meta['file']} fails its CRC")
    except (OSError, ValueError, KeyError, TypeError) as error:
        add(Severity.REPAIRABLE, f"{meta_path}: index checkpoint unusable: {error}")
        return
    if meta["op_id"] > facts.applied_op_id:
        add(Severity.NOTE, f"{meta_path}: checkpoint ahead of LMDB (power loss), rebuilt at start")
        return
    vector_config = config.vectors[name]
    space = {Distance.COSINE: "cosine", Distance.DOT: "ip", Distance.EUCLID: "l2"}
    graph = hnswlib.Index(space=space[vector_config.distance], dim=vector_config.size)
    graph.load_index(str(directory / meta["file"]), max_elements=0)
    in_graph = _live_labels(graph)
    expected = {label for label in facts.live_labels.get(name, {}) if label < meta["next_label"]}
    expected |= {
        label
        for label, (death_op_id, names) in facts.dead_labels.items()
        if label < meta["next_label"] and death_op_id > meta["op_id"] and name in names
    }
    missing, extra = expected - in_graph, in_graph - expected
    if missing or extra:
        add(
            Severity.REPAIRABLE,
            f"{meta_path}: graph has {len(extra)} labels LMDB does not and lacks {len(missing)} "
            f"it has (e.g. {sorted(missing | extra)[:5]})",
        )
    if len(in_graph) != meta["live_count"]:
        add(Severity.REPAIRABLE, f"{meta_path}: live_count {meta['live_count']} != {len(in_graph)}")
    live = sorted(in_graph & set(facts.live_labels.get(name, {})))
    for start in range(0, len(live), LABELS_COMPARED_PER_CHUNK):
        chunk = live[start : start + LABELS_COMPARED_PER_CHUNK]
        stored = view.vectors(name, chunk)
        if vector_config.distance is Distance.COSINE:
            norms = np.linalg.norm(stored, axis=1, keepdims=True)
            stored = stored / np.where(norms == 0, 1, norms)
        indexed = np.asarray(graph.get_items(chunk), dtype=np.float32)
        wrong = np.flatnonzero(np.abs(indexed - stored).max(axis=1) > VECTOR_TOLERANCE)
        if len(wrong):
            labels = [chunk[i] for i in wrong[:5]]
            add(
                Severity.REPAIRABLE,
                f"{meta_path}: {len(wrong)} vectors differ from LMDB (labels {labels})",
            )
    report.index_vectors_count += len(in_graph)


def _live_labels(graph: hnswlib.Index) -> set[int]:
    """Labels of the graph's nodes not marked deleted (hnswlib refuses get_items on those)."""
    live = set()
    for label in graph.get_ids_list():
        try:
            graph.get_items([label])
        except RuntimeError:
            continue
        live.add(int(label))
    return live


def _check_aliases(storage_path: Path, present: list[str], report: CheckReport) -> None:
    path = storage_path / "aliases.json"
    if not path.exists():
        return
    try:
        aliases = json.loads(path.read_bytes())
        assert isinstance(aliases, dict)
    except (OSError, ValueError, AssertionError):
        report.findings.append(Finding("", Severity.DAMAGE, f"{path}: not a JSON object"))
        return
    for alias, collection_name in sorted(aliases.items()):
        if collection_name not in present:
            report.findings.append(
                Finding("", Severity.NOTE, f"{path}: alias {alias!r} of a missing collection")
            )
