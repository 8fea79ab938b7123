"""Server capacity measured by `wrk`, a C load generator, so the client is never the limit.

Owns: finding wrk, writing the request bodies to a file and the Lua script that sends them,
running `wrk` (1 thread, 8 connections by default) and parsing the line its Lua `done()`
prints. Not here: what the bodies mean (keel.py, sweep.py, floor.py build them).

The bodies are encoded once, before the clock, one JSON document per line (orjson never
writes a newline inside one). The script reads them in wrk's `init` and cycles through them,
one pre-formatted request each, so during the run the client only writes bytes. A body may
carry the placeholder `__ID__`: the script splices a counter there (distinct point ids for
upserts), one string concatenation per request, still no JSON encoding.

wrk counts non-2xx answers as `errors.status`; they are reported, and a run with any is marked
so the report never counts a 503 as a served request (`ok_requests_per_s` excludes them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WRK_THREADS = 1
WRK_CONNECTIONS = 8
WRK_TIMEOUT_S = 10  # wrk's default of 2 s would drop slow answers out of the latencies
ID_PLACEHOLDER = b"__ID__"
RESULT_MARK = "KEEL_BENCH_WRK "
INSTALL_HINT = "wrk is missing: install it with `apt-get install wrk` (Debian/Ubuntu)"
PERCENTILES = (50, 90, 99, 99.9)

LUA_SCRIPT = r"""
-- Written by tools/bench/wrk.py: cycle through pre-encoded bodies, print a parseable summary.
local method, path
local requests = {}
local prefixes, suffixes = {}, {}
local spliced = false
local index, next_id = 0, 0

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  local file = assert(io.open(args[1], "rb"))
  method, path, next_id = args[2], args[3], tonumber(args[4])
  for line in file:lines() do
    local at = string.find(line, "__ID__", 1, true)
    if at then
      spliced = true
      prefixes[#prefixes + 1] = line:sub(1, at - 1)
      suffixes[#suffixes + 1] = line:sub(at + 6)
    else
      requests[#requests + 1] = wrk.format(method, path, headers, line)
    end
  end
  file:close()
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if spliced then
    index = index % #prefixes + 1
    next_id = next_id + 1
    return wrk.format(method, path, nil, prefixes[index] .. next_id .. suffixes[index])
  end
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    "KEEL_BENCH_WRK ", summary.requests, summary.duration, summary.bytes, e.connect,
    e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""


class WrkUnavailable(Exception):
    """wrk is not installed; the message says how to install it."""


@dataclass(frozen=True)
class WrkRun:
    """What to send: `bodies` to `method url`, for `seconds`, from `connections`."""

    url: str
    method: str
    bodies: Sequence[bytes]
    seconds: float
    connections: int = WRK_CONNECTIONS
    first_id: int = 0  # the first id spliced into bodies with ID_PLACEHOLDER


def require() -> str:
    """The path of wrk, or WrkUnavailable naming the package to install."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkUnavailable(INSTALL_HINT)
    return path


def run(plan: WrkRun, work_dir: Path) -> dict:
    """Run wrk once; its counts, requests/s and latency percentiles in milliseconds.

    Raises WrkUnavailable if wrk is missing and RuntimeError (with wrk's output) if it
    fails or prints no summary line.
    """
    wrk = require()
    assert plan.bodies, "no request bodies"
    work_dir.mkdir(parents=True, exist_ok=True)
    bodies_path = work_dir / "wrk-bodies.jsonl"
    script_path = work_dir / "wrk-script.lua"
    with open(bodies_path, "wb") as bodies_file:
        for body in plan.bodies:
            assert b"\n" not in body, "a body must be one line"
            bodies_file.write(body + b"\n")
    script_path.write_text(LUA_SCRIPT)
    scheme_host, path = _split_url(plan.url)
    duration_s = max(1, round(plan.seconds))
    command = [
        wrk, "-t", str(WRK_THREADS), "-c", str(plan.connections), "-d", f"{duration_s}s",
        "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(script_path), scheme_host,
        "--", str(bodies_path), plan.method, path, str(plan.first_id),
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration_s + 120
    )
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith(RESULT_MARK)), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed exit={completed.returncode}: {completed.stdout[-1500:]} "
            f"{completed.stderr[-1500:]}"
        )
    return summarize(json.loads(line[len(RESULT_MARK) :]), plan)


def summarize(raw: dict, plan: WrkRun) -> dict:
    """The report's shape from the numbers wrk's `done()` printed."""
    took_s = raw["duration_us"] / 1e6
    errors = {key: raw[key] for key in ("connect", "read", "write", "status", "timeout")}
    ok_requests = raw["requests"] - raw["status"]
    return {
        "tool": "wrk",
        "threads": WRK_THREADS,
        "connections": plan.connections,
        "distinct_bodies": len(plan.bodies),
        "requests": raw["requests"],
        "took_s": round(took_s, 3),
        "requests_per_s": round(raw["requests"] / took_s, 1),
        "ok_requests_per_s": round(ok_requests / took_s, 1),
        "errors": errors,
        "has_errors": any(errors.values()),
        "latency_ms_p50": _ms(raw["p50_us"]),
        "latency_ms_p90": _ms(raw["p90_us"]),
        "latency_ms_p99": _ms(raw["p99_us"]),
        "latency_ms_p999": _ms(raw["p999_us"]),
        "latency_ms_max": _ms(raw["max_us"]),
    }


def _split_url(url: str) -> tuple[str, str]:
    match = re.fullmatch(r"(https?://[^/]+)(/.*)", url)
    assert match, url
    return match.group(1), match.group(2)


def _ms(microseconds: float) -> float:
    return round(microseconds / 1000, 3)
