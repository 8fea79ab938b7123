"""Engine operations back to the Qdrant REST requests that reproduce them (for followers).

Owns: `op_request(collection_name, op)` -> `OpRequest(method, path, body)` for every WAL
operation, and `render_filter`, engine.filters.conditions objects back to Qdrant's filter JSON, such
that server/wire/filters.py parses the rendering to an equal filter (tests check
`parse_filter(render_filter(f)) == f` and `parse(render(op)) == op`).
Not here: reading the WAL (engine/wal/log.py), the HTTP endpoint (server/api/followers.py), sending
the requests (server/commands/follow.py).

Choices, each because the target may be Qdrant as well as Keel:
- Upserts use the points-list form, one point per id, vectors by name (a collection's single
  unnamed vector as a plain list), sparse vectors as `{indices, values}`, `update_mode` only
  when not the default, so an older Qdrant without that field still takes plain upserts.
- Dense vectors are sent as the float32 values the WAL holds (Cosine ones were normalised
  at admission; Qdrant normalises again, which changes at most the last bit).
- Datetime ranges hold chrono-ordered instant keys (engine/filters/instants.py `instant_key`); they
  are written back as RFC 3339 UTC with nine fraction digits, which parses to the same key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import numpy as np

from engine.filters.conditions import (
    DatetimeRange,
    FieldCondition,
    Filter,
    GeoBoundingBox,
    GeoPoint,
    GeoPolygon,
    GeoRadius,
    HasIdCondition,
    HasVectorCondition,
    IsEmptyCondition,
    IsNullCondition,
    MatchAny,
    MatchExcept,
    MatchPhrase,
    MatchPrefix,
    MatchText,
    MatchTextAny,
    MatchValue,
    MinShould,
    NestedCondition,
    Range,
    SliceCondition,
    ValuesCount,
)
from engine.filters.instants import INSTANT_KEY_SPAN, NS_PER_S
from engine.ops import (
    UNNAMED_VECTOR,
    CreateFieldIndex,
    CreateVectorName,
    DeleteFieldIndex,
    DeletePoints,
    DeleteVectorName,
    DeleteVectors,
    Operation,
    PayloadMode,
    PointId,
    UpdateMode,
    UpdatePayload,
    UpdateVectors,
    UpsertPoints,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OpRequest:
    """One REST request: `path` is URL-quoted by the sender, `body` is JSON-able or None."""

    method: str
    path: str
    body: Any

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body}


def op_request(collection_name: str, op: Operation, is_single_unnamed: bool) -> OpRequest:
    """The request that makes a Qdrant (or Keel) collection do what `op` did here.
    `is_single_unnamed`: the collection has one unnamed vector (sent as a plain list)."""
    points = f"/collections/{collection_name}/points"
    if isinstance(op, UpsertPoints):
        return OpRequest("PUT", points, _upsert_body(op, is_single_unnamed))
    if isinstance(op, DeletePoints):
        return OpRequest("POST", points + "/delete", _selector(op.ids or None, op.filter))
    if isinstance(op, UpdatePayload):
        return _payload_request(points, op)
    if isinstance(op, UpdateVectors):
        body = {"points": _point_vectors(op, is_single_unnamed)}
        if op.update_filter is not None:
            body["update_filter"] = render_filter(op.update_filter)
        return OpRequest("PUT", points + "/vectors", body)
    if isinstance(op, DeleteVectors):
        body = {**_selector(op.ids, op.filter), "vector": list(op.names)}
        return OpRequest("POST", points + "/vectors/delete", body)
    if isinstance(op, CreateFieldIndex):
        schema = op.params if op.params is not None else op.schema_type
        body = {"field_name": op.field_name, "field_schema": schema}
        return OpRequest("PUT", f"/collections/{collection_name}/index", body)
    if isinstance(op, CreateVectorName | DeleteVectorName):
        return _vector_name_request(collection_name, op)
    assert isinstance(op, DeleteFieldIndex), type(op)
    return OpRequest("DELETE", f"/collections/{collection_name}/index/{op.field_name}", None)


def _vector_name_request(
    collection_name: str, op: CreateVectorName | DeleteVectorName
) -> OpRequest:
    """PUT or DELETE /collections/{c}/vectors/{name}; the body of a creation is what the
    client sent, rebuilt from the op and its echo (server/wire/vector_name_config.py)."""
    path = f"/collections/{collection_name}/vectors/{quote(op.name, safe='')}"
    if isinstance(op, DeleteVectorName):
        return OpRequest("DELETE", path, None)
    if op.dense is not None:
        dense = {"size": op.dense.size, "distance": op.dense.distance.value}
        for key in ("multivector_config", "datatype"):
            if key in op.echo:
                dense[key] = op.echo[key]
        return OpRequest("PUT", path, {"dense": dense})
    sparse: dict[str, Any] = {}
    if "modifier" in op.echo:
        sparse["modifier"] = op.echo["modifier"]
    if "datatype" in op.echo.get("index", {}):
        sparse["datatype"] = op.echo["index"]["datatype"]
    return OpRequest("PUT", path, {"sparse": sparse})


def render_filter(filter_: Filter) -> dict[str, Any]:
    """Qdrant's JSON for an engine Filter (the inverse of server/wire/filters.py's parser)."""
    data: dict[str, Any] = {}
    for name in ("must", "should", "must_not"):
        conditions = getattr(filter_, name)
        if conditions is not None:
            data[name] = [render_condition(condition) for condition in conditions]
    if filter_.min_should is not None:
        data["min_should"] = _render_min_should(filter_.min_should)
    return data


def render_condition(condition: Any) -> dict[str, Any]:
    if isinstance(condition, FieldCondition):
        return _render_field_condition(condition)
    if isinstance(condition, IsEmptyCondition):
        return {"is_empty": {"key": str(condition.key)}}
    if isinstance(condition, IsNullCondition):
        return {"is_null": {"key": str(condition.key)}}
    if isinstance(condition, HasIdCondition):
        return {"has_id": sorted((point_id_json(i) for i in condition.has_id), key=str)}
    if isinstance(condition, HasVectorCondition):
        return {"has_vector": condition.has_vector}
    if isinstance(condition, SliceCondition):
        return {"slice": {"total": condition.total, "index": condition.index}}
    if isinstance(condition, NestedCondition):
        return {"nested": {"key": str(condition.key), "filter": render_filter(condition.filter)}}
    assert isinstance(condition, Filter), type(condition)
    return render_filter(condition)


def point_id_json(point_id: PointId) -> int | str:
    return str(point_id) if isinstance(point_id, uuid.UUID) else point_id


def instant_text(key: int) -> str:
    """RFC 3339 UTC text of an instant key (engine/filters/instants.py `instant_key` inverts it)."""
    seconds, nanos = divmod(key, INSTANT_KEY_SPAN)
    moment = EPOCH + timedelta(seconds=seconds)
    second = moment.second
    if nanos >= NS_PER_S:  # a leap second: chrono writes it as second 60 of the minute
        nanos -= NS_PER_S
        second = 60
    return f"{moment.strftime('%Y-%m-%dT%H:%M:')}{second:02d}.{nanos:09d}Z"


# ---- private -------------------------------------------------------------------------------


def _render_field_condition(condition: FieldCondition) -> dict[str, Any]:
    data: dict[str, Any] = {"key": str(condition.key)}
    if condition.match is not None:
        data["match"] = _render_match(condition.match)
    if isinstance(condition.range, DatetimeRange):
        data["range"] = _bounds(condition.range, instant_text)
    elif isinstance(condition.range, Range):
        data["range"] = _bounds(condition.range, float)
    if condition.geo_bounding_box is not None:
        data["geo_bounding_box"] = _render_box(condition.geo_bounding_box)
    if condition.geo_radius is not None:
        data["geo_radius"] = _render_radius(condition.geo_radius)
    if condition.geo_polygon is not None:
        data["geo_polygon"] = _render_polygon(condition.geo_polygon)
    if condition.values_count is not None:
        data["values_count"] = _bounds(condition.values_count, int)
    if condition.is_empty is not None:
        data["is_empty"] = condition.is_empty
    if condition.is_null is not None:
        data["is_null"] = condition.is_null
    return data


def _render_match(match: Any) -> dict[str, Any]:
    if isinstance(match, MatchValue):
        return {"value": match.value}
    if isinstance(match, MatchText):
        return {"text": match.text}
    if isinstance(match, MatchTextAny):
        return {"text_any": match.text_any}
    if isinstance(match, MatchPhrase):
        return {"phrase": match.phrase}
    if isinstance(match, MatchPrefix):
        return {"prefix": match.prefix}
    if isinstance(match, MatchAny):
        return {"any": sorted(match.any)}
    assert isinstance(match, MatchExcept), type(match)
    return {"except": sorted(match.except_)}


def _bounds(bounds: Range | DatetimeRange | ValuesCount, convert: Any) -> dict[str, Any]:
    return {
        name: convert(getattr(bounds, name))
        for name in ("gt", "gte", "lt", "lte")
        if getattr(bounds, name) is not None
    }


def _geo_point(point: GeoPoint) -> dict[str, float]:
    return {"lon": point.lon, "lat": point.lat}


def _render_box(box: GeoBoundingBox) -> dict[str, Any]:
    return {"top_left": _geo_point(box.top_left), "bottom_right": _geo_point(box.bottom_right)}


def _render_radius(radius: GeoRadius) -> dict[str, Any]:
    return {"center": _geo_point(radius.center), "radius": radius.radius_m}


def _render_polygon(polygon: GeoPolygon) -> dict[str, Any]:
    def line(points: tuple[GeoPoint, ...]) -> dict[str, Any]:
        return {"points": [_geo_point(point) for point in points]}

    data: dict[str, Any] = {"exterior": line(polygon.exterior)}
    if polygon.interiors:
        data["interiors"] = [line(interior) for interior in polygon.interiors]
    return data


def _render_min_should(min_should: MinShould) -> dict[str, Any]:
    return {
        "conditions": [render_condition(condition) for condition in min_should.conditions],
        "min_count": min_should.min_count,
    }


def _selector(ids: list[PointId] | None, filter_: Filter | None) -> dict[str, Any]:
    """A PointsSelector: the id list wins over a filter, as Qdrant resolves them."""
    if ids is not None:
        return {"points": [point_id_json(point_id) for point_id in ids]}
    assert filter_ is not None, "an op selects by ids or by filter"
    return {"filter": render_filter(filter_)}


def _payload_request(points: str, op: UpdatePayload) -> OpRequest:
    selector = _selector(op.ids, op.filter)
    if op.mode is PayloadMode.SET:
        body = {**selector, "payload": op.payload}
        if op.key is not None:
            body["key"] = op.key
        return OpRequest("POST", points + "/payload", body)
    if op.mode is PayloadMode.OVERWRITE:
        return OpRequest("PUT", points + "/payload", {**selector, "payload": op.payload})
    if op.mode is PayloadMode.DELETE_KEYS:
        return OpRequest("POST", points + "/payload/delete", {**selector, "keys": op.keys})
    assert op.mode is PayloadMode.CLEAR, op.mode
    return OpRequest("POST", points + "/payload/clear", selector)


def _upsert_body(op: UpsertPoints, is_single_unnamed: bool) -> dict[str, Any]:
    vectors = _point_vectors(op, is_single_unnamed)
    for point, payload in zip(vectors, op.payloads):
        if payload is not None:
            point["payload"] = payload
    body: dict[str, Any] = {"points": vectors}
    if op.update_mode is not UpdateMode.UPSERT:
        body["update_mode"] = op.update_mode.value
    if op.update_filter is not None:
        body["update_filter"] = render_filter(op.update_filter)
    return body


def _point_vectors(
    op: UpsertPoints | UpdateVectors, is_single_unnamed: bool
) -> list[dict[str, Any]]:
    """`[{"id", "vector"}]`: each id with every vector the op gives it (a multivector's
    matrix as a list of rows)."""
    ids, vectors, sparse = op.ids, op.vectors, op.sparse
    by_row: list[dict[str, Any]] = [{} for _ in ids]
    for name, column in op.multi.items():
        for position, row in enumerate(column.rows.tolist()):
            by_row[row][name] = column.matrix_of(position).astype(np.float32).tolist()
    for name, named in vectors.items():
        for row, values in zip(named.rows.tolist(), named.matrix.astype(np.float32).tolist()):
            by_row[row][name] = values
    for name, column in sparse.items():
        for position, row in enumerate(column.rows.tolist()):
            vector = column.vector(position)
            by_row[row][name] = {
                "indices": vector.indices.tolist(),
                "values": vector.values.astype(np.float32).tolist(),
            }
    points = []
    for point_id, named_values in zip(ids, by_row):
        if is_single_unnamed and list(named_values) == [UNNAMED_VECTOR]:
            vector: Any = named_values[UNNAMED_VECTOR]
        else:
            vector = named_values
        points.append({"id": point_id_json(point_id), "vector": vector})
    return points
