"""Logging setup for the server process: one line per event on stderr, text or JSON.

Owns: the log formatters and installing them on the root logger.
Not here: what is logged (each module logs its own events with engine.logfmt.log_event),
and how one field value is written (engine/logfmt.py).

Both formats are built from the record's structured `Event` (an event phrase and typed
fields), never by parsing formatted text back:

    text: 2025-01-31T12:00:00.123Z INFO server.run listening host=127.0.0.1 port=6333
    json: {"time": ..., "level": "INFO", "logger": "server.run", "event": "listening",
           "host": "127.0.0.1", "port": 6333}

A record whose message is a plain string (a library's, or a call site not converted yet)
keeps that string: as the text line's message with unprintable characters escaped, and as
`event` in JSON.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

from engine.logfmt import Event, escape_unprintable, json_value

log = logging.getLogger(__name__)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record to stderr at `level` (e.g. "INFO") as "text" or "json"."""
    assert log_format in ("text", "json"), log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old_handler in list(root.handlers):
        root.removeHandler(old_handler)
    root.addHandler(handler)
    root.setLevel(level)


class TextFormatter(logging.Formatter):
    """`2025-01-31T12:00:00.123Z INFO server.run listening host=... port=...` in UTC.

    The message is one line: an Event renders as logfmt, any other message has its
    unprintable characters escaped. Only a traceback (`exc_info`) adds lines after it.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        if not isinstance(record.msg, Event):
            record.message = escape_unprintable(record.message)
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, the event's fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc_timestamp(record),
            "level": record.levelname,
            "logger": record.name,
        }
        if isinstance(record.msg, Event):
            entry["event"] = record.msg.name
            for name, value in record.msg.fields.items():
                # A field never overwrites the envelope; "x_" keeps it readable instead.
                entry[name if name not in entry else f"{name}_"] = json_value(value)
        else:
            entry["event"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _utc_timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"
