"""Every operation Qdrant publishes is routed in Keel: it works, or answers an honest 501.

The list of operations is Qdrant's, never Keel's: qdrant-client's generated API, read by
openapi_check.response_types() (each `_build_for_*` method called against a recording fake
client), so an operation Qdrant adds shows up here as soon as the test extra's qdrant-client
has it. Each is resolved through Keel's router with its path parameters filled in; an
unrouted one would be answered 404 ("no API route") or 405 by aiohttp, which reads like a
typo in the client's URL rather than "Keel does not do this".
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from engine.catalog import Catalog
from server.app import create_app
from server.routing import PATHS_REMEMBERED_MAX
from tests.api.conftest import KEEL_VERSION, Api
from tests.api.openapi_check import response_types

# Operations Qdrant publishes that Keel leaves unrouted, each with the reason. Empty: every
# one is served or answers 501 (server/api/not_implemented.py).
UNROUTED_ALLOWED: frozenset[tuple[str, str]] = frozenset()

PATH_PARAMETER = re.compile(r"\{([a-z_]+)\}")
SAMPLE_PARAMETERS = {"shard_id": "0", "peer_id": "1", "id": "1"}


async def test_every_operation_qdrant_publishes_is_routed(catalog: Catalog) -> None:
    app = create_app(catalog, keel_version=KEEL_VERSION)
    unrouted = set()
    for path, method in response_types():
        url = PATH_PARAMETER.sub(lambda match: SAMPLE_PARAMETERS.get(match[1], "c"), path)
        match_info = await app.router.resolve(make_mocked_request(method.upper(), url, app=app))
        if match_info.http_exception is not None:
            unrouted.add((method, path))
    assert len(response_types()) > 70, "qdrant-client's API was not read"
    assert unrouted == UNROUTED_ALLOWED, sorted(unrouted - UNROUTED_ALLOWED)


async def test_an_unimplemented_operation_answers_501_in_qdrants_error_shape(api: Api) -> None:
    response = await api.call("GET", "/quotas")
    assert response.status == 501
    assert response.error == "Not implemented in Keel: GET /quotas"


async def test_an_unknown_route_still_answers_404(api: Api) -> None:
    response: Any = await api.call("GET", "/no-such-route")
    assert response.status == 404
    assert response.error == "Not found: no API route GET /no-such-route"


async def test_the_remembering_router_answers_as_aiohttps_own_every_time(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every route, under every method (so 405s and the routes sharing a path with another
    method too), resolved twice by Keel's router (the second time from its memory) and once
    by a plain aiohttp router holding the same routes: the same resource, route and match."""
    app = create_app(catalog, keel_version=KEEL_VERSION)
    plain = web.UrlDispatcher()
    for route in app.router.routes():
        plain.add_route(route.method, route.resource.canonical, route.handler)
    paths = {
        PATH_PARAMETER.sub(lambda match: SAMPLE_PARAMETERS.get(match[1], "c"), resource.canonical)
        for resource in app.router.resources()
    }
    full_walks = []
    walk = web.UrlDispatcher.resolve

    async def counted_walk(router: web.UrlDispatcher, request: web.Request) -> Any:
        full_walks.append(request.path)
        return await walk(router, request)

    monkeypatch.setattr(web.UrlDispatcher, "resolve", counted_walk)
    methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
    remembered = 0
    for path in sorted(paths | {"/no-such-route", "/collections/c/no-such-route"}):
        for method in methods:
            expected = await plain.resolve(make_mocked_request(method, path, app=app))
            for _ in range(2):
                full_walks.clear()
                got = await app.router.resolve(make_mocked_request(method, path, app=app))
                assert _described(got) == _described(expected), (method, path)
            is_match = expected.http_exception is None
            assert len(full_walks) == (0 if is_match else 1), (method, path)  # the second time
            remembered += is_match
    assert remembered > 150, "too few routes matched: the comparison proves little"
    # Forgetting everything past its bound keeps the answers right.
    for index in range(PATHS_REMEMBERED_MAX + 10):
        got = await app.router.resolve(
            make_mocked_request("GET", f"/collections/c{index}", app=app)
        )
        assert got.route.resource.canonical == "/collections/{collection_name}"
        assert got["collection_name"] == f"c{index}"


def _described(match_info: Any) -> Any:
    if match_info.http_exception is not None:
        return type(match_info.http_exception), sorted(
            match_info.http_exception.headers.get("Allow", "").split(",")
        )
    return match_info.route.method, match_info.route.resource.canonical, dict(match_info)
