"""engine/logfmt.py: events as data, and the logfmt rules that keep one event on one line."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.logfmt import Event, escape_unprintable, json_value, log_event, text_value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("c", "c"),
        (42, "42"),
        (0.25, "0.25"),
        (True, "true"),
        (None, "null"),
        ("", '""'),
        ("my coll", '"my coll"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("evil\nFAKE ERROR", '"evil\\nFAKE ERROR"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\x07"'),
        ("line\u2028separator", '"line\\u2028separator"'),
        ("back\\slash", "back\\slash"),  # unambiguous bare; escaped once quoted
        ('back\\slash "quoted"', '"back\\\\slash \\"quoted\\""'),
        ("café", "café"),
    ],
)
def test_values_are_bare_when_safe_else_quoted_and_escaped(value, text):
    assert text_value(value) == text


@given(value=st.text())
def test_any_text_value_is_one_line_and_reads_back(value):
    """Goal: no value can end a log line or blur the next field. Method: the quoted form
    uses only escapes a Python string literal also has, so literal_eval reads it back."""
    rendered = str(Event("collection created", {"collection": value, "n": 1}))
    assert len(rendered.splitlines()) == 1
    assert rendered.endswith(" n=1")
    written = text_value(value)
    read_back = ast.literal_eval(written) if written.startswith('"') else written
    assert read_back == value


def test_paths_are_written_absolute():
    relative = Path("storage") / "collections"
    assert text_value(relative) == str(Path.cwd() / "storage" / "collections")
    assert json_value(relative) == str(Path.cwd() / "storage" / "collections")


def test_json_values_keep_their_types():
    assert [json_value(v) for v in (3, 0.5, False, None, "a b")] == [3, 0.5, False, None, "a b"]
    assert json_value(ValueError("x")) == "x"


def test_free_form_messages_lose_their_line_breaks_only():
    assert escape_unprintable('plain "text" a=b') == 'plain "text" a=b'
    assert escape_unprintable("one\ntwo\r") == "one\\ntwo\\r"


def test_log_event_puts_the_event_in_the_record(caplog):
    logger = logging.getLogger("engine.test_logfmt")
    with caplog.at_level(logging.INFO, logger="engine.test_logfmt"):
        log_event(logger, logging.INFO, "collection created", collection="my coll", level=3)
        log_event(logger, logging.DEBUG, "not built")
    [record] = caplog.records
    assert isinstance(record.msg, Event)
    assert (record.msg.name, dict(record.msg.fields)) == (
        "collection created",
        {"collection": "my coll", "level": 3},
    )
    assert record.getMessage() == 'collection created collection="my coll" level=3'
    assert record.funcName == "test_log_event_puts_the_event_in_the_record"
