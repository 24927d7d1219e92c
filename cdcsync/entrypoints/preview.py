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
  events in docs and blogs leave it out, and it decides nothing (unless a filter names it).
- A GetRecords record's ``ApproximateCreationDateTime`` in ISO 8601 text (the AWS CLI's output) is
  read as the datetime boto3 would give.
- Input that is not JSON or none of these shapes is a configuration-like error (exit 2, one line);
  a record cdcsync cannot parse is shown as the dead letter it would become.
- Exit 1 when a record (or the item) would be dead-lettered, or the item does not exist; else 0.
- Output (``preview_output.py``) escapes what items hold: no control character reaches a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cdcsync.change import ChangeRecord, parse_record
from cdcsync.entrypoints.preview_output import Preview, iso_time, keys_of, summary, write_previews
from cdcsync.errors import ConfigError, RecordError
from cdcsync.mapping.compiled import MappingSet
from cdcsync.mapping.loader import load_mappings
from cdcsync.plan import plan_record
from cdcsync.plan.explain import explain
from cdcsync.settings import load_settings
from cdcsync.values import dump_json, load_json

EXIT_OK, EXIT_DEAD_LETTERS = 0, 1
_SHAPES = (
    'a Lambda DynamoDB stream event ({"Records": [...]}), one stream record, a list of records '
    "or a GetRecords response"
)
_NO_SEQUENCE_NUMBER = (
    "no dynamodb.SequenceNumber: every stream record carries one (cdcsync sends a record "
    "without it to the dead-letter queue as invalid_record); previewed as if it had one"
)

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


def _lacks_sequence_number(record: Mapping[str, Any]) -> bool:
    body = record.get("dynamodb")
    return "kinesis" not in record and isinstance(body, dict) and not body.get("SequenceNumber")


def _complete(record: dict[str, Any]) -> dict[str, Any]:
    """The record with what samples and the AWS CLI leave out or spell differently filled in."""
    body = record.get("dynamodb")
    if "kinesis" in record or not isinstance(body, dict):
        return record
    body = dict(body)
    if _lacks_sequence_number(record):
        body["SequenceNumber"] = "none"
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, str) and not record.get("eventSourceARN"):
        with contextlib.suppress(ValueError):  # a number as text, or not a time: parse_record decides
            body["ApproximateCreationDateTime"] = dt.datetime.fromisoformat(created)
    return {**record, "dynamodb": body}


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
        notes = [_NO_SEQUENCE_NUMBER] if _lacks_sequence_number(raw) else []
        try:
            record = parse_record(_complete(raw), stream_arn=stream_arn)
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
        if _lacks_sequence_number(raw):
            header["sequence_number"] = None
        steps = plan_record(record, mappings)
        previews.append(Preview(header, explain(steps, tables=mappings.tables), notes))
    return previews


def _record_header(record: ChangeRecord) -> dict[str, Any]:
    return {
        "table": record.table,
        "event": record.event,
        "ttl_expiry": record.is_ttl_expiry,
        "keys": keys_of(record),
        "sequence_number": record.sequence_number,
        "time": iso_time(record.created_ms),
    }


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
