"""The process's resident memory as a percentage of the memory it may use.

Owns: the reading strict mode's deprecated `max_resident_memory_percent` compares with:
resident bytes from /proc/self/statm, over the cgroup's memory limit when one is set (v2
`memory.max`, v1 `memory.limit_in_bytes`) and below the machine's, else the machine's memory
(/proc/meminfo `MemTotal`); rounded down, at most 100, None when unreadable (a limit that
cannot be evaluated lets the write through, as in Qdrant).
Not here: refusing the write (engine/strict_mode/checks.py `check_resident_memory`).

Qdrant 1.19: lib/shard/src/quota/manager/measure.rs `resident_memory_percent`,
lib/shard/src/quota/check.rs `percent_of`, lib/segment/src/utils/mem.rs `total_memory_bytes`.
"""

from __future__ import annotations

import os
from pathlib import Path

STATM_PATH = Path("/proc/self/statm")
MEMINFO_PATH = Path("/proc/meminfo")
CGROUP_LIMIT_PATHS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def resident_memory_percent() -> int | None:
    """Resident memory x 100 // the memory this process may use; None when unreadable."""
    resident_bytes = _resident_bytes()
    total_bytes = _total_memory_bytes()
    if resident_bytes is None or not total_bytes:
        return None
    return percent_of(resident_bytes, total_bytes)


def percent_of(used: int, total: int) -> int:
    """`percent_of`: rounded down, never above 100."""
    assert total > 0, total
    return min(100, used * 100 // total)


def _resident_bytes() -> int | None:
    try:
        resident_pages = int(STATM_PATH.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _total_memory_bytes() -> int | None:
    machine_bytes = _machine_memory_bytes()
    for path in CGROUP_LIMIT_PATHS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (machine_bytes is None or int(text) < machine_bytes):
            return int(text)  # "max", or v1's huge number, means no limit
    return machine_bytes


def _machine_memory_bytes() -> int | None:
    try:
        lines = MEMINFO_PATH.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024  # kB
    return None
