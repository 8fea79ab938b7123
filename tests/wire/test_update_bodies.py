"""The write bodies of server/wire/updates.py parsed without a server: which engine ops they become."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import FormatError
from engine.ops import (
    UNNAMED_VECTOR,
    CollectionConfig,
    DeletePoints,
    DeleteVectors,
    Distance,
    PayloadMode,
    UpdatePayload,
    UpdateResult,
    UpdateStatus,
    UpdateVectors,
    UpsertPoints,
    VectorConfig,
)
from server.wire.updates import (
    parse_batch,
    parse_clear_payload,
    parse_delete,
    parse_delete_vectors,
    parse_json_path,
    parse_overwrite_payload,
    parse_set_payload,
    parse_update_vectors,
    plan_writes,
)

CONFIG = CollectionConfig(
    vectors={"a": VectorConfig(2, Distance.DOT), "b": VectorConfig(2, Distance.DOT)}
)
HAS_ID_1 = {"must": [{"has_id": [1]}]}


def ops_of(writes) -> list:
    return plan_writes(writes, CONFIG).ops


def test_selectors_become_ids_or_a_filter():
    assert ops_of(parse_delete({"points": [1, 2]})) == [DeletePoints(ids=[1, 2])]
    [op] = ops_of(parse_delete({"filter": HAS_ID_1}))
    assert op.ids == [] and op.filter is not None
    [op] = ops_of(parse_clear_payload({"filter": HAS_ID_1}))
    assert (op.ids, op.mode, op.filter is not None) == (None, PayloadMode.CLEAR, True)


def test_set_payload_with_ids_and_filter_keeps_only_the_ids():
    [op] = ops_of(parse_set_payload({"payload": {"x": 1}, "points": [3], "filter": HAS_ID_1}))
    assert op == UpdatePayload([3], PayloadMode.SET, payload={"x": 1})


def test_overwrite_drops_the_key_and_set_keeps_it():
    body = {"payload": {"x": 1}, "points": [1], "key": "a.b"}
    [overwrite] = ops_of(parse_overwrite_payload(body))
    [set_op] = ops_of(parse_set_payload(body))
    assert (overwrite.key, set_op.key) == (None, "a.b")


def test_update_vectors_become_float32_columns():
    body = {"points": [{"id": 1, "vector": {"a": [1, 2]}}, {"id": 2, "vector": {"b": [3, 4]}}]}
    [op] = ops_of(parse_update_vectors(body))
    assert isinstance(op, UpdateVectors) and op.ids == [1, 2]
    assert op.vectors["a"].rows.tolist() == [0] and op.vectors["b"].rows.tolist() == [1]
    assert op.vectors["b"].matrix.dtype == np.float32
    assert op.vectors["b"].matrix.tolist() == [[3, 4]]


def test_delete_vectors_names_are_a_set_and_both_selectors_make_two_ops():
    writes = parse_delete_vectors({"points": [1], "filter": HAS_ID_1, "vector": ["a", "b", "a"]})
    plan = plan_writes(writes, CONFIG)
    assert [type(op) for op in plan.ops] == [DeleteVectors, DeleteVectors]
    assert (plan.ops[0].ids, plan.ops[1].ids) == (None, [1])
    assert plan.ops[1].names == ["a", "b"]
    assert plan.answer_indexes == [1]


def test_a_plan_answers_each_write_with_its_last_op():
    writes = parse_batch(
        {
            "operations": [
                {"delete_vectors": {"points": [1], "filter": {}, "vector": ["a"]}},
                {"upsert": {"points": [{"id": 1, "vector": {"a": [1, 1]}}]}},
            ]
        }
    )
    plan = plan_writes(writes, CONFIG)
    assert [type(op) for op in plan.ops] == [DeleteVectors, DeleteVectors, UpsertPoints]
    results = [UpdateResult(op_id, UpdateStatus.COMPLETED) for op_id in (7, 8, 9)]
    assert [result.op_id for result in plan.answers(results)] == [8, 9]


def test_unnamed_vectors_in_a_batch_upsert_keep_the_update_filter():
    config = CollectionConfig(vectors={UNNAMED_VECTOR: VectorConfig(2, Distance.DOT)})
    body = {"upsert": {"points": [{"id": 1, "vector": [1, 2]}], "update_filter": HAS_ID_1}}
    [op] = plan_writes(parse_batch({"operations": [body]}), config).ops
    assert isinstance(op, UpsertPoints) and op.update_filter is not None


@pytest.mark.parametrize("path", ["a", "a.b", "a-b_c.d1", "ключ.значение"])
def test_dotted_json_paths_are_accepted(path):
    assert parse_json_path(path) == path


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("a[0]", "a[0]"), ("a[]", "a[]"), ('"a.b"', '"a.b"'), ('a."b"', "a.b"), ("a[].b", "a[].b")],
)
def test_json_paths_with_indexes_and_quotes_are_kept_canonical(path, canonical):
    assert parse_json_path(path) == canonical


@pytest.mark.parametrize("path", ["", "a.", ".a", "a..b", "a b", "a[x]", "a["])
def test_invalid_json_paths_are_format_errors(path):
    with pytest.raises(FormatError) as raised:
        parse_json_path(path)
    assert str(raised.value) == f"Invalid json path: '{path}'"
