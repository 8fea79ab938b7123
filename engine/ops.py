"""Operation and configuration types of the engine, and the CBOR encoding of operations.

Owns: what a write operation is (`UpsertPoints`, `DeletePoints`), how it is encoded in a WAL
record body, point ids and their LMDB key form, a collection's configuration, and the shapes
the read side returns (`PointRecord`, `ScoredPoint`).
Not here: framing (wal.py), applying (applier.py), or parsing JSON (server/schemas.py).

Record body (CBOR map, keys are short on purpose: they are repeated in every record):

| key | type                 | meaning                                                   |
|-----|----------------------|-----------------------------------------------------------|
| t   | text                 | "upsert" or "delete"                                      |
| ids | array                | point ids: uint, or 16-byte bstr for a UUID               |
| m   | text                 | update_mode (upsert only)                                 |
| v   | map name -> [rows, m]| rows: bstr of little-endian int32 positions into ids;     |
|     |                      | m: bstr of little-endian float32, len(rows) x dim         |
| p   | array                | payload per id: map or null (upsert only)                 |

Vectors are stored as float32 bytes, never as lists of numbers (DESIGN.md).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

import cbor2
import numpy as np

from engine.errors import CorruptionError

PointId = int | uuid.UUID
UNNAMED_VECTOR = ""  # the name under which a collection's single unnamed vector is kept
U64_MAX = 2**64 - 1


class Distance(str, enum.Enum):
    COSINE = "Cosine"
    EUCLID = "Euclid"
    DOT = "Dot"
    MANHATTAN = "Manhattan"

    @property
    def is_higher_better(self) -> bool:
        return self in (Distance.COSINE, Distance.DOT)


class UpdateMode(str, enum.Enum):
    UPSERT = "upsert"
    INSERT_ONLY = "insert_only"
    UPDATE_ONLY = "update_only"


class UpdateStatus(str, enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    COMPLETED = "completed"
    WAIT_TIMEOUT = "wait_timeout"


@dataclass(frozen=True)
class VectorConfig:
    size: int
    distance: Distance
    hnsw_m: int | None = None  # per-vector override of the collection's hnsw settings
    hnsw_ef_construct: int | None = None


@dataclass(frozen=True)
class HnswSettings:
    m: int = 16
    ef_construct: int = 100
    full_scan_threshold: int = 10_000


@dataclass(frozen=True)
class CollectionConfig:
    """What the engine needs of a collection; `echo` is the server's, kept verbatim.

    `vectors` maps a vector name to its config; a collection created with one unnamed
    vector has the single name UNNAMED_VECTOR and `is_single_unnamed` True.
    """

    vectors: dict[str, VectorConfig]
    hnsw: HnswSettings = field(default_factory=HnswSettings)
    echo: dict[str, Any] = field(default_factory=dict)

    @property
    def is_single_unnamed(self) -> bool:
        return list(self.vectors) == [UNNAMED_VECTOR]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "vectors": {
                name: {
                    "size": v.size,
                    "distance": v.distance.value,
                    "hnsw_m": v.hnsw_m,
                    "hnsw_ef_construct": v.hnsw_ef_construct,
                }
                for name, v in self.vectors.items()
            },
            "hnsw": {
                "m": self.hnsw.m,
                "ef_construct": self.hnsw.ef_construct,
                "full_scan_threshold": self.hnsw.full_scan_threshold,
            },
            "echo": self.echo,
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> CollectionConfig:
        vectors = {
            name: VectorConfig(
                size=v["size"],
                distance=Distance(v["distance"]),
                hnsw_m=v.get("hnsw_m"),
                hnsw_ef_construct=v.get("hnsw_ef_construct"),
            )
            for name, v in data["vectors"].items()
        }
        return cls(vectors=vectors, hnsw=HnswSettings(**data["hnsw"]), echo=data.get("echo", {}))


@dataclass(frozen=True)
class NamedVectors:
    """The vectors of one name in an upsert: row i of `matrix` belongs to ids[rows[i]]."""

    rows: np.ndarray  # int32, strictly increasing positions into UpsertPoints.ids
    matrix: np.ndarray  # float32, shape (len(rows), dim), C-contiguous


@dataclass(frozen=True)
class UpsertPoints:
    ids: list[PointId]
    vectors: dict[str, NamedVectors]
    payloads: list[dict[str, Any] | None]
    update_mode: UpdateMode = UpdateMode.UPSERT


@dataclass(frozen=True)
class DeletePoints:
    ids: list[PointId]


Operation = UpsertPoints | DeletePoints


@dataclass(frozen=True)
class PointRecord:
    id: PointId
    payload: dict[str, Any] | None  # None when payload was not asked for
    vectors: dict[str, np.ndarray] | None  # None when vectors were not asked for


@dataclass(frozen=True)
class ScoredPoint:
    id: PointId
    version: int  # op_id of the operation that last wrote the point
    score: float
    payload: dict[str, Any] | None
    vectors: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class PayloadSelector:
    """Which payload to return: all, none, only `include` keys, or all but `exclude` keys."""

    is_enabled: bool = True
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None


@dataclass(frozen=True)
class VectorSelector:
    """Which vectors to return: none, all (names None), or the named ones."""

    is_enabled: bool = False
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SearchRequest:
    vector_name: str
    vector: np.ndarray  # float32, shape (dim,)
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None
    hnsw_ef: int | None = None
    is_exact: bool = False
    with_payload: PayloadSelector = field(default_factory=lambda: PayloadSelector(True))
    with_vector: VectorSelector = field(default_factory=VectorSelector)


@dataclass(frozen=True)
class UpdateResult:
    op_id: int
    status: UpdateStatus


def point_key(point_id: PointId) -> bytes:
    """LMDB key of a point id: 0x00 + u64 big-endian, or 0x01 + 16 UUID bytes."""
    if isinstance(point_id, uuid.UUID):
        return b"\x01" + point_id.bytes
    assert 0 <= point_id <= U64_MAX, point_id
    return b"\x00" + point_id.to_bytes(8, "big")


def point_id_from_key(key: bytes) -> PointId:
    if key[0] == 1:
        return uuid.UUID(bytes=bytes(key[1:17]))
    assert key[0] == 0, key
    return int.from_bytes(key[1:9], "big")


def encode_op(op: Operation) -> bytes:
    """CBOR body of a WAL record for `op` (see the module docstring for the layout)."""
    ids = [_encode_id(point_id) for point_id in op.ids]
    if isinstance(op, DeletePoints):
        return cbor2.dumps({"t": "delete", "ids": ids})
    assert len(op.payloads) == len(op.ids), (len(op.payloads), len(op.ids))
    vectors = {}
    for name, nv in op.vectors.items():
        assert nv.matrix.dtype == np.float32, nv.matrix.dtype
        assert nv.matrix.shape[0] == nv.rows.shape[0], (nv.matrix.shape, nv.rows.shape)
        rows = nv.rows.astype("<i4", copy=False).tobytes()
        vectors[name] = [rows, nv.matrix.shape[1], nv.matrix.astype("<f4", copy=False).tobytes()]
    body = {"t": "upsert", "ids": ids, "m": op.update_mode.value, "v": vectors, "p": op.payloads}
    return cbor2.dumps(body)


def decode_op(body: bytes) -> Operation:
    """Inverse of encode_op. Raises CorruptionError on a body no version of Keel wrote."""
    try:
        data = cbor2.loads(body)
        ids = [_decode_id(raw) for raw in data["ids"]]
        if data["t"] == "delete":
            return DeletePoints(ids=ids)
        if data["t"] != "upsert":
            raise ValueError(f"unknown op type {data['t']!r}")
        vectors = {}
        for name, (rows, dim, matrix) in data["v"].items():
            rows_array = np.frombuffer(rows, dtype="<i4").astype(np.int32)
            matrix_array = np.frombuffer(matrix, dtype="<f4").astype(np.float32)
            vectors[name] = NamedVectors(rows_array, matrix_array.reshape(len(rows_array), dim))
        return UpsertPoints(
            ids=ids, vectors=vectors, payloads=data["p"], update_mode=UpdateMode(data["m"])
        )
    except (KeyError, ValueError, TypeError, cbor2.CBORDecodeError) as error:
        raise CorruptionError(f"WAL record body does not decode: {error}") from error


def _encode_id(point_id: PointId) -> int | bytes:
    return point_id.bytes if isinstance(point_id, uuid.UUID) else point_id


def _decode_id(raw: int | bytes) -> PointId:
    if isinstance(raw, bytes):
        return uuid.UUID(bytes=raw)
    if not isinstance(raw, int) or not 0 <= raw <= U64_MAX:
        raise ValueError(f"bad point id in record: {raw!r}")
    return raw
