"""The body of `PUT .../vectors/{name}` in and out: a creation parsed from it, and a WAL op
rendered back to the request a follower sends, parse(render(op)) == op."""

from __future__ import annotations

import pytest

from engine.errors import FormatError, ValidationError
from engine.ops import (
    CreateVectorName,
    DeleteVectorName,
    Distance,
    SparseModifier,
    SparseVectorConfig,
    VectorConfig,
)
from server.responses import ApiError
from server.wire.op_requests import op_request
from server.wire.vector_name_config import check_vector_name_path, parse_vector_name_config

BODIES = [
    {"dense": {"size": 4, "distance": "Cosine"}},
    {"dense": {"size": 4, "distance": "Dot", "datatype": "uint8"}},
    {"dense": {"size": 2, "distance": "Euclid", "multivector_config": {"comparator": "max_sim"}}},
    {"sparse": {}},
    {"sparse": {"modifier": "idf", "datatype": "float16"}},
]


@pytest.mark.parametrize("body", BODIES)
def test_a_creation_renders_back_to_the_body_it_was_parsed_from(body):
    op = parse_vector_name_config("v/1", body)
    request = op_request("c", op, is_single_unnamed=False)
    assert (request.method, request.path, request.body) == (
        "PUT",
        "/collections/c/vectors/v%2F1",
        body,
    )
    assert parse_vector_name_config("v/1", request.body) == op


def test_parsed_ops_carry_the_space_and_the_echo():
    assert parse_vector_name_config("m", BODIES[2]) == CreateVectorName(
        "m",
        dense=VectorConfig(2, Distance.EUCLID, is_multivector=True),
        echo={"multivector_config": {"comparator": "max_sim"}},
    )
    assert parse_vector_name_config("s", BODIES[4]) == CreateVectorName(
        "s",
        sparse=SparseVectorConfig(SparseModifier.IDF),
        echo={"modifier": "idf", "index": {"datatype": "float16"}},
    )
    # A body with both forms is the dense one (serde tries the variants in order).
    both = {"dense": {"size": 1, "distance": "Dot"}, "sparse": {}}
    assert parse_vector_name_config("x", both).dense == VectorConfig(1, Distance.DOT)


def test_a_deletion_renders_to_delete():
    request = op_request("c", DeleteVectorName("a b"), is_single_unnamed=False)
    assert (request.method, request.path, request.body) == (
        "DELETE",
        "/collections/c/vectors/a%20b",
        None,
    )


@pytest.mark.parametrize(
    "body",
    [None, [], {"dense": None}, {"dense": {"size": 1.5, "distance": "Dot"}}, {"sparse": 1}],
)
def test_neither_form_is_the_untagged_error(body):
    with pytest.raises(FormatError, match="untagged enum VectorNameConfig"):
        parse_vector_name_config("x", body)


def test_out_of_range_values_are_422():
    with pytest.raises(ValidationError, match=r"dense.size: value 65537 invalid"):
        parse_vector_name_config("x", {"dense": {"size": 65537, "distance": "Dot"}})


@pytest.mark.parametrize("name", ["a" * 201, "a:b", "tab\x1f"])
def test_path_names_qdrant_refuses_are_422(name):
    with pytest.raises(ApiError) as raised:
        check_vector_name_path(name)
    assert raised.value.status == 422
