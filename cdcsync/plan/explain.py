"""Why the planner decided what it did: each step of one record with the rule that decided it.

``cdcsync preview`` shows this. Nothing here decides anything: the steps come from ``plan_record``
(or ``plan_fetched``), and only the shape of a mapping's steps names the rule, as the planner builds
them (see its docstring):

- ``Skip`` carries its reason (``filter``, ``where``, ``unchanged``, the ``deletes`` policies, ...).
- ``Rejected`` carries the dead letter's reason (``plan_error``, ``id_too_long``, ``unknown_location``).
- A ``DeleteAction`` of a REMOVE is the ``deletes`` policy of its kind (user delete or TTL expiry).
  Of an INSERT or MODIFY, it is a move when an ``IndexAction`` of the same mapping follows (the index
  or routing changed), a deletion from the old place when a ``Rejected`` follows (the new image names
  no place), and otherwise the item leaving ``where``.
- ``FetchItem``: the record carries no new image; the caller reads the item and plans again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cdcsync.change import ChangeRecord
from cdcsync.mapping.compiled import CompiledMapping
from cdcsync.plan.actions import DeleteAction, FetchItem, IndexAction, Rejected, Skip, Step

Verdict = Literal["index", "delete", "skip", "fetch", "dead_letter"]

_SKIP_RULES = {
    "filter": ("filter", "the record does not match the filter"),
    "unchanged": ("skip_unchanged", "the document and its place would not change"),
    "ignored_remove": (
        "deletes.on_remove",
        "the item was deleted, and the mapping keeps its document (ignore)",
    ),
    "ignored_ttl_expiry": (
        "deletes.on_ttl_expiry",
        "the item expired (TTL), and the mapping keeps its document (ignore)",
    ),
    "id_too_long": ("id_too_long", "the id is over 512 bytes, so no such document was ever written"),
    "item_gone": ("item_gone", "the item no longer exists; the REMOVE record that follows decides"),
}


@dataclass(frozen=True, slots=True)
class Explanation:
    """One step and the rule behind it. ``rule`` is a mapping key or policy (``where``,
    ``deletes.on_remove``, ...); for a dead letter, its reason (``plan_error``, ...)."""

    step: Step
    verdict: Verdict
    rule: str | None
    why: str

    @property
    def mapping(self) -> CompiledMapping | None:
        return self.step.mapping


def _skip(step: Skip, tables: Sequence[str]) -> Explanation:
    record = step.record
    if step.reason == "no_mapping":
        known = ", ".join(tables) or "none"
        return Explanation(
            step, "skip", "no_mapping", f"no mapping for table {record.table} (tables with mappings: {known})"
        )
    if step.reason == "where":
        why = (
            "the removed item did not match where, so it was not in the index"
            if record.event == "REMOVE"
            else "the item does not match where, and was not in the index before"
        )
        return Explanation(step, "skip", "where", why)
    rule, why = _SKIP_RULES[step.reason]
    return Explanation(step, "skip", rule, why)


def _delete(step: DeleteAction, later: Sequence[Step]) -> Explanation:
    record = step.record
    if record.event == "REMOVE":
        if record.is_ttl_expiry:
            return Explanation(step, "delete", "deletes.on_ttl_expiry", "the item expired (TTL)")
        return Explanation(step, "delete", "deletes.on_remove", "the item was deleted")
    if any(isinstance(other, IndexAction) for other in later):
        return Explanation(
            step, "delete", "moved", "the index or routing changed: deleted where the old image put it"
        )
    if any(isinstance(other, Rejected) for other in later):
        why = "the new image names no index or routing: deleted where the old image put it"
        return Explanation(step, "delete", "moved", why)
    return Explanation(step, "delete", "where", "the item does not match where now, and may have before")


def _index(step: IndexAction) -> Explanation:
    why = ""
    if not step.old_location_known:
        why = (
            "no trusted old image names where the item was before: if it moved, a copy stays there "
            "(counted in cdcsync_unknown_location_writes_total)"
        )
    return Explanation(step, "index", None, why)


def explain(steps: Sequence[Step], *, tables: Sequence[str] = ()) -> list[Explanation]:
    """The steps of one record (``plan_record``'s answer, in its order), each with its rule.

    ``tables`` are the tables that have mappings, named when a record's table has none.
    """
    explained: list[Explanation] = []
    for position, step in enumerate(steps):
        if isinstance(step, Skip):
            explained.append(_skip(step, tables))
        elif isinstance(step, Rejected):
            explained.append(Explanation(step, "dead_letter", step.reason, str(step.error)))
        elif isinstance(step, FetchItem):
            explained.append(Explanation(step, "fetch", None, _fetch_why(step.record)))
        elif isinstance(step, DeleteAction):
            later = [other for other in steps[position + 1 :] if other.mapping is step.mapping]
            explained.append(_delete(step, later))
        else:
            explained.append(_index(step))
    return explained


def _fetch_why(record: ChangeRecord) -> str:
    view = f" (stream view {record.stream_view_type})" if record.stream_view_type else ""
    return (
        f"the record carries no new image{view}: cdcsync reads the item (consistent read) "
        "and plans what it finds"
    )
