"""What `keel migrate`, `keel follow` and `keel import` share: REST clients, the state file,
collection bodies, point conversion, comparison and progress output.

Owns: `create_collection_body` (a CollectionConfig back to the CreateCollection body that
makes it), turning stored points into qdrant-client `PointStruct`s, comparing points within
a float tolerance, the JSON state file (replaced atomically through engine/files.py), the
default follower name, and the progress line (points/s, ETA on a terminal; plain log lines
every few seconds otherwise).
Not here: the migration steps (migrate.py), the WAL tail (follow.py), import (import_cli.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from engine import files
from engine.ops import UNNAMED_VECTOR, CollectionConfig, HnswSettings, PointId

log = logging.getLogger("keel.transfer")

REQUEST_TIMEOUT_S = 300.0
PROGRESS_LOG_EVERY_S = 5.0
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-6
STATE_FORMAT_VERSION = 1
HNSW_CORE_FIELDS = ("m", "ef_construct", "full_scan_threshold")


class TransferError(Exception):
    """A step failed in a way the user must see; the message says what to do."""


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
    """The CreateCollection body that makes `config` (server/collection_config.py parses it
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
    line every PROGRESS_LOG_EVERY_S seconds."""

    def __init__(self, label: str, total_count: int, done_count: int = 0) -> None:
        self.label = label
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
            log.info("%s", self.line())

    def finish(self) -> None:
        if self._is_terminal:
            sys.stderr.write("\r" + self.line() + "\n")
            sys.stderr.flush()
        log.info("%s", self.line())

    def line(self) -> str:
        elapsed_s = max(time.monotonic() - self._started_s, 1e-9)
        rate = (self.done_count - self._started_count) / elapsed_s
        remaining = max(self.total_count - self.done_count, 0)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
        percent = 100.0 * self.done_count / self.total_count if self.total_count else 100.0
        return (
            f"{self.label}: points={self.done_count}/{self.total_count} ({percent:.1f}%) "
            f"points_per_s={rate:.0f} eta={eta}"
        )


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
