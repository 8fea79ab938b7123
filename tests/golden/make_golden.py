"""Write the golden storage directory that tests/unit/test_golden_formats.py reads.

Run by hand, never by the tests:

    . /work/venv/bin/activate
    PYTHONHASHSEED=0 python tests/golden/make_golden.py /tmp/golden-new

then compare /tmp/golden-new with tests/golden/storage/ and copy it over only on purpose.

The files are the on-disk formats as Keel wrote them on the day they were made: WAL
segments (wal_format.py framing, op_codec.py bodies, filters by class name) and LMDB
environments (store.py, payload_index.py). They exist so that a refactor which moves or
renames what those formats name breaks a test instead of old storage directories. So the
rule is etcd's for its `testdata/*.wal`: never regenerate them in place to make a test
pass. When the format changes on purpose (or a new operation or filter class needs
pinning), keep these files, add a new golden directory next to them, and teach the test
to read both: old files are what users have on disk.

What gets written, into `<out>/storage/collections/<name>/`:

- `config.json` and `incarnation`, as Catalog.create wrote them.
- `wal/<first op id>.wal`: every op of the collection (OPS below), one batch per group;
  a group of several ops is one update_many call, so one multi-record batch.
- `lmdb/data.mdb`: a compact copy (Store.copy_snapshot) taken after the first
  LMDB_AFTER_GROUPS groups; opening the collection replays the WAL records after it.

`golden` has two named dense vectors, a sparse one, a payload index of every schema type and
every kind of operation and filter condition; `golden_unnamed` has a single unnamed vector.
The test's expectations (tests/unit/golden_expected.py) are written out by hand, not
imported from here.
PYTHONHASHSEED=0 only makes a rerun give the same order inside encoded sets.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from engine.catalog import Catalog
from engine.filters.conditions import (
    DatetimeRange,
    FieldCondition,
    Filter,
    GeoBoundingBox,
    GeoPoint,
    GeoPolygon,
    GeoRadius,
    HasIdCondition,
    HasVectorCondition,
    IsEmptyCondition,
    IsNullCondition,
    MatchAny,
    MatchExcept,
    MatchPhrase,
    MatchPrefix,
    MatchText,
    MatchTextAny,
    MatchValue,
    MinShould,
    NestedCondition,
    Range,
    SliceCondition,
    ValuesCount,
)
from engine.filters.payload_path import PayloadPath
from engine.limits import EngineSettings
from engine.ops import (
    CreateFieldIndex,
    DeleteFieldIndex,
    DeletePoints,
    DeleteVectors,
    NamedVectors,
    Operation,
    PayloadMode,
    SparseColumn,
    SparseVector,
    UpdateMode,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
)
from server.wire.collection_config import parse_create_collection

UUID_1 = uuid.UUID("5c56c793-69f3-4fbf-87e6-c4bf54c28c26")
UUID_2 = uuid.UUID("a1b2c3d4-0000-4000-8000-000000000002")
# instants.instant_key of 2023-01-01T00:00:00Z and 2024-12-31T00:00:00Z.
INSTANT_2023_01_01 = 3345062400000000000
INSTANT_2024_12_31 = 3471206400000000000

CONFIGS = {
    "golden": {
        "vectors": {
            "image": {"size": 4, "distance": "Cosine"},
            "text": {"size": 2, "distance": "Euclid", "hnsw_config": {"m": 0}},
        },
        "sparse_vectors": {"keywords": {"modifier": "idf"}},
        "hnsw_config": {"m": 4, "ef_construct": 8, "full_scan_threshold": 10},
        "optimizers_config": {"indexing_threshold": 0},
        "on_disk_payload": True,
    },
    "golden_unnamed": {"vectors": {"size": 2, "distance": "Dot"}},
}
LMDB_AFTER_GROUPS = {"golden": 6, "golden_unnamed": 2}


def path(text: str) -> PayloadPath:
    return PayloadPath.parse(text)


def field(key: str, **checks: object) -> FieldCondition:
    return FieldCondition(key=path(key), **checks)  # type: ignore[arg-type]


def dense(rows: list[int], matrix: list[list[float]]) -> NamedVectors:
    return NamedVectors(np.array(rows, dtype=np.int32), np.array(matrix, dtype=np.float32))


def sparse(rows: list[int], vectors: list[tuple[list[int], list[float]]]) -> SparseColumn:
    return SparseColumn.from_vectors(
        rows,
        [
            SparseVector(np.array(indices, np.uint32), np.array(values, np.float32))
            for indices, values in vectors
        ],
    )


PAYLOAD_1 = {
    "city": "Berlin",
    "count": 1,
    "price": 9.5,
    "location": {"lon": 13.4, "lat": 52.5},
    "description": "A quick brown fox",
    "is_active": True,
    "created_at": "2024-01-01T10:00:00Z",
    "ref": "0b9e9c1e-2d7c-4a8e-9b1a-3f2d8c7e6a51",
    "tags": ["red", "blue"],
    "meta": {"color": "red", "sizes": [1, 2]},
    "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
    "dotted.key": "v",
}
PAYLOAD_2 = {
    "city": "London",
    "count": 2,
    "price": 20.0,
    "location": {"lon": -0.1, "lat": 51.5},
    "description": "lazy dogs sleep",
    "is_active": False,
    "created_at": "2024-03-15 08:30:00",
    "tags": [],
    "meta": {"color": "blue"},
    "note": None,
}
PAYLOAD_3 = {
    "city": ["Paris", "Lyon"],
    "count": 3,
    "price": 5,
    "location": [{"lon": 2.35, "lat": 48.85}],
    "description": "the brown bear",
    "created_at": "2023-12-31T23:59:59.999999999+01:00",
    "items": [{"sku": "c", "qty": 5}],
    "unicode": "Grüße, 世界",
}
PAYLOAD_4 = {
    "city": "Berlin",
    "count": -7,
    "big": 9007199254740993,
    "nested": {"deep": {"deeper": [1, {"x": None}]}},
}
PAYLOAD_5 = {
    "city": "Tokyo",
    "count": 5,
    "price": 1.25,
    "tags": ["green"],
    "empty": [],
    "flag": True,
}
PAYLOAD_U1 = {"city": "Berlin", "ref": str(UUID_1), "count": 10}
PAYLOAD_U2 = {
    "city": "Oslo",
    "price": 100.5,
    "is_active": True,
    "location": {"lon": 10.75, "lat": 59.91},
}

# One list per batch; the comment says what the batch is for.
GOLDEN_OPS: list[list[Operation]] = [
    # 0: a payload index of every schema type, one multi-record batch (op ids 0-9)
    [
        CreateFieldIndex("city", "keyword", None),
        CreateFieldIndex("count", "integer", {"type": "integer", "lookup": True, "range": True}),
        CreateFieldIndex("price", "float", None),
        CreateFieldIndex("location", "geo", None),
        CreateFieldIndex(
            "description",
            "text",
            {"type": "text", "tokenizer": "word", "lowercase": True, "min_token_len": 2},
        ),
        CreateFieldIndex("is_active", "bool", None),
        CreateFieldIndex("created_at", "datetime", None),
        CreateFieldIndex("ref", "uuid", None),
        CreateFieldIndex("meta.color", "keyword", None),
        CreateFieldIndex("tags[]", "keyword", None),
    ],
    # 1: upsert with named dense vectors (not every point has every one) and sparse vectors
    [
        UpsertPoints(
            ids=[1, 2, 3, 4, 5, 6, UUID_1, UUID_2],
            vectors={
                "image": dense(
                    [0, 1, 2, 3, 4, 6],
                    [
                        [1, 0, 0, 0],
                        [0, 1, 0, 0],
                        [0, 0, 1, 0],
                        [0, 0, 0, 1],
                        [0.5, 0.5, 0.5, 0.5],
                        [-1, 0, 0, 0],
                    ],
                ),
                "text": dense([0, 2, 5, 7], [[1.5, -2], [0, 0.25], [3, 4], [-1, -1]]),
            },
            payloads=[
                PAYLOAD_1,
                PAYLOAD_2,
                PAYLOAD_3,
                PAYLOAD_4,
                PAYLOAD_5,
                None,
                PAYLOAD_U1,
                PAYLOAD_U2,
            ],
            sparse={
                "keywords": sparse(
                    [0, 1, 4], [([1, 5, 9], [0.5, 1, 2]), ([0], [1]), ([3, 4], [0.25, -1])]
                )
            },
        )
    ],
    # 2: delete by ids
    [DeletePoints(ids=[4])],
    # 3: insert_only: 5 exists and is kept, 7 is new
    [
        UpsertPoints(
            ids=[5, 7],
            vectors={"image": dense([0, 1], [[0, 0, 0, 2], [0, 3, 0, 0]])},
            payloads=[{"city": "ignored"}, {"city": "Madrid", "count": 7}],
            update_mode=UpdateMode.INSERT_ONLY,
        )
    ],
    # 4: update_only with an update filter: U1 matches, 2 does not, 8 does not exist
    [
        UpsertPoints(
            ids=[UUID_1, 2, 8],
            vectors={"image": dense([0, 1, 2], [[0, -1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])},
            payloads=[
                {"city": "Berlin", "count": 12, "ref": str(UUID_1)},
                {"city": "not written"},
                {"city": "not written"},
            ],
            update_mode=UpdateMode.UPDATE_ONLY,
            update_filter=Filter(must=(field("city", match=MatchValue("Berlin")),)),
        )
    ],
    # 5: payload edits by ids, one multi-record batch (a points/batch request)
    [
        UpdatePayload(ids=[1, 2], mode=PayloadMode.SET, payload={"rating": 4.5}),
        UpdatePayload(ids=[1], mode=PayloadMode.SET, payload={"shape": "round"}, key="meta"),
        UpdatePayload(
            ids=[5],
            mode=PayloadMode.OVERWRITE,
            payload={"city": "Kyoto", "count": 50, "tags": ["green", "blue"]},
        ),
        UpdatePayload(ids=[2], mode=PayloadMode.DELETE_KEYS, keys=["note", "meta.color"]),
        UpdatePayload(ids=[7], mode=PayloadMode.CLEAR),
    ],
    # --- the LMDB copy is taken here; what follows is replayed when the golden is opened ---
    # 6: set by filter: full-text matches (the field has a text index) and a prefix match
    [
        UpdatePayload(
            ids=None,
            mode=PayloadMode.SET,
            payload={"matched_text": True},
            filter=Filter(
                should=(
                    field("description", match=MatchText("brown")),
                    field("description", match=MatchPhrase("lazy dogs")),
                    field("description", match=MatchTextAny("bear wolf")),
                    field("city", match=MatchPrefix("Kyo")),
                )
            ),
        )
    ],
    # 7: overwrite by filter: number and datetime ranges
    [
        UpdatePayload(
            ids=None,
            mode=PayloadMode.OVERWRITE,
            payload={"city": "Lyon", "overwritten": True},
            filter=Filter(
                must=(
                    field("count", range=Range(gt=2.5, gte=None, lt=None, lte=3.0)),
                    field(
                        "created_at",
                        range=DatetimeRange(gte=INSTANT_2023_01_01, lte=INSTANT_2024_12_31),
                    ),
                )
            ),
        )
    ],
    # 8: delete keys by filter: geo bounding box, values_count
    [
        UpdatePayload(
            ids=None,
            mode=PayloadMode.DELETE_KEYS,
            keys=["rating"],
            filter=Filter(
                must=(
                    field(
                        "location",
                        geo_bounding_box=GeoBoundingBox(
                            top_left=GeoPoint(lon=-10.0, lat=60.0),
                            bottom_right=GeoPoint(lon=20.0, lat=40.0),
                        ),
                    ),
                ),
                must_not=(field("tags", values_count=ValuesCount(gte=3, lt=10)),),
            ),
        )
    ],
    # 9: clear by filter: geo radius, match except (integers)
    [
        UpdatePayload(
            ids=None,
            mode=PayloadMode.CLEAR,
            filter=Filter(
                must=(
                    field("price", range=Range(gte=100.0)),
                    field(
                        "location",
                        geo_radius=GeoRadius(
                            center=GeoPoint(lon=10.75, lat=59.91), radius_m=1000.0
                        ),
                    ),
                ),
                must_not=(field("count", match=MatchExcept(frozenset({-1, 0}))),),
            ),
        )
    ],
    # 10: delete by filter: has_id (integer and UUID ids), is_empty, a path through an array
    [
        DeletePoints(
            ids=[],
            filter=Filter(
                must=(HasIdCondition(frozenset({7, UUID_2, 999})),),
                should=(
                    IsEmptyCondition(key=path("city")),
                    field("items[].qty", range=Range(gt=100.0)),
                ),
            ),
        )
    ],
    # 11: update vectors by ids (dense of two names and sparse) with an update filter
    [
        UpdateVectors(
            ids=[1, 2, 3],
            vectors={
                "image": dense([0], [[0, 0, 0, -1]]),
                "text": dense([1], [[7, 8]]),
            },
            update_filter=Filter(
                must_not=(field("city", match=MatchExcept(frozenset({"Berlin", "London"}))),)
            ),
            sparse={"keywords": sparse([2], [([2], [3])])},
        )
    ],
    # 12: delete vectors by ids (a dense and a sparse name)
    [DeleteVectors(ids=[5], names=["image", "keywords"])],
    # 13: delete vectors by filter: has_vector, a path with an array index
    [
        DeleteVectors(
            ids=None,
            names=["text"],
            filter=Filter(
                must=(
                    HasVectorCondition("text"),
                    field("meta.sizes[0]", match=MatchValue(1)),
                )
            ),
        )
    ],
    # 14: set by filter: nested, min_should, match any, is_null, is_empty, slice, quoted key
    [
        UpdatePayload(
            ids=None,
            mode=PayloadMode.SET,
            payload={"nested_hit": True},
            filter=Filter(
                must=(
                    NestedCondition(
                        key=path("items"),
                        filter=Filter(
                            must=(
                                field("sku", match=MatchAny(frozenset({"a", "c"}))),
                                field("qty", range=Range(gt=0.0)),
                            )
                        ),
                    ),
                ),
                min_should=MinShould(
                    conditions=(
                        field("count", match=MatchAny(frozenset({1, 3}))),
                        field("note", is_null=True),
                        IsNullCondition(key=path("note")),
                        field("tags", is_empty=False),
                        SliceCondition(total=2, index=0),
                        field('"dotted.key"', match=MatchValue("v")),
                    ),
                    min_count=2,
                ),
            ),
        )
    ],
    # 15: delete by filter: geo polygon with a hole, a filter as a condition, bool match
    [
        DeletePoints(
            ids=[],
            filter=Filter(
                must=(
                    field(
                        "location",
                        geo_polygon=GeoPolygon(
                            exterior=(
                                GeoPoint(lon=-1.0, lat=51.0),
                                GeoPoint(lon=1.0, lat=51.0),
                                GeoPoint(lon=1.0, lat=52.0),
                                GeoPoint(lon=-1.0, lat=52.0),
                                GeoPoint(lon=-1.0, lat=51.0),
                            ),
                            interiors=(
                                (
                                    GeoPoint(lon=0.5, lat=51.8),
                                    GeoPoint(lon=0.8, lat=51.8),
                                    GeoPoint(lon=0.8, lat=51.9),
                                    GeoPoint(lon=0.5, lat=51.8),
                                ),
                            ),
                        ),
                    ),
                ),
                must_not=(Filter(should=(field("is_active", match=MatchValue(True)),)),),
            ),
        )
    ],
    # 16: drop an index, and replace one by another type
    [DeleteFieldIndex("tags[]"), CreateFieldIndex("count", "float", None)],
    # 17: conditional upsert (mode upsert): 3 exists and does not match, 9 is new
    [
        UpsertPoints(
            ids=[3, 9],
            vectors={"text": dense([0, 1], [[9, 9], [0.5, 0.5]])},
            payloads=[
                {"city": "not written"},
                {
                    "city": "Rome",
                    "created_at": "2025-06-01T12:00:00Z",
                    "location": {"lon": 12.5, "lat": 41.9},
                },
            ],
            update_filter=Filter(must=(field("city", match=MatchValue("Nowhere")),)),
            sparse={"keywords": sparse([1], [([7, 8], [1, 1])])},
        )
    ],
]

UNNAMED_OPS: list[list[Operation]] = [
    [
        UpsertPoints(
            ids=[1, 2],
            vectors={"": dense([0, 1], [[1, 2], [3, 4]])},
            payloads=[{"k": "v"}, None],
        )
    ],
    [UpdateVectors(ids=[2], vectors={"": dense([0], [[-1, 0.5]])})],
    [
        DeleteVectors(
            ids=None,
            names=[""],
            filter=Filter(must=(HasVectorCondition(""), HasIdCondition(frozenset({1})))),
        )
    ],
    [DeletePoints(ids=[2])],
]

OPS = {"golden": GOLDEN_OPS, "golden_unnamed": UNNAMED_OPS}


async def write_golden(out: Path) -> None:
    """Run OPS through a real catalog in a scratch storage, copying the files into `out`."""
    with tempfile.TemporaryDirectory() as scratch:
        # No checkpoint and no WAL truncation while the ops run.
        settings = EngineSettings(checkpoint_every_ops=100_000_000, checkpoint_every_s=86_400)
        catalog = Catalog(Path(scratch), settings)
        await catalog.open()
        try:
            for name, groups in OPS.items():
                await catalog.create(name, parse_create_collection(CONFIGS[name]))
                await _write_collection(
                    catalog, name, groups, out / "storage" / "collections" / name
                )
        finally:
            await catalog.close()


async def _write_collection(
    catalog: Catalog, name: str, groups: list[list[Operation]], target: Path
) -> None:
    collection = catalog.get(name)
    (target / "lmdb").mkdir(parents=True)
    for file_name in ("config.json", "incarnation"):
        shutil.copyfile(collection.directory / file_name, target / file_name)
    for index, group in enumerate(groups):
        if index == LMDB_AFTER_GROUPS[name]:
            await collection.copy_lmdb(target / "lmdb")
        await collection.update_many(group, wait=True, timeout_s=None)
    # Every op is durable and applied; copy the WAL before close() may checkpoint.
    shutil.copytree(collection.directory / "wal", target / "wal")


if __name__ == "__main__":
    if len(sys.argv) != 2 or Path(sys.argv[1]).exists():
        sys.exit("usage: make_golden.py OUT_DIR (a directory that does not exist yet)")
    asyncio.run(write_golden(Path(sys.argv[1])))
