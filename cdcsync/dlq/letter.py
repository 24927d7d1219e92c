"""The dead letter: one record that cannot succeed, with the reason, in one shape for every backend.

A dead letter keeps the record (made JSON-safe; as ``CDCSYNC_DLQ_CONTENT`` allows, see
``content.py``: by default its envelope and the attributes its mapping indexes) plus what redrive
needs to re-read the item (``table`` and the typed ``keys``) and what an operator needs to
understand the failure (``mapping``, ``index``, ``id``, ``error``). A letter for a write
OpenSearch rejected also keeps the action's ``op`` and ``routing``: ``index``, ``id`` and
``routing`` are where it was aimed, so redrive can still delete a copy a rejected delete left at a
place the item has left (a routing or index move). ``letter_id`` names one entry so a reader can
remove exactly what it handled.

The queue every backend is (``DeadLetterQueue``), its error and ``json_safe`` are in ``queue.py``:
what processes records imports those, and this module (pydantic models) only when it makes its
first letter, so a Lambda cold start builds no letter it does not send.

Decisions:
- ``record`` and ``keys`` are made JSON-safe (``queue.json_safe``).
- Failure times must be timezone-aware and are stored in UTC; a naive datetime is rejected
  because guessing its zone would make ``first_failure_at`` silently wrong.
- Serialisation is pydantic's own JSON (compact, one line, big integers kept exact), so a letter
  is one JSON Lines line and ``DeadLetter.from_json(letter.to_json()) == letter``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdcsync.dlq.queue import DeadLetterQueueError, json_safe

if TYPE_CHECKING:
    from cdcsync.change import ChangeRecord


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
