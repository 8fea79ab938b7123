"""What the crash test sends and what came of it: operations, outcomes, point states.

Owns: `Op` (one HTTP request of a writer: its kind, ids, new data, and what the server
answered) and `apply`, what each kind does to one point, as Qdrant 1.19 defines it:
upsert replaces a point whole, `insert_only` skips ids that exist, `update_only` skips ids
that don't, delete removes, payload edits merge, replace, delete keys or clear.
Not here: generating ops (workload.py), judging the server's state (model.py).

A point's state is a hashable value, `Point = (payload as canonical JSON, ((vector name,
value), ...))`, or None when the point is absent, so that sets of possible states are cheap
to build and compare. A value is a tuple of float32 numbers (as floats) for a plain vector,
or for a multivector a tuple of such rows, so a matrix that lost a row or a number is a
different state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

Vector = tuple[float, ...] | tuple[tuple[float, ...], ...]  # a multivector: its rows
Point = tuple[str, tuple[tuple[str, Vector], ...]]
State = Point | None

UNNAMED = ""  # the name under which a collection's single unnamed vector is kept


class Outcome(str, enum.Enum):
    """What a writer learned about one request."""

    PENDING = "pending"  # not sent yet
    ACKNOWLEDGED = "acknowledged"  # wait=false answered: durable
    COMPLETED = "completed"  # wait=true answered: durable and applied
    WAIT_TIMEOUT = "wait_timeout"  # wait=true with a timeout that ran out: durable
    IN_FLIGHT = "in_flight"  # sent, never answered: the connection broke (the kill)
    NOT_SENT = "not_sent"  # the connection was refused: the server never saw the request
    REFUSED = "refused"  # 503 backpressure: refused before it reached the WAL
    FAILED = "failed"  # any other answer, or no answer in time: unexpected, fate unknown


ACKED = frozenset({Outcome.ACKNOWLEDGED, Outcome.COMPLETED, Outcome.WAIT_TIMEOUT})
# Ops that may or may not be in the log: each must be all-or-nothing after a restart.
UNCERTAIN = frozenset({Outcome.IN_FLIGHT, Outcome.FAILED})


class Kind(str, enum.Enum):
    UPSERT = "upsert"
    DELETE = "delete"
    SET_PAYLOAD = "set_payload"
    OVERWRITE_PAYLOAD = "overwrite_payload"
    DELETE_PAYLOAD = "delete_payload"
    CLEAR_PAYLOAD = "clear_payload"


PAYLOAD_KINDS = (Kind.SET_PAYLOAD, Kind.OVERWRITE_PAYLOAD, Kind.DELETE_PAYLOAD, Kind.CLEAR_PAYLOAD)


@dataclass(eq=False)  # identity equality: ops go into sets and dict keys
class Op:
    """One request of one writer and its outcome. `op_id` is known only when acknowledged."""

    collection: str
    kind: Kind
    ids: tuple[int, ...]
    writer_index: int
    seq: int
    points: dict[int, Point] = field(default_factory=dict)  # upsert: the new point per id
    update_mode: str = "upsert"
    payload: dict[str, Any] | None = None  # set/overwrite payload
    keys: tuple[str, ...] = ()  # delete_payload
    form: str = ""  # the body form or endpoint, for the report
    is_wait: bool = True
    method: str = "PUT"
    path: str = ""
    body: bytes = b""
    sent_s: float = 0.0
    answered_s: float = 0.0
    outcome: Outcome = Outcome.PENDING
    op_id: int | None = None
    error: str | None = None

    @property
    def is_acked(self) -> bool:
        return self.outcome in ACKED

    def summary(self) -> dict[str, Any]:
        """The op for the report: enough to find it in a server log and re-create it."""
        return {
            "collection": self.collection,
            "op_id": self.op_id,
            "kind": self.kind.value,
            "form": self.form,
            "update_mode": self.update_mode,
            "wait": self.is_wait,
            "outcome": self.outcome.value,
            "writer": self.writer_index,
            "seq": self.seq,
            "ids": list(self.ids),
            **({"error": self.error} if self.error else {}),
        }


def make_point(payload: Mapping[str, Any] | None, vectors: Mapping[str, Iterable[Any]]) -> Point:
    """The canonical state of a point: sorted-key payload JSON (None is `{}`, as Keel and
    Qdrant answer it) and each vector, or each row of a multivector, rounded to float32, the
    precision Keel stores."""
    payload_json = orjson.dumps(payload or {}, option=orjson.OPT_SORT_KEYS).decode()
    named = tuple(sorted((name, _float32(values)) for name, values in vectors.items()))
    return payload_json, named


def point_payload(point: Point) -> dict[str, Any]:
    return orjson.loads(point[0])


def point_json(state: State) -> dict[str, Any] | None:
    """A state as JSON for the report."""
    if state is None:
        return None
    vectors = {
        name: [list(row) if isinstance(row, tuple) else row for row in value]
        for name, value in state[1]
    }
    return {"payload": point_payload(state), "vector": vectors}


def apply(op: Op, point_id: int, state: State) -> State:
    """The state of `point_id` after `op`, given its state before."""
    assert point_id in op.ids, (point_id, op.ids)
    if op.kind is Kind.UPSERT:
        if op.update_mode == "insert_only" and state is not None:
            return state
        if op.update_mode == "update_only" and state is None:
            return None
        return op.points[point_id]
    if op.kind is Kind.DELETE:
        return None
    if state is None:
        # Payload edits only target ids that always exist (workload.py); Qdrant answers an
        # error for a missing one, and a missing point stays missing either way.
        return None
    return _with_payload(state, _edited_payload(op, point_payload(state)))


def _float32(values: Iterable[Any]) -> Vector:
    """A vector as float32 numbers; a list of lists (a multivector) row by row, so that rows
    of different lengths (a torn matrix read back) still make a state, not an error."""
    values = list(values)
    if values and isinstance(values[0], list | tuple):
        return tuple(tuple(np.asarray(list(row), dtype=np.float32).tolist()) for row in values)
    return tuple(np.asarray(values, dtype=np.float32).tolist())


def _edited_payload(op: Op, payload: dict[str, Any]) -> dict[str, Any]:
    if op.kind is Kind.SET_PAYLOAD:
        assert op.payload is not None
        return {**payload, **op.payload}
    if op.kind is Kind.OVERWRITE_PAYLOAD:
        assert op.payload is not None
        return dict(op.payload)
    if op.kind is Kind.DELETE_PAYLOAD:
        return {key: value for key, value in payload.items() if key not in op.keys}
    assert op.kind is Kind.CLEAR_PAYLOAD, op.kind
    return {}


def _with_payload(point: Point, payload: dict[str, Any]) -> Point:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode(), point[1]
