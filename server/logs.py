"""Logging setup for the server process: one line per event on stderr, text or JSON.

Owns: the log formatters and installing them on the root logger.
Not here: what is logged (each module logs its own events with `key=value` fields).

A message is a fixed event phrase followed by `key=value` fields (STYLE.md section 10):
`listening host=127.0.0.1 port=6333`. The JSON format splits those fields out, so
`{"event": "listening", "host": "127.0.0.1", "port": "6333", ...}`; values stay strings.
"""

from __future__ import annotations

import logging
import re
import sys
import time

import orjson

log = logging.getLogger(__name__)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FIELD_PATTERN = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\S*)")


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
    """`2025-01-31T12:00:00.123Z INFO server.run listening host=... port=...` in UTC."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, the message's fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        first_field = FIELD_PATTERN.search(message)
        event = message[: first_field.start()].strip() if first_field else message
        entry: dict[str, object] = {
            "time": _utc_timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": event or message,
        }
        for name, value in FIELD_PATTERN.findall(message):
            # A field never overwrites the envelope; "x_" keeps it readable instead.
            entry[name if name not in entry else f"{name}_"] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _utc_timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"
