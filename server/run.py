"""The server process's life: listen, recover, serve, and on SIGTERM/SIGINT shut down cleanly.

Owns: the order of startup and shutdown, signal handling, and the process exit code.
Not here: routes (app.py), storage (engine/), reading the configuration (config.py).

Startup listens *before* recovery so that `/readyz` answers 503 while collections replay
their WAL, the way Qdrant answers during its own startup; orchestrators can tell a slow
recovery from a dead process. Shutdown stops accepting, lets in-flight requests finish
(their writes are durable and being applied), then closes the catalog, which finishes
queued writes and checkpoints.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal

from aiohttp import web

from engine.catalog import Catalog
from engine.errors import KeelError
from server.app import create_app
from server.config import Settings
from server.logs import configure_logging
from server.version import KEEL_VERSION

log = logging.getLogger(__name__)

# How long in-flight requests get to finish after SIGTERM before their connections are
# closed. systemd's default TimeoutStopSec is 90 s; this leaves time for catalog.close().
SHUTDOWN_GRACE_S = 30.0
# Connections waiting in the kernel for accept(); Qdrant's actix default is 2048.
LISTEN_BACKLOG = 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_OK = 0
EXIT_FAILED = 1


def is_exposure_allowed(settings: Settings) -> bool:
    """Loopback, or a key, or the operator said explicitly that an open port is intended."""
    if settings.api_key or settings.unsafe_allow_public_without_api_key:
        return True
    if settings.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


async def serve(settings: Settings) -> int:
    """Run Keel until SIGTERM/SIGINT; return the process exit code (0 after a clean stop).

    Failures to start (port in use, storage locked by another server, corruption found in
    recovery) are logged as one clear line and return EXIT_FAILED.
    """
    configure_logging(settings.log_level, settings.log_format)
    if not is_exposure_allowed(settings):
        log.error(
            "refusing to listen on a non-loopback address without an API key host=%s; set "
            "service.api_key, or service.unsafe_allow_public_without_api_key = true",
            settings.host,
        )
        return EXIT_FAILED
    stop_requested = asyncio.Event()
    _install_stop_handlers(stop_requested)
    catalog = Catalog(settings.storage_path, settings.engine)
    app = create_app(
        catalog,
        max_request_size_bytes=settings.max_request_size_bytes,
        keel_version=KEEL_VERSION,
        api_key=settings.api_key,
        read_only_api_key=settings.read_only_api_key,
    )
    # Access logs are per request; STYLE.md keeps per-operation lines at DEBUG.
    access_log = logging.getLogger("aiohttp.access") if settings.log_level == "DEBUG" else None
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_S, access_log=access_log)
    await runner.setup()
    try:
        port = await _listen(runner, settings)
        if port is None:
            return EXIT_FAILED
        log.info(
            "listening host=%s port=%d storage=%s keel_version=%s",
            settings.host,
            port,
            settings.storage_path.resolve(),
            KEEL_VERSION,
        )
        if not await _recover(catalog):
            return EXIT_FAILED
        await stop_requested.wait()
    finally:
        # Stops the listener first, then waits up to SHUTDOWN_GRACE_S for in-flight handlers.
        await runner.cleanup()
    log.info("closing storage storage=%s", settings.storage_path.resolve())
    await catalog.close()
    log.info("stopped keel_version=%s", KEEL_VERSION)
    return EXIT_OK


async def _listen(runner: web.AppRunner, settings: Settings) -> int | None:
    """Bind and listen; return the port (the real one when 0 was asked), None on failure."""
    site = web.TCPSite(
        runner, settings.host, settings.http_port, backlog=LISTEN_BACKLOG, reuse_port=False
    )
    try:
        await site.start()
    except OSError as error:
        # Typically EADDRINUSE (another Keel or Qdrant on the port) or EACCES (port < 1024).
        log.error(
            "cannot listen host=%s port=%d error=%r",
            settings.host,
            settings.http_port,
            error.strerror or str(error),
        )
        return None
    ports = {address[1] for address in runner.addresses}
    assert len(ports) == 1, f"one site must listen on one port, got {runner.addresses}"
    return ports.pop()


async def _recover(catalog: Catalog) -> bool:
    """Open the catalog (lock the storage, replay every collection); False if that failed."""
    try:
        await catalog.open()  # logs its own progress: recovery started/finished per collection
    except (KeelError, OSError) as error:
        # StorageLocked, CorruptionError, StorageError name the lock or the file and offset;
        # an OSError (permission denied, disk full) names the path.
        log.error("cannot open storage error_type=%s error=%r", type(error).__name__, str(error))
        return False
    assert catalog.is_ready, "catalog.open() returned without becoming ready"
    log.info("ready storage=%s", catalog.storage_path.resolve())
    return True


def _install_stop_handlers(stop_requested: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: stop cleanly. A second one: the default action, i.e. die now.

    Dying on the second signal is safe by design: every acknowledged write is in the
    fsynced WAL and is replayed at the next start, exactly as after `kill -9`.
    """
    loop = asyncio.get_running_loop()

    def on_signal(signal_number: signal.Signals) -> None:
        log.info("stopping signal=%s (send it again to exit at once)", signal_number.name)
        for stop_signal in STOP_SIGNALS:
            loop.remove_signal_handler(stop_signal)
            signal.signal(stop_signal, signal.SIG_DFL)
        stop_requested.set()

    for stop_signal in STOP_SIGNALS:
        loop.add_signal_handler(stop_signal, on_signal, stop_signal)
