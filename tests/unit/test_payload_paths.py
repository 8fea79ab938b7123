"""Set and delete payload at JsonPath keys (`a.b`, `a[0].b`, `a[].b`, `"a.b"`): Keel's
engine/store/mutations.py against Qdrant's own engine (qdrant-edge-py) on generated payloads."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import qdrant_edge

from engine.filters.payload_path import PayloadPath
from engine.ops import PayloadMode, UpdatePayload
from engine.store.mutations import edited_payload

KEYS = ["a", "b", "c.d"]
PATHS = [
    "a", "a.b", "a.b.c", "a[0]", "a[1]", "a[3]", "a[]", "a[].b", "a[0].b", "a[].b[]",
    "a.b[0].c", '"c.d"', '"c.d".e', "b[]", "b[0][]",
]  # fmt: skip


def random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.choice(["int", "str", "list", "dict"] if depth < 3 else ["int", "str"])
    if kind == "int":
        return rng.randint(0, 9)
    if kind == "str":
        return rng.choice(["x", "y"])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def random_payload(rng: random.Random) -> dict[str, Any]:
    return {key: random_value(rng, 1) for key in rng.sample(KEYS, rng.randint(0, 3))}


def canonical(path: str) -> str:
    return str(PayloadPath.parse(path))


def test_set_and_delete_at_paths_agree_with_qdrant_edge(tmp_path: Path) -> None:
    """300 generated cases, each on its own point of one shard."""
    rng = random.Random(4)
    cases = []
    for point_id in range(300):
        payload = random_payload(rng)
        if rng.random() < 0.5:
            key = rng.choice(PATHS)
            src = {rng.choice(["b", "z"]): rng.randint(10, 19)}
            op = UpdatePayload([point_id], PayloadMode.SET, payload=src, key=canonical(key))
            edge_op = qdrant_edge.UpdateOperation.set_payload([point_id], src, key)
        else:
            keys = rng.sample(PATHS, rng.randint(1, 2))
            op = UpdatePayload(
                [point_id], PayloadMode.DELETE_KEYS, keys=[canonical(key) for key in keys]
            )
            edge_op = qdrant_edge.UpdateOperation.delete_payload([point_id], keys)
        cases.append((payload, op, edge_op))
    vectors = {"": qdrant_edge.EdgeVectorParams(size=1, distance=qdrant_edge.Distance.Dot)}
    shard = qdrant_edge.EdgeShard.create(str(tmp_path), qdrant_edge.EdgeConfig(vectors=vectors))
    points = [qdrant_edge.Point(i, [1.0], payload) for i, (payload, _, _) in enumerate(cases)]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
    for _, _, edge_op in cases:
        shard.update(edge_op)
    records = {
        record.id: record.payload or {}
        for record in shard.retrieve(list(range(len(cases))), True, False)
    }
    shard.close()
    disagreements = [
        (payload, op.key, op.keys, records[point_id], edited_payload(payload, op) or {})
        for point_id, (payload, op, _) in enumerate(cases)
        if (edited_payload(payload, op) or {}) != records[point_id]
    ]
    assert disagreements == []


def test_qdrants_documented_cases() -> None:
    """The cases of Qdrant's json_path tests, by hand."""

    def set_at(payload: dict, key: str, src: dict) -> dict:
        return edited_payload(payload, UpdatePayload([0], PayloadMode.SET, src, key=key))

    assert set_at({}, "key1.key2[3]", {"c": 1}) == {"key1": {"key2": []}}
    assert set_at({}, "key1.key2[].key3", {"c": 1}) == {"key1": {"key2": []}}
    assert set_at({"a": 10}, "a.b.c", {"x": 1}) == {"a": {"b": {"c": {"x": 1}}}}
    nested = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert set_at(nested, "a.b[1]", {"c": 5}) == {"a": {"b": [{"c": 1}, {"c": 5}]}}
    assert nested == {"a": {"b": [{"c": 1}, {"c": 2}]}}  # the input is not changed

    def delete(payload: dict, key: str) -> dict:
        return edited_payload(payload, UpdatePayload([0], PayloadMode.DELETE_KEYS, keys=[key]))

    assert delete({"i": [{"j": 1, "k": 2}, {"j": 3}]}, "i[0].j") == {"i": [{"k": 2}, {"j": 3}]}
    assert delete({"i": [{"j": 1, "k": 2}, {"j": 3}]}, "i[].j") == {"i": [{"k": 2}, {}]}
    assert delete({"i": [1, 2]}, "i[0]") == {"i": [1, 2]}  # by index: never (not idempotent)
    assert delete({"i": [1, 2]}, "i[]") == {"i": []}


SELECT_PATTERNS = ["a", "b", "a.b", "a[].b", "a[0].b", '"c.d"', "c", "a.b.c", "b[]", "a[]"]


def test_payload_include_and_exclude_agree_with_qdrant_edge(tmp_path: Path) -> None:
    """with_payload include/exclude (engine/query/payload_selection.py) against qdrant-edge."""
    from engine.query import payload_selection

    rng = random.Random(11)
    payloads = [random_payload(rng) for _ in range(150)]
    vectors = {"": qdrant_edge.EdgeVectorParams(size=1, distance=qdrant_edge.Distance.Dot)}
    shard = qdrant_edge.EdgeShard.create(str(tmp_path), qdrant_edge.EdgeConfig(vectors=vectors))
    points = [qdrant_edge.Point(i, [1.0], payload) for i, payload in enumerate(payloads)]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
    disagreements = []
    for _ in range(40):
        keys = rng.sample(SELECT_PATTERNS, rng.randint(1, 3))
        patterns = tuple(PayloadPath.parse(key) for key in keys)
        for kind in ("include", "exclude"):
            selector = getattr(qdrant_edge.PayloadSelector, kind.capitalize())(keys)
            records = shard.retrieve(list(range(len(payloads))), selector, False)
            expected = {record.id: record.payload or {} for record in records}
            select = getattr(payload_selection, kind)
            for point_id, payload in enumerate(payloads):
                observed = select(payload, patterns)
                if observed != expected[point_id]:
                    disagreements.append((kind, keys, payload, expected[point_id], observed))
    shard.close()
    assert disagreements == []
