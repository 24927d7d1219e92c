"""``cdcsync preview``: what cdcsync would write for stream records, or for an item of a table.

``preview EVENT.json`` reads a Lambda DynamoDB stream event (``{"Records": [...]}``), one stream
record, a list of records or a GetRecords response (``aws dynamodbstreams get-records``; its records
carry no eventSourceARN, so ``--table`` names their table), plans each record with the real parser
and planner (``parse_record``, ``plan_record``) and shows, per mapping of the record's table, the
step and the rule that decided it (``plan/explain.py``). It contacts nothing: a KEYS_ONLY record
says the item would be read, and how to preview that.

``preview --table T --key Name=Value`` reads the item (``GetItem``, consistent read; key types from
``DescribeTable``) and plans the synthetic INSERT backfill would build for it
(``source/synthetic.py``), versioned as backfill versions a read (``read_version``).

Decisions:
- A record without ``dynamodb.SequenceNumber`` is planned as if it had one, with a note: every stream
  record carries one (a real record without it is a dead letter, ``invalid_record``), but sample
  events in docs and blogs leave it out, and it changes nothing a mapping decides.
- A GetRecords record's ``ApproximateCreationDateTime`` in ISO 8601 text (the AWS CLI's output) is
  read as the datetime boto3 would give.
- Input that is not JSON or none of these shapes is a configuration-like error (exit 2, one line);
  a record cdcsync cannot parse is shown as the dead letter it would become.
- Exit 1 when a record (or the item) would be dead-lettered, or the item does not exist; else 0.
- Text output escapes every non-printable character (``str.isprintable``) as ``\\x1b``, ``\\u202e``,
  so values from items never reach the terminal raw; ``--json`` writes them as ``\\u`` escapes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.errors import ConfigError, RecordError
from cdcsync.mapping.compiled import MappingSet
from cdcsync.mapping.loader import load_mappings
from cdcsync.plan import DeleteAction, IndexAction, plan_record
from cdcsync.plan.explain import Explanation, explain
from cdcsync.settings import load_settings
from cdcsync.values import dump_json, load_json

EXIT_OK, EXIT_DEAD_LETTERS = 0, 1
_SHAPES = (
    'a Lambda DynamoDB stream event ({"Records": [...]}), one stream record, a list of records '
    "or a GetRecords response"
)


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


# --- input ---------------------------------------------------------------------------------------


def _describe_value(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:6]) or "none"
        return f"a JSON object with keys {keys}"
    if isinstance(value, list):
        return "a JSON list"
    if value is None:
        return "null"
    kind = "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"
    return f"a JSON {kind}"


def read_event(path: str) -> tuple[list[dict[str, Any]], str]:
    """The records of the file at ``path`` (``-``: stdin) and the name to cite it by.

    Raises ``ConfigError`` when the file cannot be read, is not JSON, or has none of the shapes.
    """
    where = "stdin" if path == "-" else path
    try:
        text = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"preview: cannot read {where}: {exc.strerror or exc}") from exc
    try:
        data = load_json(text)
        dump_json(data)  # strings that cannot be written back (lone surrogates) fail here, not later
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"preview: {where} is not JSON: {exc}") from exc
    if isinstance(data, dict) and "Records" in data:
        records = data["Records"]
    elif isinstance(data, dict) and ("dynamodb" in data or "kinesis" in data):
        records = [data]
    elif isinstance(data, list):
        records = data
    else:
        raise ConfigError(f"preview: {where}: expected {_SHAPES}; found {_describe_value(data)}")
    if not isinstance(records, list):
        raise ConfigError(f"preview: {where}: Records is {_describe_value(records)}, not a list of records")
    if not records:
        raise ConfigError(f"preview: {where}: Records is empty: there is nothing to preview")
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ConfigError(
                f"preview: {where}: record {number} is {_describe_value(record)}, not a stream record"
            )
    return records, where


def _needs_table(record: Mapping[str, Any]) -> bool:
    return "kinesis" not in record and not record.get("eventSourceARN") and not record.get("tableName")


def _complete(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The record with what samples leave out filled in (see the module docstring), and notes."""
    body = record.get("dynamodb")
    if "kinesis" in record or not isinstance(body, dict):
        return record, []
    notes = []
    body = dict(body)
    if not body.get("SequenceNumber"):
        body["SequenceNumber"] = "none"
        notes.append(
            "no dynamodb.SequenceNumber: every stream record carries one (cdcsync sends a record "
            "without it to the dead-letter queue as invalid_record); previewed as if it had one"
        )
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, str) and not record.get("eventSourceARN"):
        with contextlib.suppress(ValueError):  # a number as text, or not a time: parse_record decides
            body["ApproximateCreationDateTime"] = dt.datetime.fromisoformat(created)
    return {**record, "dynamodb": body}, notes


def _stream_arn(table: str | None, records: Sequence[Mapping[str, Any]], where: str) -> str | None:
    """The stream ARN to give records that carry none (GetRecords), from ``--table``."""
    lacking = [number for number, record in enumerate(records, start=1) if _needs_table(record)]
    if not lacking:
        return None
    if table is None:
        raise ConfigError(
            f"preview: {where}: record {lacking[0]} carries no eventSourceARN (GetRecords responses "
            "do not): name its table with --table T"
        )
    region = str(records[lacking[0] - 1].get("awsRegion") or "us-east-1")
    return f"arn:aws:dynamodb:{region}:000000000000:table/{table}/stream/preview"


def preview_records(
    records: Sequence[dict[str, Any]], mappings: MappingSet, *, where: str, table: str | None = None
) -> list[Preview]:
    """Plan each record (``parse_record``, ``plan_record``) and explain its steps."""
    stream_arn = _stream_arn(table, records, where)
    previews = []
    for number, raw in enumerate(records, start=1):
        completed, notes = _complete(raw)
        try:
            record = parse_record(completed, stream_arn=stream_arn)
        except RecordError as exc:
            previews.append(
                Preview({"record": number}, notes=notes, dead_letter=("invalid_record", str(exc)))
            )
            continue
        except (AttributeError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"preview: {where}: record {number} is not a stream record cdcsync can read "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        header = {"record": number, **_record_header(record)}
        if notes:
            header["sequence_number"] = None
        steps = plan_record(record, mappings)
        previews.append(Preview(header, explain(steps, tables=mappings.tables), notes))
    return previews


def _keys(record: ChangeRecord) -> Any:
    try:
        return record.keys
    except RecordError:
        return dict(record.raw_keys)


def _record_header(record: ChangeRecord) -> dict[str, Any]:
    return {
        "table": record.table,
        "event": record.event,
        "ttl_expiry": record.is_ttl_expiry,
        "keys": _keys(record),
        "sequence_number": record.sequence_number,
        "time": iso_time(record.created_ms),
    }


def iso_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, with milliseconds only when there are some."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


# --- output --------------------------------------------------------------------------------------


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _json_escaped(text: str) -> str:
    """JSON text with every non-printable character as a ``\\u`` escape (still the same JSON)."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
            continue
        code = ord(c)
        if code > 0xFFFF:  # noqa: PLR2004 - beyond the BMP: a UTF-16 surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


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
    for name, value in sorted(_keys(record).items()):
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
        item = f"item {header['table']} {dump_json(header['keys']).decode()}, read {header['read']}"
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
            print(_json_escaped(dump_json(preview_json(preview)).decode()))
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


# --- the command ---------------------------------------------------------------------------------


def _mappings(explicit: str | None) -> MappingSet:
    return load_mappings(explicit if explicit is not None else str(load_settings().mappings))


def run_preview(args: argparse.Namespace) -> int:
    if args.event is not None and args.key:
        raise ConfigError("preview: give EVENT.json or --table T --key Name=Value, not both")
    if args.event is None:
        if args.table is None or not args.key:
            raise ConfigError("preview: give EVENT.json (- for stdin), or --table T --key Name=Value")
        from cdcsync.entrypoints.preview_item import preview_item  # noqa: PLC0415 - only this needs boto3

        previews = [preview_item(_mappings(args.mappings), args.table, args.key)]
    else:
        records, where = read_event(args.event)
        previews = preview_records(records, _mappings(args.mappings), where=where, table=args.table)
    write_previews(previews, as_json=args.json)
    if not args.json:
        print(summary(previews), file=sys.stderr)
    failed = any(p.dead_lettered or p.header.get("found") is False for p in previews)
    return EXIT_DEAD_LETTERS if failed else EXIT_OK


def add_preview_parser(verbs: Any) -> None:
    preview = verbs.add_parser(
        "preview",
        help="show what cdcsync would write for stream records or an item",
        description="Plan stream records (a Lambda event, one record, or a GetRecords response) or an "
        "item of a table with the mappings, and show per record and mapping what cdcsync would do: "
        "index, delete, skip (and the rule that decided) or dead letter (and why), with the index, id, "
        "routing, version and document. Contacts nothing, except DynamoDB to read --table/--key's item. "
        "Exit 1 when something would be dead-lettered or the item does not exist.",
    )
    preview.add_argument(
        "event", nargs="?", metavar="EVENT.json", help="stream records as JSON; - reads stdin"
    )
    preview.add_argument(
        "--table",
        help="with --key: the table to read the item from; with EVENT.json: the table of records "
        "that carry no eventSourceARN (GetRecords responses)",
    )
    preview.add_argument(
        "--key",
        action="append",
        metavar="Name=Value",
        help="a key attribute of the item (repeat for a composite key); preview reads the item "
        "(consistent read) and shows what backfill writes for it",
    )
    preview.add_argument("--json", action="store_true", help="one JSON object per record")
    preview.add_argument("--mappings", help="mapping file or folder (default: CDCSYNC_MAPPINGS)")
    preview.set_defaults(run=run_preview)
