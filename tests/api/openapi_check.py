"""Validate Keel's response bodies against Qdrant's OpenAPI spec (OpenAPI 3.0.1).

The spec is OpenAPI 3.0, not JSON Schema: it marks nulls with `nullable: true`, and writes
"or null" as a branch `{"nullable": true}` with no type. `to_json_schema` translates both
(the bare branch becomes `{"type": "null"}`; a bare `{}` would accept anything and make the
check vacuous). Strict mode also closes every object that declares `properties` without
`additionalProperties`: Qdrant's spec is generated from Rust structs that serialize only
their declared fields, so an extra key in our output is a bug (a misspelt field name).

Usage: `check_response("/collections/{collection_name}", "get", 200, body)`; 4xx/5xx bodies
are checked against `ErrorResponse` plus Qdrant's error shape (no `result` key).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema

SPEC_ENV_VAR = "KEEL_QDRANT_OPENAPI"
SPEC_CANDIDATES = (
    Path(__file__).resolve().parent / "qdrant-openapi.json",
    # shared/ sits beside the checkout (CI clones main with shared/ next to it).
    Path(__file__).resolve().parents[3] / "shared" / "qdrant-openapi.json",
)
SCHEMA_PREFIX = "#/components/schemas/"

# Qdrant 1.19 still serves POST /points/search but dropped it from the spec; its 200 body is
# the same envelope around a list of ScoredPoint (lib/api/src/rest/schema.rs).
EXTRA_RESPONSES = {
    ("/collections/{collection_name}/points/search", "post"): {
        "type": "array",
        "items": {"$ref": SCHEMA_PREFIX + "ScoredPoint"},
    },
    # The same for its batch and groups forms (src/actix/api/search_api.rs).
    ("/collections/{collection_name}/points/search/batch", "post"): {
        "type": "array",
        "items": {"type": "array", "items": {"$ref": SCHEMA_PREFIX + "ScoredPoint"}},
    },
    ("/collections/{collection_name}/points/search/groups", "post"): {
        "$ref": SCHEMA_PREFIX + "GroupsResult"
    },
}


def spec_path() -> Path | None:
    """Where Qdrant's openapi.json is: $KEEL_QDRANT_OPENAPI, next to this file, or shared."""
    if os.environ.get(SPEC_ENV_VAR):
        return Path(os.environ[SPEC_ENV_VAR])
    return next((path for path in SPEC_CANDIDATES if path.exists()), None)


@functools.lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    path = spec_path()
    if path is None:
        raise FileNotFoundError(f"Qdrant's openapi.json not found; set {SPEC_ENV_VAR}")
    return json.loads(path.read_text())


def to_json_schema(schema: Any, *, strict: bool) -> Any:
    """Translate one OpenAPI 3.0 schema (recursively) into JSON Schema 2020-12."""
    if isinstance(schema, list):
        return [to_json_schema(item, strict=strict) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: to_json_schema(value, strict=strict) for key, value in schema.items()}
    if result.pop("nullable", False):
        result = _make_nullable(result)
    if (
        strict
        and result.get("type") in ("object", ["object", "null"])
        and "properties" in result
        and "additionalProperties" not in result
    ):
        result["additionalProperties"] = False
    return result


def _make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = [*types, "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        return schema
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            schema[combinator] = [*schema[combinator], {"type": "null"}]
            return schema
    if "$ref" in schema:
        return {"anyOf": [{"$ref": schema.pop("$ref")}, {"type": "null"}], **schema}
    # `{"nullable": true}` alone is OpenAPI 3.0's way of writing "or null".
    return {**schema, "type": "null"}


@functools.lru_cache(maxsize=2)
def _components(strict: bool) -> dict[str, Any]:
    schemas = load_spec()["components"]["schemas"]
    return {"schemas": to_json_schema(copy.deepcopy(schemas), strict=strict)}


def validate(instance: Any, schema: dict[str, Any], *, strict: bool = True) -> None:
    """Raise AssertionError naming every violation of `schema` (OpenAPI) by `instance`."""
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": _components(strict),
        "allOf": [to_json_schema(copy.deepcopy(schema), strict=strict)],
    }
    validator = jsonschema.Draft202012Validator(root)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{list(e.absolute_path)}: {e.message}" for e in errors[:10]]
        raise AssertionError("response does not match Qdrant's spec:\n" + "\n".join(lines))


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of a response, or None when the spec declares a non-JSON body."""
    if status >= 400:
        return {"$ref": SCHEMA_PREFIX + "ErrorResponse"}
    if (path, method) in EXTRA_RESPONSES:
        return _envelope(EXTRA_RESPONSES[(path, method)])
    operation = load_spec()["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"spec has no {status} response for {method} {path}"
    content = response.get("content", {})
    if "application/json" not in content:
        return None
    return content["application/json"]["schema"]


def check_response(path: str, method: str, status: int, body: Any) -> None:
    """Assert that `body` (parsed JSON) is what Qdrant's spec allows for this response."""
    schema = response_schema(path, method, status)
    assert schema is not None, f"{method} {path} {status} is not a JSON response in the spec"
    validate(body, schema)
    if status >= 400:
        check_error_shape(body)
    elif "result" in schema.get("properties", {}):
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


def _envelope(result_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "usage": {"anyOf": [{"$ref": SCHEMA_PREFIX + "Usage"}, {"nullable": True}]},
            "time": {"type": "number"},
            "status": {"type": "string"},
            "result": result_schema,
        },
    }
