"""The server process's life: listen, recover, serve, and on SIGTERM/SIGINT shut down cleanly.

Owns: the order of startup and shutdown, signal handling, and the process exit code.
Not here: routes (app.py), storage (engine/), reading the configuration (config.py).

Startup takes the storage lock, then listens, then recovers. The lock comes first so that a
second Keel on a storage in use fails without ever binding its port: a health check probing
that port must not take the loser for a server starting up. Listening comes *before*
recovery so that `/readyz` answers 503 while collections replay their WAL, the way Qdrant
answers during its own startup; orchestrators can tell a slow recovery from a dead process.
Other requests that arrive meanwhile wait for recovery, up to service.recovery_wait_s
(app.py's recovery_wait_middleware), as if the server were not serving yet, which is Qdrant's way.
Shutdown stops accepting, lets in-flight requests finish (their writes are durable and being
applied), then closes the catalog, which finishes queued writes and checkpoints.

Under systemd (`Type=notify`, see tools/keel.service and server/systemd.py) the same steps
are reported over `$NOTIFY_SOCKET`: STATUS lines during recovery, READY=1 once recovery has
finished *and* the port is bound, WATCHDOG=1 while the loop and every WAL writer are alive,
STOPPING=1 when shutdown begins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from engine import files
from engine.catalog import Catalog, lock_storage
from engine.errors import CorruptionError, KeelError
from engine.logfmt import log_event
from server.app import create_app
from server.config import Settings, tls_context
from server.logs import configure_logging
from server.systemd import Notifier, RecoveryStatus, run_liveness, watchdog_timeout_s
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

    Failures to start (storage locked by another server, port in use, corruption found in
    recovery) are logged as one clear line and return EXIT_FAILED; a locked storage fails
    before the port is bound.
    """
    configure_logging(settings.log_level, settings.log_format)
    if not _check_failpoints():
        return EXIT_FAILED
    if not is_exposure_allowed(settings):
        log_event(
            log,
            logging.ERROR,
            "refusing to listen on a non-loopback address without an API key",
            host=settings.host,
            fix="set service.api_key, or service.unsafe_allow_public_without_api_key = true",
        )
        return EXIT_FAILED
    lock_fd = _lock_storage(settings.storage_path)
    if lock_fd is None:
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
        snapshots_path=settings.snapshots_path,
        metrics_require_api_key=settings.metrics_require_api_key,
        log_requests=settings.log_requests,
        recovery_wait_s=settings.recovery_wait_s,
        enable_snapshot_url_recovery=settings.enable_snapshot_url_recovery,
    )
    # server/request_log.py logs requests (log.requests); aiohttp's access log would repeat it.
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_S, access_log=None)
    if not await _run_until_stopped(runner, catalog, settings, stop_requested, lock_fd):
        return EXIT_FAILED
    log_event(log, logging.INFO, "closing storage", storage=settings.storage_path.resolve())
    await catalog.close()
    log_event(log, logging.INFO, "stopped", keel_version=KEEL_VERSION)
    return EXIT_OK


async def _run_until_stopped(
    runner: web.AppRunner,
    catalog: Catalog,
    settings: Settings,
    stop_requested: asyncio.Event,
    lock_fd: int,
) -> bool:
    """Listen, recover, serve until stop_requested, stop listening; False if startup failed.

    `lock_fd` holds the storage lock until recovery takes it over (or startup fails).
    Tells systemd (when `$NOTIFY_SOCKET` is set) READY=1 after both, STOPPING=1 at the end.
    """
    notifier = Notifier.from_environment()
    liveness_stop = asyncio.Event()
    liveness_task: asyncio.Task[None] | None = None
    await runner.setup()
    try:
        port = await _listen(runner, settings)
        if port is None:
            os.close(lock_fd)
            return False
        log_event(
            log,
            logging.INFO,
            "listening",
            host=settings.host,
            port=port,
            scheme="https" if settings.enable_tls else "http",
            storage=settings.storage_path.resolve(),
            keel_version=KEEL_VERSION,
        )
        liveness_task = _start_liveness(notifier, catalog, port, liveness_stop)
        if not await _recover(catalog, notifier, lock_fd):
            return False
        notifier.send("READY=1", f"STATUS={_live_status(catalog, port)}")
        await stop_requested.wait()
        notifier.send("STOPPING=1", "STATUS=stopping: finishing requests, then checkpointing")
    finally:
        # Stops the listener first, then waits up to SHUTDOWN_GRACE_S for in-flight handlers.
        await runner.cleanup()
        liveness_stop.set()
        if liveness_task is not None:
            await liveness_task
        notifier.close()
    return True


def _start_liveness(
    notifier: Notifier, catalog: Catalog, port: int, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """Start the watchdog/STATUS task when systemd listens; None otherwise.

    Started before recovery: systemd arms the watchdog only once READY=1 arrives, and an
    early ping is harmless. Stopped and awaited once the listener has closed.
    """
    if not notifier.is_enabled:
        return None
    timeout_s = watchdog_timeout_s()
    return asyncio.create_task(
        run_liveness(notifier, lambda: _live_status(catalog, port), timeout_s, stop),
        name="systemd-liveness",
    )


def _live_status(catalog: Catalog, port: int) -> str | None:
    """The short STATUS `systemctl status keel` shows while serving; None before that."""
    if not catalog.is_ready:
        return None
    return f"serving port={port} collections={len(catalog.names())}"


async def _listen(runner: web.AppRunner, settings: Settings) -> int | None:
    """Bind and listen; return the port (the real one when 0 was asked), None on failure."""
    ssl_context = tls_context(settings.tls_cert, settings.tls_key) if settings.enable_tls else None
    site = web.TCPSite(
        runner,
        settings.host,
        settings.http_port,
        backlog=LISTEN_BACKLOG,
        reuse_port=False,
        ssl_context=ssl_context,
    )
    try:
        await site.start()
    except OSError as error:
        # Typically EADDRINUSE (another Keel or Qdrant on the port) or EACCES (port < 1024).
        log_event(
            log,
            logging.ERROR,
            "cannot listen",
            host=settings.host,
            port=settings.http_port,
            error=error.strerror or str(error),
        )
        return None
    ports = {address[1] for address in runner.addresses}
    assert len(ports) == 1, f"one site must listen on one port, got {runner.addresses}"
    return ports.pop()


async def _recover(catalog: Catalog, notifier: Notifier, lock_fd: int) -> bool:
    """Open the catalog (lock the storage, replay every collection); False if that failed.

    The catalog takes the storage lock over from `lock_fd` (and closes it). While it
    runs, recovery's progress events also go to systemd as STATUS lines.
    """
    recovery_status = RecoveryStatus(notifier)
    engine_log = logging.getLogger("engine")
    if notifier.is_enabled:
        engine_log.addHandler(recovery_status)
    try:
        # The catalog takes over the descriptor holding the lock: the storage is never
        # unlocked between the bind and recovery.
        await catalog.open(lock_fd)  # logs its own progress: recovery started/finished
    except (KeelError, OSError) as error:
        # StorageLocked, CorruptionError, StorageError name the lock or the file and offset;
        # an OSError (permission denied, disk full) names the path.
        log_event(
            log,
            logging.ERROR,
            "cannot open storage",
            error_type=type(error).__name__,
            error=str(error),
        )
        if isinstance(error, CorruptionError):
            log_event(
                log,
                logging.ERROR,
                "to list everything damaged, stop here and run keel check",
                command=f"keel check --storage {catalog.storage_path}",
                hint="it rebuilds derived data with --repair; damaged data needs a snapshot",
            )
        notifier.status(f"cannot open storage: {type(error).__name__}: {error}")
        return False
    finally:
        engine_log.removeHandler(recovery_status)
    assert catalog.is_ready, "catalog.open() returned without becoming ready"
    log_event(log, logging.INFO, "ready", storage=catalog.storage_path.resolve())
    return True


def _check_failpoints() -> bool:
    """Log a WARNING per armed failpoint; False (logged) if some are named without the
    test-only switch, which must stop the start rather than be silently ignored."""
    try:
        failpoints = files.requested_failpoints()
    except files.FaultsNotEnabled as error:
        log_event(
            log, logging.ERROR, "refusing to start with a test-only fault setting", error=str(error)
        )
        return False
    for name in sorted(failpoints):
        log_event(
            log,
            logging.WARNING,
            "failpoint armed",
            name=name,
            enabled_by=files.TEST_FAULTS_VARIABLE,
            effect="this process kills or stalls itself when it gets there",
        )
    return True


def _lock_storage(storage_path: Path) -> int | None:
    """Create the storage directory if needed and take its lock; the descriptor holding it,
    or None after logging why not (another Keel holds it, permission denied)."""
    try:
        files.make_directories(storage_path)
        return lock_storage(storage_path)
    except (KeelError, OSError) as error:
        log_event(
            log,
            logging.ERROR,
            "cannot open storage",
            error_type=type(error).__name__,
            error=str(error),
        )
        return None


def _install_stop_handlers(stop_requested: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: stop cleanly. A second one: the default action, i.e. die now.

    Dying on the second signal is safe by design: every acknowledged write is in the
    fsynced WAL and is replayed at the next start, exactly as after `kill -9`.
    """
    loop = asyncio.get_running_loop()

    def on_signal(signal_number: signal.Signals) -> None:
        log_event(
            log,
            logging.INFO,
            "stopping",
            signal=signal_number.name,
            hint="send it again to exit at once",
        )
        for stop_signal in STOP_SIGNALS:
            loop.remove_signal_handler(stop_signal)
            signal.signal(stop_signal, signal.SIG_DFL)
        stop_requested.set()

    for stop_signal in STOP_SIGNALS:
        loop.add_signal_handler(stop_signal, on_signal, stop_signal)
