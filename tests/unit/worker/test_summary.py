"""The worker's periodic summary line: the words, and the coordinator writing it once a minute."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from cdcsync.pipeline import BatchResult
from cdcsync.worker.summary import Activity, summary_line
from tests.unit.worker.test_coordinator import (
    ARN,
    StubAws,
    StubShard,
    Wall,
    make_coordinator,
    record,
    rounds_until,
    sample,
)


@pytest.mark.parametrize(
    ("activity", "seconds", "lag", "expected"),
    [
        pytest.param(
            Activity({"indexed": 2, "dlq": 1}, {"mapper_parsing_exception": 1}),
            60.2,
            0.44,
            "summary of the last 60 s for table Users: 3 records (2 indexed, 1 dlq), "
            "1 dead letter (mapper_parsing_exception 1), lag 0.4 s",
            id="dead-letter",
        ),
        pytest.param(
            Activity({"skipped": 1, "coalesced": 3, "deleted": 4, "indexed": 5, "stale": 1}),
            61,
            None,
            "summary of the last 61 s for table Users: 14 records (5 indexed, 4 deleted, 1 stale, "
            "3 coalesced, 1 skipped), no dead letters",
            id="every-outcome-in-order-no-lag-known",
        ),
        pytest.param(
            Activity({"dlq": 7}, {"plan_error": 2, "id_too_long": 5}),
            60,
            12.0,
            "summary of the last 60 s for table Users: 7 records (7 dlq), "
            "7 dead letters (id_too_long 5, plan_error 2), lag 12.0 s",
            id="reasons-sorted",
        ),
        pytest.param(
            Activity({"indexed": 1}),
            60,
            0.0,
            "summary of the last 60 s for table Users: 1 record (1 indexed), no dead letters, lag 0.0 s",
            id="one-record",
        ),
    ],
)
def test_summary_line_names_outcomes_dead_letters_and_lag(
    activity: Activity, seconds: float, lag: float | None, expected: str
) -> None:
    assert summary_line("Users", activity, seconds, lag) == expected


class ReportingPipeline:
    """Every record indexed but the one with sequence 1001, a dead letter."""

    def __init__(self) -> None:
        self.processed = 0

    def process(self, records: list[dict[str, Any]], **_: Any) -> BatchResult:
        self.processed += len(records)
        letters = sum(r["dynamodb"]["SequenceNumber"] == "1001" for r in records)
        outcomes = {"indexed": len(records) - letters, **({"dlq": letters} if letters else {})}
        reasons = {"mapper_parsing_exception": letters} if letters else {}
        return BatchResult(size=len(records), outcomes=outcomes, dead_letter_reasons=reasons)


def test_coordinator_logs_summary_each_minute_something_happened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a worker over a shard of three records, one of them a dead letter
    aws = StubAws()
    aws.current["Users"] = ARN
    aws.streams[ARN] = {"only": StubShard([record(f"1{n:03d}") for n in range(3)])}
    wall = Wall()
    coordinator, _, _, metrics = make_coordinator(tmp_path, aws, wall_ms=wall)
    pipeline = coordinator.pipeline = ReportingPipeline()  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, "cdcsync.worker"):
        rounds_until(
            coordinator,
            lambda: (
                pipeline.processed == 3
                and sample(metrics, "cdcsync_replication_lag_seconds", table="Users") == 0.0
            ),
        )
        # WHEN a minute has passed since the worker started THEN one summary line names it all
        coordinator.round()
        assert not [r for r in caplog.records if r.getMessage().startswith("summary")]
        wall.ms += 60_000
        coordinator.round()
        # AND the next minute, with nothing done, says nothing
        wall.ms += 60_000
        coordinator.round()
    coordinator.shutdown()
    summaries = [r for r in caplog.records if r.getMessage().startswith("summary")]
    assert [r.getMessage() for r in summaries] == [
        "summary of the last 60 s for table Users: 3 records (2 indexed, 1 dlq), "
        "1 dead letter (mapper_parsing_exception 1), lag 0.0 s"
    ]
    assert summaries[0].levelno == logging.INFO
    assert (summaries[0].table, summaries[0].records, summaries[0].dead_letters) == (  # type: ignore[attr-defined]
        "Users",
        {"indexed": 2, "dlq": 1},
        {"mapper_parsing_exception": 1},
    )
