"""Fetching a snapshot from an `http(s)://` location, for recover.

Owns: the GET of the location, streamed chunk by chunk into a new file in the storage's
tmp/ (engine.snapshot.SnapshotUpload: bounded by limits.SNAPSHOT_BYTES_MAX, hashed as it is
written, removed by the caller, or by the next start if Keel stops meanwhile), and Qdrant's
answers when that fails.
Not here: checking and restoring the file once it is here (catalog.restore, the same path
as `file://` and upload), parsing the recover body (server/api/snapshots.py).

Qdrant 1.19 (`lib/storage/src/content_manager/snapshots/download.rs`, `download_tar.rs`,
`src/common/http_client.rs`): the `api_key` of the request goes in an `Api-key` header; a
request that fails to go out is 500 `Service internal error: Http request error: error
sending request for url (URL)`; an answer other than 2xx is 400 `Wrong input: Failed to
download tar from URL: status - 404 Not Found`; no data for 60 s is a failure. Qdrant unpacks
the tar as it streams; Keel keeps the file whole, since its restore verifies the whole
file and its manifest before it unpacks anything.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from pathlib import Path

import aiohttp

from engine import snapshot
from engine.errors import BadRequest
from engine.logfmt import log_event
from server.responses import ApiError

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0  # Qdrant's STREAM_READ_TIMEOUT: no data for this long fails the download
CONNECT_TIMEOUT_S = 60.0  # to open the connection (Keel's own bound; reqwest's has none)
CHUNK_BYTES = snapshot.CHUNK_BYTES


async def download_snapshot(url: str, path: Path, api_key: str | None) -> snapshot.SnapshotUpload:
    """GET `url` into a new file at `path`; return it, closed (its `sha256` known).

    Raises ApiError (500) if the request cannot be sent or the stream fails, BadRequest for
    a non-2xx answer or a body past limits.SNAPSHOT_BYTES_MAX. On any failure the file is
    removed before raising.
    """
    headers = {} if api_key is None else {"Api-key": api_key}
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
    )
    loop = asyncio.get_running_loop()
    upload = await loop.run_in_executor(None, snapshot.SnapshotUpload, path)
    is_streaming = False
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            if not 200 <= response.status < 300:
                reason = f" {response.reason}" if response.reason else ""
                raise BadRequest(
                    f"Failed to download tar from {url}: status - {response.status}{reason}"
                )
            is_streaming = True
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                await loop.run_in_executor(None, upload.write, chunk)
        await loop.run_in_executor(None, upload.close)
    except (TimeoutError, aiohttp.ClientError) as error:
        await loop.run_in_executor(None, upload.discard)
        log_event(
            log, logging.WARNING, "snapshot download failed", url=_loggable(url), error=repr(error)
        )
        what = "decoding response body" if is_streaming else "sending request"
        raise ApiError(
            500, f"Service internal error: Http request error: error {what} for url ({url})"
        ) from None
    except BaseException:
        await loop.run_in_executor(None, upload.discard)
        raise
    log_event(log, logging.INFO, "snapshot downloaded", url=_loggable(url), bytes=upload.size_bytes)
    return upload


def _loggable(url: str) -> str:
    """`url` without user, password and query, which may hold credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
