"""POST /points/scroll and /points/count: paging in id order, filters, selectors, errors."""

from __future__ import annotations

import uuid

import pytest

from engine.limits import SCROLL_LIMIT_MAX
from tests.api.conftest import Api

SCROLL = "/collections/{collection_name}/points/scroll"
COUNT = "/collections/{collection_name}/points/count"
UUIDS = sorted(str(uuid.UUID(int=n * 7919 + 1)) for n in range(3))
INT_IDS = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144]
EVEN = {"must": [{"key": "even", "match": {"value": True}}]}


@pytest.fixture
async def many(api: Api) -> Api:
    """12 integer ids (written out of order) and 3 UUIDs; payload `even` by position."""
    await api.create_collection(vectors={"size": 2, "distance": "Dot"})
    ids = list(reversed(INT_IDS)) + UUIDS
    points = [
        {"id": point_id, "vector": [1, position], "payload": {"even": position % 2 == 0}}
        for position, point_id in enumerate(ids)
    ]
    assert (await api.upsert({"points": points})).status == 200
    return api


async def scroll(api: Api, **body):
    response = await api.call("POST", SCROLL, json=body)
    return response.result


async def test_scroll_defaults_to_ten_points_with_payload_without_vectors(many: Api):
    result = await scroll(many)
    assert [point["id"] for point in result["points"]] == INT_IDS[:10]
    assert all(set(point) == {"id", "payload"} for point in result["points"])
    assert result["next_page_offset"] == INT_IDS[10]


async def test_paging_with_next_page_offset_visits_every_point_once_in_id_order(many: Api):
    """Integer ids first, ascending, then UUIDs in byte order (Qdrant's ExtendedPointId)."""
    seen, offset = [], None
    for _ in range(10):
        result = await scroll(many, limit=4, offset=offset, with_payload=False)
        seen.extend(point["id"] for point in result["points"])
        offset = result["next_page_offset"]
        if offset is None:
            break
    assert seen == INT_IDS + UUIDS


async def test_offset_is_inclusive_and_need_not_exist(many: Api):
    assert [p["id"] for p in (await scroll(many, offset=13, limit=2))["points"]] == [13, 21]
    result = await scroll(many, offset=100, limit=2)
    assert [p["id"] for p in result["points"]] == [144, UUIDS[0]]
    assert result["next_page_offset"] == UUIDS[1]
    result = await scroll(many, offset=UUIDS[2].upper(), limit=5)
    assert (result["points"], result["next_page_offset"]) == (
        [{"id": UUIDS[2], "payload": {"even": True}}],
        None,
    )


async def test_scroll_with_filter_vectors_and_payload_selectors(many: Api):
    result = await scroll(many, filter=EVEN, limit=3, with_vector=True, with_payload=["even"])
    ids = [point["id"] for point in result["points"]]
    assert len(ids) == 3 and all(point["payload"] == {"even": True} for point in result["points"])
    assert all(len(point["vector"]) == 2 for point in result["points"])
    result = await scroll(many, filter=EVEN, limit=100, with_payload=False, with_vectors=False)
    assert [point["id"] for point in result["points"]][:3] == ids
    assert len(result["points"]) == 8 and result["next_page_offset"] is None


async def test_scroll_of_an_empty_collection(api: Api):
    await api.create_collection()
    assert await scroll(api) == {"points": [], "next_page_offset": None}
    assert (await api.call("POST", COUNT, json={})).result == {"count": 0}


async def test_count_all_and_filtered(many: Api):
    assert (await many.call("POST", COUNT, json={})).result == {"count": 15}
    assert (await many.call("POST", COUNT, json={"filter": EVEN, "exact": False})).result == {
        "count": 8
    }
    body = {"filter": {"must_not": [{"has_id": INT_IDS}]}, "exact": True}
    assert (await many.call("POST", COUNT, json=body, query={"consistency": "all"})).result == {
        "count": 3
    }


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (
            SCROLL,
            {"limit": 0},
            422,
            (
                "Validation error in JSON body: [scroll_request.limit: value 0 invalid, must be 1 or "
                "larger]"
            ),
        ),
        (
            SCROLL,
            {"limit": SCROLL_LIMIT_MAX + 1},
            422,
            (
                f"Validation error in JSON body: [scroll_request.limit: value {SCROLL_LIMIT_MAX + 1} "
                f"invalid, must be from 1 to {SCROLL_LIMIT_MAX}]"
            ),
        ),
        (
            SCROLL,
            {"limit": -1},
            400,
            "Format error in JSON body: invalid value: integer `-1`, expected usize",
        ),
        (
            SCROLL,
            {"offset": "abc"},
            400,
            (
                "Format error in JSON body: value abc is not a valid point ID, valid values are "
                "either an unsigned integer or a UUID"
            ),
        ),
        (
            SCROLL,
            {"with_payload": 3},
            400,
            (
                "Format error in JSON body: Expected a boolean, an array of strings, or an object "
                "with an include/exclude field"
            ),
        ),
        (
            SCROLL,
            {"filter": {"must": [{"key": "even"}]}},
            422,
            (
                "Validation error in JSON body: [scroll_request.filter.must[0].__all__: At least one "
                "field condition must be specified]"
            ),
        ),
        (
            SCROLL,
            [],
            400,
            "Format error in JSON body: invalid type: sequence, expected struct ScrollRequest",
        ),
        (
            COUNT,
            {"exact": None},
            400,
            "Format error in JSON body: invalid type: null, expected a boolean",
        ),
        (
            COUNT,
            {"filter": {"should": 1}},
            400,
            "Format error in JSON body: invalid type: integer `1`, expected null, array or map",
        ),
        (
            COUNT,
            "x",
            400,
            'Format error in JSON body: invalid type: string "x", expected struct CountRequest',
        ),
    ],
)
async def test_scroll_and_count_errors(many: Api, path, body, status, message):
    response = await many.call("POST", path, json=body)
    assert (response.status, response.error) == (status, message)


@pytest.mark.parametrize("path", [SCROLL, COUNT])
async def test_unknown_collection_is_404(api: Api, path):
    response = await api.call("POST", path, json={}, name="nope")
    assert (response.status, response.error) == (404, "Not found: Collection `nope` doesn't exist!")


@pytest.mark.parametrize("path", [SCROLL, COUNT])
async def test_bad_read_parameters(many: Api, path):
    response = await many.call("POST", path, json={}, query={"timeout": "0"})
    assert (response.status, response.error) == (
        400,
        "Deserialize error in query parameters: invalid value: integer `0`, expected a nonzero u64",
    )
