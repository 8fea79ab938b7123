"""Aliases over HTTP: Qdrant's shapes and texts; every route accepts an alias."""

from __future__ import annotations

from tests.api.conftest import Api


async def change(api: Api, actions: list) -> object:
    return await api.call("POST", "/collections/aliases", json={"actions": actions})


async def test_create_list_rename_delete_aliases(api: Api) -> None:
    await api.create_collection("c")
    response = await change(api, [{"create_alias": {"collection_name": "c", "alias_name": "a"}}])
    assert response.result is True
    listed = await api.call("GET", "/aliases")
    assert listed.result == {"aliases": [{"alias_name": "a", "collection_name": "c"}]}
    of_c = await api.call("GET", "/collections/{collection_name}/aliases", name="c")
    assert of_c.result == listed.result
    await change(api, [{"rename_alias": {"old_alias_name": "a", "new_alias_name": "b"}}])
    listed = await api.call("GET", "/aliases")
    assert listed.result == {"aliases": [{"alias_name": "b", "collection_name": "c"}]}
    await change(api, [{"delete_alias": {"alias_name": "b"}}])
    assert (await api.call("GET", "/aliases")).result == {"aliases": []}


async def test_points_and_collection_routes_accept_an_alias(api: Api) -> None:
    await api.create_collection("c")
    await change(api, [{"create_alias": {"collection_name": "c", "alias_name": "a"}}])
    upserted = await api.upsert({"points": [{"id": 1, "vector": [1, 0, 0, 0]}]}, name="a")
    assert upserted.result["operation_id"] == 0
    info = await api.call("GET", "/collections/{collection_name}", name="a")
    assert info.result["points_count"] == 1
    exists = await api.call("GET", "/collections/{collection_name}/exists", name="a")
    assert exists.result == {"exists": True}


async def test_alias_errors_change_nothing(api: Api) -> None:
    await api.create_collection("c")
    missing = await change(
        api,
        [
            {"create_alias": {"collection_name": "c", "alias_name": "a"}},
            {"delete_alias": {"alias_name": "nope"}},
        ],
    )
    assert missing.status == 404
    assert missing.body["status"]["error"] == "Not found: Alias nope does not exists!"
    assert (await api.call("GET", "/aliases")).result == {"aliases": []}
    no_collection = await change(
        api, [{"create_alias": {"collection_name": "x", "alias_name": "a"}}]
    )
    assert no_collection.status == 404
    assert no_collection.body["status"]["error"] == "Not found: Collection `x` doesn't exist!"
    malformed = await change(api, [{"make_alias": {}}])
    assert malformed.status == 400
    assert malformed.body["status"]["error"].startswith("Format error in JSON body:")
    unknown = await api.call("GET", "/collections/{collection_name}/aliases", name="x")
    assert unknown.status == 404
