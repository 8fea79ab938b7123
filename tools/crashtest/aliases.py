"""Alias changes in the crash test: one writer changes aliases while the others write points.

Owns: the alias writer (create, rename, delete `crashtest_alias_*` pointing at the test's
collections, one request at a time, each a `POST /collections/aliases` of one or two
actions), the model of what the aliases must be, and the check after a restart.
Not here: points (workload.py, model.py).

An alias change is answered only once it is durable (Qdrant's semantics; Keel writes
aliases.json atomically and fsyncs it first), so after a restart the aliases must be
exactly those of the acknowledged changes, applied in order; the one change in flight at
the kill may be there or not, but whole: a rename is never half done. One writer sends them
in sequence, so their order is known. Every alias is also read through (a count through the
alias equals the count through its collection).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .client import request_json, result_of
from .model import Finding

ALIAS_NAMES = tuple(f"crashtest_alias_{index}" for index in range(4))
CHANGES_PER_CYCLE_MAX = 100_000  # a cycle ends long before; this only bounds the loop
PAUSE_S = 0.01  # alias changes are rare in real life; this keeps them from dominating


@dataclass
class AliasChange:
    actions: list[dict[str, Any]]
    after: dict[str, str]  # the aliases once this change is applied
    outcome: str = "not_sent"  # "acknowledged", "in_flight", "refused" or "failed"
    error: str = ""


@dataclass
class AliasModel:
    """The aliases as of the last verified restart."""

    aliases: dict[str, str] = field(default_factory=dict)
    acknowledged_count: int = 0


def next_change(rng: random.Random, aliases: dict[str, str], collections: list[str]) -> AliasChange:
    """A valid change of `aliases`: create an absent alias, or rename or delete one."""
    absent = [name for name in ALIAS_NAMES if name not in aliases]
    present = sorted(aliases)
    after = dict(aliases)
    kind = rng.choice(["create"] * bool(absent) + ["rename", "delete", "move"] * bool(present))
    if kind == "create":
        alias, collection = rng.choice(absent), rng.choice(collections)
        after[alias] = collection
        actions = [{"create_alias": {"alias_name": alias, "collection_name": collection}}]
    elif kind == "rename" and absent:
        old, new = rng.choice(present), rng.choice(absent)
        after[new] = after.pop(old)
        actions = [{"rename_alias": {"old_alias_name": old, "new_alias_name": new}}]
    elif kind == "move":
        # Two actions in one request: all or none of them must survive.
        alias, collection = rng.choice(present), rng.choice(collections)
        after[alias] = collection
        actions = [
            {"delete_alias": {"alias_name": alias}},
            {"create_alias": {"alias_name": alias, "collection_name": collection}},
        ]
    else:
        alias = rng.choice(present)
        del after[alias]
        actions = [{"delete_alias": {"alias_name": alias}}]
    return AliasChange(actions, after)


async def run_alias_writer(
    session: aiohttp.ClientSession,
    url: str,
    rng: random.Random,
    start: dict[str, str],
    collections: list[str],
    changes: list[AliasChange],
    stop: asyncio.Event,
) -> None:
    """Send alias changes one at a time until `stop` or the server goes away."""
    aliases = dict(start)
    for _ in range(CHANGES_PER_CYCLE_MAX):
        if stop.is_set():
            return
        change = next_change(rng, aliases, collections)
        changes.append(change)
        try:
            status, answer = await request_json(
                session, "POST", f"{url}/collections/aliases", {"actions": change.actions}
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            change.outcome, change.error = "in_flight", type(error).__name__
            return
        if status == 200 and isinstance(answer, dict) and answer.get("result") is True:
            change.outcome = "acknowledged"
            aliases = change.after
        else:
            change.outcome, change.error = "failed", f"HTTP {status}: {str(answer)[:300]}"
            return
        await asyncio.sleep(PAUSE_S)


def judge_aliases(
    model: AliasModel, changes: list[AliasChange], observed: dict[str, str]
) -> list[Finding]:
    """Findings about the aliases seen after a restart; updates `model` to what was seen
    when that is allowed."""
    findings = [
        Finding(
            "alias",
            "*",
            {"problem": "an alias change failed", "actions": c.actions, "error": c.error},
        )
        for c in changes
        if c.outcome == "failed"
    ]
    acknowledged = [c for c in changes if c.outcome == "acknowledged"]
    expected = acknowledged[-1].after if acknowledged else model.aliases
    allowed = [expected]
    in_flight = [c for c in changes if c.outcome == "in_flight"]
    if in_flight:
        allowed.append(in_flight[-1].after)
    if observed not in allowed:
        findings.append(
            Finding(
                "alias",
                "*",
                {
                    "problem": "aliases after the restart",
                    "expected_one_of": allowed,
                    "observed": observed,
                },
            )
        )
    else:
        model.aliases = dict(observed)
    model.acknowledged_count += len(acknowledged)
    return findings


async def read_aliases(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """The test's aliases as the server lists them (`GET /aliases`)."""
    result = await result_of(session, "GET", f"{url}/aliases")
    return {
        entry["alias_name"]: entry["collection_name"]
        for entry in result["aliases"]
        if entry["alias_name"] in ALIAS_NAMES
    }


async def check_reads_through(
    session: aiohttp.ClientSession, url: str, aliases: dict[str, str]
) -> list[Finding]:
    """A count through each alias equals the count through its collection."""
    findings = []
    for alias, collection in sorted(aliases.items()):
        counts = []
        for name in (alias, collection):
            result = await result_of(
                session, "POST", f"{url}/collections/{name}/points/count", {"exact": True}
            )
            counts.append(result["count"])
        if counts[0] != counts[1]:
            detail = {"problem": "count through alias", "alias": alias, "counts": counts}
            findings.append(Finding("alias", collection, detail))
    return findings
