"""Hostile-input fuzzing of the HTTP API: whatever a client sends, Keel answers 2xx or 4xx in
Qdrant's error shape (never a 5xx, never a hang), a refused request writes nothing, and what
was acknowledged survives closing and reopening the storage.

Method: each test builds a real Catalog in tmp_path behind create_app (as conftest's fixtures
do) and drives it from a sync hypothesis test through `Harness`, which runs every request on
its own event loop with a deadline, so a hang fails the example instead of the run. Every
answer goes through conftest's `Api`, so it is also checked against Qdrant's OpenAPI spec.
Around each request the harness reads the collection's state (stored points, points count,
config, payload schema, aliases, collection names) and the next operation_id (`next_op_id`
consumes one by deleting an unused id, hence `+ 1` below); after a 4xx all of it must be
as before. Bodies are mostly the seed's valid bodies with a few random mutations, so most
examples get past JSON parsing into the parsers and the engine's validation.

501 is allowed: it is Keel's honest answer for a part of Qdrant's API it does not implement
(NotImplementedYet), and it writes nothing either. `derandomize=True` keeps CI stable; for a
longer hunt set KEEL_FUZZ_EXAMPLES (default 100) and KEEL_FUZZ_RANDOM=1 (a fresh seed each run).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.catalog import Catalog
from engine.limits import EngineSettings
from server.app import create_app
from tests.api import seed_bodies
from tests.api.conftest import KEEL_VERSION, Api, ApiResponse

REQUEST_TIMEOUT_S = 20.0  # far above any honest answer here: past it, Keel hung
NOT_IMPLEMENTED_STATUS = 501
MISSING_POINT_ERROR = re.compile(r"Not found: No point with id \S+ found$")
COLLECTION = "/collections/{collection_name}"
POINTS = COLLECTION + "/points"
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("KEEL_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not os.environ.get("KEEL_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The collection every points test writes to: one unnamed dense vector and a named sparse one
# would need two collections; "c" has the seed's unnamed vector, "named" the seed's named ones.
DENSE_CONFIG = {"vectors": {"size": 4, "distance": "Dot"}}
NAMED_CONFIG = {
    "vectors": {
        "text": {"size": 4, "distance": "Cosine"},
        "image": {"size": 4, "distance": "Euclid"},
    },
    "sparse_vectors": {"keywords": {}},
}

# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------

SPECIAL_STRINGS = (
    "",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "1e999",
    "-0",
    "0x10",
    "1",
    "true",
    "null",
    "..",
    "../..",
    "a.b",
    "a[]",
    "a[0].b",
    "$.x",
    "\x00",
    "\ud800",
    "é",
    "😀" * 3,
    "x" * 300,
    "550e8400-e29b-41d4-a716-446655440000",
    "550E8400E29B41D4A716446655440000",
    "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
    "{550e8400-e29b-41d4-a716-446655440000}",
    "Dot",
    "Cosine",
    "keyword",
    "integer",
    "rrf",
    "dbsf",
    "asc",
    "desc",
)
SPECIAL_NUMBERS = (
    0,
    -1,
    1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**30,
    0.5,
    -0.0,
    1e308,
    -1e308,
    5e-324,
)

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(SPECIAL_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(SPECIAL_STRINGS),
    st.text(max_size=12),
)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(SPECIAL_STRINGS), st.text(max_size=6)), children, max_size=4
        ),
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, seed: Any, extra_keys: tuple[str, ...] = ()) -> Any:
    """`seed` with one or two random edits: a value replaced, a key dropped or added, a
    list shortened, grown or wrapped, at a random depth."""
    value = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        value = _mutate_once(draw, value, extra_keys)
    return value


def _mutate_once(draw: st.DrawFn, value: Any, extra_keys: tuple[str, ...]) -> Any:
    # Mostly edit deep inside, so most examples reach the parsers past the body's outer shape.
    descend = draw(st.integers(min_value=0, max_value=7)) > 0
    if isinstance(value, dict) and value and descend:
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(("descend", "descend", "descend", "drop", "add")))
        if action == "drop":
            del value[key]
        elif action == "add":
            new_key = draw(
                st.one_of(st.sampled_from(extra_keys or ("extra",)), st.text(max_size=6))
            )
            value[new_key] = draw(json_values)
        else:
            value[key] = _mutate_once(draw, value[key], extra_keys)
        return value
    if isinstance(value, list) and value and descend:
        index = draw(st.integers(min_value=0, max_value=len(value) - 1))
        action = draw(st.sampled_from(("descend", "descend", "descend", "drop", "duplicate")))
        if action == "drop":
            del value[index]
        elif action == "duplicate":
            value.append(copy.deepcopy(value[index]))
        else:
            value[index] = _mutate_once(draw, value[index], extra_keys)
        return value
    return draw(
        st.one_of(
            json_values,
            st.just([value]),
            st.just({"value": value}),
            st.builds(_nested, st.just(value), st.integers(min_value=1, max_value=40)),
        )
    )


def _nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def path_segment(text: str) -> str:
    """`text` percent-encoded as one path segment (a lone surrogate as its invalid UTF-8
    bytes); `.` and `..` get more dots, since the client would resolve them away."""
    segment = quote(text, safe="", errors="surrogatepass")
    return segment + "..." if segment in (".", "..") else segment


def dumps(value: Any) -> bytes:
    """JSON as a hostile client writes it: ints past 64 bits stay exact, lone surrogates are
    escaped (orjson refuses both, the standard library writes them)."""
    return json.dumps(value, allow_nan=True).encode()


SEED_VECTOR = [0.05, 0.61, 0.76, 0.74]
SEED_BODIES = {
    "single": json.loads(seed_bodies.SEED_SINGLE),
    "multiple": json.loads(seed_bodies.SEED_MULTIPLE),
    "batch": json.loads(seed_bodies.SEED_BATCH),
}
NAMED_SEED = json.loads(seed_bodies.SEED_NAMED)
NAMED_SEED["points"][0]["vector"]["keywords"] = {"indices": [1, 7], "values": [0.5, 0.25]}
UPSERT_EXTRA_KEYS = ("update_filter", "update_mode", "shard_key", "vector", "ids", "payloads")

FILTER_KEYS = ("must", "should", "must_not", "min_should")
CONDITION_KEYS = (
    "key",
    "match",
    "range",
    "geo_bounding_box",
    "geo_radius",
    "geo_polygon",
    "values_count",
    "is_empty",
    "is_null",
    "has_id",
    "nested",
    "has_vector",
    "filter",
)
MATCH_KEYS = ("value", "any", "except", "text", "phrase", "text_any")
RANGE_KEYS = ("gt", "gte", "lt", "lte")
field_keys = st.sampled_from(("city", "country", "population", "a.b", "a[]", "a[].b", "", ".."))


def _geo_point() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({"lon": leaves, "lat": leaves})


def _field_condition(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    match = st.dictionaries(
        st.sampled_from(MATCH_KEYS), st.one_of(leaves, st.lists(leaves, max_size=3)), max_size=2
    )
    checks = st.fixed_dictionaries(
        {"key": st.one_of(field_keys, leaves)},
        optional={
            "match": st.one_of(match, leaves),
            "range": st.one_of(
                st.dictionaries(st.sampled_from(RANGE_KEYS), leaves, max_size=3), leaves
            ),
            "geo_radius": st.fixed_dictionaries({"center": _geo_point(), "radius": leaves}),
            "geo_bounding_box": st.fixed_dictionaries(
                {"top_left": _geo_point(), "bottom_right": _geo_point()}
            ),
            "geo_polygon": st.fixed_dictionaries(
                {"exterior": st.fixed_dictionaries({"points": st.lists(_geo_point(), max_size=5)})},
                optional={"interiors": st.one_of(leaves, st.lists(leaves, max_size=2))},
            ),
            "values_count": st.dictionaries(st.sampled_from(RANGE_KEYS), leaves, max_size=2),
        },
    )
    return checks


def _condition(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        _field_condition(children),
        st.fixed_dictionaries(
            {"is_empty": st.fixed_dictionaries({"key": st.one_of(field_keys, leaves)})}
        ),
        st.fixed_dictionaries(
            {"is_null": st.one_of(st.fixed_dictionaries({"key": field_keys}), leaves)}
        ),
        st.fixed_dictionaries({"has_id": st.one_of(st.lists(leaves, max_size=4), leaves)}),
        st.fixed_dictionaries(
            {"has_vector": st.one_of(st.sampled_from(("", "text", "x")), leaves)}
        ),
        st.fixed_dictionaries(
            {
                "nested": st.fixed_dictionaries(
                    {"key": st.one_of(field_keys, leaves), "filter": children}
                )
            }
        ),
        children,
        st.dictionaries(st.sampled_from(CONDITION_KEYS), leaves, max_size=2),
    )


filters = st.recursive(
    st.one_of(st.just({}), leaves),
    lambda children: st.dictionaries(
        st.sampled_from((*FILTER_KEYS, "extra")),
        st.one_of(
            _condition(children),
            st.lists(_condition(children), max_size=3),
            st.fixed_dictionaries(
                {"conditions": st.lists(_condition(children), max_size=3), "min_count": leaves}
            ),
            leaves,
        ),
        max_size=3,
    ),
    max_leaves=8,
)


def _deep_filter_json(depth: int) -> bytes:
    """A filter nested `depth` levels, as JSON text (the standard library's encoder would
    overflow first): a recursive parser must refuse it, not overflow."""
    leaf = b'{"must": [{"key": "city", "match": {"value": "Berlin"}}]}'
    return b'{"must": [' * depth + leaf + b"]}" * depth


# ---------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """What a refused request must leave as it was."""

    points: Any
    points_count: int | None
    config: Any
    payload_schema: Any
    next_op_id: int | None


class Harness:
    """A real Catalog behind create_app on a private event loop, called synchronously."""

    def __init__(self, storage_path: Path) -> None:
        self.storage_path = storage_path
        self.loop = asyncio.new_event_loop()
        self.catalog: Catalog | None = None
        self.client: TestClient | None = None
        self.api: Api | None = None
        self.states: dict[str, State] = {}
        self.answer_count_by_status: dict[int, int] = {}
        self.run(self._start())

    def run(self, coroutine: Any) -> Any:
        """Run `coroutine` to its end; a hang fails loudly instead of blocking the suite."""
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coroutine, REQUEST_TIMEOUT_S))
        except TimeoutError:
            raise AssertionError(f"Keel did not answer within {REQUEST_TIMEOUT_S} s") from None

    def call(self, method: str, template: str, **options: Any) -> ApiResponse:
        assert self.api is not None
        return self.run(self.api.call(method, template, **options))

    def create_collection(self, name: str, config: dict[str, Any]) -> None:
        response = self.call("PUT", COLLECTION, json=config, name=name)
        assert response.result is True
        self.states[name] = self.read_state(name)

    def upsert_seed(self, name: str, body: dict[str, Any]) -> None:
        response = self.call("PUT", POINTS, json=body, name=name, query={"wait": "true"})
        assert response.result["status"] == "completed"
        self.states[name] = self.read_state(name)

    def read_state(self, name: str) -> State:
        """The collection's state; reading the op id first also waits for every earlier op to
        be applied (the applier is in order), so the scroll sees all acknowledged writes."""
        next_op_id = self.call("POST", POINTS + "/delete", json={"points": [2**64 - 1]}, name=name)
        if next_op_id.status == 404:
            return State(None, None, None, None, None)
        info = self.call("GET", COLLECTION, name=name).result
        body = {"limit": 1000, "with_payload": True, "with_vector": True}
        page = self.call("POST", POINTS + "/scroll", json=body, name=name).result
        assert page["next_page_offset"] is None, "fuzz collections stay under one page"
        return State(
            points=page["points"],
            points_count=info["points_count"],
            config=info["config"],
            payload_schema=info["payload_schema"],
            next_op_id=next_op_id.result["operation_id"],
        )

    def fuzz(self, method: str, template: str, name: str = "c", **options: Any) -> ApiResponse:
        """One hostile request: never 5xx (but 501), always Qdrant's shape, and after a 4xx
        the collection `name` is exactly as before (one op id later: `read_state`'s own)."""
        before = self.states.get(name) or self.read_state(name)
        response = self.call(method, template, name=name, **options)
        self.answer_count_by_status[response.status] = (
            self.answer_count_by_status.get(response.status, 0) + 1
        )
        assert response.status < 500 or response.status == NOT_IMPLEMENTED_STATUS, (
            response.status,
            response.body,
        )
        assert isinstance(response.body, dict), response.body
        if response.status >= 400:
            assert isinstance(response.body["status"]["error"], str), response.body
        after = self.read_state(name)
        self.states[name] = after
        if response.status == 404 and MISSING_POINT_ERROR.match(response.body["status"]["error"]):
            # Qdrant's answer to an edit listing a missing id: logged (with the rest of its
            # batch), the points before it edited (engine/store/mutations.py); the config is unchanged.
            assert after.config == before.config, response.body
            if before.next_op_id is not None:
                assert after.next_op_id >= before.next_op_id + 2, response.body
        elif response.status >= 400:
            expected_op_id = None if before.next_op_id is None else before.next_op_id + 1
            assert after == State(
                before.points,
                before.points_count,
                before.config,
                before.payload_schema,
                expected_op_id,
            ), (response.status, response.body)
        return response

    def all_points(self) -> dict[str, Any]:
        names = [c["name"] for c in self.call("GET", "/collections").result["collections"]]
        return {name: self.read_state(name) for name in names}

    def assert_survives_reopen(self) -> None:
        """Close the catalog, reopen it from the same storage: replay must succeed and every
        acknowledged write be there (points, counts, configs, payload schemas)."""
        before = self.all_points()
        assert before, "the fuzz run created no collection"
        self.run(self._stop())
        self.run(self._start())
        after = self.all_points()
        for name, state in before.items():
            # Each read_state consumed one op id; everything else must be the same.
            assert after[name].next_op_id == state.next_op_id + 1, name
            assert after[name].points == state.points, name
            assert after[name].points_count == state.points_count, name
            assert after[name].config == state.config, name
            assert after[name].payload_schema == state.payload_schema, name
        assert after.keys() == before.keys()

    def close(self) -> None:
        self.run(self._stop())
        self.loop.close()

    async def _start(self) -> None:
        self.catalog = Catalog(self.storage_path, EngineSettings())
        await self.catalog.open()
        app = create_app(self.catalog, keel_version=KEEL_VERSION)
        self.client = TestClient(TestServer(app))
        await self.client.start_server()
        self.api = Api(self.client)

    async def _stop(self) -> None:
        assert self.client is not None
        assert self.catalog is not None
        await self.client.close()
        await self.catalog.close()
        self.client = None
        self.api = None


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "storage")
    harness.create_collection("c", DENSE_CONFIG)
    harness.upsert_seed("c", SEED_BODIES["multiple"])
    yield harness
    harness.close()


def run_fuzz(
    harness: Harness, strategy: st.SearchStrategy[Any], send: Callable[[Any], Any]
) -> None:
    """Drive `send` with `strategy`'s examples, then check the storage survives a reopen."""

    @FUZZ_SETTINGS
    @given(example=strategy)
    def fuzz(example: Any) -> None:
        send(example)

    fuzz()
    statuses = harness.answer_count_by_status
    assert any(400 <= status < 500 for status in statuses), statuses
    harness.assert_survives_reopen()


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


def test_upsert_bodies_in_every_form(harness: Harness) -> None:
    harness.create_collection("named", NAMED_CONFIG)
    forms = st.one_of(
        st.tuples(st.just("c"), mutated(SEED_BODIES["single"], UPSERT_EXTRA_KEYS)),
        st.tuples(st.just("c"), mutated(SEED_BODIES["multiple"], UPSERT_EXTRA_KEYS)),
        st.tuples(st.just("c"), mutated(SEED_BODIES["batch"], UPSERT_EXTRA_KEYS)),
        st.tuples(st.just("named"), mutated(NAMED_SEED, UPSERT_EXTRA_KEYS)),
    )
    query = st.sampled_from(({"wait": "true"}, {"wait": "false"}))

    def send(example: Any) -> None:
        (name, body), params = example
        harness.fuzz("PUT", POINTS, name=name, data=dumps(body), query=params)

    run_fuzz(harness, st.tuples(forms, query), send)


def test_update_query_params(harness: Harness) -> None:
    junk = st.one_of(st.sampled_from(SPECIAL_STRINGS), st.text(max_size=8))
    params = st.dictionaries(
        st.sampled_from(("wait", "ordering", "timeout", "consistency")),
        st.one_of(junk, st.sampled_from(("true", "false", "weak", "medium", "strong", "0", "5"))),
        max_size=3,
    )
    routes = st.sampled_from(
        (
            ("PUT", POINTS, SEED_BODIES["single"]),
            ("POST", POINTS + "/delete", {"points": [1]}),
            ("POST", POINTS + "/payload", {"payload": {"k": 1}, "points": [1]}),
            ("POST", POINTS + "/scroll", {"limit": 2}),
            ("POST", POINTS + "/count", {}),
            ("PUT", COLLECTION + "/index", {"field_name": "city", "field_schema": "keyword"}),
        )
    )

    def send(example: Any) -> None:
        (method, template, body), query = example
        # A lone surrogate goes out as its (invalid) UTF-8 bytes, percent-encoded.
        query_text = urlencode(query, errors="surrogatepass")
        harness.fuzz(method, template, json=body, query=query_text)

    run_fuzz(harness, st.tuples(routes, params), send)


DEEP_MARK = "<deep filter>"
FILTER_BODIES = (
    ("POST", POINTS + "/scroll", lambda f: {"filter": f, "limit": 10}),
    ("POST", POINTS + "/count", lambda f: {"filter": f, "exact": True}),
    ("POST", POINTS + "/search", lambda f: {"vector": SEED_VECTOR, "filter": f, "limit": 3}),
    ("POST", POINTS + "/query", lambda f: {"query": SEED_VECTOR, "filter": f}),
    ("POST", POINTS + "/query", lambda f: {"prefetch": {"filter": f}, "query": {"fusion": "rrf"}}),
    ("POST", COLLECTION + "/facet", lambda f: {"key": "city", "filter": f}),
    ("POST", POINTS + "/delete", lambda f: {"filter": f}),
    ("POST", POINTS + "/payload", lambda f: {"payload": {"seen": True}, "filter": f}),
)


def test_filters_everywhere_a_filter_goes(harness: Harness) -> None:
    """Random trees of Qdrant's filter keys, plus very deep ones a recursive parser could
    overflow on, in every read and write that takes a filter."""
    harness.call(
        "PUT", COLLECTION + "/index", json={"field_name": "city", "field_schema": "keyword"}
    )
    harness.states.pop("c")
    # A deep filter is drawn as its depth and built in `send`: hypothesis could not print it.
    tree = st.one_of(
        st.tuples(st.just("tree"), filters),
        st.tuples(st.just("tree"), filters),
        st.tuples(st.just("deep"), st.sampled_from((50, 200, 400, 1000))),
    )
    routes = st.sampled_from(range(len(FILTER_BODIES)))

    def send(example: Any) -> None:
        route_index, (kind, filter_) = example
        method, template, build = FILTER_BODIES[route_index]
        body = dumps(build(DEEP_MARK if kind == "deep" else filter_))
        if kind == "deep":
            body = body.replace(dumps(DEEP_MARK), _deep_filter_json(filter_))
        harness.fuzz(method, template, data=body)

    run_fuzz(harness, st.tuples(routes, tree), send)


PAYLOAD_SEEDS = (
    ("POST", POINTS + "/payload", {"payload": {"a": {"b": [1, 2]}}, "points": [1, 2]}),
    ("POST", POINTS + "/payload", {"payload": {"x": 1}, "key": "a.b", "filter": {}}),
    ("PUT", POINTS + "/payload", {"payload": {"city": "Rome"}, "points": [3]}),
    ("POST", POINTS + "/payload/delete", {"keys": ["city", "a.b[0]"], "points": [1]}),
    ("POST", POINTS + "/payload/clear", {"points": [2]}),
    (
        "POST",
        POINTS + "/payload/clear",
        {"filter": {"must": [{"key": "city", "match": {"value": "x"}}]}},
    ),
    ("PUT", POINTS + "/vectors", {"points": [{"id": 1, "vector": SEED_VECTOR}]}),
    ("POST", POINTS + "/vectors/delete", {"points": [1], "vector": [""]}),
    ("POST", POINTS + "/delete", {"points": [2, "550e8400-e29b-41d4-a716-446655440000"]}),
)
PAYLOAD_EXTRA_KEYS = ("points", "filter", "key", "payload", "keys", "shard_key", "vector")


def test_payload_and_vector_ops(harness: Harness) -> None:
    """Set/overwrite/delete/clear payload, update/delete vectors, delete points: the seed
    bodies mutated, and random payloads and keys."""
    random_payload = st.tuples(
        st.sampled_from(range(3)),
        st.fixed_dictionaries(
            {"payload": json_values, "points": st.lists(leaves, max_size=3)},
            optional={"key": st.one_of(st.sampled_from(SPECIAL_STRINGS), leaves)},
        ),
    )
    mutated_seed = st.sampled_from(range(len(PAYLOAD_SEEDS))).flatmap(
        lambda index: st.tuples(
            st.just(index), mutated(PAYLOAD_SEEDS[index][2], PAYLOAD_EXTRA_KEYS)
        )
    )

    def send(example: Any) -> None:
        index, body = example
        method, template, _ = PAYLOAD_SEEDS[index]
        harness.fuzz(method, template, data=dumps(body))

    run_fuzz(harness, st.one_of(mutated_seed, mutated_seed, random_payload), send)


BATCH_SEED = {
    "operations": [
        {"upsert": {"points": [{"id": 5, "vector": SEED_VECTOR, "payload": {"k": 1}}]}},
        {"upsert": {"batch": {"ids": [6], "vectors": [SEED_VECTOR]}}},
        {"set_payload": {"payload": {"k": 2}, "points": [5]}},
        {"overwrite_payload": {"payload": {"k": 3}, "points": [6]}},
        {"delete_payload": {"keys": ["k"], "points": [5]}},
        {"clear_payload": {"points": [6]}},
        {"update_vectors": {"points": [{"id": 5, "vector": SEED_VECTOR}]}},
        {"delete_vectors": {"points": [6], "vector": [""]}},
        {"delete": {"points": [6]}},
    ]
}


def test_batch_bodies(harness: Harness) -> None:
    def send(body: Any) -> None:
        harness.fuzz("POST", POINTS + "/batch", data=dumps(body), query={"wait": "true"})

    run_fuzz(harness, mutated(BATCH_SEED, ("upsert", "delete", "filter", "points")), send)


def _query_bodies() -> st.SearchStrategy[Any]:
    vector = st.one_of(
        st.just(SEED_VECTOR),
        st.lists(leaves, max_size=5),
        st.just({"indices": [1, 2], "values": [0.5, 0.5]}),
        st.just({"text": SEED_VECTOR}),
    )
    point_ref = st.one_of(
        st.sampled_from((1, 2, 3, 99, "550e8400-e29b-41d4-a716-446655440000")), leaves
    )
    example = st.one_of(vector, point_ref)
    query = st.one_of(
        vector,
        point_ref,
        st.fixed_dictionaries({"nearest": example}),
        st.fixed_dictionaries(
            {
                "recommend": st.fixed_dictionaries(
                    {},
                    optional={
                        "positive": st.one_of(st.lists(example, max_size=3), leaves),
                        "negative": st.one_of(st.lists(example, max_size=3), leaves),
                        "strategy": st.one_of(
                            st.sampled_from(("average_vector", "best_score", "sum_scores")), leaves
                        ),
                    },
                )
            }
        ),
        st.fixed_dictionaries({"fusion": st.one_of(st.sampled_from(("rrf", "dbsf")), leaves)}),
        st.fixed_dictionaries({"rrf": st.one_of(st.fixed_dictionaries({"k": leaves}), leaves)}),
        st.fixed_dictionaries(
            {
                "order_by": st.one_of(
                    field_keys,
                    st.fixed_dictionaries(
                        {"key": st.one_of(field_keys, leaves)},
                        optional={
                            "direction": st.one_of(st.sampled_from(("asc", "desc")), leaves),
                            "start_from": leaves,
                        },
                    ),
                    leaves,
                )
            }
        ),
        st.fixed_dictionaries({"sample": st.one_of(st.just("random"), leaves)}),
        st.fixed_dictionaries({"context": json_values}),
        st.fixed_dictionaries({"discover": json_values}),
        st.fixed_dictionaries({"formula": json_values}),
        st.fixed_dictionaries({"mmr": json_values, "nearest": vector}),
        json_values,
    )
    options = {
        "using": st.one_of(st.sampled_from(("", "text", "nope")), leaves),
        "filter": st.one_of(
            st.just({"must": [{"key": "city", "match": {"value": "Berlin"}}]}), leaves
        ),
        "limit": leaves,
        "offset": leaves,
        "score_threshold": leaves,
        "with_payload": st.one_of(st.booleans(), st.lists(field_keys, max_size=2), json_values),
        "with_vector": st.one_of(
            st.booleans(), st.lists(st.sampled_from(("", "text")), max_size=2), leaves
        ),
        "params": st.one_of(
            st.fixed_dictionaries({"exact": leaves}, optional={"hnsw_ef": leaves}), leaves
        ),
        "lookup_from": st.one_of(
            st.fixed_dictionaries({"collection": st.sampled_from(("c", "nope", ""))}), leaves
        ),
    }
    return st.recursive(
        st.fixed_dictionaries({}, optional={"query": query, **options}),
        lambda children: st.fixed_dictionaries(
            {"prefetch": st.one_of(children, st.lists(children, max_size=3))},
            optional={"query": query, **options},
        ),
        max_leaves=4,
    )


def test_query_api_bodies(harness: Harness) -> None:
    """Random prefetch/query/fusion/recommend/order_by shapes on query, its batch and groups
    forms, and random search batch/groups bodies."""
    bodies = _query_bodies()
    requests = st.one_of(
        st.tuples(st.just("/query"), bodies),
        st.tuples(
            st.just("/query/batch"),
            st.fixed_dictionaries({"searches": st.lists(bodies, max_size=2)}),
        ),
        st.tuples(
            st.just("/query/groups"),
            bodies.flatmap(
                lambda body: st.fixed_dictionaries(
                    {"group_by": st.one_of(field_keys, leaves)},
                    optional={"group_size": leaves, "limit": leaves},
                ).map(lambda groups: {**body, **groups})
            ),
        ),
        st.tuples(
            st.just("/search/batch"),
            mutated(
                {"searches": [{"vector": SEED_VECTOR, "limit": 2}]}, ("filter", "with_payload")
            ),
        ),
        st.tuples(
            st.just("/search/groups"),
            mutated({"vector": SEED_VECTOR, "group_by": "city", "limit": 2, "group_size": 1}, ()),
        ),
        st.tuples(
            st.just("/scroll"),
            mutated(
                {"limit": 2, "order_by": {"key": "population", "direction": "desc"}}, ("offset",)
            ),
        ),
    )

    def send(example: Any) -> None:
        suffix, body = example
        harness.fuzz("POST", POINTS + suffix, data=dumps(body))

    run_fuzz(harness, requests, send)


CREATE_SEEDS = (
    {
        "vectors": {
            "size": 4,
            "distance": "Cosine",
            "on_disk": False,
            "hnsw_config": {"m": 8, "ef_construct": 50},
        },
        "hnsw_config": {
            "m": 16,
            "ef_construct": 100,
            "full_scan_threshold": 10000,
            "on_disk": False,
        },
        "optimizers_config": {"deleted_threshold": 0.2, "indexing_threshold": 20000},
        "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
        "shard_number": 1,
        "replication_factor": 1,
        "on_disk_payload": True,
        "metadata": {"team": "search"},
    },
    {
        "vectors": {
            "text": {"size": 4, "distance": "Dot"},
            "image": {"size": 2, "distance": "Manhattan", "datatype": "float32"},
        },
        "sparse_vectors": {"kw": {"index": {"on_disk": False}, "modifier": "idf"}},
    },
    {"sparse_vectors": {"kw": {}}},
)


def test_collection_create_bodies(harness: Harness) -> None:
    """Random vectors configs, hnsw params and sparse configs; a created collection is dropped
    again so every example starts from the same catalog."""
    extra = (
        "vectors",
        "sparse_vectors",
        "hnsw_config",
        "quantization_config",
        "strict_mode_config",
    )
    bodies = st.sampled_from(CREATE_SEEDS).flatmap(lambda seed: mutated(seed, extra))

    def send(body: Any) -> None:
        response = harness.fuzz("PUT", COLLECTION, name="fresh", data=dumps(body))
        if response.status == 200:
            assert harness.call("DELETE", COLLECTION, name="fresh").result is True
            harness.states.pop("fresh")

    run_fuzz(harness, bodies, send)


PATCH_SEED = {
    "vectors": {"": {"hnsw_config": {"m": 8}, "on_disk": False}},
    "optimizers_config": {"indexing_threshold": 10000, "deleted_threshold": 0.3},
    "hnsw_config": {"ef_construct": 64, "full_scan_threshold": 500},
    "params": {"replication_factor": 1, "on_disk_payload": False},
    "quantization_config": "Disabled",
    "metadata": {"k": "v", "gone": None},
}


def test_collection_patch_bodies(harness: Harness) -> None:
    extra = ("sparse_vectors", "strict_mode_config", "quantization_config", "params")
    run_fuzz(
        harness,
        mutated(PATCH_SEED, extra),
        lambda body: harness.fuzz("PATCH", COLLECTION, data=dumps(body)),
    )


INDEX_SEEDS = (
    {"field_name": "city", "field_schema": "keyword"},
    {
        "field_name": "population",
        "field_schema": {"type": "integer", "lookup": True, "range": True},
    },
    {
        "field_name": "a.b[]",
        "field_schema": {"type": "text", "tokenizer": "word", "min_token_len": 2},
    },
    {"field_name": "loc", "field_schema": {"type": "geo", "on_disk": False}},
)


def test_payload_index_bodies(harness: Harness) -> None:
    """Create bodies mutated, and deletes of random field names in the path."""
    creates = st.sampled_from(INDEX_SEEDS).flatmap(lambda seed: mutated(seed, ("type", "params")))
    field_names = st.one_of(st.sampled_from(SPECIAL_STRINGS), st.text(min_size=1, max_size=10))

    def send(example: Any) -> None:
        kind, value = example
        if kind == "create":
            harness.fuzz("PUT", COLLECTION + "/index", data=dumps(value))
        else:
            harness.fuzz(
                "DELETE", COLLECTION + "/index/{field_name}", field_name=path_segment(value)
            )

    run_fuzz(
        harness,
        st.one_of(st.tuples(st.just("create"), creates), st.tuples(st.just("delete"), field_names)),
        send,
    )


ALIAS_SEED = {
    "actions": [
        {"create_alias": {"alias_name": "a", "collection_name": "c"}},
        {"rename_alias": {"old_alias_name": "a", "new_alias_name": "b"}},
        {"delete_alias": {"alias_name": "b"}},
        {"create_alias": {"alias_name": "keep", "collection_name": "c"}},
    ]
}


def test_alias_action_bodies(harness: Harness) -> None:
    """A refused action list changes no alias (the list is applied all or nothing)."""

    def aliases() -> Any:
        listed = harness.call("GET", "/aliases").result["aliases"]
        return sorted((a["alias_name"], a["collection_name"]) for a in listed)

    def send(body: Any) -> None:
        before = aliases()
        response = harness.fuzz("POST", "/collections/aliases", data=dumps(body))
        if response.status >= 400:
            assert aliases() == before, response.body
        else:
            for alias_name, _ in aliases():  # the next example starts with no alias
                delete = {"actions": [{"delete_alias": {"alias_name": alias_name}}]}
                assert harness.call("POST", "/collections/aliases", json=delete).result is True

    run_fuzz(harness, mutated(ALIAS_SEED, ("create_alias", "delete_alias", "rename_alias")), send)


WRITE_ROUTES = (
    ("PUT", POINTS),
    ("POST", POINTS + "/delete"),
    ("POST", POINTS + "/payload"),
    ("PUT", POINTS + "/payload"),
    ("POST", POINTS + "/payload/delete"),
    ("POST", POINTS + "/payload/clear"),
    ("PUT", POINTS + "/vectors"),
    ("POST", POINTS + "/vectors/delete"),
    ("POST", POINTS + "/batch"),
    ("PUT", COLLECTION + "/index"),
    ("PATCH", COLLECTION),
    ("PUT", COLLECTION),
    ("POST", "/collections/aliases"),
)


def _garbage() -> st.SearchStrategy[bytes]:
    seed = seed_bodies.SEED_MULTIPLE.encode()
    return st.one_of(
        st.binary(max_size=64),
        st.integers(min_value=0, max_value=len(seed)).map(lambda cut: seed[:cut]),
        json_values.map(dumps),
        st.sampled_from(
            (
                b"[" * 5000,
                b'{"points":' * 3000,
                b"NaN",
                b'{"points": [{"id": 1, "vector": [NaN, 1, 2, 3]}]}',
                b'{"points": [{"id": 1, "vector": [1e999, 1, 2, 3]}]}',
                b"\xef\xbb\xbf{}",
                b"\xff\xfe{\x00}\x00",
                b'{"a": "\\ud800"}',
                b'{"points": []} trailing',
                b'{"points": [], "points": [1]}',
                b"  ",
            )
        ),
    )


def test_raw_garbage_on_every_write_route(harness: Harness) -> None:
    routes = st.sampled_from(range(len(WRITE_ROUTES)))

    def send(example: Any) -> None:
        index, body = example
        method, template = WRITE_ROUTES[index]
        name = "fresh" if (method, template) == ("PUT", COLLECTION) else "c"
        response = harness.fuzz(method, template, name=name, data=body)
        if name == "fresh" and response.status == 200:
            assert harness.call("DELETE", COLLECTION, name="fresh").result is True
            harness.states.pop("fresh")

    run_fuzz(harness, st.tuples(routes, _garbage()), send)


# Not `.`, `..` or `%2E%2E`: the client resolves those segments (RFC 3986) before sending, so
# they reach another route (`/collections/c/index/..` is DELETE /collections/c).
WEIRD_NAMES = (
    "...",
    "%2F",
    "a%2Fb",
    "%2F..%2F",
    "a%00b",
    "%ZZ",
    "%",
    "c%20",
    "é",
    "😀",
    "x" * 300,
    "x" * 5000,
    "c;d",
    "c:d",
    "-",
)


def test_weird_collection_names_and_point_ids(harness: Harness) -> None:
    """Names and ids in the path, raw or percent-encoded: a 4xx, and a refused create makes
    no collection."""
    names = st.one_of(
        st.sampled_from(WEIRD_NAMES),
        st.text(min_size=1, max_size=20).map(path_segment),
    )
    point_ids = st.one_of(
        st.sampled_from(
            ("1", "-1", "1.5", "18446744073709551616", "1e3", "true", "null", "%20", "x" * 500)
        ),
        st.sampled_from(SPECIAL_STRINGS).filter(bool).map(path_segment),
        st.text(min_size=1, max_size=12).map(path_segment),
    )
    requests = st.one_of(
        st.tuples(st.sampled_from(("GET", "DELETE", "PATCH", "PUT")), names, st.just(None)),
        st.tuples(st.just("POINT"), st.just("c"), point_ids),
        st.tuples(st.just("POINT"), names, st.just("1")),
    )

    def collection_names() -> list[str]:
        return [c["name"] for c in harness.call("GET", "/collections").result["collections"]]

    def send(example: Any) -> None:
        method, name, point_id = example
        before = collection_names()
        if method == "POINT":
            response = harness.call("GET", POINTS + "/{id}", name=name, point_id=point_id)
        else:
            body = DENSE_CONFIG if method == "PUT" else {}
            response = harness.call(method, COLLECTION, name=name, json=body)
        assert response.status < 500, (response.status, response.body)
        assert isinstance(response.body, dict), response.body
        assert "status" in response.body, response.body
        if response.status >= 400:
            assert collection_names() == before, response.body
        elif method == "PUT":
            harness.call("DELETE", COLLECTION, name=name)
        harness.answer_count_by_status[response.status] = 1

    run_fuzz(harness, requests, send)
