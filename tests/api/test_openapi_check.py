"""The spec checker itself: OpenAPI 3.0 `nullable` translation and strictness."""

from __future__ import annotations

import pytest

from tests.api.openapi_check import check_response, to_json_schema, validate


def test_nullable_forms_translate_to_json_schema():
    assert to_json_schema({"type": "integer", "nullable": True}, strict=False) == {
        "type": ["integer", "null"]
    }
    assert to_json_schema({"anyOf": [{"$ref": "#/x"}, {"nullable": True}]}, strict=False) == {
        "anyOf": [{"$ref": "#/x"}, {"type": "null"}]
    }
    assert to_json_schema({"type": "string", "enum": ["a"], "nullable": True}, strict=False) == {
        "type": ["string", "null"],
        "enum": ["a", None],
    }


def test_the_or_null_branch_does_not_accept_anything():
    schema = {"$ref": "#/components/schemas/UpdateResult"}
    validate({"operation_id": None, "status": "completed"}, schema)
    with pytest.raises(AssertionError):
        validate({"operation_id": "x", "status": "completed"}, schema)


def test_strict_mode_rejects_undeclared_fields():
    body = {"result": {"status": "completed", "operation_idd": 1}, "status": "ok", "time": 0.1}
    with pytest.raises(AssertionError, match="operation_idd"):
        check_response("/collections/{collection_name}/points", "put", 200, body)


def test_error_bodies_must_not_carry_result():
    with pytest.raises(AssertionError):
        check_response(
            "/collections", "get", 404, {"result": None, "status": {"error": "x"}, "time": 0.0}
        )
