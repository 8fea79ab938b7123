"""Reads after a restart: fetch every point, check that the other read paths agree.

Owns: `read_points` (retrieve the whole id space with payloads and vectors), `check_reads`
(exact search finds each sampled point with its payload, HNSW search finds nearly all,
a MaxSim query finds each sampled multivector with the score its retrieved matrix gives,
no search hit is a point retrieve lacks; `points_count`, scroll and count equal the
retrieved points), and `write_marker` (the first write after a restart gets an op id above
every acknowledged one).
Not here: deciding which points are right (model.py).

A read path the server does not implement yet (scroll and count answer 501 today) is
skipped, and `ReadChecks.skipped` says so, with the server's text, for the report; it is
checked automatically once the server implements it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from .client import error_text, request_json, result_of
from .model import Finding
from .ops import UNNAMED, Kind, Op, Point, Vector, make_point, point_json, point_payload
from .workload import VECTOR_STEPS, CollectionSpec, Plan, random_vector, send

RETRIEVE_IDS_PER_REQUEST = 2_000
SCROLL_LIMIT = 500
HNSW_LIMIT = 10
EXACT_LIMIT = 3
# HNSW is approximate: a healthy graph finds nearly every sampled point in its top 10,
# a graph that lost points in recovery misses many (the same bar as tests/recovery).
HNSW_FOUND_FRACTION_MIN = 0.9
# MaxSim scores are compared squared (the sum of squared distances), relative above 1. The
# server sums float32 similarities (Keel as |q|^2 + |r|^2 - 2 q.r) and the tool exact ones:
# with components in [-1, 1] and at most 4 query rows of 4, the server's rounding stays near
# 1e-6 of the sum, while a lost row or a point missing from the scan moves it far more.
MAXSIM_SQUARED_TOLERANCE = 1e-4
NOT_IMPLEMENTED = 501


@dataclass
class ReadChecks:
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why, for the report
    hnsw_found: int = 0
    hnsw_sampled: int = 0
    maxsim_sampled: int = 0


async def read_points(
    session: aiohttp.ClientSession, url: str, spec: CollectionSpec, plan: Plan
) -> dict[int, Point]:
    """Every point with an id in the writers' space or the marker's, as the server has it."""
    ids = list(range(plan.marker_id + 1))
    points: dict[int, Point] = {}
    for start in range(0, len(ids), RETRIEVE_IDS_PER_REQUEST):
        body = {
            "ids": ids[start : start + RETRIEVE_IDS_PER_REQUEST],
            "with_payload": True,
            "with_vector": True,
        }
        records = await result_of(session, "POST", f"{url}/collections/{spec.name}/points", body)
        points.update((record["id"], observed_point(spec, record)) for record in records)
    return points


async def check_reads(
    session: aiohttp.ClientSession,
    url: str,
    spec: CollectionSpec,
    points: dict[int, Point],
    rng: random.Random,
    samples_max: int,
) -> ReadChecks:
    """Search, collection info, scroll and count against `points` (what retrieve returned)."""
    checks = ReadChecks()
    for name in spec.vectors:
        candidates = sorted(pid for pid, point in points.items() if name in dict(point[1]))
        for point_id in rng.sample(candidates, min(samples_max, len(candidates))):
            if name in spec.multivector_names:
                await _check_maxsim(session, url, spec, name, point_id, points, rng, checks)
            else:
                await _check_search(session, url, spec, name, point_id, points, checks)
    if checks.hnsw_sampled and checks.hnsw_found < HNSW_FOUND_FRACTION_MIN * checks.hnsw_sampled:
        detail = {"problem": "HNSW search missed too many points", "found": checks.hnsw_found}
        checks.findings.append(Finding("search", spec.name, {**detail, "of": checks.hnsw_sampled}))
    info = await result_of(session, "GET", f"{url}/collections/{spec.name}")
    if info.get("points_count") != len(points):
        detail = {"problem": "points_count differs from the points retrieved"}
        detail |= {"points_count": info.get("points_count"), "retrieved": len(points)}
        checks.findings.append(Finding("count", spec.name, detail))
    await _check_scroll(session, url, spec, points, checks)
    await _check_count(session, url, spec, points, checks)
    return checks


async def write_marker(
    session: aiohttp.ClientSession, url: str, spec: CollectionSpec, plan: Plan, label: int
) -> Op:
    """Upsert the marker point with wait=true and return the op with its outcome."""
    op = Op(spec.name, Kind.UPSERT, (plan.marker_id,), writer_index=-1, seq=label, form="marker")
    value = (label % VECTOR_STEPS) / VECTOR_STEPS
    vectors: dict[str, Any] = {name: [value] * size for name, size in spec.vectors.items()}
    for name in spec.multivector_names:
        vectors[name] = [vectors[name]]  # a matrix of one row
    payload = {"marker": label}
    op.points = {plan.marker_id: make_point(payload, vectors)}
    point: dict[str, Any] = {"id": plan.marker_id, "payload": payload}
    point["vector"] = vectors if spec.is_named else vectors[UNNAMED]
    op.method, op.path = "PUT", f"/collections/{spec.name}/points?wait=true"
    op.body = orjson.dumps({"points": [point]})
    await send(session, url, op)
    return op


def observed_point(spec: CollectionSpec, record: dict[str, Any]) -> Point:
    """A retrieved record (or scored point) as a state comparable with the model's."""
    vector = record.get("vector")
    vectors = {UNNAMED: vector} if isinstance(vector, list) else dict(vector or {})
    return make_point(record.get("payload"), vectors)


def judge_maxsim(
    spec: CollectionSpec,
    name: str,
    point_id: int,
    query: list[list[float]],
    hits: list[dict[str, Any]],
    points: dict[int, Point],
    checks: ReadChecks,
) -> None:
    """The hits of a MaxSim `query` made for `point_id`, against the MaxSim scores the tool
    computes from `points`: each hit is a point retrieve has, with the score of its matrix;
    the point is found unless `EXACT_LIMIT` others score as well; the hits are the best."""
    checks.maxsim_sampled += 1
    squared = {
        pid: maxsim_squared(query, rows) for pid, rows in _matrices(spec, name, points).items()
    }
    for hit in hits:
        _check_hit(spec, hit, points, checks)
        detail: dict[str, Any] = {"point_id": hit["id"], "vector_name": name}
        if hit["id"] in points and hit["id"] not in squared:
            detail["problem"] = "MaxSim query returned a point without the multivector"
        elif hit["id"] in squared and not _is_close(hit["score"] ** 2, squared[hit["id"]]):
            detail["problem"] = "MaxSim score differs from the retrieved matrix's"
            detail |= {"score": hit["score"], "expected": math.sqrt(squared[hit["id"]])}
        else:
            continue
        checks.findings.append(Finding("maxsim", spec.name, detail))
    own = squared[point_id]
    rivals = sum(
        value <= own or _is_close(value, own) for pid, value in squared.items() if pid != point_id
    )
    best = sorted(squared.values())[:EXACT_LIMIT]
    got = sorted(hit["score"] ** 2 for hit in hits)
    detail = {"point_id": point_id, "vector_name": name}
    detail |= {"hits": [(hit["id"], hit["score"]) for hit in hits]}
    if rivals < EXACT_LIMIT and point_id not in {hit["id"] for hit in hits}:
        detail["problem"] = "MaxSim query does not find the point"
    elif len(got) != len(best) or not all(map(_is_close, got, best)):
        detail["problem"] = "MaxSim hits are not the best-scoring matrices"
        detail["expected_scores"] = [math.sqrt(value) for value in best]
    else:
        return
    checks.findings.append(Finding("maxsim", spec.name, detail))


def maxsim_squared(query: list[list[float]], matrix: Vector) -> float:
    """Euclid MaxSim, unreported: for each query row the least squared distance to a row of
    `matrix`, summed. Qdrant sums the similarities (minus these) and reports the square root
    of the sum's magnitude (Distance::postprocess_score), as Keel does
    (engine/query/multivector.py); exact here, the numbers being multiples of 1/4096."""
    assert query, "a MaxSim query has no rows"
    assert matrix, "a multivector has no rows"
    return sum(
        min(sum((a - b) ** 2 for a, b in zip(row, stored, strict=True)) for stored in matrix)
        for row in query
    )


async def _check_search(
    session: aiohttp.ClientSession,
    url: str,
    spec: CollectionSpec,
    name: str,
    point_id: int,
    points: dict[int, Point],
    checks: ReadChecks,
) -> None:
    vector = list(dict(points[point_id][1])[name])
    query: Any = {"name": name, "vector": vector} if spec.is_named else vector
    search_url = f"{url}/collections/{spec.name}/points/search"
    exact_body = {"vector": query, "limit": EXACT_LIMIT, "with_payload": True}
    hits = await result_of(session, "POST", search_url, exact_body | {"params": {"exact": True}})
    # The point is at distance 0 from its own vector; another point can only tie.
    best_ids = [hit["id"] for hit in hits if hits and hit["score"] == hits[0]["score"]]
    if point_id not in best_ids or hits[0]["score"] != 0:
        detail = {"problem": "exact search does not find the point", "point_id": point_id}
        detail |= {"vector_name": name, "hits": [(hit["id"], hit["score"]) for hit in hits]}
        checks.findings.append(Finding("search", spec.name, detail))
    hnsw_body = {"vector": query, "limit": HNSW_LIMIT, "with_payload": True}
    hnsw_hits = await result_of(session, "POST", search_url, hnsw_body)
    checks.hnsw_sampled += 1
    checks.hnsw_found += any(hit["id"] == point_id for hit in hnsw_hits)
    for hit in [*hits, *hnsw_hits]:
        _check_hit(spec, hit, points, checks)


async def _check_maxsim(
    session: aiohttp.ClientSession,
    url: str,
    spec: CollectionSpec,
    name: str,
    point_id: int,
    points: dict[int, Point],
    rng: random.Random,
    checks: ReadChecks,
) -> None:
    """Query the multivector `name` by the point's own rows (each at distance 0) and one
    random row, and judge the hits against the matrices retrieve returned."""
    rows = _matrices(spec, name, points).get(point_id)
    if rows is None:
        return  # a matrix with rows of the wrong size, already a finding of the model
    query = [list(row) for row in reversed(rows)] + [random_vector(rng, spec.vectors[name])]
    body = {"query": query, "using": name, "limit": EXACT_LIMIT, "with_payload": True}
    query_url = f"{url}/collections/{spec.name}/points/query"
    status, answer = await request_json(session, "POST", query_url, body)
    if status == NOT_IMPLEMENTED:
        checks.skipped["maxsim query"] = _not_implemented("query", answer)
        return
    result = await _result_or_finding(status, answer, "maxsim", spec, checks)
    if result is not None:
        judge_maxsim(spec, name, point_id, query, result["points"], points, checks)


def _matrices(spec: CollectionSpec, name: str, points: dict[int, Point]) -> dict[int, Vector]:
    """The well-formed matrices of `name`: a point whose rows are not all of the configured
    size (a torn matrix, reported by the model) is left out, so the scores stay defined."""
    size = spec.vectors[name]
    matrices = {pid: dict(point[1]).get(name) for pid, point in points.items()}
    return {
        pid: rows
        for pid, rows in matrices.items()
        if rows and all(isinstance(row, tuple) and len(row) == size for row in rows)
    }


def _is_close(got: float, expected: float) -> bool:
    return abs(got - expected) <= MAXSIM_SQUARED_TOLERANCE * max(1.0, expected)


def _check_hit(
    spec: CollectionSpec, hit: dict[str, Any], points: dict[int, Point], checks: ReadChecks
) -> None:
    """A search hit must be a point retrieve returned, with the same payload."""
    point = points.get(hit["id"])
    if point is None:
        detail = {
            "problem": "search returned a point retrieve does not have",
            "point_id": hit["id"],
        }
        checks.findings.append(Finding("search", spec.name, detail))
    elif (hit.get("payload") or {}) != point_payload(point):
        detail = {"problem": "search and retrieve disagree on the payload", "point_id": hit["id"]}
        detail |= {"search": hit.get("payload"), "retrieve": point_payload(point)}
        checks.findings.append(Finding("search", spec.name, detail))


async def _check_scroll(
    session: aiohttp.ClientSession,
    url: str,
    spec: CollectionSpec,
    points: dict[int, Point],
    checks: ReadChecks,
) -> None:
    scrolled: dict[int, Point] = {}
    offset = None
    for _ in range(len(points) // SCROLL_LIMIT + 2):  # one page more than enough
        body = {"limit": SCROLL_LIMIT, "with_payload": True, "with_vector": True, "offset": offset}
        scroll_url = f"{url}/collections/{spec.name}/points/scroll"
        status, answer = await request_json(session, "POST", scroll_url, body)
        if status == NOT_IMPLEMENTED:
            checks.skipped["scroll"] = _not_implemented("scroll", answer)
            return
        page = await _result_or_finding(status, answer, "scroll", spec, checks)
        if page is None:
            return
        scrolled.update((record["id"], observed_point(spec, record)) for record in page["points"])
        offset = page.get("next_page_offset")
        if offset is None:
            break
    differing = sorted(
        pid for pid in set(points) | set(scrolled) if points.get(pid) != scrolled.get(pid)
    )
    if differing or offset is not None:
        detail = {"problem": "scroll and retrieve disagree", "point_ids": differing[:20]}
        detail |= {"examples": [(pid, point_json(scrolled.get(pid))) for pid in differing[:3]]}
        checks.findings.append(Finding("scroll", spec.name, detail))


async def _check_count(
    session: aiohttp.ClientSession,
    url: str,
    spec: CollectionSpec,
    points: dict[int, Point],
    checks: ReadChecks,
) -> None:
    count_url = f"{url}/collections/{spec.name}/points/count"
    status, answer = await request_json(session, "POST", count_url, {"exact": True})
    if status == NOT_IMPLEMENTED:
        checks.skipped["count"] = _not_implemented("count", answer)
        return
    result = await _result_or_finding(status, answer, "count", spec, checks)
    if result is not None and result.get("count") != len(points):
        detail = {"problem": "count differs from the points retrieved"}
        detail |= {"count": result.get("count"), "retrieved": len(points)}
        checks.findings.append(Finding("count", spec.name, detail))


def _not_implemented(endpoint: str, answer: Any) -> str:
    return f"POST .../points/{endpoint} answered 501: {error_text(answer)}"


async def _result_or_finding(
    status: int, answer: Any, check: str, spec: CollectionSpec, checks: ReadChecks
) -> Any:
    if status == 200 and isinstance(answer, dict) and "result" in answer:
        return answer["result"]
    detail = {"problem": f"{check} answered {status}", "error": error_text(answer)}
    checks.findings.append(Finding(check, spec.name, detail))
    return None
