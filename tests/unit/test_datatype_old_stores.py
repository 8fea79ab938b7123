"""A uint8 Cosine vector written before Keel kept it as Qdrant does (issue 17).

Keel used to store such a vector unit length and unrounded; it now stores it as given, cut to
bytes, and scores it by true cosine (engine/vectors/scores.py). A store written the old way
must read back the same and score by the same cosine: the cosine of what it holds against the
query cut to bytes (a cosine does not see the scale of a row). The old writer is brought back
by putting the old `stored_form` in place; the WAL record and the LMDB value it wrote are the
same numbers, and the applier and the read path take them as they come.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import validation
from engine.ops import (
    Distance,
    PayloadSelector,
    SearchRequest,
    VectorConfig,
    VectorSelector,
)
from engine.vectors.scores import normalize_rows
from server.wire.collection_config import parse_create_collection
from tests.unit.engine_helpers import open_catalog, upsert

UINT8_COSINE = VectorConfig(4, Distance.COSINE, datatype="uint8")
OLD = np.array([[3.7, 10.2, 0.5, 255.9], [200.0, 1.0, 50.5, 7.25]], np.float32)
NEW = [120.9, 3.2, 80.0, 0.0]
QUERY = np.array([1.9, 2.5, 300.0, -4.0], np.float32)


def old_stored_form(matrix: np.ndarray, vector_config: VectorConfig) -> np.ndarray:
    """What Keel stored for a uint8 Cosine vector before issue 17."""
    assert vector_config == UINT8_COSINE, vector_config
    return normalize_rows(matrix)


def cosine(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    rows, query = rows.astype(np.float64), query.astype(np.float64)
    return rows @ query / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query))


@pytest.mark.parametrize("is_exact", [False, True], ids=["graph", "exact"])
async def test_an_old_uint8_cosine_store_reads_back_and_scores_by_true_cosine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_exact: bool
) -> None:
    catalog = await open_catalog(tmp_path)
    body = {"vectors": {"size": 4, "distance": "Cosine", "datatype": "uint8"}}
    await catalog.create("c", parse_create_collection(body))
    assert catalog.get("c").config.vectors[""] == UINT8_COSINE
    with monkeypatch.context() as patch:
        patch.setattr(validation, "stored_form", old_stored_form)
        await catalog.get("c").update(upsert([1, 2], OLD), wait=True, timeout_s=None)
    await catalog.close()

    catalog = await open_catalog(tmp_path)  # the graph from its checkpoint, LMDB as it was
    try:
        collection = catalog.get("c")
        await collection.update(upsert([3], [NEW]), wait=True, timeout_s=None)
        records = await collection.retrieve([1, 2, 3], PayloadSelector(False), VectorSelector(True))
        vectors = {record.id: record.vectors[""].tolist() for record in records}
        assert vectors == {
            1: normalize_rows(OLD)[0].tolist(),
            2: normalize_rows(OLD)[1].tolist(),
            3: [120.0, 3.0, 80.0, 0.0],
        }
        hits = await collection.search(SearchRequest("", QUERY, limit=3, is_exact=is_exact))
        held = np.array([vectors[hit.id] for hit in hits], np.float32)
        query_as_bytes = np.array([1.0, 2.0, 255.0, 0.0], np.float32)
        expected = cosine(held, query_as_bytes)
        assert [hit.score for hit in hits] == pytest.approx(expected.tolist(), rel=1e-6)
        assert [hit.id for hit in hits] == [3, 2, 1]
    finally:
        await catalog.close()
