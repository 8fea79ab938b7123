"""The checker: is the state a restarted server holds one the writers' answers allow?

Owns: `judge` (every point of one collection against the ops of one cycle) and
`check_op_ids` (operation ids are unique, increase, and respect real time).
Not here: reading the server (verify.py), sending ops (workload.py).

How the expected state is computed. Op ids are per collection and are the order in which
the server applies writes, so the state the server must hold is the state at the start of
the cycle with the cycle's acknowledged ops replayed in op id order (`update_mode` makes
the result depend on that order). The start state is exact: the first cycle starts empty,
and each later one starts from what the previous check accepted.

Ops without a known fate are the hard part: an op in flight at the kill, or answered with
an unexpected error, may be in the log or not, and if it is, its op id is unknown. The
choice made here is to allow exactly the states that some history explains, and nothing
else, rather than to shrink the workload (disjoint ids per writer would hide the
interactions `update_mode` and deletes are there to test):

- Ids touched by no uncertain op must equal the replay exactly.
- For an id touched by uncertain ops, `_reachable` enumerates the states of every history:
  each uncertain op applied or not and, if applied, placed anywhere in the op id order
  after every op whose answer had arrived before it was sent (that op's id was assigned
  first, so it is smaller). The state of the point must be one of them.
- All-or-nothing: uncertain ops that share ids form a component, and one choice of
  "applied or not" per op must explain every id of the component at once, so an op seen
  on one of its points and missing on another is caught. Positions are chosen per id,
  which is a relaxation: an op applied at different places for different ids is not
  caught. A component of more than `COMPONENT_OPS_MAX` ops is checked per id only, and
  the report says so.

After a check, the observed state becomes the next cycle's start state (a loss is
reported once, not again every cycle).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .ops import ACKED, UNCERTAIN, Op, Point, State, apply, point_json

COMPONENT_OPS_MAX = 12  # 2**12 joint choices; writers have one request each in flight


@dataclass
class Finding:
    """One thing the server got wrong; `check` names the rule it broke."""

    check: str
    collection: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "collection": self.collection, **self.detail}


@dataclass
class Verdict:
    """What `judge` concluded about one collection after one cycle."""

    points: dict[int, Point]  # the state from now on
    findings: list[Finding] = field(default_factory=list)
    lost_ops: list[Op] = field(default_factory=list)
    uncertain_applied: int = 0
    uncertain_not_applied: int = 0
    unresolved_components: int = 0  # too large to check jointly


@dataclass
class _Cycle:
    """The ops of one cycle on one collection, indexed by point id."""

    base: dict[int, Point]
    acked_of: dict[int, list[Op]]
    uncertain_of: dict[int, list[Op]]
    bound_of: dict[Op, int]  # op id lower bound of each uncertain op


def judge(
    collection: str, base: dict[int, Point], ops: list[Op], observed: dict[int, Point]
) -> Verdict:
    """Check `observed` (every point of the collection) against `base` plus `ops`."""
    acked = sorted((op for op in ops if op.outcome in ACKED), key=_op_id)
    uncertain = [op for op in ops if op.outcome in UNCERTAIN]
    cycle = _Cycle(
        base, _by_point(acked), _by_point(uncertain), op_id_lower_bounds(acked, uncertain)
    )
    verdict = Verdict(points={})
    point_ids = set(base) | set(cycle.acked_of) | set(observed)
    for point_id in sorted(point_ids - set(cycle.uncertain_of)):
        _judge_exact(collection, cycle, point_id, observed.get(point_id), verdict)
    for component in _components(uncertain):
        _judge_component(collection, cycle, component, observed, verdict)
    return verdict


def check_op_ids(collection: str, acked: list[Op], op_id_max_before: int) -> list[Finding]:
    """Acknowledged op ids are unique, above every id acknowledged before the restart, and
    above the id of every op whose answer arrived before they were sent."""
    findings: list[Finding] = []
    counts = Counter(op.op_id for op in acked)
    for op in acked:
        problem = None
        if counts[op.op_id] > 1:
            problem = "op id given to two acknowledged ops"
        elif _op_id(op) <= op_id_max_before:
            problem = f"op id not above {op_id_max_before}, acknowledged before the restart"
        if problem:
            findings.append(Finding("op_id", collection, {"problem": problem, **op.summary()}))
    bounds = op_id_lower_bounds(acked, acked)
    for op in acked:
        if _op_id(op) <= bounds[op]:
            problem = f"op id not above {bounds[op]}, answered before this op was sent"
            findings.append(Finding("op_id", collection, {"problem": problem, **op.summary()}))
    return findings


def op_id_lower_bounds(acked: list[Op], ops: list[Op]) -> dict[Op, int]:
    """Per op, the highest op id answered before it was sent (-1 if none): its own op id,
    assigned after the server received it, must be higher."""
    answered = sorted(acked, key=lambda op: op.answered_s)
    answered_s = [op.answered_s for op in answered]
    prefix_max = list(itertools.accumulate((_op_id(op) for op in answered), max, initial=-1))
    return {op: prefix_max[bisect.bisect_left(answered_s, op.sent_s)] for op in ops}


def _judge_exact(
    collection: str, cycle: _Cycle, point_id: int, got: State, verdict: Verdict
) -> None:
    history = cycle.acked_of.get(point_id, [])
    states = _fold(history, point_id, cycle.base.get(point_id))
    if got != states[-1]:
        _report_mismatch(collection, point_id, history, states, got, verdict)
    if got is not None:
        verdict.points[point_id] = got


def _judge_component(
    collection: str,
    cycle: _Cycle,
    component: list[Op],
    observed: dict[int, Point],
    verdict: Verdict,
) -> None:
    point_ids = sorted({point_id for op in component for point_id in op.ids})
    reachable = {pid: _reachable(cycle, pid) for pid in point_ids}
    applied = _explain(component, point_ids, reachable, observed, cycle)
    if applied is None:
        _report_unexplained(collection, cycle, component, point_ids, reachable, observed, verdict)
    elif len(component) > COMPONENT_OPS_MAX:
        verdict.unresolved_components += 1
    else:
        verdict.uncertain_applied += len(applied)
        verdict.uncertain_not_applied += len(component) - len(applied)
    for point_id in point_ids:
        if observed.get(point_id) is not None:
            verdict.points[point_id] = observed[point_id]


def _explain(
    component: list[Op],
    point_ids: list[int],
    reachable: dict[int, set[tuple[State, frozenset[Op]]]],
    observed: dict[int, Point],
    cycle: _Cycle,
) -> frozenset[Op] | None:
    """A set of the component's ops whose application explains every point, or None."""
    if len(component) > COMPONENT_OPS_MAX:
        # Per id only: any history for each point (see the module docstring).
        each_ok = all(
            observed.get(pid) in {state for state, _ in reachable[pid]} for pid in point_ids
        )
        return frozenset() if each_ok else None
    for size in range(len(component) + 1):
        for chosen in itertools.combinations(component, size):
            applied = frozenset(chosen)
            if all(
                (observed.get(pid), applied & frozenset(cycle.uncertain_of[pid])) in reachable[pid]
                for pid in point_ids
            ):
                return applied
    return None


def _reachable(cycle: _Cycle, point_id: int) -> set[tuple[State, frozenset[Op]]]:
    """Every (final state, uncertain ops applied) of the histories described above."""
    history = cycle.acked_of.get(point_id, [])
    candidates = cycle.uncertain_of[point_id]
    frontier: set[tuple[State, frozenset[Op]]] = {(cycle.base.get(point_id), frozenset())}
    for index in range(len(history) + 1):
        next_op_id = _op_id(history[index]) if index < len(history) else None
        # An uncertain op fits before history[index] only if its id can be below that op's.
        allowed = [op for op in candidates if next_op_id is None or cycle.bound_of[op] < next_op_id]
        frontier = _closure(frontier, allowed, point_id)
        if next_op_id is not None:
            frontier = {(apply(history[index], point_id, s), done) for s, done in frontier}
    return frontier


def _closure(
    frontier: set[tuple[State, frozenset[Op]]], allowed: list[Op], point_id: int
) -> set[tuple[State, frozenset[Op]]]:
    """`frontier` plus every state reached by applying allowed ops not yet applied."""
    result = set(frontier)
    pending = list(frontier)
    while pending:
        state, done = pending.pop()
        for op in allowed:
            if op in done:
                continue
            reached = (apply(op, point_id, state), done | {op})
            if reached not in result:
                result.add(reached)
                pending.append(reached)
    return result


def _report_unexplained(
    collection: str,
    cycle: _Cycle,
    component: list[Op],
    point_ids: list[int],
    reachable: dict[int, set[tuple[State, frozenset[Op]]]],
    observed: dict[int, Point],
    verdict: Verdict,
) -> None:
    """No history explains the component: name the points no history explains alone, or
    else the uncertain ops that were applied to some of their points only."""
    is_any_point_wrong = False
    for pid in point_ids:
        got = observed.get(pid)
        if got in {state for state, _ in reachable[pid]}:
            continue
        is_any_point_wrong = True
        history = cycle.acked_of.get(pid, [])
        states = _fold(history, pid, cycle.base.get(pid))
        _report_mismatch(collection, pid, history, states, got, verdict)
    if not is_any_point_wrong:
        detail = {
            "problem": "uncertain ops applied to some of their points and not to others",
            "ops": [op.summary() for op in component],
            "points": {pid: point_json(observed.get(pid)) for pid in point_ids},
        }
        verdict.findings.append(Finding("all_or_nothing", collection, detail))


def _report_mismatch(
    collection: str,
    point_id: int,
    history: list[Op],
    states: list[State],
    got: State,
    verdict: Verdict,
) -> None:
    """Classify a point that differs from the replay, and blame the ops whose effect is gone."""
    expected = states[-1]
    effective = [op for index, op in enumerate(history) if states[index + 1] != states[index]]
    if got in states:
        # The server holds an older state: every op that changed the point since is lost.
        since = max(index for index, state in enumerate(states) if state == got)
        lost = [op for index, op in enumerate(history[since:], since) if op in effective]
    else:
        lost = effective[-1:]
    if got is None:
        kind = "missing"
    elif expected is None:
        kind = "resurrected" if got in states else "invented"
    else:
        kind = "stale" if got in states else "corrupt"
    detail = {
        "point_id": point_id,
        "problem": kind,
        "expected": point_json(expected),
        "observed": point_json(got),
        "lost_ops": [op.summary() for op in lost],
    }
    verdict.findings.append(Finding("point", collection, detail))
    verdict.lost_ops.extend(op for op in lost if op not in verdict.lost_ops)


def _fold(history: list[Op], point_id: int, start: State) -> list[State]:
    """The point's state before the first op and after each op of `history`."""
    states = [start]
    for op in history:
        states.append(apply(op, point_id, states[-1]))
    return states


def _components(ops: list[Op]) -> list[list[Op]]:
    """Groups of ops connected through shared point ids (union-find over ids)."""
    parent: dict[int, int] = {}

    def root(point_id: int) -> int:
        while parent.setdefault(point_id, point_id) != point_id:
            parent[point_id] = parent[parent[point_id]]
            point_id = parent[point_id]
        return point_id

    for op in ops:
        for point_id in op.ids[1:]:
            parent[root(point_id)] = root(op.ids[0])
    groups: dict[int, list[Op]] = defaultdict(list)
    for op in ops:
        groups[root(op.ids[0])].append(op)
    return list(groups.values())


def _by_point(ops: list[Op]) -> dict[int, list[Op]]:
    by_point: dict[int, list[Op]] = defaultdict(list)
    for op in ops:
        for point_id in op.ids:
            by_point[point_id].append(op)
    return dict(by_point)


def _op_id(op: Op) -> int:
    assert op.op_id is not None, op.summary()
    return op.op_id
