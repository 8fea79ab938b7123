"""`with_payload` include and exclude lists, as Qdrant applies them to a payload.

Owns: keeping or dropping parts of a payload by JsonPath patterns (Qdrant's
`JsonPath::value_filter` with `check_include_pattern` / `check_exclude_pattern`,
lib/segment/src/json_path/mod.rs and types.rs).
Not here: parsing the selector (server/wire/schemas.py), reading points (engine/query/reads.py).

The payload is walked top-down; each object entry gets the path of its key, each array
element the path of its array plus `[]` (so `a[0]` in a pattern never equals an element's
path, while `a[].b` does). Include keeps an entry when its path and some pattern agree on
every step they both have (a pattern below the entry keeps the entry and walks into it; an
entry below a pattern is kept whole; a scalar is kept whole either way). Exclude drops an
entry whose path is a pattern or lies below one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.filters.payload_path import PathStep, PayloadPath

Steps = tuple[PathStep, ...]


def include(payload: dict[str, Any], patterns: tuple[PayloadPath, ...]) -> dict[str, Any]:
    def keep(path: Steps) -> bool:
        return any(
            pattern.steps[0] == path[0]
            and all(a == b for a, b in zip(pattern.steps[1:], path[1:], strict=False))
            for pattern in patterns
        )

    return _filtered(payload, keep)


def exclude(payload: dict[str, Any], patterns: tuple[PayloadPath, ...]) -> dict[str, Any]:
    def keep(path: Steps) -> bool:
        return not any(
            pattern.steps[0] == path[0] and path[1 : len(pattern.steps)] == pattern.steps[1:]
            for pattern in patterns
        )

    return _filtered(payload, keep)


def _filtered(payload: dict[str, Any], keep: Callable[[Steps], bool]) -> dict[str, Any]:
    return {key: _walk((key,), value, keep) for key, value in payload.items() if keep((key,))}


def _walk(path: Steps, value: Any, keep: Callable[[Steps], bool]) -> Any:
    if type(value) is dict:
        return {
            key: _walk((*path, key), child, keep)
            for key, child in value.items()
            if keep((*path, key))
        }
    if type(value) is list:
        element_path = (*path, None)
        return (
            [_walk(element_path, element, keep) for element in value] if keep(element_path) else []
        )
    return value
