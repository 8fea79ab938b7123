"""server/logs.py: what an operator reads."""

from __future__ import annotations

import json
import logging

from engine.logfmt import Event
from server.logs import JsonFormatter, TextFormatter


def test_formatters_write_the_events_fields_not_a_reparse_of_its_text():
    event = Event("request failed", {"collection": "my coll", "error": "Not found: x", "n": 3})
    record = logging.LogRecord("server.app", logging.ERROR, __file__, 1, event, (), None)
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["event"], entry["collection"], entry["error"]) == (
        "request failed",
        "my coll",
        "Not found: x",
    )
    assert entry["n"] == 3
    text = TextFormatter().format(record)
    assert text.endswith(
        ' ERROR server.app request failed collection="my coll" error="Not found: x" n=3'
    )
