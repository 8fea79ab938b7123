"""What the golden files in tests/golden/storage/ hold, written out by hand.

Read by test_golden_formats.py. Nothing here is computed from the engine's encoders: the
ops are literal constructor calls (paths as literal steps, datetimes as literal instant
keys, Cosine vectors already normalised as validation logged them), and the points are
literal JSON-like data. If a refactor renames a class both here and in engine/, the golden
bytes still carry the old name, so decoding them fails; that is the point.

The generator that wrote the files (tests/golden/make_golden.py) has its own copy of the
ops, on purpose: one side must not follow the other.
"""

from __future__ import annotations

import uuid

import numpy as np

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
from engine.ops import (
    CreateFieldIndex,
    DeleteFieldIndex,
    DeletePoints,
    DeleteVectors,
    NamedVectors,
    Operation,
    PayloadMode,
    SparseColumn,
    UpdateMode,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
)

UUID_1 = uuid.UUID("5c56c793-69f3-4fbf-87e6-c4bf54c28c26")
UUID_2 = uuid.UUID("a1b2c3d4-0000-4000-8000-000000000002")


def dense(rows: list[int], matrix: list[list[float]]) -> NamedVectors:
    return NamedVectors(np.array(rows, dtype=np.int32), np.array(matrix, dtype=np.float32))


def sparse(
    rows: list[int], offsets: list[int], indices: list[int], values: list[float]
) -> SparseColumn:
    return SparseColumn(
        np.array(rows, dtype=np.int32),
        np.array(offsets, dtype=np.int64),
        np.array(indices, dtype=np.uint32),
        np.array(values, dtype=np.float32),
    )


def key(*steps: str | int | None) -> PayloadPath:
    return PayloadPath(steps)


# ---- the WAL segments, byte for byte ---------------------------------------------------------

# collection name -> (segment file name, bytes, sha256, batches); a batch is
# (offset, first_op_id, record count, records_bytes, crc32) as its header says.
SEGMENTS = {
    "golden": (
        "00000000000000000000.wal",
        9753,
        "3b3fbd1b27d33dc12ee34d1333dc4420fcf01d51b63bf7a8dade0f465b279e65",
        [
            (0, 0, 10, 606, 2066259145),
            (626, 10, 1, 1269, 1676549161),
            (1915, 11, 1, 31, 2774891640),
            (1966, 12, 1, 137, 2268626937),
            (2123, 13, 1, 464, 3470232056),
            (2607, 14, 5, 346, 1608915234),
            (2973, 19, 1, 837, 3366880743),
            (3830, 20, 1, 523, 3286532900),
            (4373, 21, 1, 569, 738120797),
            (4962, 22, 1, 698, 3002106214),
            (5680, 23, 1, 397, 1695498011),
            (6097, 24, 1, 376, 4006350390),
            (6493, 25, 1, 57, 544391975),
            (6570, 26, 1, 311, 3421094965),
            (6901, 27, 1, 1358, 3644402248),
            (8279, 28, 1, 869, 1137778205),
            (9168, 29, 2, 88, 1119358400),
            (9276, 31, 1, 457, 3666564538),
        ],
    ),
    "golden_unnamed": (
        "00000000000000000000.wal",
        407,
        "daecb636ee18e49320a77aec77209eeda5f584b63ffc9168aab80d6e3341d9d7",
        [
            (0, 0, 1, 82, 2360810424),
            (102, 1, 1, 52, 647277883),
            (174, 2, 1, 162, 1361632001),
            (356, 3, 1, 31, 394283061),
        ],
    ),
}

# The class names the golden WAL records carry in their filters ("@" tags of encode_tree).
FILTER_CLASS_NAMES = {
    "DatetimeRange",
    "FieldCondition",
    "Filter",
    "GeoBoundingBox",
    "GeoPoint",
    "GeoPolygon",
    "GeoRadius",
    "HasIdCondition",
    "HasVectorCondition",
    "IsEmptyCondition",
    "IsNullCondition",
    "MatchAny",
    "MatchExcept",
    "MatchPhrase",
    "MatchPrefix",
    "MatchText",
    "MatchTextAny",
    "MatchValue",
    "MinShould",
    "NestedCondition",
    "PayloadPath",
    "Range",
    "SliceCondition",
    "ValuesCount",
}

# ---- the operations, by op id ----------------------------------------------------------------

GOLDEN_OPS: list[Operation] = [
    # batch of ops 0-9: a payload index of every schema type
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
    # 10
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
            {
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
            },
            {
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
            },
            {
                "city": ["Paris", "Lyon"],
                "count": 3,
                "price": 5,
                "location": [{"lon": 2.35, "lat": 48.85}],
                "description": "the brown bear",
                "created_at": "2023-12-31T23:59:59.999999999+01:00",
                "items": [{"sku": "c", "qty": 5}],
                "unicode": "Grüße, 世界",
            },
            {
                "city": "Berlin",
                "count": -7,
                "big": 9007199254740993,
                "nested": {"deep": {"deeper": [1, {"x": None}]}},
            },
            {
                "city": "Tokyo",
                "count": 5,
                "price": 1.25,
                "tags": ["green"],
                "empty": [],
                "flag": True,
            },
            None,
            {"city": "Berlin", "ref": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "count": 10},
            {
                "city": "Oslo",
                "price": 100.5,
                "is_active": True,
                "location": {"lon": 10.75, "lat": 59.91},
            },
        ],
        sparse={
            "keywords": sparse(
                [0, 1, 4], [0, 3, 4, 6], [1, 5, 9, 0, 3, 4], [0.5, 1, 2, 1, 0.25, -1]
            )
        },
    ),
    # 11
    DeletePoints(ids=[4]),
    # 12: Cosine vectors as validation normalised them
    UpsertPoints(
        ids=[5, 7],
        vectors={"image": dense([0, 1], [[0, 0, 0, 1], [0, 1, 0, 0]])},
        payloads=[{"city": "ignored"}, {"city": "Madrid", "count": 7}],
        update_mode=UpdateMode.INSERT_ONLY,
    ),
    # 13
    UpsertPoints(
        ids=[UUID_1, 2, 8],
        vectors={"image": dense([0, 1, 2], [[0, -1, 0, 0], [0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]])},
        payloads=[
            {"city": "Berlin", "count": 12, "ref": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"},
            {"city": "not written"},
            {"city": "not written"},
        ],
        update_mode=UpdateMode.UPDATE_ONLY,
        update_filter=Filter(must=(FieldCondition(key("city"), match=MatchValue("Berlin")),)),
    ),
    # batch of ops 14-18
    UpdatePayload(ids=[1, 2], mode=PayloadMode.SET, payload={"rating": 4.5}),
    UpdatePayload(ids=[1], mode=PayloadMode.SET, payload={"shape": "round"}, key="meta"),
    UpdatePayload(
        ids=[5],
        mode=PayloadMode.OVERWRITE,
        payload={"city": "Kyoto", "count": 50, "tags": ["green", "blue"]},
    ),
    UpdatePayload(ids=[2], mode=PayloadMode.DELETE_KEYS, keys=["note", "meta.color"]),
    UpdatePayload(ids=[7], mode=PayloadMode.CLEAR),
    # 19 (the golden LMDB copy holds ops 0-18)
    UpdatePayload(
        ids=None,
        mode=PayloadMode.SET,
        payload={"matched_text": True},
        filter=Filter(
            should=(
                FieldCondition(key("description"), match=MatchText("brown")),
                FieldCondition(key("description"), match=MatchPhrase("lazy dogs")),
                FieldCondition(key("description"), match=MatchTextAny("bear wolf")),
                FieldCondition(key("city"), match=MatchPrefix("Kyo")),
            )
        ),
    ),
    # 20: instant keys of 2023-01-01T00:00:00Z and 2024-12-31T00:00:00Z
    UpdatePayload(
        ids=None,
        mode=PayloadMode.OVERWRITE,
        payload={"city": "Lyon", "overwritten": True},
        filter=Filter(
            must=(
                FieldCondition(key("count"), range=Range(gt=2.5, lte=3.0)),
                FieldCondition(
                    key("created_at"),
                    range=DatetimeRange(gte=3345062400000000000, lte=3471206400000000000),
                ),
            )
        ),
    ),
    # 21
    UpdatePayload(
        ids=None,
        mode=PayloadMode.DELETE_KEYS,
        keys=["rating"],
        filter=Filter(
            must=(
                FieldCondition(
                    key("location"),
                    geo_bounding_box=GeoBoundingBox(
                        top_left=GeoPoint(lon=-10.0, lat=60.0),
                        bottom_right=GeoPoint(lon=20.0, lat=40.0),
                    ),
                ),
            ),
            must_not=(FieldCondition(key("tags"), values_count=ValuesCount(gte=3, lt=10)),),
        ),
    ),
    # 22
    UpdatePayload(
        ids=None,
        mode=PayloadMode.CLEAR,
        filter=Filter(
            must=(
                FieldCondition(key("price"), range=Range(gte=100.0)),
                FieldCondition(
                    key("location"),
                    geo_radius=GeoRadius(center=GeoPoint(lon=10.75, lat=59.91), radius_m=1000.0),
                ),
            ),
            must_not=(FieldCondition(key("count"), match=MatchExcept(frozenset({-1, 0}))),),
        ),
    ),
    # 23
    DeletePoints(
        ids=[],
        filter=Filter(
            must=(HasIdCondition(frozenset({7, UUID_2, 999})),),
            should=(
                IsEmptyCondition(key("city")),
                FieldCondition(key("items", None, "qty"), range=Range(gt=100.0)),
            ),
        ),
    ),
    # 24
    UpdateVectors(
        ids=[1, 2, 3],
        vectors={"image": dense([0], [[0, 0, 0, -1]]), "text": dense([1], [[7, 8]])},
        update_filter=Filter(
            must_not=(
                FieldCondition(key("city"), match=MatchExcept(frozenset({"Berlin", "London"}))),
            )
        ),
        sparse={"keywords": sparse([2], [0, 1], [2], [3])},
    ),
    # 25
    DeleteVectors(ids=[5], names=["image", "keywords"]),
    # 26
    DeleteVectors(
        ids=None,
        names=["text"],
        filter=Filter(
            must=(
                HasVectorCondition("text"),
                FieldCondition(key("meta", "sizes", 0), match=MatchValue(1)),
            )
        ),
    ),
    # 27
    UpdatePayload(
        ids=None,
        mode=PayloadMode.SET,
        payload={"nested_hit": True},
        filter=Filter(
            must=(
                NestedCondition(
                    key=key("items"),
                    filter=Filter(
                        must=(
                            FieldCondition(key("sku"), match=MatchAny(frozenset({"a", "c"}))),
                            FieldCondition(key("qty"), range=Range(gt=0.0)),
                        )
                    ),
                ),
            ),
            min_should=MinShould(
                conditions=(
                    FieldCondition(key("count"), match=MatchAny(frozenset({1, 3}))),
                    FieldCondition(key("note"), is_null=True),
                    IsNullCondition(key("note")),
                    FieldCondition(key("tags"), is_empty=False),
                    SliceCondition(total=2, index=0),
                    FieldCondition(key("dotted.key"), match=MatchValue("v")),
                ),
                min_count=2,
            ),
        ),
    ),
    # 28
    DeletePoints(
        ids=[],
        filter=Filter(
            must=(
                FieldCondition(
                    key("location"),
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
            must_not=(Filter(should=(FieldCondition(key("is_active"), match=MatchValue(True)),)),),
        ),
    ),
    # batch of ops 29-30
    DeleteFieldIndex("tags[]"),
    CreateFieldIndex("count", "float", None),
    # 31
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
        update_filter=Filter(must=(FieldCondition(key("city"), match=MatchValue("Nowhere")),)),
        sparse={"keywords": sparse([1], [0, 2], [7, 8], [1, 1])},
    ),
]

UNNAMED_OPS: list[Operation] = [
    UpsertPoints(
        ids=[1, 2], vectors={"": dense([0, 1], [[1, 2], [3, 4]])}, payloads=[{"k": "v"}, None]
    ),
    UpdateVectors(ids=[2], vectors={"": dense([0], [[-1, 0.5]])}),
    DeleteVectors(
        ids=None,
        names=[""],
        filter=Filter(must=(HasVectorCondition(""), HasIdCondition(frozenset({1})))),
    ),
    DeletePoints(ids=[2]),
]

OPS = {"golden": GOLDEN_OPS, "golden_unnamed": UNNAMED_OPS}

# ---- the collections' configs ----------------------------------------------------------------

# config.json as CollectionConfig.to_json_dict() wrote it.
CONFIG_JSON = {
    "golden": {
        "vectors": {
            "image": {"size": 4, "distance": "Cosine", "hnsw_m": None, "hnsw_ef_construct": None},
            "text": {"size": 2, "distance": "Euclid", "hnsw_m": 0, "hnsw_ef_construct": None},
        },
        "hnsw": {"m": 4, "ef_construct": 8, "full_scan_threshold": 10},
        "echo": {
            "is_single_form": False,
            "vectors": {"image": {}, "text": {"hnsw_config": {"m": 0}}},
            "params": {"on_disk_payload": True},
            "hnsw_config": {"m": 4, "ef_construct": 8, "full_scan_threshold": 10},
            "wal_config": {},
            "optimizers_config": {"indexing_threshold": 0},
            "quantization_config": None,
            "metadata": None,
            "sparse_vectors": {"keywords": {"modifier": "idf"}},
        },
        "sparse_vectors": {"keywords": {"modifier": "idf"}},
    },
    "golden_unnamed": {
        "vectors": {"": {"size": 2, "distance": "Dot", "hnsw_m": None, "hnsw_ef_construct": None}},
        "hnsw": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
        "echo": {
            "is_single_form": True,
            "vectors": {"": {}},
            "params": {},
            "hnsw_config": {},
            "wal_config": {},
            "optimizers_config": {},
            "quantization_config": None,
            "metadata": None,
            "sparse_vectors": {},
        },
        "sparse_vectors": {},
    },
}

# ---- the golden LMDB copies, as the store reads them -----------------------------------------

# Per collection: applied_op_id, next_label, payload indexes (field -> [type, params, points
# count]), points (id -> [label, version op_id, payload, vectors]; a sparse vector is
# [indices, values]) and dead labels ([label, death op_id, names]).
STORES = {
    "golden": {
        "applied_op_id": 18,
        "next_label": 10,
        "indexes": {
            "city": ["keyword", None, 6],
            "count": ["integer", {"type": "integer", "lookup": True, "range": True}, 5],
            "created_at": ["datetime", None, 3],
            "description": [
                "text",
                {"type": "text", "tokenizer": "word", "lowercase": True, "min_token_len": 2},
                3,
            ],
            "is_active": ["bool", None, 3],
            "location": ["geo", None, 4],
            "meta.color": ["keyword", None, 1],
            "price": ["float", None, 4],
            "ref": ["uuid", None, 2],
            "tags[]": ["keyword", None, 2],
        },
        "points": {
            1: [
                0,
                15,
                {
                    "city": "Berlin",
                    "count": 1,
                    "price": 9.5,
                    "location": {"lon": 13.4, "lat": 52.5},
                    "description": "A quick brown fox",
                    "is_active": True,
                    "created_at": "2024-01-01T10:00:00Z",
                    "ref": "0b9e9c1e-2d7c-4a8e-9b1a-3f2d8c7e6a51",
                    "tags": ["red", "blue"],
                    "meta": {"color": "red", "sizes": [1, 2], "shape": "round"},
                    "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
                    "dotted.key": "v",
                    "rating": 4.5,
                },
                {
                    "image": [1.0, 0.0, 0.0, 0.0],
                    "text": [1.5, -2.0],
                    "keywords": [[1, 5, 9], [0.5, 1.0, 2.0]],
                },
            ],
            2: [
                1,
                17,
                {
                    "city": "London",
                    "count": 2,
                    "price": 20.0,
                    "location": {"lon": -0.1, "lat": 51.5},
                    "description": "lazy dogs sleep",
                    "is_active": False,
                    "created_at": "2024-03-15 08:30:00",
                    "tags": [],
                    "meta": {},
                    "rating": 4.5,
                },
                {"image": [0.0, 1.0, 0.0, 0.0], "keywords": [[0], [1.0]]},
            ],
            3: [
                2,
                10,
                {
                    "city": ["Paris", "Lyon"],
                    "count": 3,
                    "price": 5,
                    "location": [{"lon": 2.35, "lat": 48.85}],
                    "description": "the brown bear",
                    "created_at": "2023-12-31T23:59:59.999999999+01:00",
                    "items": [{"sku": "c", "qty": 5}],
                    "unicode": "Grüße, 世界",
                },
                {"image": [0.0, 0.0, 1.0, 0.0], "text": [0.0, 0.25]},
            ],
            5: [
                4,
                16,
                {"city": "Kyoto", "count": 50, "tags": ["green", "blue"]},
                {"image": [0.5, 0.5, 0.5, 0.5], "keywords": [[3, 4], [0.25, -1.0]]},
            ],
            6: [5, 10, None, {"text": [3.0, 4.0]}],
            7: [8, 18, None, {"image": [0.0, 1.0, 0.0, 0.0]}],
            UUID_1: [
                9,
                13,
                {"city": "Berlin", "count": 12, "ref": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"},
                {"image": [0.0, -1.0, 0.0, 0.0]},
            ],
            UUID_2: [
                7,
                10,
                {
                    "city": "Oslo",
                    "price": 100.5,
                    "is_active": True,
                    "location": {"lon": 10.75, "lat": 59.91},
                },
                {"text": [-1.0, -1.0]},
            ],
        },
        "dead": [[3, 11, ["image"]], [6, 13, ["image"]]],
    },
    "golden_unnamed": {
        "applied_op_id": 1,
        "next_label": 3,
        "indexes": {},
        "points": {
            1: [0, 0, {"k": "v"}, {"": [1.0, 2.0]}],
            2: [2, 1, None, {"": [-1.0, 0.5]}],
        },
        "dead": [[1, 1, [""]]],
    },
}

# ---- the collections once the WAL is replayed ------------------------------------------------

# Per collection: last op id, payload indexes (field -> [type, params, points count], in the
# order stats() gives them), points in scroll order (id -> [payload, vectors]).
REPLAYED = {
    "golden": {
        "applied_op_id": 31,
        "indexes": {
            "city": ["keyword", None, 5],
            "created_at": ["datetime", None, 2],
            "description": [
                "text",
                {"type": "text", "tokenizer": "word", "lowercase": True, "min_token_len": 2},
                1,
            ],
            "is_active": ["bool", None, 1],
            "location": ["geo", None, 2],
            "meta.color": ["keyword", None, 1],
            "price": ["float", None, 1],
            "ref": ["uuid", None, 2],
            "count": ["float", None, 3],
        },
        "points": {
            1: [
                {
                    "city": "Berlin",
                    "count": 1,
                    "price": 9.5,
                    "location": {"lon": 13.4, "lat": 52.5},
                    "description": "A quick brown fox",
                    "is_active": True,
                    "created_at": "2024-01-01T10:00:00Z",
                    "ref": "0b9e9c1e-2d7c-4a8e-9b1a-3f2d8c7e6a51",
                    "tags": ["red", "blue"],
                    "meta": {"color": "red", "sizes": [1, 2], "shape": "round"},
                    "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
                    "dotted.key": "v",
                    "matched_text": True,
                    "nested_hit": True,
                },
                {"keywords": [[1, 5, 9], [0.5, 1.0, 2.0]], "image": [0.0, 0.0, 0.0, -1.0]},
            ],
            3: [
                {"city": "Lyon", "overwritten": True},
                {"image": [0.0, 0.0, 1.0, 0.0], "text": [0.0, 0.25]},
            ],
            5: [
                {"city": "Kyoto", "count": 50, "tags": ["green", "blue"], "matched_text": True},
                {},
            ],
            6: [{}, {"text": [3.0, 4.0]}],
            9: [
                {
                    "city": "Rome",
                    "created_at": "2025-06-01T12:00:00Z",
                    "location": {"lon": 12.5, "lat": 41.9},
                },
                {"text": [0.5, 0.5], "keywords": [[7, 8], [1.0, 1.0]]},
            ],
            UUID_1: [
                {"city": "Berlin", "count": 12, "ref": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"},
                {"image": [0.0, -1.0, 0.0, 0.0]},
            ],
        },
    },
    "golden_unnamed": {
        "applied_op_id": 3,
        "indexes": {},
        "points": {1: [{"k": "v"}, {}]},
    },
}
