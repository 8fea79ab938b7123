"""server/wire/op_requests.py: every WAL op renders to the REST request that parses back to the
same op, and filters render to JSON that parses back to the same filter; server/commands/transfer.py:
a config renders to the create body that parses back to the same config."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.ops import CreateFieldIndex, DeleteFieldIndex
from engine.wal.op_codec import encode_op
from server.api.payload_indexes import parse_create_field_index
from server.commands.transfer import create_collection_body
from server.wire import updates
from server.wire.collection_config import parse_create_collection
from server.wire.filters import parse_filter
from server.wire.op_requests import instant_text, op_request, render_filter
from server.wire.upsert import build_upsert, parse_upsert

FILTERS: list[dict[str, Any]] = [
    {"must": [{"key": "city", "match": {"value": "London"}}]},
    {
        "must": {"key": "n", "match": {"value": 3}},
        "must_not": [{"key": "b", "match": {"value": True}}],
    },
    {
        "should": [
            {"key": "t", "match": {"text": "hello"}},
            {"key": "t", "match": {"text_any": "a b"}},
        ]
    },
    {"must": [{"key": "t", "match": {"phrase": "a b"}}, {"key": "t", "match": {"prefix": "ab"}}]},
    {
        "must": [
            {"key": "c", "match": {"any": ["x", "y"]}},
            {"key": "d", "match": {"except": [1, 2]}},
        ]
    },
    {"must": [{"key": "p", "range": {"gt": 1, "lte": 5.5}}, {"key": "q", "range": {"lt": -2}}]},
    {
        "must": [
            {
                "key": "d",
                "range": {
                    "gte": "2024-01-01T00:00:00Z",
                    "lt": "2024-06-30T12:30:00.123456789+02:00",
                },
            }
        ]
    },
    {"must": [{"key": "d", "range": {"gt": "2016-12-31T23:59:60.5Z"}}]},
    {
        "must": [
            {
                "key": "loc",
                "geo_bounding_box": {
                    "top_left": {"lon": 1.5, "lat": 52.0},
                    "bottom_right": {"lon": 2.0, "lat": 51.0},
                },
            }
        ]
    },
    {
        "must": [
            {"key": "loc", "geo_radius": {"center": {"lon": 13.4, "lat": 52.5}, "radius": 1000.0}}
        ]
    },
    {
        "must": [
            {
                "key": "loc",
                "geo_polygon": {
                    "exterior": {
                        "points": [
                            {"lon": 0, "lat": 0},
                            {"lon": 1, "lat": 0},
                            {"lon": 1, "lat": 1},
                            {"lon": 0, "lat": 0},
                        ]
                    },
                    "interiors": [
                        {
                            "points": [
                                {"lon": 0.1, "lat": 0.1},
                                {"lon": 0.2, "lat": 0.1},
                                {"lon": 0.2, "lat": 0.2},
                                {"lon": 0.1, "lat": 0.1},
                            ]
                        }
                    ],
                },
            }
        ]
    },
    {"must": [{"key": "tags", "values_count": {"gte": 2, "lt": 5}}]},
    {
        "must": [
            {"is_empty": {"key": "a.b"}},
            {"is_null": {"key": "c[]"}},
            {"key": "e", "is_empty": False},
        ]
    },
    {
        "must": [
            {"key": "f", "is_null": True},
            {"has_vector": "image"},
            {"slice": {"total": 3, "index": 1}},
        ]
    },
    {"must": [{"has_id": [1, 5, str(uuid.UUID(int=7))]}]},
    {
        "must": [
            {
                "nested": {
                    "key": "items",
                    "filter": {"must": [{"key": "qty", "range": {"gt": 1}}], "should": []},
                }
            }
        ]
    },
    {"must": [{"should": [{"key": "x", "match": {"value": 1}}]}], "must_not": []},
    {
        "min_should": {
            "conditions": [{"key": "a", "match": {"value": 1}}, {"has_id": [2]}],
            "min_count": 1,
        }
    },
    {
        "must": [
            {"key": '"odd key".x[0]', "match": {"value": "v"}},
            {"key": "k", "match": {"any": []}},
        ]
    },
]

CONFIG = parse_create_collection(
    {
        "vectors": {
            "text": {"size": 3, "distance": "Dot"},
            "image": {"size": 2, "distance": "Euclid"},
        },
        "sparse_vectors": {"kw": {"modifier": "idf"}},
        "hnsw_config": {"m": 8, "on_disk": False},
    }
)
SINGLE = parse_create_collection({"vectors": {"size": 2, "distance": "Cosine"}})
F = {"must": [{"key": "n", "range": {"gte": 2}}]}
U = str(uuid.UUID(int=99))

WRITES: list[tuple[Any, Any]] = [
    (updates.parse_delete, {"points": [1, 2, U]}),
    (updates.parse_delete, {"filter": F}),
    (updates.parse_set_payload, {"points": [1], "payload": {"a": {"b": [1, 2]}}}),
    (updates.parse_set_payload, {"filter": F, "payload": {"a": 1}, "key": "x.y"}),
    (updates.parse_overwrite_payload, {"points": [U], "payload": {"z": None}}),
    (updates.parse_delete_payload, {"points": [1], "keys": ["a", "b.c"]}),
    (updates.parse_clear_payload, {"filter": F}),
    (updates.parse_clear_payload, {"points": [3, 4]}),
    (
        updates.parse_update_vectors,
        {
            "points": [
                {
                    "id": 1,
                    "vector": {"text": [1, 2, 3], "kw": {"indices": [1, 9], "values": [0.5, 0.25]}},
                }
            ],
            "update_filter": F,
        },
    ),
    (updates.parse_delete_vectors, {"points": [1], "vector": ["image", "kw"]}),
    (updates.parse_delete_vectors, {"filter": F, "vector": ["text"]}),
]


@pytest.mark.parametrize("data", FILTERS)
def test_a_filter_renders_to_json_that_parses_back_to_it(data):
    parsed = parse_filter(data)
    assert parse_filter(render_filter(parsed)) == parsed


def test_instant_text_parses_back_to_the_same_key():
    from engine.filters.instants import instant_key

    for text in ("1970-01-01T00:00:00Z", "2016-12-31T23:59:60.999Z", "1969-07-20T20:17:40.5-05:00"):
        assert instant_key(instant_text(instant_key(text))) == instant_key(text)


def reparse(method: str, path: str, body: Any, config: Any) -> list[Any]:
    if path.endswith("/index"):
        return [parse_create_field_index(body)]
    if "/index/" in path:
        return [DeleteFieldIndex(path.rsplit("/", 1)[1])]
    if method == "PUT" and path.endswith("/points"):
        return [build_upsert(parse_upsert(body), config)]
    parser = {
        ("POST", "/points/delete"): updates.parse_delete,
        ("POST", "/points/payload"): updates.parse_set_payload,
        ("PUT", "/points/payload"): updates.parse_overwrite_payload,
        ("POST", "/points/payload/delete"): updates.parse_delete_payload,
        ("POST", "/points/payload/clear"): updates.parse_clear_payload,
        ("PUT", "/points/vectors"): updates.parse_update_vectors,
        ("POST", "/points/vectors/delete"): updates.parse_delete_vectors,
    }[(method, path.removeprefix("/collections/c"))]
    return updates.plan_writes(parser(body), config).ops


def assert_round_trips(op: Any, config: Any) -> None:
    request = op_request("c", op, config.is_single_unnamed)
    [again] = reparse(request.method, request.path, request.body, config)
    assert encode_op(again) == encode_op(op)


@pytest.mark.parametrize("parse,data", WRITES)
def test_point_writes_render_to_requests_that_parse_back_to_them(parse, data):
    for op in updates.plan_writes(parse(data), CONFIG).ops:
        assert_round_trips(op, CONFIG)


@pytest.mark.parametrize(
    "data,config",
    [
        (
            {
                "points": [
                    {
                        "id": 1,
                        "vector": {"text": [1, 2, 3], "kw": {"indices": [3], "values": [1.5]}},
                        "payload": {"a": 1},
                    },
                    {"id": U, "vector": {"image": [0.5, 0.25]}},
                ]
            },
            CONFIG,
        ),
        (
            {
                "batch": {"ids": [1, 2], "vectors": {"text": [[1, 2, 3], [4, 5, 6]]}},
                "update_mode": "insert_only",
                "update_filter": F,
            },
            CONFIG,
        ),
        ({"points": [{"id": 7, "vector": [0.6, 0.8]}]}, SINGLE),
    ],
)
def test_upserts_render_to_requests_that_parse_back_to_them(data, config):
    assert_round_trips(build_upsert(parse_upsert(data), config), config)


def test_index_ops_render_to_requests_that_parse_back_to_them():
    assert_round_trips(CreateFieldIndex("a.b", "keyword", None), CONFIG)
    params = {"type": "text", "tokenizer": "word", "lowercase": True}
    assert_round_trips(CreateFieldIndex("t", "text", params), CONFIG)
    request = op_request("c", DeleteFieldIndex("a.b"), False)
    assert (request.method, request.path, request.body) == (
        "DELETE",
        "/collections/c/index/a.b",
        None,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"vectors": {"size": 4, "distance": "Cosine"}},
        {
            "vectors": {"a": {"size": 2, "distance": "Dot", "on_disk": True}},
            "sparse_vectors": {"s": {}},
        },
        {
            "vectors": {"a": {"size": 2, "distance": "Manhattan", "hnsw_config": {"m": 4}}},
            "hnsw_config": {"m": 32, "ef_construct": 50, "full_scan_threshold": 100},
            "optimizers_config": {"indexing_threshold": 0},
            "wal_config": {"wal_capacity_mb": 64},
            "shard_number": 2,
            "on_disk_payload": False,
            "metadata": {"team": "x"},
        },
    ],
)
def test_a_config_renders_to_the_create_body_that_makes_it(body):
    config = parse_create_collection(body)
    assert parse_create_collection(create_collection_body(config)) == config
