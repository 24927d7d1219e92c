"""One action per document per bulk request: the last one in stream order wins.

If a bulk request carried two actions for one document, a per-item retry of the first after the
second succeeded would put the older state back (both versions can be equal within one second).
Coalescing makes that impossible, and it also saves writes. Each coalesced action remembers every
record that contributed to it, so a failure can be reported from the earliest of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cdcsync.change import ChangeRecord
from cdcsync.plan.actions import Action

DocumentKey = tuple[str, str, str | None]  # index, id, routing: one OpenSearch document


@dataclass(slots=True, eq=False)
class CoalescedAction:
    """The action to send for one document, and the records it stands for, in stream order."""

    action: Action
    records: list[ChangeRecord] = field(default_factory=list)

    @property
    def earliest(self) -> ChangeRecord:
        return self.records[0]


def document_key(action: Action) -> DocumentKey:
    return action.index, action.id, action.routing


def coalesce(actions: Iterable[Action]) -> list[CoalescedAction]:
    """Keep the last action per document (``actions`` are in stream order); order of first sight."""
    by_document: dict[DocumentKey, CoalescedAction] = {}
    for action in actions:
        key = document_key(action)
        entry = by_document.get(key)
        if entry is None:
            by_document[key] = CoalescedAction(action, [action.record])
        else:
            entry.action = action
            if entry.records[-1] is not action.record:
                entry.records.append(action.record)
    return list(by_document.values())
