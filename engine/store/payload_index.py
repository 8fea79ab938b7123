"""Payload indexes: which values of a payload field an index holds, and their LMDB encoding.

Owns: the index types (Qdrant's `PayloadSchemaType`), what each extracts from a payload, the
byte encoding of values (sorting as the values do), the two LMDB databases below, and
resolving a planner's `Lookup` tree to a set of point keys inside one read transaction.
Not here: when entries change (mutations.BatchWriter keeps them in the payload's own
transaction), choosing lookups for a filter (engine/store/planner.py), evaluating a filter (engine/filters/conditions.py).

| database | key                                     | value                                |
|----------|-----------------------------------------|--------------------------------------|
| schema   | field name, UTF-8                       | CBOR [schema type, params or null,   |
|          |                                         |       points count]                  |
| pindex   | field_key(name) + encoded value         | ops.point_key (dupsort: one per      |
|          |                                         | point holding that value)            |

`field_key(name)` is u16 big-endian length + UTF-8 name, so one field's entries are one
contiguous key range. Encoded values (all sort as the values they encode):

| type                    | values indexed                       | encoding                     |
|-------------------------|--------------------------------------|------------------------------|
| keyword, uuid, text     | strings                              | b"s" + UTF-8 (b"h" + SHA-256 |
|                         |                                      | when longer than 256 bytes)  |
| integer, float          | numbers (not bools), as f64          | 8 bytes: sortable f64        |
| bool                    | booleans                             | 1 byte                       |
| datetime                | strings instants.instant_key parses  | 16 bytes: key + 2**127, BE   |
| geo                     | {"lon": n, "lat": n} objects         | sortable f64 lat + f64 lon   |

An index holds a superset of what a condition on the field can match: every value the
filter language would look at (path values, arrays flattened one level, as engine/filters/conditions.py does)
and integers as f64, the way filters compare ranges. The planner relies on that: index
lookups only narrow the candidates, and the whole filter is still evaluated on each, so a
filtered read answers exactly what a scan answers. Text indexes store whole strings: a
`text` match is a substring test in Qdrant 1.19 without tokenizing, which no exact lookup
serves, so the planner never uses them (they exist for `payload_schema`).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import lmdb

from engine.filters import conditions as filters
from engine.filters import instants
from engine.filters.payload_path import PayloadPath

SCHEMA_TYPES = ("keyword", "integer", "float", "geo", "text", "bool", "datetime", "uuid")
KEYWORD_BYTES_MAX = 256  # longer strings are indexed by hash: equality only, keys stay short
FIELD_NAME_BYTES_MAX = 1024
INSTANT_OFFSET = 2**127


@dataclass(frozen=True)
class IndexSpec:
    """One payload index: its field (as the client named it), type, params and size."""

    field_name: str
    schema_type: str
    params: dict[str, Any] | None
    points_count: int = 0


# ---- what a lookup asks for (built by engine/store/planner.py, resolved here) ---------------------------


@dataclass(frozen=True)
class ValueEqual:
    """Points holding exactly this encoded value of the field."""

    field_name: str
    value: bytes


@dataclass(frozen=True)
class ValueRange:
    """Points holding an encoded value in [low, high] (fixed-width encodings only)."""

    field_name: str
    low: bytes
    high: bytes


@dataclass(frozen=True)
class KeySet:
    keys: frozenset[bytes]


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Lookup, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Lookup, ...]


Lookup = ValueEqual | ValueRange | KeySet | AllOf | AnyOf


# ---- values ---------------------------------------------------------------------------------


def field_key(field_name: str) -> bytes:
    raw = field_name.encode()
    assert len(raw) <= FIELD_NAME_BYTES_MAX, len(raw)
    return len(raw).to_bytes(2, "big") + raw


def encode_keyword(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > KEYWORD_BYTES_MAX:
        return b"h" + hashlib.sha256(raw).digest()
    return b"s" + raw


def encode_float(number: float) -> bytes:
    """Eight bytes that sort as the numbers do (-inf < ... < -0.0 == 0.0 < ... < inf)."""
    number = float(number) + 0.0  # -0.0 -> 0.0: filters compare them equal
    (bits,) = struct.unpack(">Q", struct.pack(">d", number))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return bits.to_bytes(8, "big")


def encode_instant(key: int) -> bytes:
    shifted = key + INSTANT_OFFSET
    assert 0 <= shifted < 2**128, key
    return shifted.to_bytes(16, "big")


def encode_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def index_values(spec_type: str, path: PayloadPath, payload: dict[str, Any]) -> set[bytes]:
    """The encoded values an index of `spec_type` on `path` holds for one payload."""
    encode = _ENCODERS[spec_type]
    encoded: set[bytes] = set()
    for value in path.values(payload):
        for element in value if type(value) is list else (value,):
            key = encode(element)
            if key is not None:
                encoded.add(key)
    return encoded


def is_counted(spec_type: str, path: PayloadPath, payload: dict[str, Any]) -> bool:
    """Whether a point counts in the index's `points` (payload_schema) as Qdrant counts it:
    an integer index counts integers only, a uuid index only strings that are UUIDs, though
    both hold more entries (floats, any string) for the planner's superset."""
    if spec_type not in ("integer", "uuid"):
        return bool(index_values(spec_type, path, payload))
    is_wanted = _is_integer if spec_type == "integer" else _is_uuid_text
    for value in path.values(payload):
        for element in value if type(value) is list else (value,):
            if is_wanted(element):
                return True
    return False


def _is_integer(value: Any) -> bool:
    return type(value) is int


def _is_uuid_text(value: Any) -> bool:
    if type(value) is not str:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _string_value(value: Any) -> bytes | None:
    return encode_keyword(value) if type(value) is str else None


def _number_value(value: Any) -> bytes | None:
    if type(value) is not int and type(value) is not float:
        return None
    try:
        return encode_float(float(value))
    except OverflowError:  # an integer beyond f64: filters cannot compare it either
        return None


def _bool_value(value: Any) -> bytes | None:
    return encode_bool(value) if type(value) is bool else None


def _datetime_value(value: Any) -> bytes | None:
    if type(value) is not str:
        return None
    key = instants.instant_key(value)
    return None if key is None else encode_instant(key)


def _geo_value(value: Any) -> bytes | None:
    if type(value) is not dict:
        return None
    lon, lat = value.get("lon"), value.get("lat")
    if not filters._is_number(lon) or not filters._is_number(lat):
        return None
    return encode_float(lat) + encode_float(lon)


_ENCODERS = {
    "keyword": _string_value,
    "uuid": _string_value,
    "text": _string_value,
    "integer": _number_value,
    "float": _number_value,
    "bool": _bool_value,
    "datetime": _datetime_value,
    "geo": _geo_value,
}
assert set(_ENCODERS) == set(SCHEMA_TYPES)


# ---- entries (inside the writer's transaction) ----------------------------------------------


def put_entries(
    txn: lmdb.Transaction, db: Any, field_name: str, values: set[bytes], key: bytes
) -> None:
    prefix = field_key(field_name)
    for value in values:
        txn.put(prefix + value, key, db=db, dupdata=True)


def delete_entries(
    txn: lmdb.Transaction, db: Any, field_name: str, values: set[bytes], key: bytes
) -> None:
    prefix = field_key(field_name)
    for value in values:
        is_deleted = txn.delete(prefix + value, key, db=db)
        assert is_deleted, f"index entry missing field={field_name!r} value={value!r}"


def drop_field(txn: lmdb.Transaction, db: Any, field_name: str) -> int:
    """Delete every entry of one field; returns how many there were."""
    prefix = field_key(field_name)
    cursor = txn.cursor(db)
    dropped = 0
    if not cursor.set_range(prefix):
        return 0
    while bytes(cursor.key()).startswith(prefix):
        dropped += cursor.count()
        if not cursor.delete(dupdata=True):
            break
        if not cursor.key():
            break
    return dropped


# ---- resolving lookups (inside a read transaction) ------------------------------------------


def resolve(
    txn: lmdb.Transaction, db: Any, lookup: Lookup, keys_max: int, *, is_exact: bool = False
) -> set[bytes] | None:
    """The point keys `lookup` selects, or None if more than keys_max (then: scan). An `AllOf`
    leaves out a part over keys_max (a superset, enough for a filter checked on each key),
    unless `is_exact`: then it is None too, as the caller skips the check."""
    if isinstance(lookup, KeySet):
        return set(lookup.keys) if len(lookup.keys) <= keys_max else None
    if isinstance(lookup, ValueEqual | ValueRange):
        return _resolve_values(txn, db, lookup, keys_max)
    parts = [resolve(txn, db, part, keys_max, is_exact=is_exact) for part in lookup.parts]
    if isinstance(lookup, AnyOf):
        if any(part is None for part in parts):
            return None
        union: set[bytes] = set().union(*parts)
        return union if len(union) <= keys_max else None
    assert isinstance(lookup, AllOf), lookup
    if is_exact and any(part is None for part in parts):
        return None
    known = sorted((part for part in parts if part is not None), key=len)
    if not known:
        return None
    return known[0].intersection(*known[1:])


def estimate(txn: lmdb.Transaction, db: Any, lookup: Lookup, steps_max: int) -> int | None:
    """An upper bound on how many points `lookup` selects, from entry counts alone (LMDB
    counts a key's duplicates without reading them); None if that takes over steps_max
    distinct values. Points with several matching values count more than once."""
    if isinstance(lookup, KeySet):
        return len(lookup.keys)
    if isinstance(lookup, ValueEqual | ValueRange):
        return _count_values(txn, db, lookup, steps_max)
    parts = [estimate(txn, db, part, steps_max) for part in lookup.parts]
    if isinstance(lookup, AnyOf):
        return None if any(part is None for part in parts) else sum(parts)  # type: ignore[arg-type]
    known = [part for part in parts if part is not None]
    return min(known) if known else None


def _count_values(
    txn: lmdb.Transaction, db: Any, lookup: ValueEqual | ValueRange, steps_max: int
) -> int | None:
    prefix = field_key(lookup.field_name)
    cursor = txn.cursor(db)
    if isinstance(lookup, ValueEqual):
        return cursor.count() if cursor.set_key(prefix + lookup.value) else 0
    high = prefix + lookup.high
    total = 0
    is_positioned = cursor.set_range(prefix + lookup.low)
    for _step in range(steps_max):
        if not is_positioned or bytes(cursor.key()) > high:
            return total
        total += cursor.count()
        is_positioned = cursor.next_nodup()
    return None


def lookup_fields(lookup: Lookup) -> set[str]:
    """The fields whose index entries a lookup reads."""
    if isinstance(lookup, KeySet):
        return set()
    if isinstance(lookup, ValueEqual | ValueRange):
        return {lookup.field_name}
    return set().union(*(lookup_fields(part) for part in lookup.parts))


def _resolve_values(
    txn: lmdb.Transaction, db: Any, lookup: ValueEqual | ValueRange, keys_max: int
) -> set[bytes] | None:
    prefix = field_key(lookup.field_name)
    cursor = txn.cursor(db)
    found: set[bytes] = set()
    if isinstance(lookup, ValueEqual):
        if not cursor.set_key(prefix + lookup.value):
            return found
        for key in cursor.iternext_dup():
            found.add(bytes(key))
            if len(found) > keys_max:
                return None
        return found
    high = prefix + lookup.high
    if not cursor.set_range(prefix + lookup.low):
        return found
    for entry_key, point in cursor:
        if bytes(entry_key) > high:
            break
        found.add(bytes(point))
        if len(found) > keys_max:
            return None
    return found
