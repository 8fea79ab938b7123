"""Formula queries: rescoring the prefetches' points by an arithmetic expression.

Owns: the expression tree a `{"formula": ...}` query carries (the wire parses JSON into it),
compiling it as Qdrant does (variables `$score`, `$score[i]` and payload keys, decay
parameters turned into one lambda, datetime constants), and evaluating it per point with
Qdrant's rules and error texts; `rescore`, which ranks the prefetched points by it.
Not here: parsing the JSON (server/wire/query.py), running prefetches (engine/query/universal.py),
the reads (engine/query/universal_reads.py), what a condition matches (engine/filters/).

From Qdrant 1.19's source (`lib/shard/src/query/formula.rs` compiles,
`lib/segment/src/index/query_optimization/rescore_formula/` evaluates,
`lib/segment/src/segment/read_view/formula_rescore.rs` ranks):
- arithmetic is in f64; constants, `by_zero_default`, `midpoint` and `scale` are f32 in the
  request (widened), payload values and defaults f64, prefetch scores f32;
- `mult` stops at the first 0 factor and `div` at a 0 numerator, without evaluating the
  rest (so an error there does not surface); any other non-finite intermediate is an error,
  as is a final score that overflows f32;
- `$score[i]` missing for a point: the default for it, else 0; a payload key: its values
  (those its field's payload index holds when it has one, else the payload's, arrays
  flattened unless the key ends in `[]`: engine/query/formula_values.py), one value is used,
  none falls back to the default, several are an array and not a number; conditions score
  1 or 0;
- the points are the union of the prefetches' results; `score_threshold` keeps scores at or
  above it; errors stop the query (400 `Wrong input: ...`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from engine.errors import BadRequest
from engine.filters import instants
from engine.filters.conditions import Condition, GeoPoint
from engine.filters.geo import haversine_m
from engine.filters.payload_path import PayloadPath
from engine.ops import PointId
from engine.query.formula_values import MISSING, Variables
from engine.query.scores import Hit
from engine.store.payload_index import IndexSpec

SCORE_KEYWORD = "score"
DECAY_MIDPOINT_DEFAULT = 0.5
DECAY_SCALE_DEFAULT = 1.0
DECAY_KINDS = ("lin", "exp", "gauss")
UNARY_OPERATIONS = ("neg", "abs", "sqrt", "exp", "log10", "ln")
# chrono's ParseError texts (the last attempt Qdrant makes for a datetime is `%Y-%m-%d`).
CHRONO_INVALID = "input contains invalid characters"
CHRONO_TOO_SHORT = "premature end of input"
CHRONO_TOO_LONG = "trailing input"
CHRONO_OUT_OF_RANGE = "input is out of range"


# ---- the expression tree, as the request gives it ------------------------------------------


@dataclass(frozen=True)
class Constant:
    value: float  # an f32, widened


@dataclass(frozen=True)
class Variable:
    name: str  # `$score`, `$score[i]` or a payload key; checked when compiled


@dataclass(frozen=True)
class ConditionTerm:
    """A filter condition: 1.0 when the point matches it, else 0.0."""

    condition: Condition


@dataclass(frozen=True)
class GeoDistance:
    origin: GeoPoint
    to: PayloadPath


@dataclass(frozen=True)
class Datetime:
    text: str  # a datetime constant, in seconds since the epoch when evaluated


@dataclass(frozen=True)
class DatetimeKey:
    key: PayloadPath  # a payload datetime, in seconds since the epoch


@dataclass(frozen=True)
class Mult:
    factors: tuple[Expression, ...]


@dataclass(frozen=True)
class Sum:
    terms: tuple[Expression, ...]


@dataclass(frozen=True)
class Unary:
    operation: str  # one of UNARY_OPERATIONS
    operand: Expression


@dataclass(frozen=True)
class Div:
    left: Expression
    right: Expression
    by_zero_default: float | None = None


@dataclass(frozen=True)
class Pow:
    base: Expression
    exponent: Expression


@dataclass(frozen=True)
class Decay:
    kind: str  # one of DECAY_KINDS
    x: Expression
    target: Expression | None = None
    midpoint: float | None = None
    scale: float | None = None


Expression = (
    Constant
    | Variable
    | ConditionTerm
    | GeoDistance
    | Datetime
    | DatetimeKey
    | Mult
    | Sum
    | Unary
    | Div
    | Pow
    | Decay
)


@dataclass(frozen=True)
class Formula:
    """`{"formula": expression, "defaults": {variable: value}}` (a plan query kind)."""

    expression: Expression
    defaults: dict[str, Any] = field(default_factory=dict)


# ---- compiled -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreOf:
    """`$score[index]`: the point's score in that prefetch's results."""

    index: int


@dataclass(frozen=True)
class _Condition:
    index: int  # into CompiledFormula.conditions


@dataclass(frozen=True)
class _Decay:
    kind: str
    x: Any
    target: Any
    lambda_: float


@dataclass(frozen=True)
class _Datetime:
    seconds: float


@dataclass(frozen=True)
class CompiledFormula:
    root: Any  # the tree with variables resolved (ScoreOf, PayloadPath) and decays as lambdas
    conditions: tuple[Condition, ...]
    score_defaults: dict[int, Any]
    payload_defaults: dict[PayloadPath, Any]


def parse_variable(text: str) -> ScoreOf | PayloadPath:
    """A variable name as Qdrant's `VariableId::from_str` reads it; ValueError(message)."""
    if not text.startswith("$"):
        try:
            return PayloadPath.parse(text)
        except ValueError:
            raise ValueError(f"Invalid payload variable: {text}") from None
    try:
        path = PayloadPath.parse(text[1:])
    except ValueError:
        raise ValueError(f"Invalid reserved variable: {text}") from None
    if path.steps[0] != SCORE_KEYWORD:
        raise ValueError(f"Invalid reserved word: {text}")
    rest = path.steps[1:]
    if not rest:
        return ScoreOf(0)
    if len(rest) == 1 and type(rest[0]) is int:
        return ScoreOf(rest[0])
    raise ValueError(f"Invalid reserved variable: {text}")


def compile_formula(formula: Formula) -> CompiledFormula:
    """The formula ready to evaluate, or BadRequest as Qdrant's conversion words it."""
    conditions: list[Condition] = []
    root = _compile(formula.expression, conditions)
    score_defaults: dict[int, Any] = {}
    payload_defaults: dict[PayloadPath, Any] = {}
    for key, value in formula.defaults.items():
        try:
            variable = parse_variable(key)
        except ValueError as error:
            raise _failed_to_parse("variable ID", key, str(error)) from None
        if isinstance(variable, ScoreOf):
            score_defaults[variable.index] = value
        else:
            payload_defaults[variable] = value
    return CompiledFormula(root, tuple(conditions), score_defaults, payload_defaults)


def rescore(
    formula: CompiledFormula,
    points: list[tuple[PointId, dict[str, Any]]],
    prefetch_scores: list[dict[PointId, float]],
    matched: list[set[PointId]],
    score_threshold: float | None,
    limit: int,
    index_specs: Mapping[str, IndexSpec] | None = None,
) -> list[Hit]:
    """The best `limit` of `points` (id, payload) by the formula, ties in the given order.
    `prefetch_scores[i]` maps a point to its score in prefetch i; `matched[j]` holds the
    points matching `formula.conditions[j]`; a variable whose field has one of the
    `index_specs` reads the values that index holds (engine/query/formula_values.py).
    Raises BadRequest at the first point whose evaluation fails."""
    assert len(matched) == len(formula.conditions), (len(matched), len(formula.conditions))
    variables = Variables(index_specs or {})
    hits = []
    for point_id, payload in points:
        point = _Point(point_id, payload, prefetch_scores, matched, formula, variables)
        score = point.evaluate(formula.root)
        as_f32 = _as_f32(score)
        if not math.isfinite(as_f32):
            raise _non_finite(f"{rust_display(score)} as f32 = {rust_display(as_f32)}")
        if score_threshold is None or as_f32 >= score_threshold:
            hits.append(Hit(point_id, as_f32))
    hits.sort(key=lambda hit: -hit.score)
    return hits[:limit]


def rust_display(number: float) -> str:
    """Rust's `Display` of an f64: shortest round-trip digits, no exponent, `1` for 1.0."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return format(Decimal(repr(number)), "f").removesuffix(".0")


# ---- compiling ----------------------------------------------------------------------------


def _compile(expression: Expression, conditions: list[Condition]) -> Any:
    """Qdrant's `parse_and_convert`: depth first, in the tree's order."""
    if isinstance(expression, Constant):
        return expression
    if isinstance(expression, Variable):
        try:
            return parse_variable(expression.name)
        except ValueError as error:
            raise _failed_to_parse("variable ID", expression.name, str(error)) from None
    if isinstance(expression, ConditionTerm):
        conditions.append(expression.condition)
        return _Condition(len(conditions) - 1)
    if isinstance(expression, Datetime):
        key = instants.instant_key(expression.text)
        if key is None:
            raise _failed_to_parse("date-time", expression.text, chrono_date_error(expression.text))
        return _Datetime(_seconds_of(key))
    if isinstance(expression, GeoDistance | DatetimeKey):
        return expression
    if isinstance(expression, Mult):
        return Mult(tuple(_compile(factor, conditions) for factor in expression.factors))
    if isinstance(expression, Sum):
        return Sum(tuple(_compile(term, conditions) for term in expression.terms))
    if isinstance(expression, Unary):
        return Unary(expression.operation, _compile(expression.operand, conditions))
    if isinstance(expression, Div):
        left, right = _compile(expression.left, conditions), _compile(expression.right, conditions)
        return Div(left, right, expression.by_zero_default)
    if isinstance(expression, Pow):
        return Pow(_compile(expression.base, conditions), _compile(expression.exponent, conditions))
    assert isinstance(expression, Decay), expression
    lambda_ = _decay_lambda(expression)
    x = _compile(expression.x, conditions)
    target = None if expression.target is None else _compile(expression.target, conditions)
    return _Decay(expression.kind, x, target, lambda_)


def _decay_lambda(decay: Decay) -> float:
    """The decay's midpoint and scale as one constant (`decay_params_to_lambda`)."""
    midpoint = DECAY_MIDPOINT_DEFAULT if decay.midpoint is None else decay.midpoint
    scale = DECAY_SCALE_DEFAULT if decay.scale is None else decay.scale
    if decay.kind == "lin" and not 0.0 <= midpoint <= 1.0:
        raise BadRequest(
            "Validation failed: Linear decay midpoint should be in the range [0.0, 1.0], "
            f"got {rust_display(midpoint)}."
        )
    if decay.kind != "lin" and not 0.0 < midpoint < 1.0:
        raise BadRequest(
            "Validation failed: Decay midpoint should be in the range (0.0, 1.0), "
            f"got {rust_display(midpoint)}."
        )
    if not scale > 0.0:
        raise BadRequest(
            f"Validation failed: Decay scale should be non-zero positive, got {rust_display(scale)}."
        )
    if decay.kind == "lin":
        return (1.0 - midpoint) / scale
    if decay.kind == "exp":
        return math.log(midpoint) / scale
    return math.log(midpoint) / (scale * scale)  # Rust powi(2): one multiplication


def chrono_date_error(text: str) -> str:
    """chrono's error for `text` read as `%Y-%m-%d`, Qdrant's last datetime attempt."""
    rest = text
    for position, (low, high, width) in enumerate(((None, None, 4), (1, 12, 2), (1, 31, 2))):
        if position:
            if not rest:
                return CHRONO_TOO_SHORT
            if rest[0] != "-":
                return CHRONO_INVALID
            rest = rest[1:]
        rest = rest.lstrip()
        if position == 0 and rest[:1] in ("-", "+"):
            rest, width = rest[1:], len(rest)
        digits = len(rest[:width]) - len(rest[:width].lstrip("0123456789"))
        if not rest:
            return CHRONO_TOO_SHORT
        if digits == 0:
            return CHRONO_INVALID
        value, rest = int(rest[:digits]), rest[digits:]
        if low is not None and not low <= value <= high:
            return CHRONO_OUT_OF_RANGE
    return CHRONO_TOO_LONG if rest else CHRONO_OUT_OF_RANGE


# ---- evaluating ---------------------------------------------------------------------------


class _Point:
    """One point's evaluation: its payload, its prefetch scores, its condition matches."""

    def __init__(
        self,
        point_id: PointId,
        payload: dict[str, Any],
        prefetch_scores: list[dict[PointId, float]],
        matched: list[set[PointId]],
        formula: CompiledFormula,
        variables: Variables,
    ) -> None:
        self.point_id = point_id
        self.payload = payload
        self.prefetch_scores = prefetch_scores
        self.matched = matched
        self.formula = formula
        self.variables = variables

    def evaluate(self, node: Any) -> float:
        # Branches in the order of Qdrant's `eval_expression`; nothing here swallows an error.
        if isinstance(node, Constant):
            return node.value
        if isinstance(node, ScoreOf):
            return self._score(node.index)
        if isinstance(node, PayloadPath):
            return self._payload_number(node)
        if isinstance(node, _Condition):
            return 1.0 if self.point_id in self.matched[node.index] else 0.0
        if isinstance(node, GeoDistance):
            point = self._payload_value(node.to, "geo point", geo_point_of)
            return haversine_m(node.origin.lon, node.origin.lat, point.lon, point.lat)
        if isinstance(node, _Datetime):
            return node.seconds
        if isinstance(node, DatetimeKey):
            return _seconds_of(self._payload_value(node.key, "datetime", _instant_key_of))
        if isinstance(node, Mult):
            return self._product(node.factors)
        if isinstance(node, Sum):
            return _sequential_sum(self.evaluate(term) for term in node.terms)
        if isinstance(node, Div):
            return self._quotient(node)
        if isinstance(node, Unary):
            return _unary(node.operation, self.evaluate(node.operand))
        if isinstance(node, Pow):
            base, exponent = self.evaluate(node.base), self.evaluate(node.exponent)
            power = _ieee(lambda: np.power(np.float64(base), np.float64(exponent)))
            if not math.isfinite(power):
                raise _non_finite(
                    f"{rust_display(base)}^{rust_display(exponent)} = {rust_display(power)}"
                )
            return power
        assert isinstance(node, _Decay), node
        return self._decay(node)

    def _score(self, index: int) -> float:
        if index < len(self.prefetch_scores) and self.point_id in self.prefetch_scores[index]:
            return float(self.prefetch_scores[index][self.point_id])
        default = self.formula.score_defaults.get(index)
        # A default that is not a number counts as none (serde_json's `as_f64`).
        return float(default) if _is_number(default) else 0.0

    def _product(self, factors: tuple[Any, ...]) -> float:
        product = 1.0
        for factor in factors:
            value = self.evaluate(factor)
            if value == 0.0:
                return 0.0  # Qdrant stops here: later factors are not evaluated
            product *= value
        return product

    def _quotient(self, node: Div) -> float:
        left = self.evaluate(node.left)
        if left == 0.0:
            return 0.0  # the right side is not evaluated
        right = self.evaluate(node.right)
        if right == 0.0 and node.by_zero_default is not None:
            return node.by_zero_default
        quotient = _ieee(lambda: np.float64(left) / np.float64(right))
        if not math.isfinite(quotient):
            raise _non_finite(
                f"{rust_display(left)}/{rust_display(right)} = {rust_display(quotient)}"
            )
        return quotient

    def _decay(self, node: _Decay) -> float:
        x = self.evaluate(node.x)
        target = 0.0 if node.target is None else self.evaluate(node.target)
        if node.kind == "exp":
            return _ieee(lambda: np.exp(np.float64(node.lambda_ * abs(x - target))))
        if node.kind == "gauss":
            diff = x - target
            return _ieee(lambda: np.exp(np.float64(node.lambda_ * diff * diff)))
        # Rust's f64::max ignores NaN, as np.fmax does.
        return _ieee(lambda: np.fmax(-node.lambda_ * abs(x - target) + 1.0, 0.0))

    def _payload_number(self, path: PayloadPath) -> float:
        return self._payload_value(path, "number", _number_of)

    def _payload_value(self, path: PayloadPath, expected: str, convert: Any) -> Any:
        """The value at `path` (or its default) converted, else Qdrant's VariableTypeError."""
        value = self.variables.value(path, self.payload)
        if value is MISSING:
            value = self.formula.payload_defaults.get(path, MISSING)
        if value is MISSING:
            raise _variable_type_error(path, expected, "No value found in a payload nor defaults")
        try:
            return convert(value)
        except ValueError as error:
            raise _variable_type_error(path, expected, str(error)) from None


def _number_of(value: Any) -> float:
    if not _is_number(value):
        raise ValueError("Value is not a number")
    return float(value)


def _instant_key_of(value: Any) -> int:
    if type(value) is not str:
        raise ValueError("Value is not a string")
    key = instants.instant_key(value)
    if key is None:
        raise ValueError(chrono_date_error(value))
    return key


def geo_point_of(value: Any) -> GeoPoint:
    """serde_json's `from_value::<GeoPoint>` (through GeoPointShadow {lon, lat})."""
    if type(value) is list:
        # serde reads a struct from a sequence too: [lon, lat].
        if len(value) < 2:
            raise ValueError(
                f"invalid length {len(value)}, expected struct GeoPointShadow with 2 elements"
            )
        fields = {"lon": value[0], "lat": value[1]}
    elif type(value) is dict:
        fields = value
    else:
        raise ValueError(
            f"invalid type: {_serde_unexpected(value)}, expected struct GeoPointShadow"
        )
    for name in ("lon", "lat"):
        if name not in fields:
            raise ValueError(f"missing field `{name}`")
        if not _is_number(fields[name]):
            raise ValueError(f"invalid type: {_serde_unexpected(fields[name])}, expected f64")
    lon, lat = float(fields["lon"]), float(fields["lat"])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(
            f"Wrong format of GeoPoint payload: expected `lat` = {rust_display(lat)} within "
            f"[-90;90] and `lon` = {rust_display(lon)} within [-180;180]"
        )
    return GeoPoint(lon=lon, lat=lat)


def _serde_unexpected(value: Any) -> str:
    """serde's `Unexpected` rendering of a JSON value."""
    if value is None:
        return "null"
    if type(value) is bool:
        return f"boolean `{'true' if value else 'false'}`"
    if type(value) is int:
        return f"integer `{value}`"
    if type(value) is float:
        text = rust_display(value)
        return f"floating point `{text if '.' in text or 'e' in text else text + '.0'}`"
    if type(value) is str:
        return f'string "{value}"'
    return "sequence" if type(value) is list else "map"


def _unary(operation: str, value: float) -> float:
    if operation == "neg":
        return -value
    if operation == "abs":
        return abs(value)
    function, shown = {
        "sqrt": (np.sqrt, "√{}"),
        "exp": (np.exp, "exp({})"),
        "log10": (np.log10, "log10({})"),
        "ln": (np.log, "ln({})"),
    }[operation]
    result = _ieee(lambda: function(np.float64(value)))
    if not math.isfinite(result):
        raise _non_finite(f"{shown.format(rust_display(value))} = {rust_display(result)}")
    return result


def _ieee(compute: Any) -> float:
    """An f64 operation with IEEE results (inf, NaN) instead of Python's exceptions."""
    with np.errstate(all="ignore"):
        return float(compute())


def _as_f32(value: float) -> float:
    """Rust's `as f32`: the nearest f32, infinite past its range."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _sequential_sum(values: Iterable[float]) -> float:
    total = 0.0  # left to right, as Rust's try_fold: not math.fsum's exact sum
    for value in values:
        total += value
    return total


def _seconds_of(key: int) -> float:
    """An instant key as Qdrant's datetime score: microseconds since the epoch / 1e6."""
    seconds, nanos = divmod(key, instants.INSTANT_KEY_SPAN)
    return float(seconds * 1_000_000 + nanos // 1000) / 1_000_000.0


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _variable_type_error(path: PayloadPath, expected: str, description: str) -> BadRequest:
    return BadRequest(
        f"Expected {expected} value for {path} in the payload and/or in the formula defaults. "
        f"Error: {description}"
    )


def _non_finite(expression: str) -> BadRequest:
    return BadRequest(f"The expression {expression} produced a non-finite number")


def _failed_to_parse(what: str, value: str, message: str) -> BadRequest:
    return BadRequest(f"Validation failed: failed to parse {what} {value}: {message}")
