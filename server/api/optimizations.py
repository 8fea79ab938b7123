"""The optimizations report of a collection, as far as Keel has optimizations.

Owns: `GET /collections/{collection_name}/optimizations` (OptimizationsResponse).
Not here: the indexing it reports on (engine/applier.py catches the graphs up after an
open; `Collection.is_indexing`), the collection's status (server/wire/collection_config.py).

Qdrant 1.19 (`src/actix/api/collections_api.rs` `get_optimizations`,
`lib/shard/src/operations/optimization.rs`): a summary and the running optimizations
always; `?with=queued,completed,idle_segments` adds those lists (`completed_limit`, a u64,
caps the completed one); an unknown `with` field is 400 "Wrong input: Unknown field in
'with' parameter: x", checked before the collection is looked up.

Keel has no segments to merge and no optimizer: its collection is one segment
(CollectionInfo says `segments_count` 1), whose uuid here is derived from the collection's
incarnation (stable until the collection is re-created or restored). The only background
work is the graphs catching up with LMDB after an open, while the collection's status is
yellow; meanwhile the segment is reported as one queued optimization named
`index_catch_up` (a running one must carry a progress tree with its start time, which Keel
does not keep), and afterwards as idle. `running` and `completed` are always empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from engine.collection import Collection
from engine.errors import BadRequest
from server.api.context import catalog_of, collection_name_of
from server.responses import ApiError, ok

CATCH_UP_OPTIMIZER = "index_catch_up"
OPTIMIZATIONS_WITH = ("queued", "completed", "idle_segments")


async def get_optimizations(request: web.Request) -> web.Response:
    """OptimizationsResponse; `with` adds the queued, completed and idle segment lists."""
    name = collection_name_of(request)
    listed = parse_optimizations_with(request.query)
    collection = catalog_of(request).get(name)
    points_count = collection.stats().points_count
    segment = {"uuid": str(segment_uuid(collection)), "points_count": points_count}
    is_queued = collection.is_indexing
    result: dict[str, Any] = {
        "summary": {
            "queued_optimizations": int(is_queued),
            "queued_segments": int(is_queued),
            "queued_points": points_count if is_queued else 0,
            "idle_segments": int(not is_queued),
        },
        "running": [],
    }
    if "queued" in listed:
        pending = {"optimizer": CATCH_UP_OPTIMIZER, "segments": [segment]}
        result["queued"] = [pending] if is_queued else []
    if "completed" in listed:
        result["completed"] = []
    if "idle_segments" in listed:
        result["idle_segments"] = [] if is_queued else [segment]
    return ok(request, result)


def parse_optimizations_with(query: Mapping[str, str]) -> set[str]:
    """The lists `with` asks for; `completed_limit` is only parsed (Keel never has completed
    optimizations to limit)."""
    limit_text = query.get("completed_limit", "0")
    if not (limit_text.isascii() and limit_text.isdigit()):
        raise ApiError(400, "Deserialize error in query parameters: invalid digit found in string")
    listed = set()
    for field in query.get("with", "").split(","):
        field = field.strip()
        if field and field not in OPTIMIZATIONS_WITH:
            raise BadRequest(f"Unknown field in 'with' parameter: {field}")
        listed.add(field)
    return listed


def segment_uuid(collection: Collection) -> uuid.UUID:
    """A uuid for the collection's one segment, stable while its incarnation is."""
    return uuid.uuid5(uuid.NAMESPACE_OID, f"keel-segment:{collection.incarnation}")


ROUTES = [
    ("GET", "/collections/{collection_name}/optimizations", get_optimizations),
]
