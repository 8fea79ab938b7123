"""Where a formula's payload variable gets its values: the field's payload index, else the payload.

Owns: Qdrant 1.19's rule for reading a formula variable (`variable_retriever` in
lib/segment/src/index/struct_payload_index/read_view/value_retriever/helpers.rs). When the
variable's path is a field with a payload index that gives values back, the values are those
the index holds for the point, as the index turns them back into JSON (`value_retriever` of
each index, dispatched in field_index_base/field_index_read_impl.rs); else they are the
payload's values at the path, arrays flattened unless the path ends in `[]`.
Not here: defaults and what a value must be (engine/query/formula.py);
Keel's own LMDB index entries (engine/store/payload_index.py), which hold a superset of
Qdrant's values for the planner and so cannot stand in for them.

What an index of each type holds for a point (its `ValueIndexer::get_value` over the path's
values, arrays flattened one level) and gives back:

| type     | holds                                         | gives back          | repeats      |
|----------|-----------------------------------------------|---------------------|--------------|
| keyword  | strings                                       | the strings         | once (a map) |
| integer  | integers, floats with an integral value       | integers            | once with    |
|          | (`value_to_integer`)                          |                     | `lookup`, else kept |
| float    | numbers                                       | f64                 | kept         |
| datetime | strings that parse as datetimes               | datetimes           | kept         |
| uuid     | strings that parse as UUIDs                   | hyphenated lowercase| once         |
| bool     | booleans                                      | true, then false    | once each    |
| geo      | {lon, lat} objects of numbers within range    | {"lon", "lat"}      | kept         |
| text     | (gives nothing back: the payload is read)     |                     |              |

An integer index with `lookup` (the default) is two indexes in Qdrant, the map one first
(index_selector.rs), and the first that gives values back is read. A datetime is given back
as the payload's own string: the formula reads it to microseconds, as Qdrant reads its own.

So with an index, a value the index does not hold (`null`, a string under a float index) is
no value: the variable's default, else Qdrant's "No value found" error; read from the
payload the same value is one that is not a number.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from engine.filters import instants
from engine.filters.payload_path import PayloadPath
from engine.store.payload_index import IndexSpec

MISSING = object()  # a variable with no value for a point
ValuesOf = Callable[[dict[str, Any]], list[Any]]  # a point's payload -> the variable's values
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


class Variables:
    """How each payload variable of one query is read, decided once per query and path."""

    def __init__(self, index_specs: Mapping[str, IndexSpec]) -> None:
        self._indexed = indexed_fields(index_specs)
        self._readers: dict[PayloadPath, ValuesOf] = {}

    def value(self, path: PayloadPath, payload: dict[str, Any]) -> Any:
        """The point's value of the variable: one value, a list of several, or MISSING
        (Qdrant's `get_payload_value`)."""
        reader = self._readers.get(path)
        if reader is None:
            reader = self._readers[path] = values_reader(path, self._indexed)
        values = reader(payload)
        if not values:
            return MISSING
        return values[0] if len(values) == 1 else values


def indexed_fields(index_specs: Mapping[str, IndexSpec]) -> dict[PayloadPath, IndexSpec]:
    """The payload indexes by the path they index, as a variable names it."""
    indexed = {}
    for field_name, spec in index_specs.items():
        try:
            indexed[PayloadPath.parse(field_name)] = spec
        except ValueError:
            continue  # not a path a variable can name
    return indexed


def values_reader(path: PayloadPath, indexed: Mapping[PayloadPath, IndexSpec]) -> ValuesOf:
    """How the variable `path` is read: from its field's index if it has one that gives
    values back, else from the payload."""
    spec = indexed.get(path)
    return _payload_reader(path) if spec is None else _index_reader(path, spec)


def payload_values(path: PayloadPath, payload: dict[str, Any]) -> list[Any]:
    """The payload's values at `path`, arrays flattened as for indexing unless the path
    itself ends in `[]`."""
    values: list[Any] = []
    for value in path.values(payload):
        if type(value) is list and path.steps[-1] is not None:
            values.extend(value)
        else:
            values.append(value)
    return values


def _payload_reader(path: PayloadPath) -> ValuesOf:
    return lambda payload: payload_values(path, payload)


def _index_reader(path: PayloadPath, spec: IndexSpec) -> ValuesOf:
    if spec.schema_type == "text":
        return _payload_reader(path)  # a full-text index gives no values back
    if spec.schema_type == "bool":
        return lambda payload: _bools(_indexed_elements(path, payload))
    convert = _CONVERTERS[spec.schema_type]
    is_once = spec.schema_type in ("keyword", "uuid") or (
        spec.schema_type == "integer" and (spec.params or {}).get("lookup") is not False
    )

    def read(payload: dict[str, Any]) -> list[Any]:
        values = [convert(element) for element in _indexed_elements(path, payload)]
        held = [value for value in values if value is not None]
        return _once(held) if is_once else held

    return read


def _indexed_elements(path: PayloadPath, payload: dict[str, Any]) -> list[Any]:
    """The values an index looks at: the path's values, arrays flattened one level."""
    elements: list[Any] = []
    for value in path.values(payload):
        elements.extend(value if type(value) is list else (value,))
    return elements


def _once(values: list[Any]) -> list[Any]:
    """Each value once, in first-seen order (a map index's forward list)."""
    seen: set[Any] = set()
    kept = []
    for value in values:
        if value not in seen:
            seen.add(value)
            kept.append(value)
    return kept


def _bools(elements: list[Any]) -> list[bool]:
    # The bool index answers from two bitmaps: trues first, then falses.
    flags = [element for element in elements if type(element) is bool]
    return [flag for flag in (True, False) if flag in flags]


def _keyword(value: Any) -> str | None:
    return value if type(value) is str else None


def _integer(value: Any) -> int | None:
    """serde's `value_to_integer`: an i64, or a float whose `as i64` cast gives it back."""
    if type(value) is int:
        return value if I64_MIN <= value <= I64_MAX else _integer(float(value))
    if type(value) is not float or math.isnan(value):
        return None
    cast = I64_MAX if value >= 2.0**63 else I64_MIN if value < -(2.0**63) else int(value)
    return cast if float(cast) == value else None


def _float(value: Any) -> float | None:
    if type(value) is not int and type(value) is not float:
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past f64: no JSON number Qdrant holds
        return None


def _datetime(value: Any) -> str | None:
    if type(value) is not str or instants.instant_key(value) is None:
        return None
    return value


def _uuid(value: Any) -> str | None:
    if type(value) is not str:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _geo(value: Any) -> dict[str, float] | None:
    if type(value) is not dict:
        return None
    lon, lat = _float(value.get("lon")), _float(value.get("lat"))
    if lon is None or lat is None:
        return None
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        return None  # GeoPoint::new refuses it, so the index does not hold it
    return {"lon": lon, "lat": lat}


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "keyword": _keyword,
    "integer": _integer,
    "float": _float,
    "datetime": _datetime,
    "uuid": _uuid,
    "geo": _geo,
}
