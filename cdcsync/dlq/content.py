"""What a dead letter keeps (``CDCSYNC_DLQ_CONTENT``): no more than redrive and an operator need.

Redrive re-reads the item from the table (``cdcsync/redrive.py``): it uses the letter's ``table``,
``keys``, ``mapping``, where the action was aimed (``op``, ``index``, ``id``, ``routing``,
``version``) and the record's envelope (stream ARN, region, view type: what synthetic REMOVEs look
like). Images are for people only, and a queue is read by more people than the table. So:

- ``keys``: the record's envelope and its ``Keys``, no image.
- ``projected`` (the default): the envelope, and each image cut to the key attributes and the
  attributes the letter's mapping writes into the document (``fields.include``/``exclude``;
  a computed field's sources are not kept). A letter without a mapping (a record that could not
  be parsed) keeps no image.
- ``full``: the record as delivered, the reason as it was said (debugging; a start-up WARNING).

The envelope is an allow-list (``_ENVELOPE``, ``_BODY``, ``_KINESIS``), so a field nobody
expected is dropped rather than kept. A Kinesis-delivered record keeps its wrapper, with the
``data`` payload cut the same way and encoded again (left out when it cannot be decoded).

Reasons quote values: OpenSearch's ``Preview of field's value: '…'`` and the Java messages of its
causes (``For input string: "…"``, a date or boolean that did not parse, ``'…' is not an IP string
literal``), JMESPath's ``invalid type for value: …`` and our own ``found <type> <value>`` for a
malformed image; Lucene's ``The prefix of the first immense term is: '[97, 100, …]...'`` (the
value's UTF-8 bytes) and a geo point's ``unsupported symbol [@] in geohash […]``. Below ``full``
each quoted value becomes ``[redacted]``; field names, types and the document id (the keys are kept
anyway) stay. After `` caused by <type>: `` (a Java message nobody lists in full) every
single-quoted or bracketed text is taken for a value, unless the word before it names what it is
(``field [Tags]``, ``index [users]``, ``format […]``: ``_NAMES``) or it is ``[true]``/``[false]``.
Where a value's end is ambiguous (it may contain the words that follow it), more is redacted rather
than less: a preview followed by more than one `` caused by <type>: `` is redacted to the end of the
reason, a geohash to the last ``]``; the catch-all ends a quoted value at a quote not followed by
a letter (``'o'brien'`` is one value) and a bracketed one at its first ``]``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from cdcsync.dlq.letter import DeadLetter, DeadLetterError
from cdcsync.mapping.compiled import CompiledMapping

DlqContent = Literal["keys", "projected", "full"]

REDACTED = "[redacted]"
_IMAGES = ("NewImage", "OldImage")
_ENVELOPE = frozenset(
    {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "eventSourceARN",
        "invokeIdentityArn",
        "userIdentity",
        "tableName",
        "recordFormat",
    }
)
_BODY = frozenset(
    {
        "Keys",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
        "ApproximateCreationDateTime",
        "ApproximateCreationDateTimePrecision",
    }
)
_KINESIS = frozenset(
    {
        "kinesisSchemaVersion",
        "partitionKey",
        "sequenceNumber",
        "approximateArrivalTimestamp",
        "encryptionType",
    }
)

_PREVIEW = "Preview of field's value: "
_CAUSE = re.compile(r" caused by [a-z_]+(?:\.[a-z_]+)*: ")  # how sink/outcomes.py appends a cause
# (pattern, replacement): each keeps the words around a value and drops the value.
_OPENSEARCH_VALUES = (
    (re.compile(r"(For input string: ).*", re.S), rf"\1{REDACTED}"),
    (re.compile(r"(failed to parse date field \[).*(\] with format \[)", re.S), rf"\1{REDACTED}\2"),
    (re.compile(r"(Failed to parse value \[).*(\] as only \[true\] or \[false\])", re.S), rf"\1{REDACTED}\2"),
    (re.compile(r"(^|: )'.*(' is not an IP string literal)", re.S), rf"\1'{REDACTED}\2"),
    (re.compile(r"(Text ').*(' could not be parsed)", re.S), rf"\1{REDACTED}\2"),
    (re.compile(r"(Unrecognized token ').*(': was expecting)", re.S), rf"\1{REDACTED}\2"),
    (re.compile(r"(Invalid format: ).*(?= is malformed)", re.S), rf"\1{REDACTED}"),
    (re.compile(r"(The prefix of the first immense term is: ').*?(\.\.\.')", re.S), rf"\1{REDACTED}\2"),
    (re.compile(r"(unsupported symbol \[).*?(\] in geohash \[).*(\])", re.S), rf"\1{REDACTED}\2{REDACTED}\3"),
    # what else OpenSearch puts in double quotes is a value, but Lucene's field="<name>"
    (re.compile(r'(?<!field=)"[^"]*"'), REDACTED),
)
# After a cause: a single-quoted or bracketed text, and the word before it (kept when in _NAMES).
_QUOTED = re.compile(r"(?:\b(\w+) )?((?<!\w)'.*?'(?!\w)|\[[^\[\]]*\])", re.S)  # not "can't"
_NAMES = frozenset(
    {
        "alias",
        "analyzer",
        "field",
        "fields",
        "format",
        "id",
        "index",
        "mapper",
        "normalizer",
        "path",
        "pipeline",
        "processor",
        "setting",
        "tokenizer",
        "type",
    }
)
_LITERALS = frozenset({"true", "false", REDACTED})
_TYPE_NAMES = "str|int|float|bool|dict|list|NoneType|Decimal|bytes|bytearray|datetime"
_PLAN_VALUES = (
    (re.compile(r"(invalid type for value: ).*(, expected one of: )", re.S), rf"\1{REDACTED}\2"),
    # values.py's "found <type> <repr>" about a malformed image (the types JSON and boto3 produce)
    (
        re.compile(rf"(\bfound (?:{_TYPE_NAMES}) ).*?(?=; its document was deleted from |$)", re.S),
        rf"\1{REDACTED}",
    ),
)


def kept(letter: DeadLetter, content: DlqContent, mapping: CompiledMapping | None) -> DeadLetter:
    """``letter`` as ``content`` keeps it; ``mapping`` is the letter's own (None: no image is kept)."""
    if content == "full":
        return letter
    keep: Callable[[str], bool] | None = None
    if content == "projected" and mapping is not None:
        keep = mapping.projection.indexes
    return letter.model_copy(
        update={"record": _trimmed_record(letter.record, keep), "error": redact_reason(letter.error)}
    )


def redact_reason(error: DeadLetterError) -> DeadLetterError:
    """``error`` with the values its reason quotes replaced by ``[redacted]``."""
    reason = _redact_opensearch(error.reason) if error.status is not None else _redact_plan(error.reason)
    return error if reason == error.reason else error.model_copy(update={"reason": reason})


def _redact_opensearch(reason: str) -> str:
    start = reason.find(_PREVIEW)
    if start >= 0:
        # The preview runs to the one cause sink/outcomes.py appends. With several " caused by x: "
        # after it, the value holds such words (and the cause may quote it): redact to the end.
        value_start = start + len(_PREVIEW)
        causes = list(_CAUSE.finditer(reason, value_start))
        end = causes[0].start() if len(causes) == 1 else len(reason)
        head, tail = reason[:value_start], reason[end:]
        return _substitute(head, _OPENSEARCH_VALUES) + REDACTED + _redact_cause(tail)
    cause = _CAUSE.search(reason)
    end = cause.start() if cause is not None else len(reason)
    return _substitute(reason[:end], _OPENSEARCH_VALUES) + _redact_cause(reason[end:])


def _redact_cause(text: str) -> str:
    """``text`` from `` caused by <type>: `` on: the known values, then any other quoted text."""

    def replaced(match: re.Match[str]) -> str:
        word, quoted = match.group(1), match.group(2)
        if (word is not None and word.lower() in _NAMES) or quoted[1:-1] in _LITERALS or quoted == REDACTED:
            return match.group(0)
        return match.group(0)[: -len(quoted)] + quoted[0] + REDACTED + quoted[-1]

    return _QUOTED.sub(replaced, _substitute(text, _OPENSEARCH_VALUES))


def _redact_plan(reason: str) -> str:
    return _substitute(reason, _PLAN_VALUES)


def _substitute(text: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def _trimmed_record(record: Mapping[str, Any], keep: Callable[[str], bool] | None) -> dict[str, Any]:
    """The record's envelope; images cut to its keys and what ``keep`` accepts (none when None)."""
    trimmed = _trimmed_source(record, keep)
    kinesis = record.get("kinesis")
    if isinstance(kinesis, Mapping):
        wrapper = {name: value for name, value in kinesis.items() if name in _KINESIS}
        payload = _decoded(kinesis.get("data"))
        if payload is not None:
            data = orjson.dumps(_trimmed_source(payload, keep))
            wrapper["data"] = base64.b64encode(data).decode("ascii")
        trimmed["kinesis"] = wrapper
    return trimmed


def _trimmed_source(source: Mapping[str, Any], keep: Callable[[str], bool] | None) -> dict[str, Any]:
    trimmed = {name: value for name, value in source.items() if name in _ENVELOPE}
    body = source.get("dynamodb")
    if not isinstance(body, Mapping):
        return trimmed
    kept_body = {name: value for name, value in body.items() if name in _BODY}
    if keep is not None:
        keys = body.get("Keys")
        key_names = set(keys) if isinstance(keys, Mapping) else set()
        for name in _IMAGES:
            image = body.get(name)
            if isinstance(image, Mapping):
                kept_body[name] = {
                    attribute: value
                    for attribute, value in image.items()
                    if attribute in key_names or keep(attribute)
                }
    trimmed["dynamodb"] = kept_body
    return trimmed


def _decoded(data: Any) -> Mapping[str, Any] | None:
    """A Kinesis record's JSON payload, or None when it is not base64 JSON of an object."""
    if not isinstance(data, str):
        return None
    try:
        payload = orjson.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    return payload if isinstance(payload, Mapping) else None
