"""Qdrant's response bodies: the success envelope, the error body, and the JSON of points.

Owns: `{"result": .., "status": "ok", "time": ..}`, `{"status": {"error": ..}, "time": ..}`
(no `result` key: Qdrant skips it), how records, scored points and update results are
written, and `ApiError` for errors whose status and whole text the server decides.
Not here: which engine error becomes which status (app.py), request parsing (server/wire/schemas.py).

Field presence follows Qdrant's serde attributes (lib/api/src/rest/schema.rs): `Record`
and `ScoredPoint` skip `payload` and `vector` when they were not asked for (absent, not
null); `UpdateResult.operation_id` is always known in Keel. Vectors are float32 arrays,
written by orjson as shortest float32 text, which is what serde_json writes for f32.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from engine.ops import (
    UNNAMED_VECTOR,
    PointId,
    PointRecord,
    ScoredPoint,
    SparseVector,
    UpdateResult,
)

JSON_CONTENT_TYPE = "application/json"
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# time.monotonic() when the request came in, set by app.error_middleware. RequestKey is
# aiohttp >= 3.14 (older ones take the plain string; 3.14 warns about it).
STARTED_S_KEY: Any = (
    web.RequestKey("keel_started_s", float) if hasattr(web, "RequestKey") else "keel_started_s"
)
# The text of an error answer, kept on the response for the request log (request_log.py).
ERROR_TEXT_KEY: Any = (
    web.ResponseKey("keel_error_text", str) if hasattr(web, "ResponseKey") else "keel_error_text"
)


class ApiError(Exception):
    """An error answered with exactly this status and text (query and path parameters,
    Qdrant's `Bad request: ...` of an empty selection).

    Engine errors carry no status (engine/errors.py); these are the server's own, for
    texts Qdrant words differently from its body errors.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ok(request: web.Request, result: Any) -> web.Response:
    """Qdrant's success envelope around `result`, timed from the request's arrival."""
    return json_response({"result": result, "status": "ok", "time": elapsed_s(request)})


def error(status: int, message: str, time_s: float, headers: dict[str, str] | None = None):
    """Qdrant's error body; `result` is absent, as Qdrant's serde skips a None result."""
    body = {"status": {"error": message}, "time": time_s}
    response = json_response(body, status=status, headers=headers)
    response[ERROR_TEXT_KEY] = message
    return response


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload, option=ORJSON_OPTIONS),
        status=status,
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


def elapsed_s(request: web.Request) -> float:
    started_s = request.get(STARTED_S_KEY)
    return 0.0 if started_s is None else time.monotonic() - started_s


def update_result_json(result: UpdateResult) -> dict[str, Any]:
    return {"operation_id": result.op_id, "status": result.status.value}


def point_id_json(point_id: PointId) -> int | str:
    """Integers stay numbers; UUIDs are written lowercase and hyphenated, as Qdrant does."""
    return str(point_id) if isinstance(point_id, uuid.UUID) else point_id


def record_json(record: PointRecord, is_single_unnamed: bool) -> dict[str, Any]:
    """A `Record`: `payload` and `vector` only when they were asked for."""
    body: dict[str, Any] = {"id": point_id_json(record.id)}
    if record.payload is not None:
        body["payload"] = record.payload
    if record.vectors is not None:
        body["vector"] = vectors_json(record.vectors, is_single_unnamed)
    return body


def scored_points_json(points: list[ScoredPoint], is_single_unnamed: bool) -> list[dict[str, Any]]:
    """`ScoredPoint`s; the scores are float32 in Qdrant and written as such, made in one
    array (a numpy float32 per point costs more than the rest of its body)."""
    scores = np.array([point.score for point in points], dtype=np.float32)
    return [
        scored_point_json(point, is_single_unnamed, score) for point, score in zip(points, scores)
    ]


def scored_point_json(
    point: ScoredPoint, is_single_unnamed: bool, score: np.float32 | None = None
) -> dict[str, Any]:
    """A `ScoredPoint`; the score is float32 in Qdrant and written as one (`score`: the
    point's score already made float32)."""
    body: dict[str, Any] = {
        "id": point_id_json(point.id),
        "version": point.version,
        "score": np.float32(point.score) if score is None else score,
    }
    if point.payload is not None:
        body["payload"] = point.payload
    if point.vectors is not None:
        body["vector"] = vectors_json(point.vectors, is_single_unnamed)
    return body


def vectors_json(vectors: dict[str, Any], is_single_unnamed: bool) -> Any:
    """`[..]` for a collection's single unnamed vector (when it is the only one present), else
    `{name: [..] or {"indices": [..], "values": [..]}}` of those present."""
    if is_single_unnamed and list(vectors) == [UNNAMED_VECTOR]:
        return vectors[UNNAMED_VECTOR]
    return {
        name: {"indices": vector.indices, "values": vector.values}
        if isinstance(vector, SparseVector)
        else vector
        for name, vector in vectors.items()
    }
