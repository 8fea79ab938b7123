"""Today's code reads the on-disk formats Keel wrote before: golden WAL segments and LMDB stores.

Goal: a refactor that moves or renames what the formats name (op_codec.py tags filters by
class name and init fields; FILTER_TYPES is built from engine/filters.py's namespace) must
fail here, not in a user's recovery. Every round-trip test stays green through such a
change, because the encoder and the decoder change together; these files do not.

Method: tests/golden/storage/ is a storage directory written once by
tests/golden/make_golden.py (never by the tests): two collections whose WAL covers every
op kind and every filter condition class, and a compact LMDB copy taken partway through.
The expectations are literal data in golden_expected.py. The tests
- parse each segment by hand from the documented layout and compare headers, CRCs and
  sha256 with literal values, and check that wal_format scans and re-frames it byte for byte;
- decode every record and compare it with the literal op of that op id;
- open each golden LMDB store directly and compare every point, vector, payload index and
  dead label;
- open the storage with Catalog (recovery replays the WAL over the golden LMDB, or over an
  empty one) and compare points, payload indexes and filtered reads;
- run `keel check` over it.
Never regenerate the files to make these pass (make_golden.py says what to do instead).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import typing
import uuid
import zlib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest

from engine.catalog import Catalog
from engine.check.check import check_storage
from engine.filters.conditions import (
    FILTER_TYPES,
    DatetimeRange,
    FieldCondition,
    Filter,
    GeoPoint,
    GeoRadius,
    MatchValue,
    Range,
)
from engine.filters.payload_path import PayloadPath
from engine.limits import EngineSettings
from engine.ops import (
    CollectionConfig,
    Operation,
    PayloadMode,
    PayloadSelector,
    SparseVector,
    UpdateMode,
    VectorSelector,
    point_id_from_key,
)
from engine.store.store import Store
from engine.wal import format as wal_format
from engine.wal.op_codec import decode_op
from tests.unit import test_golden_vector_names as golden_vector_names
from tests.unit.golden_expected import (
    CONFIG_JSON,
    FILTER_CLASS_NAMES,
    OPS,
    REPLAYED,
    SEGMENTS,
    STORES,
    UUID_1,
)

GOLDEN_STORAGE = Path(__file__).resolve().parents[1] / "golden" / "storage"
COLLECTION_NAMES = ["golden", "golden_unnamed"]
# wal_format.py's layout, restated: records_bytes, crc32, first_op_id, count; then records of
# body_bytes, op_id, body. The CRC covers first_op_id, count and the records.
BATCH_HEADER_LAYOUT = "<IIQI"
RECORD_HEADER_LAYOUT = "<IQ"
OP_TAGS = {
    "upsert",
    "delete",
    "payload",
    "vectors",
    "delete_vectors",
    "create_index",
    "delete_index",
}
# Pinned by the later golden set of vector-name ops (tests/unit/test_golden_vector_names.py).
LATER_OP_TAGS = {"create_vector_name", "delete_vector_name"}
STORE_MAP_BYTES = 1 << 20
ALL_PAYLOAD = PayloadSelector(True)
ALL_VECTORS = VectorSelector(True)
# Filtered reads of the replayed `golden` collection, one per payload index type (the planner
# reads the golden pindex entries for them), with the ids they must return.
FILTERED_READS = [
    (FieldCondition(PayloadPath(("city",)), match=MatchValue("Berlin")), [1, UUID_1]),
    (FieldCondition(PayloadPath(("count",)), range=Range(gte=10.0)), [5, UUID_1]),
    (FieldCondition(PayloadPath(("price",)), range=Range(lt=10.0)), [1]),
    (FieldCondition(PayloadPath(("is_active",)), match=MatchValue(True)), [1]),
    (FieldCondition(PayloadPath(("meta", "color")), match=MatchValue("red")), [1]),
    (FieldCondition(PayloadPath(("ref",)), match=MatchValue(str(UUID_1))), [UUID_1]),
    # instant key of 2025-01-01T00:00:00Z
    (
        FieldCondition(PayloadPath(("created_at",)), range=DatetimeRange(gte=3471379200000000000)),
        [9],
    ),
    (
        FieldCondition(
            PayloadPath(("location",)),
            geo_radius=GeoRadius(center=GeoPoint(lon=12.5, lat=41.9), radius_m=1000.0),
        ),
        [9],
    ),
]


# ---- the WAL -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COLLECTION_NAMES)
def test_golden_wal_segment_has_the_pinned_frames(name: str) -> None:
    """Parse the segment by hand from the documented layout: every batch header, CRC and
    record must be the pinned one; then wal_format must scan it CLEAN to the same records
    and frame_batch must rebuild every batch byte for byte."""
    file_name, size_bytes, sha256, batches = SEGMENTS[name]
    data = _segment_bytes(name)
    assert len(data) == size_bytes
    assert hashlib.sha256(data).hexdigest() == sha256, "the golden segment was changed"
    assert wal_format.segment_name(0) == file_name
    assert wal_format.op_id_from_segment_name(Path(file_name)) == 0
    assert wal_format.BATCH_HEADER.format == BATCH_HEADER_LAYOUT
    assert wal_format.RECORD_HEADER.format == RECORD_HEADER_LAYOUT

    parsed_batches, records = _parse_segment_by_hand(data)
    assert parsed_batches == batches
    scan = wal_format.scan_batches(data, 0)
    assert scan.end is wal_format.ScanEnd.CLEAN, scan.problem
    assert scan.valid_bytes == len(data)
    assert scan.records == records
    for offset, first_op_id, count, records_bytes, _crc in batches:
        bodies = [body for op_id, body in records if first_op_id <= op_id < first_op_id + count]
        end = offset + struct.calcsize(BATCH_HEADER_LAYOUT) + records_bytes
        assert wal_format.frame_batch(first_op_id, bodies) == data[offset:end], offset


@pytest.mark.parametrize("name", COLLECTION_NAMES)
def test_every_golden_wal_record_decodes_to_the_pinned_op(name: str) -> None:
    _, records = _parse_segment_by_hand(_segment_bytes(name))
    assert [op_id for op_id, _ in records] == list(range(len(OPS[name])))
    for op_id, body in records:
        assert plain(decode_op(body, FILTER_TYPES)) == plain(OPS[name][op_id]), f"op {op_id}"


def test_golden_filters_name_classes_the_engine_still_decodes() -> None:
    """The golden records name these classes; FILTER_TYPES must still hold every one of them
    under that name, or a WAL written before the rename can't be replayed."""
    tags = set()
    for name in COLLECTION_NAMES:
        for _, body in _parse_segment_by_hand(_segment_bytes(name))[1]:
            tags |= _class_tags(cbor2.loads(body))
    assert tags == FILTER_CLASS_NAMES
    missing = sorted(FILTER_CLASS_NAMES - FILTER_TYPES.keys())
    assert not missing, f"old WAL records name {missing}, which decode_op no longer knows"


def test_the_golden_wal_covers_every_op_and_filter_class_of_today() -> None:
    """A new op type, mode or filter class must be pinned too: add a golden set for it
    (tests/golden/make_golden.py says how), never rewrite the existing files."""
    ops = [op for name in COLLECTION_NAMES for op in OPS[name]]
    ops += list(golden_vector_names.VECTOR_NAME_OPS.values())
    assert {type(op) for op in ops} == set(typing.get_args(Operation))
    assert {op.mode for op in ops if hasattr(op, "mode")} == set(PayloadMode)
    assert {op.update_mode for op in ops if hasattr(op, "update_mode")} == set(UpdateMode)
    logged_classes = {name for name, cls in FILTER_TYPES.items() if is_dataclass(cls)}
    assert logged_classes - FILTER_CLASS_NAMES == set(), "filter classes not in the golden WAL"
    tags = set()
    for name in COLLECTION_NAMES:
        tags |= {
            cbor2.loads(body)["t"] for _, body in _parse_segment_by_hand(_segment_bytes(name))[1]
        }
    assert tags == OP_TAGS
    later_tags = {body["t"] for body in golden_vector_names.BODIES.values()}
    assert tags | later_tags == OP_TAGS | LATER_OP_TAGS


# ---- LMDB and config -----------------------------------------------------------------------


@pytest.mark.parametrize("name", COLLECTION_NAMES)
def test_golden_config_reads_back(name: str) -> None:
    data = json.loads((GOLDEN_STORAGE / "collections" / name / "config.json").read_bytes())
    assert data == CONFIG_JSON[name]
    assert CollectionConfig.from_json_dict(data).to_json_dict() == data


@pytest.mark.parametrize("name", COLLECTION_NAMES)
def test_golden_lmdb_store_reads_the_pinned_points(name: str, tmp_path: Path) -> None:
    """Open the golden data.mdb (a copy: opening creates lock.mdb) with Store and read
    every point, vector, payload index and dead label."""
    config = _golden_config(name)
    (tmp_path / "lmdb").mkdir()
    shutil.copyfile(
        GOLDEN_STORAGE / "collections" / name / "lmdb" / "data.mdb", tmp_path / "lmdb" / "data.mdb"
    )
    store = Store(
        tmp_path / "lmdb", list(config.vectors), STORE_MAP_BYTES, tuple(config.sparse_vectors)
    )
    try:
        expected = STORES[name]
        assert store.applied_op_id == expected["applied_op_id"]
        assert store.next_label == expected["next_label"]
        indexes = {
            field_name: [spec.schema_type, spec.params, spec.points_count]
            for field_name, spec in store.index_specs.items()
        }
        assert plain(indexes) == plain(expected["indexes"])
        points = {
            point_id_from_key(point.key): [
                point.label,
                point.version,
                point.payload,
                _stored_vectors(store, config, point.label, point.names),
            ]
            for point in store.iter_points(None)
        }
        assert plain(points) == plain(expected["points"])
        assert [list(dead) for dead in store.dead_labels()] == expected["dead"]
    finally:
        store.close()


# ---- recovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("is_lmdb_kept", [True, False], ids=["over_golden_lmdb", "over_empty_lmdb"])
async def test_catalog_replays_the_golden_storage_to_the_pinned_state(
    tmp_path: Path, is_lmdb_kept: bool
) -> None:
    """Open a copy of the golden storage with Catalog: recovery replays the WAL records past
    the golden LMDB's applied op (or all of them over an empty LMDB), and the collections
    must then hold exactly the pinned points and payload indexes."""
    storage = _copy_golden_storage(tmp_path)
    if not is_lmdb_kept:
        for name in COLLECTION_NAMES:
            (storage / "collections" / name / "lmdb" / "data.mdb").unlink()
    catalog = Catalog(storage, EngineSettings())
    await catalog.open()
    try:
        for name in COLLECTION_NAMES:
            collection = catalog.get(name)
            expected = REPLAYED[name]
            first_op_id = STORES[name]["applied_op_id"] + 1 if is_lmdb_kept else 0
            assert collection.ops_replayed_count == expected["applied_op_id"] + 1 - first_op_id
            assert collection.applied_op_id == expected["applied_op_id"]
            records, next_offset = await collection.scroll(
                None, 100, None, ALL_PAYLOAD, ALL_VECTORS
            )
            assert next_offset is None
            points = {
                record.id: [record.payload, _plain_vectors(record.vectors)] for record in records
            }
            assert plain(points) == plain(expected["points"])
            # The order of payload indexes is not part of the format (it follows the order
            # they were created in this process, or read from LMDB).
            indexes = {
                spec.field_name: [spec.schema_type, spec.params, spec.points_count]
                for spec in sorted(collection.stats().payload_indexes, key=lambda s: s.field_name)
            }
            assert plain(indexes) == plain(dict(sorted(expected["indexes"].items())))
        golden = catalog.get("golden")
        for condition, expected_ids in FILTERED_READS:
            records, _ = await golden.scroll(
                Filter(must=(condition,)), 100, None, PayloadSelector(False), VectorSelector(False)
            )
            assert [record.id for record in records] == expected_ids, condition
    finally:
        await catalog.close()


def test_keel_check_finds_the_golden_storage_sound(tmp_path: Path) -> None:
    """`keel check` verifies WAL framing and decoding, LMDB checksums and the derived
    payload indexes against what today's code computes from the golden values."""
    storage = _copy_golden_storage(tmp_path)
    report = check_storage(storage, lambda _text: None)
    assert report.findings == []
    counts = (report.collections_count, report.points_count, report.wal_records_count)
    assert counts == (2, 10, 36)


# ---- helpers -------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """`value` as comparable data that keeps what `==` forgets: class names of dataclasses
    and enums, array dtypes and shapes, the type of every scalar (1, 1.0 and True differ),
    and the order of dict keys."""
    if is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            [(f.name, plain(getattr(value, f.name))) for f in fields(value) if f.init],
        )
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tolist())
    if isinstance(value, PayloadMode | UpdateMode):
        return (type(value).__name__, value.value)
    if isinstance(value, dict):
        return ("dict", [(plain(k), plain(v)) for k, v in value.items()])
    if isinstance(value, tuple):
        return ("tuple", [plain(item) for item in value])
    if isinstance(value, list):
        return ("list", [plain(item) for item in value])
    if isinstance(value, frozenset | set):
        return ("set", sorted((plain(item) for item in value), key=repr))
    assert value is None or isinstance(value, bool | int | float | str | uuid.UUID), type(value)
    return (type(value).__name__, value)


def _segment_bytes(name: str) -> bytes:
    return (GOLDEN_STORAGE / "collections" / name / "wal" / SEGMENTS[name][0]).read_bytes()


def _parse_segment_by_hand(
    data: bytes,
) -> tuple[list[tuple[int, int, int, int, int]], list[tuple[int, bytes]]]:
    """(batches as (offset, first_op_id, count, records_bytes, crc), records as (op_id, body)),
    read with struct and zlib only, from the layout in wal_format.py's docstring."""
    batch_header_bytes = struct.calcsize(BATCH_HEADER_LAYOUT)
    record_header_bytes = struct.calcsize(RECORD_HEADER_LAYOUT)
    batches, records = [], []
    offset = 0
    while offset < len(data):
        records_bytes, crc, first_op_id, count = struct.unpack_from(
            BATCH_HEADER_LAYOUT, data, offset
        )
        end = offset + batch_header_bytes + records_bytes
        assert zlib.crc32(data[offset + 8 : end]) == crc, f"batch at offset {offset}"
        position = offset + batch_header_bytes
        for index in range(count):
            body_bytes, op_id = struct.unpack_from(RECORD_HEADER_LAYOUT, data, position)
            assert op_id == first_op_id + index, (offset, index, op_id)
            position += record_header_bytes
            records.append((op_id, data[position : position + body_bytes]))
            position += body_bytes
        assert position == end, f"batch at offset {offset} has trailing bytes"
        batches.append((offset, first_op_id, count, records_bytes, crc))
        offset = end
    return batches, records


def _class_tags(data: Any) -> set[str]:
    """Class names in a decoded CBOR body: the "@" tags encode_tree writes."""
    if isinstance(data, list):
        return set().union(*(_class_tags(item) for item in data))
    if not isinstance(data, dict):
        return set()
    tags = {data["@"]} if "@" in data else set()
    return tags.union(*(_class_tags(item) for item in data.values()))


def _golden_config(name: str) -> CollectionConfig:
    return CollectionConfig.from_json_dict(
        json.loads((GOLDEN_STORAGE / "collections" / name / "config.json").read_bytes())
    )


async def test_catalog_reads_the_golden_op_id_floors_and_incarnations(tmp_path: Path) -> None:
    """<storage>/op_id_floors.json (name -> last op id of a deleted collection) and each
    collection's `incarnation` file, as today's code wrote them: a collection created under
    the retired name continues above op 41, and the incarnations read back unchanged."""
    storage = _copy_golden_storage(tmp_path)
    assert (storage / "op_id_floors.json").read_bytes() == b'{"retired": 41}'
    catalog = Catalog(storage, EngineSettings())
    await catalog.open()
    try:
        assert catalog.get("golden").incarnation == "9c68cada6401406bae71657c49efc189"
        await catalog.create("retired", catalog.get("golden_unnamed").config)
        assert catalog.get("retired").wal_bounds() == (42, 41)
    finally:
        await catalog.close()


def _copy_golden_storage(tmp_path: Path) -> Path:
    storage = tmp_path / "storage"
    shutil.copytree(GOLDEN_STORAGE, storage)
    for name in COLLECTION_NAMES:
        # Git keeps no empty directory; a collection's layout has an index/ directory.
        (storage / "collections" / name / "index").mkdir()
    return storage


def _stored_vectors(
    store: Store, config: CollectionConfig, label: int, names: list[str]
) -> dict[str, Any]:
    vectors: dict[str, Any] = {}
    for name in names:
        if name in config.sparse_vectors:
            vectors[name] = store.get_sparse(name, [label])[0]
        else:
            vectors[name] = store.get_vectors(name, [label])[0]
    return _plain_vectors(vectors)


def _plain_vectors(vectors: dict[str, Any]) -> dict[str, Any]:
    """Dense vectors as lists of floats (float32 checked), sparse ones as [indices, values]."""
    result: dict[str, Any] = {}
    for name, vector in vectors.items():
        if isinstance(vector, SparseVector):
            assert vector.indices.dtype == np.uint32, vector.indices.dtype
            assert vector.values.dtype == np.float32, vector.values.dtype
            result[name] = [vector.indices.tolist(), vector.values.tolist()]
        else:
            assert vector.dtype == np.float32, vector.dtype
            result[name] = vector.tolist()
    return result
