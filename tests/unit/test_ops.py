"""CBOR encoding of operations round-trips exactly (ids, vectors, payloads, modes)."""

from __future__ import annotations

import uuid

import cbor2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import CorruptionError
from engine.ops import (
    DeletePoints,
    NamedVectors,
    UpdateMode,
    UpsertPoints,
    point_id_from_key,
    point_key,
)
from engine.wal.op_codec import decode_op, encode_op

point_ids = st.one_of(st.integers(0, 2**64 - 1), st.uuids())
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
payloads = st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@given(
    ids=st.lists(point_ids, min_size=1, max_size=6),
    data=st.data(),
    mode=st.sampled_from(list(UpdateMode)),
)
def test_upsert_round_trips(ids, data, mode) -> None:
    count = len(ids)
    rows = np.array(sorted(data.draw(st.sets(st.integers(0, count - 1)))), dtype=np.int32)
    matrix = np.array(
        data.draw(
            st.lists(
                st.lists(st.floats(width=32, allow_nan=False), min_size=3, max_size=3),
                min_size=len(rows),
                max_size=len(rows),
            )
        ),
        dtype=np.float32,
    ).reshape(len(rows), 3)
    op = UpsertPoints(
        ids,
        {"v": NamedVectors(rows, matrix)},
        data.draw(st.lists(payloads, min_size=count, max_size=count)),
        mode,
    )
    decoded = decode_op(encode_op(op))
    assert decoded.ids == op.ids
    assert decoded.payloads == op.payloads
    assert decoded.update_mode is mode
    np.testing.assert_array_equal(decoded.vectors["v"].rows, rows)
    np.testing.assert_array_equal(decoded.vectors["v"].matrix, matrix)
    assert decoded.vectors["v"].matrix.dtype == np.float32


@given(ids=st.lists(point_ids, max_size=10))
def test_delete_round_trips(ids) -> None:
    assert decode_op(encode_op(DeletePoints(ids))) == DeletePoints(ids)


@given(point_id=point_ids)
def test_point_keys_round_trip_and_never_collide_across_kinds(point_id) -> None:
    key = point_key(point_id)
    assert point_id_from_key(key) == point_id
    assert key[0] == (1 if isinstance(point_id, uuid.UUID) else 0)


def test_a_body_no_version_of_keel_wrote_is_corruption() -> None:
    with pytest.raises(CorruptionError):
        decode_op(b"\xa1\x61t\x63xyz")


@pytest.mark.parametrize("bad_id", [-1, 2**64, "7", 1.0, b"too short"])
def test_a_record_with_an_id_keel_never_writes_is_corruption(bad_id) -> None:
    # The decoder's fast path for integer ids must refuse what the slow path refuses.
    body = cbor2.loads(encode_op(DeletePoints([3, 4])))
    body["ids"] = [3, bad_id]
    with pytest.raises(CorruptionError):
        decode_op(cbor2.dumps(body))


def test_decoded_vectors_are_read_only_views_that_round_trip() -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    op = UpsertPoints([1, 2], {"v": NamedVectors(np.array([0, 1], np.int32), matrix)}, [None, None])
    decoded = decode_op(encode_op(op))
    np.testing.assert_array_equal(decoded.vectors["v"].matrix, matrix)
    with pytest.raises(ValueError):
        decoded.vectors["v"].matrix[0, 0] = 1.0  # nothing may write into a logged op
