"""Payload indexes through HTTP: create and delete answer UpdateResults with operation ids,
`payload_schema` in collection info counts the indexed points, filtered reads agree with
and without an index, and errors read as Qdrant's."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

INDEX = "/collections/{collection_name}/index"
DROP = "/collections/{collection_name}/index/{field_name}"
INFO = "/collections/{collection_name}"
COUNT = "/collections/{collection_name}/points/count"
SCROLL = "/collections/{collection_name}/points/scroll"
SEARCH = "/collections/{collection_name}/points/search"
PAYLOADS = {
    1: {"city": "Berlin", "n": 1, "tags": ["a", "b"]},
    2: {"city": "Paris", "n": 2.5},
    3: {"city": "Paris", "n": 3, "tags": ["b"]},
    4: {"n": True},
}


@pytest.fixture
async def cities(api: Api) -> Api:
    await api.create_collection()
    points = [{"id": i, "vector": [i, 1, 0, 0], "payload": p} for i, p in PAYLOADS.items()]
    assert (await api.upsert({"points": points})).result["operation_id"] == 0
    return api


async def payload_schema(api: Api) -> dict:
    return (await api.call("GET", INFO)).result["payload_schema"]


async def test_create_index_answers_an_update_result_and_shows_in_payload_schema(cities: Api):
    response = await cities.call(
        "PUT", INDEX, json={"field_name": "city", "field_schema": "keyword"}
    )
    assert response.result == {"operation_id": 1, "status": "completed"}
    params = {"type": "integer", "lookup": True, "range": True}
    body = {"field_name": "n", "field_schema": params}
    response = await cities.call("PUT", INDEX, json=body, query={"wait": "false"})
    assert response.result == {"operation_id": 2, "status": "acknowledged"}
    await cities.call("PUT", INDEX, json={"field_name": "tags[]", "field_schema": "keyword"})
    schema = await payload_schema(cities)
    assert schema == {
        "city": {"data_type": "keyword", "points": 3},
        "n": {"data_type": "integer", "params": params, "points": 2},  # not 2.5, not True
        "tags[]": {"data_type": "keyword", "points": 2},
    }


async def test_an_index_on_a_field_no_point_has_is_fine(cities: Api):
    body = {"field_name": "nobody.has.this", "field_schema": "float"}
    assert (await cities.call("PUT", INDEX, json=body)).result["status"] == "completed"
    assert await payload_schema(cities) == {"nobody.has.this": {"data_type": "float", "points": 0}}


async def test_the_index_follows_writes_and_is_dropped_by_delete(cities: Api):
    await cities.call("PUT", INDEX, json={"field_name": "city", "field_schema": "keyword"})
    await cities.upsert(
        {"points": [{"id": 5, "vector": [1, 1, 1, 1], "payload": {"city": "Oslo"}}]}
    )
    await cities.call("POST", "/collections/{collection_name}/points/delete", json={"points": [1]})
    assert (await payload_schema(cities))["city"]["points"] == 3
    response = await cities.call("DELETE", DROP, field_name="city")
    assert response.result == {"operation_id": 4, "status": "completed"}
    assert await payload_schema(cities) == {}
    response = await cities.call("DELETE", DROP, field_name="never_indexed")
    assert response.result["status"] == "completed"


@pytest.mark.parametrize(
    "filter_",
    [
        {"must": [{"key": "city", "match": {"value": "Paris"}}]},
        {"must": [{"key": "n", "range": {"gt": 1, "lte": 3}}]},
        {
            "must": [
                {"key": "city", "match": {"any": ["Berlin", "Oslo"]}},
                {"key": "n", "range": {"gte": 1}},
            ]
        },
        {
            "should": [
                {"key": "city", "match": {"value": "Berlin"}},
                {"key": "n", "match": {"value": 3}},
            ]
        },
        {"must": [{"key": "tags[]", "match": {"value": "b"}}], "must_not": [{"has_id": [3]}]},
    ],
)
async def test_filtered_reads_agree_with_and_without_indexes(cities: Api, filter_: dict):
    before = await _filtered_reads(cities, filter_)
    for field_name, schema in [("city", "keyword"), ("n", "float"), ("tags[]", "keyword")]:
        await cities.call("PUT", INDEX, json={"field_name": field_name, "field_schema": schema})
    assert await _filtered_reads(cities, filter_) == before


async def _filtered_reads(api: Api, filter_: dict) -> tuple:
    count = (await api.call("POST", COUNT, json={"filter": filter_})).result["count"]
    scroll = (await api.call("POST", SCROLL, json={"filter": filter_, "limit": 10})).result
    body = {"vector": [1, 0, 0, 0], "filter": filter_, "limit": 10}
    hits = (await api.call("POST", SEARCH, json=body)).result
    return count, [p["id"] for p in scroll["points"]], [(h["id"], h["score"]) for h in hits]


async def test_create_index_errors(cities: Api):
    response = await cities.call(
        "PUT", INDEX, json={"field_name": "city", "field_schema": "keyword"}, name="nope"
    )
    assert response.status == 404
    assert response.error == "Not found: Collection `nope` doesn't exist!"
    response = await cities.call("PUT", INDEX, json={"field_name": "city"})
    assert response.status == 400
    assert response.error == (
        "Bad request: Can't auto-detect field type, please specify `field_schema` in the request"
    )
    for schema in ["nope", {"type": "nope"}, {"type": "keyword", "is_tenant": "yes"}, 3]:
        response = await cities.call(
            "PUT", INDEX, json={"field_name": "city", "field_schema": schema}
        )
        assert response.status == 400, schema
        assert response.error == (
            "Format error in JSON body: data did not match any variant of untagged enum "
            "PayloadFieldSchema"
        )
    response = await cities.call("PUT", INDEX, json={"field_schema": "keyword"})
    assert response.error == "Format error in JSON body: missing field `field_name`"
    response = await cities.call("DELETE", DROP, field_name="city", name="nope")
    assert response.status == 404
    assert await cities.next_op_id() == 1  # nothing was logged


async def test_a_text_index_makes_text_matches_tokenized(api: Api):
    """Without a text index `text` is a substring test (Qdrant 1.19); with one, every query
    token must be one of the value's tokens (tests/unit/test_text_match.py compares the
    tokenizers with Qdrant's own engine)."""
    await api.create_collection()
    texts = {1: "Hello World", 2: "hello-world again", 3: "helloworld", 4: "World of hello"}
    points = [{"id": i, "vector": [1, 0, 0, 0], "payload": {"t": t}} for i, t in texts.items()]
    await api.upsert({"points": points})

    async def matching(match: dict) -> list[int]:
        body = {"filter": {"must": [{"key": "t", "match": match}]}, "limit": 10}
        return [p["id"] for p in (await api.call("POST", SCROLL, json=body)).result["points"]]

    assert await matching({"text": "hello world"}) == []  # no value holds that substring
    assert await matching({"text": "lo Wo"}) == [1]
    body = {"field_name": "t", "field_schema": {"type": "text", "tokenizer": "word"}}
    assert (await api.call("PUT", INDEX, json=body)).result["status"] == "completed"
    assert await matching({"text": "hello world"}) == [1, 2, 4]
    assert await matching({"text": "lo Wo"}) == []
    assert await matching({"phrase": "hello world"}) == [1, 2]
    assert await matching({"text_any": "again of"}) == [2, 4]


async def test_text_index_params_keel_cannot_reproduce_answer_501(api: Api):
    await api.create_collection()
    op_id = await api.next_op_id()
    for params in (
        {"type": "text", "stemmer": {"type": "snowball", "language": "english"}},
        {"type": "text", "tokenizer": "multilingual"},
        {"type": "text", "stopwords": "english"},
        {"type": "text", "ascii_folding": True},
    ):
        response = await api.call("PUT", INDEX, json={"field_name": "t", "field_schema": params})
        assert response.status == 501, params
        assert response.error.startswith("Not implemented in Keel: text index")
    assert await payload_schema(api) == {}
    assert await api.next_op_id() == op_id + 1  # nothing was logged in between
    body = {"field_name": "t", "field_schema": {"type": "text", "tokenizer": "nope"}}
    assert (await api.call("PUT", INDEX, json=body)).status == 400


async def test_params_keep_only_the_fields_of_their_type(cities: Api):
    """Fuzz bug: unknown params fields were stored and echoed in `payload_schema`, outside
    Qdrant's spec (`Api` validates the collection info); Qdrant's serde ignores them."""
    params = {"type": "integer", "lookup": True, "params": [None], "is_tenant": True}
    response = await cities.call("PUT", INDEX, json={"field_name": "n", "field_schema": params})
    assert response.result["status"] == "completed"
    schema = await payload_schema(cities)
    assert schema["n"]["params"] == {"type": "integer", "lookup": True}


async def test_params_with_a_bad_memory_placement_are_refused(cities: Api):
    """Fuzz bug: `memory` was not checked, so any JSON value was stored and echoed."""
    params = {"type": "keyword", "memory": {"x": 1}}
    response = await cities.call("PUT", INDEX, json={"field_name": "city", "field_schema": params})
    assert response.status == 400
    assert response.error == (
        "Format error in JSON body: data did not match any variant of untagged enum "
        "PayloadFieldSchema"
    )
    assert await payload_schema(cities) == {}


async def test_an_integer_index_needs_lookup_or_range(cities: Api):
    """Qdrant's IntegerIndexParams validation; one of the two disabled is fine."""
    params = {"type": "integer", "lookup": False, "range": False}
    response = await cities.call("PUT", INDEX, json={"field_name": "pop", "field_schema": params})
    assert response.status == 422
    assert response.error == (
        "Validation error in JSON body: [field_schema.lookup: Validation error: the 'lookup' "
        "and 'range' capabilities can't be both disabled [{}]]"
    )
    assert await payload_schema(cities) == {}
    params = {"type": "integer", "lookup": False}
    response = await cities.call("PUT", INDEX, json={"field_name": "pop", "field_schema": params})
    assert response.status == 200
    assert (await payload_schema(cities))["pop"]["params"] == params


async def test_malformed_text_stopwords_answer_400_and_write_nothing(api: Api):
    await api.create_collection()
    op_id = await api.next_op_id()
    params = {"type": "text", "stopwords": {"custom": [1, 2]}}
    response = await api.call("PUT", INDEX, json={"field_name": "t", "field_schema": params})
    assert response.status == 400 and "stopwords" in response.error
    assert await payload_schema(api) == {}
    assert await api.next_op_id() == op_id + 1
