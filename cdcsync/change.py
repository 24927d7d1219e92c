"""ChangeRecord: one stream record, parsed once, in snake_case.

Records arrive in three shapes that carry the same facts: Lambda events (JSON, times in
seconds, binary as base64), boto3 ``GetRecords`` responses (times as datetimes, binary as
bytes, no eventSourceARN) and Kinesis-delivered records (base64 JSON payload, ms or µs times).
AWS spellings stay in this module; everything after it uses ``ChangeRecord``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from cdcsync.errors import RecordError
from cdcsync.values import image_to_plain
from cdcsync.versions import stream_version

EventName = Literal["INSERT", "MODIFY", "REMOVE"]
_EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
_TTL_PRINCIPAL = "dynamodb.amazonaws.com"


@functools.lru_cache(maxsize=1024)
def table_from_arn(arn: str) -> str:
    """``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`` -> ``NAME``."""
    _, _, resource = arn.partition(":table/")
    name = resource.split("/", 1)[0]
    if not name:
        raise RecordError(f'eventSourceARN "{arn}" names no DynamoDB table')
    return name


_UNSET: Any = object()


@dataclass(slots=True, eq=False)
class ChangeRecord:
    """One item change, in snake_case; ``raw`` is the record as delivered.

    Not frozen: a frozen dataclass costs ~3 µs more per record to build, on the hottest path.
    Treat it as immutable. Images are converted on first use, so a record skipped by its filter,
    or whose old image no rule needs, never pays for the conversion; a malformed image raises
    ``RecordError`` there, which the planner turns into a dead letter for that record.
    """

    table: str
    event: EventName
    raw_keys: Mapping[str, Any]
    sequence_number: str
    created_ms: int
    is_ttl_expiry: bool
    stream_view_type: str | None
    raw: Mapping[str, Any] = field(repr=False)
    event_source_arn: str | None = None
    payload: Mapping[str, Any] | None = field(default=None, repr=False)  # Kinesis: the decoded data
    raw_new_image: Mapping[str, Any] | None = field(default=None, repr=False)
    raw_old_image: Mapping[str, Any] | None = field(default=None, repr=False)
    _keys: Any = field(default=_UNSET, repr=False)
    _new_image: Any = field(default=_UNSET, repr=False)
    _old_image: Any = field(default=_UNSET, repr=False)
    _event_view: Any = field(default=_UNSET, repr=False)

    @property
    def keys(self) -> dict[str, Any]:
        keys: dict[str, Any] = self._keys
        if keys is _UNSET:
            new = self._new_image
            # Already converted with the new image: the key attributes are in it.
            taken = _attributes(new, self.raw_keys) if new is not _UNSET and new is not None else None
            keys = self._keys = image_to_plain(self.raw_keys) if taken is None else taken
        return keys

    @property
    def new_image(self) -> dict[str, Any] | None:
        if self._new_image is _UNSET:
            raw = self.raw_new_image
            self._new_image = None if raw is None else image_to_plain(raw)
        result: dict[str, Any] | None = self._new_image
        return result

    @property
    def old_image(self) -> dict[str, Any] | None:
        if self._old_image is _UNSET:
            raw = self.raw_old_image
            self._old_image = None if raw is None else image_to_plain(raw)
        result: dict[str, Any] | None = self._old_image
        return result

    @property
    def event_view(self) -> Mapping[str, Any]:
        """The record as a Lambda event-filter pattern sees it (Lambda event shape, JSON values).

        Lambda events already are that shape; GetRecords records get their eventSourceARN,
        a numeric ApproximateCreationDateTime and base64 binaries, as Lambda would show them.
        """
        if self._event_view is _UNSET:
            self._event_view = self._lambda_view()
        result: Mapping[str, Any] = self._event_view
        return result

    def _lambda_view(self) -> Mapping[str, Any]:
        if self.payload is not None:
            return self.payload  # Kinesis-delivered: patterns apply to the DynamoDB record inside
        if "eventSourceARN" in self.raw or self.event_source_arn is None:
            return self.raw
        view = dict(orjson.loads(orjson.dumps(self.raw, default=_json_default)))
        view["eventSourceARN"] = self.event_source_arn
        view["dynamodb"]["ApproximateCreationDateTime"] = self.created_ms // 1000
        identity = view.get("userIdentity")
        if isinstance(identity, dict):  # GetRecords spells these PrincipalId/Type, Lambda principalId/type
            view["userIdentity"] = {key[:1].lower() + key[1:]: value for key, value in identity.items()}
        return view

    def describe(self) -> str:
        """Identity for log lines and errors: table, key and sequence number."""
        try:
            keys = ", ".join(f"{k}={v!r}" for k, v in sorted(self.keys.items()))
        except RecordError:
            keys = repr(self.raw_keys)
        return f"{self.table} [{keys}] seq {self.sequence_number}"


def _attributes(item: dict[str, Any], names: Mapping[str, Any]) -> dict[str, Any] | None:
    """The attributes ``names`` of ``item``; None if one is missing."""
    try:
        return {name: item[name] for name in names}
    except KeyError:
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"cannot express {type(value).__name__} as JSON")


def _from_kinesis(record: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    kinesis = record["kinesis"]
    try:
        payload = orjson.loads(base64.b64decode(kinesis["data"], validate=True))
    except (KeyError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise RecordError(f"Kinesis record {kinesis.get('sequenceNumber')}: data is not base64 JSON") from exc
    return payload, str(kinesis.get("sequenceNumber", ""))


def parse_record(
    record: Mapping[str, Any], *, stream_arn: str | None = None, version_ms: int | None = None
) -> ChangeRecord:
    """Parse one record of any of the three shapes. Raises ``RecordError`` when it is malformed.

    ``stream_arn`` names the stream for GetRecords records, which do not carry it. ``version_ms``
    replaces the creation time as the version of the record's writes: synthetic records of a
    table read (``source/synthetic.py``) carry the read's time in whole seconds, as a filter sees
    it, and write with ``read_version`` of the read's start.
    """
    source = record
    kinesis_sequence = None
    if "kinesis" in record:
        source, kinesis_sequence = _from_kinesis(record)
    body = source.get("dynamodb")
    event = source.get("eventName")
    # type() first: isinstance() against an ABC costs more than the rest of a check, per record.
    if (type(body) is not dict and not isinstance(body, Mapping)) or event not in _EVENT_NAMES:
        raise RecordError(
            f"record {source.get('eventID', '?')}: not a DynamoDB stream record "
            f"(eventName {event!r}, dynamodb section {'present' if body else 'missing'})"
        )
    arn = source.get("eventSourceARN") or stream_arn
    table = source.get("tableName") or (table_from_arn(arn) if arn else None)
    if not table:
        raise RecordError(
            f"record {source.get('eventID', '?')}: no eventSourceARN or tableName to find its table"
        )
    sequence = kinesis_sequence or body.get("SequenceNumber")
    if not sequence:
        raise RecordError(f"record {source.get('eventID', '?')} of {table}: no SequenceNumber")
    raw_keys = body.get("Keys")
    if not raw_keys or (type(raw_keys) is not dict and not isinstance(raw_keys, Mapping)):
        raise RecordError(f"record {sequence} of {table}: no Keys")
    if "ApproximateCreationDateTime" not in body:
        raise RecordError(f"record {sequence} of {table}: no ApproximateCreationDateTime")
    # TTL deletions are REMOVEs made by the DynamoDB service principal.
    ttl_expiry = False
    if event == "REMOVE" and (identity := source.get("userIdentity")):
        ttl_expiry = (identity.get("type") or identity.get("Type")) == "Service" and (
            identity.get("principalId") or identity.get("PrincipalId")
        ) == _TTL_PRINCIPAL
    # Positional: keywords cost ~0.3 us more per record here.
    return ChangeRecord(
        table,
        event,
        raw_keys,
        sequence if type(sequence) is str else str(sequence),
        stream_version(body["ApproximateCreationDateTime"]) if version_ms is None else version_ms,
        ttl_expiry,
        body.get("StreamViewType"),
        record,
        arn,
        source if kinesis_sequence is not None else None,
        body.get("NewImage"),
        body.get("OldImage"),
    )
