"""Coalescing: per document (index, id), the deletes at the routings it left, then its last action."""

from __future__ import annotations

from functools import cache

import pytest

from cdcsync.change import ChangeRecord
from cdcsync.plan.actions import Action, DeleteAction, IndexAction
from cdcsync.sink.coalesce import DocumentKey, coalesce, document_key
from tests.support.records import change, compiled

MAPPING = compiled(table="Users", index="users")

Step = tuple[str | None, str, int, list[int]]  # routing, op, version, contributing sequence numbers


@cache
def record(seq: int) -> ChangeRecord:
    return change("MODIFY", {"UserId": seq}, {"UserId": seq}, sequence=f"{seq:021d}")


def put(doc_id: str, seq: int, *, routing: str | None = None, index: str = "users") -> IndexAction:
    return IndexAction(index, doc_id, routing, 1000 * seq, {"seq": seq}, MAPPING, record(seq))


def remove(doc_id: str, seq: int, *, routing: str | None = None, index: str = "users") -> DeleteAction:
    return DeleteAction(index, doc_id, routing, 1000 * seq, MAPPING, record(seq))


def move(doc_id: str, seq: int, old: str, new: str) -> list[Action]:
    """What the planner emits for a routing move: delete where it was, index where it is."""
    return [remove(doc_id, seq, routing=old), put(doc_id, seq, routing=new)]


def summary(actions: list[Action]) -> list[tuple[DocumentKey, list[Step]]]:
    """Per document, the steps to send one after another."""
    return [
        (
            document_key(steps[-1].action),
            [
                (
                    entry.action.routing,
                    entry.action.op,
                    entry.action.version,
                    [int(r.sequence_number) for r in entry.records],
                )
                for entry in steps
            ],
        )
        for steps in coalesce(actions)
    ]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(
            [put("1", 1), put("1", 2), put("1", 3)],
            [(("users", "1"), [(None, "index", 3000, [1, 2, 3])])],
            id="last-index-wins",
        ),
        pytest.param(
            [put("1", 1), remove("1", 2)],
            [(("users", "1"), [(None, "delete", 2000, [1, 2])])],
            id="delete-after-index-wins",
        ),
        pytest.param(
            [remove("1", 1), put("1", 2)],
            [(("users", "1"), [(None, "index", 2000, [1, 2])])],
            id="recreate-after-delete-wins",
        ),
        pytest.param(
            [put("1", 1), put("2", 2), put("1", 3), remove("3", 4), put("2", 5)],
            [
                (("users", "1"), [(None, "index", 3000, [1, 3])]),
                (("users", "2"), [(None, "index", 5000, [2, 5])]),
                (("users", "3"), [(None, "delete", 4000, [4])]),
            ],
            id="documents-in-order-of-first-sight",
        ),
        pytest.param(
            # a routing move: the old-routing delete goes strictly before the new-routing index
            [put("1", 1, routing="a"), *move("1", 2, "a", "b")],
            [(("users", "1"), [("a", "delete", 2000, [1, 2]), ("b", "index", 2000, [2])])],
            id="routing-move-deletes-old-routing-first",
        ),
        pytest.param(
            # a -> b -> a: the copy at b (or, in a one-shard index, the document itself) is deleted
            # first; the last index at a is not undone by a delete at b sent with or after it
            [*move("1", 1, "a", "b"), *move("1", 2, "b", "a")],
            [(("users", "1"), [("b", "delete", 2000, [1, 2]), ("a", "index", 2000, [1, 2])])],
            id="routing-move-and-back-deletes-b-then-indexes-a",
        ),
        pytest.param(
            [*move("1", 1, "a", "b"), put("1", 2, routing="b")],
            [(("users", "1"), [("a", "delete", 1000, [1]), ("b", "index", 2000, [1, 2])])],
            id="routing-move-then-update",
        ),
        pytest.param(
            [*move("1", 1, "a", "b"), remove("1", 2, routing="b")],
            [(("users", "1"), [("a", "delete", 1000, [1]), ("b", "delete", 2000, [1, 2])])],
            id="routing-move-then-remove",
        ),
        pytest.param(
            [*move("1", 1, "a", "b"), *move("1", 2, "b", "c")],
            [
                (
                    ("users", "1"),
                    [
                        ("a", "delete", 1000, [1]),
                        ("b", "delete", 2000, [1, 2]),
                        ("c", "index", 2000, [2]),
                    ],
                )
            ],
            id="two-routing-moves-one-delete-per-step",
        ),
        pytest.param(
            # no old image (NEW_IMAGE view): the planner cannot see the move, the batch can
            [put("1", 1, routing="a"), put("1", 2, routing="b")],
            [(("users", "1"), [("a", "delete", 1000, [1]), ("b", "index", 2000, [2])])],
            id="index-at-other-routing-becomes-delete",
        ),
        pytest.param(
            # an index move (templated index): same id, two indices, two documents
            [remove("1", 1, index="orders-eu"), put("1", 1, index="orders-us")],
            [
                (("orders-eu", "1"), [(None, "delete", 1000, [1])]),
                (("orders-us", "1"), [(None, "index", 1000, [1])]),
            ],
            id="index-move-keeps-both",
        ),
        pytest.param(
            # one record giving two actions for one document (e.g. two mappings) counts once
            [put("1", 1), put("1", 1)],
            [(("users", "1"), [(None, "index", 1000, [1])])],
            id="same-record-counted-once",
        ),
    ],
)
def test_coalesce_actions_gives_deletes_then_last_action_per_document(
    actions: list[Action], expected: list[tuple[DocumentKey, list[Step]]]
) -> None:
    # GIVEN actions in stream order WHEN coalesced THEN per (index, id) the steps to send in order
    assert summary(actions) == expected


def test_coalesce_keeps_the_last_action_object_and_earliest_record() -> None:
    # GIVEN three actions for one document
    first, middle, last = put("1", 7), remove("1", 8), put("1", 9)
    # WHEN coalesced
    ((entry,),) = coalesce([first, middle, last])
    # THEN the action sent is the last one itself, and a failure is reported from the earliest record
    assert entry.action is last
    assert entry.earliest is first.record
    assert entry.records == [first.record, middle.record, last.record]


def test_coalesce_index_left_behind_becomes_delete_of_same_record() -> None:
    # GIVEN an index at routing a superseded by one at routing b
    left, final = put("1", 1, routing="a"), put("1", 2, routing="b")
    # WHEN coalesced
    ((gone, kept),) = coalesce([left, final])
    # THEN a is deleted at a's version, for a's record and mapping; b is the last action itself
    assert isinstance(gone.action, DeleteAction)
    assert (gone.action.index, gone.action.id, gone.action.routing) == ("users", "1", "a")
    assert (gone.action.version, gone.action.mapping, gone.action.record) == (1000, MAPPING, left.record)
    assert kept.action is final


def test_coalesce_record_returning_later_is_listed_again() -> None:
    # GIVEN record 1 writes the document, record 2 too, then record 1's second action (non-adjacent)
    # WHEN coalesced THEN contributors stay in stream order, as they came
    assert summary([put("1", 1), put("1", 2), put("1", 1)])[0][1][0][3] == [1, 2, 1]
