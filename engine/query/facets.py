"""Facet counts: the most frequent values of one payload key, as Qdrant's facet orders them.

Owns: which values count (strings, integers within i64, booleans; each once per point; an
array's elements one level deep; with a keyword, integer, uuid or bool index on the key,
only values of that type, UUIDs normalised) and their order (count descending, then value
ascending, types in the order of Qdrant's FacetValue enum,
lib/segment/src/data_types/facets.rs).
Not here: which points are counted (engine/query/reads.py `Reader.facet`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from engine.filters.payload_path import PayloadPath

# Facet value types in the order of Qdrant's FacetValue enum (lib/segment/src/data_types/
# facets.rs), which is how values of different types compare on equal counts.
KEYWORD_TAG, INTEGER_TAG, UUID_TAG, BOOL_TAG = range(4)
FACET_TAG_BY_SCHEMA = {
    "keyword": KEYWORD_TAG,
    "integer": INTEGER_TAG,
    "uuid": UUID_TAG,
    "bool": BOOL_TAG,
}


def top_values(
    payloads: Iterable[dict[str, Any]], key: PayloadPath, schema_type: str | None, limit: int
) -> list[tuple[Any, int]]:
    """The `limit` most frequent values at `key` in `payloads`, as (value, count)."""
    only_tag = None if schema_type is None else FACET_TAG_BY_SCHEMA.get(schema_type)
    counts: dict[tuple[int, Any], int] = {}
    for payload in payloads:
        for value in _facet_values(key.values(payload), only_tag):
            counts[value] = counts.get(value, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(value, count) for (_, value), count in ranked[:limit]]


def _facet_values(found: list[Any], only_tag: int | None) -> set[tuple[int, Any]]:
    """The distinct facet values among `found` (arrays flattened one level), each tagged by
    type so that True and 1 stay apart and types order as Qdrant's FacetValue; with
    `only_tag`, only values of that type (UUID_TAG: strings that are UUIDs, normalised)."""
    values: set[tuple[int, Any]] = set()
    for item in found:
        for value in item if type(item) is list else (item,):
            if type(value) is str:
                tagged = (KEYWORD_TAG, value)
                if only_tag == UUID_TAG:
                    tagged = (UUID_TAG, _uuid_text(value))
            elif type(value) is int and -(2**63) <= value < 2**63:
                tagged = (INTEGER_TAG, value)
            elif type(value) is bool:
                tagged = (BOOL_TAG, value)
            else:
                continue
            if only_tag is None or tagged[0] == only_tag and tagged[1] is not None:
                values.add(tagged)
    return values


def _uuid_text(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
