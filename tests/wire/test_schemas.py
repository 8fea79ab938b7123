"""Request parsing without a server: every body form of the seed, every id form, every text.

Texts are Qdrant 1.19's (see the module docstrings of server/wire/schemas.py and server/wire/upsert.py
for where each was read); the Keel-only rules are marked as such.
"""

from __future__ import annotations

import uuid

import numpy as np
import orjson
import pytest

from engine.errors import BadRequest, FormatError, NotImplementedYet, ValidationError
from engine.limits import POINTS_PER_REQUEST_MAX
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    Distance,
    UpdateMode,
    VectorConfig,
)
from server.responses import ApiError
from server.wire.schemas import (
    UpdateParams,
    check_collection_name,
    load_json,
    parse_point_id,
    parse_point_id_path,
    parse_read_params,
    parse_retrieve,
    parse_update_params,
    parse_with_payload,
    parse_with_vector,
)
from server.wire.upsert import build_upsert, parse_upsert

UUID_TEXT = "550e8400-e29b-41d4-a716-446655440000"
UUID_VALUE = uuid.UUID(UUID_TEXT)
ID_ERROR = "value {} is not a valid point ID, valid values are either an unsigned integer or a UUID"
UNNAMED_4 = CollectionConfig(vectors={UNNAMED_VECTOR: VectorConfig(4, Distance.DOT)})
NAMED = CollectionConfig(
    vectors={"text": VectorConfig(4, Distance.COSINE), "image": VectorConfig(2, Distance.DOT)}
)

from tests.api.seed_bodies import SEED_BATCH, SEED_NAMED, SEED_SINGLE


def parse(text: str | bytes):
    return parse_upsert(load_json(text.encode() if isinstance(text, str) else text))


# ---- point ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (0, 0),
        (1, 1),
        (2**64 - 1, 2**64 - 1),
        (UUID_TEXT, UUID_VALUE),
        (UUID_TEXT.upper(), UUID_VALUE),
        ("550e8400e29b41d4a716446655440000", UUID_VALUE),
        ("550E8400E29B41D4A716446655440000", UUID_VALUE),
        ("{" + UUID_TEXT + "}", UUID_VALUE),
        ("urn:uuid:" + UUID_TEXT, UUID_VALUE),
    ],
)
def test_point_ids_accept_u64_and_every_uuid_form_of_the_rust_uuid_crate(raw, expected):
    assert parse_point_id(raw) == expected


@pytest.mark.parametrize(
    "raw, shown",
    [
        (-1, "-1"),
        (1.5, "1.5"),
        (1.0, "1"),  # Rust prints the f64 1.0 as `1`
        (1.8446744073709552e19, "18446744073709552000"),  # 2**64 arrives as a float
        ("123", "123"),  # a string is never an integer id
        ("abc", "abc"),
        (True, "true"),
        (None, "Unit"),
        ([1], "[U64(1)]"),
        ("{550e8400e29b41d4a716446655440000}", "{550e8400e29b41d4a716446655440000}"),
        ("urn:uuid:550e8400e29b41d4a716446655440000", "urn:uuid:550e8400e29b41d4a716446655440000"),
        ("URN:UUID:" + UUID_TEXT, "URN:UUID:" + UUID_TEXT),
        ("550e8400-e29b41d4-a716-446655440000-", "550e8400-e29b41d4-a716-446655440000-"),
        ("550e8400e29b41d4a71644665544000g", "550e8400e29b41d4a71644665544000g"),
    ],
)
def test_invalid_point_ids_are_format_errors_in_qdrants_words(raw, shown):
    with pytest.raises(FormatError) as raised:
        parse_point_id(raw)
    assert str(raised.value) == ID_ERROR.format(shown)


def test_a_big_integer_id_in_json_is_rejected_like_a_float():
    body = b'{"points": [{"id": 18446744073709551616, "vector": [1, 2, 3, 4]}]}'
    with pytest.raises(FormatError) as raised:
        parse(body)
    assert str(raised.value) == ID_ERROR.format("18446744073709552000")


@pytest.mark.parametrize("text, expected", [("5", 5), ("+5", 5), (UUID_TEXT, UUID_VALUE)])
def test_path_point_ids_parse_like_rust_from_str(text, expected):
    assert parse_point_id_path(text) == expected


@pytest.mark.parametrize("text", ["abc", "-1", "18446744073709551616", "1.0", " 1"])
def test_unrecognized_path_point_ids_are_wrong_input(text):
    with pytest.raises(ApiError) as raised:
        parse_point_id_path(text)
    assert raised.value.status == 400
    assert raised.value.message == f'Wrong input: Can not recognize "{text}" as point id'


# ---- the seed's upsert bodies ------------------------------------------------------------


def test_seed_single_point_builds_one_row_of_the_unnamed_vector():
    op = build_upsert(parse(SEED_SINGLE), UNNAMED_4)
    assert op.ids == [1]
    assert op.payloads == [
        {"city": "Berlin", "country": "Germany", "population": 3645000, "year": 2023}
    ]
    assert list(op.vectors) == [UNNAMED_VECTOR]
    assert op.vectors[UNNAMED_VECTOR].rows.tolist() == [0]
    assert op.vectors[UNNAMED_VECTOR].matrix.dtype == np.float32
    assert op.vectors[UNNAMED_VECTOR].matrix.tolist() == [
        np.float32([0.05, 0.61, 0.76, 0.74]).tolist()
    ]
    assert op.update_mode is UpdateMode.UPSERT


def test_seed_named_vectors_build_one_column_per_name():
    config = CollectionConfig(
        vectors={"text": VectorConfig(4, Distance.DOT), "image": VectorConfig(4, Distance.DOT)}
    )
    op = build_upsert(parse(SEED_NAMED), config)
    assert sorted(op.vectors) == ["image", "text"]
    assert op.vectors["text"].matrix.tolist() == [np.float32([0.1, 0.2, 0.3, 0.4]).tolist()]
    assert op.vectors["image"].matrix.tolist() == [np.float32([0.5, 0.6, 0.7, 0.8]).tolist()]
    assert op.payloads == [{"title": "Product A", "description": "High quality item"}]


def test_seed_batch_builds_the_same_columns_as_the_list_form():
    batch = build_upsert(parse(SEED_BATCH), UNNAMED_4)
    listed = build_upsert(
        parse_upsert(
            {
                "points": [
                    {"id": 1, "vector": [0.05, 0.61, 0.76, 0.74], "payload": {"city": "Berlin"}},
                    {"id": 2, "vector": [0.19, 0.81, 0.75, 0.11], "payload": {"city": "London"}},
                    {"id": 3, "vector": [0.36, 0.55, 0.47, 0.94], "payload": {"city": "Paris"}},
                ]
            }
        ),
        UNNAMED_4,
    )
    assert batch.ids == listed.ids == [1, 2, 3]
    assert batch.payloads == listed.payloads
    assert batch.vectors[""].rows.tolist() == listed.vectors[""].rows.tolist() == [0, 1, 2]
    assert np.array_equal(batch.vectors[""].matrix, listed.vectors[""].matrix)


def test_points_may_carry_a_subset_of_named_vectors_or_none():
    op = build_upsert(
        parse_upsert(
            {
                "points": [
                    {"id": 1, "vector": {"image": [1, 2]}},
                    {"id": 2, "vector": {}},
                    {"id": 3, "vectors": {"text": [1, 2, 3, 4], "image": [3, 4]}},
                ]
            }
        ),
        NAMED,
    )
    assert op.vectors["image"].rows.tolist() == [0, 2]
    assert op.vectors["text"].rows.tolist() == [2]
    assert op.vectors["image"].rows.dtype == np.int32
    assert op.payloads == [None, None, None]


def test_uuid_ids_of_every_form_become_one_canonical_uuid():
    body = parse_upsert(
        {
            "batch": {
                "ids": [UUID_TEXT.upper(), "{" + UUID_TEXT + "}", "urn:uuid:" + UUID_TEXT, 7],
                "vectors": [[1, 2, 3, 4]] * 4,
            }
        }
    )
    assert body.ids == [UUID_VALUE, UUID_VALUE, UUID_VALUE, 7]
    assert body.payloads == [None] * 4


@pytest.mark.parametrize("mode", ["upsert", "insert_only", "update_only"])
def test_update_mode_is_parsed(mode):
    body = parse_upsert({"points": [], "update_mode": mode})
    assert body.update_mode is UpdateMode(mode)


def test_an_update_filter_is_parsed_into_the_body():
    assert parse_upsert({"points": []}).update_filter is None
    assert parse_upsert({"points": [], "update_filter": None}).update_filter is None
    body = parse_upsert({"points": [], "update_filter": {"must": [{"has_id": [1]}]}})
    assert body.update_filter is not None
    assert build_upsert(body, UNNAMED_4).update_filter == body.update_filter


# ---- format errors (400) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "Invalid PointInsertOperations format"),
        ("x", "Invalid PointInsertOperations format"),
        (None, "Invalid PointInsertOperations format"),
        ({}, "Invalid PointInsertOperations format"),
        ({"point": []}, "Invalid PointInsertOperations format"),
        (
            {"points": [], "batch": {"ids": [], "vectors": []}},
            "Invalid PointInsertOperations format: send either `points` or `batch`, not both",
        ),
        ({"points": {}}, "invalid type: map, expected a sequence"),
        ({"points": [1]}, "invalid type: integer `1`, expected struct PointStruct"),
        ({"points": [{"vector": [1]}]}, "missing field `id`"),
        ({"points": [{"id": 1}]}, "missing field `vector`"),
        ({"points": [{"id": 1, "vector": [1], "vectors": [1]}]}, "duplicate field `vector`"),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": "x"}]},
            'invalid type: string "x", expected a map',
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": [1]}]},
            "invalid type: sequence, expected a map",
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": 5}]},
            "invalid type: integer `5`, expected a map",
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": 1.5}]},
            "invalid type: floating point `1.5`, expected a map",
        ),
        (
            {"points": [{"id": 1, "vector": [1, 2, 3, 4], "payload": True}]},
            "invalid type: boolean `true`, expected a map",
        ),
        (
            {"points": [{"id": 1, "vector": [1, True, 3, 4]}]},
            "data did not match any variant of untagged enum VectorStruct",
        ),
        (
            {"points": [{"id": 1, "vector": [1, "2", 3, 4]}]},
            "data did not match any variant of untagged enum VectorStruct",
        ),
        (
            {"points": [{"id": 1, "vector": [1, None]}]},
            "data did not match any variant of untagged enum VectorStruct",
        ),
        (
            {"points": [{"id": 1, "vector": "x"}]},
            "data did not match any variant of untagged enum VectorStruct",
        ),
        (
            {"points": [{"id": 1, "vector": {"a": [True]}}]},
            "data did not match any variant of untagged enum VectorStruct",
        ),
        (
            {"batch": {"ids": [1], "vectors": [[1, False]]}},
            "data did not match any variant of untagged enum BatchVectorStruct",
        ),
        (
            {"batch": {"ids": [1], "vectors": 5}},
            "data did not match any variant of untagged enum BatchVectorStruct",
        ),
        ({"batch": {"vectors": [[1]]}}, "missing field `ids`"),
        ({"batch": {"ids": [1]}}, "missing field `vectors`"),
        ({"batch": []}, "invalid type: sequence, expected struct Batch"),
        (
            {"batch": {"ids": [1], "vectors": [[1]], "payloads": {}}},
            "invalid type: map, expected a sequence",
        ),
        (
            {"points": [], "update_mode": "replace"},
            "unknown variant `replace`, expected one of `upsert`, `insert_only`, `update_only`",
        ),
        (
            {"points": [], "update_filter": {"bogus": []}},
            "unknown field `bogus`, expected one of `should`, `min_should`, `must`, `must_not`",
        ),
        ({"points": [{"id": -1, "vector": [1]}]}, ID_ERROR.format("-1")),
        ({"batch": {"ids": ["123"], "vectors": [[1]]}}, ID_ERROR.format("123")),
    ],
)
def test_malformed_upsert_bodies_are_format_errors(body, message):
    with pytest.raises(FormatError) as raised:
        parse_upsert(body)
    assert not isinstance(raised.value, ValidationError)
    assert str(raised.value) == message


def test_too_many_points_in_one_request_are_rejected():
    with pytest.raises(FormatError) as raised:
        parse_upsert({"points": [{"id": 1, "vector": [1]}] * (POINTS_PER_REQUEST_MAX + 1)})
    assert "too many points in one request" in str(raised.value)


@pytest.mark.parametrize(
    "text, message",
    [
        (b"", "EOF while parsing a value at line 1 column 0"),
        (b"{", "unexpected end of data at line 1 column 2"),
        (b'{"points": [NaN]}', "unexpected character, expected a JSON value at line 1 column 13"),
    ],
)
def test_malformed_json_is_a_format_error(text, message):
    with pytest.raises(FormatError) as raised:
        load_json(text)
    assert str(raised.value) == message


# ---- validation errors (422) -------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        (
            {"batch": {"ids": [1, 2, 3], "vectors": [[1, 2], [3, 4]]}},
            "batch.batch: number of ids and vectors must be equal (3 != 2)",
        ),
        (
            {"batch": {"ids": [1, 2], "vectors": {"a": [[1], [2], [3]]}}},
            "batch.batch: number of ids and vectors must be equal (2 != 3)",
        ),
        (
            {"batch": {"ids": [1, 2, 3], "vectors": [[1], [2], [3]], "payloads": [{}, None]}},
            "batch.batch: number of ids and payloads must be equal (3 != 2)",
        ),
        (
            {"batch": {"ids": [1, 2], "vectors": [[1], []]}},
            "batch.vector: dense vector must not be empty",
        ),
        (
            {"batch": {"ids": [1], "vectors": {"a": [[]]}}},
            "batch.?.vector: dense vector must not be empty",
        ),
        (
            {"points": [{"id": 1, "vector": []}]},
            "points[0].vector.vector: dense vector must not be empty",
        ),
        (
            {"points": [{"id": 1, "vector": [1]}, {"id": 2, "vector": {"a": [], "b": [1]}}]},
            "points[1].vector.?.vector: dense vector must not be empty",
        ),
        (
            {"points": [{"id": 1, "vector": {"a": [], "b": []}}]},
            (
                "points[0].vector.?[0].vector: dense vector must not be empty; "
                "points[0].vector.?[1].vector: dense vector must not be empty"
            ),
        ),
    ],
)
def test_invalid_upsert_bodies_are_validation_errors(body, message):
    with pytest.raises(ValidationError) as raised:
        parse_upsert(body)
    assert str(raised.value) == message


def test_format_errors_come_before_validation_errors():
    body = {"points": [{"id": 1, "vector": []}, {"id": -5, "vector": [1]}]}
    with pytest.raises(FormatError) as raised:
        parse_upsert(body)
    assert str(raised.value) == ID_ERROR.format("-5")


@pytest.mark.parametrize(
    "body",
    [
        {"points": [{"id": 1, "vector": {"text": "hello", "model": "bm25"}}]},
        # A named document, as Qdrant's own BM25 test upserts it: 501, not a format error.
        {"points": [{"id": 1, "vector": {"text": {"model": "qdrant/bm25", "text": "a b"}}}]},
        {"points": [{"id": 1, "vector": {"a": [1.0], "img": {"model": "m", "image": "x.png"}}}]},
    ],
)
def test_unsupported_upsert_features_are_not_implemented(body):
    with pytest.raises(NotImplementedYet):
        parse_upsert(body)


# ---- against the collection (400 Wrong input) ----------------------------------------------


@pytest.mark.parametrize(
    "body, config, message",
    [
        (
            {"points": [{"id": 1, "vector": [1, 2, 3]}]},
            UNNAMED_4,
            "Vector dimension error: expected dim: 4, got 3",
        ),
        (
            {"batch": {"ids": [1, 2], "vectors": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}},
            UNNAMED_4,
            "Vector dimension error: expected dim: 4, got 5",
        ),
        (
            {"points": [{"id": 1, "vector": {"image": [1, 2, 3]}}]},
            NAMED,
            "Vector dimension error: expected dim: 2, got 3 for vector 'image'",
        ),
        (
            {"points": [{"id": 1, "vector": {"audio": [1], "text": [1, 2, 3, 4]}}]},
            NAMED,
            "Not existing vector name error: audio",
        ),
        (
            # Qdrant checks dimensions first and skips unknown names there.
            {"points": [{"id": 1, "vector": {"audio": [1], "image": [1]}}]},
            NAMED,
            "Vector dimension error: expected dim: 2, got 1 for vector 'image'",
        ),
        ({"points": [{"id": 1, "vector": [1, 2]}]}, NAMED, "Not existing vector name error: "),
        (
            {"points": [{"id": 1, "vector": {"image": [1, 2]}}]},
            UNNAMED_4,
            "Not existing vector name error: image",
        ),
        (
            {"points": [{"id": 1, "vector": [[1, 2, 3, 4], [1, 2, 3, 4]]}]},
            UNNAMED_4,
            "Conversion between multi and regular vectors failed",
        ),
        (  # Keel: the unnamed vector of a single-vector collection is required.
            {"points": [{"id": 9, "vector": {}}]},
            UNNAMED_4,
            "point 9 has no vector; this collection's unnamed vector is required",
        ),
        (  # Keel: values must be finite once they are float32 (1e39 overflows).
            {"points": [{"id": 1, "vector": [1, 2, 3, 4]}, {"id": 2, "vector": [1, 1e39, 3, 4]}]},
            UNNAMED_4,
            "vector of point 2 has a value that is not a finite float32",
        ),
    ],
)
def test_vectors_are_checked_against_the_collection(body, config, message):
    with pytest.raises(BadRequest) as raised:
        build_upsert(parse_upsert(body), config)
    assert not isinstance(raised.value, FormatError)
    assert str(raised.value) == message


def test_a_large_upsert_parses_into_one_float32_matrix():
    rng = np.random.default_rng(7)
    vectors = rng.random((1000, 128)).tolist()
    body = orjson.dumps({"points": [{"id": i, "vector": v} for i, v in enumerate(vectors)]})
    config = CollectionConfig(vectors={"": VectorConfig(128, Distance.DOT)})
    op = build_upsert(parse_upsert(load_json(body)), config)
    assert op.vectors[""].matrix.shape == (1000, 128)
    assert op.vectors[""].matrix.flags["C_CONTIGUOUS"]
    assert np.allclose(op.vectors[""].matrix, np.float32(vectors))


# ---- query parameters, names, other bodies -----------------------------------------------


def test_update_params_default_to_waiting():
    assert parse_update_params({}) == UpdateParams(wait=True, ordering="weak", timeout_s=None)
    params = parse_update_params({"wait": "false", "ordering": "strong", "timeout": "3"})
    assert params == UpdateParams(wait=False, ordering="strong", timeout_s=3.0)


@pytest.mark.parametrize(
    "query, message",
    [
        ({"wait": "yes"}, "provided string was not `true` or `false`"),
        ({"wait": "True"}, "provided string was not `true` or `false`"),
        (
            {"ordering": "fast"},
            "unknown variant `fast`, expected one of `weak`, `medium`, `strong`",
        ),
        ({"timeout": "abc"}, "invalid digit found in string"),
        ({"timeout": "1.5"}, "invalid digit found in string"),
        ({"timeout": ""}, "cannot parse integer from empty string"),
        ({"timeout": "-1"}, "std::time::Duration cannot be negative"),
        ({"timeout": "0"}, "value 0 invalid, must be 1 or larger"),
    ],
)
def test_bad_update_params_are_query_parameter_errors(query, message):
    with pytest.raises(ApiError) as raised:
        parse_update_params(query)
    assert raised.value.status == 400
    assert raised.value.message == f"Deserialize error in query parameters: {message}"


def test_read_params_accept_consistency_and_a_positive_timeout():
    assert parse_read_params({"consistency": "majority", "timeout": "5"}) == 5.0
    assert parse_read_params({}) is None
    with pytest.raises(ApiError):
        parse_read_params({"timeout": "0"})


@pytest.mark.parametrize(
    "name, is_create, reason",
    [
        ("a/b", False, 'collection name cannot contain "/" char'),
        ("a\0b", False, 'collection name cannot contain "\0" char'),
        ("a\\b", False, 'collection name cannot contain "\\" char'),
        ("a:b", True, 'collection name cannot contain ":" char'),
        ("a*b", True, 'collection name cannot contain "*" char'),
        (".", False, 'collection name cannot be "."'),
        ("..", True, 'collection name cannot be ".."'),
        ("x" * 256, False, f'value "{"x" * 256}" invalid, must be from 1 to 255 characters'),
    ],
)
def test_bad_collection_names_are_path_validation_errors(name, is_create, reason):
    with pytest.raises(ApiError) as raised:
        check_collection_name(name, is_create=is_create)
    assert raised.value.status == 422
    assert raised.value.message == (
        f"Validation error in path parameters: [collection_name: {reason}]"
    )


def test_legacy_names_are_allowed_outside_creation():
    check_collection_name("a:b")
    check_collection_name("my-collection_1.v2")


def test_retrieve_defaults_to_payload_without_vectors():
    request = parse_retrieve({"ids": [1]})
    assert request.with_payload.is_enabled is True
    assert request.with_vector.is_enabled is False
    request = parse_retrieve({"ids": [], "with_payload": ["a"], "with_vectors": ["v"]})
    assert request.with_payload.include == ("a",)
    assert request.with_vector.names == ("v",)
    with pytest.raises(FormatError) as raised:
        parse_retrieve({})
    assert str(raised.value) == "missing field `ids`"


def test_payload_and_vector_selectors():
    assert parse_with_payload({"exclude": ["a"]}, default=True).exclude == ("a",)
    assert parse_with_payload(False, default=True).is_enabled is False
    assert parse_with_vector(True).is_enabled is True
    with pytest.raises(FormatError) as raised:
        parse_with_payload(5, default=True)
    assert str(raised.value) == (
        "Expected a boolean, an array of strings, or an object with an include/exclude field"
    )
    with pytest.raises(FormatError) as raised:
        parse_with_vector({"a": 1})
    assert str(raised.value) == "Expected a boolean, or an array of strings"
