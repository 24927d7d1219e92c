"""One action per document per bulk request: the last one in stream order wins.

If a bulk request carried two actions for one document, a per-item retry of the first after the
second succeeded would put the older state back (both versions can be equal within one second).
Coalescing makes that impossible, and it also saves writes. Each coalesced action remembers every
record that contributed to it, so a failure can be reported from the earliest of them.

A document is an (index, id): routing only picks the shard, so in an index where two routings land
on one shard (always in a one-shard index, OpenSearch's default) they name one document, and in
any other index they may name two copies of it. So actions are coalesced per (index, id), and a
document the batch names at several routings becomes *steps* to send one after another, each in a
later bulk request than the one before: a delete at every routing it left (at the version of the
last action there: an index left behind becomes a delete too), then its last action. The delete
must come strictly first: sent together at one version, a delete at the old routing would undo the
index at the new one in a one-shard index, and a per-item retry of the delete after the index
succeeded would do the same. An index move (a templated index) names two documents, one per
index: its delete and its index are independent and go out together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cdcsync.change import ChangeRecord
from cdcsync.plan.actions import Action, DeleteAction

DocumentKey = tuple[str, str]  # index, id: one document, whichever routings name it


@dataclass(slots=True, eq=False)
class CoalescedAction:
    """The action to send for one document, and the records it stands for, in stream order."""

    action: Action
    records: list[ChangeRecord] = field(default_factory=list)

    @property
    def earliest(self) -> ChangeRecord:
        return self.records[0]


def document_key(action: Action) -> DocumentKey:
    return action.index, action.id


def coalesce(actions: Iterable[Action]) -> list[list[CoalescedAction]]:
    """Per document, in order of first sight, the steps to send one after another.

    ``actions`` are in stream order. A document named at one routing has one step, its last action;
    one named at several has a delete at each routing but the last one's, in the stream order of
    their last actions, then its last action.
    """
    by_document: dict[DocumentKey, dict[str | None, CoalescedAction]] = {}
    for action in actions:
        key = (action.index, action.id)  # document_key, inlined: once per action of every batch
        routings = by_document.get(key)
        if routings is None:
            by_document[key] = {action.routing: CoalescedAction(action, [action.record])}
            continue
        entry = routings.pop(action.routing, None)  # popped and put back: routings in order of last action
        if entry is None:
            entry = CoalescedAction(action, [action.record])
        else:
            entry.action = action
            if entry.records[-1] is not action.record:
                entry.records.append(action.record)
        routings[action.routing] = entry
    return [
        [*routings.values()] if len(routings) == 1 else _steps(list(routings.values()))
        for routings in by_document.values()
    ]


def _steps(entries: list[CoalescedAction]) -> list[CoalescedAction]:
    *left, last = entries
    for entry in left:
        action = entry.action
        if action.op == "index":
            entry.action = DeleteAction(
                action.index, action.id, action.routing, action.version, action.mapping, action.record
            )
    return [*left, last]
