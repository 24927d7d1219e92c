"""The dead letter: one record that cannot succeed, with the reason, in one shape for every backend.

A dead letter keeps the record (made JSON-safe; as ``CDCSYNC_DLQ_CONTENT`` allows, see
``content.py``: by default its envelope and the attributes its mapping indexes) plus what redrive
needs to re-read the item (``table`` and the typed ``keys``) and what an operator needs to
understand the failure (``mapping``, ``index``, ``id``, ``error``). A letter for a write
OpenSearch rejected also keeps the action's ``op`` and ``routing``: ``index``, ``id`` and
``routing`` are where it was aimed, so redrive can still delete a copy a rejected delete left at a
place the item has left (a routing or index move). ``letter_id`` names one entry so a reader can
remove exactly what it handled.

Decisions:
- ``json_safe`` turns bytes into base64, datetimes and dates into ISO 8601, Decimals into ints
  when integral, into floats when a float holds them exactly, else into their exact string; sets
  into sorted lists. Anything else non-JSON is a ``TypeError``: a record only ever holds what a
  JSON parser or boto3 produce, so an unknown type is a bug to hear about, not to stringify.
- Failure times must be timezone-aware and are stored in UTC; a naive datetime is rejected
  because guessing its zone would make ``first_failure_at`` silently wrong.
- Serialisation is pydantic's own JSON (compact, one line, big integers kept exact), so a letter
  is one JSON Lines line and ``DeadLetter.from_json(letter.to_json()) == letter``.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdcsync.aws import error_kind
from cdcsync.errors import CdcsyncError, ErrorKind

if TYPE_CHECKING:
    from cdcsync.change import ChangeRecord


class DeadLetterQueueError(CdcsyncError):
    """The dead-letter queue could not be written or read.

    When ``send`` raises this, the caller reports the affected records as failed (Lambda retries
    them) instead of counting them as processed. ``failed_ids`` names the letters that were not
    stored; letters of the same call that are not named were stored.
    """

    def __init__(self, message: str, failed_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failed_ids: tuple[str, ...] = tuple(failed_ids)

    @property
    def kind(self) -> ErrorKind:  # type: ignore[override]
        """Its cause's: a queue, bucket or folder that does not exist or may not be used is
        configuration, an unreachable one transient (``cdcsync.aws``), an unreadable entry fatal."""
        cause = self.__cause__
        if isinstance(cause, ClientError | BotoCoreError):
            return error_kind(cause)
        if isinstance(cause, FileNotFoundError | NotADirectoryError | PermissionError):
            return "configuration"
        return "fatal"


def json_safe(value: Any) -> Any:
    """``value`` with every non-JSON leaf converted (see the module docstring for the rules)."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [json_safe(item) for item in value]
        return sorted(items, key=lambda item: (type(item).__name__, str(item)))
    return _json_leaf(value)


def _json_leaf(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, Decimal):
        return _decimal(value)
    raise TypeError(f"cannot express {type(value).__name__} as JSON in a dead letter")


def _decimal(value: Decimal) -> int | float | str:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


class DeadLetterError(BaseModel):
    """Why the record failed: the OpenSearch status and error type, or ``plan_error`` and so on."""

    # defer_build: the schema is built when the first letter is made, not at import (Lambda cold start).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    status: int | None = None
    type: str
    reason: str


class DeadLetter(BaseModel):
    """One record that could not succeed, with everything needed to inspect and redrive it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    record: dict[str, Any]
    table: str
    keys: dict[str, Any]
    sequence_number: str | None
    mapping: str | None = None
    index: str | None = None
    id: str | None = None
    routing: str | None = None  # with index and id: where the rejected action was aimed
    op: Literal["index", "delete"] | None = None  # the rejected action; None: planning failed
    version: int | None = None
    error: DeadLetterError
    attempts: int = Field(ge=0)
    first_failure_at: dt.datetime
    last_failure_at: dt.datetime
    images_dropped: bool = False
    letter_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @field_validator("record", "keys", mode="before")
    @classmethod
    def _make_json_safe(cls, value: Any) -> Any:
        return json_safe(value) if isinstance(value, Mapping) else value

    @field_validator("first_failure_at", "last_failure_at")
    @classmethod
    def _require_utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("expected a timezone-aware datetime, got a naive one")
        return value.astimezone(dt.UTC)

    @classmethod
    def for_record(
        cls,
        record: ChangeRecord,
        error: DeadLetterError,
        *,
        at: dt.datetime,
        attempts: int = 1,
        first_failure_at: dt.datetime | None = None,
        mapping: str | None = None,
        index: str | None = None,
        id: str | None = None,
        routing: str | None = None,
        op: Literal["index", "delete"] | None = None,
        version: int | None = None,
    ) -> DeadLetter:
        """The dead letter for a parsed record (its raw form, table, typed keys, sequence number)."""
        return cls(
            record=dict(record.raw),
            table=record.table,
            keys=dict(record.raw_keys),
            sequence_number=record.sequence_number,
            mapping=mapping,
            index=index,
            id=id,
            routing=routing,
            op=op,
            version=version,
            error=error,
            attempts=attempts,
            first_failure_at=first_failure_at or at,
            last_failure_at=at,
        )

    def to_json(self) -> bytes:
        """One line of compact JSON (no newline inside, none at the end)."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str) -> DeadLetter:
        """Parse one stored letter; ``where`` (``file:line``, message id, ...) locates it in errors."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise DeadLetterQueueError(
                f"{where}: not a dead letter ({_first_problem(exc)}); "
                "fix or delete this entry, then read again"
            ) from exc


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    more = f", and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{loc + ': ' if loc else ''}{first['msg']}{more}"


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A letter as read back, with the backend's opaque handle (line, receipt handle, S3 key)."""

    letter: DeadLetter
    handle: object


class DeadLetterQueue(Protocol):
    """Storage for dead letters; redrive and ``dlq show`` are built on ``read`` and ``remove``."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store every letter, or raise ``DeadLetterQueueError`` naming the ones not stored."""

    def read(self, limit: int | None = None) -> list[StoredLetter]:
        """Up to ``limit`` stored letters (all when ``None``), oldest first where the backend can tell."""
        ...

    def remove(self, stored: Sequence[StoredLetter]) -> None:
        """Delete letters previously returned by ``read`` of this same queue."""

    def describe(self) -> str:
        """Where the letters go, for messages: ``file:///…``, ``sqs://…``, ``s3://…``."""
        ...


def letter_id_of(line: bytes) -> str | None:
    """The ``letter_id`` of one stored JSON line, or None for a line that is not a letter.

    Removal uses this instead of full parsing, so a damaged line is kept as it is, never dropped.
    """
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    letter_id = parsed.get("letter_id") if isinstance(parsed, dict) else None
    return letter_id if isinstance(letter_id, str) else None


def count(n: int) -> str:
    """``1 dead letter`` / ``3 dead letters``, for messages."""
    return f"{n} dead letter{'' if n == 1 else 's'}"
