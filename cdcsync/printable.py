"""Untrusted text made safe to print: no terminal control, no invisible or reordering characters.

Item values, keys, ids, OpenSearch's error reasons and environment values can hold anything,
including escape sequences that clear an operator's screen, move the cursor or print a line of
their own. Every place that shows such text to a person (``preview``, ``dlq show``, ``verify``,
log lines, settings errors) passes it through one of these two functions first:

- ``printable`` for text: every character ``str.isprintable`` refuses (C0 and C1 controls, DEL,
  format characters such as U+202E, line and paragraph separators) becomes its Python escape,
  ``\\x1b``, ``\\n``, ``\\u202e``; so one line stays one line.
- ``printable_json`` for JSON text: the same characters become ``\\u`` escapes, so the JSON still
  reads back as the same value. JSON encoders escape only U+0000-U+001F; DEL, C1 and U+202E
  would otherwise reach the terminal raw.

A backslash is left alone, so text that already holds ``\\x1b`` literally looks the same as an
escaped ESC: what matters is that no control character reaches the terminal.
"""

from __future__ import annotations

_BMP_END = 0xFFFF


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def printable_json(text: str) -> str:
    """JSON ``text`` with every non-printable character as a ``\\u`` escape (still the same JSON).

    Only for compact (one-line) JSON: inside a string the escape means the character, and outside
    strings compact JSON holds no such character (indented JSON's newlines would be broken).
    """
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
            continue
        code = ord(c)
        if code > _BMP_END:  # beyond the BMP: a UTF-16 surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)
