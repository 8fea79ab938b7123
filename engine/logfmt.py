"""Log events as data: a fixed event phrase and typed fields, rendered as logfmt text.

Owns: `log_event`, the one way Keel's code logs (STYLE.md section 10), the `Event` it puts
in a log record, and the logfmt rules for text: `listening host=127.0.0.1 port=6333`.
Not here: choosing text or JSON and installing handlers (server/logs.py). It lives in
engine/ because the engine logs too and must not import the server.

A record's message is an `Event`, not a string: `str(event)` is the logfmt line, so any
handler (pytest's caplog, systemd's STATUS reader) sees the text, while the JSON formatter
reads `event.name` and `event.fields` and writes the values natively. Nothing is ever
parsed back out of formatted text, so a value with spaces or a newline stays one value.

Text values follow logfmt: a value is written bare unless it is empty or holds a space,
`"`, `=` or a character that is not printable (control characters, line separators); then
it is quoted, with `"` and `\\` escaped and unprintable characters written as `\\n`, `\\r`,
`\\t`, `\\xNN` or `\\uNNNN`. One event is therefore always one line, whatever a client put
in a collection name. Paths are written absolute.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

ExcInfo = (
    BaseException
    | tuple[type[BaseException], BaseException, TracebackType | None]
    | bool
    | None
)

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_QUOTE_TRIGGERS = (" ", '"', "=")


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    /,
    *,
    exc_info: ExcInfo = None,
    **fields: object,
) -> None:
    """Log `event` (a fixed phrase, never built from input) with `fields` at `level`.

    Values may be str, int, float, bool, None or Path; anything else is written as str().
    Nothing is built when the level is off.
    """
    if not logger.isEnabledFor(level):
        return
    assert event and event.isprintable(), f"event phrase {event!r} must be one printable line"
    logger.log(level, Event(event, fields), exc_info=exc_info, stacklevel=2)


class Event:
    """The message of a log record: an event phrase and its fields, in call order."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: Mapping[str, object]) -> None:
        self.name = name
        self.fields = fields

    def __str__(self) -> str:
        parts = [self.name]
        parts.extend(f"{key}={text_value(value)}" for key, value in self.fields.items())
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {dict(self.fields)!r})"


def text_value(value: object) -> str:
    """One field value as logfmt: bare when safe, else quoted and escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        value = value.absolute()
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in _QUOTE_TRIGGERS):
        return text
    return f'"{escape(text)}"'


def json_value(value: object) -> object:
    """One field value for a JSON log line: numbers, booleans and null stay typed."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value.absolute())
    return str(value)


def escape(text: str) -> str:
    """`text` with `"` and `\\` escaped and every unprintable character written as an escape."""
    return "".join(_escape_character(c) for c in text)


def escape_unprintable(text: str) -> str:
    """`text` with unprintable characters escaped and nothing else changed: a free-form
    message (from a library, or a call site not yet using log_event) stays on one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_character(c) for c in text)


def _escape_character(character: str) -> str:
    if character in _ESCAPES:
        return _ESCAPES[character]
    if character.isprintable():
        return character
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
