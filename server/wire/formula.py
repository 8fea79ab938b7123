"""Qdrant's formula query JSON -> engine.query.formula expressions, with Qdrant's 422s.

Owns: reading `{"formula": Expression, "defaults": {...}}` (Qdrant 1.19 `lib/api/src/rest/
schema.rs` FormulaQuery, Expression and its parameter structs) and the validation Qdrant does
on it before running anything (`rest/validate.rs`): the filter conditions inside the
expression, then the keys of `defaults` and that a `$score` default is a number.
Not here: compiling and evaluating a formula (engine/query/formula.py), the query around it
(server/wire/query.py), filters (server/wire/filters.py).

An Expression is an untagged enum tried in its declaration order: a number, a string (a
variable), a filter condition, then the objects (`geo_distance`, `datetime`, `datetime_key`,
`mult`, `sum`, `neg`, `abs`, `div`, `sqrt`, `pow`, `exp`, `log10`, `ln`, `lin_decay`,
`exp_decay`, `gauss_decay`), the first that reads the value winning. A mistake anywhere
raises FormatError; the query parser answers its one `expecting` text for all of them.
Validation paths are validator's: they start at the query's path with no `formula` step
(`FormulaQuery::validate` validates the expression in place), `pow` is not validated inside,
defaults' errors sit under `<query>.defaults`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.errors import FormatError
from engine.filters.conditions import Condition
from engine.filters.payload_path import PayloadPath
from engine.limits import FILTER_JSON_DEPTH_MAX
from engine.query import formula as formulas
from server.wire.filters import parse_filter_collecting
from server.wire.serde_text import code_only_message, invalid_type, missing_field

NUMBER_TYPES = (int, float)
Errors = list[tuple[str, str]]


def parse_formula(query: dict[str, Any], path: str, errors: Errors) -> formulas.Formula:
    """FormulaQuery: `formula` (an Expression) and `defaults` (a map, default empty).
    Validation as `FormulaQuery::validate`: the expression's conditions first; only when
    they pass, each default's key must be a variable and a `$score` default a number."""
    defaults = query.get("defaults", {})
    if type(defaults) is not dict:
        raise invalid_type(defaults, "a map")
    expression_errors: Errors = []
    expression = _parse_expression(query["formula"], path, expression_errors)
    if expression_errors:
        errors.extend(expression_errors)
        return formulas.Formula(expression, defaults)
    for key, value in defaults.items():
        try:
            variable = formulas.parse_variable(key)
        except ValueError as error:
            errors.append((f"{path}.defaults", str(error)))
            continue
        if isinstance(variable, formulas.ScoreOf) and type(value) not in NUMBER_TYPES:
            errors.append((f"{path}.defaults", code_only_message("Score default must be a number")))
    return formulas.Formula(expression, defaults)


def _parse_expression(value: Any, path: str, errors: Errors) -> formulas.Expression:
    """Expression, an untagged enum: the first variant (in Qdrant's order) that reads it."""
    if type(value) in NUMBER_TYPES:
        return formulas.Constant(parse_f32(value))
    if type(value) is str:
        return formulas.Variable(value)
    if not isinstance(value, dict):
        raise FormatError("data did not match any variant of untagged enum Expression")
    condition = _parse_condition(value, path, errors)
    if condition is not None:
        return formulas.ConditionTerm(condition)
    for name, parse in EXPRESSION_OBJECTS:
        if name not in value:
            continue
        found: Errors = []
        try:
            expression = parse(value[name], f"{path}.{name}", found)
        except FormatError:
            continue  # serde tries the next variant
        errors.extend(found)
        return expression
    raise FormatError("data did not match any variant of untagged enum Expression")


def _parse_condition(value: dict[str, Any], path: str, errors: Errors) -> Condition | None:
    """A filter condition, or None when `value` is not one. Read as the only condition of a
    filter, so its validation paths are moved from `<path>.must[0]` to `<path>`."""
    found: Errors = []
    try:
        wrapper = parse_filter_collecting({"must": [value]}, path, found)
    except FormatError:
        return None
    assert wrapper is not None, value
    assert wrapper.must is not None, wrapper
    inner = f"{path}.must[0]"
    errors.extend((path + field[len(inner) :], message) for field, message in found)
    return wrapper.must[0]


def _parse_geo_distance(value: Any, path: str, errors: Errors) -> formulas.Expression:
    fields = struct_fields(value, ("origin", "to"))
    try:
        origin = formulas.geo_point_of(fields["origin"])
    except ValueError as error:
        raise FormatError(str(error)) from None
    return formulas.GeoDistance(origin, _parse_json_path(fields["to"]))


def _parse_datetime(value: Any, path: str, errors: Errors) -> formulas.Expression:
    if type(value) is not str:
        raise invalid_type(value, "a string")
    return formulas.Datetime(value)


def _parse_datetime_key(value: Any, path: str, errors: Errors) -> formulas.Expression:
    return formulas.DatetimeKey(_parse_json_path(value))


def _parse_terms(kind: str) -> Callable[[Any, str, Errors], formulas.Expression]:
    def parse(value: Any, path: str, errors: Errors) -> formulas.Expression:
        if type(value) is not list:
            raise invalid_type(value, "a sequence")
        terms = tuple(
            _parse_expression(item, f"{path}[{index}]", errors) for index, item in enumerate(value)
        )
        return formulas.Mult(terms) if kind == "mult" else formulas.Sum(terms)

    return parse


def _parse_unary(operation: str) -> Callable[[Any, str, Errors], formulas.Expression]:
    def parse(value: Any, path: str, errors: Errors) -> formulas.Expression:
        return formulas.Unary(operation, _parse_expression(value, path, errors))

    return parse


def _parse_div(value: Any, path: str, errors: Errors) -> formulas.Expression:
    fields = struct_fields(value, ("left", "right"))
    left = _parse_expression(fields["left"], f"{path}.left", errors)
    right = _parse_expression(fields["right"], f"{path}.right", errors)
    by_zero = fields.get("by_zero_default")
    return formulas.Div(left, right, None if by_zero is None else parse_f32(by_zero))


def _parse_pow(value: Any, path: str, errors: Errors) -> formulas.Expression:
    fields = struct_fields(value, ("base", "exponent"))
    unchecked: Errors = []  # PowExpression does not validate inside (`schema.rs`)
    base = _parse_expression(fields["base"], f"{path}.base", unchecked)
    exponent = _parse_expression(fields["exponent"], f"{path}.exponent", unchecked)
    return formulas.Pow(base, exponent)


def _parse_decay(kind: str) -> Callable[[Any, str, Errors], formulas.Expression]:
    def parse(value: Any, path: str, errors: Errors) -> formulas.Expression:
        fields = struct_fields(value, ("x",))
        x = _parse_expression(fields["x"], f"{path}.x", errors)
        target = fields.get("target")
        if target is not None:
            target = _parse_expression(target, f"{path}.target", errors)
        midpoint, scale = fields.get("midpoint"), fields.get("scale")
        return formulas.Decay(
            kind,
            x,
            target,
            None if midpoint is None else parse_f32(midpoint),
            None if scale is None else parse_f32(scale),
        )

    return parse


# Expression's object variants after the condition, in `schema.rs` order.
EXPRESSION_OBJECTS: tuple[tuple[str, Callable[[Any, str, Errors], formulas.Expression]], ...] = (
    ("geo_distance", _parse_geo_distance),
    ("datetime", _parse_datetime),
    ("datetime_key", _parse_datetime_key),
    ("mult", _parse_terms("mult")),
    ("sum", _parse_terms("sum")),
    ("neg", _parse_unary("neg")),
    ("abs", _parse_unary("abs")),
    ("div", _parse_div),
    ("sqrt", _parse_unary("sqrt")),
    ("pow", _parse_pow),
    ("exp", _parse_unary("exp")),
    ("log10", _parse_unary("log10")),
    ("ln", _parse_unary("ln")),
    ("lin_decay", _parse_decay("lin")),
    ("exp_decay", _parse_decay("exp")),
    ("gauss_decay", _parse_decay("gauss")),
)


def struct_fields(value: Any, required: Any) -> dict[str, Any]:
    """`value` as a struct (a JSON object) having each of the `required` fields."""
    if not isinstance(value, dict):
        raise invalid_type(value, "a map")
    for name in required:
        if name not in value:
            raise missing_field(name)
    return value


def parse_f32(value: Any) -> float:
    """serde's f32 from a JSON number (an f64 cast: out of range is inf), widened."""
    if type(value) not in NUMBER_TYPES:
        raise invalid_type(value, "f32")
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _parse_json_path(value: Any) -> PayloadPath:
    if type(value) is not str:
        raise invalid_type(value, "a string")
    try:
        return PayloadPath.parse(value)
    except ValueError:
        raise FormatError(f"Invalid json path: '{value}'") from None


def is_too_deep(value: Any) -> bool:
    """Whether `value` nests deeper than FILTER_JSON_DEPTH_MAX (iterative: no recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > FILTER_JSON_DEPTH_MAX:
            return True
        children = item.values() if isinstance(item, dict) else item if type(item) is list else ()
        pending.extend((child, depth + 1) for child in children)
    return False
