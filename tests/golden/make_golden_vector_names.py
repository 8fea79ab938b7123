"""Write the golden storage directory of vector-name ops (tests/golden/storage_vector_names/),
which tests/unit/test_golden_vector_names.py reads.

Run by hand, never by the tests (make_golden.py's rules hold: never regenerate in place):

    . /work/venv/bin/activate
    PYTHONHASHSEED=0 python tests/golden/make_golden_vector_names.py /tmp/golden-vn

then copy `/tmp/golden-vn/storage` to tests/golden/storage_vector_names on purpose.

Written next to make_golden.py's set, not into it, when `create_vector_name` and
`delete_vector_name` joined the WAL: the older files stay as users have them. One collection,
`golden_vector_names`, made with dense `a` and `b`; its WAL adds a dense `c` (with an echo),
a sparse `s`, deletes `b` and `a`, with point writes in between; `config.json` is the one
creation wrote (so opening it also brings config.json in step with LMDB), and `lmdb/` a
compact copy taken after LMDB_AFTER_GROUPS groups (so it holds a `vector_schema` record and
the replay applies the rest).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from engine.catalog import Catalog
from engine.limits import EngineSettings
from engine.ops import (
    CreateVectorName,
    DeleteVectorName,
    Distance,
    NamedVectors,
    Operation,
    SparseColumn,
    SparseModifier,
    SparseVector,
    SparseVectorConfig,
    UpsertPoints,
    VectorConfig,
)
from server.wire.collection_config import parse_create_collection

NAME = "golden_vector_names"
CONFIG = {
    "vectors": {"a": {"size": 2, "distance": "Dot"}, "b": {"size": 2, "distance": "Euclid"}},
    "hnsw_config": {"m": 4, "ef_construct": 8},
}
LMDB_AFTER_GROUPS = 4


def dense(rows: list[int], matrix: list[list[float]]) -> NamedVectors:
    return NamedVectors(np.asarray(rows, np.int32), np.asarray(matrix, np.float32))


OPS: list[list[Operation]] = [
    [
        UpsertPoints(
            [1, 2, 3],
            {"a": dense([0, 1, 2], [[1, 0], [0, 1], [1, 1]]), "b": dense([0, 2], [[2, 2], [3, 3]])},
            [{"k": 1}, None, {"k": 3}],
        )
    ],
    [
        CreateVectorName(
            "c",
            dense=VectorConfig(3, Distance.COSINE),
            echo={"datatype": "float16"},
        )
    ],
    [UpsertPoints([4], {"c": dense([0], [[0.0, 0.6, 0.8]])}, [None])],
    [
        CreateVectorName(
            "s", sparse=SparseVectorConfig(SparseModifier.IDF), echo={"modifier": "idf"}
        )
    ],
    [DeleteVectorName("b")],
    [
        UpsertPoints(
            [5],
            {"a": dense([0], [[5, 5]])},
            [None],
            sparse={
                "s": SparseColumn.from_vectors(
                    [0],
                    [SparseVector(np.array([2, 9], np.uint32), np.array([0.5, 1.5], np.float32))],
                )
            },
        )
    ],
    [DeleteVectorName("a")],
]


async def write_golden(out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = EngineSettings(checkpoint_every_ops=100_000_000, checkpoint_every_s=86_400)
        catalog = Catalog(Path(scratch), settings)
        await catalog.open()
        try:
            await catalog.create(NAME, parse_create_collection(CONFIG))
            collection = catalog.get(NAME)
            target = out / "storage" / "collections" / NAME
            (target / "lmdb").mkdir(parents=True)
            for file_name in ("config.json", "incarnation"):
                shutil.copyfile(collection.directory / file_name, target / file_name)
            for index, group in enumerate(OPS):
                if index == LMDB_AFTER_GROUPS:
                    await collection.copy_lmdb(target / "lmdb")
                await collection.update_many(group, wait=True, timeout_s=None)
            shutil.copytree(collection.directory / "wal", target / "wal")
        finally:
            await catalog.close()


if __name__ == "__main__":
    if len(sys.argv) != 2 or Path(sys.argv[1]).exists():
        sys.exit("usage: make_golden_vector_names.py OUT_DIR (a directory that does not exist yet)")
    asyncio.run(write_golden(Path(sys.argv[1])))
