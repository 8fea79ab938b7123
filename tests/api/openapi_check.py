"""Check Keel's response bodies against Qdrant's REST API, as qdrant-client's models state it.

The models are qdrant-client's (`qdrant_client.http.models`, pydantic), generated from
Qdrant's own openapi.json. The test extra installs qdrant-client, so this check needs nothing
outside the repository. Both halves are derived at test time:

- Which model answers which route (`response_types`): every `_build_for_*` method of
  `qdrant_client.http.api` ends in `api_client.request(type_=<model>, method=...,
  url=<path template>)`. Called against `_RouteRecorder`, a fake api_client that records the
  call instead of sending it, they give (path template, method) -> response type.
- The JSON Schema of a type: pydantic's `TypeAdapter(...).json_schema()`, tightened.

The generated models are looser than Qdrant 1.19's spec in ways that would let wrong output
pass. Each gap was found by comparing the two documents model by model for every route a
Keel test calls, and is closed here:

1. Open objects. A model without `extra="forbid"` accepts any key. Qdrant's structs
   serialize only their declared fields, so an extra key in our output is a bug (a misspelt
   field name): every object with `properties` is closed.
2. The envelope. InlineResponse* declare time, status and result Optional; Qdrant never
   sends null there. `_envelope` rebuilds it around the `result` type without its null.
3. Null. The generator writes every field Qdrant may leave out as `Optional[X] = None`,
   whose schema also admits null; the spec does not for some (serde defaults such as
   CollectionInfo.warnings). Null is allowed only in NULLABLE_FIELDS: stricter than the
   spec, which admits null in most other optional fields too, where Keel never sends it.
4. Numbers. The models carry no bounds. Qdrant's response structs hold unsigned Rust
   integers (the spec's `minimum: 0`) except SIGNED_FIELDS, and Qdrant validates a few
   config fields to a range (BOUNDS).
5. Routes Qdrant 1.19 still serves that qdrant-client 1.20 no longer calls (the pre-1.10
   search endpoints): EXTRA_RESULTS names their result types.

Left looser, on purpose: enum values and optional fields that qdrant-client (newer than
Qdrant 1.19) added; they only admit values Qdrant 1.19 would not send. Where qdrant-client
is stricter (fields it made required, enum values it dropped, all in telemetry parts Keel
does not send), nothing is changed.

Usage: `check_response("/collections/{collection_name}", "get", 200, body)`; 4xx/5xx bodies
are checked against `ErrorResponse` plus Qdrant's error shape (no `result` key).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import types
import typing
from typing import Any

import jsonschema
import pydantic
from qdrant_client.http import api as qdrant_api
from qdrant_client.http import models as m

ENVELOPE_FIELDS = {"usage", "time", "status", "result"}
REF_TEMPLATE = "#/$defs/{model}"

# Qdrant 1.19 still serves POST /points/search and its batch and groups forms
# (src/actix/api/search_api.rs) but dropped them from its spec, and qdrant-client 1.20 from
# its API. Their result types, as in lib/api/src/rest/schema.rs.
EXTRA_RESULTS: dict[tuple[str, str], Any] = {
    ("/collections/{collection_name}/points/search", "post"): list[m.ScoredPoint],
    ("/collections/{collection_name}/points/search/batch", "post"): list[list[m.ScoredPoint]],
    ("/collections/{collection_name}/points/search/groups", "post"): m.GroupsResult,
}

# (model, field) that may be null: the fields Keel sends as null, each nullable in Qdrant
# 1.19's spec too. A null Keel starts sending elsewhere fails by name, and goes on this list
# once Qdrant's spec is seen to allow it there.
NULLABLE_FIELDS = frozenset(
    {
        ("ScrollResult", "next_page_offset"),  # the last page
        ("CollectionConfig", "quantization_config"),
        ("OptimizersConfig", "max_optimization_threads"),
        ("OptimizersConfig", "max_segment_size"),
        ("OptimizersConfig", "memmap_threshold"),
        ("OptimizersConfig", "prevent_unoptimized"),
        # Telemetry fields Qdrant writes as null (Option without skip_serializing_if).
        ("ReplicaSetTelemetry", "key"),  # no custom sharding
        ("QuotaExceeded", "resident_memory"),  # resource not capped
        ("QuotaExceeded", "disk_usage"),
        ("CollectionConfigTelemetry", "quantization_config"),
        ("CollectionConfigTelemetry", "uuid"),  # anonymize=true
    }
)

# (model, field) whose integers may be negative: the spec's only integers without
# `minimum: 0` in what Keel's routes return (order_by values, group ids, facet values).
SIGNED_FIELDS = frozenset(
    {
        ("Record", "order_value"),
        ("ScoredPoint", "order_value"),
        ("PointGroup", "id"),
        ("FacetValueHit", "value"),
    }
)

# Ranges Qdrant validates these config fields to, as its spec states them.
BOUNDS: dict[tuple[str, str], dict[str, float]] = {
    ("VectorParams", "size"): {"minimum": 1},
    ("HnswConfig", "ef_construct"): {"minimum": 4},
    ("HnswConfigDiff", "ef_construct"): {"minimum": 4},
    ("HnswConfigDiff", "full_scan_threshold"): {"minimum": 10},
    ("CollectionParams", "shard_number"): {"minimum": 1},
    ("CollectionParams", "replication_factor"): {"minimum": 1},
    ("CollectionParams", "write_consistency_factor"): {"minimum": 1},
    ("WalConfig", "wal_capacity_mb"): {"minimum": 1},
    ("WalConfig", "wal_retain_closed"): {"minimum": 1},
    ("OptimizersConfig", "deleted_threshold"): {"minimum": 0, "maximum": 1},
    ("OptimizersConfig", "vacuum_min_vector_number"): {"minimum": 100},
    ("OptimizersConfig", "max_segment_size"): {"minimum": 1},
    ("ScalarQuantizationConfig", "quantile"): {"minimum": 0.5, "maximum": 1},
    ("HnswGlobalConfig", "healing_threshold"): {"minimum": 0, "maximum": 1},
    ("QuotaConfig", "max_disk_usage_percent"): {"minimum": 1, "maximum": 100},
    ("QuotaConfig", "max_resident_memory_percent"): {"minimum": 1, "maximum": 100},
    ("QuotaConfig", "release_margin_percent"): {"minimum": 0, "maximum": 100},
}


def check_response(path: str, method: str, status: int, body: Any) -> None:
    """Assert that `body` (parsed JSON) is what Qdrant's API allows for this response."""
    if status >= 400:
        validate(body, m.ErrorResponse)
        check_error_shape(body)
        return
    assert status == 200, f"no model for a {status} answer to {method} {path}"
    assert (path, method) in response_types(), f"no route {method} {path} in Qdrant's API"
    response_type = response_types()[(path, method)]
    assert response_type is not None, f"{method} {path} is not a JSON response"
    validate(body, response_type)
    if is_envelope(response_type):
        check_ok_shape(body)


def check_error_shape(body: Any) -> None:
    """Qdrant's error body: {"status": {"error": str}, "time": float}, `result` absent."""
    assert isinstance(body, dict), body
    assert set(body) == {"status", "time"}, f"error body keys: {sorted(body)}"
    assert isinstance(body["status"], dict), body
    assert set(body["status"]) == {"error"}, body
    assert isinstance(body["status"]["error"], str), body
    assert isinstance(body["time"], float), body


def check_ok_shape(body: Any) -> None:
    """Qdrant's success envelope: exactly result, status "ok" and a float time."""
    assert isinstance(body, dict), body
    assert set(body) == {"result", "status", "time"}, f"envelope keys: {sorted(body)}"
    assert body["status"] == "ok", body
    assert isinstance(body["time"], float), body


def validate(instance: Any, response_type: Any) -> None:
    """Raise AssertionError naming every violation of `response_type`'s schema by `instance`."""
    validator = _validator(response_type)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{list(e.absolute_path)}: {e.message}" for e in errors[:10]]
        if any(e.instance is None for e in errors):
            lines.append("(null is allowed only in openapi_check.NULLABLE_FIELDS)")
        raise AssertionError("response does not match Qdrant's API:\n" + "\n".join(lines))


@functools.cache
def response_types() -> dict[tuple[str, str], Any]:
    """(path template, lower-case method) -> what Qdrant answers with 200: a model, `str` for
    text, or None for a file download."""
    recorder = _RouteRecorder()
    for module_info in pkgutil.iter_modules(qdrant_api.__path__):
        module = importlib.import_module(f"{qdrant_api.__name__}.{module_info.name}")
        for class_name, api_class in inspect.getmembers(module, inspect.isclass):
            if api_class.__module__ == module.__name__ and class_name.startswith("_"):
                _record_routes(api_class(recorder))
    # Older qdrant-client versions call the EXTRA_RESULTS routes too: their models of them
    # are replaced, so that every version checks the same thing.
    extra_routes = {route: _envelope_model(result) for route, result in EXTRA_RESULTS.items()}
    return {**recorder.routes, **extra_routes}


def json_schema(response_type: Any) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a response type, with gaps 1-4 of the docstring closed."""
    if is_envelope(response_type):
        return _envelope(response_type.model_fields["result"].annotation)
    schema, defs = _tightened_schema(response_type)
    return {"$defs": defs, **schema}


def is_envelope(response_type: Any) -> bool:
    """Qdrant's success envelope: time, a string status and result (ErrorResponse's status is
    an object)."""
    fields = getattr(response_type, "model_fields", {})
    if not {"time", "status", "result"} <= set(fields) <= ENVELOPE_FIELDS:
        return False
    return _without_none(fields["status"].annotation) is str


class _RouteRecorder:
    """Stands in for qdrant-client's ApiClient: records the route instead of calling it."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}

    def request(self, *, type_: Any, method: str, url: str, **_: Any) -> None:
        route = (url, method.lower())
        assert route not in self.routes, f"two response types for {route}"
        self.routes[route] = type_


def _record_routes(api: Any) -> None:
    for name, build in inspect.getmembers(api, inspect.ismethod):
        if name.startswith("_build_for_"):
            parameters = inspect.signature(build).parameters.values()
            build(**{p.name: None for p in parameters if p.default is inspect.Parameter.empty})


def _envelope_model(result_type: Any) -> Any:
    return pydantic.create_model(
        "ExtraEnvelope", time=(float, ...), status=(str, ...), result=(result_type, ...)
    )


def _envelope(result_annotation: Any) -> dict[str, Any]:
    """Without `usage`: Keel never sends it (check_ok_shape holds the envelope to result,
    status and time), so the schema refuses it too."""
    result_schema, result_defs = _tightened_schema(_without_none(result_annotation))
    return {
        "$defs": result_defs,
        "type": "object",
        "properties": {
            "time": {"type": "number"},
            "status": {"type": "string"},
            "result": result_schema,
        },
        "required": ["time", "status", "result"],
        "additionalProperties": False,
    }


def _without_none(annotation: Any) -> Any:
    arguments = typing.get_args(annotation)
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    if not is_union or type(None) not in arguments:
        return annotation
    remaining = tuple(argument for argument in arguments if argument is not type(None))
    return remaining[0] if len(remaining) == 1 else typing.Union[remaining]  # noqa: UP007 - a tuple of types known at run time


def _tightened_schema(type_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of `type_` and its $defs, tightened. Wrapped in a list so that a model at
    the top lands in $defs like every other model, where the per-model rules apply."""
    schema = pydantic.TypeAdapter(list[type_]).json_schema(ref_template=REF_TEMPLATE)
    _tighten(schema)
    return schema["items"], schema.get("$defs", {})


def _tighten(schema: dict[str, Any]) -> None:
    """Gaps 1, 3 and 4 of the docstring, model by model, in place."""
    for model_name, model_schema in schema.get("$defs", {}).items():
        for field_name, field_schema in model_schema.get("properties", {}).items():
            field = (model_name, field_name)
            if field not in NULLABLE_FIELDS:
                model_schema["properties"][field_name] = field_schema = _drop_null(field_schema)
            if field not in SIGNED_FIELDS:
                _bound_numbers(field_schema, {"minimum": 0}, ("integer",))
            if field in BOUNDS:
                _bound_numbers(field_schema, BOUNDS[field], ("integer", "number"))
    _close_objects(schema)


def _drop_null(field_schema: dict[str, Any]) -> dict[str, Any]:
    branches = field_schema.get("anyOf", [])
    if {"type": "null"} not in branches:
        return field_schema
    rest = [branch for branch in branches if branch != {"type": "null"}]
    notes = {key: value for key, value in field_schema.items() if key not in ("anyOf", "default")}
    if len(rest) == 1:
        return {**notes, **rest[0]}
    return {**notes, "anyOf": rest}


def _bound_numbers(
    schema: dict[str, Any], bounds: dict[str, float], kinds: tuple[str, ...]
) -> None:
    """Add `bounds` to every number of the given kinds in one field (not through $ref)."""
    if schema.get("type") in kinds:
        schema.update(bounds)
    for subschema in _subschemas(schema):
        _bound_numbers(subschema, bounds, kinds)


def _close_objects(schema: dict[str, Any]) -> None:
    if "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for subschema in _subschemas(schema):
        _close_objects(subschema)


def _subschemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas directly inside `schema`: walking by keyword, so that a field named like
    a keyword ("type", "properties") is never taken for one."""
    found = [*schema.get("$defs", {}).values(), *schema.get("properties", {}).values()]
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        found += schema.get(keyword, [])
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            found.append(schema[keyword])
    return found


@functools.cache
def _validator(response_type: Any) -> jsonschema.Draft202012Validator:
    schema = {"$schema": jsonschema.Draft202012Validator.META_SCHEMA["$id"]}
    schema.update(json_schema(response_type))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)
