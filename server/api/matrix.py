"""`POST /points/search/matrix/pairs` and `/offsets`: distances between sampled points.

Owns: parsing Qdrant's SearchMatrixRequest (`filter`, `sample` default 10 and at least 2,
`limit` default 3 and at least 1, `using`, `shard_key`) and shaping the two answers:
`{"pairs": [{"a", "b", "score"}]}` and `{"offsets_row", "offsets_col", "scores", "ids"}`.
Scores are f32 in Qdrant (ScoreType) and are written as float32, shortest text (1.4063001,
not 1.4063000679016113), as search scores are in server/responses.py.
Not here: sampling and scoring (engine/query/distance_matrix.py).

The sample is random, as in Qdrant: two calls may answer differently unless `sample` is at
least the number of points the filter selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from aiohttp import web

from engine.errors import NotImplementedYet
from engine.filters.conditions import Filter
from engine.ops import UNNAMED_VECTOR
from engine.query.distance_matrix import DistanceMatrix
from engine.strict_mode import checks as strict_checks
from engine.strict_mode.rate_limits import matrix_read_costs
from server.api.context import catalog_of, collection_name_of, read_json
from server.responses import ok, point_id_json
from server.wire.filters import parse_filter
from server.wire.schemas import parse_read_params, parse_usize
from server.wire.serde_text import invalid_type, range_message, validation_errors

SAMPLE_DEFAULT = 10
LIMIT_DEFAULT = 3
PREFIX = "search_request"


@dataclass(frozen=True)
class MatrixBody:
    filter: Filter | None
    sample_count: int
    limit: int
    using: str
    sample_given: int | None = None  # as the client gave them, for strict mode
    limit_given: int | None = None


async def matrix_pairs(request: web.Request) -> web.Response:
    matrix = await _matrix(request)
    pairs = [
        {"a": point_id_json(point_id), "b": point_id_json(other), "score": np.float32(score)}
        for point_id, row in zip(matrix.ids, matrix.neighbours)
        for other, score in row
    ]
    return ok(request, {"pairs": pairs})


async def matrix_offsets(request: web.Request) -> web.Response:
    matrix = await _matrix(request)
    offset_of = {point_id: offset for offset, point_id in enumerate(matrix.ids)}
    rows, columns, scores = [], [], []
    for row, neighbours in enumerate(matrix.neighbours):
        for other, score in neighbours:
            rows.append(row)
            columns.append(offset_of[other])
            scores.append(np.float32(score))
    result = {
        "offsets_row": rows,
        "offsets_col": columns,
        "scores": scores,
        "ids": [point_id_json(point_id) for point_id in matrix.ids],
    }
    return ok(request, result)


async def _matrix(request: web.Request) -> DistanceMatrix:
    name = collection_name_of(request)
    body = parse_matrix(await read_json(request))
    timeout_s = parse_read_params(request.query)
    collection = catalog_of(request).get(name)
    check = partial(strict_checks.check_matrix, body.sample_given, body.limit_given, body.filter)
    costs = partial(matrix_read_costs, body.sample_count, body.filter)
    collection.check_read(check, timeout_s, costs)
    return await collection.distance_matrix(body.filter, body.sample_count, body.limit, body.using)


def parse_matrix(data: Any) -> MatrixBody:
    if not isinstance(data, dict):
        raise invalid_type(data, "struct SearchMatrixRequest")
    sample = SAMPLE_DEFAULT if data.get("sample") is None else parse_usize(data["sample"])
    limit = LIMIT_DEFAULT if data.get("limit") is None else parse_usize(data["limit"])
    using = data.get("using")
    if using is not None and type(using) is not str:
        raise invalid_type(using, "a string")
    filter_ = parse_filter(data.get("filter"), f"{PREFIX}.filter")
    errors = []
    if sample < 2:
        errors.append((f"{PREFIX}.sample", range_message(sample, 2)))
    if limit < 1:
        errors.append((f"{PREFIX}.limit", range_message(limit, 1)))
    if errors:
        raise validation_errors(errors)
    if data.get("shard_key") is not None:
        raise NotImplementedYet("shard keys are not supported by single-node Keel")
    return MatrixBody(
        filter_, sample, limit, using or UNNAMED_VECTOR, data.get("sample"), data.get("limit")
    )


POINTS = "/collections/{collection_name}/points"
ROUTES = [
    ("POST", POINTS + "/search/matrix/pairs", matrix_pairs),
    ("POST", POINTS + "/search/matrix/offsets", matrix_offsets),
]
