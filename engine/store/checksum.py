"""Checksums on the values Keel keeps in LMDB, so a flipped bit is found, not served.

Owns: the sealed value format and the one error a damaged value raises.
Not here: which databases hold sealed values (engine/store/store.py's table) or the offline scan that
checks them all (engine/check/check.py).

LMDB checksums nothing: a bit flipped on disk inside a payload or a vector would be read back
as a different payload or vector, and no crash test would notice. So every value Keel cannot
recompute from others carries a CRC of itself:

| bytes      | what                                        |
|------------|---------------------------------------------|
| 0 .. n     | the value                                   |
| n .. n + 4 | CRC-32 (zlib) of the value, u32 little-endian |

Reads verify it (zlib.crc32 runs at gigabytes per second; a vector is 512 bytes), so a
damaged value raises CorruptionError naming the database and key instead of answering with
wrong data. Derived databases (the payload index, the sparse inverted index) are not sealed:
`keel check` recomputes them from the sealed values and compares.
"""

from __future__ import annotations

import zlib

from engine.errors import CorruptionError

CRC_BYTES = 4


def seal(value: bytes) -> bytes:
    """`value` followed by its CRC-32."""
    return value + zlib.crc32(value).to_bytes(CRC_BYTES, "little")


def unseal(raw: bytes | memoryview, db_name: str, key: bytes) -> bytes:
    """The value inside `raw`, checked; raises CorruptionError if it does not match its CRC."""
    raw = bytes(raw)
    value = raw[:-CRC_BYTES]
    if len(raw) < CRC_BYTES or zlib.crc32(value) != int.from_bytes(raw[-CRC_BYTES:], "little"):
        raise CorruptionError(
            f"LMDB value fails its checksum: database={db_name} key={bytes(key).hex()}; "
            "run `keel check` on the stopped storage"
        )
    return value


def is_intact(raw: bytes | memoryview) -> bool:
    """Whether `raw` matches its CRC (the offline check's question, without raising)."""
    raw = bytes(raw)
    if len(raw) < CRC_BYTES:
        return False
    return zlib.crc32(raw[:-CRC_BYTES]) == int.from_bytes(raw[-CRC_BYTES:], "little")
