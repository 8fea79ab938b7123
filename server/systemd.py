"""systemd integration: sd_notify messages over `$NOTIFY_SOCKET`, and the watchdog task.

Owns: the notify datagram (READY=1, STATUS=, WATCHDOG=1, STOPPING=1), reading
`NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, the liveness task that pings the
watchdog and keeps STATUS current, and turning recovery's log events into STATUS lines.
Not here: when the server is ready or stops (run.py); what a stuck WAL writer is (engine/wal/log.py).

The protocol (sd_notify(3)) is one datagram of newline-separated `KEY=value` lines to the
AF_UNIX socket named by `NOTIFY_SOCKET`: a path, or an abstract name written with a leading
'@' that stands for a NUL byte. Without `NOTIFY_SOCKET` every call here does nothing, so
Keel behaves the same outside systemd. A failed send never stops the server: it is logged
once and later messages are still tried (systemd may come back, e.g. after a daemon-reexec).

The watchdog ping proves two things: the event loop runs (the ping is sent from a task on
it) and no collection's WAL writer has had a batch (write + fdatasync) in flight for longer
than the watchdog timeout. A disk that stops answering therefore stops the pings, and
systemd kills and restarts Keel, which then replays its WAL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from engine.logfmt import Event, log_event, text_value
from engine.wal.log import stuck_writers

log = logging.getLogger(__name__)

# Without a watchdog, how often the live STATUS is refreshed (sent only when it changed).
STATUS_EVERY_S = 5.0
# sd_notify(3) messages are short; systemd reads at most a few KiB per datagram.
STATUS_CHARS_MAX = 200
# A value below this is a typo in the unit file, and pinging every 5 ms would waste the CPU.
WATCHDOG_TIMEOUT_S_MIN = 0.01


class Notifier:
    """Sends sd_notify messages to one socket; a no-op when there is none.

    Safe to call from any thread (recovery reports progress from its executor thread).
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._target = _socket_address(address) if address else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._has_logged_failure = False
        if address and self._target is None:
            log_event(
                log,
                logging.WARNING,
                "notify socket ignored",
                reason="not_absolute_or_abstract",
                address=address,
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def is_enabled(self) -> bool:
        return self._target is not None

    def send(self, *lines: str) -> bool:
        """Send `lines` as one datagram; True if it was sent. Never raises."""
        if self._target is None:
            return False
        assert lines, "an sd_notify message needs at least one line"
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    # Never block the event loop on a full receive queue.
                    self._socket.setblocking(False)
                self._socket.sendto(data, self._target)
            except OSError as error:
                if not self._has_logged_failure:
                    self._has_logged_failure = True
                    log_event(
                        log,
                        logging.WARNING,
                        "notify failed (logged once)",
                        address=self.address,
                        error=str(error),
                    )
                return False
        return True

    def status(self, text: str) -> bool:
        """STATUS=text, cut to STATUS_CHARS_MAX and to one line."""
        return self.send(f"STATUS={_one_line(text)}")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def watchdog_timeout_s(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float:
    """systemd's watchdog timeout for this process in seconds, or 0.0 if none is expected.

    Like sd_watchdog_enabled(3): `WATCHDOG_USEC` must be set, and `WATCHDOG_PID`, when set,
    must be this process's pid (otherwise the variables were meant for a parent).
    """
    usec_text = environ.get("WATCHDOG_USEC", "")
    if not usec_text:
        return 0.0
    pid_text = environ.get("WATCHDOG_PID", "")
    own_pid = os.getpid() if pid is None else pid
    if pid_text and pid_text != str(own_pid):
        log_event(
            log,
            logging.INFO,
            "watchdog off",
            reason="other_pid",
            watchdog_pid=pid_text,
            pid=own_pid,
        )
        return 0.0
    try:
        timeout_s = int(usec_text) / 1_000_000
    except ValueError:
        log_event(log, logging.WARNING, "watchdog off", reason="bad_usec", watchdog_usec=usec_text)
        return 0.0
    if timeout_s < WATCHDOG_TIMEOUT_S_MIN:
        log_event(log, logging.WARNING, "watchdog off", reason="too_short", watchdog_usec=usec_text)
        return 0.0
    return timeout_s


async def run_liveness(
    notifier: Notifier,
    live_status: Callable[[], str | None],
    watchdog_timeout_s: float,
    stop: asyncio.Event,
) -> None:
    """Until `stop` is set: ping the watchdog (when its timeout is > 0) every half timeout
    while the loop and every WAL writer are alive, and send `live_status()` when it changes.

    `live_status()` returns None while there is nothing to say (recovery reports itself).
    """
    tick_s = watchdog_timeout_s / 2 if watchdog_timeout_s > 0 else STATUS_EVERY_S
    if watchdog_timeout_s > 0:
        log_event(
            log,
            logging.INFO,
            "watchdog on",
            timeout_s=round(watchdog_timeout_s, 3),
            ping_every_s=round(tick_s, 3),
        )
    last_status: str | None = None
    was_stuck = False
    while not stop.is_set():
        stuck = stuck_writers(watchdog_timeout_s) if watchdog_timeout_s > 0 else []
        if stuck and not was_stuck:
            log_event(
                log,
                logging.ERROR,
                "watchdog withheld",
                reason="wal_writer_stuck",
                writers=_describe(stuck),
            )
        if was_stuck and not stuck:
            log_event(log, logging.WARNING, "watchdog resumed", reason="wal_writers_moving")
        was_stuck = bool(stuck)
        status = live_status()
        if stuck:
            status = f"wal writer stuck: {_describe(stuck)}"
        if status is not None and status != last_status:
            notifier.status(status)
            last_status = status
        if watchdog_timeout_s > 0 and not stuck:
            notifier.send("WATCHDOG=1")
        await _sleep_unless_stopped(stop, tick_s)


class RecoveryStatus(logging.Handler):
    """Turns recovery's log events into STATUS lines while attached to the `engine` logger.

    The catalog and collections report recovery through their log lines (fixed event
    phrases, STYLE.md section 10); this reads the same events, so STATUS and the journal
    agree. Events below the configured log level are not created, so with log level
    WARNING only the final READY status is sent.
    """

    def __init__(self, notifier: Notifier) -> None:
        super().__init__(level=logging.INFO)
        self._notifier = notifier
        self._collections_total = 0
        self._collections_opened = 0

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, Event):
            return
        event, fields = record.msg.name, record.msg.fields
        if event == "recovery started":
            self._collections_total = int(fields["collections"])
            self._notifier.status(f"recovering collections=0/{self._collections_total}")
        elif event == "replay progress":
            collection = text_value(fields["collection"])
            self._notifier.status(
                f"recovering collection={collection} "
                f"replayed_op_id={fields['op_id']}/{fields['last_op_id']} "
                f"collections={self._collections_opened}/{self._collections_total}"
            )
        elif event == "collection opened":
            self._collections_opened += 1
            self._notifier.status(
                f"recovering collections={self._collections_opened}/{self._collections_total} "
                f"last={text_value(fields['collection'])} ops_replayed={fields['ops_replayed']}"
            )


def _socket_address(address: str) -> str | bytes | None:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()  # Linux abstract namespace
    if address.startswith("/"):
        return address
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:STATUS_CHARS_MAX]


def _describe(stuck: list[tuple[str, float]]) -> str:
    return ",".join(f"{name}:{in_flight_s:.1f}s" for name, in_flight_s in stuck)


async def _sleep_unless_stopped(stop: asyncio.Event, timeout_s: float) -> None:
    started_s = time.monotonic()
    try:
        # Cancelling the event wait on timeout is harmless: it changes nothing.
        await asyncio.wait_for(stop.wait(), timeout=timeout_s)
    except TimeoutError:
        pass
    lag_s = time.monotonic() - started_s - timeout_s
    if lag_s > timeout_s:
        log_event(
            log,
            logging.WARNING,
            "event loop lagged",
            lag_s=round(lag_s, 3),
            expected_s=round(timeout_s, 3),
        )
