"""Filtered multivector (MaxSim) queries against qdrant-edge-py, Qdrant's engine in process.

Goal: a filter on a multivector query selects and ranks what Qdrant's engine does: the
filtered MaxSim scan (engine/query/universal_reads.py `score_points` over a list of
matrices), `score_threshold` and `limit`/`offset` on reported scores (Euclid and Manhattan
report a distance, lower better), and a dense prefetch reranked by MaxSim with the filter
on the prefetch or on the root. Count and scroll take the same filters on the same points,
where `has_vector` names the multivector.

Method: the seeded payloads and filters of tests/unit/test_filter_congruence.py (its
docstring says which corners of the filter language are left out, and why) go with seeded
matrices of 1 to 5 rows into a Keel collection (through the wire parsers a request goes
through) and into an edge shard: a dense vector "a" and a multivector "b", some points
having only one of them. For a sample of the filters, each query is asked of both; ids and
scores must agree, scores within float32 rounding, and points tied at the last score kept
may differ (a limit cuts a tie anywhere).

One known difference, kept on purpose: a root filter and a prefetch filter that both have
`should` (or both `min_should`) are ANDed by Keel and ORed by Qdrant 1.19 (qdrant#10594,
open); test_root_and_prefetch_filters_are_anded_where_qdrant_ors_them says how it is checked.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The oracle is in the test extra: a missing one is an error, never a silent skip.
import qdrant_edge

from engine.ops import PayloadSelector, VectorSelector
from server.wire.collection_config import parse_create_collection
from server.wire.filters import parse_filter
from server.wire.query import parse_query_request
from server.wire.upsert import build_upsert, parse_upsert
from tests.unit.engine_helpers import open_catalog
from tests.unit.test_filter_congruence import (
    POINT_COUNT,
    SEED,
    InexpressibleInEdge,
    Scope,
    normalize_id,
    random_filter,
    random_payload,
    to_edge_filter,
)

DIM = 4
DENSE, MULTI = "a", "b"  # the names random_has_vector asks about
DISTANCES = ("Dot", "Cosine", "Euclid", "Manhattan")
FILTER_COUNT = 48  # per distance
PREFETCH_LIMIT = 30
SCORE_TOLERANCE = {"rel": 1e-4, "abs": 1e-4}


@dataclass
class Engines:
    """A Keel collection (driven on its own event loop) and an edge shard, same points."""

    distance: str
    loop: asyncio.AbstractEventLoop
    collection: Any
    shard: Any

    def keel_query(self, body: dict[str, Any]) -> list[tuple[Any, float]]:
        request = parse_query_request(body)
        result = self.loop.run_until_complete(self.collection.query(request, {}))
        return [(normalize_id(point.id), point.score) for point in result.points]

    def edge_query(self, **request: Any) -> list[tuple[Any, float]]:
        hits = self.shard.query(qdrant_edge.QueryRequest(**request))
        return [(normalize_id(hit.id), hit.score) for hit in hits]


def random_matrix(rng: random.Random, rows: int) -> list[list[float]]:
    return [[round(rng.uniform(-1.0, 1.0), 3) for _ in range(DIM)] for _ in range(rows)]


def make_points() -> list[dict[str, Any]]:
    """Points as a client sends them: int and UUID ids, a payload, "a" and/or "b"."""
    rng = random.Random(SEED)
    points = []
    for index in range(POINT_COUNT):
        point_id: Any = index if index % 4 else str(uuid.UUID(int=rng.getrandbits(128)))
        vector: dict[str, Any] = {}
        draw = rng.random()
        if draw < 0.85:
            vector[MULTI] = random_matrix(rng, rng.randint(1, 5))
        if draw > 0.15:
            vector[DENSE] = random_matrix(rng, 1)[0]
        points.append({"id": point_id, "vector": vector, "payload": random_payload(rng)})
    return points


def collection_body(distance: str) -> dict[str, Any]:
    multi = {"size": DIM, "distance": distance, "multivector_config": {"comparator": "max_sim"}}
    return {"vectors": {DENSE: {"size": DIM, "distance": "Dot"}, MULTI: multi}}


def sampled_filters() -> list[tuple[dict[str, Any], Any]]:
    """(filter JSON, the same filter for qdrant-edge) for the random filters edge can take."""
    rng = random.Random(SEED + 1)
    pairs = []
    while len(pairs) < FILTER_COUNT:
        data = random_filter(rng, Scope(depth=0))
        try:
            pairs.append((data, to_edge_filter(data)))
        except InexpressibleInEdge:
            continue
    return pairs


def edge_shard(path: Path, distance: str, points: list[dict[str, Any]]) -> Any:
    multi = qdrant_edge.MultiVectorConfig(qdrant_edge.MultiVectorComparator.MaxSim)
    vectors = {
        DENSE: qdrant_edge.EdgeVectorParams(size=DIM, distance=qdrant_edge.Distance.Dot),
        MULTI: qdrant_edge.EdgeVectorParams(
            size=DIM, distance=getattr(qdrant_edge.Distance, distance), multivector_config=multi
        ),
    }
    shard = qdrant_edge.EdgeShard.create(str(path), qdrant_edge.EdgeConfig(vectors=vectors))
    edge_points = [
        qdrant_edge.Point(normalize_id(p["id"]), p["vector"], p["payload"]) for p in points
    ]
    shard.update(qdrant_edge.UpdateOperation.upsert_points(edge_points))
    return shard


@pytest.fixture(scope="module")
def filters() -> list[tuple[dict[str, Any], Any]]:
    return sampled_filters()


@pytest.fixture(scope="module", params=DISTANCES)
def engines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    distance = request.param
    root = tmp_path_factory.mktemp(f"multivector-{distance}")
    points = make_points()
    loop = asyncio.new_event_loop()
    catalog = loop.run_until_complete(open_catalog(root / "keel"))
    config = parse_create_collection(collection_body(distance))
    loop.run_until_complete(catalog.create("c", config))
    collection = catalog.get("c")
    op = build_upsert(parse_upsert({"points": points}), collection.config)
    loop.run_until_complete(collection.update(op, wait=True, timeout_s=None))
    shard = edge_shard(root / "edge", distance, points)
    yield Engines(distance, loop, collection, shard)
    shard.close()
    loop.run_until_complete(catalog.close())
    loop.close()


def test_filtered_maxsim_agrees_with_qdrant_edge(engines: Engines, filters: list) -> None:
    """`query` = a matrix on the multivector, with a filter: the same hits and scores."""
    rng = random.Random(f"{SEED} nearest {engines.distance}")
    mismatches = []
    for data, edge_filter in filters:
        query = random_matrix(rng, rng.randint(1, 4))
        keel = engines.keel_query({"query": query, "using": MULTI, "filter": data, "limit": 10})
        edge = engines.edge_query(
            limit=10, query=qdrant_edge.Query.Nearest(query, MULTI), filter=edge_filter
        )
        mismatches.extend(disagreement(data, keel, edge))
    assert not mismatches, describe(mismatches)


def test_filtered_maxsim_with_threshold_limit_and_offset(engines: Engines, filters: list) -> None:
    """A threshold between two scores of the unfiltered ranking (so float rounding cannot put
    a point on the other side), then a page past the first hits, with the filter."""
    rng = random.Random(f"{SEED} threshold {engines.distance}")
    mismatches = []
    hit_count = 0
    for data, edge_filter in filters:
        query = random_matrix(rng, rng.randint(1, 4))
        nearest = qdrant_edge.Query.Nearest(query, MULTI)
        ranking = [score for _, score in engines.edge_query(limit=POINT_COUNT, query=nearest)]
        cut = rng.randrange(len(ranking) // 4, len(ranking) - 1)
        threshold = (ranking[cut] + ranking[cut + 1]) / 2
        body = {
            "query": query,
            "using": MULTI,
            "filter": data,
            "score_threshold": threshold,
            "limit": 7,
            "offset": 3,
        }
        keel = engines.keel_query(body)
        edge = engines.edge_query(
            limit=7, offset=3, query=nearest, filter=edge_filter, score_threshold=threshold
        )
        mismatches.extend(disagreement(data, keel, edge))
        hit_count += len(edge)
    assert not mismatches, describe(mismatches)
    assert hit_count > FILTER_COUNT, "thresholds and offsets left too little to compare"


@pytest.mark.parametrize("filter_place", ["prefetch", "root", "both"])
def test_dense_prefetch_reranked_by_maxsim_agrees(
    engines: Engines, filters: list, filter_place: str
) -> None:
    """An exact dense prefetch on "a" reranked by MaxSim on "b", the filter on the prefetch,
    on the root query, or on both (then the root's is the next random filter, and pairs that
    Qdrant 1.19 OR-merges are left to the next test)."""
    rng = random.Random(f"{SEED} prefetch {engines.distance} {filter_place}")
    mismatches = []
    compared_count = 0
    for index, (data, edge_filter) in enumerate(filters):
        dense, query = random_matrix(rng, 1)[0], random_matrix(rng, rng.randint(1, 4))
        root_data, root_edge = filters[(index + 1) % len(filters)]
        if filter_place == "prefetch":
            case = rerank(engines, dense, query, (data, edge_filter), None)
        elif filter_place == "root":
            case = rerank(engines, dense, query, None, (data, edge_filter))
        elif is_or_merged_by_qdrant(root_data, data):
            continue
        else:
            case = rerank(engines, dense, query, (data, edge_filter), (root_data, root_edge))
        mismatches.extend(disagreement(*case))
        compared_count += 1
    assert not mismatches, describe(mismatches)
    assert compared_count > FILTER_COUNT // 2, compared_count


def test_root_and_prefetch_filters_are_anded_where_qdrant_ors_them(
    engines: Engines, filters: list
) -> None:
    """A root filter reaches each prefetch ANDed with the prefetch's own filter. Qdrant 1.19's
    planner merges the two by concatenating clauses (`recurse_prefetches` in
    lib/shard/src/query/planned_query.rs, `Filter::merge_owned` in lib/segment/src/types.rs),
    which ORs them when both have `should`, or both `min_should`: qdrant#10594, an open bug.
    Keel keeps the AND a root filter promises, so the oracle here is edge with the AND spelled out
    (one `must` of both filters on the prefetch); and Qdrant's literal answer must differ
    for some pairs, or the bug is fixed and these pairs belong in the test above."""
    rng = random.Random(f"{SEED} or-merged {engines.distance}")
    mismatches = []
    or_merged_count = differing_count = 0
    for index, (data, edge_filter) in enumerate(filters):
        dense, query = random_matrix(rng, 1)[0], random_matrix(rng, rng.randint(1, 4))
        root_data, root_edge = filters[(index + 1) % len(filters)]
        if not is_or_merged_by_qdrant(root_data, data):
            continue
        prefetch, root = (data, edge_filter), (root_data, root_edge)
        body, keel, literal = rerank(engines, dense, query, prefetch, root)
        anded = (None, qdrant_edge.Filter(must=[root_edge, edge_filter]))
        mismatches.extend(disagreement(body, keel, edge_rerank(engines, dense, query, anded, None)))
        differing_count += bool(disagreement(body, keel, literal))
        or_merged_count += 1
    assert not mismatches, describe(mismatches)
    assert or_merged_count >= 5, or_merged_count
    assert differing_count > 0, "Qdrant's OR-merge no longer shows: see qdrant#10594"


def test_count_and_scroll_agree_beside_a_multivector(engines: Engines, filters: list) -> None:
    """Count and scroll of the same points (has_vector naming the multivector among them)."""
    mismatches = []
    for data, edge_filter in filters:
        parsed = parse_filter(data)
        count = engines.loop.run_until_complete(engines.collection.count(parsed))
        records, _ = engines.loop.run_until_complete(
            engines.collection.scroll(
                parsed, POINT_COUNT + 1, None, PayloadSelector(False), VectorSelector(False)
            )
        )
        expected_count = engines.shard.count(qdrant_edge.CountRequest(filter=edge_filter))
        edge_records, _ = engines.shard.scroll(
            qdrant_edge.ScrollRequest(limit=POINT_COUNT + 1, filter=edge_filter)
        )
        got = sorted(str(normalize_id(record.id)) for record in records)
        expected = sorted(str(normalize_id(record.id)) for record in edge_records)
        if count != expected_count or got != expected:
            mismatches.append((data, (count, got), (expected_count, expected)))
    assert not mismatches, describe(mismatches)


def test_the_sampled_filters_split_the_points(engines: Engines, filters: list) -> None:
    """Guards the sample: if most filters selected all or nothing, congruence would be vacuous."""
    counts = [engines.shard.count(qdrant_edge.CountRequest(filter=f)) for _, f in filters]
    assert sum(0 < count < POINT_COUNT for count in counts) > FILTER_COUNT // 3, counts


# --- comparing -----------------------------------------------------------------------------


def disagreement(
    request: dict[str, Any], keel: list[tuple[Any, float]], edge: list[tuple[Any, float]]
) -> list[tuple]:
    """[] if Keel's hits are edge's: the same scores in order and each id with its score,
    except ids tied with the last score kept, which a limit may cut either way."""
    keel_scores, edge_scores = [s for _, s in keel], [s for _, s in edge]
    if keel_scores != pytest.approx(edge_scores, **SCORE_TOLERANCE):
        return [(request, keel, edge)]
    score_of = dict(edge)
    lowest = edge_scores[-1] if edge else None
    for point_id, score in keel:
        if score == pytest.approx(lowest, **SCORE_TOLERANCE):
            continue
        if point_id not in score_of or score != pytest.approx(
            score_of[point_id], **SCORE_TOLERANCE
        ):
            return [(request, keel, edge)]
    return []


def rerank(
    engines: Engines,
    dense: list[float],
    query: list[list[float]],
    prefetch_filter: tuple[dict[str, Any], Any] | None,
    root_filter: tuple[dict[str, Any], Any] | None,
) -> tuple[dict[str, Any], list[tuple[Any, float]], list[tuple[Any, float]]]:
    """(Keel's body, Keel's hits, edge's hits) of an exact dense prefetch reranked by MaxSim;
    each filter is (JSON for Keel, the filter for edge)."""
    prefetch: dict[str, Any] = {"query": dense, "using": DENSE, "limit": PREFETCH_LIMIT}
    prefetch["params"] = {"exact": True}
    body: dict[str, Any] = {"prefetch": prefetch, "query": query, "using": MULTI, "limit": 10}
    if prefetch_filter is not None:
        prefetch["filter"] = prefetch_filter[0]
    if root_filter is not None:
        body["filter"] = root_filter[0]
    return (
        body,
        engines.keel_query(body),
        edge_rerank(engines, dense, query, prefetch_filter, root_filter),
    )


def edge_rerank(
    engines: Engines,
    dense: list[float],
    query: list[list[float]],
    prefetch_filter: tuple[dict[str, Any], Any] | None,
    root_filter: tuple[dict[str, Any], Any] | None,
) -> list[tuple[Any, float]]:
    edge_prefetch = qdrant_edge.Prefetch(
        limit=PREFETCH_LIMIT,
        query=qdrant_edge.Query.Nearest(dense, DENSE),
        params=qdrant_edge.SearchParams(exact=True),
        filter=None if prefetch_filter is None else prefetch_filter[1],
    )
    return engines.edge_query(
        limit=10,
        prefetches=[edge_prefetch],
        query=qdrant_edge.Query.Nearest(query, MULTI),
        filter=None if root_filter is None else root_filter[1],
    )


def is_or_merged_by_qdrant(root: dict[str, Any], prefetch: dict[str, Any]) -> bool:
    """Whether Qdrant 1.19's clause concatenation is not an AND of the two filters."""
    return any(
        root.get(name) is not None and prefetch.get(name) is not None
        for name in ("should", "min_should")
    )


def describe(mismatches: list[tuple]) -> str:
    lines = [f"{len(mismatches)} requests disagree; first ones:"]
    for request, keel, edge in mismatches[:3]:
        lines.append(f"request {request}\n  Keel: {keel}\n  edge: {edge}")
    return "\n".join(lines)
