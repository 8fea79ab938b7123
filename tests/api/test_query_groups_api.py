"""`POST /points/query/groups` searching as Qdrant's group driver does
(lib/shard/src/grouping/driver.rs, aggregator.rs): searches of limit x group_size candidates
that exclude the points already grouped, first also the full groups, then only the best
groups not full yet; prefetch limits times group_size.
"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api

GROUPS = "/collections/{collection_name}/points/query/groups"


async def groups_of(api: Api, body: dict[str, Any]) -> list[tuple[Any, list[int]]]:
    response = await api.call("POST", GROUPS, json=body)
    assert response.status == 200, response.body
    return [
        (group["id"], [hit["id"] for hit in group["hits"]]) for group in response.result["groups"]
    ]


async def test_a_group_behind_many_hits_of_another_is_still_found(api: Api):
    """Qdrant's test_search_with_multiple_groups, skewed further: 300 points of group "a"
    score above the 10 that are in "a" and "b"; one window of hits would hold only "a"."""
    await api.create_collection(vectors={"size": 2, "distance": "Dot"})
    points = [
        {"id": i, "vector": [1.0, 1.0 - i / 1000], "payload": {"mkey": ["a"]}} for i in range(300)
    ]
    points += [
        {"id": 1000 + i, "vector": [0.1, 0.0], "payload": {"mkey": ["a", "b"]}} for i in range(10)
    ]
    assert (await api.upsert({"points": points})).status == 200
    body = {"query": [1.0, 1.0], "group_by": "mkey", "limit": 2, "group_size": 2}
    assert await groups_of(api, body) == [("a", [0, 1]), ("b", [1000, 1001])]


async def test_the_best_groups_are_filled_and_odd_keys_leave_the_point_out(api: Api):
    """With group_size 3 the best groups take members from further down; a point whose key
    holds a float is in no group (Qdrant's aggregator refuses the point)."""
    await api.create_collection(vectors={"size": 2, "distance": "Euclid"})
    points = [
        {"id": 1, "vector": [0.0, 0.0], "payload": {"g": "x"}},
        {"id": 2, "vector": [0.1, 0.0], "payload": {"g": ["y", 1.5]}},
        {"id": 3, "vector": [0.2, 0.0], "payload": {"g": "y"}},
    ]
    points += [{"id": 10 + i, "vector": [1.0 + i, 0.0], "payload": {"g": "z"}} for i in range(30)]
    points += [{"id": 100 + i, "vector": [50.0 + i, 0.0], "payload": {"g": "x"}} for i in range(5)]
    assert (await api.upsert({"points": points})).status == 200
    body = {"query": [0.0, 0.0], "group_by": "g", "limit": 2, "group_size": 3}
    # Smaller distances are better: "x" (0.0) then "y" (0.2); point 2 is in neither.
    assert await groups_of(api, body) == [("x", [1, 100, 101]), ("y", [3])]


async def test_prefetch_limits_grow_by_the_group_size(api: Api):
    """A prefetch of limit 2 feeds 2 x group_size candidates to the grouping."""
    await api.create_collection(vectors={"size": 2, "distance": "Dot"})
    points = [
        {"id": i, "vector": [1.0, i / 100], "payload": {"g": "a" if i % 2 else "b"}}
        for i in range(20)
    ]
    assert (await api.upsert({"points": points})).status == 200
    body = {
        "prefetch": {"query": [0.0, 1.0], "limit": 2},
        "query": [0.0, 1.0],
        "group_by": "g",
        "limit": 2,
        "group_size": 2,
    }
    assert await groups_of(api, body) == [("a", [19, 17]), ("b", [18, 16])]
