"""What `keel migrate`, `keel follow` and `keel import` share: REST clients, the state file,
collection bodies, point conversion, comparison and progress output.

Owns: `create_collection_body` (a CollectionConfig back to the CreateCollection body that
makes it), turning stored points into qdrant-client `PointStruct`s, comparing points within
a float tolerance, the JSON state file (replaced atomically through engine/files.py), the
default follower name, the progress line (points/s, ETA on a terminal; plain log lines
every few seconds otherwise), the commands' logging (the server's format, server/logs.py),
and the guards that run before anything is changed: source and target must be two servers
(`check_distinct_servers`), and every collection `--overwrite` would delete on the target
is named with its point count and confirmed (`confirm_deletions`).
Not here: the migration steps (server/commands/migrate.py), the WAL tail (server/commands/follow.py), import (server/commands/import_cli.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
import socket
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from engine import files
from engine.logfmt import log_event
from engine.ops import UNNAMED_VECTOR, CollectionConfig, HnswSettings, PointId
from server.logs import configure_logging as configure_server_logging

log = logging.getLogger("keel.transfer")

REQUEST_TIMEOUT_S = 300.0
PROGRESS_LOG_EVERY_S = 5.0
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-6
STATE_FORMAT_VERSION = 1
HNSW_CORE_FIELDS = ("m", "ef_construct", "full_scan_threshold")


class TransferError(Exception):
    """A step failed in a way the user must see; the message says what to do."""


class RefusedError(TransferError):
    """Refused before changing anything (same server, a deletion not confirmed, a
    collection in the way); the message says what to do, and rerunning as is cannot help."""


def configure_logging() -> None:
    """Log as `keel serve` does (server/logs.py: UTC time, level, logger, event, fields)."""
    configure_server_logging("INFO", "text")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request


# ---- guards: run before anything is changed -------------------------------------------------


def check_distinct_servers(
    source_url: str, source: httpx.Client, target_url: str, target: httpx.Client
) -> None:
    """RefusedError unless `source` and `target` are two servers: copying a collection onto
    itself would first delete it. The URLs are compared normalised (host, port or its
    default, path; every name or address of this machine's loopback is one host), then
    the id each server reports in `GET /telemetry` (Keel: its storage's, Qdrant: its
    process's); a server whose id cannot be read is refused too, since then nothing proves
    the two differ."""
    if _endpoint_key(source_url) == _endpoint_key(target_url):
        raise RefusedError(
            f"--from {source_url} and --to {target_url} are the same server; nothing was "
            "changed. Give --to the other server's URL"
        )
    source_id = server_id(source)
    target_id = server_id(target)
    if source_id == target_id:
        raise RefusedError(
            f"--from {source_url} and --to {target_url} are the same server (both report "
            f"telemetry id {source_id}); nothing was changed. Give --to the other server's URL "
            "(a Keel started on a copy of another's storage shares its id until the copy's "
            "storage_id file is removed)"
        )
    log_event(log, logging.INFO, "servers are distinct", source_id=source_id, target_id=target_id)


def server_id(client: httpx.Client) -> str:
    """The id a Keel or Qdrant server reports in `GET /telemetry` (`result.id`)."""
    try:
        result = call(client, "GET", "/telemetry")
    except TransferError as error:
        raise RefusedError(
            f"cannot tell whether source and target are different servers: {error}"
        ) from None
    server_id_text = result.get("id") if isinstance(result, dict) else None
    if not isinstance(server_id_text, str) or not server_id_text:
        raise RefusedError(
            f"cannot tell whether source and target are different servers: GET "
            f"{client.base_url}/telemetry has no id"
        )
    return server_id_text


def add_overwrite_flags(parser: argparse.ArgumentParser) -> None:
    """`--overwrite` and `--confirm-delete NAME` (repeatable) for migrate and import."""
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace collections that exist on the target; each one is deleted only once "
        "confirmed (asked on a terminal, else --confirm-delete)",
    )  # fmt: skip
    parser.add_argument(
        "--confirm-delete", action="append", default=[], metavar="C",
        help="with --overwrite: delete collection C on the target without asking (repeatable)",
    )  # fmt: skip


def source_collection_infos(client: httpx.Client, names: list[str]) -> dict[str, Any]:
    """Each collection's CollectionInfo on the source; RefusedError naming every one it does
    not have (a typo in --collection), read before the target is touched."""
    missing = [
        name for name in names if not call(client, "GET", f"/collections/{name}/exists")["exists"]
    ]
    if missing:
        raise RefusedError(
            f"no collection {', '.join(missing)} on the source {client.base_url}; nothing was "
            "changed"
        )
    return {name: call(client, "GET", f"/collections/{name}") for name in names}


def points_count(client: httpx.Client, name: str) -> int:
    """The exact number of points of collection `name`."""
    path = f"/collections/{name}/points/count"
    return call(client, "POST", path, json={"exact": True})["count"]


def confirm_deletions(
    command: str,
    target_url: str,
    counts: dict[str, int],
    args: argparse.Namespace,
    ask: Callable[[str], str] | None,
) -> set[str]:
    """The collections (of `counts`: name -> points, all existing on the target) that may be
    deleted; RefusedError, before anything is changed, unless every one is: `--overwrite`
    and, for each, `--confirm-delete NAME` or, with `ask` (a terminal), its name typed back.
    Never a default that deletes: an empty answer or any other text refuses."""
    if not counts:
        return set()
    listing = ", ".join(f"{name} ({count} points)" for name, count in sorted(counts.items()))
    if not args.overwrite:
        raise RefusedError(
            f"collections exist on the target {target_url}: {listing}; nothing was changed. "
            "To replace them pass --overwrite (each is deleted once confirmed), or leave them "
            "out with --collection"
        )
    unconfirmed = sorted(set(counts) - set(args.confirm_delete))
    if unconfirmed and ask is None:
        flags = " ".join(f"--confirm-delete {name}" for name in unconfirmed)
        raise RefusedError(
            f"--overwrite would delete on the target {target_url}: {listing}; nothing was "
            f"changed. Confirm with {flags} (or run on a terminal to be asked)"
        )
    for name in unconfirmed:
        assert ask is not None
        answer = ask(
            f"keel {command}: --overwrite deletes collection {name!r} on {target_url}, "
            f"which holds {counts[name]} points. Type its name to delete it: "
        )
        if answer.strip() != name:
            raise RefusedError(f"deletion of collection {name} not confirmed; nothing was changed")
    for name, count in sorted(counts.items()):
        log_event(
            log, logging.WARNING, "will delete on target", collection=name, points=count,
            url=target_url,
        )  # fmt: skip
    return set(counts)


def terminal_prompt() -> Callable[[str], str] | None:
    """`input` when stdin and stderr are a terminal (the prompt goes to stderr), else None."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(prompt: str) -> str:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return sys.stdin.readline()

    return ask


# ---- REST -----------------------------------------------------------------------------------


def add_endpoint_flags(parser: argparse.ArgumentParser, source_help: str) -> None:
    """`--to`, `--to-api-key`, `--from` (a running Keel) and `--api-key` (its key)."""
    parser.add_argument("--to", required=True, metavar="URL", help="target Qdrant/Keel URL")
    parser.add_argument("--to-api-key", metavar="K", help="API key of the target")
    parser.add_argument(
        "--from", dest="source", default="http://127.0.0.1:6333", metavar="URL",
        help=f"{source_help} (default http://127.0.0.1:6333)",
    )  # fmt: skip
    parser.add_argument("--api-key", metavar="K", help="API key of the source Keel")


def rest_client(url: str, api_key: str | None) -> httpx.Client:
    """An HTTP client for a Keel or Qdrant at `url` (the source's snapshot and /keel/ API,
    and the raw requests a follower replays)."""
    headers = {"api-key": api_key} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=REQUEST_TIMEOUT_S)


def qdrant_client(url: str, api_key: str | None) -> Any:
    from qdrant_client import QdrantClient  # only the transfer commands need it

    parsed = urllib.parse.urlsplit(url)
    is_https = parsed.scheme == "https"
    return QdrantClient(
        url=url,
        port=parsed.port or (443 if is_https else 6333),
        api_key=api_key or None,
        https=is_https,
        timeout=int(REQUEST_TIMEOUT_S),
        prefer_grpc=False,
        check_compatibility=False,
    )


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """`result` of a Qdrant-style JSON answer; TransferError with the server's text else."""
    quoted = urllib.parse.quote(path, safe="/")
    try:
        response = client.request(method, quoted, **kwargs)
    except httpx.HTTPError as error:
        raise TransferError(f"{method} {client.base_url}{path} failed: {error}") from error
    if response.status_code >= 400:
        raise TransferError(
            f"{method} {client.base_url}{path} answered {response.status_code}: "
            f"{error_text(response)}"
        )
    return response.json().get("result")


def error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["status"]["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def follower_name_for(target_url: str) -> str:
    """The default follower name for a target: `follow-<host>-<port>`."""
    parsed = urllib.parse.urlsplit(target_url)
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", parsed.hostname or "target")
    port = parsed.port or (443 if parsed.scheme == "https" else 6333)
    return f"follow-{host}-{port}"[:128]


def default_state_path(target_url: str) -> Path:
    parsed = urllib.parse.urlsplit(target_url)
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", parsed.netloc or "target")
    return Path(f"keel-migrate-{host}.json")


# ---- state file -----------------------------------------------------------------------------


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_bytes())
    except ValueError as error:
        raise TransferError(f"state file {path} is not JSON ({error}); remove it") from None
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise TransferError(f"state file {path} has an unknown format; remove it")
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically: after a crash the old or the new one is there."""
    files.write_file_atomic(path, json.dumps(state, indent=1, sort_keys=True).encode())


# ---- collection config ----------------------------------------------------------------------


def create_collection_body(config: CollectionConfig) -> dict[str, Any]:
    """The CreateCollection body that makes `config` (server/wire/collection_config.py parses it
    back to an equal config): vectors, sparse vectors, hnsw, wal, optimizers, quantization,
    metadata and the collection params, as the collection was created (its echo)."""
    echo = config.echo
    vector_echo = echo.get("vectors", {})

    def vector_body(name: str) -> dict[str, Any]:
        vector = config.vectors[name]
        return {"size": vector.size, "distance": vector.distance.value, **vector_echo.get(name, {})}

    is_single_form = echo.get("is_single_form", config.is_single_unnamed)
    body: dict[str, Any] = dict(echo.get("params") or {})
    if is_single_form:
        body["vectors"] = vector_body(UNNAMED_VECTOR)
    else:
        body["vectors"] = {name: vector_body(name) for name in config.vectors}
    if config.sparse_vectors:
        sparse_echo = echo.get("sparse_vectors", {})
        body["sparse_vectors"] = {name: sparse_echo.get(name, {}) for name in config.sparse_vectors}
    hnsw = dict(echo.get("hnsw_config") or {})
    defaults = HnswSettings()
    for name in HNSW_CORE_FIELDS:
        # A config update may have changed a core value without touching the echo.
        if getattr(config.hnsw, name) != hnsw.get(name, getattr(defaults, name)):
            hnsw[name] = getattr(config.hnsw, name)
    if hnsw:
        body["hnsw_config"] = hnsw
    for key in ("wal_config", "optimizers_config"):
        if echo.get(key):
            body[key] = echo[key]
    for key in ("quantization_config", "metadata"):
        if echo.get(key) is not None:
            body[key] = echo[key]
    return body


def create_index_body(field_name: str, schema_type: str, params: Any) -> dict[str, Any]:
    return {"field_name": field_name, "field_schema": params if params else schema_type}


# ---- points ---------------------------------------------------------------------------------


def point_id_json(point_id: PointId) -> int | str:
    return str(point_id) if isinstance(point_id, uuid.UUID) else point_id


def point_vector(
    dense: dict[str, np.ndarray], sparse: dict[str, tuple[list[int], list[float]]], single: bool
) -> Any:
    """A point's vector as qdrant-client takes it: a list for a single unnamed vector, else
    a dict of lists and SparseVectors."""
    from qdrant_client import models

    if single and list(dense) == [UNNAMED_VECTOR] and not sparse:
        return dense[UNNAMED_VECTOR].astype(np.float32).tolist()
    vector: dict[str, Any] = {name: v.astype(np.float32).tolist() for name, v in dense.items()}
    for name, (indices, values) in sparse.items():
        vector[name] = models.SparseVector(indices=indices, values=values)
    return vector


def vectors_of(vector: Any) -> tuple[dict[str, np.ndarray], dict[str, tuple[list, list]]]:
    """(dense by name, sparse by name) of a vector as qdrant-client returns it."""
    if vector is None:
        return {}, {}
    if isinstance(vector, list):
        return {UNNAMED_VECTOR: np.asarray(vector, dtype=np.float32)}, {}
    dense, sparse = {}, {}
    for name, value in vector.items():
        if isinstance(value, list):
            dense[name] = np.asarray(value, dtype=np.float32)
        else:
            pairs = sorted(zip(value.indices, value.values))
            sparse[name] = ([i for i, _ in pairs], [v for _, v in pairs])
    return dense, sparse


def point_differences(
    point_id: PointId,
    expected: tuple[dict[str, Any] | None, dict[str, np.ndarray], dict[str, tuple[list, list]]],
    actual: Any,
) -> list[str]:
    """What differs between a point as expected (payload, dense, sparse) and as the target
    returned it (a qdrant-client Record, or None if it is missing there)."""
    if actual is None:
        return [f"point {point_id} is missing on the target"]
    payload, dense, sparse = expected
    problems = []
    if (payload or {}) != (actual.payload or {}):
        problems.append(f"point {point_id}: payloads differ")
    actual_dense, actual_sparse = vectors_of(actual.vector)
    if set(dense) != set(actual_dense):
        problems.append(
            f"point {point_id}: dense vector names {sorted(dense)} != {sorted(actual_dense)}"
        )
    for name in set(dense) & set(actual_dense):
        if not np.allclose(dense[name], actual_dense[name], rtol=FLOAT_RTOL, atol=FLOAT_ATOL):
            problems.append(f"point {point_id}: vector {name!r} differs")
    if set(sparse) != set(actual_sparse):
        problems.append(
            f"point {point_id}: sparse names {sorted(sparse)} != {sorted(actual_sparse)}"
        )
    for name in set(sparse) & set(actual_sparse):
        (indices, values), (other_indices, other_values) = sparse[name], actual_sparse[name]
        if list(indices) != list(other_indices) or not np.allclose(
            values, other_values, rtol=FLOAT_RTOL, atol=FLOAT_ATOL
        ):
            problems.append(f"point {point_id}: sparse vector {name!r} differs")
    return problems


def sample_indexes(total_count: int, sample_count: int) -> set[int]:
    """Evenly spread positions in [0, total_count) to verify, at most sample_count."""
    if total_count <= 0 or sample_count <= 0:
        return set()
    step = max(1, total_count // sample_count)
    return set(range(0, total_count, step))


# ---- progress -------------------------------------------------------------------------------


class Progress:
    """Points done / total, points/s and ETA: one rewritten line on a terminal, else a log
    event every PROGRESS_LOG_EVERY_S seconds; a log event at the end either way."""

    def __init__(
        self, command: str, collection_name: str, total_count: int, done_count: int = 0
    ) -> None:
        self.command = command
        self.collection_name = collection_name
        self.total_count = total_count
        self.done_count = done_count
        self._started_s = time.monotonic()
        self._started_count = done_count
        self._logged_s = 0.0
        self._is_terminal = sys.stderr.isatty()

    def advance(self, count: int) -> None:
        self.done_count += count
        now_s = time.monotonic()
        if self._is_terminal:
            sys.stderr.write("\r" + self.line() + " " * 4)
            sys.stderr.flush()
        elif now_s - self._logged_s >= PROGRESS_LOG_EVERY_S:
            self._logged_s = now_s
            self._log("copying points")

    def finish(self) -> None:
        if self._is_terminal:
            sys.stderr.write("\r" + self.line() + "\n")
            sys.stderr.flush()
        self._log("points copied")

    def line(self) -> str:
        """The terminal's line: `import docs: points=500/1000 (50.0%) points_per_s=900 eta=1s`."""
        rate, eta_s = self._rate_and_eta_s()
        eta = f"{eta_s:.0f}s" if eta_s is not None else "?"
        percent = 100.0 * self.done_count / self.total_count if self.total_count else 100.0
        return (
            f"{self.command} {self.collection_name}: points={self.done_count}/"
            f"{self.total_count} ({percent:.1f}%) points_per_s={rate:.0f} eta={eta}"
        )

    def _log(self, event: str) -> None:
        rate, eta_s = self._rate_and_eta_s()
        log_event(
            log, logging.INFO, event, command=self.command, collection=self.collection_name,
            points_done=self.done_count, points_total=self.total_count,
            points_per_s=round(rate), eta_s=None if eta_s is None else round(eta_s),
        )  # fmt: skip

    def _rate_and_eta_s(self) -> tuple[float, float | None]:
        elapsed_s = max(time.monotonic() - self._started_s, 1e-9)
        rate = (self.done_count - self._started_count) / elapsed_s
        remaining = max(self.total_count - self.done_count, 0)
        return rate, (remaining / rate if rate > 0 else None)


def chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    assert size >= 1, size
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _endpoint_key(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a URL (one port speaks one scheme); every loopback or
    unspecified address, and any name that resolves only to such addresses, is "local"."""
    parsed = urllib.parse.urlsplit(url.strip())
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 6333)
    host = (parsed.hostname or "").lower()
    return "local" if _is_local_host(host) else host, port, parsed.path.rstrip("/")


def _is_local_host(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False  # unresolvable: the identity check decides
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    return bool(addresses) and all(a.is_loopback or a.is_unspecified for a in addresses)

