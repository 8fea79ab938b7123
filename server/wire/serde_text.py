"""Qdrant's error wording, reproduced: how serde, serde_json and `validator` phrase things.

Owns: the text of format errors (`invalid type: string "x", expected a map`), of
validation errors (`value 0 invalid, must be 1 or larger`), and the Rust renderings of
numbers and values those texts embed, so that Keel's 400/422 bodies read like Qdrant's.
Not here: deciding *whether* input is valid (server/wire/schemas.py) or the HTTP status (app.py).

Sources (Qdrant 1.19, read, not copied): serde_json's `JsonUnexpected`, serde's
`Unexpected`, Rust's `Display`/`Debug` for f64 and str, `lib/segment/src/utils/fmt.rs`
(how a rejected point id is printed), `lib/collection/src/operations/validation.rs`
(`describe_error`: range messages) and validator's `flatten_errors` (field paths).
One thing is left out on purpose: serde_json appends ` at line L column C` to errors
found while streaming a body; Keel parses with orjson and cannot know that position.
"""

from __future__ import annotations

import math
from typing import Any

from engine.errors import FormatError, ValidationError


def invalid_type(value: Any, expected: str) -> FormatError:
    """serde's `invalid type: <unexpected>, expected <what>` as a FormatError."""
    return FormatError(f"invalid type: {unexpected(value)}, expected {expected}")


def untagged_mismatch(enum_name: str) -> FormatError:
    """What serde says when no variant of an untagged enum accepts the value."""
    return FormatError(f"data did not match any variant of untagged enum {enum_name}")


def missing_field(name: str) -> FormatError:
    return FormatError(f"missing field `{name}`")


def unknown_variant(value: Any, variants: tuple[str, ...]) -> FormatError:
    """serde's error for a string that names no variant of a (snake_case) enum."""
    if not isinstance(value, str):
        return invalid_type(value, "a string")
    # serde's `OneOf`: "`a`", "`a` or `b`", else "one of `a`, `b`, `c`".
    if len(variants) == 1:
        expected = f"`{variants[0]}`"
    elif len(variants) == 2:
        expected = f"`{variants[0]}` or `{variants[1]}`"
    else:
        expected = "one of " + ", ".join(f"`{variant}`" for variant in variants)
    return FormatError(f"unknown variant `{value}`, expected {expected}")


def validation_errors(errors: list[tuple[str, str]]) -> ValidationError:
    """A 422 naming each (field path, message), as Qdrant's `label_errors` joins them."""
    assert errors, "a validation error needs at least one field"
    return ValidationError("; ".join(f"{path}: {message}" for path, message in errors))


def code_only_message(code: str) -> str:
    """A validator `ValidationError` made with a code and no message or params: the crate's
    Display prints it as `Validation error: <code> [<params>]`, an empty map here."""
    return f"Validation error: {code} [{{}}]"


def range_message(value: Any, minimum: Any = None, maximum: Any = None) -> str:
    """`describe_error` for a `range` check: `value 0 invalid, must be 1 or larger`."""
    if maximum is None:
        bound = f"must be {json_display(minimum)} or larger"
    elif minimum is None:
        bound = f"must be {json_display(maximum)} or smaller"
    else:
        bound = f"must be from {json_display(minimum)} to {json_display(maximum)}"
    return f"value {json_display(value)} invalid, {bound}"


def unexpected(value: Any) -> str:
    """serde_json's rendering of an unexpected JSON value (`JsonUnexpected`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{ryu_float(value)}`"
    if isinstance(value, str):
        return f"string {rust_debug_str(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def json_display(value: Any) -> str:
    """`Display` of a serde_json::Value: compact JSON, floats as ryu writes them."""
    if isinstance(value, float):
        return ryu_float(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return rust_debug_str(value)
    return str(value)


def value_display(value: Any) -> str:
    """How Qdrant prints a rejected point id: serde_value's Display (utils/fmt.rs).

    Scalars print bare (`-1`, `1.5`, `abc`, `true`), null prints `Unit`, and arrays and
    objects fall back to Rust's Debug of the serde_value tree (`[U64(1)]`).
    """
    if value is None:
        return "Unit"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return rust_f64_display(value)
    if isinstance(value, str):
        return value
    return _value_debug(value)


def rust_f64_display(number: float) -> str:
    """Rust's `Display` for f64: shortest round-trip digits, never an exponent, `1` not `1.0`."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    sign, digits, exponent = _shortest_digits(number)
    text = _positional(digits, exponent)
    text = text.removesuffix(".0")
    return sign + text


def ryu_float(number: float) -> str:
    """serde_json's (ryu's) rendering of a finite f64: `1.0`, `0.00001`, `1e20`, `1.5e-7`."""
    sign, digits, exponent = _shortest_digits(number)
    # ryu writes positional notation while the decimal point lands in [-5, 16] digits.
    point_position = len(digits) + exponent
    if -5 < point_position <= 16:
        return sign + _positional(digits, exponent)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{point_position - 1}"


def rust_debug_str(text: str) -> str:
    """Rust's `Debug` for str: double quotes, with quote, backslash and controls escaped."""
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\r":
            escaped.append("\\r")
        elif char == "\t":
            escaped.append("\\t")
        elif char == "\0":
            escaped.append("\\0")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{{{ord(char):x}}}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _shortest_digits(number: float) -> tuple[str, str, int]:
    """(sign, significant digits, exponent) with number == digits * 10**exponent."""
    sign = "-" if math.copysign(1.0, number) < 0 else ""
    mantissa, _, exponent_text = repr(abs(number)).partition("e")
    exponent = int(exponent_text) if exponent_text else 0
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = (whole + fraction).lstrip("0") or "0"
    exponent -= len(fraction)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped) if stripped else 0
    return sign, stripped or "0", exponent


def _positional(digits: str, exponent: int) -> str:
    if exponent >= 0:
        return digits + "0" * exponent + ".0"
    point = len(digits) + exponent
    if point > 0:
        return digits[:point] + "." + digits[point:]
    return "0." + "0" * -point + digits


def _value_debug(value: Any) -> str:
    if value is None:
        return "Unit"
    if isinstance(value, bool):
        return f"Bool({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"U64({value})" if value >= 0 else f"I64({value})"
    if isinstance(value, float):
        return f"F64({_rust_f64_debug(value)})"
    if isinstance(value, str):
        return f"String({rust_debug_str(value)})"
    if isinstance(value, list):
        return "[" + ", ".join(_value_debug(item) for item in value) + "]"
    items = (
        f"String({rust_debug_str(key)}): {_value_debug(item)}"
        for key, item in sorted(value.items())
    )
    return "{" + ", ".join(items) + "}"


def _rust_f64_debug(number: float) -> str:
    text = rust_f64_display(number)
    return text if "." in text or not text.lstrip("-").isdigit() else text + ".0"
