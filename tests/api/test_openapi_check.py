"""The response checker itself: the route map it derives from qdrant-client, and each place
where it is stricter than qdrant-client's models (open objects, null, integer bounds)."""

from __future__ import annotations

import pytest
from qdrant_client.http import models as m

from tests.api import openapi_check
from tests.api.openapi_check import check_response, response_types, validate

POINTS = "/collections/{collection_name}/points"


def ok(result: object) -> dict:
    return {"result": result, "status": "ok", "time": 0.1}


def test_routes_and_their_response_types_come_from_qdrant_client():
    routes = response_types()
    assert routes[(POINTS, "put")].model_fields["result"].annotation == m.UpdateResult | None
    assert routes[("/", "get")] is m.VersionInfo
    assert routes[("/healthz", "get")] is str
    assert routes[("/collections/{collection_name}/snapshots/{snapshot_name}", "get")] is None
    assert len(routes) > 60, sorted(routes)


def test_a_download_or_an_unknown_status_is_refused():
    with pytest.raises(AssertionError, match="not a JSON response"):
        check_response("/snapshots/{snapshot_name}", "get", 200, {})
    with pytest.raises(AssertionError, match="no model for a 202"):
        check_response(POINTS, "put", 202, ok({"operation_id": 1, "status": "completed"}))


def test_strict_mode_rejects_undeclared_fields():
    body = ok({"status": "completed", "operation_idd": 1})
    with pytest.raises(AssertionError, match="operation_idd"):
        check_response(POINTS, "put", 200, body)
    check_response(POINTS, "put", 200, ok({"status": "completed", "operation_id": 1}))


def test_error_bodies_must_not_carry_result():
    check_response("/collections", "get", 404, {"status": {"error": "x"}, "time": 0.0})
    with pytest.raises(AssertionError):
        check_response(
            "/collections", "get", 404, {"result": None, "status": {"error": "x"}, "time": 0.0}
        )


def test_the_envelope_result_is_never_null():
    with pytest.raises(AssertionError, match="result"):
        check_response(POINTS, "put", 200, ok(None))


def test_null_only_in_the_fields_keel_sends_as_null():
    check_response(POINTS + "/scroll", "post", 200, ok({"points": [], "next_page_offset": None}))
    with pytest.raises(AssertionError, match="NULLABLE_FIELDS"):
        check_response(POINTS, "put", 200, ok({"operation_id": None, "status": "completed"}))
    with pytest.raises(AssertionError):
        check_response(POINTS, "put", 200, ok({"operation_id": "x", "status": "completed"}))


def test_integers_are_unsigned_except_in_signed_fields():
    with pytest.raises(AssertionError, match="minimum"):
        check_response(POINTS, "put", 200, ok({"operation_id": -1, "status": "completed"}))
    with pytest.raises(AssertionError, match="minimum"):
        check_response(POINTS + "/count", "post", 200, ok({"count": -1}))
    hit = {"id": 1, "version": 0, "score": 0.5, "order_value": -3}
    check_response(POINTS + "/query", "post", 200, ok({"points": [hit]}))
    facet = {"hits": [{"value": -7, "count": 2}]}
    check_response("/collections/{collection_name}/facet", "post", 200, ok(facet))


def test_config_fields_keep_qdrants_ranges():
    hnsw = {"m": 16, "ef_construct": 4, "full_scan_threshold": 10000}
    validate(hnsw, m.HnswConfig)
    with pytest.raises(AssertionError, match="ef_construct"):
        validate({**hnsw, "ef_construct": 3}, m.HnswConfig)


def test_the_legacy_search_routes_answer_scored_points():
    hit = {"id": 1, "version": 0, "score": 0.5}
    check_response(POINTS + "/search", "post", 200, ok([hit]))
    check_response(POINTS + "/search/batch", "post", 200, ok([[hit], []]))
    with pytest.raises(AssertionError, match="scor"):
        check_response(POINTS + "/search", "post", 200, ok([{**hit, "scor": 1}]))


@pytest.mark.parametrize(
    "field",
    sorted(
        openapi_check.NULLABLE_FIELDS | openapi_check.SIGNED_FIELDS | set(openapi_check.BOUNDS)
    ),
    ids=".".join,
)
def test_every_listed_field_exists_in_qdrant_clients_models(field):
    """A rule on a field qdrant-client renamed would silently stop applying."""
    model_name, field_name = field
    assert field_name in getattr(m, model_name).model_fields
