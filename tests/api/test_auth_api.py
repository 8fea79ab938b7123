"""API keys: the matrix of no key / wrong key / read-only / read-write over route groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import Catalog
from engine.limits import EngineSettings
from server.app import create_app
from server.auth import MISSING_KEY_TEXT, READ_ONLY_TEXT, WRONG_KEY_TEXT

RW, RO = "rw-secret", "ro-secret"
READS = [
    ("GET", "/collections", None),
    ("GET", "/collections/c", None),
    ("POST", "/collections/c/points", {"ids": [1]}),
    ("POST", "/collections/c/points/search", {"vector": [1, 0, 0, 0], "limit": 1}),
    ("POST", "/collections/c/points/query", {"query": [1, 0, 0, 0]}),
    ("POST", "/collections/c/points/scroll", {}),
    ("POST", "/collections/c/points/count", {}),
]
WRITES = [
    ("PUT", "/collections/c/points", {"points": [{"id": 2, "vector": [0, 1, 0, 0]}]}),
    ("POST", "/collections/c/points/delete", {"points": [1]}),
    ("POST", "/collections/c/points/payload", {"payload": {"a": 1}, "points": [1]}),
    ("PUT", "/collections/d", {"vectors": {"size": 2, "distance": "Dot"}}),
    ("DELETE", "/collections/c", None),
]


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path):
    catalog = Catalog(tmp_path, EngineSettings())
    await catalog.open()
    app = create_app(catalog, keel_version="test", api_key=RW, read_only_api_key=RO)
    test_client = await aiohttp_client(app)
    headers = {"api-key": RW}
    await test_client.put(
        "/collections/c", json={"vectors": {"size": 4, "distance": "Dot"}}, headers=headers
    )
    await test_client.put(
        "/collections/c/points",
        headers=headers,
        json={"points": [{"id": 1, "vector": [1, 0, 0, 0]}]},
    )
    yield test_client
    await catalog.close()


async def call(client, method: str, path: str, body, headers: dict):
    response = await client.request(method, path, json=body, headers=headers)
    return response.status, await response.text()


@pytest.mark.parametrize(("method", "path", "body"), READS + WRITES)
async def test_no_key_and_a_wrong_key_are_refused_everywhere(client, method, path, body):
    assert await call(client, method, path, body, {}) == (401, MISSING_KEY_TEXT)
    wrong = {"api-key": "nope"}
    assert await call(client, method, path, body, wrong) == (401, WRONG_KEY_TEXT)


@pytest.mark.parametrize(("method", "path", "body"), READS)
async def test_both_keys_may_read_with_either_header(client, method, path, body):
    for headers in ({"api-key": RO}, {"Authorization": f"Bearer {RO}"}, {"api-key": RW}):
        status, _ = await call(client, method, path, body, headers)
        assert status == 200, (method, path, headers)


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_only_the_read_write_key_may_write(client, method, path, body):
    status, text = await call(client, method, path, body, {"api-key": RO})
    assert status == 403 and READ_ONLY_TEXT in text
    status, _ = await call(client, method, path, body, {"Authorization": f"Bearer {RW}"})
    assert status == 200


async def test_a_refused_write_changes_nothing(client):
    await call(
        client,
        "PUT",
        "/collections/c/points",
        {"points": [{"id": 5, "vector": [1, 1, 1, 1]}]},
        {"api-key": RO},
    )
    status, text = await call(
        client, "POST", "/collections/c/points", {"ids": [5]}, {"api-key": RO}
    )
    assert status == 200 and '"result":[]' in text


@pytest.mark.parametrize("path", ["/", "/healthz", "/livez", "/readyz", "/healthz/", "/readyz/"])
async def test_probes_and_the_root_stay_open_to_any_key_or_none(client, path):
    """Qdrant 1.19 (src/actix/mod.rs) skips the key check for `/`, `/healthz`, `/readyz` and
    `/livez`: no key, a wrong key and the read-only key all get the answer."""
    for headers in ({}, {"api-key": "nope"}, {"api-key": RO}, {"Authorization": f"Bearer {RO}"}):
        status, _ = await call(client, "GET", path, None, headers)
        assert status == 200, (path, headers)


async def test_the_root_answers_its_version_without_a_key(client):
    response = await client.get("/")
    assert response.status == 200
    assert set(await response.json()) == {"title", "version", "commit"}


@pytest.mark.parametrize("path", ["/telemetry", "/metrics", "/collections/c/exists", "/livez/x"])
async def test_only_those_paths_are_open(client, path):
    assert await call(client, "GET", path, None, {}) == (401, MISSING_KEY_TEXT)
