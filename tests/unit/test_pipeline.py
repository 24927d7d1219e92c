"""The pipeline's outcome rules with fakes: what each record is counted as, and the dead-letter lines.

No sockets: OpenSearch is a fake ``bulk`` that answers each action by its id, the dead-letter queue
is a list, and metrics are recorded per call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from cdcsync.dlq.letter import DeadLetter
from cdcsync.dlq.queue import StoredLetter
from cdcsync.logs import DeadLetterLog
from cdcsync.metrics import NullMetrics
from cdcsync.pipeline import Pipeline
from cdcsync.sink.bulk import BulkWriter, RetryBudget
from tests.support.records import USERS_STREAM_ARN, compiled, mapping_set, stream_record

DLQ = "file:///var/cdcsync/dlq.jsonl"
_ERRORS = {400: "mapper_parsing_exception", 409: "version_conflict_engine_exception"}


@dataclass
class FakeOpenSearch:
    """``bulk`` answering every action on an id with ``status[id]`` (default: 201 index, 200 delete)."""

    status: dict[str, int] = field(default_factory=dict)
    sent: list[tuple[str, str, str | None]] = field(default_factory=list)  # op, id, routing

    def bulk(self, *, body: bytes, params: dict[str, Any], index: str) -> dict[str, Any]:
        """A ``_bulk`` posted to ``/{index}/_bulk`` (action lines name no ``_index``)."""
        lines = [json.loads(line) for line in body.split(b"\n") if line]
        items = []
        while lines:
            (op, meta), *_ = lines.pop(0).items()
            if op == "index":
                lines.pop(0)
            self.sent.append((op, meta["_id"], meta.get("routing")))
            status = self.status.get(meta["_id"], 200 if op == "delete" else 201)
            answer: dict[str, Any] = {"_index": index, "_id": meta["_id"], "status": status}
            if status >= 300:
                answer["error"] = {
                    "type": _ERRORS.get(status, "http_error"),
                    "reason": "failed to parse [Age]",
                }
            items.append({op: answer})
        return {"took": 1, "errors": any("error" in next(iter(i.values())) for i in items), "items": items}


@dataclass
class ListQueue:
    letters: list[DeadLetter] = field(default_factory=list)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)

    def read(self, limit: int | None = None) -> list[StoredLetter]:
        return []

    def remove(self, stored: Sequence[StoredLetter]) -> None:
        return

    def describe(self) -> str:
        return DLQ


class CountingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.counted: dict[tuple[str, str], int] = {}
        self.reasons: dict[str, int] = {}

    def records(self, table: str, event: str, outcome: str, count: int = 1) -> None:
        super().records(table, event, outcome, count)
        self.counted[(event, outcome)] = self.counted.get((event, outcome), 0) + count

    def dead_letters(self, table: str, reason: str, count: int = 1) -> None:
        super().dead_letters(table, reason, count)
        self.reasons[reason] = self.reasons.get(reason, 0) + count


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pipeline(
    status: dict[str, int] | None = None, **mapping: Any
) -> tuple[Pipeline, CountingMetrics, ListQueue, Clock]:
    metrics = CountingMetrics()
    client = FakeOpenSearch(status or {})
    writer = BulkWriter(client, metrics, budget=RetryBudget(max_retries=0), sleep=lambda _: None)  # type: ignore[arg-type]
    queue = ListQueue()
    clock = Clock()
    pipeline = Pipeline(
        mappings=mapping_set(compiled(**{"table": "Users", "index": "users", "id": "{UserId}", **mapping})),
        writer=writer,
        dead_letters=queue,
        metrics=metrics,
        dead_letter_log=DeadLetterLog(logging.getLogger("cdcsync.pipeline"), clock=clock),
    )
    return pipeline, metrics, queue, clock


def rec(
    event: str, key: int, new: dict[str, Any] | None = None, old: dict[str, Any] | None = None, *, seq: int
) -> dict[str, Any]:
    return stream_record(event, {"UserId": key}, new, old, sequence=f"{seq:021d}")


A1 = {"UserId": 1, "Tenant": "a"}
B1 = {"UserId": 1, "Tenant": "b"}


# --- cdcsync_records_total: one outcome per record and mapping ---------------------------------


@pytest.mark.parametrize(
    ("records", "status", "mapping", "expected"),
    [
        pytest.param([rec("INSERT", 1, A1, seq=1)], {}, {}, {("INSERT", "indexed"): 1}, id="insert-indexed"),
        pytest.param(
            [rec("INSERT", 1, A1, seq=1), rec("REMOVE", 1, None, A1, seq=2)],
            {},
            {},
            {("INSERT", "coalesced"): 1, ("REMOVE", "deleted"): 1},
            id="insert-then-remove-insert-coalesced",
        ),
        pytest.param(
            [rec("INSERT", 1, A1, seq=1), rec("MODIFY", 1, B1, A1, seq=2)],
            {},
            {},
            {("INSERT", "coalesced"): 1, ("MODIFY", "indexed"): 1},
            id="insert-then-modify-insert-coalesced",
        ),
        pytest.param(
            [rec("INSERT", 1, A1, seq=1), rec("INSERT", 2, {**A1, "UserId": 2}, seq=2)],
            {},
            {},
            {("INSERT", "indexed"): 2},
            id="two-documents-both-indexed",
        ),
        pytest.param(
            [rec("INSERT", 1, A1, seq=1), rec("MODIFY", 1, B1, A1, seq=2)],
            {"1": 409},
            {},
            {("INSERT", "coalesced"): 1, ("MODIFY", "stale"): 1},
            id="coalesced-then-stale",
        ),
        pytest.param(
            [rec("INSERT", 1, A1, seq=1), rec("MODIFY", 1, B1, A1, seq=2)],
            {"1": 400},
            {},
            {("INSERT", "coalesced"): 1, ("MODIFY", "dlq"): 1},
            id="coalesced-then-rejected",
        ),
        pytest.param(
            [rec("MODIFY", 1, B1, A1, seq=1)],
            {},
            {"routing": "{Tenant}"},
            {("MODIFY", "indexed"): 1},
            id="routing-move-one-record-counted-once",
        ),
        pytest.param(
            [rec("INSERT", 1, A1, seq=1), rec("MODIFY", 1, B1, A1, seq=2)],
            {},
            {"routing": "{Tenant}"},
            {("INSERT", "coalesced"): 1, ("MODIFY", "indexed"): 1},
            id="routing-move-earlier-index-coalesced",
        ),
        pytest.param(
            [rec("MODIFY", 1, {**B1, "Status": "banned"}, A1, seq=1)],
            {},
            {"where": {"Status": [{"anything-but": ["banned"]}, {"exists": False}]}},
            {("MODIFY", "deleted"): 1},
            id="leaving-where-deleted",
        ),
    ],
)
def test_pipeline_records_counted_once_by_what_each_did(
    records: list[dict[str, Any]],
    status: dict[str, int],
    mapping: dict[str, Any],
    expected: dict[tuple[str, str], int],
) -> None:
    # GIVEN a batch (records of one document may be coalesced into one write)
    pipeline, metrics, _, _ = make_pipeline(status, **mapping)
    # WHEN processed
    result = pipeline.process(records)
    # THEN each record counts once, by what became of its own action
    assert metrics.counted == expected
    outcomes: dict[str, int] = {}
    for (_, outcome), count in expected.items():
        outcomes[outcome] = outcomes.get(outcome, 0) + count
    assert result.outcomes == outcomes


# --- dead-letter lines ---------------------------------------------------------------------------

OS_LINE = (
    "dead letter in table Users: mapper_parsing_exception: failed to parse [Age] (status 400); "
    f"kept in {DLQ}: fix the index's field mappings or the item, then run cdcsync dlq redrive"
)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_pipeline_dead_letter_logs_one_warning_with_identity(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a document OpenSearch refuses
    pipeline, _, queue, _ = make_pipeline({"7": 400})
    # WHEN its record is processed
    with caplog.at_level(logging.WARNING, "cdcsync"):
        pipeline.process([rec("INSERT", 7, {"UserId": 7}, seq=5)])
    # THEN one WARNING line says where, why and what to do, with the record's identity
    assert len(queue.letters) == 1
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert line.getMessage() == OS_LINE
    assert (line.table, line.key, line.seq, line.reason) == (  # type: ignore[attr-defined]
        "Users",
        {"UserId": 7},
        f"{5:021d}",
        "mapper_parsing_exception",
    )


@pytest.mark.parametrize(
    ("record", "mapping", "expected"),
    [
        pytest.param(
            rec("INSERT", 1, {"UserId": 1}, seq=1),
            {"id": "{UserID}"},
            'dead letter in table Users: plan_error: id: "{UserID}" names UserID, which is not in the keys '
            f"of table Users (has: UserId); kept in {DLQ}: fix the mapping (cdcsync validate) or the item, "
            "then run cdcsync dlq redrive",
            id="plan-error",
        ),
        pytest.param(
            {"eventName": "INSERT", "eventSourceARN": USERS_STREAM_ARN, "dynamodb": {"SequenceNumber": "9"}},
            {},
            f"dead letter in table Users: invalid_record: record 9 of Users: no Keys; kept in {DLQ}: "
            "not a DynamoDB stream record cdcsync can read; see cdcsync dlq show",
            id="invalid-record",
        ),
    ],
)
def test_pipeline_dead_letter_line_says_what_to_do(
    record: dict[str, Any], mapping: dict[str, Any], expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a record that cannot be planned
    pipeline, _, queue, _ = make_pipeline(**mapping)
    # WHEN processed
    with caplog.at_level(logging.WARNING, "cdcsync"):
        pipeline.process([record])
    # THEN it is stored, and its one line names the table, the reason and what to do
    assert len(queue.letters) == 1
    assert _warnings(caplog) == [expected]


def test_pipeline_dead_letter_flood_logs_bounded_lines(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN 1,000 records OpenSearch refuses for one reason
    status = {str(key): 400 for key in range(1000)}
    pipeline, metrics, queue, clock = make_pipeline(status)
    flood = [rec("INSERT", key, {"UserId": key}, seq=key + 1) for key in range(1000)]
    # WHEN processed in one batch
    with caplog.at_level(logging.WARNING, "cdcsync"):
        pipeline.process(flood)
    # THEN 5 lines, then one line with the count of the rest; every letter is stored and counted
    assert len(queue.letters) == 1000
    assert metrics.reasons == {"mapper_parsing_exception": 1000}
    more = (
        "995 more dead letters in table Users for reason mapper_parsing_exception were not logged one "
        "by one (a line each for the first 5 a minute per table and reason); cdcsync dlq show lists them"
    )
    assert _warnings(caplog) == [OS_LINE] * 5 + [more]
    # AND a later batch of the minute says its count at its end; a new minute has its own lines
    caplog.clear()
    with caplog.at_level(logging.WARNING, "cdcsync"):
        clock.now += 30
        pipeline.process(flood[:10])
        assert _warnings(caplog) == [more.replace("995", "10")]
        caplog.clear()
        clock.now += 31
        pipeline.process(flood[:1])
    assert _warnings(caplog) == [OS_LINE]


def test_pipeline_dead_letter_batches_in_one_minute_each_log_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN three batches of 10 records OpenSearch refuses, 10 s apart (three Lambda invocations)
    status = {str(key): 400 for key in range(10)}
    pipeline, _, queue, clock = make_pipeline(status)
    batch = [rec("INSERT", key, {"UserId": key}, seq=key + 1) for key in range(10)]
    more = (
        "{} more dead letters in table Users for reason mapper_parsing_exception were not logged one "
        "by one (a line each for the first 5 a minute per table and reason); cdcsync dlq show lists them"
    )
    lines = []
    # WHEN each is processed
    for _ in range(3):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "cdcsync"):
            pipeline.process(batch)
        lines.append(_warnings(caplog))
        clock.now += 10
    # THEN every batch ends with lines covering all its dead letters: the minute's 5, then counts
    assert lines == [[OS_LINE] * 5 + [more.format(5)], [more.format(10)], [more.format(10)]]
    assert len(queue.letters) == 30


class BrokenMetrics(CountingMetrics):
    """Counts 7 dead letters, then fails (a bug) on the 8th."""

    def dead_letters(self, table: str, reason: str, count: int = 1) -> None:
        if sum(self.reasons.values()) == 7:
            raise RuntimeError("a bug in the metrics")
        super().dead_letters(table, reason, count)


def test_pipeline_batch_stopped_by_a_bug_still_logs_its_dead_letter_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a batch of 10 records OpenSearch refuses, and metrics that fail on the 8th dead letter
    pipeline, _, _, _ = make_pipeline({str(key): 400 for key in range(10)})
    pipeline.metrics = BrokenMetrics()
    # WHEN the batch is processed THEN the bug surfaces
    with (
        caplog.at_level(logging.WARNING, "cdcsync"),
        pytest.raises(RuntimeError, match="a bug in the metrics"),
    ):
        pipeline.process([rec("INSERT", key, {"UserId": key}, seq=key + 1) for key in range(10)])
    # AND the 7 dead letters counted before it have their lines: 5 one by one and the count of the rest
    assert _warnings(caplog) == [OS_LINE] * 5 + [
        "2 more dead letters in table Users for reason mapper_parsing_exception were not logged one "
        "by one (a line each for the first 5 a minute per table and reason); cdcsync dlq show lists them"
    ]


def test_pipeline_dead_letter_after_retry_point_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a record that fails transiently, then one OpenSearch refuses
    pipeline, metrics, queue, _ = make_pipeline({"1": 503, "2": 400})
    # WHEN processed
    with caplog.at_level(logging.WARNING, "cdcsync"):
        result = pipeline.process(
            [rec("INSERT", 1, {"UserId": 1}, seq=1), rec("INSERT", 2, {"UserId": 2}, seq=2)]
        )
    # THEN both are delivered again, so the second is judged (and logged) then, not now
    assert result.retry_from == 0
    assert queue.letters == []
    assert metrics.reasons == {}
    assert not [line for line in _warnings(caplog) if "dead letter" in line]
