"""Payload paths: Qdrant's JsonPath (`a.b`, `a[0]`, `a[]`, `"quoted.key"`).

Owns: parsing a path (json_path/parse.rs), its canonical text, and the values it selects
in a payload (json_path's value_get: keys descend objects only, `[i]` one element, `[]`
every element; a missing step selects nothing).
Not here: what filters do with the values (engine/filters/conditions.py), set and delete at a path
(engine/store/mutations.py).

Paths are logged in WAL records inside filters (`PayloadPath` by class name and `steps`):
renaming either breaks replay of old logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

U64_MAX = 2**64 - 1
PathStep = str | int | None  # key, array index, or None for `[]` (every element)


@dataclass(frozen=True)
class PayloadPath:
    """A parsed payload key: `steps[0]` is a key, then keys, indexes and None for `[]`."""

    steps: tuple[PathStep, ...]

    @classmethod
    def parse(cls, text: str) -> PayloadPath:
        """Qdrant's JsonPath syntax (json_path/parse.rs); ValueError if `text` is not one."""
        return cls(_parse_path_steps(text))

    def __str__(self) -> str:
        return self.text

    @cached_property
    def text(self) -> str:
        """The canonical text (kept: filters name their fields by it on every search)."""
        parts = [_format_key(self.steps[0])]
        for step in self.steps[1:]:
            if step is None:
                parts.append("[]")
            elif isinstance(step, int):
                parts.append(f"[{step}]")
            else:
                parts.append("." + _format_key(step))
        return "".join(parts)

    def array_key(self) -> PayloadPath:
        """The path with `[]` appended unless it ends in one (what `nested` iterates)."""
        return self if self.steps[-1] is None else self.extend_steps(None)

    def extend_steps(self, *steps: PathStep) -> PayloadPath:
        return PayloadPath(self.steps + steps)

    def values(self, payload: dict[str, Any]) -> list[Any]:
        """Every value the path selects in `payload`, in document order."""
        first = self.steps[0]
        if first not in payload:
            return []
        if len(self.steps) == 1:
            return [payload[first]]
        found: list[Any] = []
        _collect(self.steps, 1, payload[first], found)
        return found


@lru_cache(maxsize=4096)
def canonical_text(text: str) -> str:
    """The canonical text of the path `text` (`"a".b` is `a.b`); ValueError if not a path.
    Remembered: payload index names are normalised so on every filtered search."""
    return PayloadPath.parse(text).text


def _collect(steps: tuple[PathStep, ...], position: int, value: Any, found: list[Any]) -> None:
    if position == len(steps):
        found.append(value)
        return
    step = steps[position]
    if step is None:
        if type(value) is list:
            for element in value:
                _collect(steps, position + 1, element, found)
    elif isinstance(step, str):
        if type(value) is dict and step in value:
            _collect(steps, position + 1, value[step], found)
    elif type(value) is list and step < len(value):
        _collect(steps, position + 1, value[step], found)


def _parse_path_steps(text: str) -> tuple[PathStep, ...]:
    first, position = _scan_key(text, 0)
    steps: list[PathStep] = [first]
    while position < len(text):
        if text[position] == ".":
            key, position = _scan_key(text, position + 1)
            steps.append(key)
        elif text.startswith("[]", position):
            steps.append(None)
            position += 2
        elif text[position] == "[":
            end = text.find("]", position)
            digits = text[position + 1 : end] if end > 0 else ""
            if not (digits.isascii() and digits.isdigit()) or int(digits) > U64_MAX:
                raise ValueError(f"bad array index in path {text!r}")
            steps.append(int(digits))
            position = end + 1
        else:
            raise ValueError(f"unexpected {text[position]!r} in path {text!r}")
    return tuple(steps)


def _scan_key(text: str, position: int) -> tuple[str, int]:
    if text.startswith('"', position):
        end = text.find('"', position + 1)
        if end < 0 or "\\" in text[position + 1 : end]:
            raise ValueError(f"unterminated quoted key in path {text!r}")
        return text[position + 1 : end], end + 1
    end = position
    while end < len(text) and _is_raw_key_char(text[end]):
        end += 1
    if end == position:
        raise ValueError(f"empty key in path {text!r}")
    return text[position:end], end


def _is_raw_key_char(char: str) -> bool:
    # Rust's char::is_alphanumeric is close to str.isalnum (they differ on a few marks).
    return char.isalnum() or char in "_-"


def _format_key(key: PathStep) -> str:
    assert isinstance(key, str), key
    if key and all(_is_raw_key_char(char) for char in key):
        return key
    return f'"{key}"'


# --- geometry ------------------------------------------------------------------------------
