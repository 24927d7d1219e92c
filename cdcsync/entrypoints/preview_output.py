"""How ``cdcsync preview`` shows what it planned: readable text, or one JSON object per record.

Values from items never reach a terminal raw: text escapes every non-printable character
(``str.isprintable``: controls, C1 and format characters such as U+202E, line separators) as
``\\x1b``, ``\\u202e``; JSON writes them as ``\\u`` escapes, which read back as the same value
(``cdcsync.printable``, shared with ``dlq show``, ``verify`` and the log lines).
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdcsync.change import ChangeRecord
from cdcsync.errors import RecordError
from cdcsync.plan import DeleteAction, IndexAction
from cdcsync.plan.explain import Explanation
from cdcsync.printable import printable, printable_json
from cdcsync.values import dump_json


@dataclass
class Preview:
    """One record (or item) and what each mapping of its table does with it."""

    header: dict[str, Any]
    explained: list[Explanation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dead_letter: tuple[str, str] | None = None  # (reason, message) when the record cannot be parsed

    @property
    def dead_lettered(self) -> bool:
        return self.dead_letter is not None or any(e.verdict == "dead_letter" for e in self.explained)


def keys_of(record: ChangeRecord) -> Any:
    """The record's keys as plain values; as delivered when they cannot be converted."""
    try:
        return record.keys
    except RecordError:
        return dict(record.raw_keys)


def iso_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, with milliseconds only when there are some."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


# --- output --------------------------------------------------------------------------------------


def _step_json(explained: Explanation) -> dict[str, Any]:
    step, mapping = explained.step, explained.mapping
    out: dict[str, Any] = {
        "mapping": mapping.source if mapping else None,
        "name": mapping.name if mapping else None,
        "action": explained.verdict,
    }
    if explained.verdict == "dead_letter":
        out["reason"] = explained.rule
    elif explained.rule is not None:
        out["rule"] = explained.rule
    if isinstance(step, IndexAction | DeleteAction):
        out.update(index=step.index, id=step.id, routing=step.routing, version=step.version)
    if isinstance(step, IndexAction):
        out["document"] = step.document
    if explained.why:
        out["why"] = explained.why
    if explained.verdict == "fetch":
        out["command"] = _item_command(step.record)
    return out


def preview_json(preview: Preview) -> dict[str, Any]:
    out = {**preview.header, "notes": preview.notes}
    if preview.dead_letter is not None:
        reason, message = preview.dead_letter
        out["steps"] = [{"mapping": None, "action": "dead_letter", "reason": reason, "why": message}]
    else:
        out["steps"] = [_step_json(e) for e in preview.explained]
    return out


def _key_text(value: Any) -> str:
    return value if isinstance(value, str) else dump_json(value).decode()


def _item_command(record: ChangeRecord) -> str:
    """The ``cdcsync preview --table --key`` command that shows the item this record names."""
    words = ["cdcsync", "preview", "--table", record.table]
    for name, value in sorted(keys_of(record).items()):
        words += ["--key", f"{name}={_key_text(value)}"]
    return shlex.join(words)


def _target(step: IndexAction | DeleteAction) -> str:
    routing = "" if step.routing is None else f" (routing {step.routing})"
    return f"{step.index}/{step.id}{routing}, version {step.version}"


def _step_lines(explained: Explanation) -> Iterator[str]:
    step, mapping = explained.step, explained.mapping
    name = f"{mapping.source} ({mapping.name})" if mapping else "no mapping"
    if isinstance(step, IndexAction):
        yield f"  {name}: index {_target(step)}"
        if explained.why:
            yield f"    note: {explained.why}"
        document = dump_json(step.document, indent=True).decode()
        # split("\n"), not splitlines(): that also splits at U+0085 and U+2028 inside strings.
        yield from (f"    {line}" for line in document.split("\n"))
        return
    if isinstance(step, DeleteAction):
        yield f"  {name}: delete {_target(step)}"
        yield f"    {explained.rule}: {explained.why}"
    elif explained.verdict == "dead_letter":
        yield f"  {name}: dead letter ({explained.rule})"
        yield f"    {explained.why}"
    elif explained.verdict == "fetch":
        yield f"  {name}: read the item, then plan it"
        yield f"    {explained.why}; preview reads nothing: see it with {_item_command(step.record)}"
    else:
        yield f"  {name}: skip"
        yield f"    {explained.rule}: {explained.why}"


def _header_line(header: Mapping[str, Any]) -> str:
    if "read" in header:
        keys = dump_json(header["keys"]).decode()
        item = f"item {header['table']} {keys} (key hash {header['key_hash']}), read {header['read']}"
        if not header["found"]:
            return f"{item}: no such item; backfill writes nothing for it"
        return f"{item}: what backfill writes"
    if "table" not in header:
        return f"record {header['record']}:"
    event = header["event"] + (" (TTL expiry)" if header["ttl_expiry"] else "")
    sequence = header["sequence_number"]
    keys = dump_json(header["keys"]).decode()
    seq = "no sequence number" if sequence is None else f"seq {sequence}"
    return f"record {header['record']}: {event} {header['table']} {keys}, {seq}, {header['time']}"


def preview_lines(preview: Preview) -> Iterator[str]:
    """The preview as text lines, each escaped (``printable``)."""
    lines: list[str] = [_header_line(preview.header)]
    lines += [f"  note: {note}" for note in preview.notes]
    if preview.dead_letter is not None:
        reason, message = preview.dead_letter
        lines += [f"  dead letter ({reason})", f"    {message}"]
    for explained in preview.explained:
        lines += _step_lines(explained)
    return (printable(line) for line in lines)


def write_previews(previews: Sequence[Preview], *, as_json: bool) -> None:
    for preview in previews:
        if as_json:
            print(printable_json(dump_json(preview_json(preview)).decode()))
        else:
            for line in preview_lines(preview):
                print(line)


def summary(previews: Sequence[Preview]) -> str:
    counts: dict[str, int] = {}
    for preview in previews:
        if preview.dead_letter is not None:
            counts["dead_letter"] = counts.get("dead_letter", 0) + 1
        for explained in preview.explained:
            counts[explained.verdict] = counts.get(explained.verdict, 0) + 1
    parts = [
        f"{counts[verdict]} {verdict.replace('_', ' ')}"
        for verdict in ("index", "delete", "skip", "fetch", "dead_letter")
        if counts.get(verdict)
    ]
    return f"{len(previews)} record{'s' if len(previews) != 1 else ''}: {', '.join(parts) or 'nothing'}"
