"""`/`, probes, telemetry, and the error mapping (engine errors, aiohttp's own, the unknown)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from engine.catalog import Catalog
from engine.errors import KeelError, Overloaded
from engine.limits import EngineSettings
from server.api.not_implemented import ROUTES_NOT_IMPLEMENTED
from server.app import STATUS_BY_ERROR, build_commit, create_app, describe_error
from tests.api.conftest import KEEL_VERSION, Api
from tests.api.openapi_check import check_error_shape


async def test_root_is_qdrants_version_info_unwrapped(api: Api):
    response = await api.call("GET", "/")
    assert set(response.body) == {"title", "version", "commit"}
    assert response.body["title"] == "qdrant - vector search engine"
    assert response.body["version"] == "1.19.0"
    assert re.fullmatch(r"[0-9a-f]{40}", response.body["commit"])


def test_the_commit_falls_back_to_a_stable_hash(monkeypatch):
    monkeypatch.setattr("server.app.REPO_ROOT", Path("/"))
    assert build_commit("1.2.3") == build_commit("1.2.3")
    assert re.fullmatch(r"[0-9a-f]{40}", build_commit("1.2.3"))
    assert build_commit("1.2.3") != build_commit("1.2.4")


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_probes_answer_text(api: Api, path: str):
    response = await api.client.get(path)
    assert response.status == 200
    assert response.content_type == "text/plain"
    expected = "all shards are ready" if path == "/readyz" else "healthz check passed"
    assert await response.text() == expected


async def test_before_recovery_readyz_is_503_and_collections_are_unavailable(
    aiohttp_client, tmp_path
):
    """With service.recovery_wait_s = 0 a request during recovery is refused at once."""
    catalog = Catalog(tmp_path, EngineSettings())  # not opened: recovery has not run
    app = create_app(catalog, keel_version=KEEL_VERSION, recovery_wait_s=0.0)
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert (response.status, await response.text()) == (503, "some shards are not ready")
    for path in ("/collections", "/"):
        response = await client.get(path)
        body = await response.json()
        check_error_shape(body)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert body["status"]["error"] == (
            "Service unavailable: storage is not open: recovery has not finished within 0 s"
        )
    assert (await client.get("/healthz")).status == 200


async def test_a_request_during_recovery_waits_for_it_and_is_answered(aiohttp_client, tmp_path):
    """Qdrant serves nothing until it has loaded; Keel holds requests until recovery ends.

    Requests to `/` and `/collections` start before the catalog is opened; the probes
    answer meanwhile; once open() returns, the held requests get their normal answers."""
    catalog = Catalog(tmp_path, EngineSettings())  # not opened: recovery has not run
    client = await aiohttp_client(create_app(catalog, keel_version=KEEL_VERSION))
    held = [asyncio.create_task(client.get(path)) for path in ("/", "/collections")]
    response = await client.get("/readyz")  # answered while the others wait
    assert (response.status, await response.text()) == (503, "some shards are not ready")
    assert (await client.get("/livez")).status == 200
    assert not any(task.done() for task in held)
    await catalog.open()
    try:
        root_response, collections_response = await asyncio.gather(*held)
        assert root_response.status == 200
        assert (await root_response.json())["title"] == "qdrant - vector search engine"
        assert collections_response.status == 200
        assert (await collections_response.json())["result"] == {"collections": []}
    finally:
        await catalog.close()


async def test_telemetry_has_keels_version_and_the_collection_count(api: Api):
    await api.create_collection("a")
    result = (await api.call("GET", "/telemetry", query={"details_level": "2"})).result
    assert result["app"]["name"] == "keel"
    assert result["app"]["version"] == KEEL_VERSION
    assert result["collections"]["number_of_collections"] == 1
    assert [c["id"] for c in result["collections"]["collections"]] == ["a"]


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for subclass in cls.__subclasses__():
        found += [subclass, *_all_subclasses(subclass)]
    return found


@pytest.mark.parametrize("error_class", _all_subclasses(KeelError))
def test_every_engine_error_maps_to_a_status(error_class: type):
    assert any(cls in STATUS_BY_ERROR for cls in error_class.__mro__), error_class
    error = error_class("boom", 1.0) if error_class is Overloaded else error_class("boom")
    status, message = describe_error(error)
    assert 400 <= status < 600
    assert message.endswith(("boom]", "boom"))


async def test_overloaded_is_503_with_retry_after(api: Api, monkeypatch):
    await api.create_collection()

    async def overloaded(*args, **kwargs):
        raise Overloaded("write budget of collection c is exhausted", retry_after_s=1.5)

    monkeypatch.setattr("engine.collection.Collection.update", overloaded)
    response = await api.upsert({"points": [{"id": 1, "vector": [1, 2, 3, 4]}]})
    assert response.status == 503
    assert response.headers["Retry-After"] == "2"
    assert response.error == "Service unavailable: write budget of collection c is exhausted"


async def test_an_unexpected_exception_is_a_500_in_qdrants_shape(api: Api, monkeypatch):
    def broken(self):
        raise RuntimeError("bug")

    monkeypatch.setattr("engine.catalog.Catalog.names", broken)
    response = await api.call("GET", "/collections")
    assert response.status == 500
    assert response.error == "Service internal error: unexpected error, see the server log"


async def test_aiohttp_errors_use_qdrants_error_body(api: Api):
    for method, path, status in [("GET", "/nope", 404), ("PATCH", "/collections", 405)]:
        response = await api.client.request(method, path)
        assert response.status == status
        check_error_shape(await response.json())


async def test_a_body_over_the_limit_is_413(aiohttp_client, catalog):
    app = create_app(catalog, max_request_size_bytes=1024, keel_version=KEEL_VERSION)
    client = await aiohttp_client(app)
    body = b'{"vectors": {"size": 4, "distance": "Dot"}, "metadata": {"x": "' + b"a" * 2000 + b'"}}'
    response = await client.put("/collections/c", data=body)
    payload = await response.json()
    assert response.status == 413
    check_error_shape(payload)
    assert payload["status"]["error"] == (
        f"JSON payload ({len(body)} bytes) is larger than allowed (limit: 1024 bytes)."
    )


@pytest.mark.parametrize(("method", "template"), ROUTES_NOT_IMPLEMENTED)
async def test_endpoints_not_implemented_yet_answer_an_honest_501(api: Api, method, template):
    await api.create_collection("c")
    path = template.replace("{collection_name}", "c").replace("{field_name}", "f")
    path = path.replace("{vector_name}", "v").replace("{snapshot_name}", "s")
    path = path.replace("{shard_id}", "0")
    response = await api.call(method, path, json={}, validate=False)
    assert response.status == 501
    check_error_shape(response.body)
    assert response.body["status"]["error"] == f"Not implemented in Keel: {method} {template}"


async def test_issues_are_an_empty_report_and_clearing_them_answers_true(api: Api) -> None:
    """Keel has no issue detectors: the report is empty, before and after a clear."""
    assert (await api.call("GET", "/issues")).result == {"issues": []}
    assert (await api.call("DELETE", "/issues")).result is True
    assert (await api.call("GET", "/issues")).result == {"issues": []}
