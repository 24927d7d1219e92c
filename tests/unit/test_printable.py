"""Untrusted text made printable: the one escaping every operator-facing output uses."""

from __future__ import annotations

import json

import pytest

from cdcsync.printable import printable, printable_json


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcödé, 中文", "plain text, ünïcödé, 中文"),
        ("\x1b[2J\x1b[Hok", "\\x1b[2J\\x1b[Hok"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),
        ("\u202egnp.exe\u2028\u200b", "\\u202egnp.exe\\u2028\\u200b"),
        ("tag\U000e0041", "tag\\U000e0041"),
    ],
)
def test_printable_non_printable_characters_are_escaped(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text).isprintable()


@pytest.mark.parametrize(
    "value",
    ["\x1b[2J\nforged", "\x7f\x85\x9b", "\u202e\u2028", "tag\U000e0041", "plain"],
)
def test_printable_json_escapes_read_back_as_the_same_value(value: str) -> None:
    # GIVEN compact JSON holding a value with characters JSON itself leaves raw
    text = json.dumps({"v": value}, ensure_ascii=False)
    # WHEN made printable THEN no raw character is left, and it reads back as the same value
    escaped = printable_json(text)
    assert escaped.isprintable()
    assert json.loads(escaped) == {"v": value}
