"""Today's code reads the golden WAL and LMDB of vector-name ops (tests/golden/
storage_vector_names/, written once by tests/golden/make_golden_vector_names.py).

Method as tests/unit/test_golden_formats.py: the segment's bytes are pinned by sha256, each
record's CBOR by its literal map (so a renamed key fails here), and the storage is opened by
Catalog over the golden LMDB copy (which holds a `vector_schema` record; the replay applies
the rest) and over no LMDB at all (the whole WAL replayed); both must give the same names
and points, and bring the stale config.json in step.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cbor2
import numpy as np
import pytest

from engine.catalog import Catalog
from engine.filters.conditions import FILTER_TYPES
from engine.limits import EngineSettings
from engine.ops import (
    CreateVectorName,
    DeleteVectorName,
    Distance,
    PayloadSelector,
    SparseModifier,
    SparseVectorConfig,
    VectorConfig,
    VectorSelector,
)
from engine.wal import format as wal_format
from engine.wal.op_codec import decode_op

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "storage_vector_names"
NAME = "golden_vector_names"
SEGMENT = "00000000000000000000.wal"
SEGMENT_SHA256 = "c930545a60118e35e35855777cb3f42ac7a0ba6fc3c207280166933482804ae1"
# op id -> the op it decodes to (the point writes are pinned by test_golden_formats.py).
VECTOR_NAME_OPS = {
    1: CreateVectorName(
        "c",
        dense=VectorConfig(3, Distance.COSINE, datatype="float16"),  # from the echo
        echo={"datatype": "float16"},
    ),
    3: CreateVectorName(
        "s", sparse=SparseVectorConfig(SparseModifier.IDF), echo={"modifier": "idf"}
    ),
    4: DeleteVectorName("b"),
    6: DeleteVectorName("a"),
}
BODIES = {
    1: {
        "t": "create_vector_name",
        "vn": "c",
        "d": {"size": 3, "distance": "Cosine"},
        "sm": None,
        "e": {"datatype": "float16"},
    },
    3: {"t": "create_vector_name", "vn": "s", "d": None, "sm": "idf", "e": {"modifier": "idf"}},
    4: {"t": "delete_vector_name", "vn": "b"},
    6: {"t": "delete_vector_name", "vn": "a"},
}
# id -> (payload, vectors) after every op: `a` and `b` gone, `c` and `s` kept.
POINTS = {
    1: ({"k": 1}, {}),
    2: ({}, {}),
    3: ({"k": 3}, {}),
    4: ({}, {"c": [0.0, 0.6, 0.8]}),
    5: ({}, {"s": ([2, 9], [0.5, 1.5])}),
}


def _records() -> list[tuple[int, bytes]]:
    data = (GOLDEN / "collections" / NAME / "wal" / SEGMENT).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SEGMENT_SHA256
    scan = wal_format.scan_batches(data, 0)
    assert scan.valid_bytes == len(data)
    return scan.records


def test_the_golden_vector_name_records_decode_to_the_pinned_ops() -> None:
    records = _records()
    assert [op_id for op_id, _ in records] == list(range(7))
    for op_id, body in records:
        if op_id in VECTOR_NAME_OPS:
            assert cbor2.loads(body) == BODIES[op_id], op_id
            assert decode_op(body, FILTER_TYPES) == VECTOR_NAME_OPS[op_id], op_id


@pytest.mark.parametrize("is_lmdb_kept", [True, False])
async def test_the_golden_storage_opens_with_the_names_the_ops_left(
    tmp_path: Path, is_lmdb_kept: bool
) -> None:
    storage = tmp_path / "storage"
    shutil.copytree(GOLDEN, storage)
    directory = storage / "collections" / NAME
    (directory / "index").mkdir()  # git keeps no empty directory
    if not is_lmdb_kept:
        (directory / "lmdb" / "data.mdb").unlink()
    catalog = Catalog(storage, EngineSettings())
    await catalog.open()
    try:
        collection = catalog.get(NAME)
        assert collection.ops_replayed_count == (3 if is_lmdb_kept else 7)
        assert collection.config.vectors == {
            "c": VectorConfig(3, Distance.COSINE, datatype="float16")
        }
        assert collection.config.sparse_vectors == {"s": SparseVectorConfig(SparseModifier.IDF)}
        assert collection.config.echo["vectors"] == {"c": {"datatype": "float16"}}
        records, _ = await collection.scroll(
            None, 100, None, PayloadSelector(True), VectorSelector(True)
        )
        assert {record.id: (record.payload, _plain(record.vectors)) for record in records} == (
            POINTS
        )
        written = json.loads((directory / "config.json").read_bytes())
        assert sorted(written["vectors"]) == ["c"]
        assert sorted(written["sparse_vectors"]) == ["s"]
    finally:
        await catalog.close()


def _plain(vectors: dict) -> dict:
    plain = {}
    for name, vector in vectors.items():
        if isinstance(vector, np.ndarray):
            plain[name] = [round(float(x), 6) for x in vector]
        else:
            plain[name] = (vector.indices.tolist(), vector.values.tolist())
    return plain
