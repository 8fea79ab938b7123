"""The load: two collections, ops drawn from a seeded RNG, and writers that send them.

Owns: the collections the test creates, the op mix, the request bodies, and the writers,
which record every request's outcome (tools/crashtest/ops.py) for the checker.
Not here: the server process (target.py), judging the result (model.py).

The mix, per op: a collection (one unnamed 8-d vector, or three named vectors `text` 4-d,
`image` 6-d and the multivector `colbert`, a matrix of 1 to 3 rows of 4, compared by MaxSim;
all Euclid); then an upsert in one of the three body forms (a points list with an unnamed
vector, a points list with named vectors, sometimes only some of them, or the columnar
`batch`), with `update_mode` absent, `upsert`, `insert_only` or `update_only`; a delete by
ids; or a payload edit (set, overwrite, delete keys, clear) when the server implements it.
Each op has `wait=true` or `false`, sometimes `ordering` and `timeout`.

Ids are drawn from a small space so that ops collide: ids below `stable_count` are created
at setup and never deleted, and only they get payload edits (so an edit never meets a
missing point, where Qdrant answers an error); deletes draw from the ids above.
Vector components (multivector rows' too) are multiples of 1/4096, exact in float32 and in
JSON.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from .client import JSON_HEADERS, SendCount
from .ops import PAYLOAD_KINDS, UNNAMED, Kind, Op, Outcome, make_point

POINTS_PER_UPSERT_MAX = 8
POINTS_PER_EDIT_MAX = 4
OPS_PER_WRITER_MAX = 1_000_000  # a cycle ends long before; this only bounds the loop
REFUSED_PAUSE_S = 0.05  # pacing after a 503 (backpressure), so the writer doesn't spin
VECTOR_STEPS = 4096
MULTIVECTOR_ROWS_MAX = 3
TEXTS = ("", "Berlin", "ü", "日本語", "😀", 'quote " and \\ backslash')
PAYLOAD_KEYS = ("n", "f", "t", "l", "o")
PAYLOAD_ENDPOINTS = {
    Kind.SET_PAYLOAD: ("POST", "/collections/{collection}/points/payload"),
    Kind.OVERWRITE_PAYLOAD: ("PUT", "/collections/{collection}/points/payload"),
    Kind.DELETE_PAYLOAD: ("POST", "/collections/{collection}/points/payload/delete"),
    Kind.CLEAR_PAYLOAD: ("POST", "/collections/{collection}/points/payload/clear"),
}
assert set(PAYLOAD_ENDPOINTS) == set(PAYLOAD_KINDS)


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    vectors: dict[str, int]  # vector name (UNNAMED for the single unnamed one) -> size
    multivector_names: frozenset[str] = frozenset()  # values are matrices of rows of `size`

    def __post_init__(self) -> None:
        assert self.multivector_names <= set(self.vectors), self

    @property
    def is_named(self) -> bool:
        return UNNAMED not in self.vectors

    def create_body(self) -> dict[str, Any]:
        configs = {name: self._vector_config(name) for name in self.vectors}
        return {"vectors": configs if self.is_named else configs[UNNAMED]}

    def _vector_config(self, name: str) -> dict[str, Any]:
        config: dict[str, Any] = {"size": self.vectors[name], "distance": "Euclid"}
        if name in self.multivector_names:
            config["multivector_config"] = {"comparator": "max_sim"}
        return config


COLLECTIONS = (
    CollectionSpec("crashtest_plain", {UNNAMED: 8}),
    CollectionSpec(
        "crashtest_named", {"text": 4, "image": 6, "colbert": 4}, frozenset({"colbert"})
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in COLLECTIONS}


@dataclass(frozen=True)
class Plan:
    """What writers may do: the id space and the payload edits the server implements."""

    id_space: int
    payload_kinds: tuple[Kind, ...] = ()

    def __post_init__(self) -> None:
        # Every op must find enough distinct ids of its kind in each part of the space.
        assert self.stable_count >= POINTS_PER_EDIT_MAX, self
        assert self.id_space - self.stable_count >= POINTS_PER_UPSERT_MAX, self

    @property
    def stable_count(self) -> int:
        return self.id_space // 5

    @property
    def marker_id(self) -> int:
        """An id outside the writers' space, written by the checker after each restart."""
        return self.id_space


def seed_ops(plan: Plan, rng: random.Random) -> list[Op]:
    """Upserts creating the stable ids of each collection, sent once at setup."""
    stable_ids = tuple(range(plan.stable_count))
    ops = []
    for spec in COLLECTIONS:
        ops.append(_upsert(rng, spec, stable_ids, writer_index=-1, seq=0, form="batch"))
    return ops


def generate_op(rng: random.Random, plan: Plan, writer_index: int, seq: int) -> Op:
    """The next op of a writer; depends only on the RNG's state, never on the server."""
    spec = rng.choice(COLLECTIONS)
    roll = rng.random()
    if roll < 0.15:
        volatile_ids = range(plan.stable_count, plan.id_space)
        ids = tuple(rng.sample(volatile_ids, rng.randint(1, POINTS_PER_EDIT_MAX)))
        op = Op(spec.name, Kind.DELETE, ids, writer_index, seq, form="delete")
        op.method, op.path = "POST", f"/collections/{spec.name}/points/delete"
        op.body = orjson.dumps({"points": list(ids)})
    elif roll < 0.35 and plan.payload_kinds:
        op = _payload_edit(rng, plan, spec, writer_index, seq)
    else:
        count = rng.randint(1, POINTS_PER_UPSERT_MAX)
        ids = tuple(rng.sample(range(plan.id_space), count))
        op = _upsert(rng, spec, ids, writer_index, seq, form=rng.choice(("points", "batch")))
    _add_query(rng, op)
    return op


async def run_writer(
    session: aiohttp.ClientSession,
    url: str,
    plan: Plan,
    rng: random.Random,
    writer_index: int,
    ops: list[Op],
    stop: asyncio.Event,
) -> None:
    """Send ops one at a time until `stop` is set or the server goes away."""
    for seq in range(OPS_PER_WRITER_MAX):
        if stop.is_set():
            return
        op = generate_op(rng, plan, writer_index, seq)
        ops.append(op)
        await send(session, url, op)
        if op.outcome in (Outcome.IN_FLIGHT, Outcome.NOT_SENT, Outcome.FAILED):
            return
        if op.outcome is Outcome.REFUSED:
            await asyncio.sleep(REFUSED_PAUSE_S)


async def send(session: aiohttp.ClientSession, url: str, op: Op) -> None:
    """Send `op` and record its outcome; never raises for a broken connection."""
    sends = SendCount()
    op.sent_s = time.monotonic()
    try:
        async with session.request(
            op.method, url + op.path, data=op.body, headers=JSON_HEADERS, trace_request_ctx=sends
        ) as response:
            raw = await response.read()
    except aiohttp.ClientConnectorError as error:
        # Refused at connect. Only if no attempt got as far as sending did the request
        # never leave (aiohttp retries a PUT once after a dropped connection).
        is_unsent = sends.count == 0
        op.outcome = Outcome.NOT_SENT if is_unsent else Outcome.IN_FLIGHT
        op.error = type(error).__name__
    except TimeoutError:
        op.outcome, op.error = Outcome.FAILED, "no answer within the request timeout"
    except (aiohttp.ClientError, OSError) as error:
        op.outcome, op.error = Outcome.IN_FLIGHT, type(error).__name__
    except asyncio.CancelledError:
        op.outcome, op.error = Outcome.IN_FLIGHT, "cancelled"
        raise
    else:
        _record_answer(op, response.status, raw)
        if sends.count > 1:
            # Answered after a re-send: the first attempt may have been applied too, at an
            # op id nobody was told, which no model can check.
            op.outcome = Outcome.FAILED
            op.error = f"aiohttp sent the request {sends.count} times after a dropped connection"
    finally:
        # For an answer, when it arrived; for a broken connection, when the break was seen.
        op.answered_s = time.monotonic()
        op.body = b""  # the op's fields say everything the checker needs


def random_vector(rng: random.Random, size: int) -> list[float]:
    """Components in [-1, 1], multiples of 1/4096: exact in float32 and in JSON."""
    return [rng.randint(-VECTOR_STEPS, VECTOR_STEPS) / VECTOR_STEPS for _ in range(size)]


def _record_answer(op: Op, status: int, raw: bytes) -> None:
    if status == 503:
        op.outcome = Outcome.REFUSED
        return
    try:
        result = orjson.loads(raw)["result"] if status == 200 else None
        op.outcome = Outcome(result["status"])
        op.op_id = int(result["operation_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        op.outcome = Outcome.FAILED
        op.error = f"HTTP {status}: {raw[:300].decode(errors='replace')}"
        return
    if not op.is_acked:
        op.outcome, op.error = Outcome.FAILED, f"unexpected status in {raw[:300]!r}"


def _upsert(
    rng: random.Random,
    spec: CollectionSpec,
    ids: tuple[int, ...],
    writer_index: int,
    seq: int,
    form: str,
) -> Op:
    is_batch = form == "batch"
    payloads = [_payload(rng, writer_index, seq) if rng.random() < 0.9 else None for _ in ids]
    vectors = [_vectors(rng, spec, is_subset_allowed=not is_batch) for _ in ids]
    op = Op(spec.name, Kind.UPSERT, ids, writer_index, seq)
    op.form = ("batch" if is_batch else "points") + ("_named" if spec.is_named else "")
    op.points = {pid: make_point(p, v) for pid, p, v in zip(ids, payloads, vectors)}
    body: dict[str, Any] = (
        _batch_body(spec, ids, payloads, vectors)
        if is_batch
        else {"points": [_point_json(spec, *point) for point in zip(ids, payloads, vectors)]}
    )
    mode = rng.choice((None, "upsert", "insert_only", "update_only", "insert_only", "update_only"))
    if writer_index >= 0 and mode is not None:
        body["update_mode"] = mode
        op.update_mode = mode
    op.method, op.path, op.body = "PUT", f"/collections/{spec.name}/points", orjson.dumps(body)
    return op


def _payload_edit(
    rng: random.Random, plan: Plan, spec: CollectionSpec, writer_index: int, seq: int
) -> Op:
    kind = rng.choice(plan.payload_kinds)
    ids = tuple(rng.sample(range(plan.stable_count), rng.randint(1, POINTS_PER_EDIT_MAX)))
    op = Op(spec.name, kind, ids, writer_index, seq, form=kind.value)
    body: dict[str, Any] = {"points": list(ids)}
    if kind in (Kind.SET_PAYLOAD, Kind.OVERWRITE_PAYLOAD):
        op.payload = _payload(rng, writer_index, seq)
        body["payload"] = op.payload
    if kind is Kind.DELETE_PAYLOAD:
        op.keys = tuple(rng.sample(PAYLOAD_KEYS, rng.randint(1, 3)))
        body["keys"] = list(op.keys)
    op.method, op.path = PAYLOAD_ENDPOINTS[kind]
    op.path = op.path.format(collection=spec.name)
    op.body = orjson.dumps(body)
    return op


def _add_query(rng: random.Random, op: Op) -> None:
    op.is_wait = rng.random() < 0.5
    query = [f"wait={str(op.is_wait).lower()}"]
    ordering = rng.choice((None, None, "weak", "medium", "strong"))
    if ordering is not None:
        query.append(f"ordering={ordering}")
    if op.is_wait and rng.random() < 0.1:
        query.append(f"timeout={rng.choice((1, 5, 30))}")
    op.path += "?" + "&".join(query)


def _payload(rng: random.Random, writer_index: int, seq: int) -> dict[str, Any]:
    """A payload naming its writer and op, with a random subset of the shared keys."""
    values = {
        "n": rng.randint(-(2**40), 2**40),
        "f": rng.random(),
        "t": rng.choice(TEXTS),
        "l": [rng.randint(0, 9) for _ in range(rng.randint(0, 3))],
        "o": {"k": rng.randint(0, 3), "deep": {"b": rng.random() < 0.5}},
    }
    payload = {key: value for key, value in values.items() if rng.random() < 0.7}
    return {"w": writer_index, "s": seq, **payload}


def _vectors(rng: random.Random, spec: CollectionSpec, is_subset_allowed: bool) -> dict[str, Any]:
    """A point's vectors: one per name, a matrix of 1 to 3 rows for a multivector name."""
    names = list(spec.vectors)
    if spec.is_named and is_subset_allowed and rng.random() < 0.15:
        # A point may carry only some of the named vectors.
        names = rng.sample(names, rng.randint(1, len(names) - 1))
    vectors: dict[str, Any] = {}
    for name, size in spec.vectors.items():
        if name not in names:
            continue
        if name in spec.multivector_names:
            row_count = rng.randint(1, MULTIVECTOR_ROWS_MAX)
            vectors[name] = [random_vector(rng, size) for _ in range(row_count)]
        else:
            vectors[name] = random_vector(rng, size)
    return vectors


def _point_json(
    spec: CollectionSpec, point_id: int, payload: dict | None, vectors: dict[str, Any]
) -> dict[str, Any]:
    point: dict[str, Any] = {
        "id": point_id,
        "vector": vectors if spec.is_named else vectors[UNNAMED],
    }
    if payload is not None:
        point["payload"] = payload
    return point


def _batch_body(
    spec: CollectionSpec,
    ids: tuple[int, ...],
    payloads: list[dict | None],
    vectors: list[dict[str, Any]],
) -> dict[str, Any]:
    # A multivector's column is a list of matrices, one per point.
    columns: Any = (
        {name: [v[name] for v in vectors] for name in spec.vectors}
        if spec.is_named
        else [v[UNNAMED] for v in vectors]
    )
    return {"batch": {"ids": list(ids), "vectors": columns, "payloads": payloads}}
