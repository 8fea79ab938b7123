"""Route resolution that costs one regex per request, not one per route.

Owns: `RememberingRouter`, the app's router.
Not here: the route table (server/app.py).

aiohttp's UrlDispatcher indexes resources by their path up to the first variable, so all of
Keel's `/collections/{collection_name}/...` resources (over a hundred, counting the
trailing-slash twins) share one bucket, tried in order with one regex and one coroutine each:
`POST /points/query` matched on the 51st try, a tenth of the event loop's time under a
search load (py-spy, issue 15). The routes never change once the app is built, so the
resource that answered a method and path answers them the next time too: the router
remembers it and asks it alone. Answers that are not a match (404, 405) are not remembered.
"""

from __future__ import annotations

import warnings

from aiohttp import web
from aiohttp.abc import AbstractMatchInfo
from aiohttp.web_urldispatcher import AbstractResource, UrlMappingMatchInfo

# Bounds the memory of paths naming many collections or point ids: past it the router forgets
# everything and learns again (a miss costs what every request cost before).
PATHS_REMEMBERED_MAX = 4096
# Longer paths are resolved without remembering them: a key is kept whole.
PATH_REMEMBERED_LENGTH_MAX = 512


class RememberingRouter(web.UrlDispatcher):
    """aiohttp's router, remembering which resource matched each (method, path)."""

    def __init__(self) -> None:
        super().__init__()
        self._resource_by_key: dict[tuple[str, str], AbstractResource] = {}

    async def resolve(self, request: web.Request) -> AbstractMatchInfo:
        path = request.rel_url.path_safe
        key = (request.method, path)
        resource = self._resource_by_key.get(key)
        if resource is not None:
            match_info, _ = await resource.resolve(request)
            if match_info is not None:  # always: the same resource, path and method
                return match_info
        match_info = await super().resolve(request)
        if isinstance(match_info, UrlMappingMatchInfo) and len(path) <= PATH_REMEMBERED_LENGTH_MAX:
            if len(self._resource_by_key) >= PATHS_REMEMBERED_MAX:
                self._resource_by_key.clear()
            self._resource_by_key[key] = match_info.route.resource
        return match_info


def application(**kwargs: object) -> web.Application:
    """A web.Application routing with RememberingRouter. aiohttp 3 marks its `router`
    argument deprecated (with nothing to replace it) but supports it; Keel pins aiohttp < 4."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "router argument is deprecated", DeprecationWarning)
        return web.Application(router=RememberingRouter(), **kwargs)  # type: ignore[arg-type]
