"""The dead-letter queue as the stages see it: the ``DeadLetterQueue`` protocol every backend
implements, its error, a letter as read back, and ``json_safe``.

No pydantic here: the pipeline imports this module, and the letter model (``letter.py``) when it
makes its first letter, so a Lambda cold start that sends none does not build it.

Decisions:
- ``json_safe`` turns bytes into base64, datetimes and dates into ISO 8601, Decimals into ints
  when integral, into floats when a float holds them exactly, else into their exact string; sets
  into sorted lists. Anything else non-JSON is a ``TypeError``: a record only ever holds what a
  JSON parser or boto3 produce, so an unknown type is a bug to hear about, not to stringify.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from cdcsync.aws import error_kind
from cdcsync.errors import CdcsyncError, ErrorKind

if TYPE_CHECKING:
    from cdcsync.dlq.letter import DeadLetter


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
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - when judged (cdcsync.aws)

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
