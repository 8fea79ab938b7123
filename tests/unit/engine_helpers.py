"""Small builders shared by the engine's unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.catalog import Catalog
from engine.limits import EngineSettings
from engine.ops import (
    CollectionConfig,
    Distance,
    NamedVectors,
    PointId,
    UpdateMode,
    UpsertPoints,
    VectorConfig,
)


def single_vector_config(dim: int = 4, distance: Distance = Distance.DOT) -> CollectionConfig:
    return CollectionConfig(vectors={"": VectorConfig(dim, distance)})


def upsert(
    ids: list[PointId],
    matrix: np.ndarray | list,
    payloads: list | None = None,
    mode: UpdateMode = UpdateMode.UPSERT,
    name: str = "",
) -> UpsertPoints:
    matrix = np.asarray(matrix, dtype=np.float32).reshape(len(ids), -1)
    rows = np.arange(len(ids), dtype=np.int32)
    return UpsertPoints(
        list(ids),
        {name: NamedVectors(rows, matrix)},
        payloads if payloads is not None else [None] * len(ids),
        mode,
    )


async def open_catalog(path: Path, **settings: object) -> Catalog:
    catalog = Catalog(path, EngineSettings(**settings))
    await catalog.open()
    return catalog
