"""Memory of a process, from /proc/<pid>/status (Linux only)."""

from __future__ import annotations

from pathlib import Path


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM, the process's peak resident set, in bytes; None if it cannot be read."""
    return _status_kib(pid, "VmHWM")


def rss_bytes(pid: int) -> int | None:
    """VmRSS, the process's resident set now, in bytes; None if it cannot be read."""
    return _status_kib(pid, "VmRSS")


def rss_parts_bytes(pid: int) -> dict[str, int | None]:
    """RssAnon (the heap: Python objects, hnswlib's graph) and RssFile (mapped files: LMDB's
    pages, shared libraries) now, in bytes."""
    return {"rss_anon_bytes": _status_kib(pid, "RssAnon"),
            "rss_file_bytes": _status_kib(pid, "RssFile")}  # fmt: skip


def _status_kib(pid: int, field_name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return None
