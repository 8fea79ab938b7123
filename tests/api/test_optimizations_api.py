"""GET /collections/{c}/optimizations: one idle segment, or one queued graph catch-up.

Every answer is checked against Qdrant's spec (OptimizationsResponse).
"""

from __future__ import annotations

import uuid

import pytest

from engine.collection import Collection
from tests.api.conftest import Api

OPTIMIZATIONS = "/collections/{collection_name}/optimizations"


async def test_a_caught_up_collection_is_one_idle_segment(api: Api) -> None:
    await api.create_collection()
    await api.upsert({"points": [{"id": i, "vector": [1.0, 0.0, 0.0, 0.0]} for i in range(5)]})
    plain = (await api.call("GET", OPTIMIZATIONS)).result
    assert plain == {
        "summary": {
            "queued_optimizations": 0,
            "queued_segments": 0,
            "queued_points": 0,
            "idle_segments": 1,
        },
        "running": [],
    }
    query = {"with": "queued,completed,idle_segments"}
    full = (await api.call("GET", OPTIMIZATIONS, query=query)).result
    assert full["queued"] == full["completed"] == []
    [segment] = full["idle_segments"]
    assert segment["points_count"] == 5
    assert uuid.UUID(segment["uuid"])
    again = (await api.call("GET", OPTIMIZATIONS, query=query)).result
    assert again["idle_segments"] == full["idle_segments"]


async def test_a_collection_whose_graphs_catch_up_has_one_queued_optimization(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.create_collection()
    await api.upsert({"points": [{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]}]})
    monkeypatch.setattr(Collection, "is_indexing", property(lambda self: True))
    result = (await api.call("GET", OPTIMIZATIONS, query={"with": "queued,idle_segments"})).result
    assert result["summary"] == {
        "queued_optimizations": 1,
        "queued_segments": 1,
        "queued_points": 1,
        "idle_segments": 0,
    }
    [pending] = result["queued"]
    assert pending["optimizer"] == "index_catch_up"
    assert [segment["points_count"] for segment in pending["segments"]] == [1]
    assert result["idle_segments"] == []


async def test_an_unknown_with_field_is_refused_before_the_collection_is_looked_up(
    api: Api,
) -> None:
    response = await api.call("GET", OPTIMIZATIONS, name="missing", query={"with": "queued,x"})
    assert (response.status, response.error) == (
        400,
        "Wrong input: Unknown field in 'with' parameter: x",
    )
    assert (await api.call("GET", OPTIMIZATIONS, name="missing")).status == 404
