"""Multivector writes as followers receive them: a WAL op rendered as a REST request parses
back to the same op (`keel follow` / migrate would otherwise drop the matrices)."""

from __future__ import annotations

import pytest

from engine.ops import CollectionConfig, Distance, VectorConfig
from server.wire import updates
from server.wire.upsert import build_upsert, parse_upsert
from tests.wire.test_op_requests import assert_round_trips

NAMED = CollectionConfig(
    vectors={
        "mv": VectorConfig(3, Distance.DOT, is_multivector=True),
        "d": VectorConfig(3, Distance.DOT),
    }
)
UNNAMED = CollectionConfig(vectors={"": VectorConfig(2, Distance.DOT, is_multivector=True)})


@pytest.mark.parametrize(
    ("body", "config"),
    [
        (
            {
                "points": [
                    {"id": 1, "vector": {"mv": [[1, 2, 3], [4, 5, 6]], "d": [1, 0, 0]}},
                    {"id": 2, "vector": {"d": [0, 1, 0]}},
                    {"id": 3, "vector": {"mv": [0.5, 0.25, 1]}},
                ]
            },
            NAMED,
        ),
        ({"points": [{"id": 1, "vector": [[1, 2], [3, 4], [5, 6]]}]}, UNNAMED),
    ],
)
def test_multivector_upserts_render_to_requests_that_parse_back(body, config):
    op = build_upsert(parse_upsert(body), config)
    assert op.multi, "the body has matrices: the test would prove nothing without them"
    assert_round_trips(op, config)


def test_multivector_updates_render_to_requests_that_parse_back():
    body = {
        "points": [{"id": 7, "vector": {"mv": [[1, 1, 1]]}}, {"id": 8, "vector": {"d": [1, 2, 3]}}]
    }
    [op] = updates.plan_writes(updates.parse_update_vectors(body), NAMED).ops
    assert op.multi["mv"].matrix.tolist() == [[1.0, 1.0, 1.0]]
    assert_round_trips(op, NAMED)
