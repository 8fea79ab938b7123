"""Qdrant's `slice` condition hash: SipHash-2-4 with a zero key over a point id.

Owns: `point_id_slice_hash` (which slice a point falls in: hash % total).
Not here: the slice condition itself (engine/filters/conditions.py).
"""

from __future__ import annotations

import uuid

from engine.ops import PointId

MASK64 = 2**64 - 1


def point_id_slice_hash(point_id: PointId) -> int:
    """Qdrant's `slice_point_id_hash`: SipHash-2-4, zero key, over the id's canonical bytes."""
    if isinstance(point_id, uuid.UUID):
        return _siphash24(point_id.bytes)
    return _siphash24(point_id.to_bytes(8, "little"))


def _siphash24(data: bytes) -> int:
    """SipHash-2-4 with a zero key (the `siphasher` crate's SipHasher24::new())."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    whole = len(data) - len(data) % 8
    words = [int.from_bytes(data[i : i + 8], "little") for i in range(0, whole, 8)]
    words.append(((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little"))
    for word in words:
        v3 ^= word
        v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 2)
        v0 ^= word
    v2 ^= 0xFF
    v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 4)
    return v0 ^ v1 ^ v2 ^ v3


def _sip_rounds(v0: int, v1: int, v2: int, v3: int, count: int) -> tuple[int, int, int, int]:
    for _ in range(count):
        v0 = (v0 + v1) & MASK64
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & MASK64
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & MASK64
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & MASK64
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & MASK64
