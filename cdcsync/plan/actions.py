"""What the planner decides for one record and one mapping.

``IndexAction`` and ``DeleteAction`` go to the sink; ``FetchItem`` asks the caller for the
item's current image (KEYS_ONLY streams) and to plan again with it; ``Skip`` is an outcome with a
reason (counted, not written); ``Rejected`` goes to the dead-letter queue with its reason.

Treat them as immutable; they are not frozen only because frozen dataclasses cost several
microseconds more to build, and the planner builds one or more per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cdcsync.change import ChangeRecord
from cdcsync.errors import PlanError, RecordError
from cdcsync.mapping.compiled import CompiledMapping

SkipReason = Literal[
    "no_mapping",
    "filter",
    "where",
    "unchanged",
    "ignored_remove",
    "ignored_ttl_expiry",
    "id_too_long",
    "item_gone",
]


@dataclass(slots=True, eq=False)
class IndexAction:
    """``old_location_known`` is False when the document may also sit where nothing says.

    That is a write to a templated index or routing of an item that existed before, without an
    OldImage to find its earlier place (NEW_IMAGE or KEYS_ONLY view, or an OldImage the filter
    may have skipped: the planner deletes where that one says, but an older state may have been
    elsewhere): if the item moved, a copy stays in the old place. It is counted.
    """

    index: str
    id: str
    routing: str | None
    version: int
    document: dict[str, Any]
    mapping: CompiledMapping
    record: ChangeRecord

    op: Literal["index"] = "index"
    old_location_known: bool = True


@dataclass(slots=True, eq=False)
class DeleteAction:
    index: str
    id: str
    routing: str | None
    version: int
    mapping: CompiledMapping
    record: ChangeRecord

    op: Literal["delete"] = "delete"
    old_location_known: bool = True  # as for IndexAction: a copy may stay where nothing says


@dataclass(slots=True, eq=False)
class FetchItem:
    """The record carries no new image (KEYS_ONLY or OLD_IMAGE view): read the item, then plan it."""

    mapping: CompiledMapping
    record: ChangeRecord


@dataclass(slots=True, eq=False)
class Skip:
    reason: SkipReason
    mapping: CompiledMapping | None
    record: ChangeRecord


@dataclass(slots=True, eq=False)
class Rejected:
    """The record cannot be planned for this mapping; it goes to the dead-letter queue."""

    error: RecordError
    mapping: CompiledMapping | None
    record: ChangeRecord

    @property
    def reason(self) -> str:
        """The dead letter's error type: ``plan_error``, ``id_too_long``, ``unknown_location``."""
        return self.error.reason if isinstance(self.error, PlanError) else "plan_error"


Action = IndexAction | DeleteAction
Step = IndexAction | DeleteAction | FetchItem | Skip | Rejected
