"""POST /points/query beyond nearest vectors, its batch and groups forms, search batch and
groups, and scroll with order_by: answer shapes (checked against Qdrant's spec by `Api`),
semantics on a small hand-checkable collection, and Qdrant's error texts.

Error texts were read in Qdrant 1.19's source: `lib/api/src/rest/schema.rs` (QueryInterface
is untagged: one `expecting` text), `lib/collection/src/operations/universal_query/
collection_query.rs` (`validation`), `lib/collection/src/collection/query.rs`
(PointNotFound), `lib/shard/src/query/planned_query.rs` (fusion without prefetches),
`lib/collection/src/recommendations.rs` (average of no positives).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.conftest import Api

QUERY = "/collections/{collection_name}/points/query"
QUERY_BATCH = "/collections/{collection_name}/points/query/batch"
QUERY_GROUPS = "/collections/{collection_name}/points/query/groups"
SEARCH_BATCH = "/collections/{collection_name}/points/search/batch"
SEARCH_GROUPS = "/collections/{collection_name}/points/search/groups"
SCROLL = "/collections/{collection_name}/points/scroll"
RECOMMEND = "/collections/{collection_name}/points/recommend"
EXACT = {"exact": True}


@pytest.fixture
async def points(api: Api) -> Api:
    """Five points on the unit circle's first quadrant and beyond, Dot distance."""
    await api.create_collection(vectors={"size": 2, "distance": "Dot"})
    vectors = {1: [1, 0], 2: [0.9, 0.1], 3: [0.5, 0.5], 4: [0.1, 0.9], 5: [0, 1]}
    body = {
        "points": [
            {
                "id": i,
                "vector": vector,
                "payload": {"rank": 10 - i, "kind": "a" if i % 2 else "b", "day": f"2024-01-0{i}"},
            }
            for i, vector in vectors.items()
        ]
    }
    assert (await api.upsert(body)).status == 200
    return api


async def query(api: Api, body: dict) -> list:
    return (await api.call("POST", QUERY, json=body)).result["points"]


async def test_query_by_id_uses_its_vector_and_leaves_it_out(points: Api):
    hits = await query(points, {"query": 1, "limit": 2, "params": EXACT})
    assert [(p["id"], p["score"]) for p in hits] == [(2, pytest.approx(0.9)), (3, 0.5)]
    nearest = await query(points, {"query": {"nearest": 1}, "limit": 2})
    assert [p["id"] for p in nearest] == [2, 3]


async def test_recommend_average_vector_and_best_score(points: Api):
    # avg_pos + avg_pos - avg_neg = 2 * [1, 0] - [0, 1] = [2, -1]: point 2 (1.7) then 3 (0.5).
    body = {"query": {"recommend": {"positive": [1], "negative": [5]}}, "limit": 2}
    hits = await query(points, body)
    assert [(p["id"], p["score"]) for p in hits] == [(2, pytest.approx(1.7)), (3, 0.5)]
    body["query"]["recommend"]["strategy"] = "best_score"
    hits = await query(points, body)
    # Point 2: best positive 0.9 beats best negative 0.1: sigmoid 0.5 * (0.9 / 1.9 + 1).
    assert hits[0]["id"] == 2 and hits[0]["score"] == pytest.approx(0.5 * (0.9 / 1.9 + 1))


async def test_prefetch_with_rrf_and_rescoring(points: Api):
    prefetch = [
        {"query": [1, 0], "limit": 3, "params": EXACT},  # 1, 2, 3
        {"query": [0, 1], "limit": 3, "params": EXACT},  # 5, 4, 3
    ]
    fused = await query(points, {"prefetch": prefetch, "query": {"fusion": "rrf"}})
    scores = {p["id"]: p["score"] for p in fused}
    # RRF with k = 2: 1 / (rank + 2) per list, rank from 0; 3 is third in both lists.
    assert scores == pytest.approx({1: 0.5, 5: 0.5, 2: 1 / 3, 4: 1 / 3, 3: 0.5})
    rescored = await query(points, {"prefetch": prefetch[0], "query": [0, 1], "limit": 5})
    assert [p["id"] for p in rescored] == [3, 2, 1]  # only the prefetched points


async def test_dbsf_normalises_each_list(points: Api):
    prefetch = [{"query": [1, 0], "limit": 1}, {"query": [0, 1], "limit": 1}]
    fused = await query(points, {"prefetch": prefetch, "query": {"fusion": "dbsf"}})
    assert sorted((p["id"], p["score"]) for p in fused) == [(1, 0.5), (5, 0.5)]


async def test_order_by_query_and_scroll_give_order_values(points: Api):
    body = {"query": {"order_by": {"key": "rank", "direction": "desc", "start_from": 8}}}
    hits = await query(points, {**body, "limit": 2})
    assert [(p["id"], p["order_value"], p["score"]) for p in hits] == [(2, 8, 1.0), (3, 7, 1.0)]
    page = (await points.call("POST", SCROLL, json={"order_by": "day", "limit": 2})).result
    assert [p["id"] for p in page["points"]] == [1, 2]
    assert page["points"][0]["order_value"] == 1704067200000000  # microseconds
    assert page["next_page_offset"] is None


async def test_an_ordered_scroll_refuses_an_offset(points: Api):
    body = {"order_by": "day", "limit": 2, "offset": 2}
    response = await points.call("POST", SCROLL, json=body)
    assert response.status == 400
    assert response.error.startswith("Wrong input: Cannot use an `offset` when using `order_by`.")
    assert response.error.endswith("you've already seen for the `order_by.start_from` value")


async def test_query_without_query_lists_points_by_id(points: Api):
    hits = await query(points, {"limit": 2, "offset": 1, "with_payload": ["kind"]})
    assert [(p["id"], p["payload"]) for p in hits] == [(2, {"kind": "b"}), (3, {"kind": "a"})]


async def test_batches_answer_one_result_per_search(points: Api):
    searches = [{"query": [1, 0], "limit": 1}, {"query": 5, "limit": 1}]
    result = (await points.call("POST", QUERY_BATCH, json={"searches": searches})).result
    assert [[p["id"] for p in r["points"]] for r in result] == [[1], [4]]
    searches = [{"vector": [1, 0], "limit": 1}, {"vector": [0, 1], "limit": 2}]
    result = (await points.call("POST", SEARCH_BATCH, json={"searches": searches})).result
    assert [[p["id"] for p in r] for r in result] == [[1], [5, 4]]


async def test_groups_collect_hits_by_payload_value(points: Api):
    body = {"query": [1, 0], "group_by": "kind", "group_size": 2, "limit": 2}
    groups = (await points.call("POST", QUERY_GROUPS, json=body)).result["groups"]
    assert [(g["id"], [p["id"] for p in g["hits"]]) for g in groups] == [
        ("a", [1, 3]),
        ("b", [2, 4]),
    ]
    body = {"vector": [0, 1], "group_by": "kind", "group_size": 1, "limit": 1}
    groups = (await points.call("POST", SEARCH_GROUPS, json=body)).result["groups"]
    assert [(g["id"], [p["id"] for p in g["hits"]]) for g in groups] == [("a", [5])]


async def test_lookup_from_reads_another_collection(points: Api):
    await points.create_collection("other", vectors={"size": 2, "distance": "Dot"})
    await points.upsert({"points": [{"id": 1, "vector": [0, 1]}]}, name="other")
    body = {"query": 1, "limit": 1, "lookup_from": {"collection": "other"}}
    assert [p["id"] for p in await query(points, body)] == [5]


async def test_a_missing_lookup_collection_is_404_with_qdrants_words(points: Api):
    """Qdrant words a missing `lookup_from` collection (of the query, a prefetch, a legacy
    recommend) as lookup/mod.rs does a missing `with_lookup` one, not as a missing
    collection in the path; of several, the query's own is named first."""
    message = "Not found: Collection nope not found"
    lookup_from = {"collection": "nope"}
    for path, body in [
        (QUERY, {"query": 1, "lookup_from": lookup_from}),
        (QUERY, {"prefetch": {"query": 1, "lookup_from": lookup_from}, "query": {"fusion": "rrf"}}),
        (QUERY_BATCH, {"searches": [{"query": [1, 0]}, {"query": 1, "lookup_from": lookup_from}]}),
        (RECOMMEND, {"positive": [1], "limit": 1, "lookup_from": lookup_from}),
    ]:
        response = await points.call("POST", path, json=body)
        assert (response.status, response.error) == (404, message), path
    body = {
        "prefetch": {"query": 1, "lookup_from": {"collection": "nope2"}},
        "query": 1,
        "lookup_from": lookup_from,
    }
    response = await points.call("POST", QUERY, json=body)
    assert (response.status, response.error) == (404, message)


async def test_a_lookup_vector_the_other_collection_lacks_fails_on_the_first_point(points: Api):
    """Qdrant checks the lookup vector's name only as it reads a found point: 400 when an
    example point is in the other collection, else 404 for the first missing point."""
    await points.create_collection("other", vectors={"size": 2, "distance": "Dot"})
    await points.upsert({"points": [{"id": 1, "vector": [0, 1]}]}, name="other")
    lookup = {"collection": "other", "vector": "nope"}
    body = {"query": {"recommend": {"positive": [9, 1]}}, "lookup_from": lookup}
    response = await points.call("POST", QUERY, json=body)
    assert (response.status, response.error) == (
        400,
        "Wrong input: Not existing vector name error: nope",
    )
    body = {"query": {"recommend": {"positive": [9], "negative": [8]}}, "lookup_from": lookup}
    response = await points.call("POST", QUERY, json=body)
    assert (response.status, response.error) == (404, "Not found: No point with id 9 found")


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (QUERY, {"query": 42}, 404, "Not found: No point with id 42 found"),
        (
            QUERY,
            {"query": {"fusion": "max"}, "prefetch": [{"query": [1, 0]}]},
            400,
            "Format error in JSON body: Expected some form of vector, id, or a type of query",
        ),
        (
            QUERY,
            {"query": {"recommend": {"positive": [1], "strategy": "best"}}},
            400,
            "Format error in JSON body: Expected some form of vector, id, or a type of query",
        ),
        (
            QUERY,
            {"query": {"recommend": {"negative": [1]}}},
            400,
            "Wrong input: Positive vectors should not be empty with `average` strategy",
        ),
        (
            QUERY,
            {"query": {"recommend": {"positive": [], "strategy": "best_score"}}},
            422,
            (
                "Validation error in JSON body: [internal.query.positives, negatives: Validation "
                "error: At least one positive or negative vector/id must be provided [{}]]"
            ),
        ),
        (
            QUERY,
            {"query": [1, 0], "prefetch": [{"query": {"recommend": {}}}]},
            422,
            (
                "Validation error in JSON body: [internal.prefetch[0].query.positives, negatives: "
                "Validation error: At least one positive or negative vector/id must be provided "
                "[{}]]"
            ),
        ),
        (
            QUERY,
            {"query": {"fusion": "rrf"}},
            400,
            "Wrong input: Validation failed: cannot apply Fusion without prefetches",
        ),
        (
            QUERY,
            {"prefetch": [{"query": [1, 0]}]},
            400,
            (
                "Bad request: A query is needed to merge the prefetches. Can't have prefetches "
                "without defining a query."
            ),
        ),
        (
            QUERY,
            {"query": {"order_by": "rank"}, "score_threshold": 1},
            400,
            "Bad request: Can't use score_threshold with an order_by query.",
        ),
        (
            QUERY,
            {"query": {"fusion": "rrf"}, "using": "x", "prefetch": [{"query": [1, 0]}]},
            400,
            "Bad request: Fusion queries cannot be combined with the 'using' field.",
        ),
        (
            QUERY,
            {"query": [1, 0], "prefetch": [{"query": [1, 0], "limit": 0}]},
            422,
            (
                "Validation error in JSON body: [internal.prefetch[0].limit: value 0 invalid, "
                "must be 1 or larger]"
            ),
        ),
        (
            QUERY,
            {"query": {"relevance_feedback": {"target": [1, 2, 3, 4]}}},
            400,
            "Format error in JSON body: Expected some form of vector, id, or a type of query",
        ),
        (QUERY_BATCH, {}, 400, "Format error in JSON body: missing field `searches`"),
        (
            QUERY_GROUPS,
            {"query": [1, 0]},
            400,
            "Format error in JSON body: missing field `group_by`",
        ),
        (
            QUERY_GROUPS,
            {"query": [1, 0], "group_by": "kind", "with_lookup": "nope"},
            404,
            "Not found: Collection nope not found",
        ),
        (
            QUERY_GROUPS,
            {"query": [1, 0], "group_by": ""},
            400,
            "Format error in JSON body: Invalid json path: ''",
        ),
        (
            SEARCH_GROUPS,
            {"vector": [1, 0], "group_by": "kind", "limit": 1},
            400,
            "Format error in JSON body: missing field `group_size`",
        ),
        (
            QUERY_GROUPS,
            {"query": [1, 0], "group_by": "kind", "limit": 0},
            422,
            (
                "Validation error in JSON body: [internal.group_request.limit: value 0 invalid, "
                "must be 1 or larger]"
            ),
        ),
        (
            SCROLL,
            {"order_by": {"direction": "desc"}},
            400,
            (
                "Format error in JSON body: data did not match any variant of untagged enum "
                "OrderByInterface"
            ),
        ),
    ],
)
async def test_query_errors(points: Api, path, body, status, message):
    response = await points.call("POST", path, json=body)
    assert response.status == status, response.body
    if message is not None:
        assert response.error == message


@pytest.mark.parametrize("path", [QUERY, QUERY_BATCH, QUERY_GROUPS, SEARCH_BATCH, SEARCH_GROUPS])
async def test_unknown_collection_is_404(api: Api, path):
    bodies = {
        QUERY: {"query": [1, 0]},
        QUERY_BATCH: {"searches": [{"query": [1, 0]}]},
        QUERY_GROUPS: {"query": [1, 0], "group_by": "kind"},
        SEARCH_BATCH: {"searches": [{"vector": [1, 0], "limit": 1}]},
        SEARCH_GROUPS: {"vector": [1, 0], "group_by": "kind", "group_size": 1, "limit": 1},
    }
    response = await api.call("POST", path, json=bodies[path], name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")


async def test_groups_with_lookup_attach_the_point_named_by_the_group_id(points: Api):
    await points.create_collection("rank", vectors={"size": 2, "distance": "Dot"})
    await points.upsert({"points": [{"id": 8, "vector": [1, 1], "payload": {"n": 8}}]}, name="rank")
    body = {"query": [1, 0], "group_by": "rank", "group_size": 1, "limit": 3, "with_lookup": "rank"}
    groups = (await points.call("POST", QUERY_GROUPS, json=body)).result["groups"]
    assert [(g["id"], g.get("lookup")) for g in groups] == [
        (9, None),
        (8, {"id": 8, "payload": {"n": 8}}),
        (7, None),
    ]
    body["with_lookup"] = {"collection": "rank", "with_payload": False, "with_vectors": True}
    groups = (await points.call("POST", QUERY_GROUPS, json=body)).result["groups"]
    assert groups[1]["lookup"] == {"id": 8, "vector": [1.0, 1.0]}


async def test_order_by_and_group_by_take_json_paths_with_arrays(api: Api):
    """Keys follow Qdrant's JsonPath: `p[0].v` is the first element's `v`, `p[].g` every
    element's `g`; a key does not look into an array by itself (`p.v` selects nothing)."""
    await api.create_collection()
    payloads = {
        1: {"p": [{"v": 3, "g": "x"}, {"v": 0, "g": "y"}]},
        2: {"p": [{"v": 1, "g": "y"}]},
        3: {"p": [{"v": 2}]},
    }
    points = [{"id": i, "vector": [i, 1, 0, 0], "payload": p} for i, p in payloads.items()]
    await api.upsert({"points": points})
    scroll = "/collections/{collection_name}/points/scroll"
    body = {"order_by": "p[0].v", "limit": 10}
    result = (await api.call("POST", scroll, json=body)).result
    assert [point["id"] for point in result["points"]] == [2, 3, 1]
    result = (await api.call("POST", scroll, json={"order_by": "p.v", "limit": 10})).result
    assert result["points"] == []
    groups_path = "/collections/{collection_name}/points/query/groups"
    body = {"query": [1, 0, 0, 0], "group_by": "p[].g", "group_size": 5, "limit": 5}
    groups = (await api.call("POST", groups_path, json=body)).result["groups"]
    members = {group["id"]: sorted(hit["id"] for hit in group["hits"]) for group in groups}
    assert members == {"x": [1], "y": [1, 2]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (QUERY, {"query": [1, 0]}),
        (QUERY_BATCH, {"searches": [{"query": [1, 0]}]}),
        (QUERY_GROUPS, {"query": [1, 0], "group_by": "kind"}),
        (SEARCH_BATCH, {"searches": [{"vector": [1, 0], "limit": 2}]}),
        ("/collections/{collection_name}/points/search", {"vector": [1, 0], "limit": 2}),
        (SCROLL, {"order_by": "rank"}),
    ],
)
async def test_reads_selecting_a_vector_the_collection_lacks_are_400_once_a_point_is_found(
    points: Api, path: str, body: dict
):
    """Qdrant checks `with_vector` names as it reads a found point's vectors (as retrieve)."""

    def with_selector(body: dict, filter_: dict | None) -> dict:
        if "searches" in body:
            return {"searches": [with_selector(search, filter_) for search in body["searches"]]}
        return {**body, "with_vector": ["nope"], **({"filter": filter_} if filter_ else {})}

    response = await points.call("POST", path, json=with_selector(body, None))
    assert (response.status, response.error) == (
        400,
        "Wrong input: Not existing vector name error: nope",
    )
    nothing = {"must": [{"has_id": [99]}]}
    assert (await points.call("POST", path, json=with_selector(body, nothing))).status == 200


async def test_concurrent_queries_each_get_their_own_answer_or_error(points: Api):
    """Single queries arriving together are coalesced into one read job
    (Collection._execute_queries); one that fails must fail alone."""
    bodies = [{"query": [1, 0.1 * i], "limit": 2} for i in range(12)]
    bodies[5] = {"query": 999, "limit": 2}  # no such point: Qdrant's 404
    responses = await asyncio.gather(*(points.call("POST", QUERY, json=b) for b in bodies))
    for position, response in enumerate(responses):
        if position == 5:
            assert response.status == 404 and "No point with id 999 found" in response.error
        else:
            assert response.status == 200 and len(response.result["points"]) == 2
    alone = await query(points, bodies[3])
    assert [p["id"] for p in alone] == [p["id"] for p in responses[3].result["points"]]


async def test_a_missing_named_point_is_reported_before_the_requests_own_faults(points: Api):
    """Qdrant fetches the points a query names before it validates the request (its
    test_recommend_lookup_validations): a fusion root with `using` answers 404 for a
    prefetch's missing example, 400 for a missing lookup vector, and its own 400 when every
    named point exists or none is named."""
    await points.create_collection("other", vectors={"other": {"size": 2, "distance": "Dot"}})
    await points.upsert({"points": [{"id": 1, "vector": {"other": [0, 1]}}]}, name="other")

    def fused(recommend: dict[str, Any], vector: str = "other") -> dict[str, Any]:
        lookup = {"collection": "other", "vector": vector}
        prefetch = {"query": {"recommend": recommend}, "lookup_from": lookup}
        return {"prefetch": [prefetch], "using": "", "query": {"fusion": "rrf"}}

    # `using: ""` is the unnamed vector: fine for a fusion; "x" is not.
    cases = [
        (
            {**fused({"positive": [1], "negative": [3]}), "using": "x"},
            404,
            "Not found: No point with id 3 found",
        ),
        (
            {**fused({"positive": [1]}, vector="nope"), "using": "x"},
            400,
            "Wrong input: Not existing vector name error: nope",
        ),
        (
            {**fused({"positive": [1]}), "using": "x"},
            400,
            "Bad request: Fusion queries cannot be combined with the 'using' field.",
        ),
        (
            {"prefetch": [{"query": [1, 0]}], "using": "x", "query": {"fusion": "rrf"}},
            400,
            "Bad request: Fusion queries cannot be combined with the 'using' field.",
        ),
    ]
    for body, status, message in cases:
        response = await points.call("POST", QUERY, json=body)
        assert (response.status, response.error) == (status, message), body
