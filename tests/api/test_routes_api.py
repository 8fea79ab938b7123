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

from aiohttp.test_utils import make_mocked_request

from engine.catalog import Catalog
from server.app import create_app
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
