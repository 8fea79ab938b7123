"""Fixtures for the in-process API tests: a real Catalog in tmp_path behind create_app.

Every request made through `Api` is checked against Qdrant's API (openapi_check, from
qdrant-client's models), success or error, so no test can forget to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from engine.catalog import Catalog
from engine.limits import EngineSettings
from server.app import create_app
from tests.api.openapi_check import check_response

KEEL_VERSION = "0.0.0-test"
UNUSED_POINT_ID = 2**64 - 1  # no test writes it: deleting it changes nothing


@dataclass
class ApiResponse:
    status: int
    body: Any  # parsed JSON, or the text of a non-JSON body
    headers: Any

    @property
    def result(self) -> Any:
        assert self.status == 200, (self.status, self.body)
        return self.body["result"]

    @property
    def error(self) -> str:
        assert self.status >= 400, (self.status, self.body)
        return self.body["status"]["error"]


class Api:
    """Calls Keel like a Qdrant client and validates every answer against Qdrant's API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        template: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        query: dict[str, str] | str | None = None,
        name: str = "c",
        point_id: Any = None,
        validate: bool = True,
        field_name: str = "",
    ) -> ApiResponse:
        """`template` is Qdrant's path template; `name`/`point_id`/`field_name` fill it in."""
        path = template.replace("{collection_name}", name).replace("{id}", str(point_id))
        path = path.replace("{field_name}", field_name)
        if query:
            path += "?" + (query if isinstance(query, str) else _query_string(query))
        if json is not None:
            data = orjson.dumps(json)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        response = await self.client.request(method, path, data=data, headers=headers)
        raw = await response.read()
        is_json = response.content_type == "application/json"
        body = orjson.loads(raw) if is_json else raw.decode()
        if validate and is_json:
            check_response(template, method.lower(), response.status, body)
        return ApiResponse(response.status, body, response.headers)

    async def create_collection(self, name: str = "c", **vectors_config: Any) -> None:
        body = vectors_config or {"vectors": {"size": 4, "distance": "Dot"}}
        response = await self.call("PUT", "/collections/{collection_name}", json=body, name=name)
        assert response.result is True

    async def upsert(self, body: Any, name: str = "c", query: Any = None) -> ApiResponse:
        return await self.call(
            "PUT", "/collections/{collection_name}/points", json=body, name=name, query=query
        )

    async def retrieve(self, ids: list[Any], name: str = "c", **options: Any) -> list[Any]:
        body = {"ids": ids, **options}
        response = await self.call(
            "POST", "/collections/{collection_name}/points", json=body, name=name
        )
        return response.result

    async def points_count(self, name: str = "c") -> int:
        response = await self.call("GET", "/collections/{collection_name}", name=name)
        return response.result["points_count"]

    async def next_op_id(self, name: str = "c") -> int:
        """The operation_id the next write gets, found by making one that changes nothing
        (deleting an id no test uses)."""
        response = await self.call(
            "POST",
            "/collections/{collection_name}/points/delete",
            json={"points": [UNUSED_POINT_ID]},
            name=name,
        )
        return response.result["operation_id"]

    async def scroll_all(self, name: str = "c", **options: Any) -> list[Any]:
        """Every point (one page of up to 1000), with payload and vectors by default."""
        body = {"limit": 1000, "with_payload": True, "with_vector": True, **options}
        response = await self.call(
            "POST", "/collections/{collection_name}/points/scroll", json=body, name=name
        )
        assert response.result["next_page_offset"] is None
        return response.result["points"]


def _query_string(query: dict[str, str]) -> str:
    return "&".join(f"{key}={value}" for key, value in query.items())


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Catalog]:
    catalog = Catalog(tmp_path / "storage", EngineSettings())
    await catalog.open()
    yield catalog
    await catalog.close()


@pytest.fixture
async def api(aiohttp_client: Any, catalog: Catalog) -> Api:
    client = await aiohttp_client(create_app(catalog, keel_version=KEEL_VERSION))
    return Api(client)
